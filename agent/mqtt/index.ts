/** The MQTT tap (subscribe only): schema, settings types and factory for the agent core. */
import type { Logger } from '../../common/log.js';
import type { Tap } from '../tap.js';
import { MqttTap, type MqttTapInput } from './driver.js';

export { mqttTapSchema, mqttPointSchema, processMqttTap, type MqttTapConfig, type MqttPointConfig, type MqttTapSettings, type MqttPointSettings } from './schema.js';
export { MqttTap, type MqttTapInput } from './driver.js';

/** The tap for processed settings (mqttTapSchema) at the tap's effective interval. */
export function createMqttTap(settings: MqttTapInput, deps: { logger: Logger }): Tap {
  return new MqttTap(settings, deps);
}
