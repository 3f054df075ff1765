/**
 * Relay refusals the agent must ride out, against real relay and agent processes: an envelope too
 * large for the device's plan (413), coalesced (split smaller, nothing lost) or a single frame
 * (dropped, counted, logged, later frames unblocked), also when it is a re-send after a relay
 * restart; and envelopes the relay expired (TTL) before a receiver took them (logged as lost).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { cleanupAll, startRelay, type RelayProcess } from '../helpers/relay.js';
import { connectTestClient, startMosquitto, type MosquittoBroker } from '../helpers/mosquitto.js';
import { reservePort } from '../helpers/ports.js';
import { envelopeLimit } from '../../relay/envelope-check.js';
import { agentConfig, cli, frameSequences, killAllAgents, makeAgentEnv, startAgent, until, untilRelayDrained, writeAgentConfig, type AgentEnv, type AgentProcess, type LogLine } from '../helpers/agent.js';
import { startAgentReceiver, type AgentReceiver, type Arrival } from '../helpers/agent-receiver.js';

let broker: MosquittoBroker | undefined;
after(async () => {
  await killAllAgents();
  await broker?.close();
  await cleanupAll();
});

const KiB = 1024;
const WARN = 40;
/** `plans:` replaces the relay's defaults: keep the plans the harness issues keys on, add "gateway". */
const UNLIMITED = { quota: 0, ratePerMinute: 600_000, burst: 100_000, maxBlob: '5MiB' };
const withGatewayPlan = (maxBlob: string): Record<string, unknown> => ({ plans: { enterprise: UNLIMITED, pro: UNLIMITED, gateway: { ...UNLIMITED, maxBlob } } });
/** The largest envelope (bytes on the wire) a 64 KiB plan accepts. */
const LIMIT_64K = envelopeLimit(64 * KiB);

const COALESCED_REFUSAL = 'relay refused a coalesced envelope; coalescing smaller';
const EXPIRED = 'relay expired an envelope before any receiver took it (ttl); its frames are lost';
const isRefusedForGood = (l: LogLine): boolean => l.msg.startsWith('relay refused the envelope for good');

async function publishRetained(values: Record<string, string>): Promise<void> {
  broker ??= await startMosquitto();
  const publisher = await connectTestClient(broker.url);
  for (const [topic, payload] of Object.entries(values)) await publisher.publishAsync(topic, payload, { retain: true, qos: 1 });
  await publisher.endAsync();
}

/** An enrolled agent env (not started) reading one MQTT point per topic as a string, every 200 ms. */
async function setup(values: Record<string, string>, relayConfig: Record<string, unknown>, options: { plan?: string; logLevel?: string } = {}): Promise<{ env: AgentEnv; relay: RelayProcess; port: number }> {
  await publishRetained(values);
  const port = await reservePort();
  const relay = await startRelay({ listen: [`127.0.0.1:${port}`], ...relayConfig });
  const env = await makeAgentEnv(relay, options.plan);
  const points = Object.keys(values).map((topic, i) => ({ name: `p${i}`, topic, type: 'string' }));
  const config = agentConfig(env, relay.url, [{ name: 'mq', type: 'mqtt', url: broker!.url, staleAfter: '1h', points }], { interval: '200ms', logLevel: options.logLevel ?? 'info' });
  await writeAgentConfig(env, config);
  const enrolled = await cli(['enroll', '--config', env.configFile]);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  return { env, relay, port };
}

const apiKeyId = async (env: AgentEnv): Promise<string> => (await readFile(env.apiKeyFile, 'utf8')).trim().slice(4, 16);
const intervals = (agent: AgentProcess): number => agent.lines.filter((l) => l.msg === 'interval').length;
const framesIn = (lines: LogLine[]): bigint[] => lines.flatMap((l) => (l['frames'] as string[]).map(BigInt));

/** Frame sequences in arrival order strictly increase by one, from 1 (nothing lost, twice or reordered). */
function assertContiguousInArrivalOrder(frames: bigint[]): void {
  assert.equal(frames[0], 1n);
  for (let i = 1; i < frames.length; i++) assert.equal(frames[i], frames[i - 1]! + 1n, `after frame ${frames[i - 1]} came ${frames[i]}`);
}

/** No envelope the receiver got (delivered, or leased again and dropped as a duplicate) is larger than the plan allows. */
function assertWithinPlan(rx: AgentReceiver): void {
  for (const r of rx.received) assert.ok(r.bytes <= LIMIT_64K, `an envelope of ${r.bytes} bytes passed a ${LIMIT_64K}-byte plan`);
  for (const l of rx.tap.leases) assert.ok(l.bytes.length <= LIMIT_64K, `an envelope of ${l.bytes.length} bytes was leased under a ${LIMIT_64K}-byte plan`);
}

