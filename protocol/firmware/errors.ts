/** The one error of protocol/firmware: `code` says what a device refuses, `message` names the field or key. */
import { ProtocolError } from '../errors.js';

export type FirmwareErrorCode =
  // encoding
  | 'bad_magic' | 'bad_version' | 'truncated' | 'trailing_bytes' | 'bad_field'
  // signatures and roots
  | 'bad_signature' | 'below_threshold' | 'not_chained'
  // a manifest that is genuine but not for this device, or not now
  | 'wrong_group' | 'wrong_hardware' | 'rollback' | 'expired'
  // payload
  | 'bad_chunk' | 'wrong_key';

export class FirmwareError extends ProtocolError<FirmwareErrorCode> {}

export const fail = (code: FirmwareErrorCode, message: string): never => {
  throw new FirmwareError(code, message);
};
