/**
 * Free loopback ports, for the demo plant's servers that cannot report a port 0 bind (mosquitto)
 * or advertise their port before listening (node-opcua). Another process may take the port before
 * it is bound: callers retry on "address in use" (plant/mqtt.ts, plant/opcua.ts). Tests use
 * reserved ports instead (test/helpers/ports.ts).
 */
import { createServer } from 'node:net';

/** A TCP port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
