/**
 * A real Debian `mosquitto` broker (MQTT 5 / 3.1.1) for tests, on loopback ports reserved for this
 * test process (test/helpers/ports.ts: mosquitto cannot report a port 0 bind, and restarts on the
 * same port), with a generated config in a temp dir.
 *
 *   const broker = await startMosquitto({ tls: true, users: [{ username: 'agent', password: 'pw' }] });
 *   broker.url                 // mqtt://127.0.0.1:<reserved port>
 *   broker.tls?.url            // mqtts://127.0.0.1:<reserved port>, server cert for CN/SAN "localhost" and 127.0.0.1
 *   broker.tls?.caFile         // test CA (generated now with the openssl CLI), plus clientCertFile/clientKeyFile
 *   await broker.stop(); await broker.start()   // down (SIGKILL, as a crash) and up again on the same ports
 *   await broker.restart()
 *   await broker.close()       // SIGTERM (fails unless mosquitto exits 0), delete the temp dir, release the ports; idempotent
 *
 * Listeners bind 127.0.0.1 only. Persistence is off, so a restart forgets retained messages.
 * With `users`, anonymous clients are refused (password file made with mosquitto_passwd);
 * `acl` limits what they may read and write.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { releasePort, reservePort } from './ports.js';
import { stopChild } from './stop.js';

const run = promisify(execFile);

export interface MosquittoOptions {
  /** Add a TLS listener with a test CA generated at start. */
  tls?: boolean;
  /** With TLS: the TLS listener also demands a client certificate signed by the test CA. */
  requireClientCertificate?: boolean;
  /** Username/password pairs; when given, anonymous clients are refused. */
  users?: { username: string; password: string }[];
  /** Contents of a mosquitto ACL file (e.g. "user agent\ntopic read plant/#"); needs `users`. */
  acl?: string;
}

export interface MosquittoTls {
  url: string;
  port: number;
  caFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** Name in the server certificate (also valid: IP 127.0.0.1). */
  serverName: string;
}

