/**
 * Sealed envelope: round trips across providers and suites, fixed bucket sizes, and exhaustive or
 * seeded-random mutation of every part (truncation at every offset, every header byte, sampled
 * enc/ciphertext/signature positions, oversized declared lengths, garbage). Every failure must be
 * an EnvelopeError with the specific code. Keys are generated at test time.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { prng } from '../../test/helpers/assert-code.js';
import { randomBytes } from 'node:crypto';
import { availableProviders } from '../crypto/provider.js';
import { getKem, openBase, sealBase } from '../hpke/index.js';
import { keyId } from '../keys.js';
import {
  AEAD, CONTENT_TYPE, DEFAULT_BUCKETS, EnvelopeError, HEADER_LENGTH, KEM, MAX_BUCKET, SIGNATURE_CONTEXT, bucketCapacity, signatureMessage, chooseBucket,
  envelopeId, envelopeLength, hpkeParameters, openEnvelope, parseEnvelope, peekEnvelopeLength, sealEnvelope, validateBuckets, verifyEnvelope,
  type EnvelopeErrorCode, type RecipientPrivate, type Sender,
} from './index.js';
import { pad, unpad } from './padding.js';

const providers = availableProviders();
const noble = providers.find((p) => p.name === 'noble')!;
const fast = providers[0]!; // native when available

function makeSender(): Sender {
  const seed = randomBytes(32);
  return { seed, publicKey: fast.mlDsa65.publicKeyFromSeed(seed) };
}
function makeRecipient(kemId: number): RecipientPrivate {
  const kem = getKem(kemId);
  const seed = randomBytes(kem.secretKeyLength);
  return { kemId, seed, publicKey: kem.publicKeyFromSecret(seed, fast) };
}

const sender = makeSender();
const otherSender = makeSender();
const xwing = makeRecipient(KEM.XWING);
const mlkem = makeRecipient(KEM.MLKEM768);
const otherXwing = makeRecipient(KEM.XWING);
const text = (s: string) => new Uint8Array(Buffer.from(s));

function seal(plaintext: Uint8Array, extra: Partial<Parameters<typeof sealEnvelope>[0]> = {}): Uint8Array {
  return sealEnvelope({ plaintext, recipient: xwing, sender, streamId: 7, sequence: 42n, contentType: CONTENT_TYPE.READINGS, createdAt: 1_750_000_000_000, ...extra });
}

/** Full receive path: parse, verify, open. Returns the plaintext or the EnvelopeError code. */
function receive(bytes: Uint8Array, recipient: RecipientPrivate = xwing, signer: Uint8Array = sender.publicKey, provider = fast): Uint8Array | EnvelopeErrorCode {
  try {
    return openEnvelope(parseEnvelope(bytes), recipient, signer, provider);
  } catch (err) {
    if (err instanceof EnvelopeError) return err.code;
    throw err; // anything untyped fails the test
  }
}
const codeOf = (fn: () => unknown): EnvelopeErrorCode | 'no error' => {
  try { fn(); return 'no error'; } catch (err) { if (err instanceof EnvelopeError) return err.code; throw err; }
};

/** Re-sign after tampering, as a holder of the sender key would: isolates the checks behind the signature. */
function resign(bytes: Uint8Array, signerSeed: Uint8Array = sender.seed): Uint8Array {
  const out = Uint8Array.from(bytes);
  const signedLength = out.length - 3309;
  out.set(noble.mlDsa65.sign(signerSeed, signatureMessage(out.subarray(0, signedLength)), SIGNATURE_CONTEXT), signedLength);
  return out;
}

