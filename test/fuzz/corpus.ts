/**
 * The fuzzer's seed corpus: a real relay process with an operator key, an enrolled device, a
 * receiver, a victim device and key (the only targets of the destructive operator routes, so the
 * run never revokes what its valid requests need), and one valid request per route of the relay's
 * route table (relay/server.ts). Live pools (lease ids, challenges, uploaded ids) are filled from
 * the relay's answers, so valid acks and status queries exist to mutate.
 */
import { getProvider } from '../../protocol/crypto/provider.js';
import { xwingDecapsulate } from '../../protocol/crypto/xwing.js';
import { CONTENT_TYPE, KEM, sealEnvelope } from '../../protocol/envelope/index.js';
import { ENROLL_CONTEXT, ENVELOPE_MEDIA_TYPE, enrollmentMessage, kemProof } from '../../protocol/api/index.js';
import { generatePrivateKey, keyIdHex, type PrivateKey } from '../../protocol/keys.js';
import { RelayClient } from '../../common/relay-client.js';
import { approve, fleetKey, makeDevice, startRelay, untilCheckpointCovers, type RelayProcess } from '../helpers/relay.js';
import type { Rng } from './mutate.js';

const MiB = 1024 * 1024;

/**
 * The relay the fuzzer runs against. A plan without quota and with a rate far above what 2 cores
 * can send, so mutations reach the checks behind the rate limit; a 1 s maxWait so a mutated
 * long-poll never holds a worker; a short TTL and a 64 MiB cap so accepted re-signed envelopes
 * expire instead of filling RAM (a 507 at the cap is documented backpressure, not a finding).
 */
export const FUZZ_RELAY_CONFIG = {
  logLevel: 'info',
  ttl: '20s',
  leaseTimeout: '2s',
  memoryCap: 64 * MiB,
  plans: {
    free: { quota: 1_000, ratePerMinute: 10, burst: 20, maxBlob: '5MiB' },
    pro: { quota: 250_000, ratePerMinute: 60, burst: 120, maxBlob: '5MiB' },
    enterprise: { quota: 0, ratePerMinute: 600_000, burst: 100_000, maxBlob: '5MiB' },
    fuzz: { quota: 0, ratePerMinute: 6_000_000, burst: 1_000_000, maxBlob: '5MiB' },
  },
  limits: { maxWait: '1s' },
};

export interface FuzzContext {
  url: string;
  keys: { device: string; receiver: string; operator: string; unenrolled: string };
  recipient: string;
  did: string;
  victimDid: string;
  victimKeyId: string;
  /** Valid envelopes sealed by the device to the receiver's key. */
  envelopes: Uint8Array[];
  signer: { seed: Uint8Array; publicKey: Uint8Array };
  receiverKem: PrivateKey;
  /** A register body of the victim device (its challenge stale: valid shape, refused late). */
  registerBody: Record<string, string>;
  /** A renewal of the victim's fleet approval (accepted once, then the same again: no new leaf). */
  approvalBody: Record<string, string>;
  victimSigning: PrivateKey;
  victimKem: PrivateKey;
  /** Filled from answers, bounded (newest kept). */
  pools: { leases: string[]; challenges: string[]; uploaded: string[] };
}

export function remember(pool: string[], value: string, max = 64): void {
  pool.push(value);
  if (pool.length > max) pool.shift();
}

let sequence = 0n;

export function sealFor(ctx: Pick<FuzzContext, 'signer' | 'receiverKem'>, size = 200 + Number(sequence % 3000n)): Uint8Array {
  return sealEnvelope({
    plaintext: new Uint8Array(size).fill(0x41),
    recipient: { kemId: KEM.XWING, publicKey: ctx.receiverKem.publicKey },
    sender: ctx.signer,
    streamId: 7,
    sequence: ++sequence,
    contentType: CONTENT_TYPE.READINGS,
  });
}

