/**
 * Builds driver taps from config entries. The drivers load their protocol libraries lazily
 * (node-opcua-client only on start of an OPC-UA tap), so unused kinds cost no memory.
 */
import type { Logger } from '../common/log.js';
import type { Tap } from './tap.js';
import type { AgentConfig, TapConfig } from './config.js';
import { tapInterval } from './config.js';
import { createModbusTap } from './modbus/index.js';
import { createOpcuaTap } from './opcua/index.js';
import { createMqttTap } from './mqtt/index.js';

export function createTap(config: AgentConfig, tap: TapConfig, deps: { logger: Logger }): Tap {
  // Drivers derive timeouts and staleness from the interval: give them the effective one.
  const logger = deps.logger.child({ tap: tap.name });
  const interval = tapInterval(config, tap);
  switch (tap.type) {
    case 'modbus':
      return createModbusTap({ ...tap, interval }, { logger });
    case 'opcua':
      return createOpcuaTap({ ...tap, interval }, { logger });
    case 'mqtt':
      return createMqttTap({ ...tap, interval }, { logger });
  }
}
