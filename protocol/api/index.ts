/** The relay's HTTP wire contract (docs/API.md), shared by the relay and every client. */
export * from './errors.js';
export * from './enrollment.js';
export * from './messages.js';
export * from './firmware.js';
