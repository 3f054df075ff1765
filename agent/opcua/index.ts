/**
 * The OPC-UA tap: agent/opcua. Importing this module does not load node-opcua-client; the
 * driver imports it on start(), so agents without OPC-UA taps never pay for it.
 */
import type { Tap } from '../tap.js';
import { createOpcuaTapDriver, type OpcuaTapDeps } from './driver.js';
import type { OpcuaTapConfig } from './schema.js';

export { opcuaTapSchema, type OpcuaTapConfig, type OpcuaPointConfig } from './schema.js';
export { parseNodeId } from './node-id.js';

export function createOpcuaTap(config: OpcuaTapConfig, deps: OpcuaTapDeps): Tap {
  return createOpcuaTapDriver(config, deps);
}
