/** The relay client of the operator commands (keys, device renew): relay URL and operator key from options or environment. */
import { readFileSync } from 'node:fs';
import { CliError, optionalString, type ParsedArgs } from './command.js';
import { RelayClient } from '../common/relay-client.js';

export const DEFAULT_RELAY = 'http://127.0.0.1:8787';
export const DEFAULT_OPERATOR_KEY_FILE = './.ghostpipe/operator.key';

export const OPERATOR_OPTIONS = {
  relay: { type: 'string' },
  'operator-key-file': { type: 'string' },
} as const;

export const OPERATOR_USAGE = [
  '  --relay URL               relay base URL (default $GHOSTPIPE_RELAY_URL or ' + DEFAULT_RELAY + ')',
  '  --operator-key-file FILE  operator key (plk_…) file (default $GHOSTPIPE_OPERATOR_KEY or ' + DEFAULT_OPERATOR_KEY_FILE + ')',
];

export function operatorKey(args: ParsedArgs, command: string): string {
  const fromEnv = process.env['GHOSTPIPE_OPERATOR_KEY'];
  if (fromEnv && optionalString(args, 'operator-key-file') === undefined) return fromEnv.trim();
  const file = optionalString(args, 'operator-key-file') ?? DEFAULT_OPERATOR_KEY_FILE;
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new CliError(`${command}: cannot read the operator key from ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (use --operator-key-file or GHOSTPIPE_OPERATOR_KEY)`);
  }
}

/** --relay, else $GHOSTPIPE_RELAY_URL, else the local default. */
export function relayUrl(args: ParsedArgs): string {
  return optionalString(args, 'relay') ?? process.env['GHOSTPIPE_RELAY_URL'] ?? DEFAULT_RELAY;
}

export function operatorClient(args: ParsedArgs, command: string): RelayClient {
  return new RelayClient({ baseUrl: relayUrl(args), apiKey: operatorKey(args, command) });
}
