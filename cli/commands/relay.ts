import { CliError, optionalString, type Command } from '../command.js';

export const relay: Command = {
  name: 'relay',
  summary: 'Run the RAM-only relay (ciphertext in memory only, transparency log, API keys)',
  usage: [
    'Usage: ghostpipe relay [--config config/relay.yaml]',
    '',
    'Without --config: listens on 127.0.0.1:8787, state directory ./.ghostpipe/relay.',
    'Every setting is documented in config/relay.example.yaml; the API in docs/API.md.',
    'First start creates the relay signing key and one operator key (plk_…) in the state',
    'directory (0600) and logs where they are. SIGTERM/SIGINT: stop accepting, finish in-flight',
    'requests, burn every held envelope, exit 0.',
  ].join('\n'),
  options: { config: { type: 'string', short: 'c' } },
  async run(args) {
    // Loaded here, not at the top: other commands should not pay for the relay's modules.
    const [{ ConfigError }, { createLogger }, { loadRelayConfig }, { startRelay }] = await Promise.all([
      import('../../common/schema.js'), import('../../common/log.js'), import('../../relay/config.js'), import('../../relay/relay.js'),
    ]);
    let config;
    try {
      config = await loadRelayConfig(optionalString(args, 'config'));
    } catch (err) {
      if (err instanceof ConfigError) throw new CliError(`relay: invalid config\n${err.message}`, 2);
      throw err;
    }
    const logger = createLogger('relay', config.logLevel);
    let running;
    try {
      running = await startRelay(config, logger);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new CliError(`relay: cannot start: ${code === 'EADDRINUSE' ? 'address already in use' : (err as Error).message}`);
    }
    const relayRunning = running;
    return new Promise<number>((resolve) => {
      const onSignal = (signal: string) => {
        logger.info({ signal }, 'signal received');
        relayRunning.stop().then(() => resolve(0), (err: unknown) => {
          logger.error({ err: (err as Error).message }, 'shutdown failed');
          resolve(1);
        });
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    });
  },
};
