import { promises as fs } from 'node:fs';
import path from 'node:path';
import { CliError, optionalString, type Command } from '../command.js';
import { ConfigError } from '../../common/schema.js';
import { createLogger } from '../../common/log.js';
import { runningRelease } from '../../common/release-info.js';
import { loadAgentConfig } from '../../agent/config.js';
import { loadFirmwareFiles } from '../../agent/firmware/config.js';
import { applyRelease } from '../../agent/firmware/release-apply.js';
import { handoffFiles, readRequest } from '../../agent/firmware/release-handoff.js';
import { RELEASES, currentVersion } from '../../agent/firmware/release-layout.js';
import { DEFAULT_AGENT_CONFIG } from './agent.js';

/** Exit code of `apply` when it decided against the release (rolled back or refused): the unit shows failed. */
const EXIT_NOT_INSTALLED = 3;

export const release: Command = {
  name: 'release',
  summary: 'Ghost Pipe updating itself: apply a verified release (run by ghostpipe-release.service), or show the releases',
  usage: [
    `Usage: ghostpipe release apply [--config ${DEFAULT_AGENT_CONFIG}]`,
    `       ghostpipe release status [--config ${DEFAULT_AGENT_CONFIG}]`,
    '',
    'apply   as root, when the agent left a ghostpipe-release package for it (ghostpipe-release.path):',
    '        checks the package again against the pinned firmware root, unpacks it to',
    '        <prefix>/releases/<version>, switches <prefix>/current, restarts the units and waits for',
    '        a frame of the new agent to be accepted with the relay healthy; otherwise switches',
    '        back. Exit 0: installed (or nothing to do); 3: rolled back or refused; 1: it could not decide.',
    'status  the running release, the releases on disk, a request waiting for the service.',
    '',
    'Settings: firmware.release in the agent config (docs/FIRMWARE.md "Self-update").',
  ].join('\n'),
  options: { config: { type: 'string', short: 'c' } },
  async run(args) {
    const [action] = args.positionals;
    if (action !== 'apply' && action !== 'status') throw new CliError('release: say apply or status (ghostpipe release --help)', 2);
    const file = optionalString(args, 'config') ?? DEFAULT_AGENT_CONFIG;
    let config;
    try {
      ({ config } = loadAgentConfig(file));
    } catch (err) {
      if (err instanceof ConfigError) throw new CliError(`release ${action}: invalid config\n${err.message}`, 2);
      throw err;
    }
    const firmware = config.firmware;
    if (!firmware?.release) throw new CliError(`release ${action}: ${file} has no firmware.release section: this host does not update Ghost Pipe itself`, 2);
    const { prefix } = firmware.release;
    if (action === 'status') {
      const releases = await fs.readdir(path.join(prefix, RELEASES)).catch(() => [] as string[]);
      const request = await readRequest(handoffFiles(config.stateDir).request).catch((err: Error) => err);
      process.stdout.write([
        `running:  ${await currentVersion(prefix).catch((err: Error) => `unknown (${err.message})`) ?? 'no current link'} (this command: ${runningRelease().version})`,
        `releases: ${releases.filter((r) => !r.startsWith('.')).join(', ') || 'none'} in ${path.join(prefix, RELEASES)}`,
        `request:  ${request instanceof Error ? `unreadable: ${request.message}` : request ? `package ${request.id} since ${request.requestedAt}` : 'none'}`,
      ].join('\n') + '\n');
      return 0;
    }
    const loaded = await loadFirmwareFiles(firmware);
    if (!loaded.secrets) throw new CliError(`release apply: ${loaded.issues.map((i) => `firmware.${i.setting}: ${i.message}`).join('; ')}`, 2);
    const logger = createLogger('release', config.logLevel);
    const result = await applyRelease({ firmware: { ...firmware, release: firmware.release }, secrets: loaded.secrets, stateDir: config.stateDir, logger });
    if (result === undefined) {
      process.stdout.write('release apply: no request waiting\n');
      return 0;
    }
    process.stdout.write(`release apply: ${result.outcome}${result.reason ? `: ${result.reason}` : ''}; running ${result.running || 'unknown'}\n`);
    return result.outcome === 'installed' ? 0 : EXIT_NOT_INSTALLED;
  },
};
