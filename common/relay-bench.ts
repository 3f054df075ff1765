/**
 * The conduit's round trip against a relay, measured (`ghostpipe bench` against a deployed relay,
 * and bench/e2e.ts against a local one): a bench device and a bench receiver, enrolled with keys
 * an operator issues for the run, and one trip = seal (pad, HPKE X-Wing, ML-DSA-65 signature) ->
 * upload (the relay verifies the signature) -> lease -> verify and open -> acknowledge.
 * "Transport" is the three HTTP phases of the trip (upload, lease, ack) without the crypto.
 */
import { randomFillSync } from 'node:crypto';
import { RelayClient, type RelayClientOptions } from './relay-client.js';
import { percentile } from './table.js';
import { getProvider, type CryptoProvider } from '../protocol/crypto/provider.js';
import { xwingDecapsulate } from '../protocol/crypto/xwing.js';
import { generatePrivateKey, keyIdHex, type PrivateKey } from '../protocol/keys.js';
import { CONTENT_TYPE, KEM, bucketCapacity, openEnvelope, parseEnvelope, sealEnvelope } from '../protocol/envelope/index.js';

export interface EnrolledParty {
  deviceKey: { id: string; key: string };
  receiverKey: { id: string; key: string };
  recipientKeyId: string;
  signing: PrivateKey;
  kem: PrivateKey;
  did: string;
  device: RelayClient;
  receiver: RelayClient;
  sequence: bigint;
}

/** Issues a device and a receiver key on `plan` and enrolls a fresh device key pair (kept in memory only). */
export async function enrollParty(relay: Omit<RelayClientOptions, 'apiKey'>, operator: RelayClient, plan: string, label: string, provider: CryptoProvider = getProvider()): Promise<EnrolledParty> {
  const deviceKey = await operator.createKey({ role: 'device', plan, label: `${label} device` });
  const kem = generatePrivateKey('X-Wing');
  const recipientKeyId = keyIdHex('X-Wing', kem.publicKey);
  const receiverKey = await operator.createKey({ role: 'receiver', plan, label: `${label} receiver`, recipients: [recipientKeyId] });
  const signing = generatePrivateKey('ML-DSA-65');
  const device = new RelayClient({ ...relay, apiKey: deviceKey.key });
  const deviceKem = generatePrivateKey('X-Wing');
  const registered = await device.enroll({
    signingPublicKey: signing.publicKey, kemPublicKey: deviceKem.publicKey,
    sign: (m, c) => provider.mlDsa65.sign(signing.seed, m, c), decapsulate: (ct) => xwingDecapsulate(deviceKem.seed, ct, provider),
  });
  return {
    deviceKey: { id: deviceKey.id, key: deviceKey.key }, receiverKey: { id: receiverKey.id, key: receiverKey.key }, recipientKeyId, signing, kem, did: registered.did,
    device, receiver: new RelayClient({ ...relay, apiKey: receiverKey.key }), sequence: 0n,
  };
}

export const TRIP_PHASES = ['seal', 'upload', 'lease', 'open', 'ack'] as const;
export type TripPhases = Record<(typeof TRIP_PHASES)[number], number>;

/** One full trip of `plaintext` in `bucket`; returns the ms of each phase and checks the opened bytes. */
export async function trip(party: EnrolledParty, bucket: number, plaintext: Uint8Array, provider: CryptoProvider = getProvider()): Promise<TripPhases> {
  const t0 = performance.now();
  const envelope = sealEnvelope({
    plaintext, recipient: { kemId: KEM.XWING, publicKey: party.kem.publicKey },
    sender: { seed: party.signing.seed, publicKey: party.signing.publicKey },
    streamId: 1, sequence: ++party.sequence, contentType: CONTENT_TYPE.READINGS, bucket, provider,
  });
  const t1 = performance.now();
  await party.device.upload(envelope);
  const t2 = performance.now();
  const lease = await party.receiver.lease(party.recipientKeyId, { waitMs: 5_000 });
  if (!lease) throw new Error('nothing to lease right after the upload (another receiver on this recipient key?)');
  const t3 = performance.now();
  const opened = openEnvelope(parseEnvelope(lease.bytes), { kemId: KEM.XWING, seed: party.kem.seed, publicKey: party.kem.publicKey }, party.signing.publicKey, provider);
  const t4 = performance.now();
  await party.receiver.ack(lease.leaseId);
  const t5 = performance.now();
  if (opened.length !== plaintext.length || Buffer.compare(Buffer.from(opened), Buffer.from(plaintext)) !== 0) throw new Error('the opened plaintext differs from what was sealed');
  return { seal: t1 - t0, upload: t2 - t1, lease: t3 - t2, open: t4 - t3, ack: t5 - t4 };
}

export const fullTrip = (p: TripPhases): number => TRIP_PHASES.reduce((n, k) => n + p[k], 0);
export const transportTrip = (p: TripPhases): number => p.upload + p.lease + p.ack;

export interface BucketResult {
  bucket: number;
  trips: number;
  full: { p50: number; p95: number };
  transport: { p50: number; p95: number };
  /** Median of each phase. */
  phases: TripPhases;
}

export interface RelayBenchOptions {
  relay: Omit<RelayClientOptions, 'apiKey'>;
  operator: RelayClient;
  buckets: number[];
  /** Trips per bucket (after one warm-up trip). */
  trips: (bucket: number) => number;
  plan: string;
  onProgress?: (bucket: number, done: number, of: number) => void;
}

export interface RelayBenchReport {
  results: BucketResult[];
  /** What the run issued and then revoked. */
  issued: { deviceKeyId: string; receiverKeyId: string; did: string };
}

/**
 * Runs the trips of each bucket (after one warm-up trip each) with keys issued for the run, then
 * revokes both keys and the bench device, whatever happened; a failure to revoke is an error.
 */
export async function runRelayBench(o: RelayBenchOptions): Promise<RelayBenchReport> {
  const party = await enrollParty(o.relay, o.operator, o.plan, `ghostpipe bench ${new Date().toISOString()}`);
  const issued = { deviceKeyId: party.deviceKey.id, receiverKeyId: party.receiverKey.id, did: party.did };
  let report: RelayBenchReport | undefined;
  try {
    const results: BucketResult[] = [];
    for (const bucket of o.buckets) {
      const plaintext = randomFillSync(new Uint8Array(bucketCapacity(bucket)));
      await trip(party, bucket, plaintext);
      const trips: TripPhases[] = [];
      const count = o.trips(bucket);
      for (let i = 0; i < count; i++) {
        trips.push(await trip(party, bucket, plaintext));
        o.onProgress?.(bucket, i + 1, count);
      }
      const stat = (f: (p: TripPhases) => number) => ({ p50: percentile(trips.map(f), 50), p95: percentile(trips.map(f), 95) });
      const phases = Object.fromEntries(TRIP_PHASES.map((k) => [k, percentile(trips.map((t) => t[k]), 50)])) as TripPhases;
      results.push({ bucket, trips: trips.length, full: stat(fullTrip), transport: stat(transportTrip), phases });
    }
    report = { results, issued };
  } finally {
    await o.operator.revokeKey(party.deviceKey.id);
    await o.operator.revokeKey(party.receiverKey.id);
    await o.operator.revokeDevice(party.did);
  }
  return report;
}
