/**
 * The agent keeps a stream whole across what an operator and a power cut do to the relay, against
 * real relay and agent processes: an API key rotated while the agent runs (it re-reads its key
 * file on 401 and binds the new key itself); relay SIGKILL + restart cycles, after each of
 * which the envelopes the relay lost are re-sent before any newer frame; and a stop while the
 * relay holds undelivered envelopes, which the stop line counts as lost with the backlog.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { cleanupAll, startRelay, type RelayProcess } from '../helpers/relay.js';
import { connectTestClient, startMosquitto, type MosquittoBroker } from '../helpers/mosquitto.js';
import { reservePort } from '../helpers/ports.js';
import { agentConfig, cli, frameSequences, killAllAgents, makeAgentEnv, startAgent, until, writeAgentConfig, type AgentEnv, type LogLine } from '../helpers/agent.js';
import { startAgentReceiver, type AgentReceiver } from '../helpers/agent-receiver.js';

let broker: MosquittoBroker | undefined;
after(async () => {
  await killAllAgents();
  await broker?.close();
  await cleanupAll();
});

const WARN = 40;
const KEY_REFUSED = /^relay refused the API key; keeping the backlog and re-reading the key file at each retry: /;
const RESENT = /^relay no longer knows accepted envelopes/;

/** An enrolled agent env (not started) reading one retained MQTT point every `interval`. */
async function setup(port: number, interval: string, logLevel = 'info'): Promise<{ env: AgentEnv; relay: RelayProcess }> {
  broker ??= await startMosquitto();
  const publisher = await connectTestClient(broker.url);
  await publisher.publishAsync('continuity/label', 'steady', { retain: true, qos: 1 });
  await publisher.endAsync();
  const relay = await startRelay({ listen: [`127.0.0.1:${port}`] });
  const env = await makeAgentEnv(relay);
  const taps = [{ name: 'mq', type: 'mqtt', url: broker.url, staleAfter: '1h', points: [{ name: 'label', topic: 'continuity/label', type: 'string' }] }];
  await writeAgentConfig(env, agentConfig(env, relay.url, taps, { interval, logLevel }));
  const enrolled = await cli(['enroll', '--config', env.configFile]);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  return { env, relay };
}

/** What the receiver's sink holds: frames in arrival order (its replay window dropped exact re-deliveries). */
function sinkOrder(rx: AgentReceiver): bigint[] {
  return frameSequences(rx.received);
}

/** Strictly increasing by one from 1: nothing lost, nothing twice, nothing out of order. */
function assertWholeAndInOrder(sequences: bigint[], what: string): void {
  for (const [i, seq] of sequences.entries()) assert.equal(seq, BigInt(i + 1), `${what}: position ${i} holds frame ${seq} (order: ${sequences.slice(Math.max(0, i - 5), i + 5).join(',')})`);
}

/** As an operator would: write the new key next to the old file, then rename over it (0600). */
async function replaceKeyFile(file: string, key: string): Promise<void> {
  await writeFile(`${file}.new`, key + '\n', { mode: 0o600 });
  await rename(`${file}.new`, file);
}

const count = (lines: LogLine[], predicate: (l: LogLine) => boolean): number => lines.filter(predicate).length;

