/**
 * A gateway killed (SIGKILL) in every phase of a firmware rollout, one release per cycle, against
 * a real relay process. The kill points rotate through: checking, downloading (after a seeded
 * chunk), right after the download verified, while the install command runs (it keeps running,
 * orphaned, as it would when the agent's service dies), after the install was decided, and at rest.
 * After each kill the state file must parse and its release counter must not have gone down; after
 * each restart the release must be settled at the relay (installed or rolled back: never lost,
 * never failed) with its counter, files and install log consistent, and no install command may
 * ever have started twice for one release. Two deterministic cases cover the moment between a
 * verified download and its install, when the relay already offers the package no more.
 *
 * GHOSTPIPE_FIRMWARE_KILL_CYCLES (default 12) runs more cycles as a soak; docs/RELIABILITY.md.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { cleanupAll, startRelay, type RelayProcess } from '../helpers/relay.js';
import { killAllAgents, until, type LogLine } from '../helpers/agent.js';
import { startGateway, type Gateway } from '../helpers/firmware-gateway.js';
import { startModbusTcpServer, type ModbusTcpTestServer } from '../helpers/modbus-server.js';
import { startRelayInTheMiddle, type RelayInTheMiddle } from '../helpers/relay-in-the-middle.js';
import { makeRelease, publishRelease, rootJson, type Release } from '../helpers/firmware-release.js';
import { schedule, sleep, withSeed } from '../helpers/faults.js';
import { generatePrivateKey } from '../../protocol/keys.js';
import type { DeviceRolloutState } from '../../protocol/api/firmware.js';

const CYCLES = Number(process.env['GHOSTPIPE_FIRMWARE_KILL_CYCLES'] ?? 12);
const CHUNKS = 8;
const KILL_POINTS = ['checking', 'downloading', 'verified', 'installing', 'decided', 'at rest'] as const;

let relay: RelayProcess;
let mitm: RelayInTheMiddle;
let plc: ModbusTcpTestServer;
const release = generatePrivateKey('ML-DSA-65');
const publisher = generatePrivateKey('ML-DSA-65');

before(async () => {
  relay = await startRelay();
  mitm = await startRelayInTheMiddle(relay.url);
  plc = await startModbusTcpServer();
});

after(async () => {
  await killAllAgents();
  await mitm.close();
  await plc.stop();
  await cleanupAll();
});

/**
 * A gateway whose install command logs its start, takes a moment, then writes installed-<counter>.bin
 * (renamed into place, so health never sees half a file); health checks that file; rollback logs.
 */
function gateway(group: string): Promise<Gateway> {
  return startGateway(relay, {
    relayUrl: mitm.url, root: rootJson([release], 1), group, agent: { logLevel: 'debug' },
    taps: [{ name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: plc.port, addressBase: 0, points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }] }],
    firmware: (dir) => ({
      install: { command: ['sh', '-c', 'c=$GHOSTPIPE_FIRMWARE_COUNTER; echo "start $c" >> "$0/installs.log"; sleep 0.2; cp "$1" "$0/.tmp-$c" && mv "$0/.tmp-$c" "$0/installed-$c.bin" && echo "done $c" >> "$0/installs.log"', dir] },
      health: { command: ['sh', '-c', 'test -f "$0/installed-$GHOSTPIPE_FIRMWARE_COUNTER.bin"', dir] },
      rollback: { command: ['sh', '-c', 'echo "rollback $GHOSTPIPE_FIRMWARE_COUNTER" >> "$0/installs.log"', dir] },
    }),
  });
}

async function stateFile(gw: Gateway): Promise<{ installed: { counter: number }; staged?: unknown; pending?: unknown; receipts: unknown[] } | undefined> {
  const file = path.join(gw.env.stateDir, 'firmware', 'state.json');
  if (!existsSync(file)) return undefined;
  return JSON.parse(await readFile(file, 'utf8')) as never; // a torn or invalid file fails the test here
}

