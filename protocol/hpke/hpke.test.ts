/**
 * HPKE base mode against every fitting public vector: HPKE-PQ (ML-KEM-768 + AES-128-GCM, X-Wing +
 * ChaCha20-Poly1305, X-Wing + AES-128-GCM), RFC 9180 A.1.1/A.2.1 and Go's accumulated DHKEM(X25519)
 * entries (the only AES-256-GCM coverage). Receivers run on every provider.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { shake128 } from '@noble/hashes/sha3.js';
import { vectorsDir } from '../../test/helpers/paths.js';
import { availableProviders } from '../crypto/provider.js';
import { getKem, HpkeError, keyScheduleBase, openBase, sealBase, setupBaseReceiver, setupBaseSender, KEM_XWING, KEM_MLKEM768 } from './index.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const readJson = (rel: string) => JSON.parse(readFileSync(path.join(vectorsDir, rel), 'utf8'));
const providers = availableProviders();
const noble = providers.find((p) => p.name === 'noble')!;

interface Entry {
  kem_id: number | string; kdf_id: number | string; aead_id: number | string; info: string; ikmE: string; ikmR: string; skRm: string; pkRm: string; enc: string;
  shared_secret?: string; key?: string; base_nonce?: string; exporter_secret?: string; key_schedule_context?: string; secret?: string;
  encryptions?: { aad: string; ct: string; pt: string; nonce?: string; seq?: number }[];
  exports?: { exporter_context: string; L: number; exported_value: string }[];
  encryptions_accumulated?: string; exports_accumulated?: string;
}
const suiteOf = (e: Entry) => ({ kemId: Number(e.kem_id), kdfId: Number(e.kdf_id), aeadId: Number(e.aead_id) });
const label = (e: Entry) => `kem 0x${Number(e.kem_id).toString(16)} aead ${e.aead_id}`;

function checkFullEntry(e: Entry): void {
  const suite = suiteOf(e);
  const kem = getKem(suite.kemId);
  for (const p of providers) {
    const derived = kem.deriveKeyPair(hex(e.ikmR), p);
    assert.equal(toHex(derived.secretKey), e.skRm, `${p.name} DeriveKeyPair sk`);
    assert.equal(toHex(derived.publicKey), e.pkRm, `${p.name} DeriveKeyPair pk`);
    assert.equal(toHex(kem.decap(hex(e.enc), hex(e.skRm), p)), e.shared_secret, `${p.name} Decap`);
  }
  assert.equal(toHex(kem.encapDerand(hex(e.pkRm), hex(e.ikmE)).enc), e.enc, 'EncapDerand');
  const schedule = keyScheduleBase(suite.kemId, suite.kdfId, suite.aeadId, hex(e.shared_secret!), hex(e.info));
  assert.equal(toHex(schedule.key), e.key);
  assert.equal(toHex(schedule.baseNonce), e.base_nonce);
  assert.equal(toHex(schedule.exporterSecret), e.exporter_secret);
  if (e.key_schedule_context) assert.equal(toHex(schedule.keyScheduleContext), e.key_schedule_context);
  if (e.secret) assert.equal(toHex(schedule.secret), e.secret);

  // Sender with derandomized encapsulation; receivers on every provider. Vectors may skip sequence
  // numbers (RFC: 0,1,2,4,255,256), so intermediate messages reuse the RFC's "Count-<seq>" pattern.
  const { enc, context: sender } = setupBaseSender(suite, hex(e.pkRm), hex(e.info), noble, hex(e.ikmE));
  assert.equal(toHex(enc), e.enc);
  const receivers = providers.map((p) => setupBaseReceiver(suite, enc, hex(e.skRm), hex(e.info), p));
  const wanted = new Map(e.encryptions!.map((x, i) => [x.seq ?? i, x]));
  const last = Math.max(...wanted.keys());
  const pt0 = hex(e.encryptions![0]!.pt);
  for (let seq = 0; seq <= last; seq++) {
    const w = wanted.get(seq);
    const aad = w ? hex(w.aad) : new Uint8Array(Buffer.from(`Count-${seq}`));
    const pt = w ? hex(w.pt) : pt0;
    const ct = sender.seal(aad, pt);
    if (w) assert.equal(toHex(ct), w.ct, `seal seq ${seq}`);
    for (const r of receivers) assert.equal(toHex(r.open(aad, ct)), toHex(pt), `open seq ${seq}`);
  }
  for (const x of e.exports!) {
    assert.equal(toHex(sender.export(hex(x.exporter_context), x.L)), x.exported_value);
    for (const r of receivers) assert.equal(toHex(r.export(hex(x.exporter_context), x.L)), x.exported_value);
  }
}

describe('HPKE-PQ vectors', () => {
  const entries: Entry[] = [
    ...readJson('hpke-pq/hpke-pq-test-vectors.mlkem768-xwing.hkdf-sha256.json'),
    ...readJson('hpke-pq/hpke-pq-test-vectors@fbeb7a1.xwing.hkdf-sha256.aes128gcm.json'),
  ];
  it('has the three PQ entries', () => assert.deepEqual(entries.map(label), ['kem 0x41 aead 1', 'kem 0x647a aead 3', 'kem 0x647a aead 1']));
  for (const e of entries) it(`${label(e)}: DeriveKeyPair, Encap/Decap, key schedule, 10 encryptions, 5 exports`, () => checkFullEntry(e));
});

describe('RFC 9180 DHKEM(X25519) vectors', () => {
  for (const e of readJson('hpke-rfc9180/rfc9180-A1.1-A2.1-x25519-hkdfsha256-base.json') as Entry[]) {
    it(`${label(e)}: full base-mode recomputation`, () => checkFullEntry(e));
  }

  for (const e of readJson('hpke-rfc9180/go-rfc9180-accumulated.x25519-hkdfsha256-base.json') as Entry[]) {
    it(`Go accumulated ${label(e)}: 1000 encryptions and 1000 exports`, () => {
      const suite = suiteOf(e);
      const kem = getKem(suite.kemId);
      assert.equal(toHex(kem.deriveKeyPair(hex(e.ikmR), noble).secretKey), e.skRm);
      const { enc, context: sender } = setupBaseSender(suite, hex(e.pkRm), hex(e.info), noble, hex(e.ikmE));
      assert.equal(toHex(enc), e.enc);
      const receiver = setupBaseReceiver(suite, enc, hex(e.skRm), hex(e.info), noble);
      let source = shake128.create({});
      const draw = () => Uint8Array.from(source.xof(source.xof(1)[0]!));
      let sink = shake128.create({});
      for (let i = 0; i < 1000; i++) {
        const aad = draw(), pt = draw();
        const ct = sender.seal(aad, pt);
        assert.equal(toHex(receiver.open(aad, ct)), toHex(pt)); // every one: the receiver's sequence must advance in step
        sink.update(ct);
      }
      assert.equal(toHex(sink.xof(16)), e.encryptions_accumulated);
      source = shake128.create({});
      sink = shake128.create({});
      for (let l = 0; l < 1000; l++) sink.update(sender.export(draw(), l));
      assert.equal(toHex(sink.xof(16)), e.exports_accumulated);
    });
  }
});

describe('HPKE negative cases', () => {
  const info = new Uint8Array(Buffer.from('info')), aad = new Uint8Array(Buffer.from('aad')), pt = randomBytes(100);
  const isHpke = (code: string) => (err: unknown) => err instanceof HpkeError && err.code === code;

  for (const kemId of [KEM_XWING, KEM_MLKEM768]) for (const aeadId of [2, 3]) {
    it(`kem 0x${kemId.toString(16)} aead ${aeadId}: round trip across providers; tampering fails with open_failed`, () => {
      const suite = { kemId, kdfId: 1, aeadId };
      const kem = getKem(kemId);
      const sk = randomBytes(kem.secretKeyLength);
      for (const sender of providers) for (const receiver of providers) {
        const { enc, ciphertext } = sealBase(suite, kem.publicKeyFromSecret(sk, receiver), info, aad, pt, sender);
        assert.equal(toHex(openBase(suite, enc, sk, info, aad, ciphertext, receiver)), toHex(pt));
        const flipCt = Uint8Array.from(ciphertext); flipCt[ciphertext.length - 1]! ^= 1;
        assert.throws(() => openBase(suite, enc, sk, info, aad, flipCt, receiver), isHpke('open_failed'));
        const flipEnc = Uint8Array.from(enc); flipEnc[10]! ^= 1;
        assert.throws(() => openBase(suite, flipEnc, sk, info, aad, ciphertext, receiver), isHpke('open_failed'));
        assert.throws(() => openBase(suite, enc, sk, new Uint8Array(0), aad, ciphertext, receiver), isHpke('open_failed'));
        assert.throws(() => openBase(suite, enc, sk, info, new Uint8Array(0), ciphertext, receiver), isHpke('open_failed'));
        assert.throws(() => openBase(suite, enc, randomBytes(kem.secretKeyLength), info, aad, ciphertext, receiver), isHpke('open_failed'));
        assert.throws(() => openBase({ ...suite, aeadId: aeadId === 2 ? 3 : 2 }, enc, sk, info, aad, ciphertext, receiver), isHpke('open_failed'));
        assert.throws(() => openBase(suite, enc.subarray(1), sk, info, aad, ciphertext, receiver), isHpke('bad_input'));
        assert.throws(() => openBase(suite, enc, sk, info, aad, ciphertext.subarray(0, 15), receiver), isHpke('open_failed'));
      }
    });
  }

  it('rejects unknown KEM, KDF and AEAD ids with unsupported_suite', () => {
    const p = providers[0]!;
    assert.throws(() => sealBase({ kemId: 0x0010, kdfId: 1, aeadId: 2 }, new Uint8Array(65), info, aad, pt, p), isHpke('unsupported_suite'));
    assert.throws(() => keyScheduleBase(KEM_XWING, 2, 2, new Uint8Array(32), info), isHpke('unsupported_suite'));
    assert.throws(() => keyScheduleBase(KEM_XWING, 1, 0xffff, new Uint8Array(32), info), isHpke('unsupported_suite'));
  });
});
