import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfigText } from '../../common/config-file.js';
import { check, ConfigError, s, validate } from '../../common/schema.js';
import { repoRoot } from '../../test/helpers/paths.js';
import { modbusTapSchema } from './schema.js';
import { createModbusTap } from './index.js';
import { silentLogger } from '../../common/log.js';

const fileSchema = s.object({ taps: s.array(s.oneOf('type', { modbus: modbusTapSchema })) });
const point = '{name: a, table: holding, address: 0, type: int16}';

/** One tap under `taps:`; `body` lines are indented into the tap mapping. */
function tapYaml(body: string): string {
  return 'taps:\n  - name: t\n    type: modbus\n' + body.split('\n').map((line) => '    ' + line).join('\n') + '\n';
}

const broken: [string, string, string][] = [
  ['addressBase missing', `transport: tcp\nhost: h\npoints: [${point}]`, 'taps.yaml:2:5: taps[0].addressBase: required'],
  ['addressBase 2', `transport: tcp\nhost: h\naddressBase: 2\npoints: [${point}]`, 'taps.yaml:6:18: taps[0].addressBase: must be 0 or 1; found 2'],
  ['tcp without host', `transport: tcp\naddressBase: 0\npoints: [${point}]`, 'taps.yaml:2:5: taps[0].host: required for transport tcp'],
  ['rtu without serial', `transport: rtu\naddressBase: 0\npoints: [${point}]`, 'taps.yaml:2:5: taps[0].serial: required for transport rtu (serial: {path: /dev/ttyUSB0, ...})'],
  ['unknown transport', `transport: udp\naddressBase: 0\npoints: [${point}]`, 'taps.yaml:4:16: taps[0].transport: must be one of tcp, rtu, rtu-over-tcp; found "udp"'],
  [
    'misspelt table',
    'transport: tcp\nhost: h\naddressBase: 0\npoints: [{name: a, table: holdings, address: 0, type: int16}]',
    'taps.yaml:7:31: taps[0].points[0].table: must be one of coil, discrete, holding, input; found "holdings"; did you mean "holding"?',
  ],
  [
    'unknown type',
    'transport: tcp\nhost: h\naddressBase: 0\npoints: [{name: a, table: holding, address: 0, type: float}]',
    'taps.yaml:7:58: taps[0].points[0].type: must be one of bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string, bit; found "float"',
  ],
  ['address 0 with base 1', `transport: tcp\nhost: h\naddressBase: 1\npoints: [${point}]`, 'taps.yaml:7:49: taps[0].points[0].address: address 0 must lie within 1..65536 (addressBase 1)'],
  [
    'float32 past the last register',
    'transport: tcp\nhost: h\naddressBase: 0\npoints: [{name: a, table: holding, address: 65535, type: float32}]',
    'taps.yaml:7:49: taps[0].points[0].address: address 65535 and its 2 registers must lie within 0..65535 (addressBase 0)',
  ],
  ['int16 on a coil', 'transport: tcp\nhost: h\naddressBase: 0\npoints: [{name: a, table: coil, address: 0, type: int16}]', 'taps.yaml:7:55: taps[0].points[0].type: a coil point must have type bool; found "int16"'],
  [
    'bool on a register',
    'transport: tcp\nhost: h\naddressBase: 0\npoints: [{name: a, table: holding, address: 0, type: bool}]',
    'taps.yaml:7:58: taps[0].points[0].type: type bool is for coil and discrete tables; use type bit with bit: 0..15 for a bit of a holding register',
  ],
  ['bit without bit', 'transport: tcp\nhost: h\naddressBase: 0\npoints: [{name: a, table: holding, address: 0, type: bit}]', 'taps.yaml:7:14: taps[0].points[0].bit: type bit needs bit: 0..15'],
  ['string without length', 'transport: tcp\nhost: h\naddressBase: 0\npoints: [{name: a, table: holding, address: 0, type: string}]', 'taps.yaml:7:14: taps[0].points[0].length: type string needs length (characters, 1..250)'],
  [
    'scale on a string',
    'transport: tcp\nhost: h\naddressBase: 0\npoints: [{name: a, table: holding, address: 0, type: string, length: 4, scale: 2}]',
    'taps.yaml:7:84: taps[0].points[0].scale: scale is not allowed for type string',
  ],
  ['duplicate point names', `transport: tcp\nhost: h\naddressBase: 0\npoints: [${point}, {name: a, table: holding, address: 1, type: int16}]`, 'taps.yaml:7:73: taps[0].points[1].name: duplicate point name "a" (also points[0])'],
  ['timeout without unit', `transport: tcp\nhost: h\naddressBase: 0\ntimeout: 1\npoints: [${point}]`, 'taps.yaml:7:14: taps[0].timeout: must be a duration from 10ms to 1m; found 1'],
  ['misspelt byte order', `transport: tcp\nhost: h\naddressBase: 0\nbyteOrder: ABDC\npoints: [${point}]`, 'taps.yaml:7:16: taps[0].byteOrder: must be one of ABCD, CDAB, BADC, DCBA; found "ABDC"; did you mean "ABCD"?'],
  [
    'misspelt point key',
    'transport: tcp\nhost: h\naddressBase: 0\npoints: [{name: a, table: holding, address: 0, type: int16, adress: 3}]',
    'taps.yaml:7:65: taps[0].points[0].adress: unknown key; allowed keys: name, table, address, type, bit, length, byteOrder, unitId, scale, offset, unit; did you mean "address"?',
  ],
  ['parity mark', `transport: rtu\nserial: {path: /dev/ttyS0, parity: mark}\naddressBase: 0\npoints: [${point}]`, 'taps.yaml:5:40: taps[0].serial.parity: must be one of none, even, odd; found "mark"'],
  ['unit id 0 on a serial line', `transport: rtu\nserial: {path: /dev/ttyS0}\nunitId: 0\naddressBase: 0\npoints: [${point}]`, 'taps.yaml:6:13: taps[0].unitId: must be from 1 to 247 on a serial line; found 0'],
  ['no points', 'transport: tcp\nhost: h\naddressBase: 0\npoints: []', 'taps.yaml:7:13: taps[0].points: must have at least 1 item; found 0'],
  [
    'string longer than one request',
    'transport: tcp\nhost: h\naddressBase: 0\npoints: [{name: a, table: holding, address: 0, type: string, length: 251}]',
    'taps.yaml:7:74: taps[0].points[0].length: must be an integer from 1 to 250; found 251',
  ],
  [
    'serial on tcp, backoff inverted, byteOrder on a coil',
    'transport: tcp\nhost: h\nserial: {path: /dev/ttyS0}\naddressBase: 0\nbackoff: {initial: 10s, max: 1s}\npoints: [{name: a, table: coil, address: 0, type: bool, byteOrder: DCBA}]',
    [
      'taps.yaml:6:13: taps[0].serial: not used by transport tcp; remove it or use transport rtu',
      'taps.yaml:8:24: taps[0].backoff.initial: must not exceed backoff.max (1000 ms); found 10000 ms',
      'taps.yaml:9:72: taps[0].points[0].byteOrder: byteOrder does not apply to coil points',
    ].join('\n'),
  ],
];

