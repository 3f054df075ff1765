/**
 * Firmware over loopback, against a real relay process and a real agent process:
 *   - publish (manifest, chunks, one key wrap) and the gateway's pull (check, download with every
 *     chunk verified, decrypted and fsynced, the whole-file SHA-512) for 5 MiB and 50 MiB packages
 *   - the agent's RSS during repeated 50 MiB pulls, above its steady state (target: <= 10 MB), with
 *     the systemd unit's node flags (the target's condition) and with node's defaults
 *   - the sensor interval during the pulls: the gaps between the agent's Modbus polls, before and
 *     while it downloads, pooled over the pulls (target: p95 unchanged within noise)
 *   - a group of 100 enrolled devices: one key wrap (X-Wing seal + ML-DSA-65 signature), and the
 *     whole publish to all of them
 * Targets: docs/PERFORMANCE.md ("Firmware").
 */
import { readFileSync } from 'node:fs';
import { percentile, type Row } from '../common/table.js';
import { generatePrivateKey } from '../protocol/keys.js';
import { cleanupAll, makeDevice, startRelay } from '../test/helpers/relay.js';
import { killAllAgents, type LogLine } from '../test/helpers/agent.js';
import { startModbusTcpServer } from '../test/helpers/modbus-server.js';
import { makeRelease, publishRelease, rootJson } from '../test/helpers/firmware-release.js';
import { startGateway } from '../test/helpers/firmware-gateway.js';
import { unitNodeFlags } from '../test/helpers/systemd-unit.js';

const MiB = 1024 * 1024;
/** The agent's interval here: short, so that a pull of a few seconds spans many polls. */
const INTERVAL_MS = 250;

/** 50 MiB pulls per agent: their polls are pooled for the interval figures (one pull spans only a few). */
const PULLS = Number(process.env['GHOSTPIPE_BENCH_FIRMWARE_PULLS'] ?? 6);
/** The agent as systemd runs it (the target's condition) and with node's defaults (for comparison). */
const VARIANTS: { label: string; flags: () => string[] }[] = [
  { label: 'unit flags', flags: () => unitNodeFlags('ghostpipe-agent.service') },
  { label: 'node defaults', flags: () => [] },
];

