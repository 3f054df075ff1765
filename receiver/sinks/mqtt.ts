/**
 * MQTT publish to an existing broker, one message per reading (payload: the JSON record).
 * QoS 1 by default: write() resolves when the broker acknowledged every message (PUBACK).
 * While the broker is unreachable write() fails at once (nothing is queued inside mqtt.js), so
 * the envelope is not acknowledged and comes back later.
 */
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { ReadingRecord } from '../records.js';
import { SinkError, type Sink } from './sink.js';

export interface MqttSinkOptions {
  url: string;
  /** Placeholders: {device} {tap} {point} {stream} {quality}. */
  topic: string;
  qos: 0 | 1 | 2;
  retain: boolean;
  username?: string;
  password?: string;
  ca?: Buffer;
  clientId?: string;
  timeoutMs: number;
}

/** MQTT wildcard and level characters in a value would change the topic's meaning: replace them. */
const topicSafe = (value: string): string => value.replace(/[+#/\u0000]/g, '_');

export function renderTopic(template: string, r: ReadingRecord): string {
  return template.replace(/\{(device|tap|point|stream|quality)\}/g, (_m, name: string) => topicSafe(String(r[name as keyof ReadingRecord])));
}

export class MqttSink implements Sink {
  readonly name: string;
  private client: MqttClient | undefined;

  constructor(private readonly o: MqttSinkOptions) {
    const u = new URL(o.url);
    this.name = `mqtt ${u.protocol}//${u.host}`; // never the credentials
  }

  async open(): Promise<void> {
    const options: IClientOptions = {
      protocolVersion: 5,
      reconnectPeriod: 2000,
      connectTimeout: this.o.timeoutMs,
      queueQoSZero: false,
      clean: true,
      writeCache: false, // no 65,536-Buffer number cache in mqtt-packet (~7 MB of heap)
      ...(this.o.username !== undefined ? { username: this.o.username } : {}),
      ...(this.o.password !== undefined ? { password: this.o.password } : {}),
      ...(this.o.ca !== undefined ? { ca: this.o.ca } : {}),
      ...(this.o.clientId !== undefined ? { clientId: this.o.clientId } : {}),
    };
    this.client = connect(this.o.url, options);
    this.client.on('error', () => undefined); // surfaced by write(); mqtt.js keeps reconnecting
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.o.timeoutMs); // start anyway; writes fail until connected
      this.client!.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async write(records: ReadingRecord[]): Promise<void> {
    const client = this.client;
    if (!client || !client.connected) throw new SinkError(this.name, 'not connected to the broker');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new SinkError(this.name, `no acknowledgement within ${this.o.timeoutMs} ms`)), this.o.timeoutMs);
    });
    try {
      await Promise.race([
        Promise.all(records.map((r) => client.publishAsync(renderTopic(this.o.topic, r), JSON.stringify(r), { qos: this.o.qos, retain: this.o.retain }))),
        timeout,
      ]);
    } catch (err) {
      if (err instanceof SinkError) throw err;
      throw new SinkError(this.name, `publish failed: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.client?.endAsync(true).catch(() => undefined);
    this.client = undefined;
  }
}
