// C2SP tlog-checkpoint note text (c2sp.org/tlog-checkpoint):
//   <origin>\n<decimal tree size>\n<base64 root hash>\n[<extension line>\n ...]
// Parsing is strict: every deviation is a CheckpointError naming the line.

import { HASH_SIZE } from './merkle.js';
import { checkNoteCharacters, fromBase64, openNote, signNote, toBase64, type NoteSigner, type NoteVerifier, type NoteSignature } from './note.js';
import { ProtocolError } from '../errors.js';

/** Checkpoint text limit (the signed note around it has its own, larger limit). */
export const MAX_CHECKPOINT_BYTES = 64 * 1024;

export interface Checkpoint {
  origin: string;
  size: number;
  root: Uint8Array;
  extensions: string[];
}

export type CheckpointErrorCode = 'malformed' | 'bad_origin' | 'bad_size' | 'bad_root' | 'bad_extension' | 'oversized';

export class CheckpointError extends ProtocolError<CheckpointErrorCode> {}

export function formatCheckpoint(checkpoint: { origin: string; size: number; root: Uint8Array; extensions?: string[] }): string {
  const { origin, size, root, extensions = [] } = checkpoint;
  checkOrigin(origin);
  if (!Number.isSafeInteger(size) || size < 0) throw new CheckpointError('bad_size', `tree size must be a non-negative safe integer, got ${String(size)}`);
  if (!(root instanceof Uint8Array) || root.length !== HASH_SIZE) throw new CheckpointError('bad_root', `root hash must be ${HASH_SIZE} bytes`);
  extensions.forEach(checkExtension);
  const text = [origin, String(size), toBase64(root), ...extensions].join('\n') + '\n';
  checkCharacters(text);
  if (text.length > MAX_CHECKPOINT_BYTES) throw new CheckpointError('oversized', `checkpoint exceeds ${MAX_CHECKPOINT_BYTES} bytes`);
  return text;
}

/** Parses checkpoint note text (not the signed note: use openCheckpoint for that). */
export function parseCheckpoint(text: string): Checkpoint {
  if (typeof text !== 'string') throw new CheckpointError('malformed', 'checkpoint must be a string');
  if (text.length > MAX_CHECKPOINT_BYTES) throw new CheckpointError('oversized', `checkpoint exceeds ${MAX_CHECKPOINT_BYTES} bytes`);
  checkCharacters(text);
  if (!text.endsWith('\n')) throw new CheckpointError('malformed', 'checkpoint must end with a newline');
  const [origin, sizeLine, rootLine, ...extensions] = text.slice(0, -1).split('\n');
  if (sizeLine === undefined || rootLine === undefined) throw new CheckpointError('malformed', 'checkpoint needs an origin, a tree size and a root hash line');
  checkOrigin(origin!);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeLine) || !Number.isSafeInteger(Number(sizeLine))) {
    throw new CheckpointError('bad_size', 'line 2 (tree size) must be a decimal integer without leading zeros, at most 2^53-1');
  }
  const root = fromBase64(rootLine);
  if (root === undefined || root.length !== HASH_SIZE) {
    throw new CheckpointError('bad_root', `line 3 (root hash) must be base64 of ${HASH_SIZE} bytes`);
  }
  extensions.forEach(checkExtension);
  return { origin: origin!, size: Number(sizeLine), root, extensions };
}

/** Formats and signs a checkpoint. */
export function signCheckpoint(checkpoint: { origin: string; size: number; root: Uint8Array; extensions?: string[] }, signers: NoteSigner[]): string {
  return signNote(formatCheckpoint(checkpoint), signers);
}

/**
 * Verifies a signed checkpoint note (NoteError on signature problems) and parses its
 * text (CheckpointError). With `origin`, a different origin line is a CheckpointError 'bad_origin'.
 */
export function openCheckpoint(note: string | Uint8Array, verifiers: NoteVerifier[], origin?: string): { checkpoint: Checkpoint; signatures: NoteSignature[]; note: string } {
  const opened = openNote(note, verifiers);
  const checkpoint = parseCheckpoint(opened.text);
  if (origin !== undefined && checkpoint.origin !== origin) {
    throw new CheckpointError('bad_origin', `checkpoint origin does not match the expected origin ${JSON.stringify(origin)}`);
  }
  const noteText = typeof note === 'string' ? note : new TextDecoder().decode(note);
  return { checkpoint, signatures: opened.signatures, note: noteText };
}

function checkCharacters(text: string): void {
  try {
    checkNoteCharacters(text, 'checkpoint');
  } catch {
    throw new CheckpointError('malformed', 'checkpoint contains a control character or invalid Unicode');
  }
}

function checkOrigin(origin: string): void {
  if (typeof origin !== 'string' || origin === '') throw new CheckpointError('bad_origin', 'line 1 (origin) must not be empty');
  if (origin.includes('\n')) throw new CheckpointError('bad_origin', 'origin must be a single line');
}

function checkExtension(line: string, i: number): void {
  if (typeof line !== 'string' || line === '' || line.includes('\n')) {
    throw new CheckpointError('bad_extension', `extension line ${i + 1} must be a non-empty single line`);
  }
}
