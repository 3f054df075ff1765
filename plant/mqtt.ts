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
import { connect } from 'node:net';
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

function waitForPort(port: number, child: ChildProcess, output: () => string, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null || child.signalCode !== null) return reject(new PlantSetupError(`mosquitto exited (${child.exitCode ?? child.signalCode}) before listening on ${port}: ${output().trim()}`));
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() - started > timeoutMs) return reject(new PlantSetupError(`mosquitto not listening on ${port} after ${timeoutMs} ms: ${output().trim()}`));
        setTimeout(attempt, 25);
      });
    };
    attempt();
  });
}

/** Starts mosquitto with a config written into `dir`, then connects the publisher. */
export async function startMqtt(options: { port?: number; dir: string }): Promise<PlantMqtt> {
  const binary = mosquittoBinary();
  await mkdir(options.dir, { recursive: true, mode: 0o700 });
  const port = options.port ?? (await freeLoopbackPort());
  const config = [
    'persistence false',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    // As root mosquitto would switch to the `mosquitto` user, which may not read this folder.
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    'allow_anonymous true',
    `listener ${port} 127.0.0.1`,
  ];
  const configFile = path.join(options.dir, 'mosquitto.conf');
  await writeFile(configFile, config.join('\n') + '\n', { mode: 0o600 });
  const child = spawn(binary, ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString('utf8')).slice(-8192);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  };
  let client: MqttClient;
  try {
    await waitForPort(port, child, () => log);
    client = await connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, clientId: `ghostpipe-plant-${process.pid}`, reconnectPeriod: 1000, connectTimeout: 5000 });
  } catch (err) {
    await kill();
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
