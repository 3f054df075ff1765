/**
 * Exit codes and messages for broken state files, shared by every role (docs/RELIABILITY.md,
 * "Broken state files and exit codes"). Two codes, so that an operator (or a systemd unit's
 * RestartPreventExitStatus=) can tell "this file is wrong, a restart will not help" from "the
 * disk failed, free space and restart":
 *
 *   65 (EX_DATAERR)  a state file exists but cannot be used: garbled, truncated, wrong layout,
 *                    or not a regular file. The role refuses to start; nothing was changed.
 *   74 (EX_IOERR)    reading or writing a state file failed at the OS level (ENOSPC, EFBIG,
 *                    EIO, EROFS, EACCES…), at start or while running. The role stops.
 */

export const EXIT_STATE_BAD = 65;
export const EXIT_STATE_IO = 74;

/** errno codes that mean "the disk or file system failed us" rather than "the file is wrong". */
const IO_CODES = new Set(['ENOSPC', 'EFBIG', 'EDQUOT', 'EIO', 'EROFS', 'EACCES', 'EPERM', 'EMFILE', 'ENFILE', 'EBUSY']);

const DESCRIPTIONS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large (file size limit)',
  EIO: 'input/output error',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a directory, not a file',
  ENOTDIR: 'a path component is not a directory',
  ELOOP: 'too many levels of symbolic links',
};

/** 74 for an OS-level I/O failure, 65 for anything else (bad content, not a file). */
export function stateExitCode(err: unknown): number {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && IO_CODES.has(code) ? EXIT_STATE_IO : EXIT_STATE_BAD;
}

/** A short reason without the path (the caller names the file once): "no space left on device (ENOSPC)". */
export function describeFileError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code !== undefined && DESCRIPTIONS[code] !== undefined) return `${DESCRIPTIONS[code]} (${code})`;
  if (err instanceof SyntaxError) return `not valid JSON (${err.message})`;
  const message = err instanceof Error ? err.message : String(err);
  return code !== undefined ? `${message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '')} (${code})` : message;
}

/** A state file problem of the relay or the receiver: one line naming the file (the agent's single state file has AgentStateError). */
export class StateFileError extends Error {
  constructor(readonly file: string, message: string, readonly exitCode: number = EXIT_STATE_BAD) {
    super(`${file}: ${message}`);
    this.name = 'StateFileError';
  }
}

let fatalCode: number | undefined;
let fatalMessage: string | undefined;

/**
 * A state write failed while running: remember `code` and SIGTERM this process, so the role's
 * normal stop path runs (in-flight requests finish, RAM is burned) and then exits with `code`.
 */
export function stopForStateFailure(code: number, message: string): void {
  if (fatalCode !== undefined) return;
  fatalCode = code;
  fatalMessage = message;
  process.kill(process.pid, 'SIGTERM');
}

/** The exit code stopForStateFailure() asked for, if it was called. */
export function stateFailureExitCode(): number | undefined {
  return fatalCode;
}

/** Why stopForStateFailure() was called (names the file), for the CLI's one-line error. */
export function stateFailureMessage(): string | undefined {
  return fatalMessage;
}

/** Runs one file operation; an OS error becomes a StateFileError naming `file` (writes are always 74). */
export async function onFile<T>(file: string, doing: 'read' | 'write', op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof StateFileError) throw err;
    throw new StateFileError(file, `${doing} failed: ${describeFileError(err)}`, doing === 'write' ? EXIT_STATE_IO : stateExitCode(err));
  }
}
