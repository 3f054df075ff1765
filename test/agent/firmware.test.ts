/**
 * Signed firmware on real gateways: agent processes against a real relay process, most of them
 * through a relay-in-the-middle that plays the hostile relay. Every attack of issue 12's list is
 * refused with an error line naming the check and a `refused` receipt in the log (where the relay
 * lets one through); the honest paths install, report, resume and burn. Install, health and
 * rollback commands are small shell commands writing into the gateway's folder.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { cleanupAll, refused, startRelay, type RelayProcess } from '../helpers/relay.js';
import { killAllAgents, until, type LogLine } from '../helpers/agent.js';
import { startGateway, type Gateway, type GatewayOptions } from '../helpers/firmware-gateway.js';
import { startModbusTcpServer, type ModbusTcpTestServer } from '../helpers/modbus-server.js';
import { startRelayInTheMiddle, json, withJson, type RelayInTheMiddle } from '../helpers/relay-in-the-middle.js';
import { makeRelease, publishRelease, rootJson, type Release } from '../helpers/firmware-release.js';
import { reservePort } from '../helpers/ports.js';
import { runCli } from '../helpers/cli.js';
import { decodeLogEntry } from '../../protocol/log-entries.js';
import { decodeReceipt, type SignedRootJson } from '../../protocol/firmware/index.js';
import { encodePrivateKeyPem, generatePrivateKey } from '../../protocol/keys.js';

const ERROR = 50;

let relay: RelayProcess;
let relayPort = 0;
let mitm: RelayInTheMiddle;
let plc: ModbusTcpTestServer;
const release = [generatePrivateKey('ML-DSA-65'), generatePrivateKey('ML-DSA-65')];
const publisher = generatePrivateKey('ML-DSA-65');

before(async () => {
  relayPort = await reservePort();
  relay = await startRelay({ listen: [`127.0.0.1:${relayPort}`] });
  mitm = await startRelayInTheMiddle(relay.url);
  plc = await startModbusTcpServer();
});

after(async () => {
  await killAllAgents();
  await mitm.close();
  await plc.stop();
  await cleanupAll();
});

/** An enrolled gateway through the relay-in-the-middle (unless `direct`), its agent running with a firmware section. */
function gateway(options: Omit<GatewayOptions, 'relayUrl' | 'taps' | 'root'> & { direct?: boolean; root?: SignedRootJson } = {}): Promise<Gateway> {
  return startGateway(relay, {
    ...options, relayUrl: options.direct ? relay.url : mitm.url, root: options.root ?? rootJson(release.slice(0, 1), 1),
    taps: [{ name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: plc.port, addressBase: 0, points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }] }],
  });
}

const receiptLine = (outcome: string, id: string) => (l: LogLine) => l.msg === 'firmware receipt logged' && l['outcome'] === outcome && l['packageId'] === id;
const refusalLine = (code: string, id: string) => (l: LogLine) => l.msg === 'firmware package refused' && l['code'] === code && l['packageId'] === id;
let nextCounter = 100;
/**
 * A receipt's deadline: the gateways' firmware requests time out after 20 s, and a receipt whose
 * POST timed out on a loaded relay (its log write waits for the disk) goes again at the next check.
 */
const RECEIPT_WAIT_MS = 60_000;

/** Waits for the refusal of `id` with `code` (an error line), then for its `refused` receipt in the relay's log. */
async function assertRefused(gw: Gateway, r: Release, code: string, reason: RegExp): Promise<void> {
  const line = await gw.agent.waitFor(refusalLine(code, r.id), 20_000, `refusal ${code} of ${r.manifest.version}`);
  assert.equal(line.level, ERROR);
  assert.match(String(line['reason']), reason);
  const logged = await gw.agent.waitFor(receiptLine('refused', r.id), RECEIPT_WAIT_MS, `refused receipt of ${r.manifest.version}`);
  const entry = decodeLogEntry((await relay.operator.entries(logged['leafIndex'] as number, (logged['leafIndex'] as number) + 1))[0]!.data);
  assert.equal(entry.type, 'receipt');
  const receipt = decodeReceipt((entry as { receipt: Uint8Array }).receipt);
  assert.equal(receipt.did, gw.env.did);
  assert.equal(receipt.outcome, 'refused');
  assert.match(receipt.reason, new RegExp(`^${code}: `));
  assert.equal(existsSync(path.join(gw.env.stateDir, 'firmware', 'staging', r.id)), false, 'nothing of a refused package stays staged');
}

