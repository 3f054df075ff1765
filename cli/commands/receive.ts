import { CliError, requireString, type Command } from '../command.js';
import { ConfigError } from '../../common/schema.js';
import { createLogger } from '../../common/log.js';
import { loadReceiverConfig } from '../../receiver/config.js';
import { TransportError } from '../../common/transport.js';
import { SetupError, StartAborted, startReceiver } from '../../receiver/index.js';
import path from 'node:path';
import { LogIntegrityError } from '../../common/log-trust.js';
import { saveEvidence } from '../../receiver/state.js';
import { StateFileError } from '../../common/state-errors.js';
import { SinkError } from '../../receiver/sinks/sink.js';
import { refusesReceiver } from '../../receiver/receiver.js';
import { RelayError } from '../../common/relay-client.js';
import { KeyFileError } from '../../common/keyfile.js';
import { EXIT_STATE_BAD, EXIT_STATE_IO } from '../../common/state-errors.js';

export const receive: Command = {
  name: 'receive',
  summary: 'Run the IT-side receiver: lease, verify (signature, log, replay), open, deliver to sinks, ack',
  usage: [
    'Usage: ghostpipe receive --config config/receiver.yaml',
    '',
    'Every setting is documented in config/receiver.example.yaml; behaviour in docs/RECEIVER.md.',
    'Readings go to the configured sinks (default: JSON lines on stdout; logs then go to stderr).',
    'Exit codes: 0 stopped by SIGTERM/SIGINT, 1 setup failure, 2 bad config or usage,',
    '3 the relay signed conflicting log history (fork, rollback; evidence in STATE/evidence/),',
    '4 the relay refuses the API key,',
    '65 a state file is damaged, 74 a state or sink file could not be read or written (docs/RELIABILITY.md).',
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
    // Installed before the start: it may wait (with backoff) for a relay answer that verifies.
    const starting = new AbortController();
    let onSignal = (signal: string) => {
      logger.info({ signal }, 'signal received while starting; stopping');
      starting.abort();
    };
    const signalListener = (signal: NodeJS.Signals) => onSignal(signal);
    process.once('SIGTERM', signalListener);
    process.once('SIGINT', signalListener);
    try {
      running = await startReceiver(config, logger, starting.signal);
    } catch (err) {
      if (err instanceof StartAborted) return 0;
      if (err instanceof LogIntegrityError) {
        let evidence: string | undefined;
        if (err.evidence) evidence = await saveEvidence(path.resolve(config.stateDir), err.code, err.evidence, err.message).catch(() => undefined);
        logger.fatal({ reason: err.code, evidence }, err.message);
        throw new CliError(`receive: transparency log check failed (${err.code}): ${err.message}`, 3);
      }
      if (err instanceof StateFileError) throw new CliError(`receive: cannot start: state file ${err.message}`, err.exitCode);
      if (err instanceof SinkError && err.localFailure) throw new CliError(`receive: cannot start: ${err.message}`, err.localFailure.exitCode);
      if (err instanceof SetupError || err instanceof SinkError || err instanceof KeyFileError || err instanceof RelayError) {
        throw new CliError(`receive: cannot start: ${err.message}`, err instanceof RelayError && refusesReceiver(err) ? 4 : 1);
      }
      throw err;
    }
    const { receiver } = running;
    onSignal = (signal: string) => {
      logger.info({ signal }, 'signal received; finishing the current envelope');
      receiver.stop();
    };
    if (starting.signal.aborted) receiver.stop(); // the signal came as the start finished
    let code = await receiver.run();
    try {
      await running.close();
    } catch (err) {
      // Closing compacts the replay state: on a full disk that fails too; the journal on disk still holds every delivery.
      if (!(err instanceof StateFileError)) throw err;
      logger.error({ exitCode: err.exitCode }, `${err.message} (while stopping)`);
      if (code === 0) code = err.exitCode;
    }
    logger.info(receiver.status(), 'receiver stopped');
    if (code === EXIT_STATE_BAD || code === EXIT_STATE_IO) process.stderr.write(`ghostpipe: receive: stopped: ${receiver.stoppedBy ?? 'a state file could not be written'}\n`);
    return code;
  },
};
