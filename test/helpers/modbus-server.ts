/**
 * Real Modbus peers for tests and benchmarks, built on modbus-serial's own servers: a Modbus TCP
 * server and an RTU server on a serial line (a pty from ./pty.ts), both serving a ModbusMemory,
 * logging every request they receive; plus a TCP server that accepts and never answers.
 */
import { createServer, type Server, type Socket } from 'node:net';
import ModbusSerial from 'modbus-serial';
import { reservePort } from './ports.js';

type RegisterTable = 'holding' | 'input';
type BitTable = 'coil' | 'discrete';
type Table = RegisterTable | BitTable;

interface UnitMemory {
  holding: Uint16Array;
  input: Uint16Array;
  coil: Uint8Array;
  discrete: Uint8Array;
}

interface Failure {
  unitId: number | undefined;
  table: Table;
  start: number;
  end: number;
  code: number;
}

/** A request as the server saw it on the wire. */
export interface ModbusRequestRecord {
  unitId: number;
  functionCode: number;
  address: number;
  count: number;
}

/** Register and bit contents per unit id, with exceptions and silent units on demand. */
export class ModbusMemory {
  private readonly units = new Map<number, UnitMemory>();
  private readonly failures: Failure[] = [];
  /** Unit ids that never answer (the request is swallowed). */
  readonly silentUnits = new Set<number>();
  /** Unit ids that answer late: unit id -> delay in ms. */
  readonly delayedUnits = new Map<number, number>();
  /** Late answers (delayedUnits) handed to the server to send so far: a test waits for them. */
  lateAnswers = 0;

  unit(unitId: number): UnitMemory {
    let memory = this.units.get(unitId);
    if (!memory) {
      memory = { holding: new Uint16Array(0x10000), input: new Uint16Array(0x10000), coil: new Uint8Array(0x10000), discrete: new Uint8Array(0x10000) };
      this.units.set(unitId, memory);
    }
    return memory;
  }

  setRegisters(table: RegisterTable, address: number, words: readonly number[], unitId = 1): void {
    this.unit(unitId)[table].set(words, address);
  }

  setBits(table: BitTable, address: number, bits: readonly boolean[], unitId = 1): void {
    this.unit(unitId)[table].set(bits.map((b) => (b ? 1 : 0)), address);
  }

  /** Requests touching [start, start+count) of `table` get Modbus exception `code` (any unit if unitId is undefined). */
  failRange(table: Table, start: number, count: number, code: number, unitId?: number): void {
    this.failures.push({ unitId, table, start, end: start + count, code });
  }

  clearFailures(): void {
    this.failures.length = 0;
  }

  private check(table: Table, unitId: number, address: number, count: number): void {
    if (address + count > 0x10000) throw { modbusErrorCode: 2 };
    for (const f of this.failures) {
      if (f.table === table && (f.unitId === undefined || f.unitId === unitId) && address < f.end && address + count > f.start) throw { modbusErrorCode: f.code };
    }
  }

  /** Answers `value()` now, late (delayedUnits) or never (silentUnits). */
  private answer<T>(unitId: number, value: () => T): T | Promise<T> {
    if (this.silentUnits.has(unitId)) return new Promise<never>(() => undefined);
    const delay = this.delayedUnits.get(unitId);
    if (delay === undefined) return value();
    return new Promise((resolve, reject) => setTimeout(() => {
      this.lateAnswers++;
      try {
        resolve(value());
      } catch (err) {
        reject(err);
      }
    }, delay));
  }

  /** The modbus-serial service vector serving this memory. */
  vector() {
    // Multi-register reads must use the callback form: modbus-serial's value form takes no promise.
    const registers = (table: RegisterTable) => (address: number, length: number, unitId: number, cb: (err: Error | null, values: number[]) => void) => {
      let answer: number[] | Promise<number[]>;
      try {
        answer = this.answer(unitId, () => {
          this.check(table, unitId, address, length);
          return Array.from(this.unit(unitId)[table].subarray(address, address + length));
        });
      } catch (err) {
        return cb(err as Error, []);
      }
      void Promise.resolve(answer).then((values) => cb(null, values), (err: unknown) => cb(err as Error, []));
    };
    const single = (table: RegisterTable) => (address: number, unitId: number) =>
      this.answer(unitId, () => {
        this.check(table, unitId, address, 1);
        return this.unit(unitId)[table][address]!;
      });
    const bit = (table: BitTable) => (address: number, unitId: number) =>
      this.answer(unitId, () => {
        this.check(table, unitId, address, 1);
        return this.unit(unitId)[table][address] === 1;
      });
    return {
      getMultipleHoldingRegisters: registers('holding'),
      getMultipleInputRegisters: registers('input'),
      getHoldingRegister: single('holding'),
      getInputRegister: single('input'),
      getCoil: bit('coil'),
      getDiscreteInput: bit('discrete'),
    };
  }
}

