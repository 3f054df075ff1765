import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError, optionalString, type Command } from '../command.js';
import { parseDuration } from '../../common/duration.js';
import { Conduit, type PlantEndpoints } from '../../plant/conduit.js';
import { RoleExitedError } from '../../plant/process.js';
import { FrameGrouper, formatLogLine, isReadingRecord, type RecordLike } from '../../plant/pretty.js';
import type { LogLine } from '../../plant/process.js';

const cliPath = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'ghostpipe.js');

/** Info lines worth showing in the demo; warnings and errors are always shown. */
const SHOWN = new Set([
  'plant ready', 'relay listening', 'relay state loaded', 'created the operator key (plk_…); read it from this file, keep it off the relay host', 'fleet key pinned: new devices need its approval', 'created the relay signing key (ML-DSA-65)',
  'agent starting', 'device enrolled with the relay', 'tap up', 'relay reachable', 'receiver started', 'receiver stopped', 'agent stopped', 'relay stopped; every held envelope burned',
]);

/** The relay's documented default port (docs/RELAY.md); the demo uses it when it is free. */
const DEMO_RELAY_PORT = 8787;

/**
 * Starts the relay on 8787; when that port is taken, on port 0 (the relay reports the port it
 * got). Trying the bind itself, rather than probing first, leaves no gap for another process.
 */
async function startDemoRelay(conduit: Conduit, say: (text: string) => void): Promise<void> {
  conduit.relayPort = DEMO_RELAY_PORT;
  try {
    await conduit.startRelay();
  } catch (err) {
    if (!(err instanceof RoleExitedError) || !/address already in use|EADDRINUSE/.test(err.message)) throw err;
    say(`port ${DEMO_RELAY_PORT} is taken: the relay listens on a free port instead`);
    conduit.relayPort = 0;
    await conduit.startRelay();
  }
}

