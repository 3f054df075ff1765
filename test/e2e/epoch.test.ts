/**
 * Air-gap mode survives reboots on its own (issue 9 §3): a RAM-only relay with a provisioned
 * identity directory is SIGKILLed and restarted on the same port again and again while a real agent
 * and a real receiver (trust.enrolled, file sink) keep running. Each boot is a new log epoch under
 * "<origin>/epoch/<n>" signed by the same key; the receiver follows it (warn with both origins),
 * nothing is lost or duplicated at the sink. Refused, as before: `newEpoch: refuse` and a rollback
 * within one origin (a rewound boot counter); a new relay key proves nothing (retried, alerted).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { Conduit } from '../../plant/conduit.js';
import type { RoleProcess } from '../../plant/process.js';
import { ModbusMemory, startModbusTcpServer, type ModbusTcpTestServer } from '../helpers/modbus-server.js';
import { cliPath } from '../helpers/paths.js';
import { duplicateReadings, lastFrame, makeConduit, stopConduit, readSink, until, untilContiguous } from '../helpers/conduit.js';

const CYCLES = 5;
const EPOCH_WARN = 'the relay started a new log epoch (same pinned key); following it';
const run = promisify(execFile);

/** Frame numbers the agent built and sealed (its debug "interval" line, one per frame). */
function sealedFrames(agent: RoleProcess): bigint[] {
  return agent.lines.filter((l) => l.json?.['msg'] === 'interval').map((l) => BigInt(String(l.json!['frame'])));
}

function relayEpoch(relay: RoleProcess): { origin: string; epoch: number } {
  const loaded = relay.lines.find((l) => l.json?.['msg'] === 'relay state loaded')!.json!;
  return { origin: String(loaded['origin']), epoch: Number(loaded['epoch']) };
}

async function audit(conduit: Conduit, stateDir: string, ...extra: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cliPath, 'audit', '--relay', conduit.relayUrl, '--relay-key', conduit.paths.relayPub, '--state', stateDir, ...extra]);
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

async function setReceiverConfig(conduit: Conduit, change: (config: { relay: Record<string, unknown> }) => void): Promise<void> {
  const config = YAML.parse(await fs.readFile(conduit.paths.receiverConfig, 'utf8')) as { relay: Record<string, unknown> };
  change(config);
  await fs.writeFile(conduit.paths.receiverConfig, YAML.stringify(config), { mode: 0o600 });
}

