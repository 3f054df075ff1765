/**
 * The plant's MQTT side: Debian's `mosquitto` broker as a child process on a loopback port
 * (anonymous, no persistence), and a publisher sending the plant's JSON telemetry, retained,
 * so a subscriber that connects late gets the current value at once.
 *
 *   plant/area1/valve1/telemetry   {"ts":"<ISO time>","position":55.3,"unit":"%"}
 *   plant/area1/outlet1/telemetry  {"ts":"<ISO time>","flow":16.59,"unit":"m3/h"}
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import type { PlantState } from './model.js';
import { MQTT_TOPICS, roundTo } from './points.js';
import { freeLoopbackPort } from '../common/ports.js';

const CANDIDATES = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto', '/usr/local/bin/mosquitto'];

export class PlantSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlantSetupError';
  }
}

export function mosquittoBinary(): string {
  const found = CANDIDATES.find((file) => existsSync(file));
  if (!found) throw new PlantSetupError(`mosquitto is not installed (looked in ${CANDIDATES.join(', ')}); install the Debian package: sudo apt-get install mosquitto (scripts/start.sh does it)`);
  return found;
}

export interface PlantMqtt {
  port: number;
  url: string;
  publish(s: PlantState): Promise<void>;
  close(): Promise<void>;
}

/**
 * Resolves once this mosquitto logged "mosquitto version … running": it bound its listener (a
 * connect to the port could reach another program that holds it). Rejects when it exits first.
 */
function waitForRunning(port: number, child: ChildProcess, output: () => string, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      child.stderr!.off('data', check);
      child.off('close', check);
      if (err) reject(err);
      else resolve();
    };
    const check = () => {
      if (/^\d+: mosquitto version \S+ running$/m.test(output())) return done();
      if (child.exitCode !== null || child.signalCode !== null) done(new PlantSetupError(`mosquitto exited (${child.exitCode ?? child.signalCode}) before listening on ${port}: ${output().trim()}`));
    };
    const timer = setTimeout(() => done(new PlantSetupError(`mosquitto not running on ${port} after ${timeoutMs} ms: ${output().trim()}`)), timeoutMs);
    // After the output listener that collects the log (registered first by the caller).
    child.stderr!.on('data', check);
    child.on('close', check);
    check();
  });
}

/** Free ports tried when none is given (mosquitto cannot bind port 0 and report it). */
const PORT_ATTEMPTS = 5;

/**
 * Starts mosquitto with a config written into `dir`, then connects the publisher. On `port`, or
 * (port undefined) on a free loopback port: mosquitto cannot bind port 0 and report the port, so
 * one is picked free, and when another process took it before mosquitto bound it, mosquitto
 * exits ("Address already in use") and the next free port is tried.
 */
export async function startMqtt(options: { port?: number; dir: string; pickPort?: () => Promise<number> }): Promise<PlantMqtt> {
  const pickPort = options.pickPort ?? freeLoopbackPort;
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await pickPort());
    try {
      return await startMqttOn(port, options.dir);
    } catch (err) {
      if (options.port !== undefined || !(err instanceof PortTakenError) || attempt >= PORT_ATTEMPTS) throw err;
    }
  }
}

/** mosquitto exited because its port was taken. */
class PortTakenError extends PlantSetupError {}

async function startMqttOn(port: number, dir: string): Promise<PlantMqtt> {
  const binary = mosquittoBinary();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const config = [
    'persistence false',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information', // "mosquitto version … running": the listener is bound (waitForRunning)
    // As root mosquitto would switch to the `mosquitto` user, which may not read this folder.
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    'allow_anonymous true',
    `listener ${port} 127.0.0.1`,
  ];
  const configFile = path.join(dir, 'mosquitto.conf');
  await writeFile(configFile, config.join('\n') + '\n', { mode: 0o600 });
  const child = spawn(binary, ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString('utf8')).slice(-8192);
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve())); // after its stderr ended
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  };
  let client: MqttClient;
  try {
    await waitForRunning(port, child, () => log);
    // mosquitto runs: the CONNACK is only late when this process is busy (the OPC-UA server
    // starting beside it blocks the event loop for seconds on a loaded machine; a 5 s timeout
    // then fired before the CONNACK already received was read).
    client = await connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, clientId: `ghostpipe-plant-${process.pid}`, reconnectPeriod: 1000, connectTimeout: 30_000 });
  } catch (err) {
    await kill();
    await exited;
    if (/address already in use/i.test(log)) throw new PortTakenError(`mosquitto: port ${port} is taken: ${log.trim()}`);
    throw err;
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    async publish(s) {
      if (!client.connected) return; // the broker is down: a real transmitter just misses a beat
      const ts = new Date(s.time).toISOString();
      await Promise.all([
        client.publishAsync(MQTT_TOPICS.valve, JSON.stringify({ ts, position: roundTo(s.valvePercent, 1), unit: '%' }), { qos: 1, retain: true }),
        client.publishAsync(MQTT_TOPICS.outlet, JSON.stringify({ ts, flow: roundTo(s.outletFlowM3h, 2), unit: 'm3/h' }), { qos: 1, retain: true }),
      ]);
    },
    async close() {
      await client.endAsync(true).catch(() => undefined);
      await kill();
    },
  };
}
