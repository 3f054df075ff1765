/**
 * receiver/trust.ts in enrolled mode: a device counts only with a valid approval by the pinned
 * fleet key over exactly its keys, and the registration leaf proved is the one carrying it.
 * The relay and the log are stand-ins that answer what a (possibly compromised) relay would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeviceTrust, TrustError } from './trust.js';
import type { RelayClient } from '../common/relay-client.js';
import type { LogTrust } from '../common/log-trust.js';
import type { RevocationWatch } from './revocations.js';
import { didDocument, didFromSigningKey } from '../protocol/did.js';
import { encodeEnrollmentStatement, signEnrollmentStatement } from '../protocol/enrollment.js';
import { encodeLogEntry } from '../protocol/log-entries.js';
import { generatePrivateKey, keyId } from '../protocol/keys.js';
import { leafHash } from '../protocol/tlog/merkle.js';

const fleet = generatePrivateKey('ML-DSA-65');
const NOW = Date.UTC(2027, 5, 1);

function device(fleetKey = fleet, validity = { notBefore: NOW - 1000, notAfter: NOW + 1000 }, approvedKem?: Uint8Array) {
  const signing = generatePrivateKey('ML-DSA-65');
  const kem = generatePrivateKey('X-Wing');
  const did = didFromSigningKey(signing.publicKey);
  const statement = encodeEnrollmentStatement({ did, signingPublicKey: signing.publicKey, kemAlg: 'X-Wing', kemPublicKey: approvedKem ?? kem.publicKey, apiKeyId: 'aaaaaaaaaaaa', ...validity });
  const signature = signEnrollmentStatement(fleetKey.seed, statement);
  return { signing, kem, did, statement, signature };
}

type Device = ReturnType<typeof device>;

/** A relay answering DID records (with or without the approval) and a log that records what was proved. */
function trustWith(d: Device, options: { approval?: boolean; fleetPublicKey?: Uint8Array } = {}) {
  const proved: Uint8Array[] = [];
  const client = {
    getDid: async (did: string) => ({
      did, document: { ...didDocument({ signingPublicKey: d.signing.publicKey, kemPublicKey: d.kem.publicKey }) }, leafIndex: 3, revoked: false, registeredAt: new Date(NOW).toISOString(),
      ...(options.approval === false ? {} : { fleetStatement: Buffer.from(d.statement).toString('base64'), fleetSignature: Buffer.from(d.signature).toString('base64') }),
    }),
  } as unknown as RelayClient;
  const log = { proveIncluded: async (hash: Uint8Array) => { proved.push(hash); return { index: 3, size: 4 }; } } as unknown as LogTrust;
  const trust = new DeviceTrust({
    client, log, revocations: {} as RevocationWatch, enrolled: true, pinnedDids: [], pinnedKeys: [], refreshMs: 0, now: () => NOW,
    ...('fleetPublicKey' in options ? (options.fleetPublicKey ? { fleetPublicKey: options.fleetPublicKey } : {}) : { fleetPublicKey: fleet.publicKey }),
  });
  return { trust, proved };
}

async function refusal(d: Device, options: Parameters<typeof trustWith>[1] = {}): Promise<string> {
  const { trust, proved } = trustWith(d, options);
  try {
    await trust.resolve(keyId('ML-DSA-65', d.signing.publicKey));
  } catch (err) {
    assert.ok(err instanceof TrustError, String(err));
    assert.equal(proved.length, 0, 'refused before any log proof');
    return `${err.code}: ${err.message}`;
  }
  return 'accepted';
}

test('an approved device is accepted, and the leaf proved is the 0x05 registration carrying its approval', async () => {
  const d = device();
  const { trust, proved } = trustWith(d);
  const resolved = await trust.resolve(keyId('ML-DSA-65', d.signing.publicKey));
  assert.equal(resolved.did, d.did);
  const leaf = encodeLogEntry({ type: 'registration', signingKeyId: keyId('ML-DSA-65', d.signing.publicKey), kemKeyId: keyId('X-Wing', d.kem.publicKey), did: d.did, approval: { statement: d.statement, signature: d.signature } });
  assert.equal(leaf[0], 0x05);
  assert.deepEqual(proved, [leafHash(leaf)]);
});

test('no approval, another key\'s approval, or no pinned fleet key: unenrolled_sender', async () => {
  assert.match(await refusal(device(), { approval: false }), /^unenrolled_sender: .*without a fleet approval/);
  assert.match(await refusal(device(generatePrivateKey('ML-DSA-65'))), /^unenrolled_sender: .*fleet signature does not verify/);
  assert.match(await refusal(device(), { fleetPublicKey: undefined }), /^unenrolled_sender: .*no fleet key is pinned/);
});

test('an expired, not yet valid, or other-keys approval: bad_registration', async () => {
  assert.match(await refusal(device(fleet, { notBefore: NOW - 2000, notAfter: NOW })), /^bad_registration: .*expired/);
  assert.match(await refusal(device(fleet, { notBefore: NOW + 1, notAfter: NOW + 2000 })), /^bad_registration: .*valid only from/);
  assert.match(await refusal(device(fleet, undefined, generatePrivateKey('X-Wing').publicKey)), /^bad_registration: .*other device keys/);
});
