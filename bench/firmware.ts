/**
 * Firmware over loopback, against a real relay process and a real agent process:
 *   - publish (manifest, chunks, one key wrap) and the gateway's pull (check, download with every
 *     chunk verified, decrypted and fsynced, the whole-file SHA-512) for 5 MiB and 50 MiB packages
 *   - the agent's RSS during the 50 MiB pull, above its steady state (target: <= 10 MB)
 *   - the sensor interval during the pulls: the gaps between the agent's Modbus polls, before and
 *     while it downloads (target: p95 unchanged within noise)
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

const MiB = 1024 * 1024;
/** The agent's interval here: short, so that a pull of a few seconds spans many polls. */
const INTERVAL_MS = 250;

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
  try {
    const gw = await startGateway(relay, {
      relayUrl: relay.url, root: rootJson([release], 1), agent: { interval: `${INTERVAL_MS}ms`, logLevel: 'info' },
      taps: [{ name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: plc.port, addressBase: 0, points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }] }],
      firmware: (dir) => ({ install: { command: ['sh', '-c', 'cp "$1" "$0/installed.bin"', dir] } }),
    });
    const pid = gw.agent.child.pid!;
    const rssMb = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
    await new Promise((resolve) => setTimeout(resolve, 5_000)); // steady state: taps up, a few frames out
    let counter = 1;
    for (const size of [5 * MiB, 50 * MiB]) {
      const label = `${size / MiB} MiB`;
      const steady: number[] = [];
      for (let i = 0; i < 20; i++) {
        steady.push(rssMb());
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const r = makeRelease({ counter: counter++, size, chunkSize: MiB, signers: [release] });
      const t0 = performance.now();
      await publishRelease(relay.operator, r, [gw.target], publisher);
      const publishMs = performance.now() - t0;
      const peak = { rss: 0 };
      const sampler = setInterval(() => (peak.rss = Math.max(peak.rss, rssMb())), 50);
      const logged = await gw.agent.waitFor((l) => l.msg === 'firmware receipt logged' && l['packageId'] === r.id, 600_000, `the receipt of ${label}`);
      clearInterval(sampler);
      // pino's isoTime: ms precision.
      const at = (msg: string): number => Date.parse(String(gw.agent.lines.find((l: LogLine) => l.msg === msg && l['packageId'] === r.id)!['time']));
      const pullMs = at('firmware download complete and verified') - at('firmware download started');
      rows.push({ section: 'firmware', name: `publish ${label} (manifest, ${r.chunks.length} chunks, 1 wrap), loopback`, provider: process.version, p50_ms: publishMs, p95_ms: publishMs, note: `${(size / MiB / (publishMs / 1000)).toFixed(0)} MiB/s` });
      rows.push({ section: 'firmware', name: `agent pull ${label}: chunks checked, decrypted, fsynced; SHA-512`, provider: process.version, p50_ms: pullMs, p95_ms: pullMs, note: `${(size / MiB / (pullMs / 1000)).toFixed(0)} MiB/s; receipt leaf ${String(logged['leafIndex'])}` });
      const baseline = percentile(steady, 50);
      rows.push({ section: 'firmware', name: `agent RSS during the ${label} pull, above steady state`, provider: process.version, p50_ms: NaN, p95_ms: NaN, note: `steady ${baseline.toFixed(1)} MB, peak ${peak.rss.toFixed(1)} MB: +${(peak.rss - baseline).toFixed(1)} MB (target <= 10 MB)` });
      // The interval during the pull vs the ten seconds before it.
      const start = performance.now() - (Date.now() - at('firmware download started'));
      const end = performance.now() - (Date.now() - at('firmware download complete and verified'));
      const gaps = (from: number, to: number) => polls.map((t, i) => (i > 0 && t >= from && t <= to ? t - polls[i - 1]! : NaN)).filter((g) => !Number.isNaN(g));
      const before = gaps(start - 10_000, start);
      const during = gaps(start, Math.max(end, start + 2 * INTERVAL_MS));
      rows.push({ section: 'firmware', name: `sensor interval (${INTERVAL_MS} ms) before the ${label} pull`, provider: process.version, p50_ms: percentile(before, 50), p95_ms: percentile(before, 95), note: `${before.length} polls` });
      rows.push({ section: 'firmware', name: `sensor interval (${INTERVAL_MS} ms) during the ${label} pull`, provider: process.version, p50_ms: percentile(during, 50), p95_ms: percentile(during, 95), note: `${during.length} polls (target: p95 as before, within noise)` });
    }
    await gw.agent.stop();

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
