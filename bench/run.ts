/**
 * `npm run bench [-- section ...]`: runs the benchmark sections and prints one Markdown table each.
 * Sections: protocol, relay, log, agent, e2e, firmware. Targets live in docs/PERFORMANCE.md, never in tests.
 */
import os from 'node:os';
import { formatTable, type Row } from '../common/table.js';

type Bench = () => Promise<Row[]>;

/** Section -> [module path relative to this file, exported function name]. */
const sections: Record<string, [string, string][]> = {
  protocol: [
    ['./protocol-envelope.js', 'benchEnvelope'],
    ['./protocol-tlog.js', 'benchTlog'],
  ],
  relay: [['./relay.js', 'benchRelay']],
  log: [['./log.js', 'benchLog']],
  agent: [['./agent.js', 'benchAgent']],
  e2e: [['./e2e.js', 'benchEndToEnd']],
  firmware: [['./firmware.js', 'benchFirmware']],
};

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((name) => !(name in sections));
  if (unknown.length > 0) {
    console.error(`unknown bench section(s): ${unknown.join(', ')}; choose from ${Object.keys(sections).join(', ')}`);
    process.exit(2);
  }
  const chosen = wanted.length > 0 ? wanted : Object.keys(sections);
  console.log(`# Ghost Pipe benchmarks — ${new Date().toISOString()}`);
  console.log(`node ${process.version} (openssl ${process.versions.openssl}), ${os.cpus()[0]?.model ?? 'unknown cpu'} x${os.cpus().length}, ${os.arch()}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB\n`);
  let failed = false;
  for (const section of chosen) {
    const rows: Row[] = [];
    for (const [modulePath, exportName] of sections[section]!) {
      try {
        const mod = (await import(new URL(modulePath, import.meta.url).href)) as Record<string, Bench>;
        const bench = mod[exportName];
        if (typeof bench !== 'function') throw new Error(`${modulePath} does not export ${exportName}`);
        rows.push(...(await bench()));
      } catch (err) {
        failed = true;
        console.error(`bench ${section} (${modulePath}) failed: ${(err as Error).stack ?? err}`);
      }
    }
    console.log(`## ${section}\n`);
    console.log(formatTable(rows) + '\n');
  }
  process.exitCode = failed ? 1 : 0;
}

await main();
