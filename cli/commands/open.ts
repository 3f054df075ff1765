import { requireString, readStdin, type Command } from '../command.js';
import { openEnvelope, parseEnvelope } from '../../protocol/envelope/index.js';
import { KEM_BY_ALG, loadRecipient, loadSignerPublic, oneLine, refuseTty, writeStdout } from './envelope-cli.js';

export const open: Command = {
  name: 'open',
  summary: 'Verify and decrypt an envelope from stdin',
  usage: [
    'Usage: ghostpipe open --key RECEIVER.kem.key --from DEVICE.sign.pub < envelope > plain',
    '',
    'Checks the envelope structure, verifies the device\'s ML-DSA-65 signature, decrypts with the',
    'receiver key and writes the plaintext (padding removed) to stdout. Any failure (wrong key,',
    'wrong signer, tampered or truncated input) prints one line and exits non-zero; nothing is',
    'written to stdout then. Replay state is the receiver daemon\'s job, not this command\'s.',
    '',
    'Options:',
    '  --key FILE    receiver private key (N.kem.key, X-Wing or ML-KEM-768) (required)',
    '  --from FILE   the sending device\'s signing public key (N.sign.pub, ML-DSA-65) (required)',
  ].join('\n'),
  options: {
    key: { type: 'string' },
    from: { type: 'string' },
  },
  async run(args) {
    const keyFile = requireString(args, 'key', 'open');
    const fromFile = requireString(args, 'from', 'open');
    refuseTty('open', 'the envelope');
    const plaintext = await oneLine('open', async () => {
      const key = await loadRecipient(keyFile);
      const signer = await loadSignerPublic(fromFile);
      const envelope = parseEnvelope(await readStdin());
      try {
        return openEnvelope(envelope, { kemId: KEM_BY_ALG[key.alg]!, seed: key.seed, publicKey: key.publicKey }, signer.publicKey);
      } finally {
        key.seed.fill(0);
      }
    });
    await writeStdout(plaintext);
    return 0;
  },
};
