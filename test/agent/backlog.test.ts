/**
 * The RAM backlog against a real relay process: it grows while the relay is down, drains in
 * order and coalesced when it is back, drops the oldest (counted, logged) on overflow; sequence
 * numbers continue across agent restarts with a bounded number of state writes.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cleanupAll, startRelay, type RelayProcess } from '../relay/harness.js';
import { connectTestClient, freePort, startMosquitto, type MosquittoBroker } from '../helpers/mosquitto.js';
import { agentConfig, cli, dedupe, frameSequences, killAllAgents, makeAgentEnv, receiveLoop, startAgent, until, writeAgentConfig, type AgentEnv, type LogLine } from './harness.js';

let broker: MosquittoBroker | undefined;
after(async () => {
  await killAllAgents();
  await broker?.close();
  await cleanupAll();
});

async function setup(payload: string, extra: Record<string, unknown>, relayConfig: Record<string, unknown> = {}): Promise<{ env: AgentEnv; relay: RelayProcess; port: number }> {
  broker ??= await startMosquitto();
  const publisher = await connectTestClient(broker.url);
  await publisher.publishAsync('big/value', payload, { retain: true, qos: 1 });
  await publisher.endAsync();
  const port = await freePort();
  const relay = await startRelay({ listen: [`127.0.0.1:${port}`], ...relayConfig });
  const env = await makeAgentEnv(relay);
  await writeAgentConfig(env, agentConfig(env, relay.url, [{ name: 'mq', type: 'mqtt', url: broker.url, staleAfter: '1h', points: [{ name: 'v', topic: 'big/value', type: 'string' }] }], { interval: '200ms', ...extra }));
  const enrolled = await cli(['enroll', '--config', env.configFile]);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  return { env, relay, port };
}

const droppedIn = (lines: LogLine[]): bigint[] =>
  lines.filter((l) => l.msg.startsWith('backlog full: dropped')).flatMap((l) => (l['frames'] as string[] | undefined) ?? [l['frame'] as string]).map(BigInt);

test('relay down: the backlog grows; relay back: drained in order, coalesced, nothing lost', { timeout: 60_000 }, async () => {
  let { env, relay, port } = await setup('x', {});
  const rx = receiveLoop(() => env.receiver, env.devicePublicKey);
  const agent = startAgent(env.configFile);
  await until(() => rx.received.length >= 2, 15_000, 'first frames');
  await relay.stop('SIGTERM');
  await new Promise((resolve) => setTimeout(resolve, 2500)); // ~12 intervals without a relay
  relay = await startRelay({ listen: [`127.0.0.1:${port}`] }, { dir: relay.dir });
  const coalesced = await agent.waitFor((l) => l.msg === 'coalesced backlog frames into one envelope', 15_000, 'coalescing');
  assert.ok((coalesced['frames'] as number) >= 5, `coalesced ${String(coalesced['frames'])} frames`);
  await until(() => rx.received.some((r) => r.frames.length > 1) && rx.received.length >= 6, 20_000, 'the coalesced envelope and later frames');
  assert.equal(await agent.stop(), 0);
  await new Promise((resolve) => setTimeout(resolve, 800));
  await rx.stop();

  const batch = rx.received.find((r) => r.frames.length > 1)!;
  const inBatch = batch.frames.map((f) => f.sequence);
  assert.deepEqual(inBatch, [...inBatch].sort((a, b) => (a < b ? -1 : 1)), 'frames inside a coalesced envelope are in order');
  for (let i = 1; i < inBatch.length; i++) assert.equal(inBatch[i], inBatch[i - 1]! + 1n);
  const all = frameSequences(dedupe(rx.received)).sort((a, b) => (a < b ? -1 : 1));
  assert.equal(all[0], 1n);
  for (let i = 1; i < all.length; i++) assert.equal(all[i], all[i - 1]! + 1n, `frame ${all[i - 1]! + 1n} lost`);
  assert.deepEqual(droppedIn(agent.lines), []);
  await relay.stop();
});

test('relay full (507): the agent keeps its backlog until the relay has room, then everything arrives once', { timeout: 60_000 }, async () => {
  // A 2 MiB relay and 64 KiB envelopes (a 40 kB reading): about 30 undelivered envelopes fill it.
  // The relay's Retry-After for 507 follows its leaseTimeout (1 s here); the agent honours it.
  const { env, relay } = await setup('f'.repeat(40_000), {}, { memoryCap: '2MiB', leaseTimeout: '1s' });
  const agent = startAgent(env.configFile);
  const refused = await agent.waitFor((l) => l.msg.startsWith('relay refused the upload; keeping the backlog'), 20_000, 'a refusal');
  assert.match(String(refused.msg), /507|full|memory/i);
  await new Promise((resolve) => setTimeout(resolve, 1000)); // more frames pile up while full
  const rx = receiveLoop(() => env.receiver, env.devicePublicKey); // frees the relay
  await until(() => rx.received.some((r) => r.frames.length > 1), 20_000, 'a coalesced envelope after the relay had room');
  assert.equal(await agent.stop(), 0);
  await new Promise((resolve) => setTimeout(resolve, 800));
  await rx.stop();
  const all = frameSequences(dedupe(rx.received)).sort((a, b) => (a < b ? -1 : 1));
  assert.equal(all[0], 1n);
  for (let i = 1; i < all.length; i++) assert.equal(all[i], all[i - 1]! + 1n, `frame ${all[i - 1]! + 1n} lost`);
  assert.equal(new Set(all).size, all.length, 'no frame twice');
  assert.deepEqual(droppedIn(agent.lines), []);
  await relay.stop();
});

test('overflow drops the oldest frames, counts and logs them; the rest arrives', { timeout: 60_000 }, async () => {
  // ~3 KB frames, a 64 KiB budget: a few seconds without a relay overflow it.
  let { env, relay, port } = await setup('y'.repeat(3000), { backlog: { maxSize: '64KiB' } });
  const rx = receiveLoop(() => env.receiver, env.devicePublicKey);
  const agent = startAgent(env.configFile);
  await until(() => rx.received.length >= 2, 15_000, 'first frames');
  await relay.stop('SIGTERM');
  await agent.waitFor((l) => l.msg === 'backlog full: dropped the oldest frame', 20_000, 'a drop');
  await agent.waitFor((l) => l.msg === 'backlog above 90 %', 1_000, 'the 90 % threshold log');
  relay = await startRelay({ listen: [`127.0.0.1:${port}`] }, { dir: relay.dir });
  await agent.waitFor((l) => l.msg === 'coalesced backlog frames into one envelope', 15_000, 'draining');
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(await agent.stop(), 0);
  await new Promise((resolve) => setTimeout(resolve, 800));
  await rx.stop();

  const dropped = droppedIn(agent.lines);
  assert.ok(dropped.length >= 1);
  const stopped = agent.lines.find((l) => l.msg.startsWith('agent stopped'))!;
  assert.equal(stopped['droppedFrames'], dropped.length, 'the counter matches the logged drops');
  const got = new Set(frameSequences(dedupe(rx.received)));
  for (const seq of dropped) assert.ok(!got.has(seq), `dropped frame ${seq} arrived anyway`);
  const afterOutage = [...got].filter((s) => s > dropped[0]!);
  assert.ok(dropped.every((d) => afterOutage.filter((s) => s < d).length === 0), 'only the oldest frames were dropped');
  const max = [...got].reduce((a, b) => (a > b ? a : b));
  for (let s = 1n; s <= max; s++) assert.ok(got.has(s) || dropped.includes(s), `frame ${s} neither arrived nor was reported dropped`);
  await relay.stop();
});

test('sequence numbers continue across agent restarts (also after SIGKILL) with one state write per boot', { timeout: 60_000 }, async () => {
  const { env, relay } = await setup('z', {});
  const rx = receiveLoop(() => env.receiver, env.devicePublicKey);
  const seen: bigint[][] = [];
  for (const signal of ['SIGTERM', 'SIGKILL', 'SIGTERM'] as const) {
    const from = rx.received.length;
    const agent = startAgent(env.configFile);
    await until(() => rx.received.length >= from + 4, 15_000, 'frames of this boot');
    await agent.stop(signal);
    const writes = agent.lines.filter((l) => l.msg.startsWith('state saved'));
    assert.equal(writes.length, 1, `state writes this boot: ${writes.map((l) => l.msg).join('; ')}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    seen.push(frameSequences(rx.received.slice(from)));
  }
  await rx.stop();
  const all = seen.flat();
  assert.equal(new Set(all).size, all.length, 'no frame sequence ever repeats');
  for (let boot = 1; boot < seen.length; boot++) {
    const previousMax = seen[boot - 1]!.reduce((a, b) => (a > b ? a : b));
    assert.ok(seen[boot]!.every((s) => s > previousMax), `boot ${boot} continues above ${previousMax}`);
  }
  await relay.stop();
});
