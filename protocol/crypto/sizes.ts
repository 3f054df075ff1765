/** Fixed byte sizes of the post-quantum primitives (FIPS 203 / FIPS 204). */
export const ML_DSA65 = { seed: 32, publicKey: 1952, signature: 3309, maxContext: 255 } as const;
export const ML_KEM768 = { seed: 64, publicKey: 1184, ciphertext: 1088, sharedSecret: 32 } as const;
