export { sealBase, openBase, setupBaseSender, setupBaseReceiver, type HpkeSuite } from './hpke.js';
export { HpkeContext, keyScheduleBase, hpkeSuiteId, MODE_BASE, type KeySchedule } from './keyschedule.js';
export { getKem, KEM_XWING, KEM_MLKEM768, KEM_DHKEM_X25519, type Kem } from './kem.js';
export { getAead, type Aead } from './aead.js';
export { KDF_HKDF_SHA256 } from './kdf.js';
export { HpkeError, type HpkeErrorCode } from './errors.js';
