#!/usr/bin/env node
import { CliError, parseCommandArgs } from './command.js';
import { commandLoaders, loadAllCommands } from './commands/index.js';
import { runningRelease } from '../common/release-info.js';

async function topLevelHelp(): Promise<string> {
  const commands = await loadAllCommands();
  const width = Math.max(...commands.map((c) => c.name.length), 8);
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    'Usage: ghostpipe <command> [options]',
    '',
    'Ghost Pipe: a quantum-safe data conduit for the IEC 62443 zone boundary.',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `ghostpipe <command> --help` for a command\'s options. Add --debug for stack traces.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write((await topLevelHelp()) + '\n');
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    process.stdout.write(`ghostpipe ${runningRelease().version}\n`);
    return 0;
  }
  const load = Object.hasOwn(commandLoaders, name) ? commandLoaders[name] : undefined;
  if (!load) throw new CliError(`unknown command "${name}"; run \`ghostpipe --help\` for the list`, 2);
  const command = await load();
  const args = parseCommandArgs(command, rest);
  if (args.values.help) {
    process.stdout.write(command.usage + '\n');
    return 0;
  }
  return command.run(args);
}

const debug = process.argv.includes('--debug');
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`ghostpipe: ${debug && err instanceof Error ? err.stack : message}\n`);
    process.exitCode = err instanceof CliError ? err.exitCode : 1;
  },
);
