/**
 * The whole conduit as separate processes on loopback: the simulated plant (in this process, so
 * the test can freeze it and know every served value), relay, agent and receiver (`ghostpipe`
 * child processes), a file sink. Readings of all three tap kinds arrive intact; a relay killed
 * with SIGKILL and a receiver killed with SIGKILL lose nothing and duplicate nothing.
 */
import { after, before, describe, test } from 'node:test';
import { failIfKeptAlive } from '../helpers/exit-guard.js';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { startPlant, type Plant } from '../../plant/plant.js';
import { reservePort } from '../helpers/ports.js';
import { expectedReadings } from '../../plant/points.js';
import type { Conduit } from '../../plant/conduit.js';
import { INTERVAL_MS, duplicateReadings, lastFrame, makeConduit, stopConduit, readSink, until, untilContiguous, type SinkRecord } from '../helpers/conduit.js';

const POINTS = 11;

failIfKeptAlive();

describe('end to end: plant -> agent -> relay -> receiver -> file sink', () => {
  let plant: Plant | undefined;
  let conduit: Conduit;
  let dir: string;
  let sinkFile: string;

  before(async () => {
    ({ conduit, dir, sinkFile } = await makeConduit('flow'));
    // Modbus binds port 0; OPC-UA and mosquitto cannot report a port 0 bind: reserved ports.
    plant = await startPlant({ dataDir: path.join(dir, 'plant'), tickMs: 100, seed: 7, opcuaPort: await reservePort(), mqttPort: await reservePort() });
    await conduit.prepareKeys();
    await conduit.startRelay();
    await conduit.ensureApiKeys();
    // MQTT values are not republished while the plant is paused: keep them fresh for the exact-value check.
    await conduit.writeAgentConfig({ modbusPort: plant.modbus.port, opcuaEndpoint: plant.opcua.endpoint, opcuaCertificate: plant.opcua.certificateFile, mqttUrl: plant.mqtt.url }, '1h');
    await conduit.enroll();
    await conduit.writeReceiverConfig();
    await conduit.startReceiver();
    await conduit.startAgent();
  });

  after(async () => {
    try {
      if (conduit) await stopConduit(conduit);
    } finally {
      await plant?.stop();
      if (dir) await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test('readings from Modbus, OPC-UA and MQTT arrive intact, with quality and timestamps', async () => {
    // Wait until every tap is up (one all-good frame), then freeze the plant and compare exactly.
    await until('an all-good frame', async () => {
      const records = await readSink(sinkFile);
      const byFrame = new Map<string, SinkRecord[]>();
      for (const r of records) byFrame.set(r.frame, [...(byFrame.get(r.frame) ?? []), r]);
      return [...byFrame.values()].some((f) => f.length === POINTS && f.every((r) => r.quality === 'good'));
    }, 60_000);
    const state = await plant!.pause();
    const pausedAt = Date.now();
    try {
      // A frame polled well after the pause. (MQTT readings keep the arrival time of the last
      // message, which the pause published once more: the broker does not repeat it.)
      const frame = await until('a frame polled after the pause', async () => {
        const records = await readSink(sinkFile);
        const byFrame = new Map<string, SinkRecord[]>();
        for (const r of records) byFrame.set(r.frame, [...(byFrame.get(r.frame) ?? []), r]);
        return [...byFrame.values()].find((f) => f.length === POINTS && f.every((r) => r.tap === 'mqtt1' || Date.parse(r.readTime) > pausedAt + 2 * INTERVAL_MS));
      }, 15_000);
      const expected = expectedReadings(state);
      assert.equal(frame.length, Object.keys(expected).length);
      for (const r of frame) {
        const key = `${r.tap}/${r.point}`;
        assert.ok(key in expected, `unexpected point ${key}`);
        assert.equal(r.quality, 'good', `${key}: ${r.reason}`);
        assert.equal(r.stale, false, key);
        assert.equal(r.reason, null, key);
        const want = expected[key]!;
        if (typeof want === 'bigint') {
          assert.equal(r.type, 'bigint', key);
          assert.equal(r.value, want.toString(), key);
        } else {
          assert.equal(r.value, want, key);
        }
        assert.equal(r.device, conduit.keys!.did);
        assert.match(r.readTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      }
      const byKey = new Map(frame.map((r) => [`${r.tap}/${r.point}`, r]));
      // Units travel with the readings.
      assert.equal(byKey.get('plc1/level')!.unit, 'm');
      assert.equal(byKey.get('opcua1/tank-temperature')!.unit, '°C');
      assert.equal(byKey.get('mqtt1/outlet-flow')!.unit, 'm3/h');
      // Source timestamps: OPC-UA's source time and the MQTT JSON "ts" are the plant's value time.
      const valueTime = new Date(state.time).toISOString();
      for (const key of ['opcua1/tank-temperature', 'opcua1/motor-temperature', 'opcua1/status', 'mqtt1/valve-position', 'mqtt1/outlet-flow']) {
        assert.equal(byKey.get(key)!.sourceTime, valueTime, `${key} sourceTime`);
      }
      assert.notEqual(byKey.get('opcua1/status')!.serverTime, null, 'OPC-UA server timestamp');
    } finally {
      plant!.resume();
    }
  });

  test('relay killed with SIGKILL mid-flow and restarted: every frame reaches the sink exactly once', async () => {
    await until('frames flowing', async () => (await lastFrame(sinkFile)) >= 3n);
    const linesAtKill = conduit.agent!.lines.length;
    await conduit.relay!.kill();
    const atKill = await lastFrame(sinkFile);
    // Frames built while the relay is down stay in the agent's RAM backlog: the relay comes back
    // once the agent failed to upload one (it logs the relay unreachable).
    await until('the agent finding the relay unreachable', () =>
      conduit.agent!.lines.slice(linesAtKill).some((l) => l.json?.['msg'] === 'relay unreachable; frames are kept in the RAM backlog'), 30_000);
    await conduit.startRelay();
    const records = await untilContiguous(sinkFile, atKill + 8n, 45_000);
    assert.deepEqual(duplicateReadings(records), []);
    for (const f of new Set(records.map((r) => r.frame))) {
      assert.equal(records.filter((r) => r.frame === f).length, POINTS, `frame ${f} complete`);
    }
  });

  test('receiver killed with SIGKILL and restarted: no duplicates at the sink', async () => {
    const before = await lastFrame(sinkFile);
    await until('more frames', async () => (await lastFrame(sinkFile)) >= before + 2n);
    await conduit.receiver!.kill();
    const atKill = await lastFrame(sinkFile);
    // Envelopes wait at the relay for the receiver to come back.
    const operator = await conduit.operator();
    await until('envelopes waiting at the relay', async () => (await operator.stats()).envelopes.pending >= 2, 30_000);
    await conduit.startReceiver();
    const records = await untilContiguous(sinkFile, atKill + 6n, 45_000);
    assert.deepEqual(duplicateReadings(records), []);
    const envelopes = new Map<string, Set<string>>();
    for (const r of records) envelopes.set(r.envelope, (envelopes.get(r.envelope) ?? new Set()).add(r.frame));
    // Each envelope's frames appear under that envelope only (a frame is never in two envelopes at the sink).
    const frameOwners = new Map<string, string>();
    for (const [envelope, frames] of envelopes) {
      for (const f of frames) {
        assert.equal(frameOwners.get(f) ?? envelope, envelope, `frame ${f} delivered in two envelopes`);
        frameOwners.set(f, envelope);
      }
    }
  });

  test('SIGTERM stops the agent after flushing; everything it sent is delivered', async () => {
    assert.equal(await conduit.agent!.stop(), 0);
    const stopped = conduit.agent!.lines.find((l) => String(l.json?.['msg']).startsWith('agent stopped'));
    assert.equal(stopped?.json?.['flushed'], true, 'agent flushed its backlog');
    const operator = await conduit.operator();
    await until('the relay queue empty', async () => {
      const stats = await operator.stats();
      return stats.envelopes.pending === 0 && stats.envelopes.leased === 0;
    }, 20_000);
    const records = await readSink(sinkFile);
    const last = await lastFrame(sinkFile);
    await untilContiguous(sinkFile, last, 20_000);
    assert.deepEqual(duplicateReadings(records), []);
    assert.equal(await conduit.receiver!.stop(), 0);
    assert.equal(await conduit.relay!.stop(), 0);
  });
});