/** "1-3,5" (the agent's frame ranges, agent/delivery.ts frameRanges) as [1, 2, 3, 5]. */
function expandRanges(ranges: string): bigint[] {
  return ranges.split(',').filter((r) => r !== '').flatMap((r) => {
    const [from, to = from] = r.split('-').map(BigInt) as [bigint, bigint?];
    const out: bigint[] = [];
    for (let s = from; s <= to!; s++) out.push(s);
    return out;
  });
}

/** Every frame up to the last one seen is in exactly one of `arrived` and `lost`, none twice. */
function assertAccountedFor(arrived: bigint[], lost: bigint[], what: string): void {
  assert.equal(new Set(arrived).size, arrived.length, 'no frame arrived twice');
  assert.equal(new Set(lost).size, lost.length, `no frame ${what} twice`);
  const arrivedSet = new Set(arrived);
  for (const seq of lost) assert.ok(!arrivedSet.has(seq), `frame ${seq} was ${what} but arrived`);
  const max = [...arrived, ...lost].reduce((a, b) => (a > b ? a : b));
  const lostSet = new Set(lost);
  for (let s = 1n; s <= max; s++) assert.ok(arrivedSet.has(s) || lostSet.has(s), `frame ${s} neither arrived nor was reported ${what}`);
}


test('413 for a coalesced envelope: the agent coalesces smaller and delivers every frame once, in order', { timeout: 90_000 }, async () => {
  // 10 kB readings: one frame fits the plan's 64 KiB bucket, a backlog of a dozen coalesced needs
  // the 1 MiB bucket, which the plan refuses.
  let { env, relay, port } = await setup({ 'refusals/coalesced': 'c'.repeat(10_000) }, withGatewayPlan('64KiB'), { plan: 'gateway', logLevel: 'debug' });
  const keyId = await apiKeyId(env);
  const gatewayRelay = { listen: [`127.0.0.1:${port}`], ...withGatewayPlan('64KiB') };
  await relay.stop(); // the agent starts during an outage: nothing is accepted before the backlog
  const agent = startAgent(env.configFile);
  await until(() => intervals(agent) >= 12, 15_000, '12 intervals without a relay');
  relay = await startRelay(gatewayRelay, { dir: relay.dir });
  const rx = await startAgentReceiver(env, relay);
  await agent.waitFor((l) => l.msg === COALESCED_REFUSAL, 15_000, 'a refused coalesced envelope');
  await until(() => rx.received.some((r) => r.frames.length > 1) && frameSequences(rx.received).length >= 20, 20_000, 'the backlog, coalesced smaller, and later frames');
  assert.equal(await agent.stop(), 0);
  await untilRelayDrained(relay);
  await rx.stop(); // exit 0, nothing refused

  const refusals = agent.lines.filter((l) => l.msg === COALESCED_REFUSAL);
  for (const line of refusals) assert.deepEqual([line.level, line['status'], line['code']], [WARN, 413, 'too_large']);
  const limits = refusals.map((l) => String(l['coalesceLimit']));
  assert.equal(new Set(limits).size, limits.length, `each refusal shrinks the coalescing limit: ${limits.join(', ')}`);
  const refusedByRelay = (await relay.operator.audit({ key: keyId })).filter((e) => e.event === 'upload' && e.outcome === 'too_large');
  assert.equal(refusedByRelay.length, refusals.length, 'every 413 the relay sent was handled as a coalesced refusal');

  assert.ok(rx.received.some((r) => r.frames.length > 1), 'the backlog still went out coalesced, only smaller');
  assertWithinPlan(rx);
  assert.ok(frameSequences(rx.received).length >= 20);
  assertContiguousInArrivalOrder(frameSequences(rx.received));
  assert.deepEqual(agent.lines.filter((l) => l.msg.includes('dropped')).map((l) => l.msg), []);
  assert.equal(agent.lines.find((l) => l.msg.startsWith('agent stopped'))!['droppedFrames'], 0);
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});

