import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyScale, BYTE_ORDERS, bytesToRegisters, DecodeError, decodeRegisters, encodeRegisters, exceptionName, registerCount, registersToBytes, type ByteOrder, type DecodedValue, type RegisterType } from './decode.js';

// Hand-computed register layouts (register values as read, in address order).
const cases: { type: RegisterType; value: DecodedValue; layouts: Record<ByteOrder, number[]>; length?: number; bit?: number }[] = [
  { type: 'float32', value: Math.fround(123.456), layouts: { ABCD: [0x42f6, 0xe979], CDAB: [0xe979, 0x42f6], BADC: [0xf642, 0x79e9], DCBA: [0x79e9, 0xf642] } },
  { type: 'int16', value: -2, layouts: { ABCD: [0xfffe], CDAB: [0xfffe], BADC: [0xfeff], DCBA: [0xfeff] } },
  { type: 'uint16', value: 0x1234, layouts: { ABCD: [0x1234], CDAB: [0x1234], BADC: [0x3412], DCBA: [0x3412] } },
  { type: 'int32', value: -123456789, layouts: { ABCD: [0xf8a4, 0x32eb], CDAB: [0x32eb, 0xf8a4], BADC: [0xa4f8, 0xeb32], DCBA: [0xeb32, 0xa4f8] } },
  { type: 'uint32', value: 0xdeadbeef, layouts: { ABCD: [0xdead, 0xbeef], CDAB: [0xbeef, 0xdead], BADC: [0xadde, 0xefbe], DCBA: [0xefbe, 0xadde] } },
  {
    type: 'uint64',
    value: 0x0102030405060708n,
    layouts: { ABCD: [0x0102, 0x0304, 0x0506, 0x0708], CDAB: [0x0708, 0x0506, 0x0304, 0x0102], BADC: [0x0201, 0x0403, 0x0605, 0x0807], DCBA: [0x0807, 0x0605, 0x0403, 0x0201] },
  },
  {
    type: 'uint64',
    value: 18446744073709551615n,
    layouts: { ABCD: [0xffff, 0xffff, 0xffff, 0xffff], CDAB: [0xffff, 0xffff, 0xffff, 0xffff], BADC: [0xffff, 0xffff, 0xffff, 0xffff], DCBA: [0xffff, 0xffff, 0xffff, 0xffff] },
  },
  {
    type: 'int64',
    value: -9223372036854775807n,
    layouts: { ABCD: [0x8000, 0, 0, 0x0001], CDAB: [0x0001, 0, 0, 0x8000], BADC: [0x0080, 0, 0, 0x0100], DCBA: [0x0100, 0, 0, 0x0080] },
  },
  {
    type: 'float64',
    value: 123.456,
    layouts: { ABCD: [0x405e, 0xdd2f, 0x1a9f, 0xbe77], CDAB: [0xbe77, 0x1a9f, 0xdd2f, 0x405e], BADC: [0x5e40, 0x2fdd, 0x9f1a, 0x77be], DCBA: [0x77be, 0x9f1a, 0x2fdd, 0x5e40] },
  },
  // Strings keep register order; only the byte swap applies.
  { type: 'string', value: 'ABC', length: 3, layouts: { ABCD: [0x4142, 0x4300], CDAB: [0x4142, 0x4300], BADC: [0x4241, 0x0043], DCBA: [0x4241, 0x0043] } },
  { type: 'string', value: 'Pump07', length: 6, layouts: { ABCD: [0x5075, 0x6d70, 0x3037], CDAB: [0x5075, 0x6d70, 0x3037], BADC: [0x7550, 0x706d, 0x3730], DCBA: [0x7550, 0x706d, 0x3730] } },
  // Bit 9 of a register whose value is 0x0200; byte-swapping orders store it as 0x0002.
  { type: 'bit', value: true, bit: 9, layouts: { ABCD: [0x0200], CDAB: [0x0200], BADC: [0x0002], DCBA: [0x0002] } },
];

for (const c of cases) {
  for (const order of BYTE_ORDERS) {
    const words = c.layouts[order];
    const options = { ...(c.length !== undefined && { length: c.length }), ...(c.bit !== undefined && { bit: c.bit }) };
    test(`decode ${c.type} ${String(c.value)} ${order} = ${words.map((w) => w.toString(16).padStart(4, '0')).join(' ')}`, () => {
      assert.equal(decodeRegisters(words, c.type, order, options), c.value);
    });
    test(`encode ${c.type} ${String(c.value)} ${order} round-trips to the same layout`, () => {
      assert.deepEqual(encodeRegisters(c.value, c.type, order, options), words);
    });
  }
}

