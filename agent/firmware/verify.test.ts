/** agent/firmware/verify.ts: what a gateway checks in an offer before it downloads, each refusal by its code. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generatePrivateKey } from '../../protocol/keys.js';
import { verifyRoot, signedRootFromJson, type FirmwareRoot } from '../../protocol/firmware/index.js';
import { makeRelease, rootJson, type Release } from '../../test/helpers/firmware-release.js';
import { assertThrowsCode, thrownCode } from '../../test/helpers/assert-code.js';
import { FirmwareRefusal, checkOffer } from './verify.js';

const keys = [generatePrivateKey('ML-DSA-65'), generatePrivateKey('ML-DSA-65'), generatePrivateKey('ML-DSA-65')];
const publisher = generatePrivateKey('ML-DSA-65');
const device = { groups: ['line-a'], hardwareId: 'hw1', installedCounter: 4, now: Date.now() };

const v1 = rootJson(keys, 2);
const trusted: FirmwareRoot = verifyRoot(signedRootFromJson(v1));

/** The offer a relay serves for `r` (the fields verify.ts reads). */
const offerOf = (r: Release, extra: Record<string, unknown> = {}) => ({ ...r.request([], publisher), id: r.id, leafIndex: 3, keyWrap: 'x', chunks: r.chunks.length, roots: [], ...extra });
const code = (fn: () => unknown) => thrownCode(fn, FirmwareRefusal);

test('an offer signed by the threshold, for this group and hardware, newer and not expired, passes', () => {
  const r = makeRelease({ counter: 5, signers: keys.slice(0, 2) });
  const checked = checkOffer(r.id, offerOf(r), trusted, device);
  assert.equal(checked.manifest.counter, 5);
  assert.equal(checked.root, trusted);
  assert.equal(checked.rotatedTo, undefined);
});

test('refusals: another manifest under the id, malformed offers, signatures, group, hardware, counter, expiry', () => {
  const good = makeRelease({ counter: 5, signers: keys.slice(0, 2) });
  const other = makeRelease({ counter: 6, signers: keys.slice(0, 2) });
  assert.equal(code(() => checkOffer(good.id, offerOf(other), trusted, device)), 'wrong_package');
  const tampered = Buffer.from(good.bytes);
  tampered[10]! ^= 1;
  assert.equal(code(() => checkOffer(good.id, offerOf(good, { manifest: tampered.toString('base64') }), trusted, device)), 'wrong_package');
  for (const bad of [null, [], { manifest: 7 }, offerOf(good, { chunks: 'three' }), offerOf(good, { roots: {} })]) {
    assert.equal(code(() => checkOffer(good.id, bad, trusted, device)), 'bad_offer', JSON.stringify(bad));
  }
  assert.equal(code(() => checkOffer(good.id, offerOf(good, { chunks: 2 }), trusted, device)), 'bad_offer');
  const one = makeRelease({ counter: 5, signers: keys.slice(0, 1) });
  assertThrowsCode(() => checkOffer(one.id, offerOf(one), trusted, device), FirmwareRefusal, 'below_threshold', /1 valid signatures by root keys, 2 required/);
  const stranger = makeRelease({ counter: 5, signers: [keys[0]!, generatePrivateKey('ML-DSA-65')] });
  assertThrowsCode(() => checkOffer(stranger.id, offerOf(stranger), trusted, device), FirmwareRefusal, 'below_threshold', /not in the firmware root/);
  const forged = offerOf(good);
  forged.signatures = [...forged.signatures];
  forged.signatures[1] = { ...forged.signatures[1]!, signature: forged.signatures[0]!.signature };
  assert.equal(code(() => checkOffer(good.id, forged, trusted, device)), 'bad_signature');
  const cases: [Release, string][] = [
    [makeRelease({ counter: 5, group: 'line-b', signers: keys.slice(0, 2) }), 'wrong_group'],
    [makeRelease({ counter: 5, hardware: ['hw2'], signers: keys.slice(0, 2) }), 'wrong_hardware'],
    [makeRelease({ counter: 4, signers: keys.slice(0, 2) }), 'rollback'],
    [makeRelease({ counter: 3, signers: keys.slice(0, 2) }), 'rollback'],
    [makeRelease({ counter: 5, expires: device.now - 1, signers: keys.slice(0, 2) }), 'expired'],
  ];
  for (const [r, expected] of cases) assert.equal(code(() => checkOffer(r.id, offerOf(r), trusted, device)), expected);
});

test('root rotations: walked from the trusted root, already-walked ones skipped, an unchained one refused', () => {
  const next = [generatePrivateKey('ML-DSA-65'), generatePrivateKey('ML-DSA-65')];
  // v2: signed by 2 of the v1 keys and by both new keys (1-of-2 from then on).
  const v2 = rootJson(next, 1, 2, [keys[0]!, keys[1]!, ...next]);
  const r = makeRelease({ counter: 5, signers: [next[1]!] });
  const checked = checkOffer(r.id, offerOf(r, { roots: [v1, v2] }), trusted, device);
  assert.equal(checked.root.version, 2);
  assert.equal(checked.rotatedTo?.root.version, 2);
  // Without the rotation the new key is a stranger.
  assert.equal(code(() => checkOffer(r.id, offerOf(r), trusted, device)), 'below_threshold');
  // A rotation only the new keys signed does not chain; nor does one that skips a version.
  assertThrowsCode(() => checkOffer(r.id, offerOf(r, { roots: [rootJson(next, 1, 2)] }), trusted, device), FirmwareRefusal, 'not_chained', /firmware root v2/);
  assert.equal(code(() => checkOffer(r.id, offerOf(r, { roots: [rootJson(next, 1, 3, [keys[0]!, keys[1]!, ...next])] }), trusted, device)), 'not_chained');
  assert.equal(code(() => checkOffer(r.id, offerOf(r, { roots: [{ root: 'AAAA', signatures: [] }] }), trusted, device)), 'bad_offer');
});
