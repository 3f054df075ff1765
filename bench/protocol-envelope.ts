/**
 * Envelope benchmarks: seal and open (parse + verify + decrypt + unpad) per bucket, raw ML-DSA-65
 * sign/verify and X-Wing encapsulate/decapsulate, for every available provider. Iteration counts
 * shrink with the bucket so the whole section stays well under 60 s on one core.
 */
import { randomBytes } from 'node:crypto';
import { availableProviders } from '../protocol/crypto/provider.js';
import { xwingDecapsulate, xwingEncapsulate, xwingPublicKeyFromSeed } from '../protocol/crypto/xwing.js';
import { AEAD, CONTENT_TYPE, DEFAULT_BUCKETS, KEM, SIGNATURE_CONTEXT, bucketCapacity, envelopeLength, openEnvelope, parseEnvelope, sealEnvelope } from '../protocol/envelope/index.js';
import { measure, type Row } from '../common/table.js';

const iterationsFor = (bucket: number, provider: string) => {
  const base = bucket <= 65536 ? 30 : bucket <= 1048576 ? 10 : 8;
  return provider === 'noble' ? Math.max(2, Math.ceil(base / 3)) : base;
};
const warmupFor = (bucket: number) => (bucket <= 65536 ? 2 : 1);
// Issue 2 targets (native provider, one x86 core): seal+open p50 <= 2 ms at 4 KiB, <= 40 ms at 5 MiB.
const targetFor = (bucket: number, aeadId: number) =>
  aeadId !== AEAD.AES256GCM ? '' : bucket === 4096 ? 'target p50 <= 2 ms (native)' : bucket === 5242880 ? 'target p50 <= 40 ms (native)' : '';
// AES-256-GCM on every bucket; ChaCha20-Poly1305 (the Pi 3B+ choice) on a small and a large one.
const aeadBuckets = [[AEAD.AES256GCM, DEFAULT_BUCKETS], [AEAD.CHACHA20POLY1305, [DEFAULT_BUCKETS[0]!, DEFAULT_BUCKETS[2]!]]] as const;

export async function benchEnvelope(): Promise<Row[]> {
  const rows: Row[] = [];
  const section = 'protocol';
  for (const provider of availableProviders()) {
    const p = provider.name;
    const senderSeed = randomBytes(32);
    const sender = { seed: senderSeed, publicKey: provider.mlDsa65.publicKeyFromSeed(senderSeed) };
    const recipientSeed = randomBytes(32);
    const recipient = { kemId: KEM.XWING, seed: recipientSeed, publicKey: xwingPublicKeyFromSeed(recipientSeed, provider) };

    const message = randomBytes(1024);
    const signature = provider.mlDsa65.sign(senderSeed, message, SIGNATURE_CONTEXT);
    rows.push({ section, name: 'ML-DSA-65 sign (1 KiB)', provider: p, ...(await measure(() => provider.mlDsa65.sign(senderSeed, message, SIGNATURE_CONTEXT), p === 'noble' ? 20 : 200)) });
    rows.push({ section, name: 'ML-DSA-65 verify (1 KiB)', provider: p, ...(await measure(() => provider.mlDsa65.verify(sender.publicKey, message, signature, SIGNATURE_CONTEXT), p === 'noble' ? 50 : 300)) });
    rows.push({ section, name: 'X-Wing encapsulate', provider: p, ...(await measure(() => xwingEncapsulate(recipient.publicKey, provider), p === 'noble' ? 50 : 300)) });
    const { ciphertext } = xwingEncapsulate(recipient.publicKey, provider);
    rows.push({ section, name: 'X-Wing decapsulate', provider: p, ...(await measure(() => xwingDecapsulate(recipientSeed, ciphertext, provider), p === 'noble' ? 50 : 300)) });

    for (const [aeadId, buckets] of aeadBuckets) {
      const aead = aeadId === AEAD.AES256GCM ? 'AES-256-GCM' : 'ChaCha20-Poly1305';
      for (const bucket of buckets) {
        const plaintext = randomBytes(bucketCapacity(bucket));
        const seal = () => sealEnvelope({ plaintext, recipient, sender, streamId: 1, sequence: 1n, contentType: CONTENT_TYPE.READINGS, bucket, aeadId, provider });
        const sealed = seal();
        const iterations = iterationsFor(bucket, p);
        const note = `${envelopeLength(bucket, KEM.XWING)} B envelope`;
        rows.push({ section, name: `envelope seal ${bucket / 1024} KiB, X-Wing ${aead}`, provider: p, note, ...(await measure(seal, iterations, warmupFor(bucket))) });
        const open = (bytes: Uint8Array) => openEnvelope(parseEnvelope(bytes), recipient, sender.publicKey, provider);
        rows.push({ section, name: `envelope open ${bucket / 1024} KiB, X-Wing ${aead}`, provider: p, note: 'parse + verify + decrypt + unpad',
          ...(await measure(() => open(sealed), iterations, warmupFor(bucket))) });
        // The targets are phrased as one seal followed by one open of the same frame.
        rows.push({ section, name: `envelope seal+open ${bucket / 1024} KiB, X-Wing ${aead}`, provider: p, note: targetFor(bucket, aeadId),
          ...(await measure(() => open(seal()), iterations, warmupFor(bucket))) });
      }
    }
  }
  return rows;
}