async function pollUntil(predicate: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await predicate().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('an API key rotated while the agent runs: 401 re-reads the key file, the new key is bound, no frame lost or twice', { timeout: 90_000 }, async () => {
  const { env, relay } = await setup(await reservePort(), '200ms', 'debug');
  const oldKeyId = (await readFile(env.apiKeyFile, 'utf8')).trim().slice(4, 16);
  const rx = await startAgentReceiver(env, relay, { ackedOnly: true });
  const agent = startAgent(env.configFile);
  await until(() => rx.received.length >= 3, 15_000, 'frames with the first key');

  // The operator revokes the old key before the new one is in the file: 401, the file still holds
  // the old key; the agent keeps its backlog and retries, with one warn for the whole spell.
  await relay.operator.revokeKey(oldKeyId);
  const refused = await agent.waitFor((l) => KEY_REFUSED.test(l.msg), 10_000, 'the key refusal');
  assert.equal(refused.level, WARN);
  // Repeats of the refusal go to debug: at least one retry re-read the unchanged file.
  await until(() => count(agent.lines, (l) => KEY_REFUSED.test(l.msg)) >= 2, 20_000, 'a retry with the unchanged key');
  const beforeNewKey = rx.received.length;

  // The new key: issued, written to the file. The agent switches at its next retry and binds it.
  const issued = await relay.operator.createKey({ role: 'device', plan: 'enterprise', label: 'rotated gateway key' });
  await replaceKeyFile(env.apiKeyFile, issued.key);
  const switched = await agent.waitFor((l) => l.msg === 'API key file changed; using the new key', 20_000, 'the key switch');
  assert.equal(switched['keyId'], issued.id);
  assert.ok(!agent.output().includes(issued.key), 'the agent logs the key id, never the key');
  await agent.waitFor((l) => l.msg === 'bound the new API key to this device (key rotation)', 10_000, 'the new key bound');
  await until(() => rx.received.length >= beforeNewKey + 5, 15_000, 'frames with the new key');

  assert.equal(await agent.stop('SIGTERM'), 0);
  const stopped = agent.lines.find((l) => l.msg.startsWith('agent stopped'))!;
  assert.equal(stopped['flushed'], true);
  await pollUntil(async () => {
    const stats = await relay.operator.stats();
    return stats.envelopes.pending === 0 && stats.envelopes.leased === 0;
  }, 10_000, 'the receiver took every envelope');
  await rx.stop(); // exit 0, nothing refused

  assert.equal(count(agent.lines, (l) => KEY_REFUSED.test(l.msg) && l.level === WARN), 1, 'one warn for one refused-key spell');
  const sequences = frameSequences(rx.received);
  assert.equal(new Set(sequences).size, sequences.length, 'no frame delivered twice');
  // The sink holds each envelope once: a re-delivery shows as a duplicate the receiver dropped.
  assert.deepEqual(rx.duplicates(), [], 'no envelope delivered twice');
  assertWholeAndInOrder(sequences, 'frames across the rotation');
  assert.ok(rx.received.some((r) => r.frames.length > 1), 'the frames held during the refusal went out coalesced');
  assert.equal(count(agent.lines, (l) => /dropped/.test(l.msg)), 0, 'nothing dropped');
  // The relay answers status for envelopes uploaded with the former key: nothing is re-sent.
  assert.equal(count(agent.lines, (l) => RESENT.test(l.msg)), 0, 'no re-send after the rotation');
  const keys = await relay.operator.listKeys();
  assert.equal(keys.find((k) => k.id === issued.id)?.did, env.did, 'the new key is bound to the device');
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});

test('relay SIGKILL + restart, 5 cycles: what the relay lost is re-sent before newer frames, in order, once', { timeout: 180_000 }, async () => {
  const port = await reservePort();
  let { env, relay } = await setup(port, '200ms', 'debug');
  const rx = await startAgentReceiver(env, relay);
  const agent = startAgent(env.configFile);
  await until(() => rx.received.length >= 3, 15_000, 'first frames');

  const CYCLES = 5;
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    // The receiver pauses so the relay holds undelivered envelopes; the kill loses them.
    await rx.stop(); // exit 0, nothing refused
    const live = relay;
    await pollUntil(async () => (await live.operator.stats()).envelopes.pending >= 3, 15_000, `cycle ${cycle}: envelopes held by the relay`);
    await relay.stop('SIGKILL');
    const resentBefore = count(agent.lines, (l) => RESENT.test(l.msg));
    relay = await startRelay({ listen: [`127.0.0.1:${port}`] }, { dir: relay.dir });
    await rx.start();
    await until(() => count(agent.lines, (l) => RESENT.test(l.msg)) > resentBefore, 20_000, `cycle ${cycle}: the re-send`);
    const sealedSoFar = lastFrameBuilt(agent.lines);
    await until(() => sinkOrder(rx).length >= sealedSoFar, 20_000, () => `cycle ${cycle}: frames up to ${sealedSoFar} at the receiver (have ${sinkOrder(rx).length})`);
    // The invariant after every cycle, not only at the end.
    assertWholeAndInOrder(sinkOrder(rx), `after cycle ${cycle}`);
  }

  assert.equal(await agent.stop('SIGTERM'), 0);
  const built = lastFrameBuilt(agent.lines);
  await until(() => sinkOrder(rx).length >= built, 15_000, 'every frame built at the receiver');
  await rx.stop(); // exit 0, nothing refused
  const order = sinkOrder(rx);
  assertWholeAndInOrder(order, 'the whole run');
  assert.equal(order.length, built, 'every frame the agent built arrived');
  assert.equal(count(agent.lines, (l) => /dropped/.test(l.msg)), 0, 'nothing dropped');
  assert.ok(count(agent.lines, (l) => RESENT.test(l.msg)) >= CYCLES, 'a re-send after every restart');
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});

/** The newest frame sequence the agent built (its debug `interval` lines). */
function lastFrameBuilt(lines: LogLine[]): number {
  const last = lines.filter((l) => l.msg === 'interval').at(-1);
  return last ? Number(last['frame']) : 0;
}

test('SIGTERM while the relay holds undelivered envelopes: they are counted as lost with the backlog, exactly', { timeout: 60_000 }, async () => {
  const { env, relay } = await setup(await reservePort(), '200ms');
  const rx = await startAgentReceiver(env, relay, { ackedOnly: true });
  const agent = startAgent(env.configFile);
  await until(() => rx.received.length >= 3, 15_000, 'first frames');
  await rx.stop(); // exit 0, nothing refused
  const before = rx.received.length;
  await pollUntil(async () => (await relay.operator.stats()).envelopes.pending >= 3, 15_000, 'envelopes held by the relay');

  assert.equal(await agent.stop('SIGTERM'), 0);
  const stopped = agent.lines.find((l) => l.msg.startsWith('agent stopped'))!;
  assert.equal(stopped.level, WARN, 'a loss is logged at warn');
  assert.equal(stopped['flushed'], true);
  assert.equal(stopped['unflushedFrames'], 0);
  assert.ok((stopped['undeliveredFrames'] as number) >= 3, `undeliveredFrames ${String(stopped['undeliveredFrames'])}`);
  assert.ok((stopped['undeliveredEnvelopes'] as number) >= 1);
  assert.equal(stopped['lostWithBacklog'], stopped['undeliveredFrames']);
  assert.equal(stopped.msg, `agent stopped; ${String(stopped['lostWithBacklog'])} frame(s) are lost with the RAM backlog: 0 the relay did not accept, ${String(stopped['undeliveredFrames'])} it accepted but had not delivered`);

  // What it counted is exactly what the relay still held: a receiver now gets those frames, no more.
  await rx.start();
  await pollUntil(async () => {
    const stats = await relay.operator.stats();
    return stats.envelopes.pending === 0 && stats.envelopes.leased === 0;
  }, 15_000, 'the receiver took every held envelope');
  await rx.stop(); // exit 0, nothing refused
  assert.equal(frameSequences(rx.received.slice(before)).length, stopped['undeliveredFrames']);
  // A re-delivery would be a duplicate the receiver dropped, not in the count above: none.
  assert.deepEqual(rx.duplicates(), [], 'no envelope delivered twice');
  assertWholeAndInOrder(frameSequences(rx.received), 'frames before and after the stop');
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});
