import { CliError, optionalString, type Command } from '../command.js';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { enrollDevice } from '../../agent/enroll.js';
import { relayClientOptions } from '../../agent/config.js';
import { readApprovalFile } from '../../common/approval-file.js';
import { AgentState } from '../../agent/state.js';
import { DEFAULT_AGENT_CONFIG, loadAgentOrExit } from './agent.js';

export const enroll: Command = {
  name: 'enroll',
  summary: 'Register this device (its DID and public keys) with the relay, once',
  usage: [
    `Usage: ghostpipe enroll [--config ${DEFAULT_AGENT_CONFIG}] [--approval FILE]`,
    '',
    'Asks the relay for a challenge, signs it with the device key (proof of possession) and',
    'registers the device (POST /v2/did/register) with the API key from the config. Records the',
    'enrollment in the agent state directory. Enrolling again with the same key is harmless.',
    'The relay also encapsulates a challenge to the X-Wing key; decapsulating it proves that key.',
    '',
    '  --approval FILE  the fleet approval of this device (`ghostpipe device approve`); needed when',
    '                   the relay or the receivers pin a fleet key (docs/PROTOCOL.md "Fleet enrollment")',
  ].join('\n'),
  options: { config: { type: 'string', short: 'c' }, approval: { type: 'string' } },
  async run(args) {
    const file = optionalString(args, 'config') ?? DEFAULT_AGENT_CONFIG;
    const loaded = await loadAgentOrExit('enroll', file, (message) => process.stderr.write(`warning: ${message}\n`));
    const { config, secrets } = loaded;
    const client = new RelayClient(relayClientOptions(config, secrets));
    const approvalFile = optionalString(args, 'approval');
    let approval;
    if (approvalFile !== undefined) {
      try {
        approval = await readApprovalFile(approvalFile);
      } catch (err) {
        throw new CliError(`enroll: ${(err as Error).message}`, 2);
      }
      if (approval.statementFields.did !== secrets.device.did) throw new CliError(`enroll: ${approvalFile} approves ${approval.statementFields.did}, not this device (${secrets.device.did})`, 2);
    }
    let result;
    try {
      result = await enrollDevice(client, secrets.device, approval ? { statement: approval.statement, signature: approval.signature } : undefined);
    } catch (err) {
      if (err instanceof RelayError) throw new CliError(`enroll: the relay refused: ${err.message} (${err.code})`, 1);
      throw err;
    }
    new AgentState(config.stateDir).recordEnrollment({ did: result.did, relay: config.relay.url, leafIndex: result.leafIndex });
    process.stdout.write(`enrolled ${result.did} with ${config.relay.url} (log leaf ${result.leafIndex})\n`);
    return 0;
  },
};
