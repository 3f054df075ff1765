/**
 * For a test file that once stayed alive after its last test passed (test/e2e/conduit.test.ts
 * under npm run test:load: every test ok, then the 600 s file timeout): after the last hook, an
 * unref'd timer that fires only if something still keeps the process alive. It prints what (the
 * active resources) and exits 1, so the run fails in a minute and names the leak.
 */
import { after } from 'node:test';

export function failIfKeptAlive(graceMs = 60_000): void {
  after(() => {
    setTimeout(() => {
      process.stderr.write(`# still alive ${graceMs} ms after the last test: ${JSON.stringify(process.getActiveResourcesInfo())}\n`);
      process.exit(1);
    }, graceMs).unref();
  });
}
