import { CliError, optionalString, type Command } from '../command.js';
import { ConfigError } from '../../common/schema.js';
import { createLogger, type Logger } from '../../common/log.js';
import { loadAgentConfig, loadAgentSecrets, type AgentConfig, type AgentSecrets } from '../../agent/config.js';
import { Agent } from '../../agent/agent.js';
import { AgentState, AgentStateError } from '../../agent/state.js';
import { StateFileError } from '../../common/state-errors.js';

export const DEFAULT_AGENT_CONFIG = '/etc/ghostpipe/agent.yaml';

/** Config plus the files it names; ConfigError lines name file:line:column and path. */
export async function loadAgent(file: string, onWarning: (message: string) => void): Promise<{ config: AgentConfig; secrets: AgentSecrets }> {
  const { config, source } = loadAgentConfig(file);
  const secrets = await loadAgentSecrets(config, source, onWarning);
  return { config, secrets };
}

/** loadAgent for a command start: an invalid config is a one-line-per-issue CliError, exit 1. */
export async function loadAgentOrExit(command: string, file: string, onWarning: (message: string) => void): Promise<{ config: AgentConfig; secrets: AgentSecrets }> {
  try {
    return await loadAgent(file, onWarning);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(`${command}: invalid config\n${err.message}`, 1);
    throw err;
  }
}

function countPoints(config: AgentConfig): number {
  return config.taps.reduce((n, tap) => n + tap.points.length, 0);
}

export const agent: Command = {
  name: 'agent',
  summary: 'Run the edge agent: poll the taps, seal one frame per interval, push it to the relay',
  usage: [
    `Usage: ghostpipe agent [--config ${DEFAULT_AGENT_CONFIG}] [--check]`,
    '',
    '  --config FILE  the agent config (every setting: config/agent.example.yaml, docs/AGENT.md)',
    '  --check        validate the config and the files it names, touch no sensor, exit 0 (valid) or 1',
    '',
    'Signals: SIGHUP reloads the config (a bad one is reported and the running one kept);',
    'SIGTERM/SIGINT finish the current interval, flush to the relay for a few seconds, exit 0.',
  ].join('\n'),
  options: { config: { type: 'string', short: 'c' }, check: { type: 'boolean' } },
  async run(args) {
    const file = optionalString(args, 'config') ?? DEFAULT_AGENT_CONFIG;
    // --check prints warnings at once, so they show also when the config then fails; the daemon
    // logs them once its logger exists.
    const warnings: string[] = [];
    const { config, secrets } = await loadAgentOrExit('agent', file, (message) => (args.values.check ? process.stderr.write(`warning: ${message}\n`) : warnings.push(message)));
    if (args.values.check) {
      const fw = config.firmware && secrets.firmware ? `, firmware for group ${config.firmware.group} (root v${secrets.firmware.root.root.version}, ${secrets.firmware.root.root.threshold} of ${secrets.firmware.root.root.keys.length} keys)` : '';
      process.stdout.write(`${file}: config OK: ${config.taps.length} taps, ${countPoints(config)} points, ${secrets.recipients.length} recipients, device ${secrets.device.did}${fw}\n`);
      return 0;
    }
    const logger = createLogger('agent', config.logLevel);
    for (const w of warnings) logger.warn(w);
    exitOnUnhandledRejection(logger);
    let running: Agent;
    try {
      running = new Agent({ config, secrets, logger });
    } catch (err) {
      if (err instanceof AgentStateError) throw new CliError(`agent: ${err.message}`, err.exitCode);
      throw err;
    }
    // Signals are handled from here on, queued behind the start: a SIGHUP during a slow start
    // (an unreachable relay) must not kill the process, which is SIGHUP's default action.
    const started = running.start();
    const lifecycle = handleSignals(running, started, file, logger);
    try {
      await started;
    } catch (err) {
      lifecycle.dispose();
      if (err instanceof AgentStateError || err instanceof StateFileError) throw new CliError(`agent: ${err.message}`, err.exitCode);
      throw err;
    }
    // A state write that fails while running (full disk): stop like SIGTERM (flush what is sealed,
    // its numbers are inside the saved reservation), then exit 74 instead of 0.
    AgentState.onWriteFailure = (err) => {
      if (fatalExitCode !== undefined) return;
      fatalExitCode = err.exitCode;
      logger.fatal({ exitCode: err.exitCode }, err.message);
      process.stderr.write(`ghostpipe: agent: ${err.message}\n`);
      process.kill(process.pid, 'SIGTERM');
    };
    return lifecycle.stopped;
  },
};

