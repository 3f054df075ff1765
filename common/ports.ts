/** Free loopback ports, for servers that cannot listen on port 0 themselves (modbus-serial ServerTCP, mosquitto): the demo plant and the tests. */
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
