/**
 * The reproduction as a loop (a relay with a state directory, traffic, stop, start —
 * twenty times, SIGTERM and SIGKILL), and the log read as plain C2SP tlog-tiles over HTTP by a
 * client written here from the spec with node:crypto only (no Ghost Pipe code), so any
 * tlog-tiles client can check the relay.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import { RelayClient } from '../../common/relay-client.js';
import { openCheckpoint } from '../../protocol/tlog/checkpoint.js';
import { parseVerifierKey } from '../../protocol/tlog/note.js';
import { verifyConsistency } from '../../protocol/tlog/index.js';
import { cleanupAll, makeDevice, makeReceiver, markedPlaintext, startRelay, tempDir, untilCheckpointCovers, type RelayProcess } from '../helpers/relay.js';

after(cleanupAll);

async function checkpointOf(relay: RelayProcess) {
  const key = await relay.operator.logKey();
  return { ...openCheckpoint(await relay.operator.checkpoint(), [parseVerifierKey(key.verifierKey)], key.origin).checkpoint, origin: key.origin };
}

test('state directory: 20 stop/start cycles with traffic in between (SIGTERM and SIGKILL); every checkpoint ever served stays a prefix', async () => {
  const dir = await tempDir();
  let relay = await startRelay({}, { dir });
  const device = await makeDevice(relay);
  const receiver = await makeReceiver(relay);
  const served: { size: number; root: Uint8Array }[] = [];
  const origin = (await relay.operator.logKey()).origin;
  for (let cycle = 0; cycle < 20; cycle++) {
    const client = new RelayClient({ baseUrl: relay.url, apiKey: device.apiKey });
    let last = 0;
    for (let i = 0; i < 3; i++) last = (await client.upload(device.seal(markedPlaintext(`c${cycle}`), receiver))).leafIndex;
    // Wait until the relay serves a checkpoint covering this cycle's uploads, and remember it.
    await untilCheckpointCovers(relay.operator, last + 1);
    const cp = await checkpointOf(relay);
    assert.ok(cp.size > last, `cycle ${cycle}: a checkpoint covers leaf ${last}`);
    served.push(cp);
    assert.equal(await relay.stop(cycle % 2 === 0 ? 'SIGTERM' : 'SIGKILL'), cycle % 2 === 0 ? 0 : null);
    relay = await startRelay({}, { dir });
    const now = await checkpointOf(relay);
    assert.equal(now.origin, origin, `cycle ${cycle}: origin kept`);
    assert.ok(now.size >= cp.size, `cycle ${cycle}: size ${now.size} >= served ${cp.size}`);
    for (const old of [served[0]!, cp]) {
      const proof = await relay.operator.consistencyProof(old.size, now.size);
      verifyConsistency(old.size, now.size, proof.proof, old.root, now.root);
    }
  }
  assert.doesNotMatch(relay.output(), /cannot start|corrupt/);
  assert.equal(await relay.stop(), 0);
});

function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http.request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject).end();
  });
}

// ---- an independent tlog-tiles reader, from c2sp.org/tlog-tiles and RFC 6962 only ----
const sha256 = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const indexPath = (n: number): string => {
  const groups: string[] = [];
  do {
    groups.unshift(String(n % 1000).padStart(3, '0'));
    n = Math.floor(n / 1000);
  } while (n > 0);
  return groups.map((g, i) => (i < groups.length - 1 ? 'x' + g : g)).join('/');
};
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha256(Buffer.of(1), mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

test('the log as C2SP tlog-tiles over HTTP: an independent reader rebuilds the signed root from tiles and bundles', async () => {
  const relay = await startRelay();
  const device = await makeDevice(relay);
  const receiver = await makeReceiver(relay);
  const client = new RelayClient({ baseUrl: relay.url, apiKey: device.apiKey });
  for (let i = 0; i < 5; i++) await client.upload(device.seal(markedPlaintext('t'), receiver));
  await untilCheckpointCovers(relay.operator, 6);
  const res = await get(`${relay.url}/v2/log/checkpoint`);
  assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
  const text = res.body.toString('utf8');
  const [origin, sizeLine, rootLine] = text.split('\n');
  const size = Number(sizeLine);
  assert.ok(origin!.startsWith('ghostpipe-relay/') && size >= 6);
  // size < 256: one partial level-0 tile and one partial bundle of width `size`.
  const tile = await get(`${relay.url}/v2/log/tile/0/${indexPath(0)}.p/${size}`);
  assert.equal(tile.status, 200);
  assert.equal(tile.headers['content-type'], 'application/octet-stream');
  assert.match(String(tile.headers['cache-control']), /immutable/);
  assert.equal(tile.body.length, 32 * size);
  const leafHashes = Array.from({ length: size }, (_, i) => tile.body.subarray(32 * i, 32 * i + 32));
  assert.equal(mth(leafHashes).toString('base64'), rootLine, 'the tile hashes to the signed root');
  const bundle = await get(`${relay.url}/v2/log/tile/entries/000.p/${size}`, { 'accept-encoding': 'gzip' });
  assert.equal(bundle.headers['content-encoding'], 'gzip');
  const raw = gunzipSync(bundle.body);
  let at = 0;
  for (let i = 0; i < size; i++) {
    const length = raw.readUInt16BE(at);
    const entry = raw.subarray(at + 2, at + 2 + length);
    assert.deepEqual(sha256(Buffer.of(0), entry), leafHashes[i], `entry ${i} hashes to its leaf`);
    at += 2 + length;
  }
  assert.equal(at, raw.length);
  // Smaller partials (older checkpoints) are served too; anything past the signed size is not.
  assert.equal((await get(`${relay.url}/v2/log/tile/0/000.p/1`)).body.length, 32);
  assert.equal((await get(`${relay.url}/v2/log/tile/0/000.p/${size + 1}`)).status, 404);
  assert.equal((await get(`${relay.url}/v2/log/tile/0/000`)).status, 404, 'no full tile yet');
  for (const bad of ['0/0', '0/000.p/0', '0/000.p/256', 'x/000', '0/x000/001', '00/000', '0/000.p/01']) {
    const res = await get(`${relay.url}/v2/log/tile/${bad}`);
    assert.equal(res.status, 400, bad);
    assert.match(res.body.toString(), /tile path/, bad);
  }
  assert.equal((await get(`${relay.url}/v2/log/tile/0/000.p/1`, {}, 'POST')).status, 405);
  assert.equal(await relay.stop(), 0);
});
