/** Pure parts of the OPC-UA tap: node id syntax, DataValue mapping and the config schema messages. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parseConfigText } from '../../common/config-file.js';
import { ConfigError, s } from '../../common/schema.js';
import { repoRoot } from '../../test/helpers/paths.js';
import { parseNodeId } from './node-id.js';
import { defaultPolicy, opcuaTapSchema, securityModes } from './schema.js';
import { qualityOf, readingOf } from './values.js';

describe('node ids', () => {
  const good: [string, unknown][] = [
    ['i=2258', { namespace: 0, kind: 'i', value: '2258' }],
    ['ns=2;i=42', { namespace: 2, kind: 'i', value: '42' }],
    ['ns=2;s=Line1.Temperature', { namespace: 2, kind: 's', value: 'Line1.Temperature' }],
    ['ns=3;s=a;b=c', { namespace: 3, kind: 's', value: 'a;b=c' }],
    ['s=NoNamespace', { namespace: 0, kind: 's', value: 'NoNamespace' }],
    ['ns=2;g=09087E75-8E5E-499B-954F-F2A9603DB28A', { namespace: 2, kind: 'g', value: '09087e75-8e5e-499b-954f-f2a9603db28a' }],
    ['ns=2;b=TWFjaGluZTE=', { namespace: 2, kind: 'b', value: 'TWFjaGluZTE=' }],
    ['nsu=urn:vendor:plc;s=Temp', { namespace: 'urn:vendor:plc', kind: 's', value: 'Temp' }],
    ['nsu=urn:vendor:plc;g=09087E75-8E5E-499B-954F-F2A9603DB28A', { namespace: 'urn:vendor:plc', kind: 'g', value: '09087e75-8e5e-499b-954f-f2a9603db28a' }],
    ['nsu=urn:vendor:plc;b=AAAA', { namespace: 'urn:vendor:plc', kind: 'b', value: 'AAAA' }],
    ['ns=1;i=4242', { namespace: 1, kind: 'i', value: '4242' }],
    ['ns=65535;i=4294967295', { namespace: 65535, kind: 'i', value: '4294967295' }],
  ];
  for (const [text, expected] of good) test(`accepts ${text}`, () => assert.deepEqual(parseNodeId(text), expected));

  const bad: [string, string][] = [
    ['', 'node id must be [ns=<index>;|nsu=<uri>;] followed by i=, s=, g= or b=; found ""'],
    ['Temperature', 'node id must be [ns=<index>;|nsu=<uri>;] followed by i=, s=, g= or b=; found "Temperature"'],
    ['ns=2;x=1', 'node id must be [ns=<index>;|nsu=<uri>;] followed by i=, s=, g= or b=; found "ns=2;x=1"'],
    ['ns=70000;i=1', 'namespace index must be an integer 0..65535; found "ns=70000"'],
    ['ns=a;i=1', 'namespace index must be an integer 0..65535; found "ns=a"'],
    ['ns=2', 'namespace part must end with ";" followed by i=, s=, g= or b='],
    ['nsu=;s=x', 'namespace URI after "nsu=" is empty'],
    ['ns=2;i=-1', 'numeric identifier must be an integer 0..4294967295; found "-1"'],
    ['i=4294967296', 'numeric identifier must be an integer 0..4294967295; found "4294967296"'],
    ['ns=2;i=1.5', 'numeric identifier must be an integer 0..4294967295; found "1.5"'],
    ['ns=2;s=', 'string identifier after "s=" is empty'],
    ['ns=2;g=not-a-guid', 'GUID identifier must look like 09087e75-8e5e-499b-954f-f2a9603db28a; found "not-a-guid"'],
    ['ns=2;b=###', 'ByteString identifier must be non-empty base64; found "###"'],
    ['ns=2;b=', 'ByteString identifier must be non-empty base64; found ""'],
    [`ns=2;s=${'x'.repeat(4097)}`, 'string identifier is longer than 4096 characters'],
  ];
  for (const [text, message] of bad) test(`rejects ${JSON.stringify(text.slice(0, 30))}`, () => assert.equal(parseNodeId(text), message));
});

describe('DataValue mapping', () => {
  const dv = (dataType: number, value: unknown, status = 0, arrayType = 0) => ({
    value: { dataType, arrayType, value },
    statusCode: { value: status, name: status === 0 ? 'Good' : 'Other' },
    sourceTimestamp: new Date(1_000),
    serverTimestamp: new Date(2_000),
  });

  test('status severity becomes quality', () => {
    assert.equal(qualityOf(0x00000000), 'good');
    assert.equal(qualityOf(0x00a20000), 'good'); // GoodSubscriptionTransferred style codes
    assert.equal(qualityOf(0x40920000), 'uncertain');
    assert.equal(qualityOf(0x808b0000), 'bad');
    assert.equal(qualityOf(0xc0000000), 'bad');
  });

  test('values keep their type; 64-bit integers stay exact; timestamps are kept', () => {
    const r = readingOf('t', 'p', 'bar', dv(11, 1.5), 3_000);
    assert.deepEqual(r, { tap: 't', point: 'p', value: 1.5, quality: 'good', unit: 'bar', sourceTime: 1_000, serverTime: 2_000, readTime: 3_000 });
    assert.equal(readingOf('t', 'p', undefined, dv(8, [-1, 0xfffffffe]), 0).value, -2n);
    assert.equal(readingOf('t', 'p', undefined, dv(9, [0xffffffff, 0xffffffff]), 0).value, 18446744073709551615n);
    assert.equal(readingOf('t', 'p', undefined, dv(1, true), 0).value, true);
    assert.equal(readingOf('t', 'p', undefined, dv(12, 'on'), 0).value, 'on');
    assert.equal(readingOf('t', 'p', undefined, dv(13, new Date(5)), 0).value, 5);
    assert.equal(readingOf('t', 'p', undefined, dv(15, Buffer.from('hi')), 0).value, 'aGk=');
  });

  test('arrays and structures are bad with a reason, never silently dropped', () => {
    const array = readingOf('t', 'p', undefined, dv(11, [1, 2], 0, 1), 0);
    assert.deepEqual([array.quality, array.value, array.reason], ['bad', null, 'unsupported value: arrays are not carried']);
    const struct = readingOf('t', 'p', undefined, dv(22, {}), 0);
    assert.deepEqual([struct.quality, struct.reason], ['bad', 'unsupported value: data type 22 (structures are not carried)']);
  });

  test('bad status: value null, status name as reason', () => {
    const r = readingOf('t', 'p', undefined, { ...dv(11, 7), statusCode: { value: 0x808b0000, name: 'BadSensorFailure' } }, 0);
    assert.deepEqual([r.quality, r.value, r.reason], ['bad', null, 'BadSensorFailure']);
  });
});

describe('config schema', () => {
  const file = 'agent.yaml';
  const tapsSchema = s.object({ taps: s.array(opcuaTapSchema) });
  const parse = (yaml: string) => parseConfigText(yaml, file, tapsSchema);
  const base = (extra: string, points = '    points:\n      - { name: temp, nodeId: "ns=2;s=Temperature" }\n') =>
    `taps:\n  - name: line1\n    type: opcua\n    endpoint: opc.tcp://127.0.0.1:4840/plc\n${extra}${points}`;

  test('defaults are secure and explicit', () => {
    const { taps } = parse(base(''));
    assert.deepEqual(taps[0], {
      name: 'line1',
      type: 'opcua',
      endpoint: 'opc.tcp://127.0.0.1:4840/plc',
      securityMode: 'SignAndEncrypt',
      securityPolicy: 'Basic256Sha256',
      auth: { type: 'anonymous' },
      pkiDir: '/var/lib/ghostpipe/opcua-pki',
      mode: 'read',
      samplingInterval: 1000,
      queueSize: 1,
      timeout: 5000,
      points: [{ name: 'temp', nodeId: { namespace: 2, kind: 's', value: 'Temperature' } }],
      monitorGroups: [],
    });
  });

  test('a full subscribe config parses', () => {
    const { taps } = parse(
      base(
        '    interval: 15s\n    securityMode: Sign\n    securityPolicy: Aes256_Sha256_RsaPss\n    auth: { type: username, username: op, passwordFile: /etc/ghostpipe/opcua.pw }\n' +
          '    pkiDir: /tmp/pki\n    mode: subscribe\n    samplingInterval: 250ms\n    queueSize: 5\n    timeout: 3s\n',
        '    points:\n      - { name: a, nodeId: "nsu=urn:x;i=1", unit: bar, deadband: { type: percent, value: 2.5 } }\n',
      ),
    );
    assert.equal(taps[0]!.interval, 15_000);
    assert.deepEqual(taps[0]!.points[0]!.deadband, { type: 'percent', value: 2.5 });
    assert.deepEqual(taps[0]!.auth, { type: 'username', username: 'op', passwordFile: '/etc/ghostpipe/opcua.pw' });
  });

  const broken: [string, string, string][] = [
    ['wrong scheme', base('').replace('opc.tcp://', 'http://'), 'agent.yaml:4:15: taps[0].endpoint: must be a URL starting with opc.tcp://; found "http://127.0.0.1:4840/plc"'],
    ['unknown mode', base('    mode: poll\n'), 'agent.yaml:5:11: taps[0].mode: must be one of read, subscribe; found "poll"'],
    ['misspelt security mode', base('    securityMode: SignAndEncrypted\n'), 'agent.yaml:5:19: taps[0].securityMode: must be one of None, Sign, SignAndEncrypt; found "SignAndEncrypted"; did you mean "SignAndEncrypt"?'],
    ['deprecated policy', base('    securityPolicy: Basic128Rsa15\n'), 'agent.yaml:5:21: taps[0].securityPolicy: must be one of None, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss; found "Basic128Rsa15"'],
    ['None mode with a policy', base('    securityMode: None\n    securityPolicy: Basic256Sha256\n'), 'agent.yaml:6:21: taps[0].securityPolicy: must be None when securityMode is None; found "Basic256Sha256"'],
    ['secure mode with policy None', base('    securityMode: Sign\n    securityPolicy: None\n'), 'agent.yaml:6:21: taps[0].securityPolicy: must be one of Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss when securityMode is Sign; found "None"'],
    ['bad node id', base('', '    points:\n      - { name: t, nodeId: "ns=2;x=1" }\n'), 'agent.yaml:6:28: taps[0].points[0].nodeId: invalid node id: node id must be [ns=<index>;|nsu=<uri>;] followed by i=, s=, g= or b=; found "ns=2;x=1"'],
    ['bad GUID', base('', '    points:\n      - { name: t, nodeId: "ns=2;g=1234" }\n'), 'agent.yaml:6:28: taps[0].points[0].nodeId: invalid node id: GUID identifier must look like 09087e75-8e5e-499b-954f-f2a9603db28a; found "1234"'],
    ['numeric node id', base('', '    points:\n      - { name: t, nodeId: 2258 }\n'), 'agent.yaml:6:28: taps[0].points[0].nodeId: must be an OPC-UA node id like "ns=2;s=Line1.Temperature"; found 2258 (quote it to make it a string)'],
    ['no points', base('', '    points: []\n'), 'agent.yaml:5:13: taps[0].points: must have at least 1 item; found 0'],
    ['duplicate point', base('', '    points:\n      - { name: t, nodeId: "i=1" }\n      - { name: t, nodeId: "i=2" }\n'), 'agent.yaml:7:17: taps[0].points[1].name: duplicate point name "t" (also points[0])'],
    ['deadband in read mode', base('', '    points:\n      - { name: t, nodeId: "i=1", deadband: { type: absolute, value: 1 } }\n'), 'agent.yaml:6:45: taps[0].points[0].deadband: only allowed with mode: subscribe'],
    ['percent over 100', base('    mode: subscribe\n', '    points:\n      - { name: t, nodeId: "i=1", deadband: { type: percent, value: 150 } }\n'), 'agent.yaml:7:69: taps[0].points[0].deadband.value: must be a number from 0 to 100 for a percent deadband; found 150'],
    ['negative deadband', base('    mode: subscribe\n', '    points:\n      - { name: t, nodeId: "i=1", deadband: { type: absolute, value: -1 } }\n'), 'agent.yaml:7:70: taps[0].points[0].deadband.value: must be a number of at least 0; found -1'],
    ['two password sources', base('    auth: { type: username, username: op, password: hunter2, passwordFile: /x }\n'), 'agent.yaml:5:11: taps[0].auth: must have exactly one of password, passwordFile'],
    ['unknown auth type', base('    auth: { type: kerberos }\n'), 'agent.yaml:5:19: taps[0].auth.type: must be one of anonymous, username, certificate; found "kerberos"'],
    ['certificate auth without key', base('    auth: { type: certificate, certificateFile: /c.pem }\n'), 'agent.yaml:5:11: taps[0].auth.privateKeyFile: required'],
    ['unknown key', base('    sampling: 1s\n'), 'agent.yaml:5:5: taps[0].sampling: unknown key; allowed keys: name, type, interval, endpoint, securityMode, securityPolicy, auth, pkiDir, mode, samplingInterval, queueSize, timeout, points'],
    ['bad duration', base('    timeout: 5\n'), 'agent.yaml:5:14: taps[0].timeout: must be a duration from 100ms to 10m; found 5'],
    ['queue size zero', base('    queueSize: 0\n'), 'agent.yaml:5:16: taps[0].queueSize: must be an integer from 1 to 1000; found 0'],
  ];
  for (const [what, yaml, message] of broken) {
    test(`refuses: ${what}`, () => {
      assert.throws(() => parse(yaml), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.message, message);
        return true;
      });
    });
  }

  test('sample.yaml is a valid config', () => {
    const file = path.join(repoRoot, 'agent', 'opcua', 'sample.yaml');
    const { taps } = parseConfigText(readFileSync(file, 'utf8'), file, tapsSchema);
    assert.equal(taps[0]!.mode, 'subscribe');
    assert.equal(taps[0]!.points.length, 4);
  });

  test('an inline password is never echoed in a message', () => {
    assert.throws(() => parse(base('    auth: { type: username, username: op, password: [hunter2] }\n')), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.ok(!err.message.includes('hunter2'), err.message);
      return true;
    });
  });
});

describe('processing (check → process): what the driver receives', () => {
  const tapsSchema = s.object({ taps: s.array(opcuaTapSchema) });
  const parse = (yaml: string) => parseConfigText(yaml, 'agent.yaml', tapsSchema).taps[0]!;
  const tap = (extra: string, points: string) => `taps:\n  - name: line1\n    type: opcua\n    endpoint: opc.tcp://127.0.0.1:4840/plc\n${extra}    points:\n${points}`;

  test('node ids are parsed once, in the schema: every form reaches the driver parsed', () => {
    const settings = parse(
      tap('', '      - { name: a, nodeId: "i=2258" }\n      - { name: b, nodeId: "nsu=urn:vendor:plc;g=09087E75-8E5E-499B-954F-F2A9603DB28A" }\n' +
        '      - { name: c, nodeId: "ns=3;s=a;ns=4;i=5" }\n      - { name: d, nodeId: "ns=2;b=TWFjaGluZTE=" }\n'),
    );
    assert.deepEqual(settings.points.map((p) => p.nodeId), [
      { namespace: 0, kind: 'i', value: '2258' },
      { namespace: 'urn:vendor:plc', kind: 'g', value: '09087e75-8e5e-499b-954f-f2a9603db28a' },
      { namespace: 3, kind: 's', value: 'a;ns=4;i=5' },
      { namespace: 2, kind: 'b', value: 'TWFjaGluZTE=' },
    ]);
    const driver = readFileSync(path.join(repoRoot, 'agent', 'opcua', 'driver.ts'), 'utf8');
    assert.doesNotMatch(driver, /parseNodeId/, 'the driver builds NodeIds from the parsed form only');
  });

  test('the security policy is resolved: the default per security mode, a configured one kept', () => {
    const policyOf = (extra: string) => parse(tap(extra, '      - { name: t, nodeId: "i=1" }\n')).securityPolicy;
    assert.deepEqual(securityModes.map((mode) => policyOf(`    securityMode: ${mode}\n`)), ['None', 'Basic256Sha256', 'Basic256Sha256']);
    assert.deepEqual(securityModes.map(defaultPolicy), ['None', 'Basic256Sha256', 'Basic256Sha256']);
    assert.equal(policyOf(''), 'Basic256Sha256', 'the default mode, SignAndEncrypt');
    assert.equal(policyOf('    securityMode: Sign\n    securityPolicy: Aes256_Sha256_RsaPss\n'), 'Aes256_Sha256_RsaPss');
    assert.equal(policyOf('    securityMode: None\n    securityPolicy: None\n'), 'None');
  });

  test('every setting is kept, durations in ms; subscribe mode groups the points by deadband in order of first use', () => {
    const settings = parse(
      tap(
        '    interval: 2s\n    securityMode: Sign\n    auth: { type: username, username: op, password: hunter2 }\n    pkiDir: /tmp/pki\n' +
          '    mode: subscribe\n    samplingInterval: 250ms\n    queueSize: 5\n    timeout: 3s\n',
        '      - { name: a, nodeId: "i=1", unit: bar }\n      - { name: b, nodeId: "i=2", deadband: { type: absolute, value: 1 } }\n' +
          '      - { name: c, nodeId: "i=3" }\n      - { name: d, nodeId: "i=4", deadband: { type: absolute, value: 1 } }\n' +
          '      - { name: e, nodeId: "i=5", deadband: { type: percent, value: 2.5 } }\n',
      ),
    );
    const absolute = { type: 'absolute', value: 1 } as const;
    const percent = { type: 'percent', value: 2.5 } as const;
    const id = (value: string) => ({ namespace: 0, kind: 'i', value }) as const;
    assert.deepEqual(settings, {
      name: 'line1',
      type: 'opcua',
      interval: 2000,
      endpoint: 'opc.tcp://127.0.0.1:4840/plc',
      securityMode: 'Sign',
      securityPolicy: 'Basic256Sha256',
      auth: { type: 'username', username: 'op', password: 'hunter2' },
      pkiDir: '/tmp/pki',
      mode: 'subscribe',
      samplingInterval: 250,
      queueSize: 5,
      timeout: 3000,
      points: [
        { name: 'a', nodeId: id('1'), unit: 'bar' },
        { name: 'b', nodeId: id('2'), deadband: absolute },
        { name: 'c', nodeId: id('3') },
        { name: 'd', nodeId: id('4'), deadband: absolute },
        { name: 'e', nodeId: id('5'), deadband: percent },
      ],
      monitorGroups: [{ points: [0, 2] }, { deadband: absolute, points: [1, 3] }, { deadband: percent, points: [4] }],
    });
  });

  test('a username login carries exactly its one password source', () => {
    const authOf = (auth: string) => parse(tap(`    auth: ${auth}\n`, '      - { name: t, nodeId: "i=1" }\n')).auth;
    assert.deepEqual(authOf('{ type: username, username: op, passwordFile: /etc/ghostpipe/opcua.pw }'), { type: 'username', username: 'op', passwordFile: '/etc/ghostpipe/opcua.pw' });
    assert.deepEqual(authOf('{ type: username, username: op, password: "" }'), { type: 'username', username: 'op', password: '' });
    assert.throws(() => authOf('{ type: username, username: op }'), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, 'agent.yaml:5:11: taps[0].auth: must have exactly one of password, passwordFile');
      return true;
    });
  });
});
