import { readStdin, type Command } from '../command.js';
import { envelopeId, hpkeParameters, parseEnvelope, signatureMessage, SIGNATURE_CONTEXT } from '../../protocol/envelope/index.js';
import { AEAD_NAMES, CONTENT_TYPE_NAMES, KDF_NAMES, KEM_NAMES, oneLine, refuseTty } from './envelope-cli.js';

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const u16 = (n: number): string => n.toString(16).padStart(4, '0');

export const inspect: Command = {
  name: 'inspect',
  summary: 'Show an envelope\'s header, signer key id and HPKE parameters (no keys needed)',
  usage: [
    'Usage: ghostpipe inspect [--json] < envelope',
    '',
    'Parses the envelope structure (no signature check, no decryption) and prints the header fields,',
    'the signer\'s key id and the RFC 9180 HPKE parameters in base64 (suite ids, enc, info, aad,',
    'ciphertext): with the receiver\'s private key, any conforming HPKE implementation can open it',
    '(base mode, single shot, sequence 0), then strip the padding (4-byte big-endian length prefix).',
    '',
    'Options:',
    '  --json    print one JSON object instead of text',
  ].join('\n'),
  options: {
    json: { type: 'boolean' },
  },
  async run(args) {
    refuseTty('inspect', 'the envelope');
    const bytes = await readStdin();
    const env = await oneLine('inspect', () => parseEnvelope(bytes));
    const h = env.header;
    const hpke = hpkeParameters(env);
    const report = {
      envelopeId: envelopeId(bytes),
      size: bytes.length,
      header: {
        version: h.version,
        kemId: h.kemId, kem: KEM_NAMES[h.kemId] ?? 'unknown',
        kdfId: h.kdfId, kdf: KDF_NAMES[h.kdfId] ?? 'unknown',
        aeadId: h.aeadId, aead: AEAD_NAMES[h.aeadId] ?? 'unknown',
        contentType: h.contentType, contentTypeName: CONTENT_TYPE_NAMES[h.contentType] ?? 'unknown',
        bucket: h.bucket,
        streamId: h.streamId,
        sequence: h.sequence.toString(),
        createdAt: h.createdAt, createdAtIso: new Date(h.createdAt).toISOString(),
        senderKeyId: hex(h.senderKeyId),
        recipientKeyId: hex(h.recipientKeyId),
      },
      signature: {
        alg: 'ML-DSA-65',
        signerKeyId: hex(h.senderKeyId),
        context: Buffer.from(SIGNATURE_CONTEXT).toString('utf8'),
        coveredBytes: env.signedBytes.length,
        // The signed message is SHA-512 of the covered bytes (docs/protocol/envelope.md).
        message: 'SHA-512(header || enc || ciphertext)',
        messageDigest: b64(signatureMessage(env.signedBytes)),
        signature: b64(env.signature),
      },
      hpke: {
        mode: 0,
        // RFC 9180 §5.1: suite_id = "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2)
        suiteId: b64(Buffer.concat([Buffer.from('HPKE'), Buffer.from(u16(hpke.kemId) + u16(hpke.kdfId) + u16(hpke.aeadId), 'hex')])),
        kemId: hpke.kemId, kdfId: hpke.kdfId, aeadId: hpke.aeadId,
        enc: b64(hpke.enc),
        info: b64(hpke.info),
        aad: b64(hpke.aad),
        ciphertext: b64(hpke.ciphertext),
      },
    };
    if (args.values.json) {
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      return 0;
    }
    const lines = [
      `envelope         ${report.envelopeId} (${report.size} bytes)`,
      ...Object.entries(report.header).map(([k, v]) => `${k.padEnd(16)} ${String(v)}`),
      `signature        ML-DSA-65 by key id ${report.signature.signerKeyId}, context "${report.signature.context}", over ${report.signature.coveredBytes} bytes`,
      `hpke.mode        0 (base)`,
      `hpke.suite_id    ${report.hpke.suiteId}`,
      `hpke.enc         ${report.hpke.enc}`,
      `hpke.info        ${report.hpke.info}`,
      `hpke.aad         ${report.hpke.aad}`,
      `hpke.ciphertext  ${report.hpke.ciphertext}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};
