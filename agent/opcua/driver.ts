/**
 * The OPC-UA tap: one client, one session, and in subscribe mode one subscription, rebuilt from
 * scratch after any loss. node-opcua-client is imported lazily, on start(), so an agent without
 * OPC-UA taps never pays for it (about 70 MB RSS, see README.md).
 *
 * node-opcua's own reconnection is not used: it retries forever by default and silently
 * re-creates sessions. Instead every connection attempt is bounded (maxRetry 0, request and
 * connect timeouts), and this file's loop reconnects with exponential backoff and jitter.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { format } from 'node:util';
import type { ClientSession, ClientSubscription, NodeId, OPCUAClient, UserIdentityInfo } from 'node-opcua-client';
import type { OPCUACertificateManager } from 'node-opcua-certificate-manager';
import { Backoff, sleep } from '../../common/backoff.js';
import type { Logger } from '../../common/log.js';
import { badReadings, StatusListeners, type Reading, type Tap, type TapState, type TapStatus } from '../tap.js';
import type { ParsedNodeId } from './node-id.js';
import type { Deadband, OpcuaTapSettings } from './schema.js';
import { readingOf, type DataValueLike } from './values.js';

type ClientModule = typeof import('node-opcua-client');
type CertificateModule = typeof import('node-opcua-certificate-manager');
interface Libraries { ua: ClientModule; certs: CertificateModule }

/** The processed settings (schema.ts) and the tap's effective interval, which the agent supplies. */
export type OpcuaTapInput = OpcuaTapSettings & { interval: number };

export interface OpcuaTapDeps {
  logger: Logger;
  /** Reconnect backoff bounds (not configurable: 1 s doubling to 60 s); tests shorten them. */
  backoff?: { initialMs: number; maxMs: number };
}

const reconnectBackoff = { initialMs: 1000, maxMs: 60_000 };

interface Connection {
  client: OPCUAClient;
  session: ClientSession;
  subscription?: ClientSubscription;
  certificateManager: OPCUACertificateManager;
  /** Per point: the node id node-opcua reads, or the reason it cannot be read. */
  targets: ({ nodeId: NodeId } | { error: string })[];
  /** Resolves with the reason once the connection is unusable; `lose` triggers it. */
  lost: Promise<string>;
  lose(reason: string): void;
  isLost: boolean;
}

let libraries: Promise<Libraries> | undefined;
let libraryLogger: Logger | undefined;

/** Loads node-opcua once per process and routes its console chatter to pino at debug level. */
function loadLibraries(logger: Logger): Promise<Libraries> {
  libraryLogger ??= logger.child({ lib: 'node-opcua' });
  libraries ??= (async () => {
    const debug = await import('node-opcua-debug');
    const toPino = (_context: unknown, ...args: unknown[]) => libraryLogger?.debug(format(...args));
    debug.setWarningLogger(toPino);
    debug.setErrorLogger(toPino);
    debug.setDebugLogger(toPino);
    const [ua, certs] = await Promise.all([import('node-opcua-client'), import('node-opcua-certificate-manager')]);
    return { ua, certs };
  })();
  return libraries;
}

export function createOpcuaTapDriver(config: OpcuaTapInput, deps: OpcuaTapDeps): Tap {
  return new OpcuaTap(config, deps);
}