/** Starts the relay and enrolls what the corpus needs. */
export async function setUpRelay(envelopeCount = 16): Promise<{ relay: RelayProcess; ctx: FuzzContext }> {
  const relay = await startRelay(FUZZ_RELAY_CONFIG);
  const device = await makeDevice(relay, 'fuzz');
  const victim = await makeDevice(relay, 'fuzz');
  const unenrolled = await relay.operator.createKey({ role: 'device', plan: 'fuzz', label: 'fuzz unenrolled' });
  const receiverKem = generatePrivateKey('X-Wing');
  const recipient = keyIdHex('X-Wing', receiverKem.publicKey);
  const receiver = await relay.operator.createKey({ role: 'receiver', plan: 'fuzz', label: 'fuzz receiver', recipients: [recipient] });
  const signer = { seed: device.signing.seed, publicKey: device.signing.publicKey };
  const envelopes = Array.from({ length: envelopeCount }, () => sealFor({ signer, receiverKem }));
  // One envelope uploaded and leased, so the log has entries and a lease id exists.
  const uploaded = await device.client.upload(envelopes[0]!);
  await untilCheckpointCovers(relay.operator, uploaded.leafIndex + 1);
  const receiverClient = new RelayClient({ baseUrl: relay.url, apiKey: receiver.key });
  const lease = await receiverClient.lease(recipient, { waitMs: 1000 });
  // A complete registration of the victim's keys: the challenge with its X-Wing proof of possession.
  const { challenge, kemCiphertext } = await victim.client.challenge(victim.kem.publicKey);
  const ciphertext = new Uint8Array(Buffer.from(kemCiphertext, 'base64'));
  const proof = kemProof(challenge, ciphertext, xwingDecapsulate(victim.kem.seed, ciphertext, getProvider()));
  const signature = getProvider().mlDsa65.sign(victim.signing.seed, enrollmentMessage(challenge, victim.signing.publicKey, victim.kem.publicKey, proof), ENROLL_CONTEXT);
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
  const renewal = approve(victim, victim.apiKeyId, fleetKey(), 2 * 86_400_000);
  const ctx: FuzzContext = {
    url: relay.url,
    keys: { device: device.apiKey, receiver: receiver.key, operator: relay.operatorKey, unenrolled: unenrolled.key },
    recipient, did: device.did, victimDid: victim.did, victimKeyId: victim.apiKeyId,
    envelopes, signer, receiverKem,
    registerBody: { signingPublicKey: b64(victim.signing.publicKey), kemPublicKey: b64(victim.kem.publicKey), challenge, kemProof: b64(proof), signature: b64(signature) },
    approvalBody: { fleetStatement: b64(renewal.statement), fleetSignature: b64(renewal.signature) },
    victimSigning: victim.signing, victimKem: victim.kem,
    pools: { leases: lease ? [lease.leaseId] : [], challenges: [], uploaded: [uploaded.id] },
  };
  return { relay, ctx };
}

/** A well-formed request before mutation. */
export interface BaseRequest {
  route: string;
  method: string;
  /** Path segments after the leading '/'. */
  segments: string[];
  query: [string, string][];
  headers: [string, string][];
  body?: { kind: 'json'; value: unknown } | { kind: 'envelope'; bytes: Uint8Array } | { kind: 'none' };
}

type Template = readonly [weight: number, route: string, build: (ctx: FuzzContext, rng: Rng) => Omit<BaseRequest, 'route'>];

const bearer = (key: string): [string, string] => ['authorization', `Bearer ${key}`];
const json: [string, string] = ['content-type', 'application/json'];
const latest = (pool: string[], rng: Rng, fallback: string) => (pool.length > 0 ? rng.pick(pool) : fallback);
const seg = (path: string) => path.split('/').slice(1);

/**
 * One valid request per route of relay/server.ts's table, weighted towards the routes that parse
 * the most (uploads, JSON bodies, ids, queries). test/fuzz/fuzz.test.ts checks every route is here.
 */
