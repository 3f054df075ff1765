/**
 * The online steps of `ghostpipe firmware`: publish a signed package to a relay, widen a staged
 * rollout, read its status (docs/FIRMWARE.md, docs/API.md "Firmware"). Operator key required.
 */
import { promises as fs } from 'node:fs';
import { CliError, loadKeyFile, optionalString, optionalStrings, printWarning, type ParsedArgs } from '../command.js';
import { readChunk, readContentKey, readPackageManifest } from '../../common/firmware-package.js';
import { loadPublicKey, loadSigningKey } from '../../common/keyfile.js';
import { RelayError, type RelayClient } from '../../common/relay-client.js';
import { operatorClient } from '../operator-client.js';
import type { RolloutStatusBody } from '../../protocol/api/index.js';
import { readDidDocument } from '../../protocol/did.js';
import { verifyFleetSignature } from '../../protocol/enrollment.js';
import { KEM } from '../../protocol/envelope/constants.js';
import { progress } from '../progress.js';
import { manifestDigest, signedManifestToJson, signedRootFromJson, signedRootToJson, wrapContentKey, type SignedRoot } from '../../protocol/firmware/index.js';


/** A signed firmware root file (`firmware root` output); unreadable: exit 2, not a root: exit 1. */
export async function readRootFile(file: string, command: string): Promise<SignedRoot> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(`${command}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2);
  }
  try {
    return signedRootFromJson(JSON.parse(text));
  } catch (err) {
    throw new CliError(`${command}: ${file}: ${(err as Error).message}`);
  }
}

async function relayCall<T>(command: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof RelayError) throw new CliError(`${command}: ${err.message} (${err.code})`);
    throw err;
  }
}

/**
 * The targets' KEM keys, from the relay's DID records. With --fleet-key each is checked against the
 * device's fleet approval (signed offline), so a relay cannot substitute a key of its own and read
 * the package; without it the relay's answer is believed, and the warning says so.
 */
async function targetKeys(client: RelayClient, dids: string[], fleetKeyFile: string | undefined, command: string): Promise<Map<string, Uint8Array>> {
  const fleet = fleetKeyFile === undefined ? undefined : (await loadKeyFile(command, () => loadPublicKey(fleetKeyFile, ['ML-DSA-65']))).publicKey;
  if (!fleet) printWarning('no --fleet-key: the devices\' KEM keys are taken from the relay unchecked; a compromised relay could then read this package (never forge it)');
  const keys = new Map<string, Uint8Array>();
  for (const did of dids) {
    const record = await relayCall(command, () => client.getDid(did));
    const doc = readDidDocument(record.document);
    if (doc.did !== did || doc.kemAlg !== 'X-Wing') throw new CliError(`${command}: the relay's record of ${did} is not an X-Wing device document`);
    if (fleet) {
      if (!record.fleetStatement || !record.fleetSignature) throw new CliError(`${command}: ${did} has no fleet approval to check its key against (--fleet-key)`);
      const statement = verifyFleetSignature(new Uint8Array(Buffer.from(record.fleetStatement, 'base64')), new Uint8Array(Buffer.from(record.fleetSignature, 'base64')), fleet);
      if (statement.did !== did || !Buffer.from(statement.kemPublicKey).equals(doc.kemPublicKey)) throw new CliError(`${command}: the relay serves a KEM key for ${did} that its fleet approval does not name`);
    }
    keys.set(did, doc.kemPublicKey);
  }
  return keys;
}

