import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FRAME_LIMITS, FrameError, decodeFrames, encodeFrames, type Frame } from './frame.js';

const T0 = 1_750_000_000_000;

function sampleFrame(sequence = 7n): Frame {
  return {
    sequence,
    time: T0,
    intervalMs: 15_000,
    readings: [
      { tap: 'boiler-plc', point: 'supply-temp', value: 71.25, unit: 'degC', quality: 'good', readTime: T0 + 12, sourceTime: T0 + 10 },
      { tap: 'boiler-plc', point: 'flow', value: 1234, unit: 'm3/h', quality: 'good', readTime: T0 + 12 },
      { tap: 'boiler-plc', point: 'energy-total', value: 18_446_744_073_709_551_615n, unit: 'Wh', quality: 'good', readTime: T0 + 13 },
      { tap: 'boiler-plc', point: 'offset', value: -9_223_372_036_854_775_808n, quality: 'good', readTime: T0 + 13 },
      { tap: 'boiler-plc', point: 'pump-running', value: true, quality: 'good', readTime: T0 + 14 },
      { tap: 'boiler-plc', point: 'door-open', value: false, quality: 'uncertain', reason: 'stale', stale: true, readTime: T0 - 30_000 },
      { tap: 'line1-opcua', point: 'temperature', value: -0.5, unit: '°C', quality: 'good', readTime: T0 + 40, sourceTime: T0 - 5, serverTime: T0 + 39 },
      { tap: 'line1-opcua', point: 'serial', value: 'SN-ÄÖÜ-🙂', quality: 'good', readTime: T0 + 41 },
      { tap: 'mqtt', point: 'nan', value: NaN, quality: 'uncertain', readTime: T0 + 41 },
      { tap: 'mqtt', point: 'inf', value: -Infinity, quality: 'good', readTime: T0 + 41 },
      { tap: 'mqtt', point: 'neg-zero', value: -0, quality: 'good', readTime: T0 + 41 },
      { tap: 'mqtt', point: 'big-int-number', value: -Number.MAX_SAFE_INTEGER, quality: 'good', readTime: T0 + 41 },
      { tap: 'dead', point: 'x', value: null, quality: 'bad', reason: 'deadline exceeded', readTime: T0 + 11_250 },
      { tap: 'dead', point: 'empty', value: '', quality: 'bad', reason: 'deadline exceeded', readTime: T0 + 11_250 },
    ],
  };
}

test('frames round-trip every value type, quality, unit, reason and timestamp', () => {
  const frames = [sampleFrame(7n), { sequence: (1n << 64n) - 1n, time: 0, intervalMs: 0, readings: [] }, sampleFrame(9n)];
  const bytes = encodeFrames(frames);
  const back = decodeFrames(bytes);
  assert.equal(back.length, 3);
  assert.deepEqual(back[0], frames[0]);
  assert.deepEqual(back[1], frames[1]);
  assert.ok(Object.is(back[0]!.readings[10]!.value, -0), '-0 keeps its sign');
  assert.equal(typeof back[0]!.readings[2]!.value, 'bigint');
  assert.equal(typeof back[0]!.readings[1]!.value, 'number');
  assert.deepEqual(encodeFrames(back), bytes, 'encoding is canonical');
});

test('names repeat through the string table: a 500-point frame stays compact', () => {
  const readings = Array.from({ length: 500 }, (_, i) => ({ tap: `plc-${i % 10}`, point: `register-${i}`, value: i * 3, unit: 'bar', quality: 'good' as const, readTime: T0 + 5 }));
  const bytes = encodeFrames([{ sequence: 1n, time: T0, intervalMs: 15_000, readings }]);
  const naive = Buffer.byteLength(JSON.stringify(readings.map((r) => ({ ...r }))));
  assert.ok(bytes.length * 3 < naive, `${bytes.length} bytes vs ${naive} as JSON`);
  assert.deepEqual(decodeFrames(bytes)[0]!.readings, readings);
});