export const TEMPLATES: readonly Template[] = [
  [2, 'GET /healthz', () => ({ method: 'GET', segments: ['healthz'], query: [], headers: [] })],
  [2, 'GET /v2/stats', (c) => ({ method: 'GET', segments: seg('/v2/stats'), query: [], headers: [bearer(c.keys.operator)] })],
  [3, 'POST /v2/did/challenge', (c) => ({ method: 'POST', segments: seg('/v2/did/challenge'), query: [], headers: [bearer(c.keys.device)] })],
  [6, 'POST /v2/did/register', (c, r) => ({
    method: 'POST', segments: seg('/v2/did/register'), query: [], headers: [bearer(c.keys.device), json],
    body: { kind: 'json', value: { ...c.registerBody, challenge: latest(c.pools.challenges, r, c.registerBody['challenge']!) } },
  })],
  [3, 'GET /v2/did/:did', (c, r) => ({ method: 'GET', segments: ['v2', 'did', encodeURIComponent(r.chance(0.5) ? c.did : c.victimDid)], query: [], headers: [] })],
  [2, 'POST /v2/did/:did/approval', (c) => ({
    method: 'POST', segments: ['v2', 'did', encodeURIComponent(c.victimDid), 'approval'], query: [], headers: [bearer(c.keys.operator), json],
    body: { kind: 'json', value: c.approvalBody },
  })],
  [2, 'POST /v2/did/:did/revoke', (c) => ({ method: 'POST', segments: ['v2', 'did', encodeURIComponent(c.victimDid), 'revoke'], query: [], headers: [bearer(c.keys.operator)] })],
  [24, 'POST /v2/envelopes', (c, r) => ({
    method: 'POST', segments: seg('/v2/envelopes'), query: [], headers: [bearer(c.keys.device), ['content-type', ENVELOPE_MEDIA_TYPE]],
    body: { kind: 'envelope', bytes: r.pick(c.envelopes) },
  })],
  [5, 'POST /v2/envelopes/status', (c, r) => ({
    method: 'POST', segments: seg('/v2/envelopes/status'), query: [], headers: [bearer(c.keys.device), json],
    body: { kind: 'json', value: { ids: [latest(c.pools.uploaded, r, 'f'.repeat(64)), 'f'.repeat(64)] } },
  })],
  [4, 'GET /v2/inbox/:recipient', (c) => ({ method: 'GET', segments: ['v2', 'inbox', c.recipient], query: [['limit', '10']], headers: [bearer(c.keys.receiver)] })],
  [5, 'POST /v2/inbox/:recipient/lease', (c) => ({ method: 'POST', segments: ['v2', 'inbox', c.recipient, 'lease'], query: [['wait', '100ms']], headers: [bearer(c.keys.receiver)] })],
  [4, 'POST /v2/leases/:lease/ack', (c, r) => ({ method: 'POST', segments: ['v2', 'leases', latest(c.pools.leases, r, 'A'.repeat(22)), 'ack'], query: [], headers: [bearer(c.keys.receiver)] })],
  [3, 'POST /v2/leases/:lease/release', (c, r) => ({ method: 'POST', segments: ['v2', 'leases', latest(c.pools.leases, r, 'A'.repeat(22)), 'release'], query: [], headers: [bearer(c.keys.receiver)] })],
  [2, 'GET /v2/log/checkpoint', () => ({ method: 'GET', segments: seg('/v2/log/checkpoint'), query: [], headers: [] })],
  [1, 'GET /v2/log/key', () => ({ method: 'GET', segments: seg('/v2/log/key'), query: [], headers: [] })],
  [4, 'GET /v2/log/proof/inclusion', (_c, r) => ({
    method: 'GET', segments: seg('/v2/log/proof/inclusion'), headers: [],
    query: r.chance(0.7) ? [['index', '0'], ['size', '1']] : [['hash', 'a'.repeat(64)], ['size', '1']],
  })],
  [3, 'GET /v2/log/proof/consistency', () => ({ method: 'GET', segments: seg('/v2/log/proof/consistency'), query: [['from', '1'], ['to', '2']], headers: [] })],
  [3, 'GET /v2/log/entries', () => ({ method: 'GET', segments: seg('/v2/log/entries'), query: [['start', '0'], ['end', '2']], headers: [] })],
  [4, 'GET /v2/log/tile/*', (_c, r) => ({
    method: 'GET', segments: r.chance(0.5) ? seg('/v2/log/tile/0/000.p/2') : seg('/v2/log/tile/entries/000.p/2'), query: [],
    headers: r.chance(0.5) ? [['accept-encoding', 'gzip']] : [],
  })],
  [1, 'POST /v2/keys', (c) => ({
    method: 'POST', segments: seg('/v2/keys'), query: [], headers: [bearer(c.keys.operator), json],
    body: { kind: 'json', value: { role: 'receiver', plan: 'fuzz', label: 'fuzz-made', recipients: ['0'.repeat(64)] } },
  })],
  [1, 'GET /v2/keys', (c) => ({ method: 'GET', segments: seg('/v2/keys'), query: [], headers: [bearer(c.keys.operator)] })],
  [2, 'DELETE /v2/keys/:id', (c) => ({ method: 'DELETE', segments: ['v2', 'keys', c.victimKeyId], query: [], headers: [bearer(c.keys.operator)] })],
  [2, 'POST /v2/keys/:id/purge', (c) => ({ method: 'POST', segments: ['v2', 'keys', c.victimKeyId, 'purge'], query: [], headers: [bearer(c.keys.operator)] })],
  [1, 'GET /v2/audit', (c) => ({ method: 'GET', segments: seg('/v2/audit'), query: [['limit', '5'], ['format', 'json']], headers: [bearer(c.keys.operator)] })],
  // Firmware: no package is published here, so ids name nothing (404) once the key and shape pass;
  // test/relay/firmware.test.ts drives these routes with real packages.
  [1, 'GET /v2/groups', (c) => ({ method: 'GET', segments: seg('/v2/groups'), query: [], headers: [bearer(c.keys.operator)] })],
  [1, 'PUT /v2/groups/:group/devices/:did', (c) => ({ method: 'PUT', segments: ['v2', 'groups', 'fuzz', 'devices', encodeURIComponent(c.did)], query: [], headers: [bearer(c.keys.operator)] })],
  [1, 'DELETE /v2/groups/:group/devices/:did', (c) => ({ method: 'DELETE', segments: ['v2', 'groups', 'fuzz', 'devices', encodeURIComponent(c.did)], query: [], headers: [bearer(c.keys.operator)] })],
  [2, 'POST /v2/firmware', (c) => ({
    method: 'POST', segments: seg('/v2/firmware'), query: [], headers: [bearer(c.keys.operator), json],
    body: { kind: 'json', value: { manifest: 'R1BGTQE=', signatures: [], publisherPublicKey: Buffer.alloc(1952).toString('base64'), targets: [c.did], first: 1 } },
  })],
  [1, 'GET /v2/firmware', (c) => ({ method: 'GET', segments: seg('/v2/firmware'), query: [], headers: [bearer(c.keys.device)] })],
  [1, 'GET /v2/firmware/rollouts', (c) => ({ method: 'GET', segments: seg('/v2/firmware/rollouts'), query: [], headers: [bearer(c.keys.operator)] })],
  [1, 'GET /v2/firmware/:id', (c) => ({ method: 'GET', segments: ['v2', 'firmware', 'b'.repeat(64)], query: [], headers: [bearer(c.keys.device)] })],
  [1, 'GET /v2/firmware/:id/status', (c) => ({ method: 'GET', segments: ['v2', 'firmware', 'b'.repeat(64), 'status'], query: [], headers: [bearer(c.keys.operator)] })],
  [1, 'POST /v2/firmware/:id/targets', (c) => ({
    method: 'POST', segments: ['v2', 'firmware', 'b'.repeat(64), 'targets'], query: [], headers: [bearer(c.keys.operator), json], body: { kind: 'json', value: { targets: [c.did] } },
  })],
  [1, 'PUT /v2/firmware/:id/chunks/:index', (c, r) => ({
    method: 'PUT', segments: ['v2', 'firmware', 'b'.repeat(64), 'chunks', '0'], query: [], headers: [bearer(c.keys.operator), ['content-type', 'application/octet-stream']],
    body: { kind: 'envelope', bytes: r.pick(c.envelopes) },
  })],
  [1, 'GET /v2/firmware/:id/chunks/:index', (c) => ({ method: 'GET', segments: ['v2', 'firmware', 'b'.repeat(64), 'chunks', '0'], query: [], headers: [bearer(c.keys.device)] })],
  [1, 'PUT /v2/firmware/:id/wraps/:did', (c, r) => ({
    method: 'PUT', segments: ['v2', 'firmware', 'b'.repeat(64), 'wraps', encodeURIComponent(c.did)], query: [], headers: [bearer(c.keys.operator), ['content-type', ENVELOPE_MEDIA_TYPE]],
    body: { kind: 'envelope', bytes: r.pick(c.envelopes) },
  })],
  [1, 'POST /v2/firmware/:id/downloaded', (c) => ({ method: 'POST', segments: ['v2', 'firmware', 'b'.repeat(64), 'downloaded'], query: [], headers: [bearer(c.keys.device)] })],
  [1, 'POST /v2/firmware/:id/receipt', (c) => ({
    method: 'POST', segments: ['v2', 'firmware', 'b'.repeat(64), 'receipt'], query: [], headers: [bearer(c.keys.device), json],
    body: { kind: 'json', value: { receipt: 'R1BJUgE=', signature: Buffer.alloc(3309).toString('base64') } },
  })],
];

export function baseRequest(ctx: FuzzContext, rng: Rng): BaseRequest {
  const [, route, build] = rng.weighted(TEMPLATES.map((t) => [t[0], t] as const));
  return { route, ...build(ctx, rng) };
}
