import type { Command } from '../command.js';
export const demo: Command = { name: 'demo', summary: 'Run the whole conduit on a simulated plant', usage: 'Usage: ghostpipe demo', options: {}, async run() { return 1; } };
