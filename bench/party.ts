/** A device and a receiver enrolled at a bench relay: the set-up every relay-facing bench needs. */
import { RelayClient } from '../common/relay-client.js';
import type { CryptoProvider } from '../protocol/crypto/provider.js';
import { xwingDecapsulate } from '../protocol/crypto/xwing.js';
import { generatePrivateKey, keyIdHex, type PrivateKey } from '../protocol/keys.js';

export interface EnrolledParty {
  deviceKey: string;
  receiverKey: string;
  recipientKeyId: string;
  signing: PrivateKey;
  kem: PrivateKey;
  device: RelayClient;
}

/** Issues a device and a receiver key on plan "bench" and enrolls a fresh device key pair. */
export async function enrollParty(url: string, operator: RelayClient, provider: CryptoProvider, label: string): Promise<EnrolledParty> {
  const deviceKey = (await operator.createKey({ role: 'device', plan: 'bench', label: `${label} device` })).key;
  const kem = generatePrivateKey('X-Wing');
  const recipientKeyId = keyIdHex('X-Wing', kem.publicKey);
  const receiverKey = (await operator.createKey({ role: 'receiver', plan: 'bench', label: `${label} receiver`, recipients: [recipientKeyId] })).key;
  const signing = generatePrivateKey('ML-DSA-65');
  const device = new RelayClient({ baseUrl: url, apiKey: deviceKey });
  const deviceKem = generatePrivateKey('X-Wing');
  await device.enroll({
    signingPublicKey: signing.publicKey, kemPublicKey: deviceKem.publicKey,
    sign: (m, c) => provider.mlDsa65.sign(signing.seed, m, c), decapsulate: (ct) => xwingDecapsulate(deviceKem.seed, ct, provider),
  });
  return { deviceKey, receiverKey, recipientKeyId, signing, kem, device };
}
