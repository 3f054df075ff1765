import { promises as fs } from 'node:fs';
import { CliError, loadKeyFile, optionalString, optionalStrings, printWarning, requireString, type Command, type ParsedArgs } from '../command.js';
import { DurationError, parseDuration, parseSize, SizeError, formatSize } from '../../common/duration.js';
import { loadPublicKey, loadSigningKey } from '../../common/keyfile.js';
import { packFirmware, PackageError, readChunk, readPackageManifest, writeSignatures } from '../../common/firmware-package.js';
import { AEAD } from '../../protocol/envelope/constants.js';
import { publish, readRootFile, status, widen } from './firmware-rollout.js';
import { OPERATOR_OPTIONS, OPERATOR_USAGE } from '../operator-client.js';
import {
  checkChunk, DEFAULT_CHUNK_SIZE, encodeRoot, FirmwareError, MANIFEST_CONTEXT, ROOT_CONTEXT, signedRootFromJson, signedRootToJson, signWith,
  verifyManifest, verifyRoot, verifyRotation, type FirmwareRoot, type KeySignature, type SignedRoot,
} from '../../protocol/firmware/index.js';

const AEADS: Record<string, number> = { 'aes-256-gcm': AEAD.AES256GCM, 'chacha20-poly1305': AEAD.CHACHA20POLY1305 };

export const firmware: Command = {
  name: 'firmware',
  summary: 'Make the firmware root; pack, sign, verify, publish and follow firmware rollouts (docs/FIRMWARE.md)',
  usage: [
    'Usage: ghostpipe firmware root --key A.pub [--key B.pub …] [--threshold K] --sign A.key [--sign B.key …] [--rotate OLD.json] [--out FILE]',
    '       ghostpipe firmware pack BINARY --out DIR --name N --version V --counter C --group G --hardware H [--hardware H2 …]',
    '                               --expires 30d|ISO-TIME [--chunk-size 1MiB] [--aead aes-256-gcm|chacha20-poly1305]',
    '                               [--install-type command|ghostpipe-release] [--install-hint TEXT]',
    '       ghostpipe firmware sign DIR|ROOT.json --key release.sign.key',
    '       ghostpipe firmware verify DIR --root ROOT.json',
    '       ghostpipe firmware verify ROOT.json [--root PINNED.json]',
    '       ghostpipe firmware publish DIR --publisher-key FILE [--fleet-key FILE] [--first N] [--device DID …] [--root-chain ROOT.json …]',
    '       ghostpipe firmware status NAME@VERSION|ID [--json]',
    '       ghostpipe firmware widen NAME@VERSION|ID [--device DID …]',
    '',
    'Offline steps of a release; run them where the release keys live. Release keys are',
    '`ghostpipe keygen --type firmware` ML-DSA-65 keys.',
    '',
    '  root     the firmware root devices pin: the release keys and how many must sign (k of n,',
    '           default 1 of 1). --rotate OLD.json makes the next version, which must be signed by',
    '           the old root\'s threshold of its keys and the new threshold of the new keys.',
    '           Signers may also add their signature later with `firmware sign ROOT.json`.',
    '  pack     encrypts BINARY chunk by chunk under a new content key into DIR (manifest.bin,',
    '           signatures.json, chunks/, content.key 0600). Only `publish` needs content.key.',
    '  sign     adds this release key\'s signature to a package (or a root); run on each signer.',
    '  verify   checks signatures against the root\'s threshold, every chunk against the manifest,',
    '           and the expiry; exit 0 only when all hold.',
    '  publish  uploads a signed package to the relay for the enrolled devices of its group (or',
    '           --device …), wrapping the content key to each; --first N offers it to N devices',
    '           first (staged). --fleet-key checks each device\'s KEM key against its fleet approval.',
    '           --root-chain v2.json … hands root rotations (oldest first) to devices pinned to an',
    '           older root; each device checks that the chain starts at what it trusts.',
    '  status   one row per device: held_back, pending, downloading (chunks), downloaded,',
    '           installed, failed / rolled_back (reason), refused, expired; exit 0 only when',
    '           every device installed it.',
    '  widen    offers a staged rollout to the held-back devices (or --device …); refused once',
    '           a device reported a failure.',
    ...OPERATOR_USAGE,
  ].join('\n'),
  options: {
    key: { type: 'string', multiple: true },
    sign: { type: 'string', multiple: true },
    threshold: { type: 'string' },
    rotate: { type: 'string' },
    root: { type: 'string' },
    out: { type: 'string' },
    name: { type: 'string' },
    version: { type: 'string' },
    counter: { type: 'string' },
    group: { type: 'string' },
    hardware: { type: 'string', multiple: true },
    expires: { type: 'string' },
    'chunk-size': { type: 'string' },
    aead: { type: 'string' },
    'install-type': { type: 'string' },
    'install-hint': { type: 'string' },
    'publisher-key': { type: 'string' },
    'fleet-key': { type: 'string' },
    first: { type: 'string' },
    device: { type: 'string', multiple: true },
    'root-chain': { type: 'string', multiple: true },
    json: { type: 'boolean' },
    ...OPERATOR_OPTIONS,
  },
  async run(args) {
    const [action] = args.positionals;
    const actions: Record<string, (a: ParsedArgs) => Promise<number>> = { root, pack, sign, verify, publish, status, widen };
    const handler = action === undefined ? undefined : actions[action];
    if (!handler) throw new CliError(`firmware: unknown action ${JSON.stringify(action ?? '')}; use ${Object.keys(actions).join(', ')} (ghostpipe firmware --help)`, 2);
    try {
      return await handler(args);
    } catch (err) {
      if (err instanceof FirmwareError || err instanceof PackageError) throw new CliError(`firmware ${action}: ${err.message}`);
      throw err;
    }
  },
};

