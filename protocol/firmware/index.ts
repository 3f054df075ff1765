/** Firmware formats (docs/protocol/firmware.md): root, manifest, chunks, key wrap, receipt. */
export { FirmwareError, type FirmwareErrorCode } from './errors.js';
export { type KeySignature, type KeySignatureJson, signWith, signatureKeyId, requireThreshold, signaturesFromJson, signaturesToJson } from './signatures.js';
export * from './root.js';
export * from './manifest.js';
export { CONTENT_KEY_LENGTH, encryptChunk, checkChunk, openChunk } from './chunks.js';
export { sha256 } from '../bytes.js';
export { wrapContentKey, unwrapContentKey, type WrapOptions } from './key-wrap.js';
export * from './receipt.js';
