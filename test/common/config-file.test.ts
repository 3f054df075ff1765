import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MAX_CONFIG_BYTES, codeSource, configErrorAt, loadConfigFile, parseConfigText, parseConfigWithSource } from '../../common/config-file.js';
import { ConfigError, formatIssue, s, type Infer, type Schema } from '../../common/schema.js';

const point = s.object({
  name: s.string({ minLength: 1 }),
  type: s.enum(['bool', 'bit', 'int16', 'uint16', 'int32', 'uint32', 'float32']),
  address: s.integer({ min: 0, max: 65535 }),
  scale: s.optional(s.number()),
});
const modbus = s.object({
  name: s.string({ minLength: 1 }),
  type: s.literal('modbus'),
  transport: s.withDefault(s.enum(['tcp', 'rtu', 'rtu-over-tcp']), 'tcp'),
  address: s.hostPort(),
  timeout: s.withDefault(s.duration({ min: 100, max: 60_000 }), 1000),
  points: s.array(point, { minItems: 1 }),
});
const mqtt = s.object({
  name: s.string({ minLength: 1 }),
  type: s.literal('mqtt'),
  url: s.url({ protocols: ['mqtt', 'mqtts'] }),
  topics: s.array(s.string({ minLength: 1 }), { minItems: 1 }),
});
const agentSchema = s.object({
  interval: s.withDefault(s.duration({ min: 1000 }), 15_000),
  relay: s.object({ url: s.url({ protocols: ['http', 'https'] }), maxBlob: s.withDefault(s.size(), 64 * 1024) }),
  taps: s.array(s.oneOf('type', { modbus, mqtt })),
});

/** The lines of the ConfigError thrown for `text`, or [] if it parsed. */
function problems(text: string, schema: Schema<unknown> = agentSchema): string[] {
  try {
    parseConfigText(text, 'agent.yaml', schema);
    return [];
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.message, err.issues.map(formatIssue).join('\n'));
    for (const issue of err.issues) assert.equal(issue.file, 'agent.yaml');
    return err.message.split('\n');
  }
}

const GOOD = `# a site gateway
interval: 15s
relay:
  url: http://127.0.0.1:8080
  maxBlob: 1MiB
taps:
  - name: plc1
    type: modbus
    address: 192.168.1.10:502
    points:
      - { name: temp, type: int16, address: 0, scale: 0.1 }
      - name: running
        type: bool
        address: 1
  - name: broker
    type: mqtt
    url: mqtts://broker.local:8883
    topics: [site/+/temp]
`;

test('a good document produces a typed value with defaults', () => {
  const config: Infer<typeof agentSchema> = parseConfigText(GOOD, 'agent.yaml', agentSchema);
  assert.deepEqual(config, {
    interval: 15_000,
    relay: { url: 'http://127.0.0.1:8080', maxBlob: 1_048_576 },
    taps: [
      {
        name: 'plc1',
        type: 'modbus',
        transport: 'tcp',
        address: { host: '192.168.1.10', port: 502 },
        timeout: 1000,
        points: [
          { name: 'temp', type: 'int16', address: 0, scale: 0.1 },
          { name: 'running', type: 'bool', address: 1 },
        ],
      },
      { name: 'broker', type: 'mqtt', url: 'mqtts://broker.local:8883', topics: ['site/+/temp'] },
    ],
  });
  // Anchors and aliases within the limit are fine, and so are core tags like !!str.
  const withAlias = parseConfigText(`relay: {url: "https://r"}\ntaps:\n  - &t {name: a, type: mqtt, url: "mqtt://b", topics: [!!str x]}\n  - *t\n`, 'a.yaml', agentSchema);
  assert.equal(withAlias.taps.length, 2);
  assert.deepEqual(withAlias.taps[1], withAlias.taps[0]);
});

