import { promises as fs } from 'node:fs';
import { CliError, optionalString, requireString, type Command } from '../command.js';
import { createLogger } from '../../common/log.js';
import { loadPublicKey, KeyFileError } from '../../common/keyfile.js';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { audit as runAudit } from '../../receiver/audit.js';
import { checkTransport, TransportError } from '../../common/transport.js';
import { LogIntegrityError } from '../../common/log-trust.js';

const WHAT: Record<string, string> = {
  fork: 'FORK: the relay signed two different histories',
  rollback: 'ROLLBACK: the relay shows an older tree than one it signed before',
  bad_signature: 'BAD SIGNATURE: the checkpoint is not signed by the pinned relay key',
  key_mismatch: 'KEY MISMATCH: the relay announces another checkpoint key than the pinned one',
  wrong_origin: 'WRONG ORIGIN: the checkpoint belongs to another log',
  malformed: 'MALFORMED: the checkpoint or the saved state cannot be read',
  bad_proof: 'BAD PROOF: the relay served inconsistent log data',
  bad_inclusion_proof: 'BAD PROOF: an inclusion proof does not verify',
  bad_consistency_proof: 'FORK: the signed tree does not extend the trusted one (no valid consistency proof was served)',
  bad_entries: 'FORK: the served log entries do not hash to the signed root',
  new_epoch: 'NEW EPOCH REFUSED: the relay started a new log epoch (same key) and --new-epoch is refuse',
};

