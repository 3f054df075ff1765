/**
 * The plant's OPC-UA server (full node-opcua, a dev dependency: loaded lazily, only here).
 * Listens on 127.0.0.1, endpoint opc.tcp://127.0.0.1:<port>/ghostpipe-plant, security modes None
 * and SignAndEncrypt (Basic256Sha256). Variables in namespace urn:ghostpipe:plant:
 *   Tank1.Temperature, Pump1.MotorTemperature  AnalogItemType Double, °C, with EURange
 *   Tank1.Status                               String: FILLING, DRAINING or LOW LEVEL
 * A simulated plant trusts every client certificate (a real PLC would not): the demo's point is
 * the agent's side, which trusts only the plant certificate the demo copies into its PKI.
 */
import path from 'node:path';
import { format } from 'node:util';
import type { Logger } from '../common/log.js';
import { statusText, type PlantState } from './model.js';
import { OPCUA, OPCUA_NAMESPACE, OPCUA_PATH, roundTo } from './points.js';
import { freeLoopbackPort } from '../common/ports.js';

export interface PlantOpcua {
  port: number;
  endpoint: string;
  /** PEM file of the server's application certificate (for the agent's trusted/certs). */
  certificateFile: string;
  update(s: PlantState): void;
  close(): Promise<void>;
}

/** Free ports tried when none is given. */
const PORT_ATTEMPTS = 5;

const addressInUse = (err: unknown): boolean => (err as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE' || /EADDRINUSE/.test(String((err as Error | undefined)?.message));

/** The plant's OPC-UA server on `port`, or (port undefined) on a free loopback port, retried when taken. */
export async function startOpcua(options: { port?: number; pkiDir: string; logger: Logger; pickPort?: () => Promise<number> }): Promise<PlantOpcua> {
  const debug = await import('node-opcua-debug');
  const toPino = (_context: unknown, ...args: unknown[]) => options.logger.debug({ lib: 'node-opcua' }, format(...args));
  debug.setWarningLogger(toPino);
  debug.setErrorLogger(toPino);
  debug.setDebugLogger(toPino);
  const ua = await import('node-opcua');
  const { OPCUAServer, OPCUACertificateManager, MessageSecurityMode, SecurityPolicy, Variant, DataType, StatusCodes, nodesets, standardUnits } = ua;

  const certificateManager = new OPCUACertificateManager({
    rootFolder: options.pkiDir,
    automaticallyAcceptUnknownCertificate: true,
    disableFileWatchers: true,
  });
  await certificateManager.initialize();
  // node-opcua builds its endpoint URLs (GetEndpoints) before it listens, so port 0 would be
  // advertised as 0: a port is picked free, and when another process took it before the server
  // bound it (EADDRINUSE), the next free port is tried. Tests pass a reserved port.
  const pickPort = options.pickPort ?? freeLoopbackPort;
  let server: InstanceType<typeof OPCUAServer>;
  let port: number;
  for (let attempt = 1; ; attempt++) {
    port = options.port ?? (await pickPort());
    server = new OPCUAServer({
      port,
      hostname: '127.0.0.1',
      resourcePath: OPCUA_PATH,
      nodeset_filename: [nodesets.standard],
      serverCertificateManager: certificateManager,
      securityModes: [MessageSecurityMode.None, MessageSecurityMode.SignAndEncrypt],
      securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
      allowAnonymous: true,
      serverInfo: { applicationUri: 'urn:ghostpipe:plant', productUri: 'urn:ghostpipe:plant', applicationName: { text: 'Ghost Pipe simulated plant' } },
    });
    await server.initialize();
    try {
      await server.start();
      break;
    } catch (err) {
      await server.shutdown(0).catch(() => undefined);
      if (options.port !== undefined || !addressInUse(err) || attempt >= PORT_ATTEMPTS) {
        await certificateManager.dispose();
        throw err;
      }
    }
  }
  const addressSpace = server.engine.addressSpace!;
  const namespace = addressSpace.registerNamespace(OPCUA_NAMESPACE);
  const analog = (name: string, high: number) =>
    namespace.addAnalogDataItem({
      organizedBy: addressSpace.rootFolder.objects,
      nodeId: `s=${name}`,
      browseName: name,
      dataType: 'Double',
      engineeringUnitsRange: { low: 0, high },
      engineeringUnits: standardUnits.degree_celsius,
      minimumSamplingInterval: 100,
    });
  const tankTemperature = analog(OPCUA.tankTemperature, 100);
  const motorTemperature = analog(OPCUA.motorTemperature, 120);
  const status = namespace.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    nodeId: `s=${OPCUA.status}`,
    browseName: OPCUA.status,
    dataType: 'String',
    minimumSamplingInterval: 100,
  });

  const update = (s: PlantState) => {
    // Source timestamps are the simulated time of the value (node-opcua stamps now otherwise).
    const at = new Date(s.time);
    tankTemperature.setValueFromSource(new Variant({ dataType: DataType.Double, value: roundTo(s.tankTempC, 2) }), StatusCodes.Good, at);
    motorTemperature.setValueFromSource(new Variant({ dataType: DataType.Double, value: roundTo(s.motorTempC, 2) }), StatusCodes.Good, at);
    status.setValueFromSource(new Variant({ dataType: DataType.String, value: statusText(s) }), StatusCodes.Good, at);
  };
  return {
    port,
    endpoint: `opc.tcp://127.0.0.1:${port}${OPCUA_PATH}`,
    certificateFile: path.join(certificateManager.rootDir, 'own', 'certs', 'certificate.pem'),
    update,
    async close() {
      await server.shutdown(0);
      await certificateManager.dispose();
    },
  };
}
