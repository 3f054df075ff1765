/**
 * Base of every typed protocol error: `code` is stable for programs and tests, `message` names
 * what was wrong for people. Each part declares its own subclass and code union, so a caller can
 * still tell an EnvelopeError from a KeyError with instanceof.
 */
export class ProtocolError<Code extends string> extends Error {
  constructor(readonly code: Code, message: string) {
    super(message);
    this.name = new.target.name;
  }
}
