/**
 * A real node-opcua test server in a child process, driven over IPC. A child process lets
 * tests kill and restart the server (the same port, the same PKI, so the same certificate).
 *
 *   const server = await startOpcuaServer({ pkiDir, variables: [{ name: 'Temperature', value: 21.5 }] });
 *   server.endpoint                      // opc.tcp://127.0.0.1:<free port>/ghostpipe
 *   await server.set('Temperature', 22)  // new value (and Good status)
 *   await server.set('Temperature', null, 'BadSensorFailure')
 *   await server.burst('Temperature', [1, 2, 3], 200)  // values set 200 ms apart inside the server
 *   await server.sessions()              // what the server granted: security, login, subscriptions
 *   await server.restart()               // kill + start again on the same port
 *   await server.stop()
 *
 * Variables are AnalogItemType Doubles with EURange 0..100 (so percent deadbands work). By default
 * a variable's node id is `ns=2;s=<name>`: ns=2 is the test namespace, URI `urn:ghostpipe:test`
 * (ns=1 is the server's own namespace, `urn:ghostpipe:test-server`). `nodeId` and `namespace`
 * choose other forms, e.g. `{ name: 'Pump', nodeId: 'g=09087e75-…', namespace: 'server' }`.
 * The server PKI lives in `<pkiDir>/server`; client application certificates are accepted
 * automatically. X509 user identities are checked against `<pkiDir>/server-users`, which trusts
 * only the certificates listed in `trustedUserCertificates`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { reservePort } from './ports.js';

export interface TestVariable {
  name: string;
  value: number;
  /** A status code name, e.g. 'BadSensorFailure'; default Good. */
  status?: string;
  /** Identifier part of the node id: 'i=1001', 's=Tank', 'g=<guid>' or 'b=<base64>'; default `s=<name>`. */
  nodeId?: string;
  /** 'test' (ns=2, `urn:ghostpipe:test`, the default) or 'server' (ns=1, the server's own namespace). */
  namespace?: 'test' | 'server';
}

/** One session as the server sees it: what the client actually negotiated and requested. */
export interface ServerSessionInfo {
  /** The client's session name; the OPC-UA tap names it `ghostpipe-<tap name><n>`. */
  name: string;
  securityMode: 'None' | 'Sign' | 'SignAndEncrypt' | 'Invalid';
  /** Short policy name, e.g. 'Basic256Sha256'. */
  securityPolicy: string;
  /** 'Anonymous', 'UserName', 'Certificate' or 'IssuedToken'. */
  userTokenType: string;
  subscriptions: {
    /** The revised publishing interval, ms. */
    publishingInterval: number;
    /** Data change notifications sent in publish responses so far (every queued value counts). */
    dataChangeNotifications: number;
    /** Times a monitored item queue dropped a value (queueSize > 1 only). */
    queueOverflows: number;
    items: {
      nodeId: string;
      /** The revised sampling interval, ms. */
      samplingInterval: number;
      queueSize: number;
      discardOldest: boolean;
      deadband?: { type: 'absolute' | 'percent'; value: number };
    }[];
  }[];
}

export interface OpcuaServerOptions {
  /** Folder for the server PKI (created on first start, reused by restart()). */
  pkiDir: string;
  variables: TestVariable[];
  /** Default: None, Sign and SignAndEncrypt with every current policy. */
  securityModes?: ('None' | 'Sign' | 'SignAndEncrypt')[];
  securityPolicies?: ('None' | 'Basic256Sha256' | 'Aes128_Sha256_RsaOaep' | 'Aes256_Sha256_RsaPss')[];
  /** Accept these username/password pairs (anonymous stays allowed unless allowAnonymous false). */
  users?: { username: string; password: string }[];
  allowAnonymous?: boolean;
  /** PEM files of X509 user certificates the server trusts for login (any other one is refused). */
  trustedUserCertificates?: string[];
  /** Fixed port (restart() reuses the first one). Default: a free port. */
  port?: number;
}