function expectFrameError(bytes: Uint8Array, code?: string): FrameError {
  try {
    decodeFrames(bytes);
  } catch (err) {
    assert.ok(err instanceof FrameError, `expected FrameError, got ${String(err)}`);
    if (code !== undefined) assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail('decoding should have failed');
}

test('every truncation of a batch is refused with FrameError (truncated, or too_large for a count beyond the bytes left)', () => {
  const bytes = encodeFrames([sampleFrame(1n), sampleFrame(2n)]);
  for (let n = 0; n < bytes.length; n++) {
    const err = expectFrameError(bytes.subarray(0, n));
    // The only prefixes that are not "truncated" are those cut right after a complete frame count
    // or string table where a count must then be bounded by what is left (too_large is the honest answer).
    assert.ok(err.code === 'truncated' || err.code === 'too_large', `prefix ${n}: ${err.code} ${err.message}`);
  }
});

test('every single-byte mutation either fails with FrameError or decodes to a canonical batch', () => {
  const bytes = encodeFrames([sampleFrame(3n)]);
  let refused = 0;
  for (let i = 0; i < bytes.length; i++) {
    for (const mask of [0x01, 0x02, 0x10, 0x80, 0xff]) {
      const mutated = bytes.slice();
      mutated[i]! ^= mask;
      let frames: Frame[];
      try {
        frames = decodeFrames(mutated);
      } catch (err) {
        assert.ok(err instanceof FrameError, `byte ${i} ^ ${mask}: ${String(err)}`);
        refused++;
        continue;
      }
      // Accepted mutations (e.g. a changed value digit) must be a different, canonical encoding.
      assert.deepEqual(encodeFrames(frames), mutated, `byte ${i} ^ ${mask} decoded to a non-canonical batch`);
      assert.notDeepEqual(frames, decodeFrames(bytes));
    }
  }
  assert.ok(refused > bytes.length, `most mutations are refused (${refused})`);
});

test('malformed input gets precise codes', () => {
  const good = encodeFrames([sampleFrame()]);
  expectFrameError(new Uint8Array(0), 'truncated');
  expectFrameError(Uint8Array.from([0x47, 0x50, 0x45, 0x56, 1, 1]), 'bad_magic');
  const v2 = good.slice();
  v2[4] = 2;
  expectFrameError(v2, 'unsupported_version');
  expectFrameError(Uint8Array.from([...good, 0]), 'trailing_bytes');
  expectFrameError(Uint8Array.from([0x47, 0x50, 0x46, 0x52, 1, 0]), 'malformed'); // zero frames
  // frame count with an overlong varint (0x81 0x00 = 1)
  expectFrameError(Uint8Array.from([0x47, 0x50, 0x46, 0x52, 1, 0x81, 0x00]), 'malformed');
  // a frame count far beyond the bytes left is refused before anything is allocated
  expectFrameError(Uint8Array.from([0x47, 0x50, 0x46, 0x52, 1, 0xff, 0xff, 0xff, 0x7f]), 'too_large');
  // an integral float64 is not canonical
  const f = encodeFrames([{ sequence: 1n, time: T0, intervalMs: 1, readings: [{ tap: 'a', point: 'b', value: 1.5, quality: 'good', readTime: T0 }] }]);
  const at = Buffer.from(f).indexOf(Buffer.from([0x3f, 0xf8, 0, 0, 0, 0, 0, 0]));
  assert.ok(at > 0);
  const integral = f.slice();
  integral.set([0x3f, 0xf0, 0, 0, 0, 0, 0, 0], at); // 1.0
  expectFrameError(integral, 'malformed');
  const noncanonicalNaN = f.slice();
  noncanonicalNaN.set([0x7f, 0xf8, 0, 0, 0, 0, 0, 1], at);
  expectFrameError(noncanonicalNaN, 'malformed');
});

test('oversized input is refused before decoding', () => {
  const good = encodeFrames([sampleFrame()]);
  assert.throws(() => decodeFrames(good, { maxBytes: good.length - 1 }), (err: unknown) => err instanceof FrameError && err.code === 'too_large');
  assert.throws(() => decodeFrames(new Uint8Array(FRAME_LIMITS.maxBytes + 1)), (err: unknown) => err instanceof FrameError && err.code === 'too_large');
});

test('the encoder refuses values it cannot represent, naming the field', () => {
  const base = { sequence: 1n, time: T0, intervalMs: 1 };
  const reading = { tap: 't', point: 'p', quality: 'good' as const, readTime: T0 };
  const cases: [Frame, RegExp][] = [
    [{ ...base, readings: [{ ...reading, value: 1n << 64n }] }, /readings\[0\]\.value bigint is outside/],
    [{ ...base, readings: [{ ...reading, value: {} as unknown as number }] }, /readings\[0\]\.value must be/],
    [{ ...base, readings: [{ ...reading, value: 1, quality: 'great' as 'good' }] }, /quality must be good, uncertain or bad/],
    [{ ...base, readings: [{ ...reading, value: 1, readTime: -1 }] }, /readTime must be/],
    [{ ...base, readings: [{ ...reading, value: 'x'.repeat(70_000) }] }, /limit is 65535/],
    [{ ...base, readings: [{ ...reading, value: 1, unit: 'a\ud800' }] }, /lone surrogate/],
    [{ ...base, sequence: -1n, readings: [] }, /sequence must be a bigint/],
  ];
  for (const [frame, message] of cases) assert.throws(() => encodeFrames([frame]), (err: unknown) => err instanceof FrameError && err.code === 'bad_value' && message.test(err.message));
  assert.throws(() => encodeFrames([]), FrameError);
});

test('a frame that went through decode never aliases the input buffer', () => {
  const bytes = encodeFrames([sampleFrame()]);
  const frames = decodeFrames(bytes);
  bytes.fill(0);
  assert.equal(frames[0]!.readings[7]!.value, 'SN-ÄÖÜ-🙂');
});

test('joinFrameBatches coalesces encoded batches into one, in order', async () => {
  const { joinFrameBatches } = await import('./frame.js');
  const parts = [encodeFrames([sampleFrame(1n)]), encodeFrames([sampleFrame(2n), sampleFrame(3n)]), encodeFrames([sampleFrame(4n)])];
  const joined = joinFrameBatches(parts);
  assert.deepEqual(joined, encodeFrames([sampleFrame(1n), sampleFrame(2n), sampleFrame(3n), sampleFrame(4n)]));
  assert.throws(() => joinFrameBatches([Uint8Array.from([1, 2, 3, 4, 5, 6])]), FrameError);
  assert.throws(() => joinFrameBatches([]), FrameError);
});