test('413 for a single frame: dropped with a warning and counted; later frames are not blocked', { timeout: 90_000 }, async () => {
  // Two string points: 60 kB each makes one frame larger than the plan's 64 KiB bucket.
  const [a, b] = ['refusals/single/a', 'refusals/single/b'];
  const { env, relay } = await setup({ [a]: 'small-a', [b]: 'small-b' }, withGatewayPlan('64KiB'), { plan: 'gateway' });
  const keyId = await apiKeyId(env);
  const rx = await startAgentReceiver(env, relay);
  const agent = startAgent(env.configFile);
  await until(() => rx.received.length >= 3, 15_000, 'first frames');
  const big = 'B'.repeat(60_000);
  await publishRetained({ [a]: big, [b]: big });
  await until(() => agent.lines.filter(isRefusedForGood).length >= 3, 15_000, '3 frames refused for good');
  await publishRetained({ [a]: 'after-a', [b]: 'after-b' });
  const hasAfter = (r: Arrival): boolean => r.frames.some((f) => f.readings.some((x) => x.value === 'after-a'));
  await until(() => rx.received.filter(hasAfter).length >= 3, 15_000, 'frames after the oversized ones');
  assert.equal(await agent.stop(), 0);
  await untilRelayDrained(relay);
  await rx.stop(); // exit 0, nothing refused

  const droppedLines = agent.lines.filter(isRefusedForGood);
  for (const line of droppedLines) {
    assert.equal(line.level, WARN);
    assert.match(line.msg, /^relay refused the envelope for good \(too_large\): dropped 1 frame\(s\)$/);
  }
  const dropped = framesIn(droppedLines);
  const stopped = agent.lines.find((l) => l.msg.startsWith('agent stopped'))!;
  assert.equal(stopped['droppedFrames'], dropped.length, 'the counter matches the logged drops');
  const coalescedRefusals = agent.lines.filter((l) => l.msg === COALESCED_REFUSAL).length; // two big frames that waited together
  const refusedByRelay = (await relay.operator.audit({ key: keyId })).filter((e) => e.event === 'upload' && e.outcome === 'too_large');
  assert.equal(refusedByRelay.length, droppedLines.length + coalescedRefusals, 'each 413 is either a logged drop or a coalesced refusal');

  const arrived = frameSequences(rx.received);
  assertAccountedFor(arrived, dropped, 'dropped');
  assert.deepEqual(arrived, [...arrived].sort((x, y) => (x < y ? -1 : 1)), 'frames arrive in order');
  const lastDropped = dropped.reduce((x, y) => (x > y ? x : y));
  assert.ok(arrived.filter((s) => s > lastDropped).length >= 3, 'frames after the drops arrived');
  assertWithinPlan(rx);
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});

test('a re-send the relay now refuses as too large (plan lowered across a restart) is split, not re-sent forever', { timeout: 90_000 }, async () => {
  // The relay accepts a coalesced 1 MiB-bucket envelope, nobody takes it, the relay restarts with
  // the plan lowered to 64 KiB: the agent's re-send of the same bytes gets 413.
  let { env, relay, port } = await setup({ 'refusals/resend': 'r'.repeat(10_000) }, withGatewayPlan('5MiB'), { plan: 'gateway', logLevel: 'debug' });
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
  const agent = startAgent(env.configFile);
  await until(() => intervals(agent) >= 12, 15_000, '12 intervals without a relay');
  relay = await startRelay({ listen: [`127.0.0.1:${port}`], ...withGatewayPlan('5MiB') }, { dir: relay.dir });
  const bigUpload = await agent.waitFor((l) => l.msg === 'envelope uploaded' && (l['bytes'] as number) > LIMIT_64K, 15_000, 'a coalesced envelope above 64 KiB accepted');
  // The agent went on past it: the big envelope is accepted in its books, and the relay holds it.
  await agent.waitFor((l) => l.msg === 'envelope uploaded' && agent.lines.indexOf(l) > agent.lines.indexOf(bigUpload), 15_000, 'an upload after the big one');
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
  relay = await startRelay({ listen: [`127.0.0.1:${port}`], ...withGatewayPlan('64KiB') }, { dir: relay.dir });
  const keyId = await apiKeyId(env);
  await agent.waitFor((l) => l.msg.startsWith('relay no longer knows accepted envelopes'), 15_000, 'the re-send after the restart');
  const rx = await startAgentReceiver(env, relay);
  const lastBeforeRestart = framesIn(agent.lines.filter((l) => l.msg === 'envelope uploaded')).reduce((x, y) => (x > y ? x : y));
  const newest = (): bigint => frameSequences(rx.received).reduce((x, y) => (x > y ? x : y), 0n);
  await until(() => newest() > lastBeforeRestart + 5n, 20_000, () => `frames beyond ${lastBeforeRestart} (newest arrived: ${newest()})`);
  assert.equal(await agent.stop(), 0);
  await untilRelayDrained(relay);
  await rx.stop(); // exit 0, nothing refused

  const refusedByRelay = (await relay.operator.audit({ key: keyId })).filter((e) => e.event === 'upload' && e.outcome === 'too_large');
  assert.ok(refusedByRelay.length >= 1, 'the re-send was refused');
  // Not retried in a loop: every 413 the relay sent is one logged refusal, and each shrank the
  // coalescing limit (a loop would repeat a limit: it stops shrinking at 1 KiB).
  const refusals = agent.lines.filter((l) => l.msg === COALESCED_REFUSAL);
  assert.equal(refusedByRelay.length, refusals.length, 'every 413 was handled (and logged) as a coalesced refusal');
  const limits = refusals.map((l) => String(l['coalesceLimit']));
  assert.equal(new Set(limits).size, limits.length, `each refusal shrinks the coalescing limit: ${limits.join(', ')}`);
  const arrived = frameSequences(rx.received);
  assertAccountedFor(arrived, [], 'dropped');
  for (const seq of (bigUpload['frames'] as string[]).map(BigInt)) assert.ok(arrived.includes(seq), `frame ${seq} of the refused re-send arrived`);
  assertWithinPlan(rx);
  assert.equal(agent.lines.find((l) => l.msg.startsWith('agent stopped'))!['droppedFrames'], 0);
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});

