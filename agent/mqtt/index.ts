/** The MQTT tap (subscribe only): schema, config type and factory for the agent core. */
import type { Logger } from '../../common/log.js';
import type { Tap } from '../tap.js';
import { MqttTap } from './driver.js';
import type { MqttTapConfig } from './schema.js';

export { mqttTapSchema, mqttPointSchema, type MqttTapConfig, type MqttPointConfig } from './schema.js';
export { MqttTap, MqttConfigError } from './driver.js';

export function createMqttTap(config: MqttTapConfig, deps: { logger: Logger }): Tap {
  return new MqttTap(config, deps);
}
