import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseConfigText } from '../common/config-file.js';
import { writeKeyBundle } from '../common/keyfile.js';
import { ConfigError } from '../common/schema.js';
import { agentConfigSchema, loadAgentConfig, loadAgentSecrets, relayClientOptions } from './config.js';
import { rootJson } from '../test/helpers/firmware-release.js';
import { generatePrivateKey } from '../protocol/keys.js';

const BASE = `device:
  signKey: /k/gw.sign.key
  kemKey: /k/gw.kem.key
relay:
  url: http://127.0.0.1:8787
  apiKeyFile: /k/api.key
recipients:
  - name: it
    publicKey: /k/rx.kem.pub
taps:
  - name: plc
    type: modbus
    transport: tcp
    host: 127.0.0.1
    addressBase: 0
    points:
      - { name: flow, table: holding, address: 0, type: uint16 }
      - { name: temp, table: input, address: 2, type: float32 }
  - name: broker
    type: mqtt
    url: mqtt://127.0.0.1:1883
    points:
      - { name: label, topic: plant/label, type: string }
`;

/** A Modbus RTU tap entry (7 lines) to append under taps:. */
const rtuTap = (name: string, serial: string) => `  - name: ${name}
    type: modbus
    transport: rtu
    serial: ${serial}
    addressBase: 1
    points:
      - { name: power, table: input, address: 13, type: float32 }
`;

const parse = (text: string) => parseConfigText(text, 'agent.yaml', agentConfigSchema);