export interface MosquittoBroker {
  host: '127.0.0.1';
  port: number;
  url: string;
  tls?: MosquittoTls;
  dir: string;
  /** Broker output so far (stdout + stderr, last 64 KiB), for failure messages. */
  output(): string;
  running(): boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

const candidates = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto', '/usr/local/bin/mosquitto'];

/** The mosquitto binary, or a clear error telling how to install it. */
export function mosquittoPath(): string {
  const found = candidates.find((file) => existsSync(file));
  if (!found) {
    throw new Error('mosquitto is not installed (looked in ' + candidates.join(', ') + '); run scripts/install-deps.sh --test');
  }
  return found;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  try {
    await run('openssl', args, { cwd: dir });
  } catch (err) {
    throw new Error(`openssl ${args[0]} failed (is openssl installed? run scripts/install-deps.sh --test): ${(err as Error).message}`);
  }
}

/** A P-256 test CA, a server certificate for localhost/127.0.0.1 and a client certificate. */
async function makeTestPki(dir: string): Promise<{ caFile: string; serverCert: string; serverKey: string; clientCertFile: string; clientKeyFile: string }> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(dir, ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=ghostpipe-test-ca']);
  await writeFile(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  await writeFile(path.join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [name, cn] of [['server', 'localhost'], ['client', 'ghostpipe-agent']] as const) {
    await openssl(dir, ['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    await openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`]);
    await chmod(path.join(dir, `${name}.key`), 0o600);
  }
  const file = (name: string) => path.join(dir, name);
  return { caFile: file('ca.crt'), serverCert: file('server.crt'), serverKey: file('server.key'), clientCertFile: file('client.crt'), clientKeyFile: file('client.key') };
}

function waitForPort(port: number, child: ChildProcess, output: () => string, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        return reject(new Error(`mosquitto exited (${child.exitCode ?? child.signalCode}) before listening on ${port}:\n${output()}`));
      }
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(); });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() - started > timeoutMs) return reject(new Error(`mosquitto not listening on ${port} after ${timeoutMs} ms:\n${output()}`));
        setTimeout(attempt, 20);
      });
    };
    attempt();
  });
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<MosquittoBroker> {
  const binary = mosquittoPath();
  const dir = await mkdtemp(path.join(tmpdir(), 'ghostpipe-mosquitto-'));
  const ports: number[] = [];
  const release = () => ports.forEach(releasePort);
  try {
    const port = await reservePort();
    ports.push(port);
    const lines = [
      'persistence false',
      'log_dest stderr',
      'log_type error', 'log_type warning', 'log_type notice', 'log_type information',
      // As root mosquitto would switch to the `mosquitto` user, which cannot read this 0700 temp dir.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      `allow_anonymous ${options.users ? 'false' : 'true'}`,
    ];
    if (options.users) {
      const passwordFile = path.join(dir, 'passwords');
      await writeFile(passwordFile, '', { mode: 0o600 });
      for (const user of options.users) {
        try {
          await run('mosquitto_passwd', ['-b', passwordFile, user.username, user.password]);
        } catch (err) {
          throw new Error(`mosquitto_passwd failed (run scripts/install-deps.sh --test): ${(err as Error).message}`);
        }
      }
      lines.push(`password_file ${passwordFile}`);
    }
    if (options.acl !== undefined) {
      const aclFile = path.join(dir, 'acl');
      await writeFile(aclFile, options.acl + '\n', { mode: 0o600 });
      lines.push(`acl_file ${aclFile}`);
    }
    lines.push(`listener ${port} 127.0.0.1`);
    let tls: MosquittoTls | undefined;
    if (options.tls) {
      const pki = await makeTestPki(dir);
      const tlsPort = await reservePort();
      ports.push(tlsPort);
      lines.push(`listener ${tlsPort} 127.0.0.1`, `cafile ${pki.caFile}`, `certfile ${pki.serverCert}`, `keyfile ${pki.serverKey}`,
        `require_certificate ${options.requireClientCertificate ? 'true' : 'false'}`);
      tls = { url: `mqtts://127.0.0.1:${tlsPort}`, port: tlsPort, caFile: pki.caFile, clientCertFile: pki.clientCertFile, clientKeyFile: pki.clientKeyFile, serverName: 'localhost' };
    }
    const configFile = path.join(dir, 'mosquitto.conf');
    await writeFile(configFile, lines.join('\n') + '\n', { mode: 0o600 });

    let child: ChildProcess | undefined;
    let log = '';
    const output = () => log;
    const append = (chunk: Buffer) => { log = (log + chunk.toString('utf8')).slice(-65536); };

    const start = async () => {
      if (child && child.exitCode === null && child.signalCode === null) return;
      const proc = spawn(binary, ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      child = proc;
      proc.stdout?.on('data', append);
      proc.stderr?.on('data', append);
      proc.on('error', (err) => append(Buffer.from(`spawn error: ${err.message}\n`)));
      await waitForPort(port, proc, output);
      if (tls) await waitForPort(tls.port, proc, output);
    };
    const stop = async () => {
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      proc.kill('SIGKILL'); // as a crash would: no clean DISCONNECT to clients
      await exited;
    };
    let closed = false;
    const broker: MosquittoBroker = {
      host: '127.0.0.1',
      port,
      url: `mqtt://127.0.0.1:${port}`,
      tls,
      dir,
      output,
      running: () => !!child && child.exitCode === null && child.signalCode === null,
      start,
      stop,
      restart: async () => { await stop(); await start(); },
      close: async () => {
        if (closed) return;
        closed = true;
        const problem = child ? await stopChild(child, 'mosquitto') : undefined;
        await rm(dir, { recursive: true, force: true });
        release();
        if (problem) throw new Error(`${problem}\n${output()}`);
      },
    };
    try {
      await start();
    } catch (err) {
      await broker.close();
      throw err;
    }
    return broker;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    release();
    throw err;
  }
}

/** A plain mqtt.js client for tests (publisher or observer); reconnect disabled. Call endAsync() when done. */
export async function connectTestClient(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  return connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 5, ...options });
}