test('64-bit integers decode to exact bigints beyond 2^53', () => {
  const v = decodeRegisters([0x0020, 0x0000, 0x0000, 0x0001], 'uint64', 'ABCD');
  assert.equal(typeof v, 'bigint');
  assert.equal(v, 2n ** 53n + 1n);
});

test('signed types decode negative values', () => {
  assert.equal(decodeRegisters([0x8000], 'int16', 'ABCD'), -32768);
  assert.equal(decodeRegisters([0x8000], 'uint16', 'ABCD'), 32768);
  assert.equal(decodeRegisters([0xffff, 0xffff], 'int32', 'CDAB'), -1);
  assert.equal(decodeRegisters([0xffff, 0xffff, 0xffff, 0xffff], 'int64', 'DCBA'), -1n);
});

test('bit reads each bit of the register value', () => {
  for (let bit = 0; bit < 16; bit++) {
    assert.equal(decodeRegisters([1 << bit], 'bit', 'ABCD', { bit }), true, `bit ${bit} set`);
    assert.equal(decodeRegisters([0xffff ^ (1 << bit)], 'bit', 'ABCD', { bit }), false, `bit ${bit} clear`);
  }
  assert.throws(() => decodeRegisters([1], 'bit', 'ABCD', { bit: 16 }), DecodeError);
});

test('strings stop at the first NUL and drop trailing spaces; odd lengths ignore the pad byte', () => {
  assert.equal(decodeRegisters([0x4142, 0x0043], 'string', 'ABCD', { length: 4 }), 'AB');
  assert.equal(decodeRegisters([0x4120, 0x2020], 'string', 'ABCD', { length: 4 }), 'A');
  assert.equal(decodeRegisters([0x4142, 0x4344], 'string', 'ABCD', { length: 3 }), 'ABC');
  assert.equal(decodeRegisters([0x41e9], 'string', 'ABCD', { length: 2 }), 'Aé', 'latin1: every byte is one character');
});

test('NaN and infinities decode as such (the tap marks them bad)', () => {
  assert.ok(Number.isNaN(decodeRegisters([0x7fc0, 0x0000], 'float32', 'ABCD')));
  assert.equal(decodeRegisters([0x7ff0, 0, 0, 0], 'float64', 'ABCD'), Infinity);
});

test('wrong register counts and values out of range are typed errors', () => {
  assert.throws(() => decodeRegisters([1], 'float32', 'ABCD'), { name: 'DecodeError', message: 'float32 needs 2 registers, got 1' });
  assert.throws(() => decodeRegisters([1, 2, 3], 'int64', 'ABCD'), /int64 needs 4 registers, got 3/);
  assert.throws(() => decodeRegisters([0x10000], 'uint16', 'ABCD'), /not a 16-bit unsigned integer/);
  assert.throws(() => decodeRegisters([-1], 'int16', 'ABCD'), /not a 16-bit unsigned integer/);
  assert.throws(() => decodeRegisters([1.5], 'int16', 'ABCD'), /not a 16-bit unsigned integer/);
  assert.throws(() => decodeRegisters([1, 2], 'string', 'ABCD', { length: 2 }), /string needs 1 registers, got 2/);
  assert.throws(() => bytesToRegisters(new Uint8Array(3), 'ABCD'), /odd/);
});

test('registerCount per type', () => {
  assert.deepEqual(
    (['int16', 'uint16', 'bit', 'int32', 'uint32', 'float32', 'int64', 'uint64', 'float64'] as const).map((t) => registerCount(t)),
    [1, 1, 1, 2, 2, 2, 4, 4, 4],
  );
  assert.equal(registerCount('string', 1), 1);
  assert.equal(registerCount('string', 2), 1);
  assert.equal(registerCount('string', 3), 2);
  assert.equal(registerCount('string', 250), 125);
});

test('registersToBytes gives the value bytes most significant first', () => {
  assert.equal(registersToBytes([0xe979, 0x42f6], 'CDAB').toString('hex'), '42f6e979');
  assert.equal(registersToBytes([0x79e9, 0xf642], 'DCBA').toString('hex'), '42f6e979');
});

test('applyScale: raw * scale + offset; bigints stay exact only without scale and offset', () => {
  assert.equal(applyScale(1234, 0.1), 123.4);
  assert.equal(applyScale(100, 2, -50), 150);
  assert.equal(applyScale(100, undefined, 5), 105);
  assert.equal(applyScale(2n ** 60n), 2n ** 60n);
  assert.equal(applyScale(10n, 0.5), 5);
});

test('exception names', () => {
  assert.equal(exceptionName(2), 'illegal data address');
  assert.equal(exceptionName(11), 'gateway target device failed to respond');
  assert.equal(exceptionName(99), 'unknown exception');
});
