import type { Command } from '../command.js';
import { keygen } from './keygen.js';
import { seal } from './seal.js';
import { open } from './open.js';
import { inspect } from './inspect.js';
import { relay } from './relay.js';
import { keys } from './keys.js';

/** Every `ghostpipe` subcommand, in the order `ghostpipe --help` lists them. */
export const commands: Command[] = [keygen, seal, open, inspect, relay, keys];
