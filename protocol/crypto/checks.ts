/** Argument checks shared by both providers: wrong sizes are caller bugs and throw RangeError. */
import { ML_DSA65, ML_KEM768 } from './sizes.js';

export function expectLength(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throw new RangeError(`${what} must be ${length} bytes, got ${bytes instanceof Uint8Array ? bytes.length : typeof bytes}`);
  }
}

export function checkContext(context: Uint8Array): void {
  if (!(context instanceof Uint8Array) || context.length > ML_DSA65.maxContext) {
    throw new RangeError(`ML-DSA context must be at most ${ML_DSA65.maxContext} bytes`);
  }
}

/** True when verify inputs have the sizes FIPS 204 allows (verify returns false otherwise). */
export function verifyInputsWellFormed(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array, context: Uint8Array): boolean {
  return publicKey instanceof Uint8Array && publicKey.length === ML_DSA65.publicKey
    && signature instanceof Uint8Array && signature.length === ML_DSA65.signature
    && message instanceof Uint8Array
    && context instanceof Uint8Array && context.length <= ML_DSA65.maxContext;
}

export { ML_DSA65, ML_KEM768 };
