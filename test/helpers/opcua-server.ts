/**
 * A real node-opcua test server in a child process, driven over IPC. A child process lets
 * tests kill and restart the server (the same port, the same PKI, so the same certificate).
 *
 *   const server = await startOpcuaServer({ pkiDir, variables: [{ name: 'Temperature', value: 21.5 }] });
 *   server.endpoint                      // opc.tcp://127.0.0.1:<free port>/ghostpipe
 *   await server.set('Temperature', 22)  // new value (and Good status)
 *   await server.set('Temperature', null, 'BadSensorFailure')
 *   await server.restart()               // kill + start again on the same port
 *   await server.stop()
 *
 * Variables are AnalogItemType Doubles with EURange 0..100 (so percent deadbands work) under
 * the node id `ns=1;s=<name>`; ns=1 is the server's own namespace, URI `urn:ghostpipe:test`.
 * The server PKI lives in `<pkiDir>/server`; client certificates are accepted automatically.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from '../../common/ports.js';

export interface TestVariable {
  name: string;
  value: number;
  /** A status code name, e.g. 'BadSensorFailure'; default Good. */
  status?: string;
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
  /** Fixed port (restart() reuses the first one). Default: a free port. */
  port?: number;
}

export interface OpcuaTestServer {
  endpoint: string;
  port: number;
  /** PEM file of the server's own certificate. */
  certificateFile: string;
  /** Namespace URI of ns=1. */
  namespaceUri: string;
  set(name: string, value: number | null, status?: string): Promise<void>;
  /** Kill the server process (as a crash would), then start it again on the same port. */
  restart(): Promise<void>;
  /** Kill the server process; start() brings it back. */
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface ChildReady { type: 'ready'; certificateFile: string }
type ChildCommand = { type: 'set'; id: number; name: string; value: number | null; status?: string } | { type: 'shutdown' };

export const testNamespaceUri = 'urn:ghostpipe:test';
const selfPath = fileURLToPath(import.meta.url);


export async function startOpcuaServer(options: OpcuaServerOptions): Promise<OpcuaTestServer> {
  const port = options.port ?? (await freeLoopbackPort());
  let child: ChildProcess | undefined;
  let certificateFile = '';
  let nextId = 1;
  const pending = new Map<number, () => void>();

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
      proc.on('message', (message: ChildReady | { type: 'ack'; id: number } | { type: 'error'; message: string }) => {
        if (message.type === 'ready') {
          clearTimeout(timer);
          proc.removeAllListeners('exit');
          certificateFile = message.certificateFile;
          resolve();
        } else if (message.type === 'ack') {
          pending.get(message.id)?.();
          pending.delete(message.id);
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

  await start();
  return {
    endpoint: `opc.tcp://127.0.0.1:${port}/ghostpipe`,
    port,
    get certificateFile() {
      return certificateFile;
    },
    namespaceUri: testNamespaceUri,
    async set(name, value, status) {
      const proc = child;
      if (!proc) throw new Error('OPC-UA test server is not running');
      const id = nextId++;
      await new Promise<void>((resolve) => {
        pending.set(id, resolve);
        proc.send({ type: 'set', id, name, value, status } satisfies ChildCommand);
      });
    },
    async restart() {
      await kill();
      await start();
    },
    kill,
    start,
    stop: kill,
  };
}

// ---- child process side -------------------------------------------------------------------

async function runChild(): Promise<void> {
  const options = JSON.parse(process.env.GHOSTPIPE_OPCUA_TEST ?? '{}') as OpcuaServerOptions & { port: number };
  // node-opcua is a dev dependency; only the child process loads it.
  const opcua = await import('node-opcua');
  const { OPCUAServer, OPCUACertificateManager, MessageSecurityMode, SecurityPolicy, StatusCodes, Variant, DataType, nodesets } = opcua;
  const certificateManager = new OPCUACertificateManager({
    rootFolder: path.join(options.pkiDir, 'server'),
    automaticallyAcceptUnknownCertificate: true,
    disableFileWatchers: true,
  });
  await certificateManager.initialize();
  const server = new OPCUAServer({
    port: options.port,
    hostname: '127.0.0.1',
    resourcePath: '/ghostpipe',
    nodeset_filename: [nodesets.standard],
    serverCertificateManager: certificateManager,
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
  const namespace = addressSpace.registerNamespace(testNamespaceUri);
  const variables = new Map<string, ReturnType<typeof namespace.addAnalogDataItem>>();
  for (const v of options.variables) {
    const variable = namespace.addAnalogDataItem({
      organizedBy: addressSpace.rootFolder.objects,
      nodeId: `s=${v.name}`,
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
  await server.start();
  const certificateFile = path.join(certificateManager.rootDir, 'own', 'certs', 'certificate.pem');
  process.on('message', (command: ChildCommand) => {
    if (command.type === 'shutdown') {
      void server.shutdown(0).then(() => process.exit(0));
      return;
    }
    const variable = variables.get(command.name);
    if (variable) {
      const value = command.value === null ? new Variant({ dataType: DataType.Null }) : new Variant({ dataType: DataType.Double, value: command.value });
      variable.setValueFromSource(value, statusOf(command.status));
    }
    process.send!({ type: 'ack', id: command.id });
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