describe('envelope round trips', () => {
  for (const sealer of providers) for (const opener of providers) for (const recipient of [xwing, mlkem]) for (const aeadId of [AEAD.AES256GCM, AEAD.CHACHA20POLY1305]) {
    it(`${sealer.name} seals, ${opener.name} opens: kem 0x${recipient.kemId.toString(16)} aead ${aeadId}`, () => {
      const plaintext = randomBytes(1000);
      const bytes = sealEnvelope({ plaintext, recipient, sender, streamId: 1, sequence: 2n ** 64n - 1n, contentType: CONTENT_TYPE.CONFIG, aeadId, provider: sealer });
      assert.equal(bytes.length, envelopeLength(4096, recipient.kemId));
      const env = parseEnvelope(bytes);
      assert.equal(env.header.kemId, recipient.kemId);
      assert.equal(env.header.aeadId, aeadId);
      assert.equal(env.header.sequence, 2n ** 64n - 1n);
      assert.equal(env.header.contentType, CONTENT_TYPE.CONFIG);
      assert.deepEqual(env.header.senderKeyId, keyId('ML-DSA-65', sender.publicKey));
      assert.ok(Math.abs(env.header.createdAt - Date.now()) < 60_000);
      verifyEnvelope(env, sender.publicKey, opener);
      assert.deepEqual(openEnvelope(env, recipient, sender.publicKey, opener), new Uint8Array(plaintext));
    });
  }

  it('hpkeParameters let a plain RFC 9180 open recover the padded plaintext', () => {
    const env = parseEnvelope(seal(text('hello field')));
    const p = hpkeParameters(env);
    const padded = openBase({ kemId: p.kemId, kdfId: p.kdfId, aeadId: p.aeadId }, p.enc, xwing.seed, p.info, p.aad, p.ciphertext, noble);
    assert.equal(padded.length, 4096);
    assert.equal(Buffer.from(padded.subarray(4, 15)).toString(), 'hello field');
    assert.equal(new DataView(padded.buffer).getUint32(0), 11);
  });

  it('a replayed copy is byte-identical (same envelopeId, sequence) while a re-seal differs', () => {
    const a = seal(text('x')), b = seal(text('x'));
    assert.equal(envelopeId(a), envelopeId(Uint8Array.from(a)));
    assert.notEqual(envelopeId(a), envelopeId(b));
    assert.match(envelopeId(a), /^[0-9a-f]{64}$/);
    assert.equal(parseEnvelope(Uint8Array.from(a)).header.sequence, 42n);
  });
});

describe('padding buckets', () => {
  it('every envelope of one bucket has exactly the same length', () => {
    const lengths = [0, 1, 100, 4091, 4092].map((n) => seal(randomBytes(n)).length);
    assert.deepEqual(new Set(lengths), new Set([envelopeLength(4096, KEM.XWING)]));
    assert.equal(seal(randomBytes(4093)).length, envelopeLength(65536, KEM.XWING));
    assert.deepEqual(receive(seal(new Uint8Array(0))), new Uint8Array(0));
    const full = randomBytes(4092);
    assert.deepEqual(receive(seal(full)), new Uint8Array(full));
  });

  it('seals and opens the 1 MiB and 5 MiB buckets; nothing larger than the top bucket', () => {
    for (const size of [1048576 - 4, 5242880 - 4]) {
      const plaintext = randomBytes(size);
      const bytes = seal(plaintext);
      assert.equal(bytes.length, envelopeLength(size + 4, KEM.XWING));
      assert.deepEqual(receive(bytes), new Uint8Array(plaintext));
    }
    assert.equal(codeOf(() => seal(new Uint8Array(5242880 - 3))), 'too_large');
  });

  it('chooses buckets from a configurable list and validates it', () => {
    assert.equal(chooseBucket(0), 4096);
    assert.equal(chooseBucket(4093), 65536);
    assert.equal(chooseBucket(100, [256, 1024]), 256);
    assert.equal(codeOf(() => chooseBucket(1021, [256, 1024])), 'too_large');
    assert.equal(bucketCapacity(4096), 4092);
    assert.equal(seal(randomBytes(300), { buckets: [256, 1024] }).length, envelopeLength(1024, KEM.XWING));
    assert.equal(seal(randomBytes(10), { bucket: 65536 }).length, envelopeLength(65536, KEM.XWING));
    assert.equal(codeOf(() => seal(randomBytes(5000), { bucket: 4096 })), 'too_large');
    assert.equal(codeOf(() => validateBuckets([1024, 256])), 'bad_bucket');
    assert.equal(codeOf(() => validateBuckets([])), 'bad_bucket');
    assert.equal(codeOf(() => validateBuckets([16])), 'too_small');
    assert.equal(codeOf(() => validateBuckets([MAX_BUCKET + 1])), 'bad_bucket');
    assert.equal(codeOf(() => validateBuckets([1000.5])), 'bad_bucket');
    validateBuckets(DEFAULT_BUCKETS);
  });

  it('unpad accepts only zero fill: a non-zero byte anywhere in it (across 64 KiB compare chunks) -> bad_padding', () => {
    const bucket = 3 * 65536 + 100;
    const plaintext = randomBytes(10);
    const padded = pad(plaintext, bucket);
    assert.deepEqual(unpad(padded), new Uint8Array(plaintext));
    assert.deepEqual(unpad(padded.subarray(0)), new Uint8Array(plaintext)); // views work too
    const fillStart = 4 + plaintext.length;
    for (const at of [fillStart, 65535, 65536, fillStart + 65535, fillStart + 65536, 2 * 65536 + 7, bucket - 1]) {
      const bad = Uint8Array.from(padded);
      bad[at] = 0x80;
      assert.equal(codeOf(() => unpad(bad)), 'bad_padding', `non-zero fill byte at ${at}`);
    }
    const tooLong = Uint8Array.from(padded);
    new DataView(tooLong.buffer).setUint32(0, bucket - 3);
    assert.equal(codeOf(() => unpad(tooLong)), 'bad_padding');
    assert.equal(codeOf(() => unpad(new Uint8Array(3))), 'bad_padding');
  });
});

