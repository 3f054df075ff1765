import { CliError, optionalString, requireString, type Command } from '../command.js';
import { KEY_TYPES, KeyFileError, writeKeyBundle, type KemChoice, type KeyType } from '../../common/keyfile.js';
import { keyIdHex } from '../../protocol/keys.js';

const KEM_CHOICES: Record<string, KemChoice> = { 'x-wing': 'X-Wing', 'ml-kem-768': 'ML-KEM-768' };

export const keygen: Command = {
  name: 'keygen',
  summary: 'Generate a device, receiver, relay, firmware-signer or fleet key bundle',
  usage: [
    'Usage: ghostpipe keygen --type device|receiver|relay|firmware|fleet --out DIR [--name N] [--kem x-wing|ml-kem-768] [--force] [--json]',
    '',
    'Writes PEM key files into DIR (created 0700 if missing): private keys 0600 (PKCS#8, seed form),',
    'public keys 0644 (SPKI). N defaults to the type.',
    '  device    N.sign.key N.sign.pub (ML-DSA-65) and N.kem.key N.kem.pub (X-Wing)',
    '  receiver  N.kem.key N.kem.pub (X-Wing)',
    '  relay     N.sign.key N.sign.pub (ML-DSA-65)',
    '  firmware  N.sign.key N.sign.pub (ML-DSA-65)',
    '  fleet     N.sign.key N.sign.pub (ML-DSA-65): the operator\'s offline key that approves devices',
    '            (`ghostpipe device approve`); keep N.sign.key off the relay host, ideally offline',
    '',
    'Options:',
    '  --type T      which bundle to generate (required)',
    '  --out DIR     folder for the key files (required)',
    '  --name N      file name stem (default: the type); letters, digits, . _ -',
    '  --kem K       KEM key type for device/receiver: x-wing (default) or ml-kem-768 (pure-PQ mode)',
    '  --force       replace existing key files (default: refuse and change nothing)',
    '  --json        print the result as JSON',
    '',
    'Prints the files written, the key ids (SHA-256 of the SPKI) and, for signing keys, the DID.',
    'Never prints private key material.',
  ].join('\n'),
  options: {
    type: { type: 'string' },
    out: { type: 'string' },
    name: { type: 'string' },
    kem: { type: 'string' },
    force: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(args) {
    const type = requireString(args, 'type', 'keygen');
    if (!KEY_TYPES.includes(type as KeyType)) throw new CliError(`keygen: --type must be one of ${KEY_TYPES.join(', ')}, got "${type}"`, 2);
    const out = requireString(args, 'out', 'keygen');
    const name = optionalString(args, 'name') ?? type;
    const kemName = (optionalString(args, 'kem') ?? 'x-wing').toLowerCase();
    const kem = KEM_CHOICES[kemName];
    if (!kem) throw new CliError(`keygen: --kem must be x-wing or ml-kem-768, got "${kemName}"`, 2);
    if (optionalString(args, 'kem') !== undefined && (type === 'relay' || type === 'firmware' || type === 'fleet')) {
      throw new CliError(`keygen: --kem does not apply to --type ${type} (it has only a signing key)`, 2);
    }
    let bundle;
    try {
      bundle = await writeKeyBundle(type as KeyType, out, name, { overwrite: args.values.force === true, kem });
    } catch (err) {
      if (err instanceof KeyFileError) throw new CliError(`keygen: ${err.message}`);
      throw err;
    }
    const keys = Object.fromEntries(Object.entries(bundle.publicKeys).map(([role, k]) => [role, { alg: k.alg, keyId: keyIdHex(k.alg, k.publicKey) }]));
    if (args.values.json) {
      const files = bundle.files.map((f) => ({ path: f.path, alg: f.alg, kind: f.kind, mode: '0' + f.mode.toString(8) }));
      process.stdout.write(JSON.stringify({ type, name, files, keys, ...(bundle.did ? { did: bundle.did } : {}) }, null, 2) + '\n');
      return 0;
    }
    const lines = bundle.files.map((f) => `wrote ${f.path} (${f.alg} ${f.kind} key, mode 0${f.mode.toString(8)})`);
    for (const [role, k] of Object.entries(keys)) lines.push(`${role} key id: ${k.keyId} (${k.alg})`);
    if (bundle.did) lines.push(`did: ${bundle.did}`);
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};
