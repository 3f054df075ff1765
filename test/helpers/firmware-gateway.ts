/**
 * A gateway for firmware tests and the firmware benchmark: device keys, an agent config with a
 * `firmware:` section (root pinned, the relay's checkpoint key, install and rollback commands
 * writing into the gateway's folder), enrolled and put in its group, its agent process running.
 */
import assert from 'node:assert/strict';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { RelayClient } from '../../common/relay-client.js';
import type { SignedRootJson } from '../../protocol/firmware/index.js';
import { agentConfig, cli, makeAgentEnv, startAgent, writeAgentConfig, type AgentEnv, type AgentProcess } from './agent.js';
import type { RelayProcess } from './relay.js';

export interface Gateway {
  env: AgentEnv;
  agent: AgentProcess;
  target: { did: string; kemPublicKey: Uint8Array };
  /** The gateway's own relay client (its device key, straight to the relay): what it may see. */
  client: RelayClient;
  /** Starts its agent (again); `agent` is the new process. */
  start(): AgentProcess;
}

export interface GatewayOptions {
  /** Where the agent sends (the relay, or a relay-in-the-middle in front of it). */
  relayUrl: string;
  root: SignedRootJson;
  taps: unknown[];
  group?: string;
  /** The relay's groups for this device (default: its own `group`). */
  relayGroups?: string[];
  /** Firmware settings over the defaults; given the gateway's folder (for the commands). */
  firmware?: (dir: string) => Record<string, unknown>;
  /** Top-level agent settings over the harness's (interval, logLevel, …). */
  agent?: Record<string, unknown>;
  /** Node flags for the agent process (the benchmark runs it as the systemd unit does). */
  nodeFlags?: string[];
}

/** An enrolled gateway whose agent is not started yet (a test runs it some other way). */
export type PreparedGateway = Omit<Gateway, 'agent' | 'start'>;

export async function prepareGateway(relay: RelayProcess, o: GatewayOptions): Promise<PreparedGateway> {
  const env = await makeAgentEnv(relay);
  const dir = env.dir;
  await writeFile(path.join(dir, 'root.json'), JSON.stringify(o.root));
  await copyFile(path.join(relay.stateDir, 'relay.sign.pub'), path.join(dir, 'relay.sign.pub'));
  const group = o.group ?? 'line-a';
  const config = agentConfig(env, o.relayUrl, o.taps, {
    firmware: {
      root: path.join(dir, 'root.json'), relayPublicKey: path.join(dir, 'relay.sign.pub'), group, hardwareId: 'hw1', checkInterval: '300ms', timeout: '20s',
      install: { command: ['sh', '-c', 'cp "$1" "$0/installed-$GHOSTPIPE_FIRMWARE_COUNTER.bin" && echo "flashed $GHOSTPIPE_FIRMWARE_NAME $GHOSTPIPE_FIRMWARE_VERSION"', dir] },
      rollback: { command: ['sh', '-c', 'echo "$GHOSTPIPE_FIRMWARE_VERSION" >> "$0/rolled-back"', dir] },
      ...o.firmware?.(dir),
    },
    ...o.agent,
  });
  // Enrollment signs and logs at the relay: on a loaded machine that outlasts the harness's 2 s.
  (config['relay'] as Record<string, unknown>)['timeout'] = '15s';
  await writeAgentConfig(env, config);
  const enrolled = await cli(['enroll', '--config', env.configFile]);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  for (const g of o.relayGroups ?? [group]) await relay.operator.setGroup(g, env.did, true);
  const apiKey = (await readFile(env.apiKeyFile, 'utf8')).trim();
  return { env, target: { did: env.did, kemPublicKey: env.kemPublicKey }, client: new RelayClient({ baseUrl: relay.url, apiKey }) };
}

export async function startGateway(relay: RelayProcess, o: GatewayOptions): Promise<Gateway> {
  const { env, target, client } = await prepareGateway(relay, o);
  const gw: Gateway = {
    env, agent: undefined as unknown as AgentProcess, target, client,
    start() {
      gw.agent = startAgent(env.configFile, o.nodeFlags);
      return gw.agent;
    },
  };
  gw.start();
  await gw.agent.waitFor((l) => l.msg === 'firmware updates on', 30_000, 'firmware updates on');
  return gw;
}