function errorOf(text: string): string {
  try {
    parse(text);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('config should have been refused');
}

test('the base config is valid and gets every default', () => {
  const config = parse(BASE);
  assert.equal(config.interval, 15_000);
  assert.equal(config.deadline, 0.75);
  assert.equal(config.backlog.maxSize, 32 * 1024 * 1024);
  assert.deepEqual(config.padding.buckets, [4096, 65536, 1048576, 5242880]);
  assert.equal(config.aead, 'aes-256-gcm');
  assert.equal(config.stateDir, '/var/lib/ghostpipe/agent');
  assert.equal(config.relay.quotaRetry, 60_000);
  assert.equal(config.taps.length, 2);
});

const CASES: [string, (text: string) => string, string][] = [
  ['misspelt top-level key', (t) => t + 'intervall: 5s\n', 'agent.yaml:24:1: intervall: unknown key; allowed keys: device, relay, recipients, interval, deadline, streamId, padding, aead, kem, backlog, stateDir, logLevel, taps, firmware; did you mean "interval"?'],
  ['interval without a unit', (t) => t + 'interval: 15\n', 'agent.yaml:24:11: interval: must be a duration from 100ms to 1d; found 15'],
  ['unknown tap type', (t) => t.replace('type: mqtt', 'type: mqqt'), 'agent.yaml:20:11: taps[1].type: must be one of modbus, opcua, mqtt; found "mqqt"; did you mean "mqtt"?'],
  ['bad point type', (t) => t.replace('type: uint16', 'type: uint61'), 'agent.yaml:17:57: taps[0].points[0].type: must be one of bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string, bit; found "uint61"; did you mean "uint16"?'],
  ['duplicate tap name', (t) => t.replace('name: broker', 'name: plc'), 'agent.yaml:19:11: taps[1].name: duplicate tap name "plc" (also taps[0])'],
  ['duplicate point name', (t) => t.replace('name: temp', 'name: flow'), 'agent.yaml:18:17: taps[0].points[1].name: duplicate point name "flow" (also points[0])'],
  ['relay url scheme', (t) => t.replace('http://127.0.0.1:8787', 'ftp://relay'), 'agent.yaml:5:8: relay.url: must be a URL starting with http:// or https://; found "ftp://relay"'],
  ['missing recipients', (t) => t.replace(/recipients:\n  - name: it\n    publicKey: \/k\/rx.kem.pub\n/, ''), 'agent.yaml:1:1: recipients: required'],
  ['tap interval shorter than the agent interval', (t) => t.replace('    type: mqtt', '    type: mqtt\n    interval: 1s'), 'agent.yaml:21:15: taps[1].interval: must be at least the agent interval (15000 ms): one frame per interval; found 1000 ms'],
  ['bucket relays refuse', (t) => t + 'padding:\n  buckets: [4KiB, 16KiB]\n', 'agent.yaml:25:19: padding.buckets[1]: must be one of 4KiB, 64KiB, 1MiB, 5MiB (the buckets relays accept); found 16384 bytes'],
  ['buckets not ascending', (t) => t + 'padding:\n  buckets: [64KiB, 4KiB]\n', 'agent.yaml:25:20: padding.buckets[1]: must be larger than the bucket before it (65536 bytes); found 4096'],
  ['quota retry too short', (t) => t.replace('  url: http://127.0.0.1:8787\n', '  url: http://127.0.0.1:8787\n  quotaRetry: 500ms\n'), 'agent.yaml:6:15: relay.quotaRetry: must be a duration from 1s to 1d; found "500ms"'],
  ['deadline out of range', (t) => t + 'deadline: 1.5\n', 'agent.yaml:24:11: deadline: must be a number from 0.1 to 0.9; found 1.5'],
  ['backlog too small', (t) => t + 'backlog:\n  maxSize: 1KiB\n', 'agent.yaml:25:12: backlog.maxSize: must be a size from 64KiB to 1GiB; found "1KiB"'],
  ['aead typo', (t) => t + 'aead: chacha20\n', 'agent.yaml:24:7: aead: must be one of aes-256-gcm, chacha20-poly1305; found "chacha20"'],
  ['no taps', (t) => t.replace(/taps:[\s\S]*$/, 'taps: []\n'), 'agent.yaml:10:7: taps: must have at least 1 item; found 0'],
  ['two RTU taps on one serial line at different speeds', (t) => t + rtuTap('meters-a', '{ path: /dev/ttyUSB0, baudRate: 19200, parity: even }') + rtuTap('meters-b', '{ path: /dev/ttyUSB0, baudRate: 9600, parity: even }'),
    'agent.yaml:34:45: taps[3].serial.baudRate: must match tap "meters-a" (taps[2]), which uses the same serial line /dev/ttyUSB0 with baudRate 19200; found 9600'],
  // A setting left at its default has no line of its own: the error points at the serial block.
  ['two RTU taps on one serial line, one with the default parity', (t) => t + rtuTap('meters-a', '{ path: /dev/ttyUSB0, parity: even }') + rtuTap('meters-b', '{ path: /dev/ttyUSB0 }'),
    'agent.yaml:34:13: taps[3].serial.parity: must match tap "meters-a" (taps[2]), which uses the same serial line /dev/ttyUSB0 with parity even; found none'],
];

for (const [name, mutate, expected] of CASES) {
  test(`refused: ${name}`, () => {
    const message = errorOf(mutate(BASE));
    assert.ok(message.split('\n').some((line) => line.startsWith(expected)), `expected a line starting with\n  ${expected}\ngot\n  ${message}`);
  });
}

test('every problem is reported at once, sorted by position', () => {
  const message = errorOf(BASE.replace('type: uint16', 'type: nope').replace('type: mqtt', 'type: x') + 'intervall: 5s\n');
  const lines = message.split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^agent.yaml:17:\d+: taps\[0\]\.points\[0\]\.type: /);
  assert.match(lines[1]!, /^agent.yaml:20:11: taps\[1\]\.type: /);
  assert.match(lines[2]!, /^agent.yaml:24:1: intervall: unknown key/);
});

test('the shipped example config is valid', async () => {
  const { loadAgentConfig } = await import('./config.js');
  const { repoRoot } = await import('../test/helpers/paths.js');
  const { config } = loadAgentConfig(`${repoRoot}/config/agent.example.yaml`);
  assert.deepEqual([...new Set(config.taps.map((t) => t.type))].sort(), ['modbus', 'mqtt', 'opcua']);
});