async function installedCounter(gw: Gateway): Promise<number> {
  const file = path.join(gw.env.stateDir, 'firmware', 'state.json');
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  return (JSON.parse(await readFile(file, 'utf8')) as { installed: { counter: number } }).installed.counter;
}

test('a staged rollout from the operator CLI: install, receipts in the log, status, widen, 410, burn; an outsider sees nothing', { timeout: 120_000 }, async () => {
  const [a, b, outsider] = await Promise.all([gateway({ direct: true }), gateway({ direct: true }), gateway({ direct: true, group: 'line-z' })]);
  const dir = a.env.dir;
  const binary = new Uint8Array(Buffer.from('ghostpipe firmware '.repeat(4000)));
  await writeFile(path.join(dir, 'fw.bin'), binary);
  await writeFile(path.join(dir, 'operator.key'), relay.operatorKey, { mode: 0o600 });
  // The release key the gateways pin (root.json), as the offline signer keeps it.
  await writeFile(path.join(dir, 'release.sign.key'), encodePrivateKeyPem(release[0]!), { mode: 0o600 });
  const run = (...args: string[]) => runCli(args, { cwd: dir, timeoutMs: 60_000 });
  const op = ['--relay', relay.url, '--operator-key-file', 'operator.key'];
  assert.equal((await run('keygen', '--type', 'firmware', '--name', 'publisher', '--out', 'keys')).code, 0);
  assert.equal((await run('firmware', 'pack', 'fw.bin', '--out', 'pkg', '--name', 'gw-fw', '--version', '2.0.0', '--counter', '20', '--group', 'line-a',
    '--hardware', 'hw1', '--expires', '1d', '--chunk-size', '16KiB')).code, 0);
  assert.equal((await run('firmware', 'sign', 'pkg', '--key', 'release.sign.key')).code, 0);
  const published = await run('firmware', 'publish', 'pkg', '--publisher-key', 'keys/publisher.sign.key', '--device', a.env.did, '--device', b.env.did, '--first', '1', ...op);
  assert.equal(published.code, 0, published.stderr);
  const id = /\(([0-9a-f]{64})\)/.exec(published.stdout.toString())![1]!;

  // --first 1 offers it to the first target named (a); b is held back.
  const [first, second] = [a, b];
  await first.agent.waitFor(receiptLine('installed', id), RECEIPT_WAIT_MS, 'installed receipt');
  assert.equal(second.agent.lines.filter((l) => String(l.msg).startsWith('firmware download')).length, 0, 'b is held back');
  assert.deepEqual(new Uint8Array(await readFile(path.join(first.env.dir, 'installed-20.bin'))), binary);
  assert.equal(await installedCounter(first), 20);
  await refused(first.client.firmwareChunk(id, 0), 410, 'download_complete');
  const partial = await run('firmware', 'status', 'gw-fw@2.0.0', ...op);
  assert.equal(partial.code, 1);
  assert.match(partial.stdout.toString(), new RegExp(`${first.env.did} +installed +5/5 +receipt leaf \\d+`));
  assert.match(partial.stdout.toString(), new RegExp(`${second.env.did} +held_back +0/5`));

  assert.equal((await run('firmware', 'widen', 'gw-fw@2.0.0', ...op)).code, 0);
  await second.agent.waitFor(receiptLine('installed', id), RECEIPT_WAIT_MS, 'second installed receipt');
  const done = await run('firmware', 'status', id, '--json', ...op);
  assert.equal(done.code, 0, done.stdout.toString());
  const body = JSON.parse(done.stdout.toString()) as { burned: { reason: string }; devices: { did: string; state: string }[] };
  assert.equal(body.burned.reason, 'receipts');
  assert.deepEqual(body.devices.map((d) => d.state), ['installed', 'installed']);

  // Published again (as after a relay restart): reported, not installed twice.
  assert.equal((await run('firmware', 'publish', 'pkg', '--publisher-key', 'keys/publisher.sign.key', '--device', a.env.did, ...op)).code, 0);
  const again = await a.agent.waitFor((l) => receiptLine('installed', id)(l) && a.agent.lines.filter(receiptLine('installed', id)).length === 2, 30_000, 'the second receipt');
  assert.ok(again);
  assert.equal(a.agent.lines.filter((l) => l.msg === 'firmware install started').length, 1, 'installed once');
  assert.equal(outsider.agent.lines.filter((l) => String(l.msg).startsWith('firmware download')).length, 0, 'the outsider never downloads');
  assert.equal(existsSync(path.join(outsider.env.dir, 'installed-20.bin')), false);
});

