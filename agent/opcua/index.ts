/**
 * The OPC-UA tap: agent/opcua. Importing this module does not load node-opcua-client; the
 * driver imports it on start(), so agents without OPC-UA taps never pay for it.
 */
import type { Tap } from '../tap.js';
import { createOpcuaTapDriver, type OpcuaTapDeps, type OpcuaTapInput } from './driver.js';

export { opcuaTapSchema, processOpcuaTap, defaultPolicy, type OpcuaTapConfig, type OpcuaPointConfig, type OpcuaTapSettings, type OpcuaPointSettings } from './schema.js';
export { parseNodeId } from './node-id.js';
export type { OpcuaTapDeps, OpcuaTapInput } from './driver.js';

/** The tap for processed settings (opcuaTapSchema) at the tap's effective interval. */
export function createOpcuaTap(settings: OpcuaTapInput, deps: OpcuaTapDeps): Tap {
  return createOpcuaTapDriver(settings, deps);
}
