/**
 * Transparency log benchmarks: append, inclusion and consistency proof rates and memory at
 * 1,000,000 leaves, checkpoint sign/verify per crypto provider. Targets (docs/protocol/tlog.md):
 * 1M leaves <= 100 MB, >= 50,000 appends/s, >= 20,000 inclusion proofs/s on one x86 core.
 */
import { randomBytes } from 'node:crypto';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { measure, percentile, type Row } from '../common/table.js';
import { availableProviders } from '../protocol/crypto/provider.js';
import {
  MerkleTree, leafHash, mlDsaNoteSigner, mlDsaNoteVerifier, openCheckpoint, signCheckpoint, verifyConsistency, verifyInclusion,
} from '../protocol/tlog/index.js';

const LEAVES = 1_000_000;
const SECTION = 'protocol';

function memoryNow(): number {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

// A real gc() without --expose-gc on the command line, so the memory figure is exact under `npm run bench`.
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

export async function benchTlog(): Promise<Row[]> {
  const rows: Row[] = [];

  // Pre-hash the leaves so the append rate measures the tree, not leaf hashing.
  const leafSource = randomBytes(32 * LEAVES);
  const leaves = (i: number): Uint8Array => leafSource.subarray(i * 32, i * 32 + 32);
  gc();
  const before = memoryNow();
  const tree = new MerkleTree();
  const batch = 10_000;
  const batchMs: number[] = [];
  const appendStart = performance.now();
  for (let i = 0; i < LEAVES; i += batch) {
    const t0 = performance.now();
    for (let j = i; j < i + batch; j++) tree.append(leaves(j));
    batchMs.push(performance.now() - t0);
  }
  const appendTotal = performance.now() - appendStart;
  tree.root();
  gc();
  const delta = memoryNow() - before;
  rows.push({
    section: SECTION, name: 'tlog append (leaf hash given)', provider: 'node:crypto',
    p50_ms: percentile(batchMs, 50) / batch, p95_ms: percentile(batchMs, 95) / batch, ops_per_s: (LEAVES / appendTotal) * 1000,
    note: `1M leaves; target >= 50,000/s`,
  });
  rows.push({
    section: SECTION, name: 'tlog memory at 1M leaves', provider: 'node:crypto', p50_ms: NaN, p95_ms: NaN,
    note: `heap+arrayBuffers delta ${(delta / 1e6).toFixed(1)} MB (hash storage ${(tree.bytesAllocated() / 1e6).toFixed(1)} MB); target <= 100 MB`,
  });

  const leafData = new Uint8Array(64);
  const leafHashRate = await measure(() => leafHash(leafData), 50_000, 1000);
  rows.push({ section: SECTION, name: 'tlog leaf hash (64 B entry)', provider: 'node:crypto', ...leafHashRate });

  // Inclusion proofs at random indexes in the full tree and against an older size.
  let seed = 12345;
  const next = (bound: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % bound;
  };
  const root = tree.root();
  const incl = await measure(() => tree.inclusionProof(next(LEAVES)), 50_000, 1000);
  rows.push({ section: SECTION, name: 'tlog inclusion proof (size 1M)', provider: 'node:crypto', ...incl, note: 'target >= 20,000/s' });
  const oldSize = 777_777;
  const inclOld = await measure(() => tree.inclusionProof(next(oldSize), oldSize), 20_000, 500);
  rows.push({ section: SECTION, name: 'tlog inclusion proof (older size 777,777)', provider: 'node:crypto', ...inclOld });
  const index = next(LEAVES);
  const proof = tree.inclusionProof(index);
  const verify = await measure(() => verifyInclusion(leaves(index), index, LEAVES, proof, root), 20_000, 500);
  rows.push({ section: SECTION, name: 'tlog verify inclusion (size 1M)', provider: 'node:crypto', ...verify });

  const cons = await measure(() => {
    const size1 = 1 + next(LEAVES - 1);
    return tree.consistencyProof(size1, LEAVES);
  }, 20_000, 500);
  rows.push({ section: SECTION, name: 'tlog consistency proof (random size1 -> 1M)', provider: 'node:crypto', ...cons });
  const cproof = tree.consistencyProof(oldSize, LEAVES);
  const oldRoot = tree.root(oldSize);
  const cverify = await measure(() => verifyConsistency(oldSize, LEAVES, cproof, oldRoot, root), 20_000, 500);
  rows.push({ section: SECTION, name: 'tlog verify consistency (777,777 -> 1M)', provider: 'node:crypto', ...cverify });

  // Checkpoint sign/verify with ML-DSA-65 per provider.
  for (const provider of availableProviders()) {
    const keySeed = new Uint8Array(randomBytes(32));
    const signer = mlDsaNoteSigner('bench.example/log', keySeed, provider);
    const verifier = mlDsaNoteVerifier('bench.example/log', provider.mlDsa65.publicKeyFromSeed(keySeed), provider);
    const checkpoint = { origin: 'bench.example/log', size: LEAVES, root };
    const iterations = provider.name === 'native' ? 500 : 60;
    const signRate = await measure(() => signCheckpoint(checkpoint, [signer]), iterations, 3);
    rows.push({ section: SECTION, name: 'tlog checkpoint sign (ML-DSA-65)', provider: provider.name, ...signRate });
    const note = signCheckpoint(checkpoint, [signer]);
    const verifyRate = await measure(() => openCheckpoint(note, [verifier], 'bench.example/log'), iterations, 3);
    rows.push({ section: SECTION, name: 'tlog checkpoint open+verify (ML-DSA-65)', provider: provider.name, ...verifyRate });
  }
  return rows;
}
