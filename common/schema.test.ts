import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, formatIssue, formatPath, s, suggest, validate, type Infer, type Schema } from './schema.js';

/** Compile-time equality: the test file does not build if Infer<> produces the wrong type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(_proof?: T): void {}

/** The message lines validate() throws, or [] when the value is accepted. */
function problems(schema: Schema<unknown>, value: unknown): string[] {
  try {
    validate(schema, value);
    return [];
  } catch (err) {
    assert.ok(err instanceof ConfigError, 'validate must throw ConfigError');
    return err.message.split('\n');
  }
}

const point = s.object({
  name: s.string({ minLength: 1, maxLength: 32 }),
  type: s.enum(['bool', 'bit', 'int16', 'uint16', 'int32', 'uint32', 'float32']),
  scale: s.optional(s.number()),
  offset: s.withDefault(s.number(), 0),
});
const modbusTap = s.object({
  name: s.string({ minLength: 1 }),
  type: s.literal('modbus'),
  address: s.hostPort(),
  unitId: s.withDefault(s.integer({ min: 0, max: 255 }), 1),
  timeout: s.withDefault(s.duration({ min: 100, max: 60_000 }), 1000),
  points: s.refine(s.array(point, { minItems: 1 }), (points) => {
    const seen = new Set<string>();
    return points.flatMap((p, index) => {
      if (seen.has(p.name)) return [{ path: [index, 'name'], message: `duplicate point name ${JSON.stringify(p.name)}` }];
      seen.add(p.name);
      return [];
    });
  }),
});
const mqttTap = s.object({
  name: s.string({ minLength: 1 }),
  type: s.literal('mqtt'),
  url: s.url({ protocols: ['mqtt', 'mqtts'] }),
  password: s.optional(s.string({ secret: true })),
  values: s.withDefault(s.record(s.union(s.number(), s.string())), {}),
});
const agent = s.object({
  interval: s.withDefault(s.duration(), 15_000),
  maxFrame: s.withDefault(s.size({ max: 5 * 1024 * 1024 }), 64 * 1024),
  debug: s.optional(s.boolean()),
  taps: s.array(s.oneOf('type', { modbus: modbusTap, mqtt: mqttTap })),
});

test('Infer<> gives precise static types', () => {
  type Agent = Infer<typeof agent>;
  type Tap = Agent['taps'][number];
  assertType<Equal<Agent['interval'], number>>();
  assertType<Equal<Agent['debug'], boolean | undefined>>();
  assertType<Equal<Tap['type'], 'modbus' | 'mqtt'>>();
  assertType<Equal<Extract<Tap, { type: 'modbus' }>['address'], { host: string; port: number }>>();
  assertType<Equal<Extract<Tap, { type: 'modbus' }>['points'][number]['type'], 'bool' | 'bit' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32'>>();
  assertType<Equal<Extract<Tap, { type: 'mqtt' }>['values'], Record<string, number | string>>>();
  // Optional keys may be left out when building a value by hand (e.g. in another part's tests).
  const built: Infer<typeof point> = { name: 'p', type: 'bool', offset: 0 };
  assert.equal(built.scale, undefined);
});

test('a good value parses with defaults applied and no extra keys', () => {
  const config = validate(agent, {
    interval: '1m30s',
    taps: [
      { name: 'plc1', type: 'modbus', address: '[::1]:5020', points: [{ name: 'temp', type: 'int16', scale: 0.1 }] },
      { name: 'broker', type: 'mqtt', url: 'mqtts://broker.local:8883', password: null, values: { a: 1, b: 'x' } },
    ],
  });
  assert.deepEqual(config, {
    interval: 90_000,
    maxFrame: 65_536,
    taps: [
      {
        name: 'plc1',
        type: 'modbus',
        address: { host: '::1', port: 5020 },
        unitId: 1,
        timeout: 1000,
        points: [{ name: 'temp', type: 'int16', scale: 0.1, offset: 0 }],
      },
      { name: 'broker', type: 'mqtt', url: 'mqtts://broker.local:8883', values: { a: 1, b: 'x' } },
    ],
  });
  assert.equal('debug' in config, false);
});

test('defaults are copied, never shared between parses', () => {
  const schema = s.object({ list: s.withDefault(s.array(s.string()), ['a']) });
  const first = validate(schema, {});
  first.list.push('mutated');
  assert.deepEqual(validate(schema, {}).list, ['a']);
});

