/**
 * MQTT tap benchmark against a local mosquitto: 50 topics, publish then collect().
 *   - cold start: start() until all 50 retained values are readable (1 CONNECT + 50 SUBSCRIBE)
 *   - publish→collect: 50 QoS 1 publishes until collect() shows every new value
 *   - collect() alone: the snapshot cost the agent core pays each interval
 */
import type { MqttClient } from 'mqtt';
import { measure, percentile, type Row } from '../../common/table.js';
import { silentLogger } from '../../common/log.js';
import { validate } from '../../common/schema.js';
import { connectTestClient, startMosquitto } from '../../test/helpers/mosquitto.js';
import { MqttTap } from './driver.js';
import { mqttTapSchema } from './schema.js';

const TOPICS = 50;
const ROUNDS = 100;
const COLD_STARTS = 10;
const SECTION = 'agent';
const PROVIDER = 'mqtt.js + mosquitto';

const topic = (i: number) => `bench/line/${i}/value`;

function makeTap(url: string, round: number): MqttTap {
  // Staleness is not measured here: the agent's default interval (15 s) as the effective interval.
  const config = { interval: 15_000, ...validate(mqttTapSchema, {
    name: `bench-${round}`,
    type: 'mqtt',
    url,
    qos: 1,
    points: Array.from({ length: TOPICS }, (_, i) => ({ name: `p${i}`, topic: topic(i), json: '$.v' })),
  }) };
  return new MqttTap(config, { logger: silentLogger() });
}

async function publishAll(publisher: MqttClient, value: number, retain = false): Promise<void> {
  await Promise.all(Array.from({ length: TOPICS }, (_, i) => publisher.publishAsync(topic(i), JSON.stringify({ v: value }), { qos: 1, retain })));
}

/** Polls collect() (no timers, so the measurement resolution is the event loop's) until every point shows `value`. */
async function untilAll(tap: MqttTap, value: number, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const readings = await tap.collect(Date.now() + 1000);
    if (readings.every((r) => r.value === value)) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`mqtt bench: values ${value} not all seen within ${timeoutMs} ms`);
}

export async function benchMqtt(): Promise<Row[]> {
  const broker = await startMosquitto();
  let publisher: MqttClient | undefined;
  const taps: MqttTap[] = [];
  try {
    publisher = await connectTestClient(broker.url);
    const rows: Row[] = [];

    await publishAll(publisher, -1, true);
    const coldMs: number[] = [];
    let coldRequests = 0;
    for (let round = 0; round < COLD_STARTS; round++) {
      const tap = makeTap(broker.url, round);
      taps.push(tap);
      const t0 = performance.now();
      await tap.start();
      await untilAll(tap, -1);
      coldMs.push(performance.now() - t0);
      coldRequests = tap.status().requests;
      await tap.stop();
    }
    rows.push({
      section: SECTION, name: `mqtt cold start, ${TOPICS} retained topics`, provider: PROVIDER,
      p50_ms: percentile(coldMs, 50), p95_ms: percentile(coldMs, 95),
      note: `start() until all ${TOPICS} readable; ${coldRequests} requests (CONNECT + SUBSCRIBE per topic), ${COLD_STARTS} runs`,
    });

    const tap = makeTap(broker.url, COLD_STARTS);
    taps.push(tap);
    await tap.start();
    await untilAll(tap, -1);
    const latencies: number[] = [];
    const messagesBefore = tap.messages;
    for (let round = 0; round < ROUNDS; round++) {
      const t0 = performance.now();
      await publishAll(publisher, round);
      await untilAll(tap, round);
      latencies.push(performance.now() - t0);
    }
    const messages = tap.messages - messagesBefore;
    rows.push({
      section: SECTION, name: `mqtt publish ${TOPICS} topics → collect() sees all`, provider: PROVIDER,
      p50_ms: percentile(latencies, 50), p95_ms: percentile(latencies, 95),
      ops_per_s: (TOPICS * ROUNDS * 1000) / latencies.reduce((a, b) => a + b, 0),
      note: `QoS 1, ${ROUNDS} rounds, ${messages} messages received, ${tap.status().requests} requests; ops = messages/s`,
    });

    const snapshot = await measure(() => tap.collect(Date.now() + 1000), 2000, 100);
    rows.push({ section: SECTION, name: `mqtt collect() of ${TOPICS} points`, provider: PROVIDER, ...snapshot, note: 'snapshot only, no I/O' });
    await Promise.all(Array.from({ length: TOPICS }, (_, i) => publisher!.publishAsync(topic(i), '', { qos: 1, retain: true })));
    return rows;
  } finally {
    await Promise.all(taps.map((tap) => tap.stop()));
    await publisher?.endAsync(true);
    await broker.close();
  }
}
