/**
 * MQTT topic filters (MQTT 5 §4.7): validated when the config is loaded, and matched here
 * against incoming topic names, because one message may feed several points.
 */

const MAX_TOPIC_BYTES = 65535;

/** An error message for an invalid subscription filter, or undefined when it is valid. */
export function topicFilterError(filter: string): string | undefined {
  if (filter.length === 0) return 'topic filter must not be empty';
  if (Buffer.byteLength(filter, 'utf8') > MAX_TOPIC_BYTES) return `topic filter longer than ${MAX_TOPIC_BYTES} bytes`;
  if (filter.includes('\u0000')) return 'topic filter must not contain NUL';
  if (filter.startsWith('$share/')) return 'shared subscriptions ($share/...) are not supported: a tap must see every message';
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      return `"#" must be a whole level and the last one (e.g. "plant/#"), found level "${level}"`;
    }
    if (level.includes('+') && level !== '+') return `"+" must be a whole level (e.g. "plant/+/temp"), found level "${level}"`;
  }
  return undefined;
}

export function hasWildcard(filter: string): boolean {
  return filter.includes('+') || filter.includes('#');
}

/** True when `topic` (a concrete topic name) matches the valid `filter`. */
export function topicMatches(filter: string, topic: string): boolean {
  const filterLevels = filter.split('/');
  const topicLevels = topic.split('/');
  // Topics starting with "$" (e.g. $SYS) are not matched by a leading wildcard (§4.7.2).
  if (topic.startsWith('$') && (filterLevels[0] === '+' || filterLevels[0] === '#')) return false;
  for (let i = 0; i < filterLevels.length; i++) {
    const level = filterLevels[i];
    if (level === '#') return true; // also matches the parent level: "a/#" matches "a"
    if (i >= topicLevels.length) return false;
    if (level !== '+' && level !== topicLevels[i]) return false;
  }
  return filterLevels.length === topicLevels.length;
}
