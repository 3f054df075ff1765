/** Typed HPKE failures. The envelope layer maps these onto its own error codes. */
export type HpkeErrorCode = 'unsupported_suite' | 'bad_input' | 'decap_failed' | 'open_failed' | 'message_limit';

export class HpkeError extends Error {
  readonly code: HpkeErrorCode;
  constructor(code: HpkeErrorCode, message: string) {
    super(message);
    this.name = 'HpkeError';
    this.code = code;
  }
}