export async function publish(args: ParsedArgs): Promise<number> {
  const command = 'firmware publish';
  const dir = args.positionals[1];
  if (dir === undefined) throw new CliError(`${command}: the package DIR is required`, 2);
  const keyFile = optionalString(args, 'publisher-key');
  if (keyFile === undefined) throw new CliError(`${command}: --publisher-key FILE is required (an ML-DSA-65 key: ghostpipe keygen --type firmware --name publisher)`, 2);
  const firstText = optionalString(args, 'first');
  if (firstText !== undefined && !/^[1-9]\d{0,5}$/.test(firstText)) throw new CliError(`${command}: --first must be a whole number >= 1`, 2);
  const signed = await readPackageManifest(dir);
  const m = signed.manifest;
  if (signed.signatures.length === 0) throw new CliError(`${command}: ${dir} is not signed (ghostpipe firmware sign)`);
  const publisher = await loadKeyFile(command, () => loadSigningKey(keyFile, printWarning));
  const client = operatorClient(args, command);
  const chosen = optionalStrings(args, 'device');
  const members = (await relayCall(command, () => client.groups())).groups[m.group] ?? [];
  const targets = chosen.length > 0 ? chosen : members;
  if (targets.length === 0) throw new CliError(`${command}: group ${m.group} has no enrolled devices (ghostpipe groups add ${m.group} DID)`);
  const roots: SignedRoot[] = [];
  for (const file of optionalStrings(args, 'root-chain')) roots.push(await readRootFile(file, command));
  const keys = await targetKeys(client, targets, optionalString(args, 'fleet-key'), command);
  const rollout = await relayCall(command, () => client.publishFirmware({
    ...signedManifestToJson(signed), publisherPublicKey: Buffer.from(publisher.publicKey).toString('base64'), targets,
    ...(firstText !== undefined ? { first: Number(firstText) } : {}), ...(roots.length > 0 ? { roots: roots.map(signedRootToJson) } : {}),
  }));
  process.stderr.write(`${m.name}@${m.version}: package ${rollout.id.slice(0, 16)}…, manifest in log leaf ${rollout.leafIndex}, ${targets.length} targets${firstText ? ` (first ${firstText} offered)` : ''}\n`);
  const chunkBar = progress('chunks', m.chunkHashes.length);
  for (let i = 0; i < m.chunkHashes.length; i++) {
    const bytes = await readChunk(dir, i);
    await relayCall(command, () => client.putFirmwareChunk(rollout.id, i, bytes));
    chunkBar(i + 1);
  }
  const contentKey = await readContentKey(dir);
  const digest = manifestDigest(signed.bytes);
  const wrapBar = progress('key wraps', targets.length);
  try {
    for (const [i, did] of targets.entries()) {
      const wrap = wrapContentKey({ manifestDigest: digest, contentKey, counter: m.counter, recipient: { kemId: KEM.XWING, publicKey: keys.get(did)! }, sender: { seed: publisher.seed, publicKey: publisher.publicKey } });
      await relayCall(command, () => client.putFirmwareWrap(rollout.id, did, wrap));
      wrapBar(i + 1);
    }
  } finally {
    contentKey.fill(0);
    publisher.seed.fill(0);
  }
  process.stdout.write(`published ${m.name}@${m.version} (${rollout.id}) to ${targets.length} devices of ${m.group}; follow it with: ghostpipe firmware status ${m.name}@${m.version}\n`);
  return 0;
}

/** NAME@VERSION (the newest rollout of it the relay knows) or a package id. */
async function findRollout(client: RelayClient, which: string, command: string): Promise<RolloutStatusBody> {
  const all = await relayCall(command, () => client.rollouts());
  const found = /^[0-9a-f]{64}$/.test(which) ? all.find((r) => r.id === which) : all.filter((r) => `${r.name}@${r.version}` === which).at(-1);
  if (!found) throw new CliError(`${command}: the relay holds no rollout ${which}: burned and forgotten, or lost in a relay restart (packages live in RAM); publish it again (devices never install a release twice)`);
  return found;
}

export async function status(args: ParsedArgs): Promise<number> {
  const command = 'firmware status';
  const which = args.positionals[1];
  if (which === undefined) throw new CliError(`${command}: NAME@VERSION or a package id is required`, 2);
  const rollout = await findRollout(operatorClient(args, command), which, command);
  const allInstalled = rollout.devices.every((d) => d.state === 'installed');
  if (args.values.json) {
    process.stdout.write(JSON.stringify(rollout, null, 2) + '\n');
    return allInstalled ? 0 : 1;
  }
  const held = rollout.held ? `held, expires ${rollout.expiresAt}` : `burned ${rollout.burned?.at} (${rollout.burned?.reason})`;
  const lines = [`${rollout.name}@${rollout.version}  counter ${rollout.counter}  group ${rollout.group}  manifest leaf ${rollout.leafIndex}  ${held}`];
  const width = Math.max(...rollout.devices.map((d) => d.did.length), 3);
  lines.push(`${'DID'.padEnd(width)}  ${'STATE'.padEnd(11)}  CHUNKS  DETAIL`);
  for (const d of rollout.devices) {
    const detail = [d.reason, d.receiptLeafIndex !== undefined ? `receipt leaf ${d.receiptLeafIndex}` : undefined, d.at].filter(Boolean).join('; ');
    lines.push(`${d.did.padEnd(width)}  ${d.state.padEnd(11)}  ${`${d.chunksDone}/${d.chunks}`.padEnd(6)}  ${detail}`);
  }
  const counts = new Map<string, number>();
  for (const d of rollout.devices) counts.set(d.state, (counts.get(d.state) ?? 0) + 1);
  lines.push([...counts].map(([state, n]) => `${n} ${state}`).join(', '));
  process.stdout.write(lines.join('\n') + '\n');
  return allInstalled ? 0 : 1;
}

export async function widen(args: ParsedArgs): Promise<number> {
  const command = 'firmware widen';
  const which = args.positionals[1];
  if (which === undefined) throw new CliError(`${command}: NAME@VERSION or a package id is required`, 2);
  const client = operatorClient(args, command);
  const rollout = await findRollout(client, which, command);
  const body = await relayCall(command, () => client.widenRollout(rollout.id, optionalStrings(args, 'device')));
  process.stdout.write(`widened ${rollout.name}@${rollout.version}: ${body.targets} targets\n`);
  return 0;
}
