import { CliError, optionalString, type Command } from '../command.js';
import { ConfigError } from '../../common/schema.js';
import { createLogger, type Logger } from '../../common/log.js';
import { loadAgentConfig, loadAgentSecrets, type AgentConfig, type AgentSecrets } from '../../agent/config.js';
import { Agent } from '../../agent/agent.js';
import { StateError } from '../../agent/state.js';

export const DEFAULT_AGENT_CONFIG = '/etc/ghostpipe/agent.yaml';

/** Config plus the files it names; ConfigError lines name file:line:column and path. */
export async function loadAgent(file: string, onWarning: (message: string) => void): Promise<{ config: AgentConfig; secrets: AgentSecrets }> {
  const config = loadAgentConfig(file);
  const secrets = await loadAgentSecrets(config, file, onWarning);
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
    const warnings: string[] = [];
    const { config, secrets } = await loadAgentOrExit('agent', file, (message) => warnings.push(message));
    if (args.values.check) {
      for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
      process.stdout.write(`${file}: config OK: ${config.taps.length} taps, ${countPoints(config)} points, ${secrets.recipients.length} recipients, device ${secrets.device.did}\n`);
      return 0;
    }
    const logger = createLogger('agent', config.logLevel);
    for (const w of warnings) logger.warn(w);
    let running: Agent;
    try {
      running = new Agent({ config, secrets, logger });
      await running.start();
    } catch (err) {
      if (err instanceof StateError) throw new CliError(`agent: ${err.message}`, 1);
      throw err;
    }
    return serve(running, file, logger);
  },
};

function serve(running: Agent, file: string, logger: Logger): Promise<number> {
  let reloading = Promise.resolve();
  const onHup = () => {
    reloading = reloading.then(async () => {
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
    });
  };
  process.on('SIGHUP', onHup);
  return new Promise<number>((resolve) => {
    const onStop = (signal: string) => {
      logger.info({ signal }, 'stopping: finishing the current interval and flushing');
      process.off('SIGHUP', onHup);
      void reloading.then(() => running.stop()).then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err: (err as Error).message }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', onStop);
    process.once('SIGINT', onStop);
  });
}
