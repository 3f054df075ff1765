/** The Modbus tap: TCP, RTU (serial) and RTU over TCP. See README.md. */
export { modbusTapSchema, processModbusTap, type ModbusTapConfig, type ModbusTapSettings } from './schema.js';
export { createModbusTap, type ModbusTapDeps } from './driver.js';
