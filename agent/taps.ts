/**
 * Builds driver taps from config entries. The drivers load their protocol libraries lazily
 * (node-opcua-client only on start of an OPC-UA tap), so unused kinds cost no memory.
 */
import type { Logger } from '../common/log.js';
import type { Tap, TapEventListener } from './tap.js';
import type { AgentConfig, TapConfig } from './config.js';
import { tapInterval } from './config.js';
import { createModbusTap } from './modbus/index.js';
import { createOpcuaTap } from './opcua/index.js';
import { createMqttTap } from './mqtt/index.js';

export function createTap(config: AgentConfig, tap: TapConfig, deps: { logger: Logger; onEvent: TapEventListener }): Tap {
  // Drivers derive timeouts and staleness from the interval: give them the effective one.
  const logger = deps.logger.child({ tap: tap.name });
  const interval = tapInterval(config, tap);
  switch (tap.type) {
    case 'modbus':
      return createModbusTap({ ...tap, interval }, { logger, onEvent: deps.onEvent });
    case 'opcua':
      return createOpcuaTap({ ...tap, interval }, { logger, onEvent: deps.onEvent });
    case 'mqtt':
      return createMqttTap({ ...tap, interval }, { logger, onEvent: deps.onEvent });
  }
}

/** Logs tap transitions with the reason (never values): warn when a tap goes down, info when up. */
export function tapEventLogger(logger: Logger): TapEventListener {
  const last = new Map<string, string>();
  return (event) => {
    const key = `${event.state}:${event.reason ?? ''}`;
    if (last.get(event.tap) === key) return;
    last.set(event.tap, key);
    if (event.state === 'up') logger.info({ tap: event.tap }, 'tap up');
    else logger.warn({ tap: event.tap, reason: event.reason }, 'tap down');
  };
}