test('an install that fails runs the rollback command, reports rolled_back and halts the staged rollout', { timeout: 150_000 }, async () => {
  const failing = () => ({ install: { command: ['sh', '-c', 'echo "flash write failed at block 7" >&2; exit 3'] } });
  const [gw, held] = await Promise.all([gateway({ group: 'line-f', firmware: failing }), gateway({ group: 'line-f', firmware: failing })]);
  const r = makeRelease({ counter: 7, group: 'line-f', signers: [release[0]!] });
  await publishRelease(relay.operator, r, [gw.target, held.target], publisher, { first: 1 });
  await gw.agent.waitFor(receiptLine('rolled_back', r.id), RECEIPT_WAIT_MS, 'rolled_back receipt');
  const line = gw.agent.lines.find((l) => l.msg === 'firmware install failed and was rolled back')!;
  assert.match(String(line['reason']), /install command: exit 3: flash write failed at block 7; rolled back/);
  assert.equal((await readFile(path.join(gw.env.dir, 'rolled-back'), 'utf8')).trim(), '1.7.0');
  assert.equal(await installedCounter(gw), 0, 'the floor does not move for a failed install');
  assert.deepEqual(readdirSync(path.join(gw.env.stateDir, 'firmware', 'staging')), [], 'the staged file is removed');
  const status = await relay.operator.rolloutStatus(r.id);
  assert.deepEqual(status.devices.map((d) => [d.did === gw.env.did ? 'gw' : 'held', d.state]).sort(), [['gw', 'rolled_back'], ['held', 'held_back']]);
  assert.match(status.devices.find((d) => d.did === gw.env.did)!.reason!, /flash write failed/);
  await refused(relay.operator.widenRollout(r.id, []), 409, 'rollout_halted');
});

