/**
 * HPKE (RFC 9180) base mode: setup of sender/receiver contexts and single-shot seal/open.
 * Pure bytes in, bytes out; the PQ KEMs run on the given crypto provider.
 */
import type { CryptoProvider } from '../crypto/provider.js';
import { getAead } from './aead.js';
import { HpkeError } from './errors.js';
import { getKem } from './kem.js';
import { HpkeContext, keyScheduleBase } from './keyschedule.js';

export interface HpkeSuite { kemId: number; kdfId: number; aeadId: number }

function checkSuite(suite: HpkeSuite) {
  const kem = getKem(suite.kemId);
  getAead(suite.aeadId);
  return kem;
}

/** SetupBaseS. `encapRandomness` makes encapsulation deterministic: test vectors only. */
export function setupBaseSender(suite: HpkeSuite, recipientPublicKey: Uint8Array, info: Uint8Array, provider: CryptoProvider, encapRandomness?: Uint8Array): { enc: Uint8Array; context: HpkeContext } {
  const kem = checkSuite(suite);
  const { enc, sharedSecret } = encapRandomness ? kem.encapDerand(recipientPublicKey, encapRandomness) : kem.encap(recipientPublicKey, provider);
  const schedule = keyScheduleBase(suite.kemId, suite.kdfId, suite.aeadId, sharedSecret, info);
  sharedSecret.fill(0);
  return { enc, context: new HpkeContext(suite.aeadId, schedule) };
}

/** SetupBaseR. Throws HpkeError('decap_failed') when the KEM rejects enc outright. */
export function setupBaseReceiver(suite: HpkeSuite, enc: Uint8Array, recipientSecretKey: Uint8Array, info: Uint8Array, provider: CryptoProvider): HpkeContext {
  const kem = checkSuite(suite);
  const sharedSecret = kem.decap(enc, recipientSecretKey, provider);
  const schedule = keyScheduleBase(suite.kemId, suite.kdfId, suite.aeadId, sharedSecret, info);
  sharedSecret.fill(0);
  return new HpkeContext(suite.aeadId, schedule);
}

export function sealBase(suite: HpkeSuite, recipientPublicKey: Uint8Array, info: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, provider: CryptoProvider): { enc: Uint8Array; ciphertext: Uint8Array } {
  const { enc, context } = setupBaseSender(suite, recipientPublicKey, info, provider);
  return { enc, ciphertext: context.seal(aad, plaintext) };
}

export function openBase(suite: HpkeSuite, enc: Uint8Array, recipientSecretKey: Uint8Array, info: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, provider: CryptoProvider): Uint8Array {
  return setupBaseReceiver(suite, enc, recipientSecretKey, info, provider).open(aad, ciphertext);
}

export { HpkeError };