describe('RAM-only relay with an identity directory: reboots need no operator', () => {
  let modbus: ModbusTcpTestServer;
  let conduit: Conduit;
  let dir: string;
  let sinkFile: string;
  const auditState = () => path.join(dir, 'audit-state');

  before(async () => {
    const memory = new ModbusMemory();
    memory.setRegisters('holding', 0, [1234]);
    modbus = await startModbusTcpServer(memory);
    ({ conduit, dir, sinkFile } = await makeConduit('epoch', {
      receiverCheckpointInterval: '1s',
      agentSettings: { logLevel: 'debug' },
      // enrolled trust: every epoch the receiver proves the device's registration leaf again.
      receiverSettings: { trust: { enrolled: true, refresh: '500ms' } },
    }));
    // The identity directory is the Conduit's relay folder, so operator.key and relay.sign.pub are where it looks.
    conduit.o.relaySettings = { leaseTimeout: '2s', ramOnly: true, identityDir: conduit.paths.relayState };
    await conduit.prepareKeys();
    await conduit.startRelay();
    await conduit.ensureApiKeys();
    await conduit.writeAgentConfigWithTaps([{
      name: 'plc1', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: modbus.port, unitId: 1, addressBase: 0, timeout: '500ms',
      points: [{ name: 'level', table: 'holding', address: 0, type: 'uint16' }],
    }]);
    await conduit.enroll();
    await conduit.writeReceiverConfig();
    await conduit.startReceiver();
    await conduit.startAgent();
  });

  after(async () => {
    try {
      if (conduit) await stopConduit(conduit);
    } finally {
      await modbus?.stop();
      if (dir) await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test(`relay SIGKILLed and restarted ${CYCLES} times: agent and receiver carry on, every sealed frame reaches the sink exactly once`, async () => {
    const { agent, receiver } = conduit;
    const first = relayEpoch(conduit.relay!);
    assert.equal(first.epoch, 1);
    const base = first.origin.replace(/\/epoch\/1$/, '');
    assert.match(first.origin, /^ghostpipe-relay\/[0-9a-f]{16}\/epoch\/1$/);
    await until('frames flowing', async () => (await lastFrame(sinkFile)) >= 2n, 60_000);
    const audited = await audit(conduit, auditState());
    assert.equal(audited.code, 0, audited.out);

    let previous = first.origin;
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      const before = await lastFrame(sinkFile);
      const sealedAtKill = sealedFrames(agent!).at(-1)!;
      await conduit.relay!.kill();
      await conduit.startRelay();
      const now = relayEpoch(conduit.relay!);
      assert.deepEqual(now, { origin: `${base}/epoch/${cycle + 1}`, epoch: cycle + 1 }, `cycle ${cycle}: the boot counter moves on, same key`);
      const warn = await receiver!.waitFor((l) => l.json?.['msg'] === EPOCH_WARN && l.json['to'] === now.origin, 30_000, `the new-epoch warning for ${now.origin}`);
      assert.equal(warn.json!['level'], 40, 'logged at warn');
      assert.equal(warn.json!['from'], previous, 'with the old origin');
      previous = now.origin;
      await until(`cycle ${cycle}: frames after the restart`, async () => (await lastFrame(sinkFile)) >= before + 3n, 60_000);
      assert.ok(agent!.running() && receiver!.running(), `cycle ${cycle}: agent and receiver were not restarted`);
      // What the relay held at the kill is gone with its RAM: the agent re-sent it.
      const records = await untilContiguous(sinkFile, sealedAtKill, 60_000);
      assert.deepEqual(duplicateReadings(records), [], `cycle ${cycle}: no duplicate at the sink`);
    }

    // The agent flushes at SIGTERM; then every frame it sealed must be in the sink, once.
    assert.equal(await agent!.stop(), 0);
    const operator = await conduit.operator();
    await until('the relay queue empty', async () => {
      const stats = await operator.stats();
      return stats.envelopes.pending === 0 && stats.envelopes.leased === 0;
    }, 30_000);
    const sealed = sealedFrames(agent!);
    assert.ok(sealed.length >= 10, `the agent sealed ${sealed.length} frames`);
    const records = await untilContiguous(sinkFile, sealed.at(-1)!, 30_000);
    assert.deepEqual(duplicateReadings(records), []);
    const inSink = new Set(records.map((r) => r.frame));
    assert.deepEqual(sealed.filter((f) => !inSink.has(String(f))), [], 'sealed frames missing at the sink');
    assert.equal(records.length, sealed.length, 'one reading per sealed frame, exactly once');
    assert.ok(receiver!.running());
    assert.equal(receiver!.lines.filter((l) => l.json?.['level'] === 50 || l.json?.['level'] === 60).length, 0, 'no error at the receiver');

    // The receiver's witness keeps the last checkpoint of each epoch it left.
    const witness = JSON.parse(await fs.readFile(path.join(conduit.paths.receiverState, 'witness.json'), 'utf8')) as { origin: string; previousEpochs: { origin: string; size: number }[] };
    assert.equal(witness.origin, `${base}/epoch/${CYCLES + 1}`);
    assert.deepEqual(witness.previousEpochs.map((e) => e.origin), Array.from({ length: CYCLES }, (_, i) => `${base}/epoch/${i + 1}`));
    assert.ok(witness.previousEpochs.every((e) => e.size >= 1));

    // `ghostpipe audit` accepts the new epoch too (it last saw epoch 1), and can refuse one.
    const accepted = await audit(conduit, auditState());
    assert.equal(accepted.code, 0, accepted.out);
    assert.match(accepted.out, new RegExp(`"from":"${base}/epoch/1".*"to":"${base}/epoch/${CYCLES + 1}".*new log epoch`));
    await conduit.relay!.kill();
    await conduit.startRelay();
    const refused = await audit(conduit, auditState(), '--new-epoch', 'refuse');
    assert.equal(refused.code, 1, refused.out);
    assert.match(refused.out, /NEW EPOCH REFUSED/);
    await receiver!.waitFor((l) => l.json?.['msg'] === EPOCH_WARN && l.json['to'] === `${base}/epoch/${CYCLES + 2}`, 30_000, 'the receiver following the last epoch');
  });

  test('newEpoch: refuse stops the receiver with a clear error (exit 3) at the next reboot', async () => {
    assert.equal(await conduit.receiver!.stop(), 0);
    await setReceiverConfig(conduit, (c) => (c.relay['newEpoch'] = 'refuse'));
    const receiver = await conduit.startReceiver(); // same epoch as its witness: starts
    await conduit.relay!.kill();
    await conduit.startRelay();
    const { code } = await receiver.exited;
    assert.equal(code, 3);
    const fatal = receiver.lines.find((l) => l.json?.['level'] === 60)!;
    assert.equal(fatal.json!['reason'], 'new_epoch');
    assert.match(String(fatal.json!['msg']), /started a new log epoch .*epoch\/\d+.*new epochs are refused here \(receiver relay\.newEpoch/);
  });

  test('a relay restarted with another key proves nothing to the pinned key: the receiver keeps running, warns, alerts, opens nothing', async () => {
    await setReceiverConfig(conduit, (c) => {
      delete c.relay['newEpoch'];
      c.relay['unprovenAlertAfter'] = '2s';
    });
    const receiver = await conduit.startReceiver(); // accepts the epoch it refused before
    await receiver.waitForLog(EPOCH_WARN, 30_000);
    await conduit.relay!.kill();
    await fs.rm(path.join(conduit.paths.relayState, 'relay.sign.key'));
    await conduit.startRelay();
    // Checkpoints under another key are what anyone on the path could serve: not a signed
    // conflict (docs/RECEIVER.md "Fault model"), so no exit 3, but an alert for the operator.
    const alert = await receiver.waitFor((l) => l.json?.['alert'] === 'relay_unproven', 60_000, 'the unproven-answers alert');
    assert.equal(alert.json!['level'], 50);
    assert.equal(alert.json!['reason'], 'bad_signature');
    assert.ok(receiver.lines.some((l) => l.json?.['level'] === 40 && l.json['reason'] === 'bad_signature' && /relay checkpoint of origin .*signature/.test(String(l.json['msg']))));
    assert.ok(receiver.running(), 'still running');
    assert.ok(!receiver.lines.some((l) => l.json?.['level'] === 60), 'no fatal line');
    assert.equal(await receiver.stop(), 0);
  });

  test('a rewound boot counter (the same origin again, a shorter log) is a rollback, refused', async () => {
    // The operator pins the new key (relay.sign.pub was rewritten) and resets the log trust on
    // purpose (docs/RECEIVER.md): witness.json and revocations.json together. Then epoch n is
    // followed, and booted a second time.
    for (const file of ['witness.json', 'revocations.json']) await fs.rm(path.join(conduit.paths.receiverState, file), { force: true });
    const receiver = await conduit.startReceiver();
    await conduit.startAgent();
    const before = await lastFrame(sinkFile);
    await until('frames delivered under the new key', async () => (await lastFrame(sinkFile)) >= before + 3n, 60_000);
    const epochFile = path.join(conduit.paths.relayState, 'epoch.json');
    const { epoch } = JSON.parse(await fs.readFile(epochFile, 'utf8')) as { epoch: number };
    // No re-sends into the second boot: its log stays at the one registration leaf, shorter than
    // what the receiver trusts (an identical replay of the same envelopes would sign nothing new).
    assert.equal(await conduit.agent!.stop(), 0);
    await conduit.relay!.kill();
    await fs.writeFile(epochFile, JSON.stringify({ version: 1, epoch: epoch - 1 }));
    await conduit.startRelay();
    assert.equal(relayEpoch(conduit.relay!).epoch, epoch);
    const { code } = await receiver.exited;
    assert.equal(code, 3);
    assert.equal(receiver.lines.find((l) => l.json?.['level'] === 60)!.json!['reason'], 'rollback');
  });
});
