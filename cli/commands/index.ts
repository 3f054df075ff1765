import type { Command } from '../command.js';

/** Every `ghostpipe` subcommand, in the order `ghostpipe --help` lists them. */
export const commands: Command[] = [];