/** EX_SOFTWARE: the agent hit a bug; systemd (Restart=always) starts it again. */
const EXIT_FATAL = 70;

/** Set when the agent stops because its state could not be written (docs/RELIABILITY.md). */
let fatalExitCode: number | undefined;

/** Last resort: a promise rejection nobody handled is a bug; log it at fatal and exit non-zero. */
function exitOnUnhandledRejection(logger: Logger): void {
  if (process.listenerCount('unhandledRejection') > 0) return;
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: reason instanceof Error ? reason.message : String(reason) }, 'unhandled promise rejection; exiting so systemd restarts the agent');
    process.exit(EXIT_FATAL);
  });
}

/** SIGHUP: reload the config file. A bad file, or taps that cannot be created, keep the running config. */
async function reloadFrom(running: Agent, file: string, logger: Logger): Promise<void> {
  logger.info({ file }, 'SIGHUP: reloading the config');
  let next;
  try {
    next = await loadAgent(file, (message) => logger.warn(message));
  } catch (err) {
    const lines = err instanceof ConfigError ? err.issues.length : 1;
    logger.error({ file, problems: lines, errors: (err as Error).message.split('\n') }, 'config reload failed; the running config stays in effect');
    return;
  }
  await running.reload(next.config);
}

/**
 * SIGHUP reloads and SIGTERM/SIGINT stops, one at a time and only after `started`. `stopped`
 * resolves with the exit code; nothing here can reject unhandled.
 */
function handleSignals(running: Agent, started: Promise<void>, file: string, logger: Logger): { stopped: Promise<number>; dispose(): void } {
  // Settles when the start did; a failed start is reported by the caller, not here.
  let startedOk = false;
  let queue: Promise<void> = started.then(() => {
    startedOk = true;
  }, () => undefined);
  let resolveStopped!: (code: number) => void;
  const stopped = new Promise<number>((resolve) => {
    resolveStopped = resolve;
  });
  let stopping = false;
  const onHup = () => {
    // Kept while stopping: SIGHUP's default action would kill the process mid-flush.
    if (stopping) return void logger.warn('SIGHUP ignored: the agent is stopping');
    queue = queue.then(() => (startedOk ? reloadFrom(running, file, logger) : undefined)).catch((err: unknown) => {
      // Only when even the running taps could not be restarted: without taps, exit and let systemd restart us.
      logger.fatal({ err: (err as Error).message }, 'config reload left the agent without taps; exiting');
      process.exit(EXIT_FATAL);
    });
  };
  const onStop = (signal: NodeJS.Signals) => {
    stopping = true;
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
    logger.info({ signal }, 'stopping: finishing the current interval and flushing');
    queue = queue.then(() => (startedOk ? running.stop() : undefined)).then(
      () => exitSoon(startedOk ? 0 : 1, resolveStopped),
      (err: unknown) => {
        logger.error({ err: (err as Error).message }, 'shutdown failed');
        exitSoon(1, resolveStopped);
      },
    );
  };
  const dispose = () => {
    process.off('SIGHUP', onHup);
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
  };
  process.on('SIGHUP', onHup);
  process.once('SIGTERM', onStop);
  process.once('SIGINT', onStop);
  return { stopped, dispose };
}

/**
 * Resolves the exit code; the process then ends when nothing is left to run. Should a handle
 * still hold it (a tap that did not close), the unref'd timer ends it a second later anyway.
 */
function exitSoon(stopCode: number, resolve: (code: number) => void): void {
  const code = fatalExitCode ?? stopCode;
  setTimeout(() => process.exit(code), 1_000).unref();
  resolve(code);
}
