import { readFileSync } from 'node:fs';
import { CliError, optionalString, type Command } from '../command.js';
import { OPERATOR_OPTIONS, OPERATOR_USAGE, operatorKey, relayUrl } from '../operator-client.js';
import { progress } from '../progress.js';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { runRelayBench, type BucketResult } from '../../common/relay-bench.js';
import { parseSize, formatSize } from '../../common/duration.js';
import { DEFAULT_BUCKETS } from '../../protocol/envelope/index.js';

const bucketName = (b: number): string => formatSize(b).replace(/(\d)([KMG])/, '$1 $2');

/** The Markdown table the run ends with: full path and transport, p50 and p95, per bucket. */
export function benchTable(results: BucketResult[]): string {
  const f = (ms: number) => ms.toFixed(ms < 10 ? 2 : 1);
  return [
    '| bucket | trips | full path p50 ms | full path p95 ms | transport p50 ms | transport p95 ms | seal | upload | lease | open | ack |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...results.map((r) => `| ${bucketName(r.bucket)} | ${r.trips} | ${f(r.full.p50)} | ${f(r.full.p95)} | ${f(r.transport.p50)} | ${f(r.transport.p95)} | ${f(r.phases.seal)} | ${f(r.phases.upload)} | ${f(r.phases.lease)} | ${f(r.phases.open)} | ${f(r.phases.ack)} |`),
  ].join('\n');
}

export const bench: Command = {
  name: 'bench',
  summary: 'Measure a deployed relay: seal, upload, lease, verify, open, ack per payload bucket (p50, p95)',
  usage: [
    'Usage: ghostpipe bench [--relay URL] [--operator-key-file FILE] [--ca FILE] [--buckets 4KiB,64KiB,1MiB,5MiB] [--trips N] [--plan PLAN] [--json]',
    '',
    'Runs the conduit\'s round trip against a relay, as an agent and a receiver would: seal (pad,',
    'HPKE X-Wing, ML-DSA-65) -> upload -> lease -> verify and open -> acknowledge, and reports the',
    'full path and the transport alone (upload + lease + ack) per bucket. It issues a bench device',
    'key and a bench receiver key with the operator key, enrolls a bench device (its keys live in',
    'memory only), and revokes both keys and the device at the end. It never uses a production',
    'device key: a device key in place of the operator key is refused.',
    '',
    'Options:',
    ...OPERATOR_USAGE,
    '  --ca FILE                 PEM CA bundle for an https:// relay or proxy (system CAs otherwise)',
    '  --buckets LIST            payload buckets to measure (default: all four)',
    '  --trips N                 trips per bucket after one warm-up (default 20; 5 for 5 MiB)',
    '  --plan PLAN               plan of the bench keys (default enterprise: no quota)',
    '  --json                    print JSON instead of the Markdown table',
    '',
    'Progress goes to stderr (a bar on a terminal); the table or JSON to stdout. The enrollment',
    'adds the bench device to the relay\'s transparency log, and its revocation, like any device.',
  ].join('\n'),
  options: { ...OPERATOR_OPTIONS, ca: { type: 'string' }, buckets: { type: 'string' }, trips: { type: 'string' }, plan: { type: 'string' }, json: { type: 'boolean' } },
  async run(args) {
    const baseUrl = relayUrl(args);
    const caFile = optionalString(args, 'ca');
    let ca: Buffer | undefined;
    if (caFile !== undefined) {
      try {
        ca = readFileSync(caFile);
      } catch (err) {
        throw new CliError(`bench: cannot read --ca ${caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2);
      }
    }
    const relay = { baseUrl, timeoutMs: 60_000, ...(ca ? { ca } : {}) };
    const apiKey = operatorKey(args, 'bench');
    if (!apiKey.startsWith('plk_')) {
      throw new CliError('bench: that is not an operator key (plk_…). The bench issues its own keys and revokes them; it never runs under a production device key, whose quota, stream and audit trail it would use.', 2);
    }
    const operator = new RelayClient({ ...relay, apiKey });
    const buckets = (optionalString(args, 'buckets') ?? DEFAULT_BUCKETS.map(formatSize).join(',')).split(',').map((b) => {
      const bytes = parseSize(b.trim());
      if (!DEFAULT_BUCKETS.includes(bytes)) throw new CliError(`bench: --buckets: ${b.trim()} is not a bucket (${DEFAULT_BUCKETS.map(formatSize).join(', ')})`, 2);
      return bytes;
    });
    const tripsOption = optionalString(args, 'trips');
    const trips = tripsOption === undefined ? undefined : Number(tripsOption);
    if (trips !== undefined && (!Number.isInteger(trips) || trips < 1 || trips > 10_000)) throw new CliError('bench: --trips must be 1..10000', 2);
    const bars = new Map<number, (done: number) => void>();
    try {
      const report = await runRelayBench({
        relay, operator, buckets, trips: (b) => trips ?? (b >= 5 * 1024 * 1024 ? 5 : 20), plan: optionalString(args, 'plan') ?? 'enterprise',
        onProgress: (bucket, done, of) => {
          if (!bars.has(bucket)) bars.set(bucket, progress(bucketName(bucket).padEnd(7), of));
          bars.get(bucket)!(done);
        },
      });
      if (args.values['json'] === true) process.stdout.write(JSON.stringify({ relay: baseUrl, at: new Date().toISOString(), ...report }, null, 2) + '\n');
      else process.stdout.write(`${benchTable(report.results)}\n\nrelay ${baseUrl}; bench keys ${report.issued.deviceKeyId} and ${report.issued.receiverKeyId} and device ${report.issued.did} revoked\n`);
      return 0;
    } catch (err) {
      if (err instanceof RelayError) throw new CliError(`bench: ${err.message}`);
      throw err;
    }
  },
};
