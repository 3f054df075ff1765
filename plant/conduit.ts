/**
 * The whole conduit on one machine, every role a separate `ghostpipe` process: relay, agent and
 * receiver (the plant is started by the caller). Used by `ghostpipe demo` and the end-to-end
 * tests. Everything lives in one folder (`dir`, created 0700):
 *
 *   keys/      device.{sign,kem}.{key,pub}, receiver.kem.{key,pub}  (generated once, keys 0600)
 *              fleet.sign.{key,pub} (the operator's fleet key), device.approval (its approval)
 *   secrets/   device.apikey, receiver.apikey                       (issued by the relay, 0600)
 *   relay/     the relay's state directory (its signing key, log, key hashes)
 *   operator.key  the relay's operator key (plk_…), written by its first start, outside relay/
 *   agent/     agent state, agent/opcua-pki (the plant's certificate is trusted there)
 *   receiver/  witness, replay and revocation-scan state
 *   relay.yaml agent.yaml receiver.yaml, logs/<role>.log
 *
 * Keys and API keys are reused on later runs while the relay still knows them.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { bundlePaths, loadPublicKey, writeKeyBundle } from '../common/keyfile.js';
import { didFromSigningKey } from '../protocol/did.js';
import { keyIdHex } from '../protocol/keys.js';
import { RelayClient, RelayError } from '../common/relay-client.js';
import { OPCUA, OPCUA_NAMESPACE, MQTT_TOPICS, MODBUS } from './points.js';
import { RoleProcess, type LogLine } from './process.js';

export interface PlantEndpoints {
  modbusPort: number;
  opcuaEndpoint: string;
  /** The plant's OPC-UA certificate: copied into the agent's trusted store. */
  opcuaCertificate: string;
  mqttUrl: string;
}

export interface ConduitOptions {
  dir: string;
  /** Compiled CLI entry, dist/cli/ghostpipe.js. */
  cli: string;
  /** Agent interval in ms. */
  intervalMs: number;
  /** Relay plan of the device key (the e2e tests send faster than "pro" allows). */
  devicePlan?: string;
  /** Receiver sinks, as in receiver.yaml. */
  sinks: Record<string, unknown>[];
  /** Extra relay.yaml settings (e.g. leaseTimeout). */
  relaySettings?: Record<string, unknown>;
  /** How often the receiver fetches the checkpoint (default 5s). */
  receiverCheckpointInterval?: string;
  /** Extra receiver.yaml settings, merged at the top level. */
  receiverSettings?: Record<string, unknown>;
  /** Extra agent.yaml settings, merged at the top level. */
  agentSettings?: Record<string, unknown>;
  logLevel?: string;
  /** Start the roles in their own process groups (the demo: Ctrl-C reaches only it). */
  detached?: boolean;
  /** Every output line of every role. */
  onLine?: (role: string, line: LogLine) => void;
}

export interface DemoKeys {
  did: string;
  deviceSignPub: string;
  receiverKeyId: string;
}

const yaml = (value: unknown) => YAML.stringify(value, { lineWidth: 0 });

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(() => true, () => false);
}

async function writeSecret(file: string, text: string): Promise<void> {
  await fs.writeFile(file, text + '\n', { mode: 0o600 });
  await fs.chmod(file, 0o600);
}

