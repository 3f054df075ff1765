import { CliError, optionalString, type Command, type ParsedArgs } from '../command.js';
import { createLogger } from '../../common/log.js';
import { parseDuration } from '../../common/duration.js';
import { startPlant } from '../../plant/plant.js';

function port(args: ParsedArgs, name: string): number | undefined {
  const text = optionalString(args, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1 || value > 65535) throw new CliError(`plant: --${name} must be a TCP port 1..65535, got "${text}"`, 2);
  return value;
}

export const plant: Command = {
  name: 'plant',
  summary: 'Run the simulated plant: Modbus TCP, OPC-UA and MQTT servers with a moving process (demo, tests)',
  usage: [
    'Usage: ghostpipe plant [--modbus-port N] [--opcua-port N] [--mqtt-port N] [--data-dir DIR] [--tick 500ms] [--seed N]',
    '',
    'A tank with a fill pump, an outlet valve and temperatures (plant/README.md has the model and',
    'the point map), served on 127.0.0.1 only: Modbus TCP (modbus-serial), OPC-UA (node-opcua, a dev',
    'dependency) and MQTT (Debian\'s mosquitto as a child process). Ports default to free ones; the',
    '"plant ready" log line names them. SIGINT/SIGTERM stop every server, exit 0.',
    '',
    'Options:',
    '  --modbus-port N   Modbus TCP port (default: a free port; never 502 by accident)',
    '  --opcua-port N    OPC-UA port (endpoint opc.tcp://127.0.0.1:N/ghostpipe-plant)',
    '  --mqtt-port N     mosquitto port',
    '  --data-dir DIR    OPC-UA PKI and mosquitto config (default: a temp folder, removed at exit)',
    '  --tick D          model step and publish period (default 500ms)',
    '  --seed N          noise seed, for a reproducible run',
  ].join('\n'),
  options: {
    'modbus-port': { type: 'string' },
    'opcua-port': { type: 'string' },
    'mqtt-port': { type: 'string' },
    'data-dir': { type: 'string' },
    tick: { type: 'string' },
    seed: { type: 'string' },
  },
  async run(args) {
    const modbusPort = port(args, 'modbus-port');
    const opcuaPort = port(args, 'opcua-port');
    const mqttPort = port(args, 'mqtt-port');
    let tickMs: number | undefined;
    const tick = optionalString(args, 'tick');
    if (tick !== undefined) {
      try {
        tickMs = parseDuration(tick);
      } catch (err) {
        throw new CliError(`plant: --tick: ${(err as Error).message}`, 2);
      }
      if (tickMs < 50 || tickMs > 60_000) throw new CliError(`plant: --tick must be 50ms..1m, got "${tick}"`, 2);
    }
    const seedText = optionalString(args, 'seed');
    if (seedText !== undefined && !/^\d{1,10}$/.test(seedText)) throw new CliError(`plant: --seed must be a whole number, got "${seedText}"`, 2);
    const logger = createLogger('plant', args.values.debug ? 'debug' : 'info');
    const dataDir = optionalString(args, 'data-dir');
    let running;
    try {
      running = await startPlant({
        logger,
        ...(modbusPort !== undefined ? { modbusPort } : {}),
        ...(opcuaPort !== undefined ? { opcuaPort } : {}),
        ...(mqttPort !== undefined ? { mqttPort } : {}),
        ...(dataDir !== undefined ? { dataDir } : {}),
        ...(tickMs !== undefined ? { tickMs } : {}),
        ...(seedText !== undefined ? { seed: Number(seedText) } : {}),
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new CliError(`plant: cannot start: ${code === 'EADDRINUSE' ? `address already in use (${(err as Error).message})` : (err as Error).message}`);
    }
    const p = running;
    logger.info({
      modbusPort: p.modbus.port, opcuaPort: p.opcua.port, opcuaEndpoint: p.opcua.endpoint, opcuaCertificate: p.opcua.certificateFile,
      mqttPort: p.mqtt.port, mqttUrl: p.mqtt.url,
    }, 'plant ready');
    return new Promise<number>((resolve) => {
      const onSignal = (signal: string) => {
        logger.info({ signal }, 'plant stopping');
        p.stop().then(() => resolve(0), (err: unknown) => {
          logger.error({ err: (err as Error).message }, 'plant stop failed');
          resolve(1);
        });
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    });
  },
};
