/**
 * Human durations ("15s", "500ms", "1m30s", "24h") and sizes ("32MiB", "4KiB", "512MB") as used
 * in config files and log lines. Arithmetic is exact (BigInt over the decimal digits), so "1.1s"
 * is 1100 ms, never 1100.0000000000002.
 */

export class DurationError extends Error {
  constructor(readonly input: string, readonly reason: string) {
    super(`invalid duration ${JSON.stringify(input)}: ${reason}`);
    this.name = 'DurationError';
  }
}

export class SizeError extends Error {
  constructor(readonly input: string, readonly reason: string) {
    super(`invalid size ${JSON.stringify(input)}: ${reason}`);
    this.name = 'SizeError';
  }
}

/** Duration units, largest first; a compound duration must use them in this order. */
const DURATION_UNITS: ReadonlyArray<readonly [string, number]> = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
  ['ms', 1],
];
const DURATION_UNIT_NAMES = 'ms, s, m, h, d';
const MAX_TEXT = 64;

/** Splits "1.5" into exact BigInt digits and a power-of-ten divisor. */
function decimal(text: string): { digits: bigint; scale: bigint } {
  const [whole = '', fraction = ''] = text.split('.');
  return { digits: BigInt(whole + fraction), scale: 10n ** BigInt(fraction.length) };
}

/** Parses "15s", "500ms", "1m30s", "1.5s", "24h", "7d" into whole milliseconds. */
export function parseDuration(text: string): number {
  if (typeof text !== 'string') throw new DurationError(String(text), 'must be a string with a unit, like "15s"');
  if (text.length === 0) throw new DurationError(text, 'empty');
  if (text.length > MAX_TEXT) throw new DurationError(text.slice(0, MAX_TEXT) + '…', `longer than ${MAX_TEXT} characters`);
  if (text.startsWith('-')) throw new DurationError(text, 'negative durations are not allowed');
  if (/^\d+(\.\d+)?$/.test(text)) throw new DurationError(text, `missing unit; use ${DURATION_UNIT_NAMES}, e.g. "${text}s"`);
  const part = /(\d+(?:\.\d+)?)([a-zA-Zµ]*)/y;
  let total = 0n;
  let lastUnitIndex = -1;
  let pos = 0;
  while (pos < text.length) {
    part.lastIndex = pos;
    const match = part.exec(text);
    if (!match || match[0].length === 0) throw new DurationError(text, `unexpected ${JSON.stringify(text[pos])} at position ${pos + 1}; write it like "1m30s", without spaces`);
    const [, number = '', unit = ''] = match;
    if (unit === '' && pos + number.length < text.length) {
      const at = pos + number.length;
      throw new DurationError(text, `unexpected ${JSON.stringify(text[at])} at position ${at + 1}; write it like "1m30s", without spaces`);
    }
    if (unit === '') throw new DurationError(text, `missing unit after ${number}; use ${DURATION_UNIT_NAMES}`);
    const unitIndex = DURATION_UNITS.findIndex(([name]) => name === unit);
    if (unitIndex < 0) throw new DurationError(text, `unknown unit ${JSON.stringify(unit)}; use ${DURATION_UNIT_NAMES}`);
    if (unitIndex <= lastUnitIndex) throw new DurationError(text, 'units must go from largest to smallest, each once, like "1h30m"');
    lastUnitIndex = unitIndex;
    const { digits, scale } = decimal(number);
    const scaled = digits * BigInt(DURATION_UNITS[unitIndex]![1]);
    if (scaled % scale !== 0n) throw new DurationError(text, 'not a whole number of milliseconds');
    total += scaled / scale;
    if (total > BigInt(Number.MAX_SAFE_INTEGER)) throw new DurationError(text, 'too large');
    pos += match[0].length;
  }
  return Number(total);
}

/** Formats milliseconds the way parseDuration reads them: 90000 -> "1m30s", 500 -> "500ms", 0 -> "0s". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 0) return '-' + formatDuration(-ms);
  let rest = Math.round(ms);
  if (rest === 0) return '0s';
  let out = '';
  for (const [unit, size] of DURATION_UNITS) {
    const count = Math.floor(rest / size);
    if (count > 0) out += `${count}${unit}`;
    rest -= count * size;
  }
  return out;
}

/** Size units; "k" and "K" are both accepted for kilo, everything else is case-sensitive (Mb is not MB). */
const SIZE_UNITS: Readonly<Record<string, bigint>> = {
  B: 1n,
  kB: 1000n,
  KB: 1000n,
  MB: 1000n ** 2n,
  GB: 1000n ** 3n,
  TB: 1000n ** 4n,
  KiB: 1024n,
  MiB: 1024n ** 2n,
  GiB: 1024n ** 3n,
  TiB: 1024n ** 4n,
};
const SIZE_UNIT_NAMES = 'B, KiB, MiB, GiB, TiB, kB, MB, GB, TB';

/** Parses "32MiB", "4KiB", "512MB", "1.5KiB", "100" or the number 100 into whole bytes. */
export function parseSize(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) throw new SizeError(String(input), 'must be a whole, non-negative number of bytes');
    return input;
  }
  if (typeof input !== 'string') throw new SizeError(String(input), 'must be a string like "32MiB" or a number of bytes');
  const text = input;
  if (text.length === 0) throw new SizeError(text, 'empty');
  if (text.length > MAX_TEXT) throw new SizeError(text.slice(0, MAX_TEXT) + '…', `longer than ${MAX_TEXT} characters`);
  if (text.startsWith('-')) throw new SizeError(text, 'negative sizes are not allowed');
  const match = /^(\d+(?:\.\d+)?) ?([A-Za-z]*)$/.exec(text);
  if (!match) throw new SizeError(text, `write a number and a unit, like "32MiB"; units: ${SIZE_UNIT_NAMES}`);
  const [, number = '', unitName = ''] = match;
  const unit = unitName === '' ? 1n : SIZE_UNITS[unitName];
  if (unit === undefined) throw new SizeError(text, `unknown unit ${JSON.stringify(unitName)}; use ${SIZE_UNIT_NAMES}`);
  const { digits, scale } = decimal(number);
  const scaled = digits * unit;
  if (scaled % scale !== 0n) throw new SizeError(text, 'not a whole number of bytes');
  const bytes = scaled / scale;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new SizeError(text, 'too large');
  return Number(bytes);
}

/** Formats bytes with the unit that gives the smallest whole count: 33554432 -> "32MiB", 512000000 -> "512MB". */
export function formatSize(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes <= 0) return `${bytes}B`;
  const value = BigInt(bytes);
  let best = `${bytes}B`;
  let bestCount = value;
  for (const unit of ['TiB', 'GiB', 'MiB', 'KiB', 'TB', 'GB', 'MB', 'kB'] as const) {
    const size = SIZE_UNITS[unit]!;
    if (value % size === 0n && value / size < bestCount) [best, bestCount] = [`${value / size}${unit}`, value / size];
  }
  return best;
}