export const demo: Command = {
  name: 'demo',
  summary: 'Run the whole conduit on this machine: simulated plant, relay, agent and receiver (npm start)',
  usage: [
    'Usage: ghostpipe demo [--dir .demo] [--interval 2s] [--duration D] [--raw] [--verbose]',
    '',
    'Starts, each as its own process on 127.0.0.1: the simulated plant (`ghostpipe plant`), the relay,',
    'the agent (polling the plant over Modbus TCP, OPC-UA and MQTT) and the receiver, and prints the',
    'readings the receiver opened, one block per frame. First run: generates the device, receiver and',
    'fleet keys in DIR/keys (0600), the relay creates its key in DIR/relay and the operator key in',
    'DIR/operator.key, the operator key issues a device and a receiver API key, the fleet key approves',
    'the device (`ghostpipe device approve`) and it is enrolled; the receiver accepts devices the fleet',
    'key approved. Later runs reuse all of it.',
    'Ctrl-C stops every process (SIGTERM, agent first) and exits 0. Full logs: DIR/logs/.',
    '',
    'Options:',
    '  --dir DIR       demo folder (default .demo, relative to the current directory)',
    '  --interval D    agent interval (default 2s; production default 15s)',
    '  --duration D    stop by itself after D (default: run until Ctrl-C)',
    '  --raw           print the receiver\'s JSON lines as they are',
    '  --verbose       print every log line of every role',
  ].join('\n'),
  options: {
    dir: { type: 'string' },
    interval: { type: 'string' },
    duration: { type: 'string' },
    raw: { type: 'boolean' },
    verbose: { type: 'boolean' },
  },
  async run(args) {
    const duration = (name: string, fallback?: number): number | undefined => {
      const text = optionalString(args, name);
      if (text === undefined) return fallback;
      try {
        return parseDuration(text);
      } catch (err) {
        throw new CliError(`demo: --${name}: ${(err as Error).message}`, 2);
      }
    };
    const intervalMs = duration('interval', 2000)!;
    if (intervalMs < 300 || intervalMs > 60_000) throw new CliError('demo: --interval must be 300ms..1m', 2);
    const runFor = duration('duration');
    const dir = path.resolve(optionalString(args, 'dir') ?? '.demo');
    const raw = args.values.raw === true;
    const verbose = args.values.verbose === true;

    const say = (text: string) => process.stdout.write(text + '\n');
    const frames = new FrameGrouper((block) => say(block));
    const onLine = (role: string, line: LogLine) => {
      const json = line.json;
      if (role === 'receiver' && line.stream === 'stdout') {
        if (raw) say(line.text);
        else if (json && isReadingRecord(json)) frames.add(json as unknown as RecordLike);
        return;
      }
      if (!json) {
        if (verbose) say(`[${role}] ${line.text}`);
        return;
      }
      const level = typeof json['level'] === 'number' ? json['level'] : 30;
      if (verbose || level >= 40 || SHOWN.has(String(json['msg']))) say(formatLogLine(role, json));
    };

    // plan pro allows 60 uploads a minute: enough from 1 s up; faster demos need enterprise.
    const conduit = new Conduit({ dir, cli: cliPath, intervalMs, devicePlan: intervalMs < 1000 ? 'enterprise' : 'pro', sinks: [{ type: 'stdout' }, { type: 'file', path: path.join(dir, 'readings.jsonl') }], detached: true, onLine });
    let stopping: Promise<void> | undefined;
    let plant: ReturnType<Conduit['spawn']> | undefined;
    const stopAll = () => {
      stopping ??= (async () => {
        say('\nstopping: agent (flushes to the relay), receiver, relay, plant …');
        await conduit.stop();
        await plant?.stop();
        frames.flush();
        say(`stopped. Readings: ${path.join(dir, 'readings.jsonl')}; logs: ${conduit.paths.logs}/`);
      })();
      return stopping;
    };
    const interrupted = new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
      // stdout closed (e.g. `ghostpipe demo | head`): stop everything as on Ctrl-C.
      process.stdout.on('error', () => resolve());
    });

    say(`Ghost Pipe demo — everything on 127.0.0.1, state in ${dir}`);
    say(`The agent interval is shortened to ${intervalMs} ms for the demo (production default: 15 s). Ctrl-C stops.`);
    try {
      const keys = await conduit.prepareKeys();
      say(keys.generated ? `generated keys in ${conduit.paths.keys} (private keys 0600)` : `reusing keys in ${conduit.paths.keys}`);
      say(`device ${keys.did}`);
      say('starting the simulated plant (Modbus TCP, OPC-UA, MQTT); the first run creates its OPC-UA certificate …');
      plant = conduit.spawn('plant', ['plant', '--data-dir', path.join(dir, 'plant')]);
      const ready = (await Promise.race([plant.waitForLog('plant ready', 90_000), interrupted.then(() => undefined)])) ?? undefined;
      if (ready === undefined) return (await stopAll(), 0);
      const endpoints: PlantEndpoints = {
        modbusPort: Number(ready['modbusPort']), opcuaEndpoint: String(ready['opcuaEndpoint']),
        opcuaCertificate: String(ready['opcuaCertificate']), mqttUrl: String(ready['mqttUrl']),
      };
      await startDemoRelay(conduit, say);
      const { issued } = await conduit.ensureApiKeys();
      say(issued.length > 0 ? `the operator key (${conduit.paths.operatorKey}) issued: ${issued.join(', ')}` : 'reusing the device and receiver API keys');
      await conduit.writeAgentConfig(endpoints);
      const enrolled = await conduit.enroll();
      say(enrolled.trim());
      await conduit.writeReceiverConfig();
      await conduit.startReceiver();
      await conduit.startAgent();
      say(`configs: ${conduit.paths.agentConfig}, ${conduit.paths.receiverConfig}, ${conduit.paths.relayConfig}`);
      say('readings opened by the receiver (first frame after one interval):\n');
    } catch (err) {
      await stopAll();
      throw new CliError(`demo: ${(err as Error).message}`);
    }
    const died = Promise.race([conduit.relay!, conduit.agent!, conduit.receiver!, plant].map((p) => p.exited.then(() => p.name)));
    const timeUp = runFor === undefined ? new Promise<never>(() => undefined) : new Promise<void>((resolve) => setTimeout(resolve, runFor).unref());
    const why = await Promise.race([interrupted.then(() => 'signal'), timeUp.then(() => 'time'), died]);
    if (why !== 'signal' && why !== 'time') {
      say(`\n${why} exited unexpectedly; see ${path.join(conduit.paths.logs, `${why}.log`)}`);
      await stopAll();
      return 1;
    }
    await stopAll();
    return 0;
  },
};
