/** Every envelope failure is an EnvelopeError with a stable code; the message names what was wrong. */
import { ProtocolError } from '../errors.js';
export type EnvelopeErrorCode =
  | 'truncated' | 'bad_magic' | 'unsupported_version' | 'unknown_suite' | 'bad_length' | 'too_large'
  | 'bad_bucket' | 'bad_signature' | 'wrong_signer' | 'wrong_recipient' | 'decrypt_failed' | 'bad_padding'
  | 'trailing_bytes' | 'bad_header' | 'too_small';

export class EnvelopeError extends ProtocolError<EnvelopeErrorCode> {}
