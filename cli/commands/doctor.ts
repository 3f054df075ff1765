import { optionalString, type Command } from '../command.js';
import { createLogger, silentLogger } from '../../common/log.js';
import { formatDoctorReport, runDoctor } from '../../agent/doctor.js';
import { DEFAULT_AGENT_CONFIG, loadAgentOrExit } from './agent.js';

export const doctor: Command = {
  name: 'doctor',
  summary: 'Check the agent config, probe every tap once, check the relay and enrollment',
  usage: [
    `Usage: ghostpipe doctor [--config ${DEFAULT_AGENT_CONFIG}] [--verbose]`,
    '',
    'Validates the config, starts each tap, collects once (MQTT and OPC-UA subscribe taps: until',
    'every point has had a first value, at most 10 s), stops it, and prints every point with its',
    'value, quality and latency; then checks that the relay answers and the device is enrolled.',
    'Exit 0 when everything is good, 1 when anything is not (bad point, relay down, not enrolled).',
    '  --verbose  driver logs (JSON) on stderr',
  ].join('\n'),
  options: { config: { type: 'string', short: 'c' }, verbose: { type: 'boolean' } },
  async run(args) {
    const file = optionalString(args, 'config') ?? DEFAULT_AGENT_CONFIG;
    const loaded = await loadAgentOrExit('doctor', file, (message) => process.stderr.write(`warning: ${message}\n`));
    process.stdout.write(`${file}: config OK\n`);
    const logger = args.values.verbose ? createLogger('doctor', 'debug', process.stderr) : silentLogger();
    const report = await runDoctor(loaded.config, loaded.secrets, logger);
    process.stdout.write(formatDoctorReport(report));
    return report.healthy ? 0 : 1;
  },
};