test('every issue is collected with its path, in one ConfigError', () => {
  const lines = problems(agent, {
    interval: 15,
    taps: [
      { name: 'plc1', type: 'modbus', address: '10.0.0.5', unitId: 300, points: [{ name: 'a', type: 'int23', scael: 1 }, { name: 'a', type: 'bool' }] },
      { name: 'x', type: 'modbsu' },
      { name: 'y' },
      { name: 'm', type: 'mqtt', url: 'http://user:hunter2@broker', password: 42 },
    ],
  });
  assert.deepEqual(lines, [
    'interval: must be a duration like "15s" or "500ms"; found 15',
    'taps[0].address: must be host:port like "127.0.0.1:502" or "[::1]:4840"; found "10.0.0.5" (missing ":port")',
    'taps[0].unitId: must be an integer from 0 to 255; found 300',
    'taps[0].points[0].type: must be one of bool, bit, int16, uint16, int32, uint32, float32; found "int23"; did you mean "int32"?',
    'taps[0].points[0].scael: unknown key; allowed keys: name, type, scale, offset; did you mean "scale"?',
    'taps[1].type: must be one of modbus, mqtt; found "modbsu"; did you mean "modbus"?',
    'taps[2].type: required; must be one of modbus, mqtt',
    'taps[3].url: must be a URL starting with mqtt:// or mqtts://; found "http://***@broker"',
    'taps[3].password: must be a string; found a hidden number (quote it to make it a string)',
  ]);
  // The refine check runs only once the array itself is valid.
  const duplicate = problems(agent, { taps: [{ name: 'p', type: 'modbus', address: 'plc:502', points: [{ name: 'a', type: 'bool' }, { name: 'a', type: 'bit' }] }] });
  assert.deepEqual(duplicate, ['taps[0].points[1].name: duplicate point name "a"']);
});

