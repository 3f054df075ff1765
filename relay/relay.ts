/**
 * A running relay: state + HTTP server + the sweeper (lease timeouts, TTL expiry), and the
 * shutdown sequence (stop accepting, finish in-flight briefly, burn everything, flush state).
 */
import type { Logger } from '../common/log.js';
import type { RelayConfig } from './config.js';
import { RelayState } from './state.js';
import { RelayServer } from './server.js';

export interface RunningRelay {
  state: RelayState;
  addresses: { host: string; port: number }[];
  stop(): Promise<void>;
}

export async function startRelay(config: RelayConfig, logger: Logger): Promise<RunningRelay> {
  const state = await RelayState.open(config, logger);
  const server = new RelayServer(config, state, logger);
  const addresses = await server.listen();
  const sweepEvery = Math.max(50, Math.min(1000, Math.floor(config.leaseTimeout / 4)));
  const sweeper = setInterval(() => state.store.sweep(), sweepEvery);
  for (const a of addresses) logger.info({ host: a.host, port: a.port, tls: config.tls !== undefined }, 'relay listening');
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      logger.info('relay stopping: no new requests, finishing in-flight ones');
      await server.stop(config.limits.shutdownGrace);
      clearInterval(sweeper);
      const burned = state.store.burnAll();
      await state.close();
      logger.info({ burned }, 'relay stopped; every held envelope burned');
    })());
  return { state, addresses, stop };
}
