import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A `ghostpipe` subcommand. Each lives in cli/commands/<name>.ts and is listed in cli/commands/index.ts. */
export interface Command {
  name: string;
  /** One line for `ghostpipe --help`. */
  summary: string;
  /** Full usage text for `ghostpipe <name> --help`. */
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  /** Returns the process exit code. Throw CliError for a one-line failure. */
  run(args: ParsedArgs): Promise<number>;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

/** An expected failure: printed as one line (no stack trace unless --debug), exit code `exitCode`. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

export function parseCommandArgs(command: Command, argv: string[]): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...command.options, help: { type: 'boolean', short: 'h' }, debug: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    });
    return { values, positionals };
  } catch (err) {
    throw new CliError(`${command.name}: ${(err as Error).message}\n\n${command.usage}`, 2);
  }
}

/** Reads an option that must be present, with a clear message when it is not. */
export function requireString(args: ParsedArgs, name: string, command: string): string {
  const value = args.values[name];
  if (typeof value !== 'string' || value === '') throw new CliError(`${command}: --${name} is required`, 2);
  return value;
}

export function optionalString(args: ParsedArgs, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === 'string' ? value : undefined;
}

/** A repeatable option's values (none: an empty list). */
export function optionalStrings(args: ParsedArgs, name: string): string[] {
  return (args.values[name] as string[] | undefined) ?? [];
}

/** One "warning: …" line on stderr (a key file readable by others, a check skipped). */
export function printWarning(message: string): void {
  process.stderr.write(`warning: ${message}\n`);
}

/** A key file read by `load`; a missing, unreadable or wrong file is a usage error (exit 2) naming it. */
export async function loadKeyFile<T>(command: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    throw new CliError(`${command}: ${(err as Error).message}`, 2);
  }
}

/** Reads all of stdin (for seal/open/inspect pipes). */
export async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
