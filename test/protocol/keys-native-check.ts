/**
 * OpenSSL 3.5 interop for our key files, run inside a Node whose node:crypto has ML-DSA/ML-KEM
 * (Node 24). Used by keys-native.test.ts, in-process under Node 24 or as a child process of the
 * Node 24 binary from a Node 20 run. Prints a JSON report when run directly.
 */
import * as nodeCrypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { decodePrivateKeyPem, decodePublicKeyPem, encodePrivateKeyPem, generatePrivateKey, spkiDer, type KeyAlg } from '../../protocol/keys.js';
import { TAG, readChildren, readSingle } from '../../protocol/asn1.js';
import { nobleProvider } from '../../protocol/crypto/noble.js';

export interface InteropCase {
  alg: KeyAlg;
  /** OpenSSL loaded our seed-form PKCS#8 PEM and derived the SPKI that noble derives from the seed. */
  opensslReadsOurPem: boolean;
  /** We read OpenSSL's own PKCS#8 PEM export (its default form) and derive OpenSSL's public key. */
  weReadOpensslPem: boolean;
  /** We read OpenSSL's SPKI PEM. */
  weReadOpensslSpki: boolean;
  /** ML-DSA only: OpenSSL signs with the key from our PEM and noble verifies. */
  opensslSignNobleVerifies?: boolean;
  /** Which PKCS#8 private-key CHOICE OpenSSL wrote: the first tag inside privateKey. */
  opensslPrivateKeyForm: string;
}

const nobleSpki = (alg: KeyAlg, seed: Uint8Array): Uint8Array =>
  spkiDer(alg, alg === 'ML-DSA-65' ? nobleProvider.mlDsa65.publicKeyFromSeed(seed) : nobleProvider.mlKem768.publicKeyFromSeed(seed));

export function interopReport(): { node: string; openssl: string; cases: InteropCase[] } {
  const cases: InteropCase[] = [];
  for (const alg of ['ML-DSA-65', 'ML-KEM-768'] as const) {
    const ours = generatePrivateKey(alg);
    const nodeKey = nodeCrypto.createPrivateKey(encodePrivateKeyPem(ours));
    const spki = nodeCrypto.createPublicKey(nodeKey).export({ type: 'spki', format: 'der' });
    const opensslReadsOurPem = Buffer.from(spki).equals(Buffer.from(nobleSpki(alg, ours.seed)));

    const generated = (nodeCrypto.generateKeyPairSync as unknown as (t: string) => nodeCrypto.KeyPairKeyObjectResult)(alg.toLowerCase());
    const pkcs8Pem = generated.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const pkcs8Der = generated.privateKey.export({ type: 'pkcs8', format: 'der' });
    const theirSpki = generated.publicKey.export({ type: 'spki', format: 'der' });
    const read = decodePrivateKeyPem(pkcs8Pem, alg);
    const weReadOpensslPem = Buffer.from(spkiDer(alg, read.publicKey)).equals(theirSpki);
    const spkiPem = generated.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const weReadOpensslSpki = Buffer.from(spkiDer(alg, decodePublicKeyPem(spkiPem, alg).publicKey)).equals(theirSpki);
    const [, , privateKeyField] = readChildren(readSingle(new Uint8Array(pkcs8Der), TAG.SEQUENCE, 'PKCS#8').content);
    const firstTag = privateKeyField?.content[0];
    const opensslPrivateKeyForm = firstTag === 0x80 ? 'seed' : firstTag === 0x30 ? 'both' : firstTag === 0x04 ? 'expanded' : `tag 0x${firstTag?.toString(16)}`;

    const result: InteropCase = { alg, opensslReadsOurPem, weReadOpensslPem, weReadOpensslSpki, opensslPrivateKeyForm };
    if (alg === 'ML-DSA-65') {
      const message = new TextEncoder().encode('ghostpipe interop');
      const signature = nodeCrypto.sign(null, message, nodeKey);
      result.opensslSignNobleVerifies = nobleProvider.mlDsa65.verify(ours.publicKey, message, signature, new Uint8Array(0));
    }
    cases.push(result);
  }
  return { node: process.version, openssl: process.versions.openssl, cases };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(JSON.stringify(interopReport()) + '\n');
}