test('refused by the manifest: rollback to a lower or equal counter, wrong group, wrong hardware, expired (freeze)', { timeout: 180_000 }, async () => {
  const gw = await gateway({ group: 'line-r', relayGroups: ['line-r', 'line-x'] });
  const installed = makeRelease({ counter: 5, group: 'line-r', signers: [release[0]!] });
  await publishRelease(relay.operator, installed, [gw.target], publisher);
  await gw.agent.waitFor(receiptLine('installed', installed.id), RECEIPT_WAIT_MS, 'installed 5');
  assert.equal(await installedCounter(gw), 5);

  const same = makeRelease({ counter: 5, version: '1.5.1', group: 'line-r', signers: [release[0]!] });
  await publishRelease(relay.operator, same, [gw.target], publisher);
  await assertRefused(gw, same, 'rollback', /release counter 5; the installed release has 5/);
  const lower = makeRelease({ counter: 3, group: 'line-r', signers: [release[0]!] });
  await publishRelease(relay.operator, lower, [gw.target], publisher);
  await assertRefused(gw, lower, 'rollback', /release counter 3/);

  const otherGroup = makeRelease({ counter: 9, group: 'line-x', signers: [release[0]!] });
  await publishRelease(relay.operator, otherGroup, [gw.target], publisher);
  await assertRefused(gw, otherGroup, 'wrong_group', /targets group line-x; this device is in line-r/);
  const otherHardware = makeRelease({ counter: 10, group: 'line-r', hardware: ['hw2', 'hw3'], signers: [release[0]!] });
  await publishRelease(relay.operator, otherHardware, [gw.target], publisher);
  await assertRefused(gw, otherHardware, 'wrong_hardware', /is for hardware hw2, hw3, not hw1/);

  // Freeze: the relay-in-the-middle holds the offer back until the manifest expired.
  const expiring = makeRelease({ counter: 11, group: 'line-r', expires: Date.now() + 3_000, signers: [release[0]!] });
  mitm.rewrite = async (method, url) => {
    if (method === 'GET' && url === `/v2/firmware/${expiring.id}`) while (Date.now() <= expiring.manifest.expires + 100) await new Promise((r) => setTimeout(r, 50));
    return undefined;
  };
  try {
    await publishRelease(relay.operator, expiring, [gw.target], publisher);
    const line = await gw.agent.waitFor(refusalLine('expired', expiring.id), 20_000, 'expired refusal');
    assert.match(String(line['reason']), /expired at/);
  } finally {
    mitm.rewrite = () => undefined;
  }
  assert.equal(await installedCounter(gw), 5, 'no refusal moves the floor');
});