const keyHex = (s: KeySignature) => Buffer.from(s.keyId).toString('hex').slice(0, 16);

async function writeOutput(text: string, out: string | undefined, mode = 0o644): Promise<void> {
  if (out === undefined) process.stdout.write(text);
  else await fs.writeFile(out, text, { mode });
}

async function root(args: ParsedArgs): Promise<number> {
  const command = 'firmware root';
  const keyFiles = optionalStrings(args, 'key');
  if (keyFiles.length === 0) throw new CliError(`${command}: --key FILE (a release public key) is required, once per key`, 2);
  const keys = await Promise.all(keyFiles.map((f) => loadKeyFile(command, async () => (await loadPublicKey(f, ['ML-DSA-65'])).publicKey)));
  const threshold = Number(optionalString(args, 'threshold') ?? '1');
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > keys.length) throw new CliError(`${command}: --threshold must be 1..${keys.length} (the number of --key), got ${optionalString(args, 'threshold')}`, 2);
  const rotateFrom = optionalString(args, 'rotate');
  const previous = rotateFrom === undefined ? undefined : verifyRoot(await readRootFile(rotateFrom, command));
  const next: FirmwareRoot = { version: previous ? previous.version + 1 : 1, threshold, keys };
  const bytes = encodeRoot(next);
  const signatures: KeySignature[] = [];
  for (const file of optionalStrings(args, 'sign')) {
    const key = await loadKeyFile(command, () => loadSigningKey(file, printWarning));
    signatures.push(signWith(key.seed, bytes, ROOT_CONTEXT));
    key.seed.fill(0);
  }
  const signed = signedRootFromJson(signedRootToJson({ bytes, signatures }));
  await writeOutput(JSON.stringify(signedRootToJson(signed), null, 2) + '\n', optionalString(args, 'out'));
  const complete = checkRoot(signed, previous);
  process.stderr.write(`firmware root v${next.version}: ${threshold} of ${keys.length} release keys; ${signatures.length} signatures; ${complete ?? 'complete'}\n`);
  return 0;
}

/** undefined when the root is fully signed (and chains to `previous`), else what is missing. */
function checkRoot(signed: SignedRoot, previous: FirmwareRoot | undefined): string | undefined {
  try {
    if (previous) verifyRotation(previous, signed);
    else verifyRoot(signed);
    return undefined;
  } catch (err) {
    if (err instanceof FirmwareError) return `not yet valid (${err.message}); add signatures with \`ghostpipe firmware sign ROOT.json --key K\``;
    throw err;
  }
}

function parseExpiry(text: string, now: number): number {
  if (/^\d{4}-\d\d-\d\dT/.test(text)) {
    const at = Date.parse(text);
    if (Number.isNaN(at)) throw new CliError(`firmware pack: --expires ${text} is not an ISO 8601 time`, 2);
    return at;
  }
  try {
    return now + parseDuration(text);
  } catch (err) {
    if (err instanceof DurationError) throw new CliError(`firmware pack: --expires: ${err.message} (or give an ISO 8601 time)`, 2);
    throw err;
  }
}

async function pack(args: ParsedArgs): Promise<number> {
  const command = 'firmware pack';
  const binary = args.positionals[1];
  if (binary === undefined) throw new CliError(`${command}: the firmware BINARY to pack is required`, 2);
  const counterText = requireString(args, 'counter', command);
  if (!/^[1-9]\d{0,15}$/.test(counterText)) throw new CliError(`${command}: --counter must be a whole number >= 1 (the release counter, increasing per release), got ${counterText}`, 2);
  let chunkSize: number;
  try {
    chunkSize = parseSize(optionalString(args, 'chunk-size') ?? String(DEFAULT_CHUNK_SIZE));
  } catch (err) {
    if (err instanceof SizeError) throw new CliError(`${command}: --chunk-size: ${err.message}`, 2);
    throw err;
  }
  const aeadName = optionalString(args, 'aead') ?? 'aes-256-gcm';
  const aeadId = AEADS[aeadName];
  if (aeadId === undefined) throw new CliError(`${command}: --aead must be ${Object.keys(AEADS).join(' or ')}`, 2);
  const hardware = [...new Set(optionalStrings(args, 'hardware'))].sort();
  if (hardware.length === 0) throw new CliError(`${command}: --hardware H is required (once per compatible hardware id)`, 2);
  const out = requireString(args, 'out', command);
  const signed = await packFirmware(binary, out, {
    name: requireString(args, 'name', command), version: requireString(args, 'version', command), counter: Number(counterText),
    group: requireString(args, 'group', command), hardware, aeadId, chunkSize,
    expires: parseExpiry(requireString(args, 'expires', command), Date.now()),
    installType: optionalString(args, 'install-type') ?? 'command', installHint: optionalString(args, 'install-hint') ?? '',
  });
  const m = signed.manifest;
  process.stdout.write(`packed ${m.name}@${m.version} (counter ${m.counter}, group ${m.group}): ${formatSize(m.size)} in ${m.chunkHashes.length} chunks, expires ${new Date(m.expires).toISOString()}; wrote ${out}\n`);
  process.stdout.write(`next: ghostpipe firmware sign ${out} --key RELEASE.sign.key (on each release signer)\n`);
  return 0;
}