describe('seal input validation', () => {
  const cases: [string, Partial<Parameters<typeof sealEnvelope>[0]>, EnvelopeErrorCode][] = [
    ['AES-128-GCM is not an envelope AEAD', { aeadId: 0x0001 }, 'unknown_suite'],
    ['unknown KEM', { recipient: { kemId: 0x0020, publicKey: new Uint8Array(32) } }, 'unknown_suite'],
    ['recipient key of the wrong size', { recipient: { kemId: KEM.XWING, publicKey: new Uint8Array(1184) } }, 'wrong_recipient'],
    ['sender pair mismatch', { sender: { seed: sender.seed, publicKey: otherSender.publicKey } }, 'wrong_signer'],
    ['short sender seed', { sender: { seed: new Uint8Array(31), publicKey: sender.publicKey } }, 'wrong_signer'],
    ['streamId beyond u32', { streamId: 2 ** 32 }, 'bad_header'],
    ['negative sequence', { sequence: -1n }, 'bad_header'],
    ['sequence beyond u64', { sequence: 2n ** 64n }, 'bad_header'],
    ['contentType beyond u16', { contentType: 65536 }, 'bad_header'],
    ['fractional createdAt', { createdAt: 1.5 }, 'bad_header'],
    ['bucket below the minimum', { bucket: 32 }, 'too_small'],
  ];
  for (const [name, extra, code] of cases) it(`${name} -> ${code}`, () => assert.equal(codeOf(() => seal(text('x'), extra)), code));
});