// ---- the files the config names: read at load (and by --check), not first when a tap connects

/** A config whose every file exists (mode 0600): device keys, API key, recipient key, tap credentials. */
async function configWithFiles(): Promise<{ dir: string; configFile: string; file: (name: string) => string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gp-agent-config-'));
  const file = (name: string) => path.join(dir, name);
  await writeKeyBundle('device', dir, 'gw');
  await writeKeyBundle('receiver', dir, 'rx');
  await writeFile(file('api.key'), `pgp_0123456789ab${'A'.repeat(43)}\n`, { mode: 0o600 });
  for (const name of ['opcua.pw', 'user.pem', 'user.key', 'mqtt.pw', 'ca.pem', 'client.pem', 'client.key']) await writeFile(file(name), 'x\n', { mode: 0o600 });
  const configFile = file('agent.yaml');
  await writeFile(configFile, `device:
  signKey: ${file('gw.sign.key')}
  kemKey: ${file('gw.kem.key')}
relay:
  url: http://127.0.0.1:8787
  apiKeyFile: ${file('api.key')}
recipients:
  - name: it
    publicKey: ${file('rx.kem.pub')}
taps:
  - name: line1
    type: opcua
    endpoint: opc.tcp://127.0.0.1:4840
    auth: { type: username, username: op, passwordFile: ${file('opcua.pw')} }
    points: [{ name: t, nodeId: "ns=2;s=T" }]
  - name: line2
    type: opcua
    endpoint: opc.tcp://127.0.0.1:4840
    auth:
      type: certificate
      certificateFile: ${file('user.pem')}
      privateKeyFile: ${file('user.key')}
    points: [{ name: t, nodeId: "ns=2;s=T" }]
  - name: broker
    type: mqtt
    url: mqtts://127.0.0.1:8883
    username: gw
    passwordFile: ${file('mqtt.pw')}
    tls:
      caFile: ${file('ca.pem')}
      certFile: ${file('client.pem')}
      keyFile: ${file('client.key')}
    points: [{ name: t, topic: a/t }]
`);
  return { dir, configFile, file };
}

async function loadSecretsOf(configFile: string): Promise<{ warnings: string[]; error?: string }> {
  const warnings: string[] = [];
  try {
    const { config, source } = loadAgentConfig(configFile);
    await loadAgentSecrets(config, source, (message) => warnings.push(message));
    return { warnings };
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return { warnings, error: err.message };
  }
}

