/**
 * `npm run fuzz -- --requests N [--seed S] [--concurrency C]`: mutated requests at a real relay on
 * loopback and mutated inputs at the receiver's parsers (docs/RELIABILITY.md "Fuzzing").
 *
 *   --requests N       relay requests (default 20000)
 *   --seed S           replay a run's mutations (default: random, printed)
 *   --concurrency C    requests in flight (default 8)
 *   --parser-cases P   receiver parser inputs (default N/4)
 *   --client-cases K   hostile answers to the relay client (default N/20)
 *   --slow L           slowloris-ish partial requests held open at once (default 3)
 *   --only I           replay case I of the seed alone (against a fresh relay: same mutations, fresh keys)
 *   --out DIR          where a findings file goes (default: the current folder)
 *   --timeout-ms T     a request with no answer after T ms is a finding (default 120000)
 *   --max-seconds T    stop sending after T s and report what was sent (a run that must end by a deadline)
 *
 * Prints a summary and the relay's RSS over time; exits 1 on any finding, after writing the
 * findings (seed, case number, the request bytes) to DIR/fuzz-findings-<seed>.json.
 */
import { randomInt } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cleanupAll } from '../helpers/relay.js';
import { setUpRelay } from './corpus.js';
import { parserCorpus, runFuzz, type FuzzReport } from './run.js';

const say = (msg: string) => process.stderr.write(`[fuzz ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** The report as text: totals, statuses, and at most `rows` evenly spaced RSS samples. */
export function formatReport(r: FuzzReport, rows = 16): string {
  const lines = [
    `seed ${r.seed}: ${r.requests} relay requests, ${r.slowRequests} slow requests, ${r.parserCases} parser cases, ${r.clientCases} client cases in ${r.seconds} s (${r.requestsPerSecond} req/s)`,
    `statuses: ${Object.entries(r.statuses).map(([s, n]) => `${s}×${n}`).join(' ')}`,
    `no answer (transport): ${Object.entries(r.transportErrors).map(([s, n]) => `${s}×${n}`).join(' ') || 'none'}`,
    `2xx by route: ${Object.entries(r.validByRoute).map(([s, n]) => `${s} ${n}`).join(', ')}`,
    '',
    '     s   requests  relay RSS MiB  fuzzer RSS MiB  relay CPU s  fuzzer CPU s',
  ];
  const step = Math.max(1, Math.ceil(r.rss.length / rows));
  const shown = r.rss.filter((_, i) => i % step === 0 || i === r.rss.length - 1);
  for (const s of shown) {
    lines.push(`${s.seconds.toFixed(0).padStart(6)} ${String(s.requests).padStart(10)} ${(s.relayKiB === undefined ? '-' : (s.relayKiB / 1024).toFixed(1)).padStart(14)} ${(s.fuzzerKiB / 1024).toFixed(1).padStart(15)} ${String(s.relayCpuSeconds ?? '-').padStart(12)} ${String(s.fuzzerCpuSeconds).padStart(13)}`);
  }
  const relay = r.rss.map((s) => s.relayKiB).filter((k): k is number => k !== undefined);
  if (relay.length > 0) lines.push(`relay RSS MiB: start ${(relay[0]! / 1024).toFixed(1)}, peak ${(Math.max(...relay) / 1024).toFixed(1)}, end ${(relay.at(-1)! / 1024).toFixed(1)}`);
  lines.push('', `findings: ${r.findings.length}`);
  for (const f of r.findings.slice(0, 20)) lines.push(`  ${f.kind}${f.index !== undefined ? ` case ${f.index}` : ''}${f.route ? ` ${f.route}` : ''}${f.mutations ? ` [${f.mutations.join(', ')}]` : ''}: ${f.detail.split('\n')[0]}`);
  return lines.join('\n');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '20000' },
      seed: { type: 'string' },
      concurrency: { type: 'string', default: '8' },
      'parser-cases': { type: 'string' },
      'client-cases': { type: 'string' },
      slow: { type: 'string', default: '3' },
      only: { type: 'string' },
      out: { type: 'string', default: '.' },
      'timeout-ms': { type: 'string', default: '120000' },
      'max-seconds': { type: 'string' },
    },
  });
  const requests = Number(values.requests);
  const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : randomInt(2 ** 31);
  say(`seed ${seed} (replay with --seed ${seed}), ${requests} requests`);
  let report: FuzzReport;
  let stopProblem: string | undefined;
  try {
    // Inside the try: a relay that started but whose set-up failed is stopped too.
    const { relay, ctx } = await setUpRelay();
    const corpus = await parserCorpus(ctx, relay.operator);
    let lastSaid = 0;
    report = await runFuzz({ url: relay.url, ctx, child: relay.child, output: relay.output }, {
      requests, seed,
      concurrency: Number(values.concurrency),
      parserCases: values['parser-cases'] !== undefined ? Number(values['parser-cases']) : Math.ceil(requests / 4),
      clientCases: values['client-cases'] !== undefined ? Number(values['client-cases']) : Math.ceil(requests / 20),
      slow: Number(values.slow),
      ...(values.only !== undefined ? { only: Number(values.only) } : {}),
      timeoutMs: Number(values['timeout-ms']),
      ...(values['max-seconds'] !== undefined ? { maxSeconds: Number(values['max-seconds']) } : {}),
      progress: (line, urgent) => {
        if (!urgent && Date.now() - lastSaid < 10_000) return;
        lastSaid = Date.now();
        say(line);
      },
    }, corpus);
  } finally {
    // SIGTERM and exit 0 asserted (test/helpers/stop.ts): a relay that does not stop cleanly is a finding too.
    try {
      await cleanupAll();
    } catch (err) {
      stopProblem = (err as Error).message;
    }
  }
  if (stopProblem) report.findings.push({ kind: 'relay_exit', detail: stopProblem });
  process.stdout.write(formatReport(report) + '\n');
  if (report.findings.length > 0) {
    const file = path.resolve(values.out, `fuzz-findings-${seed}.json`);
    writeFileSync(file, JSON.stringify({ seed, replay: `npm run fuzz -- --seed ${seed} --only <case>`, report }, null, 2));
    say(`${report.findings.length} findings written to ${file}`);
    return 1;
  }
  return 0;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`fuzz: ${(err as Error).stack ?? err}\n`);
  process.exit(2);
});