// Each entry: a broken document and the exact lines of the error it must produce, in position order.
const BROKEN: Array<{ name: string; text: string; lines: string[] }> = [
  {
    name: 'wrong enum value, misspelt key, plain number duration, missing key',
    text: `interval: 15
relay:
  maxBlob: 32MiB
taps:
  - name: plc1
    type: modbus
    address: 10.0.0.1:502
    points:
      - name: a
        type: int23
        address: 0
        scael: 2
`,
    lines: [
      'agent.yaml:1:11: interval: must be a duration of at least 1s; found 15',
      'agent.yaml:3:3: relay.url: required',
      'agent.yaml:10:15: taps[0].points[0].type: must be one of bool, bit, int16, uint16, int32, uint32, float32; found "int23"; did you mean "int32"?',
      'agent.yaml:12:9: taps[0].points[0].scael: unknown key; allowed keys: name, type, address, scale; did you mean "scale"?',
    ],
  },
  {
    name: 'unknown tap type and missing discriminator',
    text: `relay: { url: "https://relay" }
taps:
  - name: a
    type: modbsu
  - name: b
`,
    lines: [
      'agent.yaml:4:11: taps[0].type: must be one of modbus, mqtt; found "modbsu"; did you mean "modbus"?',
      'agent.yaml:5:5: taps[1].type: required; must be one of modbus, mqtt',
    ],
  },
  {
    name: 'empty values, wrong scalar types and flow collections',
    text: `relay:
  url:
taps:
  - {name: m, type: mqtt, url: "ftp://x", topics: []}
  - {name: p, type: modbus, address: "[::1]:99999", timeout: 50ms, points: [{name: "", type: bit, address: -1}]}
`,
    lines: [
      'agent.yaml:2:3: relay.url: must be a URL starting with http:// or https://; found an empty value',
      'agent.yaml:4:32: taps[0].url: must be a URL starting with mqtt:// or mqtts://; found "ftp://x"',
      'agent.yaml:4:51: taps[0].topics: must have at least 1 item; found 0',
      'agent.yaml:5:38: taps[1].address: must be host:port like "127.0.0.1:502" or "[::1]:4840"; found "[::1]:99999" (port must be from 1 to 65535)',
      'agent.yaml:5:62: taps[1].timeout: must be a duration from 100ms to 1m; found "50ms"',
      'agent.yaml:5:84: taps[1].points[0].name: must be a non-empty string; found "" (0 characters)',
      'agent.yaml:5:108: taps[1].points[0].address: must be an integer from 0 to 65535; found -1',
    ],
  },
  {
    name: 'root is not a mapping',
    text: `- a\n- b\n`,
    lines: ['agent.yaml:1:1: must be a mapping; found a list'],
  },
  {
    name: 'document has only comments',
    text: `# nothing here\n`,
    lines: ['agent.yaml:1:1: the file has no content; expected a mapping'],
  },
  {
    name: 'duplicate keys, at any depth',
    text: `relay:\n  url: "https://a"\n  url: "https://b"\ntaps: []\ntaps: []\n`,
    lines: ['agent.yaml:3:3: relay.url: duplicate key; first defined on line 2', 'agent.yaml:5:1: taps: duplicate key; first defined on line 4'],
  },
  {
    name: 'YAML syntax error',
    text: `relay:\n  url: [https://a\ntaps: []\n`,
    lines: [
      'agent.yaml:3:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ],
  },
  {
    name: 'tab indentation',
    text: `relay:\n\turl: "https://a"\n`,
    lines: ['agent.yaml:2:1: invalid YAML: Tabs are not allowed as indentation'],
  },
  {
    name: 'custom and non-core tags',
    text: `relay: !relay {url: "https://a"}\ntaps: !!set {a, b}\n`,
    lines: ['agent.yaml:1:8: relay: the tag !relay is not allowed; use plain YAML values', 'agent.yaml:2:7: taps: the tag !!set is not allowed; use plain YAML values'],
  },
  {
    name: 'complex keys',
    text: `? [a, b]\n: 1\nrelay: {url: "https://a"}\ntaps: []\n`,
    lines: ['agent.yaml:1:3: keys must be plain text, not lists, mappings, aliases or tagged values'],
  },
  {
    name: 'merge keys are not special',
    text: `base: &b {url: "https://a"}\nrelay:\n  <<: *b\ntaps: []\n`,
    lines: [
      'agent.yaml:1:1: base: unknown key; allowed keys: interval, relay, taps',
      'agent.yaml:3:3: relay["<<"]: unknown key; allowed keys: url, maxBlob',
      'agent.yaml:3:3: relay.url: required',
    ],
  },
  {
    name: 'YAML 1.1 directive',
    text: `%YAML 1.1\n---\nrelay: {url: "https://a"}\ntaps: []\n`,
    lines: ['agent.yaml:1:1: only YAML 1.2 is supported; remove the %YAML 1.1 directive'],
  },
  {
    name: 'several documents',
    text: `relay: {url: "https://a"}\ntaps: []\n---\ninterval: 1s\n`,
    lines: ['agent.yaml:3:1: invalid YAML: Source contains multiple documents; please use YAML.parseAllDocuments()'],
  },
  {
    name: 'undefined alias',
    text: `relay: *nothing\ntaps: []\n`,
    lines: ['agent.yaml:1:8: relay: the alias *nothing has no anchor &nothing before it'],
  },
];

test('broken documents produce exact file:line:column messages', () => {
  for (const { name, text, lines } of BROKEN) assert.deepEqual(problems(text), lines, name);
});

test('yes/no/on/off stay strings under YAML 1.2 and octal-looking numbers are decimal', () => {
  const schema = s.object({ a: s.string(), b: s.boolean(), c: s.integer(), d: s.string() });
  assert.deepEqual(parseConfigText('a: yes\nb: true\nc: 0o17\nd: "0502"\n', 'x.yaml', schema), { a: 'yes', b: true, c: 15, d: '0502' });
  assert.deepEqual(problems('a: 1\nb: on\nc: 1.0e3\nd: no\n', schema), ['agent.yaml:1:4: a: must be a string; found 1 (quote it to make it a string)', 'agent.yaml:2:4: b: must be true or false; found "on"']);
});

test('hostile documents are refused with a bounded amount of work', () => {
  // Billion laughs: each level multiplies the previous by 10.
  let bomb = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n';
  for (let level = 1; level < 9; level++) {
    const prev = String.fromCharCode(96 + level);
    const name = String.fromCharCode(97 + level);
    bomb += `${name}: &${name} [${Array(10).fill('*' + prev).join(',')}]\n`;
  }
  assert.deepEqual(problems(bomb), ['agent.yaml: too many alias expansions; the limit is 100']);

  // Pathological nesting is refused by a linear pre-scan before the YAML parser recurses into it.
  assert.deepEqual(problems('relay: ' + '['.repeat(500_000)), ['agent.yaml:1:72: nested more than 64 levels deep']);
  assert.deepEqual(problems('taps:\n' + '- '.repeat(100_000) + 'x\n'), ['agent.yaml:2:129: nested more than 64 levels deep']);
  assert.deepEqual(problems('relay: "' + '['.repeat(100) + '" # ' + '{'.repeat(100) + '\ntaps: []\n'), ['agent.yaml:1:8: relay: must be a mapping; found "' + '['.repeat(60) + '"…']);
  // Block nesting by indentation is caught while walking the parsed document.
  const indented = 'relay:\n' + Array.from({ length: 70 }, (_, i) => ' '.repeat(i + 2) + 'a:').join('\n') + ' x\n';
  assert.deepEqual(problems(indented), [`agent.yaml:65:66: relay${'.a'.repeat(63)}: nested more than 64 levels deep`]);

  const oversized = 'a: "' + 'x'.repeat(MAX_CONFIG_BYTES) + '"\n';
  assert.deepEqual(problems(oversized), [`agent.yaml: file is too large: ${MAX_CONFIG_BYTES + 6} bytes; the limit is 1048576 (1MiB)`]);

  // A long line of unknown keys reports every one of them, nothing else is lost.
  const manyKeys = Array.from({ length: 500 }, (_, i) => `k${i}: 1`).join('\n') + '\nrelay: {url: "https://a"}\ntaps: []\n';
  const lines = problems(manyKeys);
  assert.equal(lines.length, 500);
  assert.equal(lines[499], 'agent.yaml:500:1: k499: unknown key; allowed keys: interval, relay, taps');
});

test('loadConfigFile reads files and explains why it cannot', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ghostpipe-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const failure = (file: string): string => {
    try {
      loadConfigFile(file, agentSchema);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.message;
    }
    assert.fail(`${file} should not load`);
  };

  const good = path.join(dir, 'agent.yaml');
  writeFileSync(good, GOOD);
  assert.equal(loadConfigFile(good, agentSchema).taps.length, 2);

  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(bad, GOOD.replace('interval: 15s', 'interval: 15sec'));
  assert.equal(failure(bad), `${bad}:2:11: interval: must be a duration of at least 1s; found "15sec" (unknown unit "sec"; use ms, s, m, h, d)`);

  const missing = path.join(dir, 'missing.yaml');
  assert.equal(failure(missing), `${missing}: config file not found`);
  assert.equal(failure(dir), `${dir}: is a directory, not a config file`);
  assert.equal(failure('/dev/null'), '/dev/null: is not a regular file');
  const fifo = path.join(dir, 'fifo.yaml');
  execFileSync('mkfifo', [fifo]);
  assert.equal(failure(fifo), `${fifo}: is not a regular file`); // and does not hang waiting for a writer
  const notDir = path.join(good, 'x.yaml');
  assert.match(failure(notDir), /: cannot read the config file: ENOTDIR/);

  const big = path.join(dir, 'big.yaml');
  writeFileSync(big, Buffer.alloc(MAX_CONFIG_BYTES + 1, 0x20));
  assert.equal(failure(big), `${big}: file is too large: ${MAX_CONFIG_BYTES + 1} bytes; the limit is 1048576 (1MiB)`);

  const latin1 = path.join(dir, 'latin1.yaml');
  writeFileSync(latin1, Buffer.from('relay: {url: "https://r\xe9lais"}\n', 'latin1'));
  assert.equal(failure(latin1), `${latin1}: file is not valid UTF-8 text`);

  const sub = path.join(dir, 'sub');
  mkdirSync(sub);
  const empty = path.join(sub, 'empty.yaml');
  writeFileSync(empty, '');
  assert.equal(failure(empty), `${empty}:1:1: the file has no content; expected a mapping`);
});

test('the source of a parse places problems found later at the value\'s line and column, without reading the file again', () => {
  const schema = s.object({ keys: s.array(s.object({ name: s.string(), file: s.string() })) });
  const text = 'keys:\n  - name: a\n    file: /k/a.key\n  - { name: b, file: /k/b.key }\n';
  const { value, source } = parseConfigWithSource(text, 'c.yaml', schema);
  assert.equal(value.keys.length, 2);
  assert.deepEqual(source.positionOf(['keys', 0, 'file']), { line: 3, column: 11 });
  assert.deepEqual(source.positionOf(['keys', 1, 'file']), { line: 4, column: 22 });
  const err = configErrorAt(source, [{ path: ['keys', 1, 'file'], message: '/k/b.key: no such file' }, { path: ['keys', 0, 'file'], message: '/k/a.key: permission denied' }]);
  assert.equal(err.message, 'c.yaml:4:22: keys[1].file: /k/b.key: no such file\nc.yaml:3:11: keys[0].file: /k/a.key: permission denied');
  assert.equal(configErrorAt(codeSource('bench'), [{ path: ['keys', 0, 'file'], message: 'gone' }]).message, 'bench: keys[0].file: gone');
});
