import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfigText } from '../../common/config-file.js';
import { s, validate } from '../../common/schema.js';
import { repoRoot } from '../../test/helpers/paths.js';
import { modbusTapSchema } from './schema.js';
import { createModbusTap, ModbusConfigError } from './index.js';
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
  assert.deepEqual(meters!.serial, { path: '/dev/ttyUSB0', baudRate: 19200, parity: 'even', dataBits: 8, stopBits: 1 });
  assert.equal(meters!.timeout, 500);
  assert.equal(station!.byteOrder, 'ABCD');
  assert.equal(station!.retries, 1);
  assert.equal(station!.maxGap, 0);
  assert.equal(station!.unitId, 1);
  assert.equal(station!.port, 4001);
  assert.equal(meters!.port, undefined, 'port defaults to 502 in the driver, so rtu can reject a stray port');
});

test('the driver rejects what the schema would (configs built in code skip the schema)', () => {
  const config = validate(modbusTapSchema, { name: 't', type: 'modbus', transport: 'tcp', host: '127.0.0.1', addressBase: 0, points: [{ name: 'a', table: 'holding', address: 0, type: 'int16' }] });
  const bad = { ...config, points: [{ name: 'a', table: 'coil' as const, address: 0, type: 'float32' as const }] };
  assert.throws(() => createModbusTap(bad, { logger: silentLogger() }), (err: Error) => {
    assert.ok(err instanceof ModbusConfigError);
    assert.equal(err.message, 'tap t: points[0].type: a coil point must have type bool; found "float32"');
    return true;
  });
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