test('scalar schemas say what is allowed and what was found', () => {
  const table: Array<[Schema<unknown>, unknown, string | undefined]> = [
    [s.string(), 'ok', undefined],
    [s.string(), 502, 'must be a string; found 502 (quote it to make it a string)'],
    [s.string(), null, 'must be a string; found an empty value'],
    [s.string({ minLength: 1 }), '', 'must be a non-empty string; found "" (0 characters)'],
    [s.string({ minLength: 2, maxLength: 3 }), 'abcd', 'must be a string of 2 to 3 characters; found "abcd" (4 characters)'],
    [s.string({ maxLength: 3 }), 'abcd', 'must be a string of at most 3 characters; found "abcd" (4 characters)'],
    [s.string({ pattern: /^ns=\d+;/g }), 'ns=2;s=x', undefined],
    [s.string({ pattern: /^ns=\d+;/g }), 'ns=2;s=y', undefined], // a /g pattern must not keep state
    [s.string({ pattern: /^ns=\d+;/ }), 'i=5', 'must be a string matching /^ns=\\d+;/; found "i=5"'],
    [s.string({ pattern: /^ns=/, hint: 'an OPC-UA node id like "ns=2;s=Temp"' }), 'x', 'must be an OPC-UA node id like "ns=2;s=Temp"; found "x"'],
    [s.string({ secret: true, minLength: 8 }), 'hunter2', 'must be a string of at least 8 characters; found a hidden string (7 characters)'],
    [s.integer(), 'x'.repeat(100), `must be an integer; found "${'x'.repeat(60)}"…`],
    [s.number({ min: 0 }), -1, 'must be a number of at least 0; found -1'],
    [s.number({ max: 10 }), 11, 'must be a number of at most 10; found 11'],
    [s.number(), NaN, 'must be a number; found NaN'],
    [s.number(), Infinity, 'must be a number; found Infinity'],
    [s.number(), '5', 'must be a number; found "5"'],
    [s.integer({ min: 1, max: 65535 }), 70000, 'must be an integer from 1 to 65535; found 70000'],
    [s.integer(), 1.5, 'must be an integer; found 1.5'],
    [s.integer(), 2 ** 53, 'must be an integer; found 9007199254740992'],
    [s.boolean(), 'yes', 'must be true or false; found "yes"'],
    [s.boolean(), false, undefined],
    [s.literal(3), 3, undefined],
    [s.literal('opcua'), 'OPCUA', 'must be "opcua"; found "OPCUA"'],
    [s.enum(['read', 'subscribe']), 'Read', 'must be one of read, subscribe; found "Read"; did you mean "read"?'],
    [s.enum(['read', 'subscribe']), 'poll', 'must be one of read, subscribe; found "poll"'],
    [s.enum(['read', 'subscribe']), ['read'], 'must be one of read, subscribe; found a list'],
    [s.duration(), '15x', 'must be a duration like "15s" or "500ms"; found "15x" (unknown unit "x"; use ms, s, m, h, d)'],
    [s.duration(), '', 'must be a duration like "15s" or "500ms"; found "" (empty)'],
    [s.duration(), '-1s', 'must be a duration like "15s" or "500ms"; found "-1s" (negative durations are not allowed)'],
    [s.duration({ min: 1000, max: 86_400_000 }), '48h', 'must be a duration from 1s to 1d; found "48h"'],
    [s.duration({ min: 100 }), '50ms', 'must be a duration of at least 100ms; found "50ms"'],
    [s.size(), '32MiB', undefined],
    [s.size({ min: 1024, max: 32 * 1024 * 1024 }), '64MiB', 'must be a size from 1KiB to 32MiB; found "64MiB"'],
    [s.size(), true, 'must be a size like "32MiB" or "4KiB"; found true'],
    [s.size(), '1.5B', 'must be a size like "32MiB" or "4KiB"; found "1.5B" (not a whole number of bytes)'],
    [s.hostPort(), '::1:502', 'must be host:port like "127.0.0.1:502" or "[::1]:4840"; found "::1:502" (write IPv6 addresses in brackets, like "[::1]:4840")'],
    [s.hostPort(), '[fe80::zz]:1', 'must be host:port like "127.0.0.1:502" or "[::1]:4840"; found "[fe80::zz]:1" ("fe80::zz" is not an IPv6 address)'],
    [s.hostPort(), '300.1.1.1:502', 'must be host:port like "127.0.0.1:502" or "[::1]:4840"; found "300.1.1.1:502" ("300.1.1.1" is not an IPv4 address or host name)'],
    [s.hostPort(), 'plc_1:502', 'must be host:port like "127.0.0.1:502" or "[::1]:4840"; found "plc_1:502" ("plc_1" is not an IPv4 address or host name)'],
    [s.hostPort(), 'plc:0', 'must be host:port like "127.0.0.1:502" or "[::1]:4840"; found "plc:0" (port must be from 1 to 65535)'],
    [s.hostPort(), 'plc:http', 'must be host:port like "127.0.0.1:502" or "[::1]:4840"; found "plc:http" (port must be a number from 1 to 65535)'],
    [s.hostPort(), '[::1]', 'must be host:port like "127.0.0.1:502" or "[::1]:4840"; found "[::1]" (missing ":port")'],
    [s.hostPort(), 'plc:502:1', 'must be host:port like "127.0.0.1:502" or "[::1]:4840"; found "plc:502:1" (write IPv6 addresses in brackets, like "[::1]:4840")'],
    [s.hostPort(), 'plc:123456', 'must be host:port like "127.0.0.1:502" or "[::1]:4840"; found "plc:123456" (port must be a number from 1 to 65535)'],
    [s.hostPort({ allowPortZero: true }), '127.0.0.1:0', undefined],
    [s.url(), 'not a url', 'must be a URL; found "not a url" (not a valid URL)'],
    [s.url({ protocols: ['https:'] }), 'HTTPS://relay.example', undefined],
    [s.array(s.string(), { minItems: 1 }), [], 'must have at least 1 item; found 0'],
    [s.array(s.string(), { maxItems: 2 }), ['a', 'b', 'c'], 'must have at most 2 items; found 3'],
    [s.array(s.string()), 'a', 'must be a list; found "a"'],
    [s.object({}), [], 'must be a mapping; found an empty list'],
    [s.record(s.number()), { a: 'x' }, 'a: must be a number; found "x"'],
    [s.refine(s.integer(), (n) => (n % 2 === 0 ? undefined : 'must be even')), 3, 'must be even'],
    [s.union(s.number({ min: 0 }), s.boolean()), -1, 'must be a number of at least 0 or true or false; found -1'],
  ];
  for (const [schema, value, expected] of table) {
    const lines = problems(schema, value);
    if (expected === undefined) assert.deepEqual(lines, [], `${JSON.stringify(value)} should be accepted`);
    else assert.deepEqual(lines, [expected], JSON.stringify(value));
  }
});

