import { CliError, type Command } from '../command.js';
import { RelayError } from '../../common/relay-client.js';
import { operatorClient, OPERATOR_OPTIONS, OPERATOR_USAGE } from '../operator-client.js';

export const groups: Command = {
  name: 'groups',
  summary: 'Add devices to, or remove them from, the device groups firmware rollouts target',
  usage: [
    'Usage: ghostpipe groups add GROUP DID [DID …] [--relay URL] [--operator-key-file FILE]',
    '       ghostpipe groups remove GROUP DID [DID …]',
    '       ghostpipe groups list [--json]',
    '',
    'A firmware manifest names one group; `ghostpipe firmware publish` targets its enrolled members.',
    'Membership is kept in the relay\'s control-plane state and every change is audited.',
    '  --json   list: the relay\'s answer as JSON',
    ...OPERATOR_USAGE,
  ].join('\n'),
  options: { json: { type: 'boolean' }, ...OPERATOR_OPTIONS },
  async run(args) {
    const [action, group, ...dids] = args.positionals;
    if (action !== 'add' && action !== 'remove' && action !== 'list') throw new CliError(`groups: unknown action ${JSON.stringify(action ?? '')}; use add, remove or list`, 2);
    if (action !== 'list' && (group === undefined || dids.length === 0)) throw new CliError(`groups ${action}: a GROUP and at least one DID are required`, 2);
    const client = operatorClient(args, 'groups');
    try {
      if (action === 'list') {
        const body = await client.groups();
        if (args.values.json) process.stdout.write(JSON.stringify(body, null, 2) + '\n');
        else for (const [name, members] of Object.entries(body.groups).sort()) process.stdout.write(`${name}\t${members.length} devices\n${members.map((d) => `  ${d}\n`).join('')}`);
        return 0;
      }
      for (const did of dids) {
        await client.setGroup(group!, did, action === 'add');
        process.stdout.write(`${action === 'add' ? 'added' : 'removed'} ${did} ${action === 'add' ? 'to' : 'from'} ${group}\n`);
      }
      return 0;
    } catch (err) {
      if (err instanceof RelayError) throw new CliError(`groups ${action}: ${err.message} (${err.code})`);
      throw err;
    }
  },
};
