/** Builds a running receiver from its config: keys, relay client, log witness, trust, replay state, sinks. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../common/log.js';
import { loadPublicKey, loadReceiverKey, readPrivateKeyFile } from '../common/keyfile.js';
import { RelayClient } from '../common/relay-client.js';
import { KEM } from '../protocol/envelope/index.js';
import { keyIdHex } from '../protocol/keys.js';
import type { ReceiverConfig, SinkConfig } from './config.js';
import { plainHttpOffLoopback } from '../common/transport.js';
import { LogIntegrityError, LogTrust } from '../common/log-trust.js';
import { UnprovenAnswers } from './unproven.js';
import { Backoff, sleep } from '../common/backoff.js';
import { DeviceTrust } from './trust.js';
import { RevocationWatch } from './revocations.js';
import { ReplayStore } from './state.js';
import { Receiver } from './receiver.js';
import type { Sink } from './sinks/sink.js';
import { StdoutSink } from './sinks/stdout.js';
import { FileSink } from './sinks/file.js';
import { MqttSink } from './sinks/mqtt.js';
import { WebhookSink } from './sinks/webhook.js';

export class SetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SetupError';
  }
}

/** A secret from a file: trimmed, never logged; warns when group or others may read it. */
export async function readSecretFile(file: string, warn: (message: string) => void): Promise<string> {
  let text: string;
  try {
    text = (await readPrivateKeyFile(file, warn)).trim();
  } catch (err) {
    throw new SetupError(`${(err as Error).message}`);
  }
  if (text === '') throw new SetupError(`${file}: the file is empty`);
  return text;
}