/** The agent's taps for the simulated plant (point map in plant/README.md). */
export function plantTaps(plant: PlantEndpoints, pkiDir: string, mqttStaleAfter?: string): Record<string, unknown>[] {
  return [
    {
      name: 'plc1', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: plant.modbusPort, unitId: 1, addressBase: 0, timeout: '500ms', maxGap: 8,
      points: [
        { name: 'level', table: MODBUS.levelMm.table, address: MODBUS.levelMm.address, type: 'uint16', scale: 0.001, unit: 'm' },
        { name: 'pump-current', table: MODBUS.pumpCurrent.table, address: MODBUS.pumpCurrent.address, type: 'float32', unit: 'A' },
        { name: 'flow-total', table: MODBUS.flowTotalL.table, address: MODBUS.flowTotalL.address, type: 'uint32', byteOrder: 'CDAB', unit: 'L' },
        { name: 'pumped-ml', table: MODBUS.pumpedMl.table, address: MODBUS.pumpedMl.address, type: 'uint64', unit: 'mL' },
        { name: 'pump-running', table: MODBUS.pumpRunning.table, address: MODBUS.pumpRunning.address, type: 'bool' },
        { name: 'low-level-alarm', table: MODBUS.lowLevelAlarm.table, address: MODBUS.lowLevelAlarm.address, type: 'bool' },
      ],
    },
    {
      name: 'opcua1', type: 'opcua', endpoint: plant.opcuaEndpoint, securityMode: 'SignAndEncrypt', securityPolicy: 'Basic256Sha256', pkiDir, mode: 'read', timeout: '1s',
      points: [
        { name: 'tank-temperature', nodeId: `nsu=${OPCUA_NAMESPACE};s=${OPCUA.tankTemperature}`, unit: '°C' },
        { name: 'motor-temperature', nodeId: `nsu=${OPCUA_NAMESPACE};s=${OPCUA.motorTemperature}`, unit: '°C' },
        { name: 'status', nodeId: `nsu=${OPCUA_NAMESPACE};s=${OPCUA.status}` },
      ],
    },
    {
      name: 'mqtt1', type: 'mqtt', url: plant.mqttUrl, ...(mqttStaleAfter !== undefined ? { staleAfter: mqttStaleAfter } : {}),
      points: [
        { name: 'valve-position', topic: MQTT_TOPICS.valve, json: '$.position', timestamp: '$.ts', unit: '%' },
        { name: 'outlet-flow', topic: MQTT_TOPICS.outlet, json: '$.flow', timestamp: '$.ts', unit: 'm3/h' },
      ],
    },
  ];
}

export class Conduit {
  readonly dir: string;
  readonly paths;
  relayPort = 0;
  keys: DemoKeys | undefined;
  relay: RoleProcess | undefined;
  agent: RoleProcess | undefined;
  receiver: RoleProcess | undefined;

  constructor(readonly o: ConduitOptions) {
    this.dir = path.resolve(o.dir);
    const d = (...p: string[]) => path.join(this.dir, ...p);
    this.paths = {
      keys: d('keys'), secrets: d('secrets'), relayState: d('relay'), agentState: d('agent'), agentPki: d('agent', 'opcua-pki'),
      receiverState: d('receiver'), logs: d('logs'),
      relayConfig: d('relay.yaml'), agentConfig: d('agent.yaml'), receiverConfig: d('receiver.yaml'),
      deviceApiKey: d('secrets', 'device.apikey'), receiverApiKey: d('secrets', 'receiver.apikey'),
      operatorKey: d('operator.key'), relayPub: d('relay', 'relay.sign.pub'),
      fleetKey: d('keys', 'fleet.sign.key'), fleetPub: d('keys', 'fleet.sign.pub'), deviceApproval: d('keys', 'device.approval'),
    };
  }

  get relayUrl(): string {
    return `http://127.0.0.1:${this.relayPort}`;
  }

  /** Folders (0700) and the device and receiver keys, generated on the first run only. */
  async prepareKeys(): Promise<DemoKeys & { generated: boolean }> {
    for (const sub of ['', 'keys', 'secrets', 'agent', 'receiver', 'logs']) await fs.mkdir(path.join(this.dir, sub), { recursive: true, mode: 0o700 });
    let generated = false;
    const device = bundlePaths(this.paths.keys, 'device');
    if (!(await exists(device.signKey))) {
      await writeKeyBundle('device', this.paths.keys, 'device');
      generated = true;
    }
    // The operator's fleet key: in a deployment it stays offline; here it approves the one device.
    if (!(await exists(this.paths.fleetKey))) {
      await writeKeyBundle('fleet', this.paths.keys, 'fleet');
      generated = true;
    }
    const receiver = bundlePaths(this.paths.keys, 'receiver');
    if (!(await exists(receiver.kemKey))) {
      await writeKeyBundle('receiver', this.paths.keys, 'receiver');
      generated = true;
    }
    const sign = await loadPublicKey(device.signPub, ['ML-DSA-65']);
    const kem = await loadPublicKey(receiver.kemPub);
    this.keys = { did: didFromSigningKey(sign.publicKey), deviceSignPub: device.signPub, receiverKeyId: keyIdHex(kem.alg, kem.publicKey) };
    return { ...this.keys, generated };
  }

