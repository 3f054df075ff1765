import { CliError, optionalString, type Command } from '../command.js';

export const relay: Command = {
  name: 'relay',
  summary: 'Run the RAM-only relay (ciphertext in memory only, transparency log, API keys)',
  usage: [
    'Usage: ghostpipe relay [--config config/relay.yaml]',
    '       ghostpipe relay [--config config/relay.yaml] --reset-operator-key FILE',
    '',
    'Without --config: listens on 127.0.0.1:8787, state directory ./.ghostpipe/relay.',
    'Every setting is documented in config/relay.example.yaml; the API in docs/API.md.',
    'First start creates the relay signing key in the state directory and one operator key',
    '(plk_…) in operatorKeyFile (default ./.ghostpipe/operator.key, next to the state directory,',
    'never in it; 0600) and logs where they are. Move the operator key off the relay host.',
    '--reset-operator-key FILE: with the relay stopped, revokes every operator key and writes a new',
    'one to FILE (0600); audited as operator_key_reset. For a lost operator key (docs/RELAY.md). SIGTERM/SIGINT: stop accepting, finish in-flight',
    'requests, burn every held envelope, exit 0. Exit codes: 1 cannot start, 2 bad config, 65 a state',
    'file is damaged, 74 a state file could not be read or written (docs/RELIABILITY.md).',
  ].join('\n'),
  options: { config: { type: 'string', short: 'c' }, 'reset-operator-key': { type: 'string' } },
  async run(args) {
    // Loaded here, not at the top: other commands should not pay for the relay's modules.
    const [{ ConfigError }, { createLogger }, { loadRelayConfig }, { startRelay }, { StateFileError, stateFailureExitCode, stateFailureMessage, stateExitCode, EXIT_STATE_BAD, EXIT_STATE_IO }, { KeyFileError }, { LogStartError, LogCorruptError }, { LogStoreError }] = await Promise.all([
      import('../../common/schema.js'), import('../../common/log.js'), import('../../relay/config.js'), import('../../relay/relay.js'),
      import('../../common/state-errors.js'), import('../../common/keyfile.js'), import('../../relay/log.js'), import('../../relay/log-store.js'),
    ]);
    let config;
    try {
      config = await loadRelayConfig(optionalString(args, 'config'));
    } catch (err) {
      if (err instanceof ConfigError) throw new CliError(`relay: invalid config\n${err.message}`, 2);
      throw err;
    }
    const logger = createLogger('relay', config.logLevel);
    const resetTo = optionalString(args, 'reset-operator-key');
    if (resetTo !== undefined) {
      if (config.ramOnly && config.identityDir === undefined) throw new CliError('relay: --reset-operator-key needs a state directory or an identityDir: a RAM-only relay without one keeps no keys to reset', 2);
      const { RelayState } = await import('../../relay/state.js');
      let state;
      try {
        state = await RelayState.open(config, logger);
      } catch (err) {
        throw new CliError(`relay: cannot open the state to reset the operator key: ${(err as Error).message}`, 1);
      }
      const reset = await state.resetOperatorKey(resetTo);
      await state.close();
      process.stdout.write(`wrote a new operator key (id ${reset.id}) to ${resetTo}; revoked ${reset.revoked.length > 0 ? reset.revoked.join(', ') : 'no key'}\n`);
      return 0;
    }
    // Handlers go in before the start, not after "relay listening": a SIGTERM in between (a unit
    // stopped while the log recovers, a test stopping a relay it just saw listening) must end in
    // the clean stop below, not in node's default action. During the start it is remembered.
    let signalled: string | undefined;
    let onSignal = (signal: string): void => {
      signalled = signal;
    };
    const handler = (signal: string) => onSignal(signal);
    process.once('SIGTERM', handler);
    process.once('SIGINT', handler);
    let running;
    try {
      running = await startRelay(config, logger);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Broken state files: 65 (damaged, not a file) or 74 (I/O failure), as docs/RELIABILITY.md lists.
      let exitCode = 1;
      if (err instanceof StateFileError) exitCode = err.exitCode;
      else if (err instanceof KeyFileError) exitCode = err.code === 'write_failed' || err.code === 'unreadable' ? EXIT_STATE_IO : EXIT_STATE_BAD;
      else if (err instanceof LogStartError || err instanceof LogCorruptError) exitCode = EXIT_STATE_BAD;
      else if (err instanceof LogStoreError) exitCode = stateExitCode(err.cause);
      throw new CliError(`relay: cannot start: ${code === 'EADDRINUSE' ? 'address already in use' : (err as Error).message}`, exitCode);
    }
    const relayRunning = running;
    return new Promise<number>((resolve) => {
      onSignal = (signal: string) => {
        logger.info({ signal }, 'signal received');
        // After stopForStateFailure() the stop itself may fail on the same disk: the code is 74 either way.
        const finish = (code: number) => {
          const failed = stateFailureExitCode();
          if (failed !== undefined) process.stderr.write(`ghostpipe: relay: stopped: ${stateFailureMessage()}\n`);
          resolve(failed ?? code);
        };
        relayRunning.stop().then(() => finish(0), (err: unknown) => {
          logger.error({ err: (err as Error).message }, 'shutdown failed');
          finish(1);
        });
      };
      if (signalled !== undefined) onSignal(signalled);
    });
  },
};
