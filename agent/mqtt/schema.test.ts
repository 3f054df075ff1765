/** Broken MQTT tap configs and the exact messages an operator sees (file:line:col: path: message). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfigText } from '../../common/config-file.js';
import { check, ConfigError, s, validate } from '../../common/schema.js';
import { repoRoot } from '../../test/helpers/paths.js';
import { mqttTapSchema } from './index.js';

const fileSchema = s.object({ taps: s.array(mqttTapSchema) });

/** A tap entry at line 2; `tapLines` replace its settings (4-space indent), `pointLines` its one point (8-space). */
function yaml(tapLines: string[], pointLines: string[] = ['name: p', 'topic: plant/+/temp']): string {
  return ['taps:', '  - name: boiler', '    type: mqtt', ...tapLines.map((l) => '    ' + l), '    points:',
    ...pointLines.map((l, i) => (i === 0 ? '      - ' : '        ') + l)].join('\n') + '\n';
}
const URL_LINE = 'url: mqtt://127.0.0.1:1883';

function errorOf(text: string): string {
  try {
    parseConfigText(text, 'agent.yaml', fileSchema);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('config was accepted:\n' + text);
}

test('a valid tap gets its defaults', () => {
  const config = parseConfigText(yaml([URL_LINE]), 'agent.yaml', fileSchema);
  const { clientId, ...settings } = config.taps[0]!;
  assert.match(clientId, /^ghostpipe-boiler-[0-9a-f]{8}$/);
  assert.deepEqual(settings, {
    name: 'boiler', type: 'mqtt', url: 'mqtt://127.0.0.1:1883', protocolVersion: 5, keepalive: 30_000, connectTimeout: 10_000,
    maxMessageSize: 262_144, reconnect: { initial: 1_000, max: 30_000 }, points: [{ name: 'p', topic: 'plant/+/temp', qos: 1, decode: {} }],
    subscriptions: [{ filter: 'plant/+/temp', qos: 1 }],
  });
});

// ---- processing: the settings the driver runs on, made once

const settingsOf = (raw: Record<string, unknown>) => validate(mqttTapSchema, { name: 'boiler', type: 'mqtt', url: 'mqtt://127.0.0.1:1883', ...raw });

test('processing resolves each point\'s QoS (its own, else the tap\'s) and subscribes each filter once at the highest', () => {
  const settings = settingsOf({
    qos: 0,
    points: [{ name: 'a', topic: 'p/a' }, { name: 'b', topic: 'p/+', qos: 1 }, { name: 'c', topic: 'p/+', qos: 2, json: '$.v' }, { name: 'd', topic: 'p/a' }],
  });
  assert.deepEqual(settings.points.map((p) => [p.name, p.qos]), [['a', 0], ['b', 1], ['c', 2], ['d', 0]]);
  assert.deepEqual(settings.subscriptions, [{ filter: 'p/a', qos: 0 }, { filter: 'p/+', qos: 2 }]);
});

test('processing compiles the JSON paths once and keeps the decoding settings of each point', () => {
  const [point] = settingsOf({ points: [{ name: 'a', topic: 't', json: '$.sensors[0].value', type: 'number', scale: 2, offset: 1, unit: 'bar', timestamp: '$.ts', timestampUnit: 's' }] }).points;
  assert.deepEqual(point, {
    name: 'a', topic: 't', qos: 1, unit: 'bar',
    decode: {
      json: { text: '$.sensors[0].value', segments: [{ kind: 'key', key: 'sensors' }, { kind: 'index', index: 0 }, { kind: 'key', key: 'value' }] },
      type: 'number', scale: 2, offset: 1, timestamp: { text: '$.ts', segments: [{ kind: 'key', key: 'ts' }] }, timestampUnit: 's',
    },
  });
});

test('processing: the client id is the configured one, else ghostpipe-<tap name made safe, 32 chars>-<8 random hex>', () => {
  assert.equal(settingsOf({ clientId: 'gw01', points: [{ name: 'a', topic: 't' }] }).clientId, 'gw01');
  const name = 'boiler house #2/' + 'x'.repeat(40);
  const generated = settingsOf({ name, points: [{ name: 'a', topic: 't' }] }).clientId;
  assert.match(generated, /^ghostpipe-boiler_house__2_x{16}-[0-9a-f]{8}$/);
  assert.notEqual(settingsOf({ name, points: [{ name: 'a', topic: 't' }] }).clientId, generated, 'a new suffix at every load');
});

test('processing keeps staleAfter, interval, size, backoff and credentials as configured', () => {
  const settings = settingsOf({ interval: '30s', staleAfter: '1m', maxMessageSize: '1KiB', reconnect: { initial: '2s', max: '1m' }, keepalive: '10s', protocolVersion: 4, username: 'gw', passwordFile: '/s/pw', points: [{ name: 'a', topic: 't' }] });
  assert.deepEqual(
    [settings.interval, settings.staleAfter, settings.maxMessageSize, settings.reconnect, settings.keepalive, settings.protocolVersion, settings.username, settings.passwordFile],
    [30_000, 60_000, 1024, { initial: 2000, max: 60_000 }, 10_000, 4, 'gw', '/s/pw'],
  );
  assert.equal(settingsOf({ points: [{ name: 'a', topic: 't' }] }).staleAfter, undefined, 'absent: the tap\'s effective interval, given by the agent at creation');
});

test('a duplicate point name is reported once, at the second point\'s name', () => {
  const { issues } = check(mqttTapSchema, { name: 'boiler', type: 'mqtt', url: 'mqtt://127.0.0.1:1883', points: [{ name: 'a', topic: 't' }, { name: 'a', topic: 'u' }] });
  assert.deepEqual(issues, [{ path: ['points', 1, 'name'], message: '"a" is already used by points[0]', target: 'value' }]);
});

const broken: [string, string[], string[] | undefined, string][] = [
  ['url scheme', ['url: http://127.0.0.1:1883'], undefined,
    'agent.yaml:4:10: taps[0].url: must be a URL starting with mqtt:// or mqtts://; found "http://127.0.0.1:1883"'],
  ['credentials in url', ['url: mqtt://user:pw@127.0.0.1:1883'], undefined,
    'agent.yaml:4:10: taps[0].url: must not contain credentials; use username and passwordFile'],
  ['missing url', [], undefined, 'agent.yaml:2:5: taps[0].url: required'],
  ['protocol version', [URL_LINE, 'protocolVersion: 3'], undefined,
    'agent.yaml:5:22: taps[0].protocolVersion: must be 5 or 4; found 3'],
  ['tls needs mqtts', [URL_LINE, 'tls:', '  caFile: /etc/ca.pem'], undefined,
    'agent.yaml:6:7: taps[0].tls: needs an mqtts:// url'],
  ['cert without key', ['url: mqtts://broker:8883', 'tls:', '  certFile: /etc/c.pem'], undefined,
    'agent.yaml:6:7: taps[0].tls.keyFile: required when certFile is set'],
  ['passwordFile without username', [URL_LINE, 'passwordFile: /etc/ghostpipe/mqtt.pw'], undefined,
    'agent.yaml:2:5: taps[0].username: required when passwordFile is set'],
  ['qos', [URL_LINE, 'qos: 3'], undefined, 'agent.yaml:5:10: taps[0].qos: must be 0 or 1 or 2; found 3'],
  ['max message size', [URL_LINE, 'maxMessageSize: 1GiB'], undefined,
    'agent.yaml:5:21: taps[0].maxMessageSize: must be a size from 16B to 64MiB; found "1GiB"'],
  ['unknown key', [URL_LINE, 'reconect: {initial: 1s}'], undefined,
    'agent.yaml:5:5: taps[0].reconect: unknown key; allowed keys: name, type, interval, url, protocolVersion, clientId, username, passwordFile, tls, qos, keepalive, connectTimeout, staleAfter, maxMessageSize, reconnect, points; did you mean "reconnect"?'],
  ['backoff order', [URL_LINE, 'reconnect: {initial: 1m, max: 10s}'], undefined,
    'agent.yaml:5:26: taps[0].reconnect.initial: must not exceed reconnect.max'],
  ['# not last', [URL_LINE], ['name: p', 'topic: plant/#/temp'],
    'agent.yaml:7:16: taps[0].points[0].topic: "#" must be a whole level and the last one (e.g. "plant/#"), found level "#"'],
  ['+ inside a level', [URL_LINE], ['name: p', 'topic: plant/line+/temp'],
    'agent.yaml:7:16: taps[0].points[0].topic: "+" must be a whole level (e.g. "plant/+/temp"), found level "line+"'],
  ['shared subscription', [URL_LINE], ['name: p', 'topic: $share/g/plant'],
    'agent.yaml:7:16: taps[0].points[0].topic: shared subscriptions ($share/...) are not supported: a tap must see every message'],
  ['json path wildcard', [URL_LINE], ['name: p', 'topic: a', 'json: $.values[*]'],
    "agent.yaml:8:15: taps[0].points[0].json: unsupported JSON path syntax at position 8: wildcard \"*\" (supported: $.key, [index], ['key'])"],
  ['json path without $', [URL_LINE], ['name: p', 'topic: a', 'json: value'],
    'agent.yaml:8:15: taps[0].points[0].json: JSON path must start with "$" (e.g. "$.temperature" or "$.sensors[0].value")'],
  ['timestamp without json', [URL_LINE], ['name: p', 'topic: a', 'timestamp: $.ts'],
    'agent.yaml:8:20: taps[0].points[0].timestamp: needs a JSON payload: set json as well'],
  ['value type', [URL_LINE], ['name: p', 'topic: a', 'type: float'],
    'agent.yaml:8:15: taps[0].points[0].type: must be one of number, string, boolean; found "float"'],
  ['scale on a string', [URL_LINE], ['name: p', 'topic: a', 'type: string', 'scale: 10'],
    'agent.yaml:9:16: taps[0].points[0].scale: only applies to numbers; this point has type string'],
  ['point qos', [URL_LINE], ['name: p', 'topic: a', 'qos: high'],
    'agent.yaml:8:14: taps[0].points[0].qos: must be 0 or 1 or 2; found "high"'],
];

test('broken tap configs name the file, line, path and what is allowed', () => {
  for (const [title, tapLines, pointLines, expected] of broken) {
    assert.equal(errorOf(yaml(tapLines, pointLines)), expected, title);
  }
});

test('duplicate point names and an empty point list', () => {
  const text = yaml([URL_LINE], ['name: p', 'topic: a']) + '      - name: p\n        topic: b\n';
  assert.equal(errorOf(text), 'agent.yaml:8:15: taps[0].points[1].name: "p" is already used by points[0]');
  const empty = 'taps:\n  - name: boiler\n    type: mqtt\n    url: mqtt://127.0.0.1:1883\n    points: []\n';
  assert.equal(errorOf(empty), 'agent.yaml:5:13: taps[0].points: must have at least 1 item; found 0');
});

test('several problems are all reported, one line each', () => {
  const message = errorOf(yaml(['url: mqtt://127.0.0.1:1883', 'qos: 7'], ['name: p', 'topic: a/#/b', 'json: $..x']));
  assert.equal(message.split('\n').length, 3);
});

test('sample.yaml is a valid tap entry', () => {
  const text = readFileSync(path.join(repoRoot, 'agent', 'mqtt', 'sample.yaml'), 'utf8');
  const config = parseConfigText(text, 'sample.yaml', fileSchema);
  assert.ok(config.taps.length >= 1);
  assert.ok(config.taps.every((tap) => tap.type === 'mqtt'));
});
