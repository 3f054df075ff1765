/**
 * Turns one MQTT payload into one point value: JSON path or raw payload, then type, scale and
 * offset. Pure and total: every failure is a reason string naming the topic (and path), never
 * a throw and never the payload itself (reasons end up in logs).
 */
import { evaluateJsonPath, type JsonPath } from './json-path.js';

export type ValueType = 'number' | 'string' | 'boolean';

export interface DecodeSpec {
  /** Where the value is; undefined: the whole payload is the value (raw). */
  json?: JsonPath;
  /** Wanted type. Default: raw payload → number; JSON → the JSON scalar as it is. */
  type?: ValueType;
  scale?: number;
  offset?: number;
  /** Where the source timestamp is (needs a JSON payload). */
  timestamp?: JsonPath;
  timestampUnit?: 'ms' | 's';
}

export type Decoded =
  | { ok: true; value: number | string | boolean; sourceTime?: number; warning?: string }
  | { ok: false; reason: string };

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const TRUE_WORDS = new Set(['true', '1', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'off']);
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodePayload(spec: DecodeSpec, topic: string, payload: Uint8Array): Decoded {
  if (payload.length === 0) return { ok: false, reason: `empty payload on topic ${topic}` };
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    return { ok: false, reason: `payload on topic ${topic} is not valid UTF-8` };
  }
  if (!spec.json) return convert(text.trim(), spec.type ?? 'number', spec, `payload on topic ${topic}`);

  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    // The parser's own message quotes the payload; values stay out of reasons and logs.
    return { ok: false, reason: `payload on topic ${topic} is not valid JSON (path ${spec.json.text})` };
  }
  const found = evaluateJsonPath(spec.json, document);
  if (!found.found) return { ok: false, reason: `${found.missing} not found in payload on topic ${topic} (path ${spec.json.text})` };
  const where = `${spec.json.text} on topic ${topic}`;
  const raw = found.value;
  if (raw === null) return { ok: false, reason: `${where} is null` };
  if (typeof raw === 'object') return { ok: false, reason: `${where} is ${Array.isArray(raw) ? 'an array' : 'an object'}, not a value` };
  const converted = convert(raw as string | number | boolean, spec.type ?? (typeof raw as ValueType), spec, where);
  if (!converted.ok || !spec.timestamp) return converted;

  const time = timestampOf(spec, document);
  if (typeof time === 'number') return { ...converted, sourceTime: time };
  return { ...converted, warning: `${time} on topic ${topic}; using the receive time` };
}

function convert(raw: string | number | boolean, type: ValueType, spec: DecodeSpec, where: string): Decoded {
  switch (type) {
    case 'string':
      return { ok: true, value: String(raw) };
    case 'boolean': {
      if (typeof raw === 'boolean') return { ok: true, value: raw };
      const word = String(raw).trim().toLowerCase();
      if (TRUE_WORDS.has(word)) return { ok: true, value: true };
      if (FALSE_WORDS.has(word)) return { ok: true, value: false };
      return { ok: false, reason: `${where} is not a boolean (true/false/1/0/on/off)` };
    }
    case 'number': {
      let value: number;
      if (typeof raw === 'number') value = raw;
      else if (typeof raw === 'string' && NUMBER.test(raw.trim())) value = Number(raw.trim());
      else return { ok: false, reason: `${where} is not a number` };
      if (!Number.isFinite(value)) return { ok: false, reason: `${where} is not a finite number` };
      return { ok: true, value: value * (spec.scale ?? 1) + (spec.offset ?? 0) };
    }
  }
}

/** The source time in ms since epoch, or a reason why there is none. */
function timestampOf(spec: DecodeSpec, document: unknown): number | string {
  const path = spec.timestamp!;
  const found = evaluateJsonPath(path, document);
  if (!found.found) return `timestamp ${path.text} not found`;
  const raw = found.value;
  let ms: number;
  if (typeof raw === 'number') ms = spec.timestampUnit === 's' ? raw * 1000 : raw;
  else if (typeof raw === 'string') ms = Date.parse(raw);
  else return `timestamp ${path.text} is neither a number nor an ISO 8601 string`;
  if (!Number.isFinite(ms) || ms < 0) return `timestamp ${path.text} is not a valid time`;
  return Math.round(ms);
}