  /** Any `ghostpipe` command as a role process of this conduit (logs in logs/<role>.log). */
  spawn(role: string, args: string[]): RoleProcess {
    return new RoleProcess({
      name: role, cli: this.o.cli, args, cwd: this.dir, logFile: path.join(this.paths.logs, `${role}.log`), detached: this.o.detached ?? false,
      ...(this.o.onLine ? { onLine: (line: LogLine) => this.o.onLine!(role, line) } : {}),
    });
  }

  /**
   * Writes relay.yaml and starts the relay; waits until it listens. With relayPort 0 the relay
   * binds port 0 and relayPort becomes the port it reports in `relay listening` (a restart then
   * asks for that port again: a caller that restarts the relay should choose the port itself).
   */
  async startRelay(): Promise<RoleProcess> {
    await fs.writeFile(this.paths.relayConfig, yaml({
      listen: [`127.0.0.1:${this.relayPort}`], stateDir: this.paths.relayState, logLevel: this.o.logLevel ?? 'info', fleetPublicKey: this.paths.fleetPub,
      ...this.o.relaySettings,
    }), { mode: 0o600 });
    const relay = this.spawn('relay', ['relay', '--config', this.paths.relayConfig]);
    this.relay = relay;
    const listening = await relay.waitForLog('relay listening', 30_000);
    this.relayPort = Number(listening['port']);
    return relay;
  }

  operator(): Promise<RelayClient> {
    return fs.readFile(this.paths.operatorKey, 'utf8').then((key) => new RelayClient({ baseUrl: this.relayUrl, apiKey: key.trim() }));
  }

  /**
   * The device and receiver API keys: reused when the relay still lists them as active,
   * otherwise issued now with the operator key and written 0600.
   */
  async ensureApiKeys(): Promise<{ issued: string[] }> {
    const operator = await this.operator();
    const active = new Set((await operator.listKeys()).filter((k) => !k.revoked).map((k) => k.id));
    const issued: string[] = [];
    const keyIdOf = (key: string) => key.slice(4, 16);
    const current = async (file: string) => (await exists(file) ? (await fs.readFile(file, 'utf8')).trim() : '');
    const device = await current(this.paths.deviceApiKey);
    if (!active.has(keyIdOf(device))) {
      const k = await operator.createKey({ role: 'device', plan: this.o.devicePlan ?? 'pro', label: 'demo gateway (plant agent)' });
      await writeSecret(this.paths.deviceApiKey, k.key);
      issued.push(`device key ${k.id} (plan ${k.plan})`);
    }
    const receiver = await current(this.paths.receiverApiKey);
    if (!active.has(keyIdOf(receiver))) {
      const k = await operator.createKey({ role: 'receiver', plan: 'pro', label: 'demo receiver', recipients: [this.keys!.receiverKeyId] });
      await writeSecret(this.paths.receiverApiKey, k.key);
      issued.push(`receiver key ${k.id}`);
    }
    return { issued };
  }

  /** Writes agent.yaml for the simulated plant and trusts the plant's OPC-UA certificate. */
  async writeAgentConfig(plant: PlantEndpoints, mqttStaleAfter?: string): Promise<void> {
    const trusted = path.join(this.paths.agentPki, 'trusted', 'certs');
    await fs.mkdir(trusted, { recursive: true, mode: 0o700 });
    await fs.copyFile(plant.opcuaCertificate, path.join(trusted, 'ghostpipe-plant.pem'));
    await this.writeAgentConfigWithTaps(plantTaps(plant, this.paths.agentPki, mqttStaleAfter));
  }

