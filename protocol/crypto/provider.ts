/**
 * Crypto providers: ML-DSA-65 (FIPS 204, pure) and ML-KEM-768 (FIPS 203) behind one small
 * interface. `native` uses node:crypto (OpenSSL 3.5, Node >= 24.7), `noble` uses
 * @noble/post-quantum. Keys are always handled as seeds (ML-DSA: 32-byte xi, ML-KEM: 64-byte
 * d||z), so both providers derive the same key pairs and each verifies/opens what the other made.
 * Selection: getProvider('auto') honours env GHOSTPIPE_CRYPTO=native|noble|auto.
 */
import { nativeProvider, nativeAvailable } from './native.js';
import { nobleProvider } from './noble.js';
import { ProtocolError } from '../errors.js';
import type { CryptoProvider, ProviderName } from './interface.js';

export type { CryptoProvider, MlDsa65, MlKem768, ProviderName } from './interface.js';
export { ML_DSA65, ML_KEM768 } from './sizes.js';

export type CryptoProviderErrorCode = 'provider_unavailable' | 'bad_provider_name';

export class CryptoProviderError extends ProtocolError<CryptoProviderErrorCode> {}

/** Both providers when native is available, otherwise only noble. Native first (it is faster). */
export function availableProviders(): CryptoProvider[] {
  return nativeAvailable() ? [nativeProvider, nobleProvider] : [nobleProvider];
}

/**
 * The provider to use. 'auto' (default) reads GHOSTPIPE_CRYPTO (native|noble|auto, empty = auto)
 * and otherwise picks native when node:crypto passes the ML-KEM/ML-DSA feature test.
 */
export function getProvider(name: 'native' | 'noble' | 'auto' = 'auto'): CryptoProvider {
  let wanted: string = name;
  if (wanted === 'auto') wanted = (process.env['GHOSTPIPE_CRYPTO'] ?? '').trim().toLowerCase() || 'auto';
  switch (wanted) {
    case 'noble':
      return nobleProvider;
    case 'native':
      if (!nativeAvailable()) {
        throw new CryptoProviderError('provider_unavailable',
          `crypto provider "native" requested but node:crypto ${process.version} (OpenSSL ${process.versions.openssl}) has no ML-KEM-768/ML-DSA-65; use Node >= 24.7 or GHOSTPIPE_CRYPTO=noble`);
      }
      return nativeProvider;
    case 'auto':
      return nativeAvailable() ? nativeProvider : nobleProvider;
    default:
      throw new CryptoProviderError('bad_provider_name', `unknown crypto provider "${wanted}" (GHOSTPIPE_CRYPTO): allowed values are native, noble, auto`);
  }
}