function record(frame: Buffer, at: number): ModbusRequestRecord | undefined {
  if (frame.length < at + 6) return undefined;
  return { unitId: frame[at]!, functionCode: frame[at + 1]!, address: frame.readUInt16BE(at + 2), count: frame.readUInt16BE(at + 4) };
}

type ServerTCP = InstanceType<typeof ModbusSerial.ServerTCP>;

export interface ModbusTcpTestServer {
  readonly port: number;
  readonly memory: ModbusMemory;
  /** Every request received since start (or the last clear), in order. */
  readonly requests: ModbusRequestRecord[];
  /** Closes the listener and every client connection; the port stays reserved for restart(). */
  stop(): Promise<void>;
  /** Listens again on the same port with the same memory. */
  restart(): Promise<void>;
}

function listenTcp(memory: ModbusMemory, port: number, requests: ModbusRequestRecord[]): Promise<ServerTCP> {
  return new Promise((resolve, reject) => {
    const server = new ModbusSerial.ServerTCP(memory.vector(), { host: '127.0.0.1', port, unitID: 255 });
    // modbus-serial emits these for client mistakes and closed sockets; a test server shrugs.
    server.on('error', () => undefined);
    server.on('socketError', () => undefined);
    server.once('serverError', (err: Error) => server.close(() => reject(err)));
    server.once('initialized', () => resolve(server));
    const net = (server as unknown as { _server: Server })._server;
    net.on('connection', (sock: Socket) => {
      let pending = Buffer.alloc(0);
      sock.on('data', (data: Buffer) => {
        pending = Buffer.concat([pending, data]);
        while (pending.length >= 6 && pending.length >= 6 + pending.readUInt16BE(4)) {
          const size = 6 + pending.readUInt16BE(4);
          const r = record(pending.subarray(0, size), 6);
          if (r) requests.push(r);
          pending = pending.subarray(size);
        }
      });
    });
  });
}

function closeTcp(server: ServerTCP): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A Modbus TCP server on 127.0.0.1 at a reserved port (test/helpers/ports.ts), answering every unit id from `memory`. */
export async function startModbusTcpServer(memory = new ModbusMemory()): Promise<ModbusTcpTestServer> {
  const requests: ModbusRequestRecord[] = [];
  // ServerTCP treats port 0 as 502, and restart() comes back on the same port: a reserved port.
  const port = await reservePort();
  let current: ServerTCP | undefined = await listenTcp(memory, port, requests);
  return {
    port,
    memory,
    requests,
    async stop() {
      if (current) await closeTcp(current);
      current = undefined;
    },
    async restart() {
      if (current) return;
      for (let attempt = 0; ; attempt++) {
        try {
          current = await listenTcp(memory, port, requests);
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    },
  };
}

export interface ModbusSerialTestServer {
  readonly memory: ModbusMemory;
  readonly requests: ModbusRequestRecord[];
  /** Bytes of answers written to the serial device so far. */
  bytesWritten(): number;
  close(): Promise<void>;
}

/** An RTU server on the serial device `path` (e.g. one end of openPtyPair()). */
export function startModbusSerialServer(path: string, memory = new ModbusMemory(), options: { baudRate?: number } = {}): Promise<ModbusSerialTestServer> {
  const requests: ModbusRequestRecord[] = [];
  return new Promise((resolve, reject) => {
    const server = new ModbusSerial.ServerSerial(memory.vector(), { path, baudRate: options.baudRate ?? 9600, unitID: 255 } as ConstructorParameters<typeof ModbusSerial.ServerSerial>[1]);
    server.on('error', () => undefined);
    server.on('socketError', () => undefined);
    const internals = server as unknown as { _server: NodeJS.EventEmitter; _serverPath: { write(data: Buffer): boolean } };
    const frames = internals._server;
    // Every answer goes through the port's write: count it, so a test can wait for it to cross the line.
    let written = 0;
    const port = internals._serverPath;
    const write = port.write.bind(port);
    port.write = (data: Buffer) => {
      written += data.length;
      return write(data);
    };
    frames.on('data', (frame: Buffer) => {
      const r = record(frame, 0);
      if (r) requests.push(r);
    });
    const close = () => new Promise<void>((done) => server.close(() => done()));
    const timer = setTimeout(() => void close().then(() => reject(new Error(`serial server on ${path} did not open`))), 5000);
    server.once('initialized', () => {
      clearTimeout(timer);
      resolve({ memory, requests, bytesWritten: () => written, close });
    });
  });
}

export interface SilentTcpServer {
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: () => number;
  close(): Promise<void>;
}

/** Accepts TCP connections on 127.0.0.1 and never answers: the peer of every timeout test. */
export function startSilentTcpServer(): Promise<SilentTcpServer> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createServer((sock) => {
    accepted++;
    sockets.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address ? address.port : 0,
        connections: () => accepted,
        close: () =>
          new Promise<void>((done) => {
            for (const sock of sockets) sock.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