export interface OpcuaTestServer {
  endpoint: string;
  port: number;
  /** PEM file of the server's own certificate. */
  certificateFile: string;
  /** Namespace URI of ns=2, where the variables live unless they say `namespace: 'server'`. */
  namespaceUri: string;
  set(name: string, value: number | null, status?: string): Promise<void>;
  /** Sets the values one after the other, `spacingMs` apart, timed inside the server process. */
  burst(name: string, values: number[], spacingMs: number): Promise<void>;
  /** The live sessions with their security, login and subscriptions, as the server granted them. */
  sessions(): Promise<ServerSessionInfo[]>;
  /**
   * The fastest publishing interval the server grants to subscriptions created from now on
   * (node-opcua default 50 ms). A larger one makes the server sample faster than it publishes,
   * so monitored item queues fill between publish responses.
   */
  setMinimumPublishingInterval(ms: number): Promise<void>;
  /** Kill the server process (as a crash would), then start it again on the same port. */
  restart(): Promise<void>;
  /** Kill the server process; start() brings it back. */
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface ChildReady { type: 'ready'; certificateFile: string }
type ChildRequest =
  | { type: 'set'; name: string; value: number | null; status?: string }
  | { type: 'burst'; name: string; values: number[]; spacingMs: number }
  | { type: 'sessions' }
  | { type: 'minimumPublishingInterval'; ms: number };
type ChildCommand = (ChildRequest & { id: number }) | { type: 'shutdown' };
type ChildReply = { type: 'ack'; id: number; result?: unknown } | { type: 'failed'; id: number; message: string };

export const testNamespaceUri = 'urn:ghostpipe:test';
const selfPath = fileURLToPath(import.meta.url);


export async function startOpcuaServer(options: OpcuaServerOptions): Promise<OpcuaTestServer> {
  const port = options.port ?? (await reservePort()); // restarts on the same port (test/helpers/ports.ts)
  let child: ChildProcess | undefined;
  let certificateFile = '';
  let nextId = 1;
  const pending = new Map<number, { resolve(result: unknown): void; reject(err: Error): void }>();

  async function start(): Promise<void> {
    const proc = fork(selfPath, ['--opcua-test-server'], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: { ...process.env, GHOSTPIPE_OPCUA_TEST: JSON.stringify({ ...options, port }) },
    });
    child = proc;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error('OPC-UA test server did not start within 30 s')), 30_000);
      function fail(err: Error) {
        clearTimeout(timer);
        proc.kill('SIGKILL');
        reject(err);
      }
      proc.once('exit', (code) => fail(new Error(`OPC-UA test server exited with code ${code} before it was ready`)));
      proc.on('message', (message: ChildReady | ChildReply | { type: 'error'; message: string }) => {
        if (message.type === 'ready') {
          clearTimeout(timer);
          proc.removeAllListeners('exit');
          certificateFile = message.certificateFile;
          resolve();
        } else if (message.type === 'ack' || message.type === 'failed') {
          const request = pending.get(message.id);
          pending.delete(message.id);
          if (message.type === 'ack') request?.resolve(message.result);
          else request?.reject(new Error(message.message));
        } else if (message.type === 'error') {
          fail(new Error(message.message));
        }
      });
    });
  }

  async function kill(): Promise<void> {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  }

  function request<T>(command: ChildRequest): Promise<T> {
    const proc = child;
    if (!proc) return Promise.reject(new Error('OPC-UA test server is not running'));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (result: unknown) => void, reject });
      proc.send({ ...command, id } satisfies ChildCommand);
    });
  }

  prepareUserPki(options);
  await start();
  return {
    endpoint: `opc.tcp://127.0.0.1:${port}/ghostpipe`,
    port,
    get certificateFile() {
      return certificateFile;
    },
    namespaceUri: testNamespaceUri,
    set: (name, value, status) => request<void>({ type: 'set', name, value, status }),
    burst: (name, values, spacingMs) => request<void>({ type: 'burst', name, values, spacingMs }),
    sessions: () => request<ServerSessionInfo[]>({ type: 'sessions' }),
    setMinimumPublishingInterval: (ms) => request<void>({ type: 'minimumPublishingInterval', ms }),
    async restart() {
      await kill();
      await start();
    },
    kill,
    start,
    stop: kill,
  };
}