async function installLog(gw: Gateway): Promise<string[]> {
  const file = path.join(gw.env.dir, 'installs.log');
  return existsSync(file) ? (await readFile(file, 'utf8')).split('\n').filter(Boolean) : [];
}

/** The release's state for this gateway at the relay, once it is final. */
async function settled(gw: Gateway, r: Release, what: string): Promise<DeviceRolloutState> {
  let state: DeviceRolloutState = 'pending';
  await until(async () => {
    const status = await relay.operator.rolloutStatus(r.id);
    state = status.devices.find((d) => d.did === gw.env.did)!.state;
    return ['installed', 'rolled_back', 'failed', 'refused', 'expired'].includes(state);
  }, 30_000, what);
  return state;
}

function assertNoInstallTwice(log: string[]): void {
  const starts = log.filter((l) => l.startsWith('start '));
  assert.equal(new Set(starts).size, starts.length, `an install command started twice: ${starts.join(', ')}`);
}

const line = (msg: string, id: string, extra: (l: LogLine) => boolean = () => true) => (l: LogLine) => l.msg === msg && l['packageId'] === id && extra(l);

describe('faults: a gateway killed in every phase of a firmware rollout', { concurrency: false }, () => {
  test(`SIGKILL x${CYCLES}: the release counter never goes down, no release is lost, nothing installs twice`, { timeout: 60_000 + CYCLES * 30_000 }, async (t) => {
    const s = schedule(t, 'gateway SIGKILL during firmware');
    const gw = await gateway('kill-loop');
    let floor = 0;
    const outcomes: Record<string, number> = {};
    await withSeed(s, async () => {
      for (let cycle = 1; cycle <= CYCLES; cycle++) {
        const started = Date.now();
        const point = KILL_POINTS[(cycle - 1) % KILL_POINTS.length]!;
        const r = makeRelease({ counter: cycle, group: 'kill-loop', size: CHUNKS * 4096 - 100, signers: [release] });
        const agent = gw.agent;
        await publishRelease(relay.operator, r, [gw.target], publisher);
        const at = (msg: string, extra?: (l: LogLine) => boolean) => agent.waitFor(line(msg, r.id, extra), 30_000, `cycle ${cycle}: ${msg}`);
        if (point === 'checking') await sleep(s.between(0, 300));
        else if (point === 'downloading') {
          const chunk = s.between(1, CHUNKS - 1);
          await at('firmware chunk staged', (l) => l['chunk'] === chunk);
        } else if (point === 'verified') await at('firmware download complete and verified');
        else if (point === 'installing') {
          await at('firmware install started');
          await sleep(s.between(0, 200));
        } else if (point === 'decided') await agent.waitFor((l) => l['packageId'] === r.id && /^firmware (installed|install failed)/.test(l.msg), 30_000, `cycle ${cycle}: decided`);
        else await at('firmware receipt logged');
        await agent.stop('SIGKILL');

        const killed = await stateFile(gw);
        const counter = killed?.installed.counter ?? 0;
        assert.ok(counter >= floor, `cycle ${cycle} (${point}): the installed counter went down from ${floor} to ${counter}`);

        gw.start();
        const outcome = await settled(gw, r, `cycle ${cycle} (${point}): release ${cycle} settled after the restart`);
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        t.diagnostic(`cycle ${cycle}: killed ${point}, counter ${counter} after the kill, release ${cycle} ${outcome}, ${Date.now() - started} ms`);
        const log = await installLog(gw);
        assertNoInstallTwice(log);
        await until(async () => (await stateFile(gw))?.receipts.length === 0, 10_000, `cycle ${cycle}: no receipt left unsent`);
        const after = (await stateFile(gw))!;
        assert.equal(after.pending, undefined, `cycle ${cycle}: no install left undecided`);
        assert.equal(after.staged, undefined, `cycle ${cycle}: no verified download left waiting`);
        if (outcome === 'installed') {
          assert.equal(after.installed.counter, cycle, `cycle ${cycle} (${point}): installed, so the counter is ${cycle}`);
          assert.deepEqual(new Uint8Array(await readFile(path.join(gw.env.dir, `installed-${cycle}.bin`))), r.plaintext);
        } else {
          assert.equal(outcome, 'rolled_back', `cycle ${cycle} (${point}): an honest release ends installed or rolled back, not ${outcome}`);
          assert.equal(after.installed.counter, counter, `cycle ${cycle}: a rollback keeps the counter`);
          assert.ok(log.includes(`rollback ${cycle}`), `cycle ${cycle}: the rollback command ran`);
        }
        floor = after.installed.counter;
        const staging = path.join(gw.env.stateDir, 'firmware', 'staging');
        assert.deepEqual(existsSync(staging) ? readdirSync(staging) : [], [], `cycle ${cycle}: nothing left staged`);
      }
    });
    t.diagnostic(`outcomes: ${JSON.stringify(outcomes)}; installed counter ${floor}`);
    assert.ok((outcomes['installed'] ?? 0) >= CYCLES / 2, 'most releases install (only a kill mid-install may roll one back)');
  });

  /**
   * A gateway of `group` whose download of a new release verified; it is SIGKILLed while it tells
   * the relay so (that request held), and the relay then hears it: it offers the package no more.
   */
  async function killedAfterItsDownload(group: string, counter: number): Promise<{ gw: Gateway; r: Release }> {
    const gw = await gateway(group);
    const r = makeRelease({ counter, group, size: 3 * 4096, signers: [release] });
    let letGo: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    mitm.hold = (method, url) => (method === 'POST' && url === `/v2/firmware/${r.id}/downloaded` ? held : undefined);
    try {
      await publishRelease(relay.operator, r, [gw.target], publisher);
      await until(() => mitm.seen.includes(`POST /v2/firmware/${r.id}/downloaded`), 20_000, 'the agent telling the relay its download is complete');
      await gw.agent.stop('SIGKILL');
      letGo();
      await until(async () => (await relay.operator.rolloutStatus(r.id)).devices[0]!.state === 'downloaded', 10_000, 'the relay marks it downloaded');
    } finally {
      mitm.hold = () => undefined;
    }
    return { gw, r };
  }

  test('a download verified just before a kill is installed at the next start, though the relay offers it no more', { timeout: 60_000 }, async () => {
    const { gw, r } = await killedAfterItsDownload('kill-window', 7);
    assert.ok((await stateFile(gw))!.staged, 'the verified download is recorded before the relay is told');
    gw.start();
    await gw.agent.waitFor(line('a verified firmware download outlived a restart; installing it', r.id), 20_000, 'installed from staging');
    assert.equal(await settled(gw, r, 'installed after the restart'), 'installed');
    assert.equal((await stateFile(gw))!.installed.counter, 7);
    assert.deepEqual(await installLog(gw), ['start 7', 'done 7']);
    assert.equal(mitm.seen.filter((x) => x === `GET /v2/firmware/${r.id}`).length, 1, 'the offer is not fetched again');
  });

  test('a verified download lost while the agent was down is reported failed, not forgotten', { timeout: 60_000 }, async () => {
    const { gw, r } = await killedAfterItsDownload('kill-lost', 9);
    await rm(path.join(gw.env.stateDir, 'firmware', 'staging', r.id), { recursive: true });
    gw.start();
    const lost = await gw.agent.waitFor(line('a verified firmware download was lost before its install', r.id), 20_000, 'the loss reported');
    assert.equal(lost.level, 50);
    assert.equal(await settled(gw, r, 'reported'), 'failed');
    const device = (await relay.operator.rolloutStatus(r.id)).devices[0]!;
    assert.match(device.reason ?? '', /the verified download was lost before its install: the staged file is gone/);
    assert.deepEqual(await installLog(gw), [], 'nothing was installed');
    assert.equal((await stateFile(gw))!.installed.counter, 0);
  });
});
