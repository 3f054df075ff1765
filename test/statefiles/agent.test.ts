/**
 * The agent's state file (agent-state.json: the sequence reservation) broken in every way we know,
 * with the real agent process: garbled, truncated (0 bytes, half), valid JSON of the wrong layout,
 * replaced by a directory (we run as root, so chmod 000 would not stop a read), a full disk at start
 * and a full disk while running. Each time: exit 65 or 74, one stderr line naming the file, the
 * file left as it was, and — the invariant checked after every cycle — frame sequence numbers
 * never repeat across all runs (a reset reservation would start again at 1).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanupAll, prover, startRelay, type RelayProcess } from '../helpers/relay.js';
import { agentConfig, cli, frameSequences, killAllAgents, makeAgentEnv, startAgent, until, writeAgentConfig, type AgentEnv, type AgentProcess } from '../helpers/agent.js';
import { startAgentReceiver, type AgentReceiver } from '../helpers/agent-receiver.js';
import { smallDisk, type FullDisk } from '../helpers/full-disk.js';
import { RelayClient } from '../../common/relay-client.js';
import { getProvider } from '../../protocol/crypto/provider.js';
import { loadDeviceKeys } from '../../common/keyfile.js';
import { errorLines as cliErrors, re, snapshot } from '../helpers/statefiles.js';

const disks: FullDisk[] = [];
after(async () => {
  await killAllAgents();
  await cleanupAll();
  for (const disk of disks) disk.cleanup();
});

// A Modbus tap on a closed port: frames are still built every interval (with bad points).
const deadTap = { name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: 1, addressBase: 0, timeout: '100ms', retries: 0, points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }] };

function exitCode(agent: AgentProcess, timeoutMs = 20_000): Promise<number | null> {
  if (agent.child.exitCode !== null) return Promise.resolve(agent.child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not exit within ${timeoutMs} ms:\n${agent.output().slice(-3000)}`)), timeoutMs);
    agent.child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

const errorLines = (agent: AgentProcess) => cliErrors(agent.output());

/** Runs the agent until the receiver got `count` more envelopes, then stops it with SIGTERM (exit 0). */
async function runUntilFrames(env: AgentEnv, rx: AgentReceiver, count: number): Promise<void> {
  const before = rx.received.length;
  const agent = startAgent(env.configFile);
  await until(() => rx.received.length >= before + count || agent.child.exitCode !== null, 20_000, () => `frames after a good start:\n${agent.output().slice(-3000)}`);
  assert.equal(agent.child.exitCode, null, agent.output());
  assert.equal(await agent.stop(), 0, agent.output());
}

function assertUnique(sequences: bigint[], when: string): void {
  const seen = new Set<bigint>();
  for (const s of sequences) {
    assert.ok(!seen.has(s), `${when}: frame sequence ${s} was sent twice (sequences ${sequences.join(',')})`);
    seen.add(s);
  }
}

let relay: RelayProcess;

test('a broken agent-state.json stops the agent with exit 65 and one line naming it; the file stays as it was and sequences never repeat', async () => {
  relay = await startRelay();
  const env = await makeAgentEnv(relay);
  await writeAgentConfig(env, agentConfig(env, relay.url, [deadTap]));
  const enrolled = await cli(['enroll', '--config', env.configFile]);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  const rx = await startAgentReceiver(env, relay);
  const stateFile = path.join(env.stateDir, 'agent-state.json');
  await runUntilFrames(env, rx, 2);
  // The newest good file, as a backup taken after the last run (an older copy would repeat numbers).
  let good = await readFile(stateFile);
  assert.match(good.toString('utf8'), /"reservedUpTo"/);

  const faults: { name: string; apply(): Promise<void> }[] = [
    { name: 'garbled bytes', apply: () => writeFile(stateFile, Buffer.concat([good.subarray(0, 10), Buffer.from([0xff, 0x00, 0x7b, 0x22]), good.subarray(14)])) },
    { name: 'truncated to 0 bytes', apply: () => writeFile(stateFile, '') },
    { name: 'truncated to half', apply: () => writeFile(stateFile, good.subarray(0, Math.floor(good.length / 2))) },
    { name: 'valid JSON, empty object', apply: () => writeFile(stateFile, '{}\n') },
    { name: 'valid JSON, null', apply: () => writeFile(stateFile, 'null') },
    { name: 'a directory in its place', apply: async () => { await rm(stateFile); await mkdir(stateFile); } },
  ];
  for (const fault of faults) {
    good = await readFile(stateFile);
    await fault.apply();
    const broken = await snapshot(stateFile);
    const agent = startAgent(env.configFile);
    const code = await exitCode(agent);
    assert.equal(code, 65, `${fault.name}: exit code\n${agent.output()}`);
    const lines = errorLines(agent);
    assert.equal(lines.length, 1, `${fault.name}: one error line\n${agent.output()}`);
    assert.match(lines[0]!, new RegExp(`^ghostpipe: agent: state file ${re(stateFile)}: .+; it holds the sequence reservation`), fault.name);
    assert.deepEqual(await snapshot(stateFile), broken, `${fault.name}: nothing was "repaired" or reset`);
    // Put the good file back: the next run continues above every number used so far.
    await rm(stateFile, { recursive: true, force: true });
    await writeFile(stateFile, good, { mode: 0o600 });
    await runUntilFrames(env, rx, 1);
    assertUnique(frameSequences(rx.received), `after "${fault.name}"`);
  }
  await rx.stop(); // exit 0, nothing refused
  // The sink holds each envelope once; the old in-process loop counted re-deliveries too: none.
  assert.deepEqual(rx.duplicates(), [], 'no envelope was delivered twice');
});

