/**
 * startPlant(): the simulated plant as a library. One model (model.ts) served over three
 * protocols on 127.0.0.1: Modbus TCP, OPC-UA and MQTT (mosquitto child process).
 * The model advances in real time every `tickMs`; pause() freezes it (tests compare exact values).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { silentLogger, type Logger } from '../common/log.js';
import { prng } from '../common/prng.js';
import { initialState, step, type PlantState } from './model.js';
import { PlantRegisters, startModbus, type PlantModbus } from './modbus.js';
import { startMqtt, type PlantMqtt } from './mqtt.js';
import { startOpcua, type PlantOpcua } from './opcua.js';

export interface PlantOptions {
  /**
   * Fixed ports (tests pass reserved ones, test/helpers/ports.ts). Default: Modbus binds port 0;
   * OPC-UA and mosquitto, which cannot report (or advertise) a port 0 bind, take a free loopback
   * port and try the next one if it was taken before they bound it. The ports bound are in the
   * returned Plant (and the `plant ready` line of `ghostpipe plant`).
   */
  modbusPort?: number;
  opcuaPort?: number;
  mqttPort?: number;
  /** Folder for the OPC-UA PKI (<dir>/opcua-pki) and the mosquitto config; default: a temp folder removed at stop(). */
  dataDir?: string;
  /** Model step and publish period (default 500 ms). */
  tickMs?: number;
  /** Seed of the noise generator (default: random). */
  seed?: number;
  logger?: Logger;
}

export interface Plant {
  modbus: { port: number };
  opcua: { port: number; endpoint: string; certificateFile: string };
  mqtt: { port: number; url: string };
  /** The current model state (what every server is serving right now). */
  snapshot(): PlantState;
  /** Publishes the current state once more, then stops the model: served values stay constant. */
  pause(): Promise<PlantState>;
  resume(): void;
  stop(): Promise<void>;
}

export async function startPlant(options: PlantOptions = {}): Promise<Plant> {
  const logger = options.logger ?? silentLogger();
  const tickMs = options.tickMs ?? 500;
  const random = prng(options.seed ?? Math.floor(Math.random() * 2 ** 32));
  const tempDir = options.dataDir === undefined ? await mkdtemp(path.join(os.tmpdir(), 'ghostpipe-plant-')) : undefined;
  const dataDir = path.resolve(options.dataDir ?? tempDir!);
  let state = initialState(Date.now());
  const registers = new PlantRegisters();
  registers.update(state);

  let modbus: PlantModbus | undefined;
  let opcua: PlantOpcua | undefined;
  let mqtt: PlantMqtt | undefined;
  const closeAll = async () => {
    await Promise.allSettled([modbus?.close(), opcua?.close(), mqtt?.close()]);
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
  };
  try {
    modbus = await startModbus(registers, options.modbusPort);
    [opcua, mqtt] = await Promise.all([
      startOpcua({ pkiDir: path.join(dataDir, 'opcua-pki'), logger, ...(options.opcuaPort !== undefined ? { port: options.opcuaPort } : {}) }),
      startMqtt({ dir: path.join(dataDir, 'mosquitto'), ...(options.mqttPort !== undefined ? { port: options.mqttPort } : {}) }),
    ]);
  } catch (err) {
    await closeAll();
    throw err;
  }
  const servers = { modbus, opcua, mqtt };

  let publishing: Promise<void> = Promise.resolve();
  const serve = () => {
    registers.update(state);
    servers.opcua.update(state);
    publishing = servers.mqtt.publish(state).catch((err: Error) => logger.warn({ err: err.message }, 'mqtt publish failed'));
  };
  serve();
  await publishing;

  let paused = false;
  const timer = setInterval(() => {
    if (paused) return;
    state = step(state, Date.now() - state.time, random);
    serve();
  }, tickMs);

  let stopped = false;
  return {
    modbus: { port: servers.modbus.port },
    opcua: { port: servers.opcua.port, endpoint: servers.opcua.endpoint, certificateFile: servers.opcua.certificateFile },
    mqtt: { port: servers.mqtt.port, url: servers.mqtt.url },
    snapshot: () => state,
    async pause() {
      paused = true;
      await publishing;
      serve();
      await publishing;
      return state;
    },
    resume() {
      paused = false;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await publishing;
      await closeAll();
    },
  };
}
