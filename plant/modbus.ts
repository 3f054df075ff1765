/**
 * The plant's Modbus TCP server (modbus-serial ServerTCP) on 127.0.0.1, unit id 1 (any unit id
 * is answered). Register contents are rewritten from the model on every tick; see points.ts.
 */
import ModbusSerial from 'modbus-serial';
import type { PlantState } from './model.js';
import { pumpedLitresU32 } from './model.js';
import { MODBUS, float32Words, levelMm, uint32WordsCdab, uint64Words } from './points.js';
import type { Server } from 'node:net';

type ServerTCP = InstanceType<typeof ModbusSerial.ServerTCP>;
type Callback = (err: Error | null, values: number[]) => void;

/** modbus-serial turns an error carrying modbusErrorCode into that exception response. */
const illegalAddress = (): Error => Object.assign(new Error('illegal data address'), { modbusErrorCode: 2 });

/** Register and bit images of the plant, sized to the highest address used. */
export class PlantRegisters {
  readonly input = new Uint16Array(64);
  readonly holding = new Uint16Array(64);
  readonly coil = new Uint8Array(16);
  readonly discrete = new Uint8Array(16);

  update(s: PlantState): void {
    this.input[MODBUS.levelMm.address] = levelMm(s);
    this.input.set(float32Words(s.pumpCurrentA), MODBUS.pumpCurrent.address);
    this.holding.set(uint32WordsCdab(pumpedLitresU32(s)), MODBUS.flowTotalL.address);
    this.holding.set(uint64Words(s.pumpedMl), MODBUS.pumpedMl.address);
    this.coil[MODBUS.pumpRunning.address] = s.pumpRunning ? 1 : 0;
    this.discrete[MODBUS.lowLevelAlarm.address] = s.lowLevelAlarm ? 1 : 0;
  }

  /** The modbus-serial service vector; out-of-range addresses answer exception 2 (illegal data address). */
  vector() {
    const words = (table: Uint16Array) => (address: number, length: number, _unit: number, cb: Callback) => {
      if (address + length > table.length) return cb(illegalAddress(), []);
      cb(null, Array.from(table.subarray(address, address + length)));
    };
    const word = (table: Uint16Array) => (address: number) => {
      if (address >= table.length) throw illegalAddress();
      return table[address]!;
    };
    const bit = (table: Uint8Array) => (address: number) => {
      if (address >= table.length) throw illegalAddress();
      return table[address] === 1;
    };
    return {
      getMultipleInputRegisters: words(this.input),
      getMultipleHoldingRegisters: words(this.holding),
      getInputRegister: word(this.input),
      getHoldingRegister: word(this.holding),
      getCoil: bit(this.coil),
      getDiscreteInput: bit(this.discrete),
      // The plant is read-only: writes are refused with exception 1 (illegal function).
      setRegister: () => { throw { modbusErrorCode: 1 }; },
      setCoil: () => { throw { modbusErrorCode: 1 }; },
    };
  }
}

export interface PlantModbus {
  port: number;
  close(): Promise<void>;
}

function listen(registers: PlantRegisters, port: number): Promise<{ server: ServerTCP; port: number }> {
  return new Promise((resolve, reject) => {
    // ServerTCP listens on `options.port || 502`: port 0 is passed as the string '0' (truthy),
    // which net.Server.listen() takes as 0, so the kernel picks a free port while binding.
    const server = new ModbusSerial.ServerTCP(registers.vector(), { host: '127.0.0.1', port: (port === 0 ? '0' : port) as number, unitID: 255 });
    // Client mistakes and dropped sockets are the client's business; the plant keeps serving.
    server.on('error', () => undefined);
    server.on('socketError', () => undefined);
    server.once('serverError', (err: Error) => server.close(() => reject(err)));
    server.once('initialized', () => {
      // The port it bound (modbus-serial keeps its net.Server in `_server`).
      const address = (server as unknown as { _server?: Server })._server?.address();
      if (typeof address !== 'object' || address === null || address.port === 0) {
        server.close(() => reject(new Error('modbus-serial ServerTCP: cannot read the port it bound')));
        return;
      }
      resolve({ server, port: address.port });
    });
  });
}

/**
 * Starts on `port`, or (port undefined) on port 0: the port is picked by the kernel while binding
 * (never picked free and bound later) and reported in `port`.
 */
export async function startModbus(registers: PlantRegisters, port?: number): Promise<PlantModbus> {
  const { server, port: bound } = await listen(registers, port ?? 0);
  return {
    port: bound,
    // ServerTCP.close() also destroys every client socket.
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
