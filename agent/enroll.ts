/** Enrollment with the relay: proof of possession once (`ghostpipe enroll`), a check at every agent start. */
import { RelayError, type FleetApprovalBytes, type RelayClient } from '../common/relay-client.js';
import type { DeviceKeys } from '../common/keyfile.js';
import { getProvider } from '../protocol/crypto/provider.js';
import { xwingDecapsulate } from '../protocol/crypto/xwing.js';

export type Enrollment =
  | { state: 'enrolled'; did: string; leafIndex: number }
  | { state: 'not_enrolled'; did: string; reason: string }
  | { state: 'unknown'; did: string; reason: string };

/** GET /v2/did/{did}: enrolled, not (404 or revoked), or unknown (relay unreachable). */
export async function checkEnrollment(client: RelayClient, did: string): Promise<Enrollment> {
  try {
    const record = await client.getDid(did);
    if (record.did !== did) return { state: 'unknown', did, reason: 'relay answered for another DID' };
    if (record.revoked) return { state: 'not_enrolled', did, reason: `the device was revoked at ${record.revokedAt ?? 'an unknown time'}` };
    return { state: 'enrolled', did, leafIndex: record.leafIndex };
  } catch (err) {
    if (err instanceof RelayError && err.code === 'not_found') return { state: 'not_enrolled', did, reason: 'the relay does not know this device' };
    return { state: 'unknown', did, reason: (err as Error).message };
  }
}

/**
 * Challenge, decapsulate (X-Wing proof of possession), sign (ML-DSA-65, context ghostpipe/enroll/v2),
 * POST /v2/did/register with the fleet approval when there is one.
 */
export async function enrollDevice(client: RelayClient, keys: DeviceKeys, approval?: FleetApprovalBytes): Promise<{ did: string; leafIndex: number }> {
  const provider = getProvider();
  if (keys.kem.alg !== 'X-Wing') throw new Error(`enrollment registers an X-Wing key; this device's KEM key is ${keys.kem.alg}`);
  const registration = await client.enroll({
    signingPublicKey: keys.signing.publicKey,
    kemPublicKey: keys.kem.publicKey,
    sign: (message, context) => provider.mlDsa65.sign(keys.signing.seed, message, context),
    decapsulate: (ciphertext) => xwingDecapsulate(keys.kem.seed, ciphertext, provider),
  }, approval);
  return { did: registration.did, leafIndex: registration.leafIndex };
}
