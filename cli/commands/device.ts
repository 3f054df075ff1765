import { writeFile } from 'node:fs/promises';
import { CliError, optionalString, requireString, type Command, type ParsedArgs } from '../command.js';
import { approvalFileText, readApprovalFile } from '../../common/approval-file.js';
import { RelayError } from '../../common/relay-client.js';
import { operatorClient, OPERATOR_OPTIONS, OPERATOR_USAGE } from '../operator-client.js';
import { DurationError, parseDuration } from '../../common/duration.js';
import { loadPublicKey, loadSigningKey } from '../../common/keyfile.js';
import { didFromSigningKey } from '../../protocol/did.js';
import { encodeEnrollmentStatement, FleetStatementError, signEnrollmentStatement } from '../../protocol/enrollment.js';

const DEFAULT_VALIDITY = '730d';

export const device: Command = {
  name: 'device',
  summary: 'Approve a device with the offline fleet key, and renew an enrolled device\'s approval',
  usage: [
    'Usage: ghostpipe device approve --fleet-key FILE --sign-pub FILE --kem-pub FILE --api-key-id ID --out FILE [--valid DURATION]',
    '       ghostpipe device renew --approval FILE [--relay URL] [--operator-key-file FILE]',
    '',
    'Signs a fleet enrollment statement (docs/PROTOCOL.md "Fleet enrollment") for one device: its DID,',
    'its ML-DSA-65 and X-Wing public keys, the device API key it registers with, and a validity',
    'period from now. The device registers with it (`ghostpipe enroll --approval FILE`); relays with',
    '`fleetPublicKey` and receivers with `trust.fleetPublicKey` accept only approved devices.',
    'Run it where the fleet key lives (offline); the output holds no secret.',
    '',
    'Options:',
    '  --fleet-key FILE   the fleet private key (NAME.sign.key from `ghostpipe keygen --type fleet`)',
    '  --sign-pub FILE    the device ML-DSA-65 public key (NAME.sign.pub)',
    '  --kem-pub FILE     the device X-Wing public key (NAME.kem.pub)',
    '  --api-key-id ID    the 12 hex digits of the device API key (pgp_<ID>…, `ghostpipe keys list`)',
    `  --valid DURATION   how long the approval holds (default ${DEFAULT_VALIDITY}); receivers refuse the device after it`,
    '  --out FILE         where to write the approval (JSON; refuses to overwrite without --force)',
    '  --force            replace FILE',
    '',
    '`renew` gives an enrolled device a new approval (made with `approve` for the same keys and API',
    'key, lasting longer than the current one) before or after the current one runs out; the relay',
    'logs it and receivers accept the device again at their next lookup. Nothing to do on the gateway.',
    '  --approval FILE    the new approval (from `ghostpipe device approve`)',
    ...OPERATOR_USAGE,
  ].join('\n'),
  options: {
    'fleet-key': { type: 'string' },
    'sign-pub': { type: 'string' },
    'kem-pub': { type: 'string' },
    'api-key-id': { type: 'string' },
    valid: { type: 'string' },
    out: { type: 'string' },
    force: { type: 'boolean' },
    approval: { type: 'string' },
    ...OPERATOR_OPTIONS,
  },
  async run(args) {
    const [action] = args.positionals;
    if (action === 'renew') return renew(args);
    if (action !== 'approve') throw new CliError(`device: unknown action ${JSON.stringify(action ?? '')}; use approve or renew (ghostpipe device --help)`, 2);
    const apiKeyId = requireString(args, 'api-key-id', 'device approve').toLowerCase();
    if (!/^[0-9a-f]{12}$/.test(apiKeyId)) throw new CliError(`device approve: --api-key-id must be the 12 hex digits after pgp_ (see \`ghostpipe keys list\`), got "${apiKeyId}"`, 2);
    let validMs: number;
    try {
      validMs = parseDuration(optionalString(args, 'valid') ?? DEFAULT_VALIDITY);
    } catch (err) {
      if (err instanceof DurationError) throw new CliError(`device approve: --valid: ${err.message}`, 2);
      throw err;
    }
    if (validMs <= 0) throw new CliError('device approve: --valid must be longer than 0', 2);
    const out = requireString(args, 'out', 'device approve');
    let fleet, signing, kem;
    try {
      fleet = await loadSigningKey(requireString(args, 'fleet-key', 'device approve'), (warning) => process.stderr.write(`warning: ${warning}\n`));
      signing = await loadPublicKey(requireString(args, 'sign-pub', 'device approve'), ['ML-DSA-65']);
      kem = await loadPublicKey(requireString(args, 'kem-pub', 'device approve'), ['X-Wing']);
    } catch (err) {
      // A missing or unreadable file, or a key of the wrong kind: the message names the file.
      throw new CliError(`device approve: ${(err as Error).message}`, 2);
    }
    const now = Date.now();
    const fields = {
      did: didFromSigningKey(signing.publicKey), signingPublicKey: signing.publicKey, kemAlg: 'X-Wing' as const, kemPublicKey: kem.publicKey,
      apiKeyId, notBefore: now, notAfter: now + validMs,
    };
    let statement, signature;
    try {
      statement = encodeEnrollmentStatement(fields);
      signature = signEnrollmentStatement(fleet.seed, statement);
    } catch (err) {
      if (err instanceof FleetStatementError) throw new CliError(`device approve: ${err.message}`, 2);
      throw err;
    } finally {
      fleet.seed.fill(0);
    }
    try {
      await writeFile(out, approvalFileText(fields, { statement, signature }, fleet.publicKey), { flag: args.values.force ? 'w' : 'wx', mode: 0o644 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new CliError(`device approve: ${out} exists (pass --force to replace it)`);
      throw new CliError(`device approve: cannot write ${out}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    process.stdout.write(`approved ${fields.did} for API key ${apiKeyId} until ${new Date(fields.notAfter).toISOString()}; wrote ${out}\n`);
    return 0;
  },
};

async function renew(args: ParsedArgs): Promise<number> {
  const file = requireString(args, 'approval', 'device renew');
  let approval;
  try {
    approval = await readApprovalFile(file);
  } catch (err) {
    throw new CliError(`device renew: ${(err as Error).message}`, 2);
  }
  const { did } = approval.statementFields;
  try {
    const record = await operatorClient(args, 'device renew').renewApproval(did, approval);
    process.stdout.write(`renewed ${did}: approved until ${new Date(approval.statementFields.notAfter).toISOString()}, log leaf ${record.leafIndex}\n`);
    return 0;
  } catch (err) {
    if (err instanceof RelayError) throw new CliError(`device renew: ${err.message} (${err.code})`);
    throw err;
  }
}
