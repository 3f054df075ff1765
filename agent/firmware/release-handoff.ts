/**
 * How the agent (unprivileged) and the release service (`ghostpipe release apply`, root) hand a
 * `ghostpipe-release` package over: three small files in <stateDir>/firmware/release/, each
 * written atomically, each checked field by field when read (the service trusts none of them):
 *
 *   request.json  agent → service: the package id and the signed parts of its offer, so that the
 *                 service verifies the staged package itself before it switches anything
 *   running.json  agent → service: this agent process had a frame accepted by the relay and then
 *                 found the relay answering /healthz (its release version, pid and when): the
 *                 health condition of a new release
 *   result.json   service → agent: installed, rolled_back or failed, and why
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { readOptional, writeFileAtomic } from '../../common/atomic-file.js';
import { FIRMWARE_ID_PATTERN, MAX_ROOT_CHAIN } from '../../protocol/api/firmware.js';
import type { KeySignatureJson, SignedRootJson } from '../../protocol/firmware/index.js';

/** The offer's signed parts as the relay served them (agent/firmware/verify.ts checks exactly these). */
export interface OfferParts {
  manifest: string;
  signatures: KeySignatureJson[];
  chunks: number;
  roots: SignedRootJson[];
}

export interface ReleaseRequest {
  /** The package id (manifest digest, hex). */
  id: string;
  offer: OfferParts;
  requestedAt: string;
}

export type ReleaseOutcome = 'installed' | 'rolled_back' | 'failed';

export interface ReleaseResult {
  id: string;
  outcome: ReleaseOutcome;
  /** Empty when installed. */
  reason: string;
  /** The release `current` points at now. */
  running: string;
  at: string;
}

export interface RunningMark {
  version: string;
  pid: number;
  /** ms since the epoch: when the relay had accepted a frame of this process and answered /healthz. */
  acceptedAt: number;
}

/** Far above any real request (a manifest, 32 signatures, 16 roots); a bigger file is not read. */
const MAX_FILE_BYTES = 4 << 20;

export class HandoffError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'HandoffError';
  }
}

export const handoffDir = (stateDir: string): string => path.join(stateDir, 'firmware', 'release');
export const handoffFiles = (stateDir: string) => {
  const dir = handoffDir(stateDir);
  return { dir, request: path.join(dir, 'request.json'), running: path.join(dir, 'running.json'), result: path.join(dir, 'result.json') };
};

export async function writeHandoff(file: string, value: ReleaseRequest | ReleaseResult | RunningMark): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

export const readRequest = (file: string): Promise<ReleaseRequest | undefined> => readHandoff(file, checkRequest);
export const readResult = (file: string): Promise<ReleaseResult | undefined> => readHandoff(file, checkResult);
export const readRunning = (file: string): Promise<RunningMark | undefined> => readHandoff(file, checkRunning);

/** undefined when the file does not exist; HandoffError when it is not what it must be. */
async function readHandoff<T>(file: string, check: (v: Record<string, unknown>) => string | undefined): Promise<T | undefined> {
  const stat = await fs.stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (stat === undefined) return undefined;
  if (!stat.isFile()) throw new HandoffError(file, 'not a regular file');
  if (stat.size > MAX_FILE_BYTES) throw new HandoffError(file, `${stat.size} bytes, more than the ${MAX_FILE_BYTES} a handoff file may have`);
  const text = await readOptional(file);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new HandoffError(file, `not valid JSON (${(err as Error).message}); truncated?`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HandoffError(file, 'not a JSON object');
  const problem = check(value as Record<string, unknown>);
  if (problem !== undefined) throw new HandoffError(file, problem);
  return value as T;
}

const isText = (v: unknown, max = 4096): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
const isId = (v: unknown): v is string => typeof v === 'string' && FIRMWARE_ID_PATTERN.test(v);

function checkRequest(v: Record<string, unknown>): string | undefined {
  if (!isId(v['id'])) return 'id is not a package id (64 hex digits)';
  if (!isText(v['requestedAt'], 64)) return 'requestedAt is missing';
  const o = v['offer'] as Partial<OfferParts> | undefined;
  if (typeof o !== 'object' || o === null) return 'offer is not an object';
  if (!isText(o.manifest, MAX_FILE_BYTES)) return 'offer.manifest is missing';
  if (!Array.isArray(o.signatures)) return 'offer.signatures is not a list';
  if (!Number.isSafeInteger(o.chunks) || o.chunks! < 1) return 'offer.chunks is not a positive integer';
  if (!Array.isArray(o.roots) || o.roots.length > MAX_ROOT_CHAIN) return `offer.roots is not a list of at most ${MAX_ROOT_CHAIN}`;
  return undefined;
}

function checkResult(v: Record<string, unknown>): string | undefined {
  if (!isId(v['id'])) return 'id is not a package id (64 hex digits)';
  if (v['outcome'] !== 'installed' && v['outcome'] !== 'rolled_back' && v['outcome'] !== 'failed') return 'outcome is not installed, rolled_back or failed';
  if (typeof v['reason'] !== 'string') return 'reason is not text';
  if (typeof v['running'] !== 'string') return 'running is not a version';
  if (!isText(v['at'], 64)) return 'at is missing';
  return undefined;
}

function checkRunning(v: Record<string, unknown>): string | undefined {
  if (!isText(v['version'], 256)) return 'version is missing';
  if (!Number.isSafeInteger(v['pid']) || (v['pid'] as number) < 1) return 'pid is not a process id';
  if (!Number.isSafeInteger(v['acceptedAt']) || (v['acceptedAt'] as number) < 0) return 'acceptedAt is not a time';
  return undefined;
}