export async function benchFirmware(): Promise<Row[]> {
  const relay = await startRelay({ firmware: { maxPackageSize: '64MiB' } });
  const plc = await startModbusTcpServer();
  const rows: Row[] = [];
  const release = generatePrivateKey('ML-DSA-65');
  const publisher = generatePrivateKey('ML-DSA-65');
  // When each Modbus poll arrived: one point, so one request per collection.
  const polls: number[] = [];
  const push = plc.requests.push.bind(plc.requests);
  plc.requests.push = (...items) => {
    polls.push(performance.now());
    return push(...items);
  };
  const row = (name: string, p50: number, p95: number, note: string): void => {
    rows.push({ section: 'firmware', name, provider: process.version, p50_ms: p50, p95_ms: p95, note });
  };
  let counter = 1;
  try {
    for (const variant of VARIANTS) {
      const group = `bench-${counter}`;
      const gw = await startGateway(relay, {
        relayUrl: relay.url, root: rootJson([release], 1), group, agent: { interval: `${INTERVAL_MS}ms`, logLevel: 'info' }, nodeFlags: variant.flags(),
        taps: [{ name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: plc.port, addressBase: 0, points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }] }],
        firmware: (dir) => ({ install: { command: ['sh', '-c', 'cp "$1" "$0/installed.bin"', dir] } }),
      });
      const pid = gw.agent.child.pid!;
      const rssMb = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
      /** Publishes and waits for the gateway's receipt; the agent's RSS is sampled every 50 ms meanwhile. */
      const pull = async (size: number) => {
        const r = makeRelease({ counter: counter++, group, size, chunkSize: MiB, signers: [release] });
        const t0 = performance.now();
        await publishRelease(relay.operator, r, [gw.target], publisher);
        const publishMs = performance.now() - t0;
        let peak = 0;
        const sampler = setInterval(() => (peak = Math.max(peak, rssMb())), 50);
        const logged = await gw.agent.waitFor((l) => l.msg === 'firmware receipt logged' && l['packageId'] === r.id, 600_000, `the receipt of ${size / MiB} MiB`);
        clearInterval(sampler);
        // pino's isoTime: ms precision; the poll times are performance.now() of this process.
        const at = (msg: string): number => Date.parse(String(gw.agent.lines.find((l: LogLine) => l.msg === msg && l['packageId'] === r.id)!['time']));
        const start = at('firmware download started');
        const end = at('firmware download complete and verified');
        const toNow = (t: number) => performance.now() - (Date.now() - t);
        return { r, publishMs, pullMs: end - start, peak, leaf: logged['leafIndex'], from: toNow(start), to: toNow(end) };
      };
      const gaps = (from: number, to: number) => polls.map((t, i) => (i > 0 && t >= from && t <= to ? t - polls[i - 1]! : NaN)).filter((g) => !Number.isNaN(g));
      const steadyRss = async () => {
        const samples: number[] = [];
        for (let i = 0; i < 20; i++) {
          samples.push(rssMb());
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        return percentile(samples, 50);
      };
      const tag = `(agent: ${variant.label})`;

      await new Promise((resolve) => setTimeout(resolve, 5_000)); // taps up, a few frames out
      const coldSteady = await steadyRss();
      const first = await pull(5 * MiB);
      row(`publish 5 MiB (manifest, ${first.r.chunks.length} chunks, 1 wrap), loopback`, first.publishMs, first.publishMs, `${(5 / (first.publishMs / 1000)).toFixed(0)} MiB/s`);
      row(`agent pull 5 MiB, the first ${tag}: chunks checked, decrypted, fsynced; SHA-512`, first.pullMs, first.pullMs, `${(5 / (first.pullMs / 1000)).toFixed(0)} MiB/s; opens the log witness too`);
      row(`agent RSS during the first pull (5 MiB) ${tag}`, NaN, NaN, `before ${coldSteady.toFixed(1)} MB, peak ${first.peak.toFixed(1)} MB: +${(first.peak - coldSteady).toFixed(1)} MB (first use of everything)`);

      const steady = await steadyRss();
      const pulls = [];
      for (let i = 0; i < PULLS; i++) pulls.push(await pull(50 * MiB));
      const pullMs = pulls.map((p) => p.pullMs);
      const publishMs = pulls.map((p) => p.publishMs);
      row(`publish 50 MiB (manifest, 50 chunks, 1 wrap), loopback, x${PULLS}`, percentile(publishMs, 50), percentile(publishMs, 95), `${(50 / (percentile(publishMs, 50) / 1000)).toFixed(0)} MiB/s`);
      row(`agent pull 50 MiB ${tag}, x${PULLS}`, percentile(pullMs, 50), percentile(pullMs, 95), `${(50 / (percentile(pullMs, 50) / 1000)).toFixed(0)} MiB/s; last receipt leaf ${String(pulls.at(-1)!.leaf)}`);
      const peak = Math.max(...pulls.map((p) => p.peak));
      row(`agent RSS during ${PULLS} pulls of 50 MiB, above steady state ${tag}`, NaN, NaN, `steady ${steady.toFixed(1)} MB, peak ${peak.toFixed(1)} MB: +${(peak - steady).toFixed(1)} MB (target <= 10 MB)`);
      // The interval during the pulls vs the ten seconds before the first of them.
      const before = gaps(pulls[0]!.from - 10_000, pulls[0]!.from);
      const during = pulls.flatMap((p) => gaps(p.from, Math.max(p.to, p.from + 2 * INTERVAL_MS)));
      row(`sensor interval (${INTERVAL_MS} ms) before the 50 MiB pulls ${tag}`, percentile(before, 50), percentile(before, 95), `${before.length} polls`);
      row(`sensor interval (${INTERVAL_MS} ms) during the 50 MiB pulls ${tag}`, percentile(during, 50), percentile(during, 95), `${during.length} polls; max ${Math.max(...during).toFixed(0)} ms (target: p95 as before, within noise)`);
      await gw.agent.stop();
    }

    // A group of 100 enrolled devices: the wraps are the per-device cost of a publish.
    const devices = [];
    for (let i = 0; i < 100; i++) devices.push(await makeDevice(relay));
    for (const d of devices) await relay.operator.setGroup('fleet-100', d.did, true);
    const r = makeRelease({ counter: counter++, group: 'fleet-100', size: 5 * MiB, chunkSize: MiB, signers: [release] });
    const wraps: number[] = [];
    for (const d of devices) {
      const t = performance.now();
      r.wrapFor(d.kem.publicKey, publisher);
      wraps.push(performance.now() - t);
    }
    rows.push({ section: 'firmware', name: 'key wrap for one device (X-Wing seal + ML-DSA-65 signature)', provider: process.version, p50_ms: percentile(wraps, 50), p95_ms: percentile(wraps, 95), ops_per_s: 1000 / percentile(wraps, 50) });
    const t0 = performance.now();
    await publishRelease(relay.operator, r, devices.map((d) => ({ did: d.did, kemPublicKey: d.kem.publicKey })), publisher);
    const all = performance.now() - t0;
    rows.push({ section: 'firmware', name: 'publish 5 MiB to a group of 100 devices (100 wraps made and uploaded)', provider: process.version, p50_ms: all, p95_ms: all, note: `${(all / 100).toFixed(1)} ms per device, chunks included` });
  } finally {
    await killAllAgents();
    await plc.stop();
    await cleanupAll();
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { formatTable } = await import('../common/table.js');
  console.log(formatTable(await benchFirmware()));
}