/** The X509 user PKI: only the listed certificates are trusted (copied before the server starts). */
function userPkiDir(options: OpcuaServerOptions): string {
  return path.join(options.pkiDir, 'server-users');
}

function prepareUserPki(options: OpcuaServerOptions): void {
  const trusted = path.join(userPkiDir(options), 'trusted', 'certs');
  mkdirSync(trusted, { recursive: true });
  for (const file of options.trustedUserCertificates ?? []) cpSync(file, path.join(trusted, path.basename(file)));
}

// ---- child process side -------------------------------------------------------------------

async function runChild(): Promise<void> {
  const options = JSON.parse(process.env.GHOSTPIPE_OPCUA_TEST ?? '{}') as OpcuaServerOptions & { port: number };
  // node-opcua is a dev dependency; only the child process loads it.
  const opcua = await import('node-opcua');
  const { OPCUAServer, OPCUACertificateManager, MessageSecurityMode, SecurityPolicy, StatusCodes, Variant, DataType, NodeId, NodeIdType, nodesets } = opcua;
  const certificateManager = new OPCUACertificateManager({
    rootFolder: path.join(options.pkiDir, 'server'),
    automaticallyAcceptUnknownCertificate: true,
    disableFileWatchers: true,
  });
  await certificateManager.initialize();
  // Without its own user PKI node-opcua would use a shared folder in the home directory that
  // accepts every user certificate.
  const userCertificateManager = new OPCUACertificateManager({
    rootFolder: userPkiDir(options),
    automaticallyAcceptUnknownCertificate: false,
    disableFileWatchers: true,
  });
  await userCertificateManager.initialize();
  const server = new OPCUAServer({
    port: options.port,
    hostname: '127.0.0.1',
    resourcePath: '/ghostpipe',
    nodeset_filename: [nodesets.standard],
    serverCertificateManager: certificateManager,
    userCertificateManager,
    securityModes: (options.securityModes ?? ['None', 'Sign', 'SignAndEncrypt']).map((m) => MessageSecurityMode[m]),
    securityPolicies: (options.securityPolicies ?? ['None', 'Basic256Sha256', 'Aes128_Sha256_RsaOaep', 'Aes256_Sha256_RsaPss']).map(
      (p) => SecurityPolicy[p],
    ),
    allowAnonymous: options.allowAnonymous ?? true,
    userManager: {
      isValidUser: (username: string, password: string) => (options.users ?? []).some((u) => u.username === username && u.password === password),
    },
    serverInfo: { applicationUri: 'urn:ghostpipe:test-server' },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const testNamespace = addressSpace.registerNamespace(testNamespaceUri);
  const serverNamespace = addressSpace.getOwnNamespace();
  const variables = new Map<string, ReturnType<typeof testNamespace.addAnalogDataItem>>();
  for (const v of options.variables) {
    const namespace = v.namespace === 'server' ? serverNamespace : testNamespace;
    const text = v.nodeId ?? `s=${v.name}`;
    // String ids as objects: node-opcua's own parser would read "s=Tank;ns=3;i=4" as ns=3;i=4.
    const nodeId = text.startsWith('s=') ? new NodeId(NodeIdType.STRING, text.slice(2), namespace.index) : text;
    const variable = namespace.addAnalogDataItem({
      organizedBy: addressSpace.rootFolder.objects,
      nodeId,
      browseName: v.name,
      dataType: 'Double',
      engineeringUnitsRange: { low: 0, high: 100 },
      minimumSamplingInterval: 50,
    });
    variable.setValueFromSource(new Variant({ dataType: DataType.Double, value: v.value }), statusOf(v.status));
    variables.set(v.name, variable);
  }
  function statusOf(name?: string) {
    if (!name) return StatusCodes.Good;
    const code = (StatusCodes as unknown as Record<string, typeof StatusCodes.Good>)[name];
    if (!code) throw new Error(`unknown status code ${name}`);
    return code;
  }
  function setValue(name: string, value: number | null, status?: string) {
    const variable = variables.get(name);
    if (!variable) throw new Error(`no test variable named ${name}`);
    const variant = value === null ? new Variant({ dataType: DataType.Null }) : new Variant({ dataType: DataType.Double, value });
    variable.setValueFromSource(variant, statusOf(status));
  }

  function sessions(): ServerSessionInfo[] {
    return server.engine.getSessions().map((session) => ({
      name: session.sessionName ?? '',
      securityMode: (MessageSecurityMode[session.channel?.securityMode ?? 0] ?? 'Invalid') as ServerSessionInfo['securityMode'],
      securityPolicy: String(session.channel?.securityPolicy ?? '').split('#').at(-1)!,
      userTokenType: userTokenTypeOf(session.userIdentityToken),
      subscriptions: session.publishEngine.subscriptions.map((subscription) => ({
        publishingInterval: subscription.publishingInterval,
        dataChangeNotifications: subscription.subscriptionDiagnostics.dataChangeNotificationsCount,
        queueOverflows: subscription.subscriptionDiagnostics.monitoringQueueOverflowCount,
        items: [...(subscription as unknown as { monitoredItems: Map<number, MonitoredItemView> }).monitoredItems.values()].map(itemInfo),
      })),
    }));
  }
  interface MonitoredItemView {
    node: { nodeId: { toString(): string } } | null;
    samplingInterval: number;
    queueSize: number;
    discardOldest: boolean;
    filter: { deadbandType?: number; deadbandValue?: number } | null;
  }
  function itemInfo(item: MonitoredItemView): ServerSessionInfo['subscriptions'][number]['items'][number] {
    const deadbandType = item.filter?.deadbandType;
    return {
      nodeId: item.node?.nodeId.toString() ?? '',
      samplingInterval: item.samplingInterval,
      queueSize: item.queueSize,
      discardOldest: item.discardOldest,
      ...(deadbandType === opcua.DeadbandType.Absolute || deadbandType === opcua.DeadbandType.Percent
        ? { deadband: { type: deadbandType === opcua.DeadbandType.Absolute ? ('absolute' as const) : ('percent' as const), value: item.filter!.deadbandValue! } }
        : {}),
    };
  }
  function userTokenTypeOf(token: unknown): string {
    if (token instanceof opcua.AnonymousIdentityToken) return 'Anonymous';
    if (token instanceof opcua.UserNameIdentityToken) return 'UserName';
    if (token instanceof opcua.X509IdentityToken) return 'Certificate';
    return token ? 'IssuedToken' : 'none';
  }

  async function handle(command: ChildRequest): Promise<unknown> {
    switch (command.type) {
      case 'set':
        return setValue(command.name, command.value, command.status);
      case 'burst':
        for (const [i, value] of command.values.entries()) {
          if (i > 0) await new Promise((resolve) => setTimeout(resolve, command.spacingMs));
          setValue(command.name, value);
        }
        return undefined;
      case 'sessions':
        return sessions();
      case 'minimumPublishingInterval':
        opcua.Subscription.minimumPublishingInterval = command.ms;
        return undefined;
    }
  }

  await server.start();
  const certificateFile = path.join(certificateManager.rootDir, 'own', 'certs', 'certificate.pem');
  process.on('message', (command: ChildCommand) => {
    if (command.type === 'shutdown') {
      void server.shutdown(0).then(() => process.exit(0));
      return;
    }
    handle(command).then(
      (result) => process.send!({ type: 'ack', id: command.id, result } satisfies ChildReply),
      (err: Error) => process.send!({ type: 'failed', id: command.id, message: err.message } satisfies ChildReply),
    );
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ type: 'ready', certificateFile: server.certificateFile ?? certificateFile } satisfies ChildReady);
}

if (process.argv[1] === selfPath && process.argv.includes('--opcua-test-server')) {
  runChild().catch((err: Error) => {
    process.send?.({ type: 'error', message: `OPC-UA test server failed: ${err.stack ?? err.message}` });
    process.exit(1);
  });
}