test('a hostile relay: every forged, swapped or withheld part is refused before anything is installed', { timeout: 120_000 }, async () => {
  // This gateway pins a 2-of-2 root: one valid signature is not enough.
  const gw = await gateway({ group: 'line-h', root: rootJson(release, 2) });
  const make = (extra: Partial<Parameters<typeof makeRelease>[0]> = {}) => makeRelease({ counter: nextCounter++, group: 'line-h', signers: release, ...extra });
  const publish = (r: Release, options: { roots?: SignedRootJson[] } = {}) => publishRelease(relay.operator, r, [gw.target], publisher, options);
  const offer = (r: Release) => (method: string, url: string) => method === 'GET' && url === `/v2/firmware/${r.id}`;
  const chunk = (r: Release, i: number) => (method: string, url: string) => method === 'GET' && url === `/v2/firmware/${r.id}/chunks/${i}`;
  try {
    const below = make({ signers: [release[0]!] });
    await publish(below);
    await assertRefused(gw, below, 'below_threshold', /1 valid signatures by root keys, 2 required/);

    const stranger = make({ signers: [release[0]!, generatePrivateKey('ML-DSA-65')] });
    await publish(stranger);
    await assertRefused(gw, stranger, 'below_threshold', /1 by keys not in the firmware root/);

    const tampered = make();
    mitm.rewrite = (m, u, a) => {
      if (!offer(tampered)(m, u)) return undefined;
      const body = json(a);
      const bytes = Buffer.from(String(body['manifest']), 'base64');
      bytes[bytes.length - 1]! ^= 1; // the install hint's last byte, or the expiry
      return withJson(a, { ...body, manifest: bytes.toString('base64') });
    };
    await publish(tampered);
    await assertRefused(gw, tampered, 'wrong_package', /served another manifest/);

    // A rotation signed only by new keys: not by the threshold of the keys the gateway trusts.
    const usurper = [generatePrivateKey('ML-DSA-65'), generatePrivateKey('ML-DSA-65')];
    const unchained = make({ signers: usurper });
    mitm.rewrite = () => undefined;
    await publish(unchained, { roots: [rootJson(usurper, 2, 2)] });
    await assertRefused(gw, unchained, 'not_chained', /firmware root v2/);

    // Mix and match: chunk 1 of another release (same name, another counter) in place of this one's.
    const donor = make();
    const target = make();
    mitm.rewrite = (m, u, a) => (chunk(target, 1)(m, u) ? { ...a, body: Buffer.from(donor.chunks[1]!) } : undefined);
    await publish(target);
    await assertRefused(gw, target, 'bad_chunk', /chunk 1/);

    const corrupted = make();
    mitm.rewrite = (m, u, a) => {
      if (!chunk(corrupted, 2)(m, u)) return undefined;
      const body = Buffer.from(a.body);
      body[100]! ^= 0x40;
      return { ...a, body };
    };
    await publish(corrupted);
    await assertRefused(gw, corrupted, 'bad_chunk', /chunk 2/);

    const endless = make();
    mitm.rewrite = (m, u, a) => (chunk(endless, 0)(m, u) ? { ...a, body: Buffer.alloc(8 * 1024 * 1024, 7) } : undefined);
    await publish(endless);
    await assertRefused(gw, endless, 'bad_chunk', /more than the 4112 bytes the manifest declares/);

    const withheld = make();
    mitm.rewrite = (m, u, a) => (offer(withheld)(m, u) ? withJson(a, { ...json(a), keyWrap: '' }) : undefined);
    await publish(withheld);
    await assertRefused(gw, withheld, 'wrong_key', /no key wrap/);

    const borrowed = make();
    const other = generatePrivateKey('X-Wing');
    mitm.rewrite = (m, u, a) => (offer(borrowed)(m, u) ? withJson(a, { ...json(a), keyWrap: Buffer.from(borrowed.wrapFor(other.publicKey, publisher)).toString('base64') }) : undefined);
    await publish(borrowed);
    await assertRefused(gw, borrowed, 'wrong_key', /does not open for this device/);

    // Not in the log: another leaf index; the proof cannot verify, nothing is downloaded, no receipt.
    const unlogged = make();
    mitm.rewrite = (m, u, a) => (offer(unlogged)(m, u) ? withJson(a, { ...json(a), leafIndex: 0 }) : undefined);
    await publish(unlogged);
    await gw.agent.waitFor((l) => l.msg === 'firmware check failed; trying again at the next check' && /not proven to be in the relay's log/.test(String(l['reason'])), 20_000, 'not proven');
    // Stopped while the relay still lies: an honest offer would be installed at the next check.
    assert.equal(await gw.agent.stop(), 0);
    assert.equal(mitm.seen.filter((s) => s.startsWith(`GET /v2/firmware/${unlogged.id}/chunks/`)).length, 0, 'no chunk of an unlogged manifest is fetched');
    assert.equal(gw.agent.lines.filter((l) => l['packageId'] === unlogged.id && l.msg === 'firmware receipt logged').length, 0);
  } finally {
    mitm.rewrite = () => undefined;
  }
  assert.equal(await installedCounter(gw), 0);
  assert.equal(gw.agent.lines.filter((l) => l.msg === 'firmware install started').length, 0, 'nothing was installed');
});

test('a download resumes where it stopped, after an agent restart and after a relay restart', { timeout: 120_000 }, async () => {
  const gw = await gateway({ group: 'line-d' });
  const r = makeRelease({ counter: 40, group: 'line-d', size: 6 * 4096, signers: [release[0]!] });
  const gets = (i: number) => mitm.seen.filter((s) => s === `GET /v2/firmware/${r.id}/chunks/${i}`).length;
  let holdChunk = 2;
  let release2: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release2 = resolve));
  mitm.hold = (method, url) => (method === 'GET' && url === `/v2/firmware/${r.id}/chunks/${holdChunk}` ? held : undefined);
  try {
    await publishRelease(relay.operator, r, [gw.target], publisher);
    await until(() => gets(2) === 1, 20_000, 'the request for chunk 2');
    assert.equal(await gw.agent.stop(), 0, 'the agent stops cleanly in the middle of a download');
    holdChunk = -1;
    release2();
    gw.start();
    const resumed = await gw.agent.waitFor((l) => l.msg === 'firmware download resumed', 20_000, 'resumed after the agent restart');
    assert.equal(resumed['fromChunk'], 2);
    await gw.agent.waitFor(receiptLine('installed', r.id), RECEIPT_WAIT_MS, 'installed');
  } finally {
    mitm.hold = () => undefined;
  }
  assert.deepEqual([0, 1, 3, 4, 5].map(gets), [1, 1, 1, 1, 1], 'chunks on disk are not fetched again');
  assert.deepEqual(new Uint8Array(await readFile(path.join(gw.env.dir, 'installed-40.bin'))), r.plaintext);

  // The relay restarts in the middle (packages live in its RAM): the operator publishes again.
  const next = makeRelease({ counter: 41, group: 'line-d', size: 6 * 4096, signers: [release[0]!] });
  let letGo: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (letGo = resolve));
  mitm.hold = (method, url) => (method === 'GET' && url === `/v2/firmware/${next.id}/chunks/3` ? gate : undefined);
  try {
    await publishRelease(relay.operator, next, [gw.target], publisher);
    await until(() => mitm.seen.includes(`GET /v2/firmware/${next.id}/chunks/3`), 20_000, 'the request for chunk 3');
    assert.equal(await relay.stop(), 0);
    relay = await startRelay({ listen: [`127.0.0.1:${relayPort}`] }, { dir: relay.dir });
    letGo();
    await gw.agent.waitFor((l) => l.msg === 'firmware check failed; trying again at the next check' && l['code'] === 'not_found', 20_000, 'the check that meets the restarted relay');
    mitm.hold = () => undefined;
    await publishRelease(relay.operator, next, [gw.target], publisher);
    const resumed = await gw.agent.waitFor((l) => l.msg === 'firmware download resumed' && l['packageId'] === next.id, 20_000, 'resumed after the relay restart');
    assert.equal(resumed['fromChunk'], 3);
    await gw.agent.waitFor(receiptLine('installed', next.id), RECEIPT_WAIT_MS, 'installed after the relay restart');
  } finally {
    mitm.hold = () => undefined;
  }
  for (const i of [0, 1, 2]) assert.equal(mitm.seen.filter((s) => s === `GET /v2/firmware/${next.id}/chunks/${i}`).length, 1, `chunk ${i} once`);
  assert.equal(await installedCounter(gw), 41);
});

