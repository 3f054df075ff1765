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

export async function startOpcua(options: { port?: number; pkiDir: string; logger: Logger }): Promise<PlantOpcua> {
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
  const port = options.port ?? (await freeLoopbackPort());
  const server = new OPCUAServer({
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
  await server.start();

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
