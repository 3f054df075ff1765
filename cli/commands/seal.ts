import { CliError, optionalString, readStdin, requireString, type Command } from '../command.js';
import { AEAD, CONTENT_TYPE, sealEnvelope } from '../../protocol/envelope/index.js';
import { KEM_BY_ALG, loadRecipientPublic, loadSigner, oneLine, refuseTty, writeStdout } from './envelope-cli.js';

const BUCKETS: Record<string, number | 'auto'> = { auto: 'auto', '4k': 4096, '64k': 65536, '1m': 1048576, '5m': 5242880 };
const AEADS: Record<string, number> = { aes256gcm: AEAD.AES256GCM, chacha20poly1305: AEAD.CHACHA20POLY1305 };
const CONTENT_TYPES: Record<string, number> = { opaque: CONTENT_TYPE.OPAQUE, readings: CONTENT_TYPE.READINGS, config: CONTENT_TYPE.CONFIG, 'firmware-key': CONTENT_TYPE.FIRMWARE_KEY };

/** Wall-clock microseconds: grows across runs and restarts without any state file (see docs/protocol/keys.md). */
export function defaultSequence(): bigint {
  return BigInt(Math.floor((performance.timeOrigin + performance.now()) * 1000));
}

function pick<T>(table: Record<string, T>, value: string, option: string): T {
  const found = table[value.toLowerCase()];
  if (found === undefined) throw new CliError(`seal: --${option} must be one of ${Object.keys(table).join(', ')}, got "${value}"`, 2);
  return found;
}

function parseUint(value: string, option: string, max: bigint): bigint {
  if (!/^\d{1,20}$/.test(value) || BigInt(value) > max) throw new CliError(`seal: --${option} must be an integer from 0 to ${max}, got "${value}"`, 2);
  return BigInt(value);
}

export const seal: Command = {
  name: 'seal',
  summary: 'Seal stdin into a signed, encrypted envelope for a receiver',
  usage: [
    'Usage: ghostpipe seal --to RECEIVER.pub --from DEVICE.sign.key [options] < plain > envelope',
    '',
    'Encrypts stdin (HPKE base mode to the receiver\'s X-Wing or ML-KEM-768 key), pads it to a fixed',
    'bucket and signs it with the device\'s ML-DSA-65 key. The envelope goes to stdout.',
    '',
    'Options:',
    '  --to FILE             receiver public key (N.kem.pub, X-Wing or ML-KEM-768) (required)',
    '  --from FILE           device signing key (N.sign.key, ML-DSA-65) (required)',
    '  --bucket B            auto (default: smallest that fits), 4k, 64k, 1m, 5m',
    '  --aead A              aes256gcm (default) or chacha20poly1305 (faster without AES instructions)',
    '  --stream N            stream id, 0..4294967295 (default 0)',
    '  --seq N               sequence number, 0..2^64-1 (default: current time in microseconds)',
    '  --content-type T      opaque (default), readings, config, firmware-key',
  ].join('\n'),
  options: {
    to: { type: 'string' },
    from: { type: 'string' },
    bucket: { type: 'string' },
    aead: { type: 'string' },
    stream: { type: 'string' },
    seq: { type: 'string' },
    'content-type': { type: 'string' },
  },
  async run(args) {
    const to = requireString(args, 'to', 'seal');
    const from = requireString(args, 'from', 'seal');
    const bucket = pick(BUCKETS, optionalString(args, 'bucket') ?? 'auto', 'bucket');
    const aeadId = pick(AEADS, optionalString(args, 'aead') ?? 'aes256gcm', 'aead');
    const contentType = pick(CONTENT_TYPES, optionalString(args, 'content-type') ?? 'opaque', 'content-type');
    const streamId = Number(parseUint(optionalString(args, 'stream') ?? '0', 'stream', 0xffffffffn));
    const seqText = optionalString(args, 'seq');
    const sequence = seqText === undefined ? defaultSequence() : parseUint(seqText, 'seq', (1n << 64n) - 1n);
    refuseTty('seal', 'the plaintext');
    const envelope = await oneLine('seal', async () => {
      const recipient = await loadRecipientPublic(to);
      const sender = await loadSigner(from);
      const plaintext = await readStdin();
      try {
        return sealEnvelope({
          plaintext,
          recipient: { kemId: KEM_BY_ALG[recipient.alg]!, publicKey: recipient.publicKey },
          sender: { seed: sender.seed, publicKey: sender.publicKey },
          streamId, sequence, contentType, bucket, aeadId,
        });
      } finally {
        plaintext.fill(0);
        sender.seed.fill(0);
      }
    });
    await writeStdout(envelope);
    return 0;
  },
};
