import type { Command } from '../command.js';
import { keygen } from './keygen.js';
import { seal } from './seal.js';
import { open } from './open.js';
import { inspect } from './inspect.js';
import { relay } from './relay.js';
import { keys } from './keys.js';
import { agent } from './agent.js';
import { enroll } from './enroll.js';
import { doctor } from './doctor.js';
import { receive } from './receive.js';
import { audit } from './audit.js';
import { plant } from './plant.js';
import { demo } from './demo.js';

/** Every `ghostpipe` subcommand, in the order `ghostpipe --help` lists them. */
export const commands: Command[] = [keygen, seal, open, inspect, relay, keys, receive, audit, agent, enroll, doctor, plant, demo];
