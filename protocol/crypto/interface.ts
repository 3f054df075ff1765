/**
 * What a crypto provider implements (native.ts, noble.ts). In its own file so that the providers
 * import only the interface, and provider.ts, which chooses one, imports the providers: no circle.
 */
export interface MlDsa65 {
  publicKeyFromSeed(seed: Uint8Array /*32*/): Uint8Array /*1952*/;
  /** Hedged (randomized) signature, 3309 bytes. Throws RangeError if context > 255 bytes or seed is not 32 bytes. */
  sign(seed: Uint8Array, message: Uint8Array, context: Uint8Array): Uint8Array;
  /** Never throws on malformed input: returns false. */
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array, context: Uint8Array): boolean;
}

export interface MlKem768 {
  publicKeyFromSeed(seed: Uint8Array /*64 = d||z*/): Uint8Array /*1184*/;
  encapsulate(publicKey: Uint8Array): { ciphertext: Uint8Array; sharedSecret: Uint8Array };
  decapsulate(seed: Uint8Array /*64*/, ciphertext: Uint8Array): Uint8Array;
}

export type ProviderName = 'native' | 'noble';

export interface CryptoProvider {
  readonly name: ProviderName;
  readonly mlDsa65: MlDsa65;
  readonly mlKem768: MlKem768;
}