describe('parser and opener reject mutations with specific codes', () => {
  const bytes = seal(text('reading frame'));
  const total = bytes.length;

  it('truncation at every byte offset -> truncated (parse) and peek waits for the full header', () => {
    for (let n = 0; n < total; n++) assert.equal(codeOf(() => parseEnvelope(bytes.subarray(0, n))), 'truncated', `length ${n}`);
    for (let n = 0; n < HEADER_LENGTH; n++) assert.equal(peekEnvelopeLength(bytes.subarray(0, n)), undefined);
    for (const n of [HEADER_LENGTH, HEADER_LENGTH + 1, total]) assert.equal(peekEnvelopeLength(bytes.subarray(0, n)), total);
  });

  it('trailing bytes -> trailing_bytes', () => {
    assert.equal(codeOf(() => parseEnvelope(new Uint8Array([...bytes, 0]))), 'trailing_bytes');
  });

  it('every header byte, bit-flipped -> the code of the field it belongs to', () => {
    const random = prng(0x9e3779b9);
    const expected = (offset: number): EnvelopeErrorCode[] => {
      if (offset < 4) return ['bad_magic'];
      if (offset === 4) return ['unsupported_version'];
      if (offset < 9) return ['unknown_suite'];
      if (offset < 11) return ['unknown_suite', 'bad_signature']; // aeadId 0x0002 ^ 1 = 0x0003 is valid ChaCha20-Poly1305
      if (offset < 13) return ['bad_signature']; // contentType
      if (offset < 17) return ['bad_bucket', 'bad_length'];
      if (offset < 29) return ['bad_signature']; // streamId, sequence
      if (offset < 37) return ['bad_signature', 'bad_header']; // createdAt
      if (offset < 69) return ['wrong_signer'];
      if (offset < 101) return ['bad_signature']; // recipientKeyId is signed; verification comes first
      return ['bad_length'];
    };
    for (let offset = 0; offset < HEADER_LENGTH; offset++) {
      for (const bit of [0, 1 + Math.floor(random() * 7)]) {
        const bad = Uint8Array.from(bytes);
        bad[offset]! ^= 1 << bit;
        const code = receive(bad);
        assert.ok(typeof code === 'string' && expected(offset).includes(code), `offset ${offset} bit ${bit}: ${String(code)}`);
      }
    }
  });

  it('every header byte, random xor -> a typed error, never success', () => {
    const random = prng(12345);
    for (let offset = 0; offset < HEADER_LENGTH; offset++) {
      const bad = Uint8Array.from(bytes);
      bad[offset]! ^= 1 + Math.floor(random() * 255);
      assert.equal(typeof receive(bad), 'string', `offset ${offset}`);
    }
  });

  it('sampled bit flips across enc, ciphertext (incl. tag) and signature -> bad_signature', () => {
    const random = prng(0xc0ffee);
    const encStart = HEADER_LENGTH, ctStart = encStart + 1120, sigStart = total - 3309;
    const regions: [number, number][] = [[encStart, ctStart], [ctStart, sigStart], [sigStart - 16, sigStart], [sigStart, total]];
    for (const [start, end] of regions) {
      const positions = new Set([start, end - 1]);
      while (positions.size < Math.min(24, end - start)) positions.add(start + Math.floor(random() * (end - start)));
      for (const at of positions) {
        const bad = Uint8Array.from(bytes);
        bad[at]! ^= 1 << Math.floor(random() * 8);
        assert.equal(receive(bad), 'bad_signature', `byte ${at}`);
      }
    }
  });

  it('validly re-signed tampering (a sender-key holder) -> decrypt_failed / wrong_recipient', () => {
    const random = prng(77);
    const ctStart = HEADER_LENGTH + 1120, sigStart = total - 3309;
    for (const at of [HEADER_LENGTH, HEADER_LENGTH + 500, ctStart - 1, ctStart, ctStart + Math.floor(random() * 4096), sigStart - 1]) {
      const bad = Uint8Array.from(bytes);
      bad[at]! ^= 0x10;
      assert.equal(receive(resign(bad)), 'decrypt_failed', `byte ${at}`);
    }
    for (const at of [11, 17, 21, 36, 69]) { // authenticated header fields: HPKE info/aad catch them
      const bad = Uint8Array.from(bytes);
      bad[at]! ^= 0x01;
      assert.equal(receive(resign(bad)), at === 69 ? 'wrong_recipient' : 'decrypt_failed', `header byte ${at}`);
    }
  });

  it('wrong recipient key, wrong signer, forged signer -> wrong_recipient / decrypt_failed / wrong_signer / bad_signature', () => {
    assert.equal(receive(bytes, otherXwing), 'wrong_recipient');
    assert.equal(receive(bytes, mlkem), 'wrong_recipient');
    assert.equal(receive(bytes, { ...otherXwing, publicKey: xwing.publicKey }), 'decrypt_failed'); // right id, wrong secret
    assert.equal(receive(bytes, xwing, otherSender.publicKey), 'wrong_signer');
    assert.equal(receive(bytes, xwing, new Uint8Array(10)), 'wrong_signer');
    assert.equal(receive(resign(bytes, otherSender.seed)), 'bad_signature'); // claims sender, signed by another key
  });

  it('bad padding inside a valid signature and ciphertext -> bad_padding', () => {
    const env = parseEnvelope(bytes);
    const p = hpkeParameters(env);
    for (const padded of [(() => { const b = new Uint8Array(4096); b[4095] = 1; return b; })(), (() => { const b = new Uint8Array(4096); new DataView(b.buffer).setUint32(0, 4093); return b; })()]) {
      const { enc, ciphertext } = sealBase({ kemId: p.kemId, kdfId: p.kdfId, aeadId: p.aeadId }, xwing.publicKey, p.info, p.aad, padded, noble);
      const forged = Uint8Array.from(bytes);
      forged.set(enc, HEADER_LENGTH);
      forged.set(ciphertext, HEADER_LENGTH + enc.length);
      assert.equal(receive(resign(forged)), 'bad_padding');
    }
  });

  it('oversized or inconsistent declared lengths -> bad_bucket / bad_length / too_large, also in peek', () => {
    const withField = (offset: number, write: (v: DataView) => void) => {
      const b = Uint8Array.from(bytes.subarray(0, HEADER_LENGTH));
      write(new DataView(b.buffer, offset));
      return b;
    };
    const cases: [Uint8Array, EnvelopeErrorCode][] = [
      [withField(13, (v) => v.setUint32(0, 0xffffffff)), 'bad_bucket'],
      [withField(13, (v) => v.setUint32(0, 10)), 'bad_bucket'],
      [withField(103, (v) => v.setUint32(0, 0xffffffff)), 'bad_length'],
      [withField(101, (v) => v.setUint16(0, 0xffff)), 'bad_length'],
      [withField(107, (v) => v.setUint16(0, 0xffff)), 'bad_length'],
      [withField(13, (v) => { v.setUint32(0, MAX_BUCKET); v.setUint32(90, MAX_BUCKET + 16); }), 'too_large'],
      [withField(29, (v) => v.setBigUint64(0, 2n ** 63n)), 'bad_header'],
      [withField(5, (v) => v.setUint16(0, 0x0020)), 'unknown_suite'],
      [withField(7, (v) => v.setUint16(0, 0x0002)), 'unknown_suite'],
      [withField(9, (v) => v.setUint16(0, 0x0001)), 'unknown_suite'],
      [withField(4, (v) => v.setUint8(0, 2)), 'unsupported_version'],
      [withField(0, (v) => v.setUint8(0, 0x7b)), 'bad_magic'],
    ];
    for (const [header, code] of cases) {
      assert.equal(codeOf(() => peekEnvelopeLength(header)), code);
      assert.equal(codeOf(() => parseEnvelope(header)), code);
    }
    assert.equal(codeOf(() => peekEnvelopeLength(new Uint8Array([0x7b]))), 'bad_magic'); // before the header is complete
    assert.equal(codeOf(() => parseEnvelope(bytes, { maxSize: total - 1 })), 'too_large');
    assert.equal(codeOf(() => parseEnvelope('GPEV' as unknown as Uint8Array)), 'bad_length');
  });

  it('random garbage (seeded), with and without a valid prefix -> typed errors only', () => {
    const random = prng(4242);
    for (let i = 0; i < 300; i++) {
      const length = Math.floor(random() * 12000);
      const junk = new Uint8Array(length).map(() => Math.floor(random() * 256));
      if (i % 2 === 0) junk.set(bytes.subarray(0, Math.min(length, Math.floor(random() * (HEADER_LENGTH + 1)))));
      assert.equal(typeof receive(junk), 'string', `case ${i}`);
    }
  });
});
