import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DurationError, SizeError, formatDuration, formatSize, parseDuration, parseSize } from './duration.js';

test('parseDuration reads single and compound durations exactly', () => {
  const cases: Array<[string, number]> = [
    ['0s', 0],
    ['500ms', 500],
    ['15s', 15_000],
    ['1m30s', 90_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['1h30m', 5_400_000],
    ['1d2h3m4s5ms', 93_784_005],
    ['1.5s', 1_500],
    ['1.1s', 1_100], // exact, never 1100.0000000000002
    ['0.25h', 900_000],
  ];
  for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
});

test('parseDuration rejects bad input with a reason', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['15', /missing unit; use ms, s, m, h, d, e\.g\. "15s"/],
    ['-5s', /negative/],
    ['15x', /unknown unit "x"; use ms, s, m, h, d/],
    ['15S', /unknown unit "S"/],
    ['15us', /unknown unit "us"/],
    ['15 s', /unexpected " " at position 3/],
    [' 15s', /unexpected " " at position 1/],
    ['30s1m', /largest to smallest/],
    ['1s1s', /largest to smallest/],
    ['2.5ms', /not a whole number of milliseconds/],
    ['1.0001s', /not a whole number of milliseconds/],
    ['.5s', /unexpected "\."/],
    ['1.s', /unexpected "\."/],
    ['1e3ms', /unknown unit "e"/],
    ['9007199254740992ms', /too large/],
    ['99999999999999999999d', /too large/],
    ['1'.repeat(65) + 's', /longer than 64 characters/],
    ['Infinity', /unexpected "I"/],
  ];
  for (const [text, reason] of cases) {
    assert.throws(() => parseDuration(text), (err: unknown) => err instanceof DurationError && reason.test(err.message), text);
  }
  assert.equal(parseDuration('9007199254740991ms'), Number.MAX_SAFE_INTEGER);
  assert.throws(() => parseDuration(15 as unknown as string), DurationError);
});

test('formatDuration writes what parseDuration reads', () => {
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(500), '500ms');
  assert.equal(formatDuration(15_000), '15s');
  assert.equal(formatDuration(90_000), '1m30s');
  assert.equal(formatDuration(86_400_000), '1d');
  assert.equal(formatDuration(93_784_005), '1d2h3m4s5ms');
  assert.equal(formatDuration(-1500), '-1s500ms');
  assert.equal(formatDuration(1.4), '1ms');
  assert.equal(formatDuration(Infinity), 'Infinity');
  for (const ms of [1, 999, 1000, 59_999, 3_600_001, 123_456_789, Number.MAX_SAFE_INTEGER]) {
    assert.equal(parseDuration(formatDuration(ms)), ms, String(ms));
  }
});

test('parseSize reads binary and decimal units exactly', () => {
  const cases: Array<[string | number, number]> = [
    ['100', 100],
    [100, 100],
    [0, 0],
    ['0B', 0],
    ['100B', 100],
    ['4KiB', 4096],
    ['32MiB', 33_554_432],
    ['1GiB', 1_073_741_824],
    ['2TiB', 2_199_023_255_552],
    ['512MB', 512_000_000],
    ['4kB', 4000],
    ['4KB', 4000],
    ['1.5KiB', 1536],
    ['32 MiB', 33_554_432],
  ];
  for (const [input, bytes] of cases) assert.equal(parseSize(input), bytes, String(input));
});

test('parseSize rejects bad input with a reason', () => {
  const cases: Array<[string | number, RegExp]> = [
    ['', /empty/],
    ['-1KiB', /negative/],
    [-1, /non-negative/],
    [1.5, /whole/],
    [Infinity, /whole/],
    ['32Mb', /unknown unit "Mb"/],
    ['32mib', /unknown unit "mib"/],
    ['1.1B', /not a whole number of bytes/],
    ['1.0000001KiB', /not a whole number of bytes/],
    ['MiB', /write a number and a unit/],
    ['32  MiB', /write a number and a unit/],
    ['1e3', /write a number and a unit/],
    ['9999999TiB', /too large/],
    ['9'.repeat(65), /longer than 64/],
  ];
  for (const [input, reason] of cases) {
    assert.throws(() => parseSize(input), (err: unknown) => err instanceof SizeError && reason.test(err.message), String(input));
  }
});

test('formatSize picks the largest exact unit', () => {
  assert.equal(formatSize(33_554_432), '32MiB');
  assert.equal(formatSize(4096), '4KiB');
  assert.equal(formatSize(512_000_000), '512MB');
  assert.equal(formatSize(1000), '1kB');
  assert.equal(formatSize(1536), '1536B'); // 1.5KiB is not a whole number of any unit
  assert.equal(formatSize(0), '0B');
  assert.equal(formatSize(123), '123B');
  for (const bytes of [1, 1023, 1024, 5 * 1024 * 1024, 1_000_001, 64 * 1024]) assert.equal(parseSize(formatSize(bytes)), bytes);
});