test('a full disk at the first start: exit 74, one line naming agent-state.json, no state invented', async () => {
  const disk = smallDisk(64);
  disks.push(disk);
  const env = await makeAgentEnv(relay);
  await writeAgentConfig(env, agentConfig(env, relay.url, [deadTap], { stateDir: disk.dir }));
  for (let cycle = 0; cycle < 2; cycle++) {
    disk.fill();
    const agent = startAgent(env.configFile);
    assert.equal(await exitCode(agent), 74, `cycle ${cycle} (${disk.mechanism})\n${agent.output()}`);
    const lines = errorLines(agent);
    assert.equal(lines.length, 1, agent.output());
    assert.match(lines[0]!, new RegExp(`^ghostpipe: agent: state file ${re(path.join(disk.dir, 'agent-state.json'))}: write failed: (no space left on device \\(ENOSPC\\)|file too large)`));
    await assert.rejects(stat(path.join(disk.dir, 'agent-state.json')), { code: 'ENOENT' });
    disk.free();
  }
});

test('the disk fills while the agent runs: its next state write stops it with exit 74; the saved reservation is kept and no sequence repeats after a restart', async () => {
  const disk = smallDisk(64);
  disks.push(disk);
  const env = await makeAgentEnv(relay);
  await writeAgentConfig(env, agentConfig(env, relay.url, [deadTap], { stateDir: disk.dir }));
  const rx = await startAgentReceiver(env, relay);
  const stateFile = path.join(disk.dir, 'agent-state.json');
  const device = await loadDeviceKeys({ signKey: env.signKey, kemKey: env.kemKey });
  const client = new RelayClient({ baseUrl: relay.url, apiKey: (await readFile(env.apiKeyFile, 'utf8')).trim() });
  // Not enrolled yet: the agent reserves its blocks, then checks enrollment every statusInterval.
  // Enrolling it while the disk is full makes the agent record the enrollment: that write fails.
  const agent = startAgent(env.configFile);
  await agent.waitFor((l) => l.msg === 'device is not enrolled: refusing to send (run `ghostpipe enroll --config …`); frames stay in the RAM backlog', 15_000, 'not-enrolled line');
  const reservation = await readFile(stateFile);
  disk.fill(agent.child.pid);
  await client.enroll(prover(device.signing, device.kem));
  assert.equal(await exitCode(agent, 30_000), 74, `${disk.mechanism}\n${agent.output()}`);
  const fatal = agent.lines.find((l) => l.level === 60);
  assert.ok(fatal, agent.output());
  assert.match(fatal.msg, new RegExp(`^state file ${re(stateFile)}: write failed: `));
  assert.equal(errorLines(agent).length, 1, agent.output());
  assert.deepEqual(await readFile(stateFile), reservation, 'the reservation on disk is what it was');
  const before = frameSequences(rx.received);
  disk.free();
  await runUntilFrames(env, rx, 2);
  const all = frameSequences(rx.received);
  assertUnique(all, 'after the restart');
  const maxBefore = before.reduce((a, b) => (b > a ? b : a), 0n);
  for (const s of all.slice(before.length)) assert.ok(s > maxBefore, `frame ${s} after the restart is above every earlier one (${maxBefore})`);
  await rx.stop(); // exit 0, nothing refused
  assert.deepEqual(rx.duplicates(), [], 'no envelope was delivered twice');
});
