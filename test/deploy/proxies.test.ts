/**
 * The shipped reverse-proxy configs, run for real: Debian's nginx with deploy/nginx/ghostpipe.conf
 * and Debian's caddy with deploy/caddy/Caddyfile, each on loopback with a test CA in front of a
 * relay process (only the listen address, the upstream port and the certificate paths are
 * replaced). Through each: an agent enrolls and delivers to a receiver (agent -> proxy -> relay ->
 * proxy -> receiver), a 5 MiB envelope goes up and comes back byte for byte, a 20 s long-poll is
 * answered by the relay rather than cut by the proxy, the relay names the real client, not the
 * X-Forwarded-For a client forged, and afterwards no file the proxy wrote holds any of the
 * ciphertext (its temp folders stay empty).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { cleanupAll, makeDevice, makeReceiver, startRelay, tempDir, type RelayProcess } from '../helpers/relay.js';
import { agentConfig, cli, killAllAgents, makeAgentEnv, startAgent, until, writeAgentConfig } from '../helpers/agent.js';
import { killAllChildren, readLines, run } from '../helpers/receiver.js';
import { startModbusTcpServer, type ModbusTcpTestServer } from '../helpers/modbus-server.js';
import { reservePort } from '../helpers/ports.js';
import { repoRoot } from '../helpers/paths.js';
import { makeCa, type TestCa } from '../helpers/tls.js';
import { stopChildren } from '../helpers/stop.js';
import { RelayClient } from '../../common/relay-client.js';
import { bundlePaths } from '../../common/keyfile.js';
import { CONTENT_TYPE, KEM, sealEnvelope } from '../../protocol/envelope/index.js';

const MiB = 1024 * 1024;

interface Proxy { url: string; dir: string; tmp: string; child: ChildProcess; output(): string }

/** The shipped file with its deployment placeholders replaced; each must be there (the test runs what ships). */
async function shipped(file: string, replacements: [string, string][]): Promise<string> {
  let text = await readFile(path.join(repoRoot, file), 'utf8');
  for (const [from, to] of replacements) {
    assert.ok(text.includes(from), `${file} no longer contains "${from}"`);
    text = text.split(from).join(to);
  }
  return text;
}

function spawnProxy(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): { child: ChildProcess; output(): string } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  return { child, output: () => output };
}

async function listening(port: number, proc: { child: ChildProcess; output(): string }, what: string): Promise<void> {
  await until(() => new Promise<boolean>((resolve) => {
    if (proc.child.exitCode !== null) throw new Error(`${what} exited ${proc.child.exitCode}: ${proc.output()}`);
    const socket = net.connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true); });
    socket.on('error', () => resolve(false));
  }), 20_000, () => `${what} listening on ${port}: ${proc.output()}`);
}

