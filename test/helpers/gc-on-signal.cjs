// Preloaded into a relay process by test/relay/queue-soak.ts (NODE_OPTIONS=--require): a full
// garbage collection on SIGUSR2, so that the heap it reports in /v2/stats next is live data
// only. Test tooling, never loaded by the product.
const v8 = require('node:v8');
const vm = require('node:vm');
v8.setFlagsFromString('--expose_gc');
const gc = vm.runInNewContext('gc');
process.on('SIGUSR2', () => gc());