async function readPem(file: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    throw new SetupError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

async function makeSink(c: SinkConfig, warn: (m: string) => void): Promise<Sink> {
  switch (c.type) {
    case 'stdout':
      return new StdoutSink();
    case 'file':
      return new FileSink({ path: path.resolve(c.path), maxSize: c.maxSize, keep: c.keep });
    case 'mqtt':
      return new MqttSink({
        url: c.url, topic: c.topic, qos: c.qos, retain: c.retain, timeoutMs: c.timeout,
        ...(c.username !== undefined ? { username: c.username } : {}),
        ...(c.passwordFile !== undefined ? { password: await readSecretFile(c.passwordFile, warn) } : {}),
        ...(c.ca !== undefined ? { ca: await readPem(c.ca) } : {}),
        ...(c.clientId !== undefined ? { clientId: c.clientId } : {}),
      });
    case 'webhook': {
      const headers = { ...c.headers };
      if (c.bearerTokenFile !== undefined) headers['authorization'] = `Bearer ${await readSecretFile(c.bearerTokenFile, warn)}`;
      return new WebhookSink({ url: c.url, timeoutMs: c.timeout, retries: c.retries, headers, ...(c.ca !== undefined ? { ca: await readPem(c.ca) } : {}) });
    }
  }
}

export interface RunningReceiver {
  receiver: Receiver;
  close(): Promise<void>;
}

/** SIGTERM/SIGINT arrived while the start was still waiting for a verifiable relay answer. */
export class StartAborted extends Error {
  constructor() {
    super('stopped before the relay gave a verifiable answer');
    this.name = 'StartAborted';
  }
}

export async function startReceiver(config: ReceiverConfig, logger: Logger, signal?: AbortSignal): Promise<RunningReceiver> {
  const warn = (message: string) => logger.warn(message);
  const apiKey = await readSecretFile(config.relay.apiKeyFile, warn);
  if (!apiKey.startsWith('pgp_')) throw new SetupError(`${config.relay.apiKeyFile}: expected a pgp_… receiver API key`);
  let recipientKey;
  let relayKey;
  let fleetKey;
  try {
    recipientKey = await loadReceiverKey(config.receiverKey, warn);
    relayKey = await loadPublicKey(config.relay.publicKey, ['ML-DSA-65']);
    if (config.trust.fleetPublicKey !== undefined) fleetKey = await loadPublicKey(config.trust.fleetPublicKey, ['ML-DSA-65']);
  } catch (err) {
    throw new SetupError((err as Error).message);
  }
  const pinnedKeys: Uint8Array[] = [];
  const pinnedDids: string[] = [];
  for (const d of config.trust.devices) {
    if ('did' in d) pinnedDids.push(d.did);
    else {
      try {
        pinnedKeys.push((await loadPublicKey(d.publicKey, ['ML-DSA-65'])).publicKey);
      } catch (err) {
        throw new SetupError((err as Error).message);
      }
    }
  }
  const client = new RelayClient({
    baseUrl: config.relay.url, apiKey, timeoutMs: config.relay.timeout,
    ...(config.relay.ca !== undefined ? { ca: await readPem(config.relay.ca) } : {}),
  });
  const stateDir = path.resolve(config.stateDir);
  const replay = await ReplayStore.open(stateDir, config.replay.window);
  const unproven = new UnprovenAnswers({ logger, alertAfterMs: config.relay.unprovenAlertAfter });
  const openLog = () => LogTrust.open({
    client, relayPublicKey: relayKey.publicKey, stateFile: path.join(stateDir, 'witness.json'), newEpoch: config.relay.newEpoch,
    ...(config.relay.origin !== undefined ? { origin: config.relay.origin } : {}),
    // Envelopes the relay held in the old epoch are gone with its RAM; the agent re-sends what was not delivered.
    onNewEpoch: ({ from, to, previous }) => logger.warn({ from, to, previousSize: previous.size }, 'the relay started a new log epoch (same pinned key); following it'),
  });
  // An answer that proves nothing at start is retried like one later (docs/RECEIVER.md "Fault model").
  let log: LogTrust | undefined;
  const backoff = new Backoff({ initialMs: config.retry.initial, maxMs: config.retry.max });
  while (log === undefined) {
    try {
      log = await openLog();
      unproven.verified('checkpoint');
    } catch (err) {
      if (!(err instanceof LogIntegrityError && err.kind === 'unproven')) {
        await replay.close();
        throw err;
      }
      unproven.failed('checkpoint', err.code, err.message);
      await sleep(backoff.next(), signal);
      if (signal?.aborted) {
        await replay.close();
        throw new StartAborted();
      }
    }
  }
  const revocations = await RevocationWatch.open(client, log.witness.origin, path.join(stateDir, 'revocations.json'));
  const trust = new DeviceTrust({
    client, log, revocations, enrolled: config.trust.enrolled, pinnedDids, pinnedKeys, refreshMs: config.trust.refresh,
    ...(fleetKey ? { fleetPublicKey: fleetKey.publicKey } : {}),
  });
  const sinks: Sink[] = [];
  try {
    for (const c of config.sinks) sinks.push(await makeSink(c, warn));
    for (const sink of sinks) await sink.open();
  } catch (err) {
    for (const sink of sinks) await sink.close().catch(() => undefined);
    await replay.close();
    throw err;
  }
  const recipientKeyId = keyIdHex(recipientKey.alg, recipientKey.publicKey);
  const receiver = new Receiver({
    client, recipientKeyId, log, trust, replay, sinks, logger, stateDir,
    recipient: { kemId: recipientKey.alg === 'X-Wing' ? KEM.XWING : KEM.MLKEM768, seed: recipientKey.seed, publicKey: recipientKey.publicKey },
    maxAgeMs: config.replay.maxAge, maxFutureMs: config.replay.maxFuture,
    waitMs: config.relay.wait, checkpointIntervalMs: config.relay.checkpointInterval,
    retry: { initialMs: config.retry.initial, maxMs: config.retry.max },
    unproven,
  });
  if (plainHttpOffLoopback(config.relay.url)) {
    logger.warn({ relay: new URL(config.relay.url).origin }, 'relay.allowPlainHttp: the API key and every relay answer travel unprotected; anyone on the path can read the key and delay delivery with garbage answers');
  }
  logger.info({ relay: new URL(config.relay.url).origin, recipientKeyId, origin: log.witness.origin, trustedSize: log.trusted.size, sinks: sinks.map((s) => s.name), trust: config.trust.enrolled ? 'enrolled' : 'pinned', pinned: pinnedDids.length + pinnedKeys.length, ...(fleetKey ? { fleetKeyId: keyIdHex('ML-DSA-65', fleetKey.publicKey) } : {}) }, 'receiver started');
  return {
    receiver,
    async close() {
      for (const sink of sinks) await sink.close().catch(() => undefined);
      await revocations.save().catch(() => undefined);
      await replay.close();
      recipientKey.seed.fill(0);
    },
  };
}