test('the files taps name are checked at load: all present and 0600 → no error, no warning', async () => {
  const { dir, configFile } = await configWithFiles();
  try {
    assert.deepEqual(await loadSecretsOf(configFile), { warnings: [] });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

const MISSING_TAP_FILES: [string, string][] = [
  ['opcua.pw', '14:57: taps[0].auth.passwordFile'],
  ['user.pem', '21:24: taps[1].auth.certificateFile'],
  ['user.key', '22:23: taps[1].auth.privateKeyFile'],
  ['mqtt.pw', '28:19: taps[2].passwordFile'],
  ['ca.pem', '30:15: taps[2].tls.caFile'],
  ['client.pem', '31:17: taps[2].tls.certFile'],
  ['client.key', '32:16: taps[2].tls.keyFile'],
];

for (const [name, at] of MISSING_TAP_FILES) {
  test(`refused at load: tap file ${name} missing`, async () => {
    const { dir, configFile, file } = await configWithFiles();
    try {
      await rm(file(name));
      const { error } = await loadSecretsOf(configFile);
      assert.equal(error, `${configFile}:${at}: ${file(name)}: no such file`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test('refused at load: a tap file that is a directory', async () => {
  const { dir, configFile, file } = await configWithFiles();
  try {
    await rm(file('ca.pem'));
    await mkdir(file('ca.pem'));
    const { error } = await loadSecretsOf(configFile);
    assert.equal(error, `${configFile}:30:15: taps[2].tls.caFile: ${file('ca.pem')}: not a regular file`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a tap password or private key readable by group or others is a warning; a CA certificate is not', async () => {
  const { dir, configFile, file } = await configWithFiles();
  try {
    await chmod(file('opcua.pw'), 0o640);
    await chmod(file('client.key'), 0o604);
    await chmod(file('ca.pem'), 0o644);
    await chmod(file('user.pem'), 0o644);
    assert.deepEqual(await loadSecretsOf(configFile), {
      warnings: [
        `tap "line1" auth.passwordFile ${file('opcua.pw')} is readable by group or others (mode 0640); run: chmod 600 ${file('opcua.pw')}`,
        `tap "broker" tls.keyFile ${file('client.key')} is readable by group or others (mode 0604); run: chmod 600 ${file('client.key')}`,
      ],
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('problems found after the schema are placed from the parse, not from a second read of the file', async () => {
  const { dir, configFile, file } = await configWithFiles();
  try {
    const { config, source } = loadAgentConfig(configFile);
    // The file is gone (or was edited) by the time the files it names are checked.
    await rm(configFile);
    await rm(file('mqtt.pw'));
    await assert.rejects(loadAgentSecrets(config, source, () => undefined), (err: Error) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.message, `${configFile}:28:19: taps[2].passwordFile: ${file('mqtt.pw')}: no such file`);
      return true;
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a duplicate point name is reported once, by the tap\'s own schema', () => {
  const lines = errorOf(BASE.replace('name: temp', 'name: flow')).split('\n');
  assert.deepEqual(lines, ['agent.yaml:18:17: taps[0].points[1].name: duplicate point name "flow" (also points[0])']);
  const mqtt = errorOf(BASE.replace('type: string }', 'type: string }\n      - { name: label, topic: plant/other }')).split('\n');
  assert.deepEqual(mqtt, ['agent.yaml:24:17: taps[1].points[1].name: "label" is already used by points[0]']);
});

test('the firmware section: off while absent; names checked by the schema, with the defaults', () => {
  assert.equal(parse(BASE).firmware, undefined);
  const section = (extra: string) => `${BASE}firmware:
  root: /etc/ghostpipe/firmware-root.json
  relayPublicKey: /etc/ghostpipe/relay.sign.pub
  hardwareId: rpi3b-plus
  install: { command: [/usr/local/sbin/flash] }
${extra}`;
  const config = parse(section('  group: line-a\n'));
  assert.equal(config.firmware?.checkInterval, 15 * 60_000);
  assert.equal(config.firmware?.install?.timeout, 10 * 60_000);
  assert.equal(config.firmware?.health, undefined);
  assert.equal(config.firmware?.release, undefined);
  const message = errorOf(section('  group: Line A\n  checkInterval: 10ms\n  rollback: { command: [] }\n'));
  assert.match(message, /firmware\.group: must be a group name/);
  assert.match(message, /firmware\.checkInterval: /);
  assert.match(message, /firmware\.rollback\.command: /);
  // Self-update: the release section's defaults; a gateway that takes only releases needs no install command.
  const releaseOnly = section('  group: line-a\n  release: {}\n').replace('  install: { command: [/usr/local/sbin/flash] }\n', '');
  assert.deepEqual(parse(releaseOnly).firmware?.release, {
    prefix: '/opt/ghostpipe', stateDir: '/var/lib/ghostpipe/release', restart: { command: ['systemctl', 'restart', 'ghostpipe-agent.service'], timeout: 2 * 60_000 }, healthTimeout: 3 * 60_000,
  });
  assert.equal(parse(releaseOnly).firmware?.install, undefined);
  const neither = section('  group: line-a\n').replace('  install: { command: [/usr/local/sbin/flash] }\n', '');
  assert.match(errorOf(neither), /firmware: needs install \(a command that installs a package\) or release/);
  assert.match(errorOf(section('  group: line-a\n  release: { healthTimeout: 10ms, restart: { command: [] } }\n')), /firmware\.release\.healthTimeout: [\s\S]*firmware\.release\.restart\.command: /);
});

test('the firmware root and the relay key are read at load: a root without its threshold or a wrong key is refused by name', async () => {
  const { dir, configFile, file } = await configWithFiles();
  try {
    const keys = [generatePrivateKey('ML-DSA-65'), generatePrivateKey('ML-DSA-65')];
    const root = (signers: typeof keys) => JSON.stringify(rootJson(keys, 2, 1, signers));
    await writeKeyBundle('device', dir, 'relay');
    await writeFile(file('root.json'), root(keys));
    const text = await readFile(configFile, 'utf8');
    const withFirmware = (rootFile: string, relayKey: string) => writeFile(configFile, `${text}firmware:
  root: ${rootFile}
  relayPublicKey: ${relayKey}
  group: line-a
  hardwareId: hw1
  install: { command: [/bin/true] }
`);
    await withFirmware(file('root.json'), file('relay.sign.pub'));
    assert.deepEqual(await loadSecretsOf(configFile), { warnings: [] });
    const { config, source } = loadAgentConfig(configFile);
    assert.equal((await loadAgentSecrets(config, source, () => undefined)).firmware?.root.root.threshold, 2);

    await writeFile(file('root.json'), root(keys.slice(0, 1)));
    await withFirmware(file('root.json'), file('rx.kem.pub'));
    const { error } = await loadSecretsOf(configFile);
    assert.match(error!, /firmware\.root: .*root\.json: firmware root v1: 1 valid signatures by root keys, 2 required/);
    assert.match(error!, /firmware\.relayPublicKey: .*rx\.kem\.pub.*ML-DSA-65/);
    await withFirmware(file('nothing.json'), file('relay.sign.pub'));
    assert.match((await loadSecretsOf(configFile)).error!, /firmware\.root: .*nothing\.json: no such file$/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('relay.ca: a pinned CA bundle is read at load; a missing file or one without a certificate is refused by name', async () => {
  const { dir, configFile, file } = await configWithFiles();
  try {
    const withCa = (await readFile(configFile, 'utf8')).replace('  apiKeyFile:', `  ca: ${file('relay-ca.pem')}\n  apiKeyFile:`);
    await writeFile(configFile, withCa);
    assert.match((await loadSecretsOf(configFile)).error ?? '', new RegExp(`relay\\.ca: ${file('relay-ca.pem')}: no such file`));
    await writeFile(file('relay-ca.pem'), 'not a certificate\n');
    assert.match((await loadSecretsOf(configFile)).error ?? '', /relay\.ca: .*relay-ca\.pem: not a PEM certificate bundle/);
    await writeFile(file('relay-ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const { config, source } = loadAgentConfig(configFile);
    const secrets = await loadAgentSecrets(config, source, () => undefined);
    assert.equal(relayClientOptions(config, secrets).ca?.toString(), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('plain HTTP to a relay off loopback is refused at relay.url unless relay.allowPlainHttp (the API key would travel in clear)', async () => {
  const { dir, configFile } = await configWithFiles();
  try {
    const text = await readFile(configFile, 'utf8');
    await writeFile(configFile, text.replace('url: http://127.0.0.1:8787', 'url: http://10.20.0.5:8787'));
    assert.throws(() => loadAgentConfig(configFile), (err: Error) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, /^.*agent\.yaml:\d+:\d+: relay\.url: plain HTTP is only allowed to a loopback address .* use https:\/\/ with a pinned ca for 10\.20\.0\.5, or set relay\.allowPlainHttp: true/);
      return true;
    });
    await writeFile(configFile, text.replace('url: http://127.0.0.1:8787', 'url: http://10.20.0.5:8787\n  allowPlainHttp: true'));
    assert.equal(loadAgentConfig(configFile).config.relay.allowPlainHttp, true);
    await writeFile(configFile, text.replace('url: http://127.0.0.1:8787', 'url: https://10.20.0.5'));
    assert.equal(loadAgentConfig(configFile).config.relay.url, 'https://10.20.0.5');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