test('an install that restarts the agent is decided by the health command at the next start', { timeout: 150_000 }, async () => {
  const gw = await gateway({
    group: 'line-u',
    firmware: (dir) => ({
      // As a self-update does: the install restarts the agent's own service (here: SIGTERM to it)
      // and finishes while it is down.
      install: { command: ['sh', '-c', 'trap "" TERM; kill -TERM $PPID; sleep 0.3; cp "$1" "$0/installed.bin"', dir] },
      health: { command: ['sh', '-c', 'test -s "$0/installed.bin" || { echo "new release not running" >&2; exit 1; }', dir] },
    }),
  });
  const r = makeRelease({ counter: 50, group: 'line-u', signers: [release[0]!] });
  await publishRelease(relay.operator, r, [gw.target], publisher);
  await gw.agent.waitFor((l) => l.msg === 'firmware install started', 20_000, 'install started');
  // The install stops the agent itself (a SIGTERM from here could come before its trap is set).
  const { child } = gw.agent;
  const exitCode = child.exitCode ?? (await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code))));
  assert.equal(exitCode, 0, 'the agent stopped cleanly, its install undecided');
  const first = gw.agent;
  assert.equal(first.lines.filter((l) => l.msg === 'firmware receipt logged').length, 0);
  gw.start();
  const line = await gw.agent.waitFor((l) => l.msg === 'a firmware install was interrupted by a restart; the health command decides it', 20_000, 'interrupted');
  assert.equal(line['packageId'], r.id);
  await gw.agent.waitFor(receiptLine('installed', r.id), RECEIPT_WAIT_MS, 'installed, confirmed by health');
  assert.equal(await installedCounter(gw), 50);
  assert.deepEqual(new Uint8Array(await readFile(path.join(gw.env.dir, 'installed.bin'))), r.plaintext);
});
