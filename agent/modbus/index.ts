/** The Modbus tap: TCP, RTU (serial) and RTU over TCP. See README.md. */
import type { Tap } from '../tap.js';
import type { Logger } from '../../common/log.js';
import { createModbusTap as createTap } from './driver.js';
import type { ModbusTapConfig } from './schema.js';

export { modbusTapSchema, type ModbusTapConfig } from './schema.js';
export { ModbusConfigError, MODBUS_DEFAULTS } from './driver.js';

export function createModbusTap(config: ModbusTapConfig, deps: { logger: Logger }): Tap {
  return createTap(config, deps);
}