test('hostPort and url return normalised values', () => {
  assert.deepEqual(validate(s.hostPort(), '[::1]:4840'), { host: '::1', port: 4840 });
  assert.deepEqual(validate(s.hostPort(), 'plc-1.site.local:502'), { host: 'plc-1.site.local', port: 502 });
  assert.equal(validate(s.url({ protocols: ['mqtt'] }), 'mqtt://127.0.0.1:1883'), 'mqtt://127.0.0.1:1883');
});

test('union reports the branch that matched the shape but failed deeper', () => {
  const schema = s.union(s.string(), s.object({ host: s.string(), port: s.integer() }));
  assert.deepEqual(validate(schema, { host: 'a', port: 1 }), { host: 'a', port: 1 });
  assert.deepEqual(problems(schema, { host: 'a', port: 'x' }), ['port: must be an integer; found "x"']);
  assert.deepEqual(problems(schema, 5), ['must be a string or a mapping; found 5']);
});

test('records refuse __proto__ and objects treat it as an unknown key', () => {
  const input = JSON.parse('{"__proto__": 1, "ok": 2}');
  assert.deepEqual(problems(s.record(s.number()), input), ['__proto__: this name is reserved; choose another']);
  assert.deepEqual(problems(s.object({ ok: s.number() }), input), ['__proto__: unknown key; allowed keys: ok']);
  assert.equal(Object.getPrototypeOf(validate(s.record(s.number()), { a: 1 })), Object.prototype);
});

test('paths, suggestions and issue lines are formatted predictably', () => {
  assert.equal(formatPath(['taps', 2, 'points', 0, 'type']), 'taps[2].points[0].type');
  assert.equal(formatPath(['values', 'room 1/temp', 'x']), 'values["room 1/temp"].x');
  assert.equal(formatPath([]), '');
  assert.equal(suggest('scael', ['scale', 'name']), 'scale');
  assert.equal(suggest('intervall', ['interval', 'timeout']), 'interval');
  assert.equal(suggest('zzz', ['scale', 'name']), undefined);
  assert.equal(suggest('a'.repeat(200), ['a']), undefined);
  assert.equal(formatIssue({ file: 'a.yaml', line: 3, column: 5, path: 'x.y', message: 'required' }), 'a.yaml:3:5: x.y: required');
  assert.equal(formatIssue({ file: 'a.yaml', path: '', message: 'config file not found' }), 'a.yaml: config file not found');
  assert.equal(formatIssue({ path: 'x', message: 'required' }), 'x: required');
  const err = (() => {
    try {
      validate(s.object({ a: s.string() }), {}, 'agent.yaml');
    } catch (e) {
      return e;
    }
  })();
  assert.ok(err instanceof ConfigError);
  assert.deepEqual(err.issues, [{ file: 'agent.yaml', path: 'a', message: 'required' }]);
  assert.equal(err.message, 'agent.yaml: a: required');
});

test('process runs only on an accepted value, reports its issues at their paths, and returns the processed value', () => {
  let calls = 0;
  const span = s.process(s.object({ from: s.integer(), to: s.withDefault(s.integer(), 10) }), (value) => {
    calls++;
    return value.from > value.to ? { ok: false, issues: [{ path: ['from'], message: `must not exceed to (${value.to})` }] } : { ok: true, value: { length: value.to - value.from } };
  });
  const schema = s.object({ spans: s.array(span) });
  assertType<Equal<Infer<typeof span>, { length: number }>>();
  assert.deepEqual(validate(schema, { spans: [{ from: 3 }, { from: 1, to: 2 }] }), { spans: [{ length: 7 }, { length: 1 }] });
  assert.equal(calls, 2);
  assert.deepEqual(problems(schema, { spans: [{ from: 'x' }, { from: 20 }] }), ['spans[0].from: must be an integer; found "x"', 'spans[1].from: must not exceed to (10)']);
  assert.equal(calls, 3, 'not called for the value the schema refused');
});