class OpcuaTap implements Tap {
  readonly kind = 'opcua' as const;
  readonly name: string;
  readonly points: readonly string[];
  private readonly logger: Logger;
  private state: TapState = 'down';
  private reason = 'not started';
  private readonly statusListeners = new StatusListeners();
  private requests = 0;
  private connection: Connection | undefined;
  /** The attempt in progress, so stop() can cut it short. */
  private connecting: Connection | undefined;
  private readonly latest = new Map<number, Reading>();
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly config: OpcuaTapInput, private readonly deps: OpcuaTapDeps) {
    this.name = config.name;
    this.points = config.points.map((p) => p.name);
    this.logger = deps.logger.child({ kind: 'opcua' }); // createTap() binds the tap name
  }

  /** Imports node-opcua (seconds of CPU on a Pi) before the agent starts any tap's timers. */
  async prepare(): Promise<void> {
    await loadLibraries(this.deps.logger);
  }

  async start(): Promise<void> {
    if (this.loop || this.stopping.signal.aborted) return;
    if (this.config.auth.type === 'username' && this.config.securityMode === 'None') {
      this.logger.warn('username login over securityMode None: the password is protected only if the server\'s user token policy encrypts it');
    }
    this.reason = 'connecting';
    this.loop = this.run();
  }

  status(): TapStatus {
    const { endpoint, securityMode, securityPolicy, mode } = this.config;
    return { state: this.state, reason: this.state === 'down' ? this.reason : undefined, requests: this.requests, peer: endpoint, details: { securityMode, securityPolicy, mode } };
  }

  onStatusChange(listener: () => void): () => void {
    return this.statusListeners.add(listener);
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.connection?.lose('stopping');
    this.connecting?.lose('stopping');
    await this.loop;
    this.loop = undefined;
  }

  async collect(deadline: number): Promise<Reading[]> {
    const connection = this.connection;
    const now = Date.now();
    if (!connection || connection.isLost) return badReadings(this.name, this.points, this.reason, now);
    return this.config.mode === 'read' ? this.readAll(connection, deadline) : this.subscribed(connection, now);
  }

  // ---- read mode -------------------------------------------------------------------------

  private async readAll(connection: Connection, deadline: number): Promise<Reading[]> {
    const started = Date.now();
    const readable = connection.targets.flatMap((t, i) => ('nodeId' in t ? [{ index: i, nodeId: t.nodeId }] : []));
    const results = new Map<number, Reading>();
    if (readable.length > 0) {
      const budget = Math.max(0, deadline - started);
      // No time left: a read sent now could only race a 0 ms timer (and win on a fast loopback).
      if (budget === 0) return badReadings(this.name, this.points, 'timeout after 0 ms');
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), budget)));
      this.requests++;
      try {
        const response = await Promise.race([
          connection.session.read(readable.map((r) => ({ nodeId: r.nodeId, attributeId: 13 /* Value */ })), 0),
          timedOut,
        ]);
        if (response === 'timeout') return badReadings(this.name, this.points, `timeout after ${budget} ms`);
        const readTime = Date.now();
        response.forEach((dv, k) => {
          const { index } = readable[k]!;
          results.set(index, readingOf(this.name, this.points[index]!, this.config.points[index]!.unit, dv as unknown as DataValueLike, readTime));
        });
      } catch (err) {
        const reason = `read failed: ${messageOf(err)}`;
        connection.lose(reason);
        return badReadings(this.name, this.points, reason);
      } finally {
        clearTimeout(timer);
      }
    }
    return this.points.map((point, i) => results.get(i) ?? this.unreadable(i, point, connection));
  }

  private unreadable(index: number, point: string, connection: Connection): Reading {
    const target = connection.targets[index]!;
    const reason = 'error' in target ? target.error : 'no value received yet';
    return { ...badReadings(this.name, [point], reason)[0]!, ...(this.config.points[index]!.unit ? { unit: this.config.points[index]!.unit } : {}) };
  }

  // ---- subscribe mode --------------------------------------------------------------------

  /**
   * OPC-UA reports by exception: an unchanged value is not re-sent, and the subscription's
   * keep-alive proves the connection is alive. So the last notification is the current value;
   * if the connection is lost every point turns bad at once (the cache is cleared).
   */
  private subscribed(connection: Connection, _now: number): Reading[] {
    return this.points.map((point, i) => this.latest.get(i) ?? this.unreadable(i, point, connection));
  }

  // ---- connection lifecycle --------------------------------------------------------------

  private async run(): Promise<void> {
    const backoff = new Backoff(this.deps.backoff ?? reconnectBackoff);
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      let connection: Connection | undefined;
      try {
        connection = await this.connect();
        if (!signal.aborted) {
          this.connection = connection;
          backoff.reset();
          this.setState('up');
          const reason = await connection.lost;
          this.connection = undefined;
          this.latest.clear();
          if (!signal.aborted) this.setState('down', reason);
        }
      } catch (err) {
        if (!signal.aborted) this.setState('down', messageOf(err));
      }
      if (connection) await this.close(connection);
      if (signal.aborted) break;
      await sleep(backoff.next(), signal);
    }
    this.state = 'down';
    this.reason = 'stopped';
  }

  private async connect(): Promise<Connection> {
    const { ua, certs } = await loadLibraries(this.deps.logger);
    const config = this.config;
    const pkiDir = path.resolve(config.pkiDir);
    const certificateManager = new certs.OPCUACertificateManager({
      rootFolder: pkiDir,
      automaticallyAcceptUnknownCertificate: false,
      // A new manager per attempt rescans the folders, so watchers would only cost file handles.
      disableFileWatchers: true,
    });
    await certificateManager.initialize();
    const rejected = trackRejections(certificateManager);
    const client = ua.OPCUAClient.create({
      applicationName: 'ghostpipe-agent',
      clientName: `ghostpipe-${config.name}`,
      endpointMustExist: false,
      securityMode: ua.MessageSecurityMode[config.securityMode],
      securityPolicy: ua.SecurityPolicy[config.securityPolicy],
      clientCertificateManager: certificateManager,
      // One attempt per call: the outer loop owns retry and backoff.
      connectionStrategy: { maxRetry: 0, initialDelay: 500, maxDelay: 5000 },
      defaultTransactionTimeout: config.timeout,
      // Outlives a few intervals of silence in read mode (node-opcua keeps the session alive).
      requestedSessionTimeout: Math.max(60_000, 4 * config.interval),
      keepSessionAlive: config.mode === 'read',
    });
    let lose!: (reason: string) => void;
    const lost = new Promise<string>((resolve) => (lose = resolve));
    const connection = { client, certificateManager, lost, isLost: false } as Connection;
    connection.lose = (reason) => {
      if (connection.isLost) return;
      connection.isLost = true;
      lose(reason);
    };
    client.on('connection_lost', () => connection.lose('connection lost'));
    client.on('close', () => connection.lose('connection closed'));
    this.connecting = connection;
    if (this.stopping.signal.aborted) connection.lose('stopping');

    const overall = setTimeout(() => connection.lose(`connect timeout after ${3 * config.timeout} ms`), 3 * config.timeout);
    const attempt = (async () => {
      await client.connect(config.endpoint);
      const session = await client.createSession(await this.identity(ua));
      connection.session = session;
      session.on('session_closed', () => connection.lose('session closed by server'));
      session.on('keepalive_failure', () => connection.lose('session keep-alive failed'));
      connection.targets = await this.resolveTargets(ua, session);
      if (config.mode === 'subscribe') await this.subscribe(ua, connection);
    })();
    try {
      const outcome = await Promise.race([attempt.then(() => undefined), lost]);
      if (outcome !== undefined) throw new Error(outcome);
      return connection;
    } catch (err) {
      attempt.catch(() => undefined);
      connection.isLost = true;
      await this.close(connection);
      throw await this.explain(err, rejected(), certificateManager);
    } finally {
      clearTimeout(overall);
      this.connecting = undefined;
    }
  }

  /** Turns a certificate rejection into an operator instruction: which file to move where. */
  private async explain(err: unknown, rejectedCertificate: Buffer | undefined, manager: OPCUACertificateManager): Promise<Error> {
    if (!rejectedCertificate) {
      if (/BadCertificate|BadSecurityChecksFailed/.test(messageOf(err))) {
        const own = path.join(manager.rootDir, 'own', 'certs');
        this.logger.warn({ clientCertificateFolder: own }, `the server refused the connection (${messageOf(err)}); it may not trust this client's certificate in ${own}`);
      }
      return err instanceof Error ? err : new Error(messageOf(err));
    }
    const thumbprint = createHash('sha1').update(firstDer(rejectedCertificate)).digest('hex');
    const trustedFolder = path.join(manager.rootDir, 'trusted', 'certs');
    const file = await findFile(manager.rejectedFolder, `[${thumbprint}]`);
    const where = file ?? path.join(manager.rejectedFolder, `*[${thumbprint}].pem`);
    this.logger.warn(
      { rejectedFile: where, trustedFolder, thumbprint },
      `server certificate is not trusted: after checking its thumbprint, move ${where} to ${trustedFolder}/ to trust it`,
    );
    return new Error(`server certificate untrusted (sha1 ${thumbprint}, ${where})`);
  }

  private async identity(ua: ClientModule): Promise<UserIdentityInfo> {
    const auth = this.config.auth;
    switch (auth.type) {
      case 'anonymous':
        return { type: ua.UserTokenType.Anonymous };
      case 'username': {
        const password = auth.passwordFile !== undefined ? await readSecret(auth.passwordFile, 'passwordFile') : auth.password;
        return { type: ua.UserTokenType.UserName, userName: auth.username, password };
      }
      case 'certificate': {
        const certificatePem = await readSecret(auth.certificateFile, 'certificateFile');
        const privateKey = await readSecret(auth.privateKeyFile, 'privateKeyFile');
        return { type: ua.UserTokenType.Certificate, certificateData: pemToDer(certificatePem, auth.certificateFile), privateKey };
      }
    }
  }

  /** Maps every point to a node id node-opcua can read; nsu= forms go through the server's NamespaceArray. */
  private async resolveTargets(ua: ClientModule, session: ClientSession): Promise<Connection['targets']> {
    let namespaces: string[] | undefined;
    const ids = this.config.points.map((p) => p.nodeId);
    if (ids.some((id) => typeof id.namespace === 'string')) {
      this.requests++;
      namespaces = await ua.readNamespaceArray(session);
    }
    return ids.map((id) => {
      if (typeof id.namespace === 'number') return { nodeId: toNodeId(ua, id, id.namespace) };
      const index = namespaces!.indexOf(id.namespace);
      return index < 0 ? { error: `namespace URI ${id.namespace} is not in the server's NamespaceArray` } : { nodeId: toNodeId(ua, id, index) };
    });
  }

  /** One subscription; one monitored-item request per group of the settings (one per distinct deadband). */
  private async subscribe(ua: ClientModule, connection: Connection): Promise<void> {
    const config = this.config;
    this.requests++;
    const subscription = await connection.session.createSubscription2({
      requestedPublishingInterval: config.samplingInterval,
      requestedMaxKeepAliveCount: 10,
      requestedLifetimeCount: 60,
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 1,
    });
    connection.subscription = subscription;
    subscription.on('terminated', () => connection.lose('subscription terminated'));
    subscription.on('status_changed', (status) => {
      if (status.isBad()) connection.lose(`subscription ${status.name}`);
    });
    for (const { deadband, points } of config.monitorGroups) {
      // Points whose namespace URI the server does not know stay bad with that reason.
      const indices = points.filter((i) => 'nodeId' in connection.targets[i]!);
      if (indices.length === 0) continue;
      this.requests++;
      const group = await subscription.monitorItems(
        indices.map((i) => ({ nodeId: (connection.targets[i] as { nodeId: NodeId }).nodeId, attributeId: ua.AttributeIds.Value })),
        { samplingInterval: config.samplingInterval, queueSize: config.queueSize, discardOldest: true, filter: dataChangeFilter(ua, deadband) },
        ua.TimestampsToReturn.Both,
      );
      group.on('changed', (_item, dv, k) => {
        const index = indices[k]!;
        this.latest.set(index, readingOf(this.name, this.points[index]!, config.points[index]!.unit, dv as unknown as DataValueLike, Date.now()));
      });
      group.monitoredItems.forEach((item, k) => {
        const status = item.statusCode;
        if (status && !status.isGood()) {
          const index = indices[k]!;
          connection.targets[index] = { error: `cannot monitor: ${status.name}` };
          this.logger.warn({ point: this.points[index], status: status.name }, 'the server refused to monitor this point');
        }
      });
    }
  }

  private async close(connection: Connection): Promise<void> {
    const quick = Math.min(this.config.timeout, 2000);
    if (connection.session && !connection.isLost) await settle(connection.session.close(true), quick);
    await settle(connection.client.disconnect(), quick);
    await settle(connection.certificateManager.dispose(), quick);
  }

  /** Records the connection's state; the agent core (agent/tap-health.ts) decides what to log. */
  private setState(state: TapState, reason?: string): void {
    const changed = state !== this.state || (state === 'down' && reason !== this.reason);
    this.state = state;
    if (reason !== undefined) this.reason = reason;
    if (changed) this.statusListeners.notify();
  }
}

