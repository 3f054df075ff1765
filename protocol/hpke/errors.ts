/** Typed HPKE failures. The envelope layer maps these onto its own error codes. */
import { ProtocolError } from '../errors.js';
export type HpkeErrorCode = 'unsupported_suite' | 'bad_input' | 'decap_failed' | 'open_failed' | 'message_limit';

export class HpkeError extends ProtocolError<HpkeErrorCode> {}
