import { CliError, requireString, type Command } from '../command.js';
import { ConfigError } from '../../common/schema.js';
import { createLogger } from '../../common/log.js';
import { loadReceiverConfig, TransportError } from '../../receiver/config.js';
import { SetupError, startReceiver } from '../../receiver/index.js';
import { LogIntegrityError } from '../../receiver/log-trust.js';
import { StateError } from '../../receiver/state.js';
import { SinkError } from '../../receiver/sinks/sink.js';
import { RelayError } from '../../relay/client.js';
import { KeyFileError } from '../../common/keyfile.js';

export const receive: Command = {
  name: 'receive',
  summary: 'Run the IT-side receiver: lease, verify (signature, log, replay), open, deliver to sinks, ack',
  usage: [
    'Usage: ghostpipe receive --config config/receiver.yaml',
    '',
    'Every setting is documented in config/receiver.example.yaml; behaviour in docs/RECEIVER.md.',
    'Readings go to the configured sinks (default: JSON lines on stdout; logs then go to stderr).',
    'Exit codes: 0 stopped by SIGTERM/SIGINT, 1 setup failure, 2 bad config or usage,',
    '3 transparency log fork/rollback/bad checkpoint signature, 4 the relay refuses the API key.',
  ].join('\n'),
  options: { config: { type: 'string', short: 'c' } },
  async run(args) {
    const file = requireString(args, 'config', 'receive');
    let config;
    try {
      config = loadReceiverConfig(file);
    } catch (err) {
      if (err instanceof ConfigError || err instanceof TransportError) throw new CliError(`receive: invalid config\n${err.message}`, 2);
      throw err;
    }
    const toStderr = config.sinks.some((s) => s.type === 'stdout');
    const logger = createLogger('receiver', config.logLevel, toStderr ? process.stderr : process.stdout);
    let running;
    try {
      running = await startReceiver(config, logger);
    } catch (err) {
      if (err instanceof LogIntegrityError) {
        logger.fatal({ reason: err.code }, err.message);
        throw new CliError(`receive: transparency log check failed (${err.code}): ${err.message}`, 3);
      }
      if (err instanceof SetupError || err instanceof StateError || err instanceof SinkError || err instanceof KeyFileError || err instanceof RelayError) {
        throw new CliError(`receive: cannot start: ${err.message}`, err instanceof RelayError && (err.status === 401 || err.status === 403) ? 4 : 1);
      }
      throw err;
    }
    const { receiver } = running;
    const onSignal = (signal: string) => {
      logger.info({ signal }, 'signal received; finishing the current envelope');
      receiver.stop();
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    const code = await receiver.run();
    await running.close();
    logger.info({ ...receiver.counts, refusals: receiver.refusals }, 'receiver stopped');
    return code;
  },
};