async function startNginx(port: number, relayPort: number, tls: TestCa): Promise<Proxy> {
  const dir = await tempDir();
  const tmp = path.join(dir, 'tmp');
  await mkdir(tmp);
  await writeFile(path.join(dir, 'ghostpipe.conf'), await shipped('deploy/nginx/ghostpipe.conf', [
    ['listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`], ['    listen [::]:443 ssl;\n', ''], ['server 127.0.0.1:8787;', `server 127.0.0.1:${relayPort};`],
    ['/etc/ghostpipe/tls/relay.crt', tls.cert], ['/etc/ghostpipe/tls/relay.key', tls.key], ['/var/log/nginx/ghostpipe.access.log', path.join(dir, 'access.log')],
  ]));
  // The main config a Debian host has around conf.d, with every temp path in this test's folder.
  await writeFile(path.join(dir, 'nginx.conf'), `user root;
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 512; }
http {
  client_body_temp_path ${tmp}/client_body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  include ${dir}/ghostpipe.conf;
}
`);
  const proc = spawnProxy('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir, '-e', path.join(dir, 'error.log')]);
  await listening(port, proc, 'nginx');
  return { url: `https://127.0.0.1:${port}`, dir, tmp, ...proc };
}

async function startCaddy(port: number, relayPort: number, tls: TestCa): Promise<Proxy> {
  const dir = await tempDir();
  const tmp = path.join(dir, 'tmp');
  await mkdir(tmp);
  const file = path.join(dir, 'Caddyfile');
  await writeFile(file, await shipped('deploy/caddy/Caddyfile', [
    ['relay.example.com {', `https://127.0.0.1:${port} {`], ['127.0.0.1:8787', `127.0.0.1:${relayPort}`],
    ['/etc/ghostpipe/tls/relay.crt', tls.cert], ['/etc/ghostpipe/tls/relay.key', tls.key],
  ]));
  const proc = spawnProxy('caddy', ['run', '--config', file, '--adapter', 'caddyfile'], {
    ...process.env, HOME: dir, XDG_DATA_HOME: path.join(dir, 'data'), XDG_CONFIG_HOME: path.join(dir, 'config'), TMPDIR: tmp,
  });
  await listening(port, proc, 'caddy');
  return { url: `https://127.0.0.1:${port}`, dir, tmp, ...proc };
}

/** Every regular file under `dir`. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(full)));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

for (const kind of ['nginx', 'caddy'] as const) {
  describe(`${kind} in front of the relay (deploy/${kind === 'nginx' ? 'nginx/ghostpipe.conf' : 'caddy/Caddyfile'})`, { concurrency: false }, () => {
    let relay: RelayProcess;
    let proxy: Proxy;
    let tls: TestCa;
    let ca: Buffer;
    let plc: ModbusTcpTestServer;
    /** Slices of every ciphertext sent through the proxy: none may turn up in a file it wrote. */
    const secrets: Buffer[] = [];

    before(async () => {
      const relayPort = await reservePort();
      relay = await startRelay({ listen: [`127.0.0.1:${relayPort}`], trustedProxies: ['127.0.0.1'] });
      tls = makeCa(await tempDir(), kind);
      ca = await readFile(tls.ca);
      proxy = await (kind === 'nginx' ? startNginx : startCaddy)(await reservePort(), relayPort, tls);
      plc = await startModbusTcpServer();
    });

    after(async () => {
      try {
        await killAllAgents();
        await killAllChildren();
        await plc?.stop();
        if (proxy) await stopChildren([proxy.child], kind);
      } finally {
        await cleanupAll();
      }
    });

    test('agent -> proxy -> relay -> proxy -> receiver: enrollment and readings, over TLS with a pinned CA', { timeout: 90_000 }, async () => {
      plc.memory.setRegisters('holding', 0, [4242]);
      const env = await makeAgentEnv(relay);
      const config = agentConfig(env, proxy.url, [{ name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: plc.port, addressBase: 0, points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }] }]);
      (config['relay'] as Record<string, unknown>)['ca'] = tls.ca;
      (config['relay'] as Record<string, unknown>)['timeout'] = '15s';
      await writeAgentConfig(env, config);
      const enrolled = await cli(['enroll', '--config', env.configFile]);
      assert.equal(enrolled.code, 0, enrolled.stderr);
      const agent = startAgent(env.configFile);

      const rxDir = await tempDir();
      const apiKeyFile = path.join(rxDir, 'receiver.apikey');
      await writeFile(apiKeyFile, env.receiver.apiKey + '\n', { mode: 0o600 });
      await copyFile(path.join(relay.stateDir, 'relay.sign.pub'), path.join(rxDir, 'relay.sign.pub'));
      const sink = path.join(rxDir, 'readings.jsonl');
      const rxConfig = path.join(rxDir, 'receiver.yaml');
      await writeFile(rxConfig, JSON.stringify({
        relay: { url: proxy.url, ca: tls.ca, apiKeyFile, publicKey: path.join(rxDir, 'relay.sign.pub'), wait: '5s', checkpointInterval: '1s', timeout: '15s' },
        receiverKey: bundlePaths(env.dir, 'rx').kemKey,
        stateDir: path.join(rxDir, 'state'),
        trust: { devices: [{ publicKey: bundlePaths(env.dir, 'gw').signPub }] },
        sinks: [{ type: 'file', path: sink }],
        retry: { initial: '100ms', max: '1s' },
      }));
      const receiver = run(['receive', '--config', rxConfig]);
      // The first frames may say "connecting" (the tap's first connect races the first interval).
      const good = () => readLines(sink).filter((r) => r['quality'] === 'good');
      await until(() => good().length >= 3, 60_000, () => `three good readings through ${kind}: ${receiver.output().slice(-2000)}`);
      assert.ok(good().every((r) => r['point'] === 'flow' && r['value'] === 4242 && r['device'] === env.did), JSON.stringify(good().slice(0, 3)));
      assert.equal(await agent.stop(), 0);
      assert.equal(await receiver.kill(), 0);
    });

    test('a 5 MiB envelope up and back byte for byte; a 20 s long-poll is answered by the relay, not cut by the proxy', { timeout: 90_000 }, async () => {
      const device = await makeDevice(relay, 'enterprise');
      const rx = await makeReceiver(relay);
      const envelope = sealEnvelope({
        plaintext: new Uint8Array(randomBytes(3 * MiB)), recipient: { kemId: KEM.XWING, publicKey: rx.kem.publicKey },
        sender: { seed: device.signing.seed, publicKey: device.signing.publicKey }, streamId: 1, sequence: 1n, contentType: CONTENT_TYPE.READINGS,
      });
      assert.ok(envelope.length > 5 * MiB, `a 5 MiB bucket envelope (${envelope.length} bytes)`);
      for (const at of [1 * MiB, 3 * MiB, 5 * MiB]) secrets.push(Buffer.from(envelope.subarray(at, at + 64)));
      const up = new RelayClient({ baseUrl: proxy.url, apiKey: device.apiKey, ca, timeoutMs: 60_000 });
      await up.upload(envelope);
      const down = new RelayClient({ baseUrl: proxy.url, apiKey: rx.apiKey, ca, timeoutMs: 60_000 });
      const lease = await down.lease(rx.recipientKeyId, { waitMs: 5_000 });
      assert.ok(lease, 'the envelope is leased through the proxy');
      assert.ok(Buffer.from(lease.bytes).equals(Buffer.from(envelope)), 'the same bytes came back');
      await down.ack(lease.leaseId);

      const started = Date.now();
      const empty = await down.lease(rx.recipientKeyId, { waitMs: 20_000 });
      const waited = Date.now() - started;
      assert.equal(empty, null, 'nothing to lease: the relay answers empty when the wait is over');
      assert.ok(waited >= 19_500, `the long-poll lasted ${waited} ms (the proxy must not cut it short)`);
    });

    test('the relay names the real client behind the proxy, not the X-Forwarded-For it forged', { timeout: 30_000 }, async () => {
      const status = await new Promise<number>((resolve, reject) => {
        const req = https.request(`${proxy.url}/v2/stats`, {
          ca, localAddress: '127.0.0.2', headers: { authorization: `Bearer pgp_0123456789ab${'A'.repeat(43)}`, 'x-forwarded-for': '203.0.113.66' },
        }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
        req.on('error', reject);
        req.end();
      });
      assert.equal(status, 401);
      const line = () => relay.output().split('\n').filter((l) => l.includes('authentication failed')).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['keyId'] === '0123456789ab');
      await until(() => line() !== undefined, 10_000, 'the relay\'s authentication failure line');
      assert.equal(line()!['ip'], '127.0.0.2', 'the client as the proxy saw it');
      assert.ok(!relay.output().includes('203.0.113.66') || line()!['ip'] !== '203.0.113.66', 'the forged hop is not taken for the client');
    });

    test('no file the proxy wrote holds any of the ciphertext; its temp folders are empty', async () => {
      assert.ok(secrets.length > 0);
      const files = await filesUnder(proxy.dir);
      for (const file of files) {
        if ((await stat(file)).size > 64 * MiB) assert.fail(`${file}: unexpectedly large`);
        const bytes = await readFile(file);
        for (const s of secrets) assert.equal(bytes.indexOf(s), -1, `${file} holds ciphertext`);
      }
      const temp = await filesUnder(proxy.tmp);
      assert.deepEqual(temp, [], `${kind} wrote temp files: ${temp.join(', ')}`);
    });
  });
}