test('envelopes the relay expired (TTL) before a receiver took them are logged as lost; the rest arrives', { timeout: 90_000 }, async () => {
  // TTL 1 s; leaseTimeout 1 s makes the relay sweep every 250 ms.
  // The agent at debug: its 'envelope uploaded' lines say which frames each envelope carried.
  const { env, relay } = await setup({ 'refusals/expired': 'e' }, { ttl: '1s', leaseTimeout: '1s' }, { logLevel: 'debug' });
  const keyId = await apiKeyId(env);
  const agent = startAgent(env.configFile);
  await until(() => agent.lines.filter((l) => l.msg === EXPIRED).length >= 3, 15_000, '3 expired envelopes without a receiver');
  const rx = await startAgentReceiver(env, relay, { ackedOnly: true });
  await until(() => rx.received.length >= 5, 15_000, 'frames once a receiver takes them');
  // The agent's status checks catch up with the last expiries: it has logged every envelope the
  // relay expired so far. (Fewer expire once the receiver takes them, but some still can: the real
  // receiver holds a lease while it waits for the envelope's leaf in a signed checkpoint, and under
  // load that and its checks outlast a 1 s TTL; see below.)
  const loggedExpired = (): Set<unknown> => new Set(agent.lines.filter((l) => l.msg === EXPIRED).map((l) => l['envelope']));
  let relayExpiredSoFar = new Set<string | undefined>();
  await until(async () => {
    relayExpiredSoFar = new Set((await relay.operator.audit({ key: keyId })).filter((e) => e.event === 'expired').map((e) => e.envelopeHash));
    const logged = loggedExpired();
    return logged.size === relayExpiredSoFar.size && [...logged].every((h) => relayExpiredSoFar.has(h as string));
  }, 20_000, () => `the agent logging every expiry the relay audited (${loggedExpired().size} logged, ${relayExpiredSoFar.size} audited)`);
  assert.equal(await agent.stop(), 0);
  await untilRelayDrained(relay);
  await rx.stop(); // exit 0, nothing refused

  const expiredLines = agent.lines.filter((l) => l.msg === EXPIRED);
  for (const line of expiredLines) assert.equal(line.level, WARN);
  const relayExpired = new Set((await relay.operator.audit({ key: keyId })).filter((e) => e.event === 'expired').map((e) => e.envelopeHash));
  const agentLogged = new Set(expiredLines.map((l) => String(l['envelope'])));
  assert.equal(agentLogged.size, expiredLines.length, 'each expiry logged once');
  for (const id of agentLogged) assert.ok(relayExpired.has(id), `the agent logged envelope ${id} as expired; the relay did not expire it`);
  // Every expiry up to the check above was logged (asserted there). One the relay made after the
  // agent's last status check (its stop takes one last look) the agent cannot log: its frames must
  // be among those the stop line counted as lost with the backlog (accepted, not delivered).
  const stopped = agent.lines.find((l) => l.msg.startsWith('agent stopped'))!;
  const lostAtStop = new Set(expandRanges(String(stopped['lostFrameNumbers'] ?? '')));
  const framesOf = new Map(agent.lines.filter((l) => l.msg === 'envelope uploaded').map((l) => [String(l['envelope']), (l['frames'] as string[]).map(BigInt)]));
  const expiredAfterStop = [...relayExpired].filter((id) => !agentLogged.has(id as string)).map((id) => {
    const frames = framesOf.get(id as string);
    assert.ok(frames, `the relay expired envelope ${id}, which the agent never uploaded`);
    for (const seq of frames) assert.ok(lostAtStop.has(seq), `frame ${seq} of envelope ${id}, expired after the agent's last look, is not in its stop line's lost frames (${String(stopped['lostFrameNumbers'])})`);
    return frames;
  }).flat();
  const expired = framesIn(expiredLines);
  assertAccountedFor(frameSequences(rx.received), [...expired, ...expiredAfterStop], 'expired');
  assert.ok(expired.length >= 3);
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});