async function sign(args: ParsedArgs): Promise<number> {
  const command = 'firmware sign';
  const target = args.positionals[1];
  if (target === undefined) throw new CliError(`${command}: a package DIR or a ROOT.json is required`, 2);
  const keyFiles = optionalStrings(args, 'key');
  if (keyFiles.length !== 1) throw new CliError(`${command}: --key FILE (one release private key) is required`, 2);
  const key = await loadKeyFile(command, () => loadSigningKey(keyFiles[0]!, printWarning));
  try {
    const isRoot = (await fs.stat(target).catch(() => undefined))?.isFile() === true;
    if (isRoot) {
      const signed = await readRootFile(target, command);
      const signature = signWith(key.seed, signed.bytes, ROOT_CONTEXT);
      const signatures = [...signed.signatures.filter((s) => keyHex(s) !== keyHex(signature)), signature];
      await fs.writeFile(target, JSON.stringify(signedRootToJson({ bytes: signed.bytes, signatures }), null, 2) + '\n');
      process.stdout.write(`signed firmware root v${signed.root.version} with key ${keyHex(signature)}…: ${signatures.length} signatures\n`);
      return 0;
    }
    const signed = await readPackageManifest(target);
    const m = signed.manifest;
    if (m.expires <= Date.now()) printWarning(`${m.name}@${m.version} expired at ${new Date(m.expires).toISOString()}; devices will refuse it`);
    const signature = signWith(key.seed, signed.bytes, MANIFEST_CONTEXT);
    const signatures = [...signed.signatures.filter((s) => keyHex(s) !== keyHex(signature)), signature];
    await writeSignatures(target, signatures);
    process.stdout.write(`signed ${m.name}@${m.version} with key ${keyHex(signature)}…: ${signatures.length} signatures\n`);
    return 0;
  } finally {
    key.seed.fill(0);
  }
}

async function verify(args: ParsedArgs): Promise<number> {
  const command = 'firmware verify';
  const target = args.positionals[1];
  if (target === undefined) throw new CliError(`${command}: a package DIR or a ROOT.json is required`, 2);
  const rootFile = optionalString(args, 'root');
  if ((await fs.stat(target).catch(() => undefined))?.isFile() === true) {
    const signed = await readRootFile(target, command);
    const pinned = rootFile === undefined ? undefined : verifyRoot(await readRootFile(rootFile, command));
    if (pinned && pinned.version === signed.root.version) verifyRoot(signed);
    else if (pinned) verifyRotation(pinned, signed);
    else verifyRoot(signed);
    process.stdout.write(`firmware root v${signed.root.version}: ${signed.root.threshold} of ${signed.root.keys.length} release keys; valid${pinned && pinned.version !== signed.root.version ? `, chains to v${pinned.version}` : ''}\n`);
    return 0;
  }
  if (rootFile === undefined) throw new CliError(`${command}: --root ROOT.json is required to verify a package`, 2);
  const trusted = verifyRoot(await readRootFile(rootFile, command));
  const signed = await readPackageManifest(target);
  const m = verifyManifest(signed, trusted);
  for (let i = 0; i < m.chunkHashes.length; i++) checkChunk(m, i, await readChunk(target, i));
  const expired = m.expires <= Date.now();
  process.stdout.write([
    `${m.name}@${m.version}  counter ${m.counter}  group ${m.group}  hardware ${m.hardware.join(',')}`,
    `  ${formatSize(m.size)} in ${m.chunkHashes.length} chunks of ${formatSize(m.chunkSize)}; every chunk matches the manifest`,
    `  signatures: ${signed.signatures.length}, threshold ${trusted.threshold} of root v${trusted.version}: met`,
    `  expires ${new Date(m.expires).toISOString()}${expired ? ' — EXPIRED: devices refuse it' : ''}`,
    `  install: ${m.installType}${m.installHint ? ` (${m.installHint})` : ''}`,
  ].join('\n') + '\n');
  return expired ? 1 : 0;
}
