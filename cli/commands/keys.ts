import { CliError, requireString, type Command, type ParsedArgs } from '../command.js';
import { RelayError } from '../../common/relay-client.js';
import { operatorClient, OPERATOR_OPTIONS, OPERATOR_USAGE } from '../operator-client.js';

function asList(value: ParsedArgs['values'][string]): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String).flatMap((v) => v.split(',')).map((v) => v.trim().toLowerCase()).filter(Boolean);
}

export const keys: Command = {
  name: 'keys',
  summary: 'Issue, list, revoke and purge relay API keys (against a running relay)',
  usage: [
    'Usage: ghostpipe keys issue --role device|receiver --plan PLAN --label TEXT [--recipient KEYID ...]',
    '       ghostpipe keys list',
    '       ghostpipe keys revoke ID',
    '       ghostpipe keys purge ID',
    '',
    'Options:',
    ...OPERATOR_USAGE,
    '  --role R                  device (uploads; bound to one device at enrollment) or receiver (reads)',
    '  --plan P                  free, pro, enterprise, or a plan from the relay config (a site gateway: pro)',
    '  --label TEXT              a name for humans, shown in lists and the audit trail',
    '  --recipient KEYID         receiver only: recipient key id (64 hex) it may read; repeat or comma-separate',
    '  --json                    print JSON',
    '',
    '`issue` prints the new key once; the relay keeps only its hash. `list` shows keys masked.',
    '`purge` burns every envelope the key uploaded that the relay still holds (audited); to stop a',
    'flooding device, revoke its key, then purge it.',
  ].join('\n'),
  options: {
    ...OPERATOR_OPTIONS,
    role: { type: 'string' },
    plan: { type: 'string' },
    label: { type: 'string' },
    recipient: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  },
  async run(args) {
    const [action, ...rest] = args.positionals;
    const client = operatorClient(args, 'keys');
    const json = args.values.json === true;
    const print = (value: unknown, text: string) => process.stdout.write((json ? JSON.stringify(value, null, 2) : text) + '\n');
    try {
      switch (action) {
        case 'issue': {
          const role = requireString(args, 'role', 'keys issue');
          if (role !== 'device' && role !== 'receiver') throw new CliError('keys issue: --role must be device or receiver', 2);
          const recipients = asList(args.values['recipient']);
          const issued = await client.createKey({
            role, plan: requireString(args, 'plan', 'keys issue'), label: requireString(args, 'label', 'keys issue'),
            ...(recipients.length > 0 ? { recipients } : {}),
          });
          print(issued, `${issued.key}\n# id ${issued.id}, role ${issued.role}, plan ${issued.plan}, label "${issued.label}" — store this key now; it is not shown again`);
          return 0;
        }
        case 'list': {
          const list = await client.listKeys();
          const lines = list.map((k) => [k.id, k.masked, k.role, k.plan, k.revoked ? 'revoked' : 'active', k.usage ? `${k.usage.transfers}/${k.usage.quota || '∞'}` : '-', k.did ?? '-', JSON.stringify(k.label)].join('\t'));
          print(list, ['ID\tKEY\tROLE\tPLAN\tSTATE\tUSAGE\tDID\tLABEL', ...lines].join('\n'));
          return 0;
        }
        case 'revoke': {
          const id = rest[0];
          if (!id) throw new CliError('keys revoke: give the key id (see `ghostpipe keys list`)', 2);
          const result = await client.revokeKey(id);
          print(result, `revoked ${result.id}`);
          return 0;
        }
        case 'purge': {
          const id = rest[0];
          if (!id) throw new CliError('keys purge: give the key id (see `ghostpipe keys list`)', 2);
          const result = await client.purgeKey(id);
          print(result, `purged ${result.id}: ${result.envelopes} envelopes, ${result.bytes} bytes burned`);
          return 0;
        }
        default:
          throw new CliError(`keys: unknown action ${JSON.stringify(action ?? '')}; use issue, list, revoke or purge\n\n${keys.usage}`, 2);
      }
    } catch (err) {
      if (err instanceof RelayError) throw new CliError(`keys ${action}: ${err.message} (${err.code})`);
      throw err;
    }
  },
};