function dataChangeFilter(ua: ClientModule, deadband: Deadband | undefined) {
  if (!deadband) return null;
  return new ua.DataChangeFilter({
    trigger: ua.DataChangeTrigger.StatusValue,
    deadbandType: deadband.type === 'absolute' ? ua.DeadbandType.Absolute : ua.DeadbandType.Percent,
    deadbandValue: deadband.value,
  });
}

/** Remembers the last server certificate the manager refused during this attempt. */
function trackRejections(manager: OPCUACertificateManager): () => Buffer | undefined {
  let rejected: Buffer | undefined;
  const check = manager.checkCertificate.bind(manager) as (chain: Buffer | Buffer[]) => Promise<{ isGood(): boolean }>;
  (manager as unknown as { checkCertificate: typeof check }).checkCertificate = async (chain) => {
    const status = await check(chain);
    if (!status.isGood()) rejected = Array.isArray(chain) ? chain[0] : chain;
    return status;
  };
  return () => rejected;
}

/** The leaf of a DER chain (OPC-UA sends chains as concatenated DER). */
function firstDer(chain: Buffer): Buffer {
  if (chain.length < 2 || chain[0] !== 0x30) return chain;
  const lengthByte = chain[1]!;
  if (lengthByte < 0x80) return chain.subarray(0, 2 + lengthByte);
  const n = lengthByte & 0x7f;
  if (n === 0 || n > 4 || chain.length < 2 + n) return chain;
  return chain.subarray(0, 2 + n + chain.readUIntBE(2, n));
}

