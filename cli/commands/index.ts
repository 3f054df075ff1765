import type { Command } from '../command.js';

/**
 * Every `ghostpipe` subcommand, in the order `ghostpipe --help` lists them. Modules load on
 * demand: `ghostpipe open` must not pay for the OPC-UA client or the relay server at start-up.
 */
export const commandLoaders: Record<string, () => Promise<Command>> = {
  keygen: async () => (await import('./keygen.js')).keygen,
  seal: async () => (await import('./seal.js')).seal,
  open: async () => (await import('./open.js')).open,
  inspect: async () => (await import('./inspect.js')).inspect,
  relay: async () => (await import('./relay.js')).relay,
  keys: async () => (await import('./keys.js')).keys,
  receive: async () => (await import('./receive.js')).receive,
  audit: async () => (await import('./audit.js')).audit,
  agent: async () => (await import('./agent.js')).agent,
  enroll: async () => (await import('./enroll.js')).enroll,
  device: async () => (await import('./device.js')).device,
  firmware: async () => (await import('./firmware.js')).firmware,
  release: async () => (await import('./release.js')).release,
  groups: async () => (await import('./groups.js')).groups,
  doctor: async () => (await import('./doctor.js')).doctor,
  // Not bench.ts: that name is a driver's benchmark, which product code may not import (test/architecture.test.ts).
  bench: async () => (await import('./bench-command.js')).bench,
  plant: async () => (await import('./plant.js')).plant,
  demo: async () => (await import('./demo.js')).demo,
};

/** All commands, loaded (for the top-level help). */
export async function loadAllCommands(): Promise<Command[]> {
  return Promise.all(Object.values(commandLoaders).map((load) => load()));
}