export const audit: Command = {
  name: 'audit',
  summary: 'Check the relay transparency log: signature, consistency with the last run, optionally every entry',
  usage: [
    'Usage: ghostpipe audit --relay URL --relay-key relay.sign.pub [--state DIR] [--full] [--fleet-key fleet.sign.pub] [--origin O] [--new-epoch accept|refuse] [--ca FILE]',
    '',
    '  --relay URL        relay base URL (https://…, or http:// on a loopback address only)',
    '  --relay-key FILE   the relay\'s ML-DSA-65 public key (PEM), pinned',
    '  --state DIR        keep the last trusted checkpoint here and check the next one extends it',
    '  --full             also fetch every entry and re-derive the signed root, and check every',
    '                     install receipt with its device\'s key from its approved registration',
    '  --fleet-key FILE   the fleet public key (implies --full): check every registration\'s approval;',
    '                     reports approved devices with the end of their newest approval, devices',
    '                     without one, and any approval the fleet key did not sign (exit 1)',
    '  --origin O         expected log origin, or the base of its epochs (default: the one the relay announces for the pinned key)',
    '  --new-epoch P      a RAM-only relay rebooted into "<origin>/epoch/<n>" under the same key: accept (default;',
    '                     warns, records the old epoch\'s last checkpoint in the state) or refuse (exit 1)',
    '  --ca FILE          PEM CA or certificate to pin for https',
    '',
    'Prints one JSON line. Exit 0 when the log is consistent; 1 on a fork, rollback, bad signature,',
    'mismatched key, a forged fleet approval or a forged receipt (the message says which); 2 usage; 5 relay unreachable',
    'or refusing.',
    'Meant for a systemd timer (systemd/ghostpipe-audit.timer).',
  ].join('\n'),
  options: {
    relay: { type: 'string' },
    'relay-key': { type: 'string' },
    state: { type: 'string' },
    full: { type: 'boolean' },
    'fleet-key': { type: 'string' },
    origin: { type: 'string' },
    'new-epoch': { type: 'string' },
    ca: { type: 'string' },
  },
  async run(args) {
    const url = requireString(args, 'relay', 'audit');
    const keyFile = requireString(args, 'relay-key', 'audit');
    try {
      new URL(url);
      checkTransport(url, '--relay');
    } catch (err) {
      throw new CliError(`audit: ${err instanceof TransportError ? err.message : `--relay: not a URL: ${url}`}`, 2);
    }
    const logger = createLogger('audit', 'info');
    let relayKey;
    try {
      relayKey = await loadPublicKey(keyFile, ['ML-DSA-65']);
    } catch (err) {
      if (err instanceof KeyFileError) throw new CliError(`audit: ${err.message}`, 2);
      throw err;
    }
    const fleetKeyFile = optionalString(args, 'fleet-key');
    let fleetPublicKey: Uint8Array | undefined;
    try {
      fleetPublicKey = fleetKeyFile === undefined ? undefined : (await loadPublicKey(fleetKeyFile, ['ML-DSA-65'])).publicKey;
    } catch (err) {
      if (err instanceof KeyFileError) throw new CliError(`audit: --fleet-key: ${err.message}`, 2);
      throw err;
    }
    const ca = optionalString(args, 'ca');
    let pem: Buffer | undefined;
    try {
      pem = ca === undefined ? undefined : await fs.readFile(ca);
    } catch (err) {
      throw new CliError(`audit: --ca ${ca}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, 2);
    }
    // node:http(s) with a response cap (common/http-client.ts), pinned when --ca is given.
    const client = new RelayClient({ baseUrl: url, ...(pem !== undefined ? { ca: pem } : {}) });
    const stateDir = optionalString(args, 'state');
    const origin = optionalString(args, 'origin');
    const newEpoch = optionalString(args, 'new-epoch') ?? 'accept';
    if (newEpoch !== 'accept' && newEpoch !== 'refuse') throw new CliError(`audit: --new-epoch must be accept or refuse, not ${JSON.stringify(newEpoch)}`, 2);
    try {
      const result = await runAudit({
        client, relayPublicKey: relayKey.publicKey, full: args.values.full === true, newEpoch,
        ...(stateDir !== undefined ? { stateDir } : {}), ...(origin !== undefined ? { origin } : {}), ...(fleetPublicKey !== undefined ? { fleetPublicKey } : {}),
      });
      const forged = result.fleet?.forged ?? [];
      if (forged.length > 0) {
        const what = `FORGED APPROVAL: ${forged.length} registration(s) in the signed log carry a fleet approval the fleet key did not sign (first: leaf ${forged[0]!.leafIndex}, ${forged[0]!.did})`;
        logger.error({ reason: 'forged_approval', forged: forged.slice(0, 100) }, what);
        throw new CliError(`audit: ${what}`, 1);
      }
      const forgedReceipts = result.receipts?.forged ?? [];
      if (forgedReceipts.length > 0) {
        const what = `FORGED RECEIPT: ${forgedReceipts.length} install receipt(s) in the signed log do not verify with their device's key (first: leaf ${forgedReceipts[0]!.leafIndex}, ${forgedReceipts[0]!.did})`;
        logger.error({ reason: 'forged_receipt', forged: forgedReceipts.slice(0, 100) }, what);
        throw new CliError(`audit: ${what}`, 1);
      }
      if (result.receipts && result.receipts.unverifiable > 0) logger.warn({ unverifiable: result.receipts.unverifiable }, `${result.receipts.unverifiable} install receipt(s) of devices registered without a fleet approval: their key is not in the log, so these receipts are not checked`);
      if (result.fleet && result.fleet.unapproved.length > 0) logger.warn({ unapproved: result.fleet.unapproved.slice(0, 100) }, `${result.fleet.unapproved.length} device(s) registered without a fleet approval: receivers in enrolled mode refuse them`);
      if (result.newEpoch) logger.warn({ from: result.newEpoch.from, to: result.newEpoch.to, previousSize: result.newEpoch.previousSize }, 'the relay started a new log epoch (same pinned key); the last checkpoint of the old one is kept in the state');
      logger.info({ ...result, full: args.values.full === true || fleetPublicKey !== undefined }, result.previousSize === result.size ? 'log consistent (unchanged)' : 'log consistent');
      return 0;
    } catch (err) {
      if (err instanceof LogIntegrityError) {
        const what = WHAT[err.code] ?? err.code;
        logger.error({ reason: err.code }, `${what}: ${err.message}`);
        throw new CliError(`audit: ${what}: ${err.message}`, 1);
      }
      if (err instanceof RelayError) throw new CliError(`audit: relay: ${err.message}`, 5);
      throw err;
    }
  },
};