async function findFile(folder: string, fragment: string): Promise<string | undefined> {
  // The store writes the file asynchronously ("bookkeeping"); give it a moment.
  for (let i = 0; i < 10; i++) {
    const names = await readdir(folder).catch(() => [] as string[]);
    const name = names.find((n) => n.includes(fragment));
    if (name) return path.join(folder, name);
    await sleep(100);
  }
  return undefined;
}

async function readSecret(file: string, setting: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
  } catch (err) {
    throw new Error(`cannot read ${setting} ${file}: ${(err as NodeJS.ErrnoException).code ?? messageOf(err)}`);
  }
}

function pemToDer(pem: string, file: string): Buffer {
  const match = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem);
  if (!match) throw new Error(`certificateFile ${file} holds no PEM certificate`);
  return Buffer.from(match[1]!.replace(/\s+/g, ''), 'base64');
}

async function settle(promise: Promise<unknown> | undefined, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.resolve(promise).catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

function messageOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // node-opcua messages can span many lines (hex dumps); the first line names the problem.
  return message.split('\n')[0]!.trim().slice(0, 300);
}

/**
 * A NodeId object built from our own parse, never a string handed back to node-opcua: its string
 * parser misreads an s= identifier that contains ";ns=3;i=4" (legal: everything after "s=" is
 * the identifier) as that numeric id.
 */
function toNodeId(ua: ClientModule, id: ParsedNodeId, namespace: number): NodeId {
  switch (id.kind) {
    case 'i': return new ua.NodeId(ua.NodeId.NodeIdType.NUMERIC, Number(id.value), namespace);
    case 's': return new ua.NodeId(ua.NodeId.NodeIdType.STRING, id.value, namespace);
    case 'g': return new ua.NodeId(ua.NodeId.NodeIdType.GUID, id.value, namespace);
    case 'b': return new ua.NodeId(ua.NodeId.NodeIdType.BYTESTRING, Buffer.from(id.value, 'base64'), namespace);
  }
}