  /** Writes agent.yaml with the given taps. */
  async writeAgentConfigWithTaps(taps: Record<string, unknown>[]): Promise<void> {
    await fs.mkdir(this.paths.agentState, { recursive: true, mode: 0o700 });
    const device = bundlePaths(this.paths.keys, 'device');
    await fs.writeFile(this.paths.agentConfig, yaml({
      device: { signKey: device.signKey, kemKey: device.kemKey },
      relay: { url: this.relayUrl, apiKeyFile: this.paths.deviceApiKey, timeout: '5s', statusInterval: `${Math.max(500, this.o.intervalMs)}ms` },
      recipients: [{ name: 'demo-receiver', publicKey: bundlePaths(this.paths.keys, 'receiver').kemPub }],
      interval: `${this.o.intervalMs}ms`,
      stateDir: this.paths.agentState,
      logLevel: this.o.logLevel ?? 'info',
      ...this.o.agentSettings,
      taps,
    }), { mode: 0o600 });
  }

  /**
   * `ghostpipe device approve` (the operator, with the fleet key) and `ghostpipe enroll --approval`
   * (the device), each as its own process; resolves with their output, rejects when one fails.
   */
  async enroll(): Promise<string> {
    const apiKeyId = (await fs.readFile(this.paths.deviceApiKey, 'utf8')).trim().slice(4, 16);
    const device = bundlePaths(this.paths.keys, 'device');
    const approve = this.spawn('approve', ['device', 'approve', '--fleet-key', this.paths.fleetKey, '--sign-pub', device.signPub, '--kem-pub', device.kemPub,
      '--api-key-id', apiKeyId, '--out', this.paths.deviceApproval, '--force']);
    const approved = await approve.exited;
    if (approved.code !== 0) throw new Error(`ghostpipe device approve failed (exit ${approved.code}):\n${approve.tail()}`);
    const p = this.spawn('enroll', ['enroll', '--config', this.paths.agentConfig, '--approval', this.paths.deviceApproval]);
    const { code } = await p.exited;
    if (code !== 0) throw new Error(`ghostpipe enroll failed (exit ${code}):\n${p.tail()}`);
    return [...approve.lines, ...p.lines].map((l) => l.text).join('\n');
  }

  async writeReceiverConfig(): Promise<void> {
    await fs.writeFile(this.paths.receiverConfig, yaml({
      relay: { url: this.relayUrl, apiKeyFile: this.paths.receiverApiKey, publicKey: this.paths.relayPub, wait: '5s', timeout: '10s', checkpointInterval: this.o.receiverCheckpointInterval ?? '5s' },
      receiverKey: bundlePaths(this.paths.keys, 'receiver').kemKey,
      stateDir: this.paths.receiverState,
      sinks: this.o.sinks,
      retry: { initial: '200ms', max: '2s' },
      logLevel: this.o.logLevel ?? 'info',
      ...this.o.receiverSettings,
      // Any device the fleet key approved (and the relay logged); settings may add to or replace this.
      trust: { enrolled: true, fleetPublicKey: this.paths.fleetPub, refresh: '1s', ...(this.o.receiverSettings?.['trust'] as Record<string, unknown> | undefined) },
    }), { mode: 0o600 });
  }

  async startReceiver(): Promise<RoleProcess> {
    const receiver = this.spawn('receiver', ['receive', '--config', this.paths.receiverConfig]);
    this.receiver = receiver;
    await receiver.waitForLog('receiver started', 30_000);
    return receiver;
  }

  async startAgent(): Promise<RoleProcess> {
    const agent = this.spawn('agent', ['agent', '--config', this.paths.agentConfig]);
    this.agent = agent;
    await agent.waitForLog('agent starting', 30_000);
    return agent;
  }

  /** SIGTERM to every running role, agent first (it flushes to the relay), relay last. */
  async stop(): Promise<void> {
    await Promise.all([this.agent?.stop(), this.receiver?.stop()]);
    await this.relay?.stop();
  }

  /** SIGKILL everything (test cleanup after a failure). */
  async kill(): Promise<void> {
    await Promise.all([this.agent?.kill(), this.receiver?.kill(), this.relay?.kill()]);
  }
}

export { RelayError };