for (const [title, body, expected] of broken) {
  test(`config error: ${title}`, () => {
    assert.throws(() => parseConfigText(tapYaml(body), 'taps.yaml', fileSchema), (err: Error) => {
      assert.equal(err.name, 'ConfigError');
      assert.equal(err.message, expected);
      return true;
    });
  });
}

test('sample.yaml is valid and defaults are filled in', () => {
  const text = readFileSync(path.join(repoRoot, 'agent', 'modbus', 'sample.yaml'), 'utf8');
  const config = parseConfigText(text, 'sample.yaml', fileSchema);
  assert.equal(config.taps.length, 3);
  const [plc, meters, station] = config.taps;
  assert.equal(plc!.timeout, 1000);
  assert.deepEqual(plc!.backoff, { initial: 1000, max: 60_000 });
  assert.deepEqual(meters!.target, { transport: 'rtu', path: '/dev/ttyUSB0', baudRate: 19200, parity: 'even', dataBits: 8, stopBits: 1 });
  assert.equal(meters!.timeout, 500);
  assert.deepEqual(meters!.points.map((p) => [p.unitId, p.order, p.address]), [[11, 'CDAB', 12], [12, 'CDAB', 12], [12, 'CDAB', 39]]);
  assert.deepEqual(station!.target, { transport: 'rtu-over-tcp', host: '10.0.5.7', port: 4001 });
  assert.equal(station!.retries, 1);
  assert.deepEqual(station!.points.map((p) => [p.unitId, p.order]), [[1, 'DCBA']]);
  // maxGap 4: the temperatures share one read, flow, energy-total and pressure (100..111) another.
  assert.deepEqual(plc!.plan.map((r) => `${r.unitId} ${r.table} ${r.start}+${r.count}`), ['1 coil 0+1', '1 discrete 5+1', '1 holding 100+12', '1 holding 120+1', '1 holding 200+8', '1 input 0+4']);
});

// ---- processing: the settings the driver runs on, made once

const tcpTap = { name: 't', type: 'modbus', transport: 'tcp', host: '127.0.0.1', addressBase: 0 };

test('processing applies every default once: port 502, unit 1, ABCD, timeout, retries, backoff, maxGap 0', () => {
  const settings = validate(modbusTapSchema, { ...tcpTap, points: [{ name: 'a', table: 'holding', address: 0, type: 'uint16' }, { name: 'b', table: 'holding', address: 2, type: 'float32' }] });
  assert.deepEqual(settings.target, { transport: 'tcp', host: '127.0.0.1', port: 502 });
  assert.deepEqual([settings.timeout, settings.retries, settings.backoff], [1000, 1, { initial: 1000, max: 60_000 }]);
  assert.deepEqual(settings.points.map((p) => [p.name, p.unitId, p.order, p.address, p.width]), [['a', 1, 'ABCD', 0, 1], ['b', 1, 'ABCD', 2, 2]]);
  // maxGap 0: the unused register 1 is never read, so two requests.
  assert.deepEqual(settings.plan.map((r) => [r.start, r.count, r.points]), [[0, 1, [0]], [2, 2, [1]]]);
  assert.equal(settings.interval, undefined, 'the agent supplies the effective interval');
  assert.equal('transport' in settings || 'serial' in settings || 'byteOrder' in settings || 'maxGap' in settings, false, 'only processed fields reach the driver');
});

test('processing fills the serial line defaults: 9600 baud, no parity, 8 data bits, 1 stop bit', () => {
  const settings = validate(modbusTapSchema, { name: 'r', type: 'modbus', transport: 'rtu', serial: { path: '/dev/ttyS3' }, addressBase: 0, points: [{ name: 'a', table: 'input', address: 0, type: 'int16' }] });
  assert.deepEqual(settings.target, { transport: 'rtu', path: '/dev/ttyS3', baudRate: 9600, parity: 'none', dataBits: 8, stopBits: 1 });
});

test('processing applies per-point overrides and the address base; requests never mix unit ids', () => {
  const settings = validate(modbusTapSchema, {
    ...tcpTap, addressBase: 1, unitId: 3, byteOrder: 'CDAB', maxGap: 10,
    points: [
      { name: 'a', table: 'holding', address: 1, type: 'float32' },
      { name: 'b', table: 'holding', address: 3, type: 'float32', byteOrder: 'DCBA', unitId: 4 },
      { name: 'c', table: 'holding', address: 5, type: 'int16', scale: 0.5, unit: 'bar' },
    ],
  });
  assert.deepEqual(settings.points.map((p) => [p.name, p.configAddress, p.address, p.unitId, p.order]), [['a', 1, 0, 3, 'CDAB'], ['b', 3, 2, 4, 'DCBA'], ['c', 5, 4, 3, 'CDAB']]);
  assert.deepEqual([settings.points[2]!.scale, settings.points[2]!.unit], [0.5, 'bar']);
  assert.deepEqual(settings.plan.map((r) => [r.unitId, r.start, r.count, r.points]), [[3, 0, 5, [0, 2]], [4, 2, 2, [1]]]);
});

test('a duplicate point name is reported once, at the second point\'s name', () => {
  const { issues } = check(modbusTapSchema, { ...tcpTap, points: [{ name: 'a', table: 'holding', address: 0, type: 'int16' }, { name: 'b', table: 'coil', address: 0, type: 'bool' }, { name: 'a', table: 'holding', address: 1, type: 'int16' }] });
  assert.deepEqual(issues, [{ path: ['points', 2, 'name'], message: 'duplicate point name "a" (also points[0])', target: 'value' }]);
});

test('a config built in code goes through the same processing (the driver gets no unchecked points)', async () => {
  const raw = { name: 't', type: 'modbus', transport: 'tcp', host: '127.0.0.1', addressBase: 0, points: [{ name: 'a', table: 'coil', address: 0, type: 'float32' }] };
  assert.throws(() => validate(modbusTapSchema, raw), (err: Error) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.message, 'points[0].type: a coil point must have type bool; found "float32"');
    return true;
  });
  const good = validate(modbusTapSchema, { ...raw, points: [{ name: 'a', table: 'holding', address: 0, type: 'int16' }] });
  const tap = createModbusTap(good, { logger: silentLogger() });
  assert.deepEqual(tap.points, ['a']);
  await tap.stop();
});

test('two taps on one serial path must agree on the line settings', async () => {
  const base = { type: 'modbus', transport: 'rtu', addressBase: 0, points: [{ name: 'a', table: 'holding', address: 0, type: 'int16' }] };
  const first = createModbusTap(validate(modbusTapSchema, { ...base, name: 'one', serial: { path: '/dev/ttyGHOST9', baudRate: 9600 } }), { logger: silentLogger() });
  try {
    assert.throws(
      () => createModbusTap(validate(modbusTapSchema, { ...base, name: 'two', serial: { path: '/dev/ttyGHOST9', baudRate: 19200 } }), { logger: silentLogger() }),
      /serial line \/dev\/ttyGHOST9 is already open at 9600 8N1; taps sharing a line must use the same settings \(got 19200 8N1\)/,
    );
    const same = createModbusTap(validate(modbusTapSchema, { ...base, name: 'three', serial: { path: '/dev/ttyGHOST9' } }), { logger: silentLogger() });
    await same.stop();
  } finally {
    await first.stop();
  }
});
