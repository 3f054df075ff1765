/**
 * The transparency log's public reads (docs/API.md "Log"): checkpoint, key, proofs, entries and
 * C2SP tlog-tiles. Only what a signed checkpoint covers is served. Query values arrive parsed;
 * the rules that depend on the log's signed size are checked here.
 */
import { encodePublicKeyPem } from '../protocol/keys.js';
import type { ConsistencyProofBody, EntriesBody, InclusionProofBody, LogKeyBody } from '../protocol/api/index.js';
import { mlDsaVerifierKey } from '../protocol/tlog/note.js';
import { TileError, parseTilePath, tilePath, type TileId } from '../protocol/tlog/tiles.js';
import { badRequest, notFound, Refusal, type Outcome } from './refusal.js';
import type { RelayState } from './state.js';

const MAX_ENTRIES = 1000;

export class LogReads {
  constructor(private readonly state: RelayState) {}

  get signedSize(): number {
    return this.state.log.signedSize;
  }

  checkpoint(): string {
    return this.state.log.checkpoint;
  }

  key(): LogKeyBody {
    const { origin, relayPublicKey: pk } = this.state;
    return { origin, verifierKey: mlDsaVerifierKey(origin, pk), publicKey: b64(pk), publicKeyPem: encodePublicKeyPem('ML-DSA-65', pk) };
  }

  /** The index of a recent leaf (the last 65,536) within the first `size` leaves. */
  async leafIndex(leafHash: Uint8Array, size: number): Promise<Outcome<number>> {
    const found = await this.state.log.indexOfLeafHash(leafHash);
    return found === undefined || found >= size ? notFound() : found;
  }

  /** Requires 0 <= index < size <= signedSize. */
  async inclusion(index: number, size: number): Promise<InclusionProofBody> {
    return { leafIndex: index, treeSize: size, proof: (await this.state.log.inclusionProof(index, size)).map(b64) };
  }

  async consistency(from: number, to: number): Promise<Outcome<ConsistencyProofBody>> {
    const signed = this.signedSize;
    if (from > to || to > signed) return badRequest(`need 0 <= from <= to <= ${signed} (the signed tree size)`);
    return { from, to, proof: (await this.state.log.consistencyProof(from, to)).map(b64) };
  }

  /** Leaves start..end-1, at most 1000. */
  async entries(start: number, end: number): Promise<Outcome<EntriesBody>> {
    const signed = this.signedSize;
    if (start >= end || end > signed || end - start > MAX_ENTRIES) return badRequest(`need start < end <= ${signed} (the signed tree size), at most ${MAX_ENTRIES} entries`);
    const entries: EntriesBody['entries'] = [];
    (await this.state.log.entries(start, end)).forEach((data, i) => entries.push({ index: start + i, data: b64(data) }));
    return { entries };
  }

  /** A tile by its tlog-tiles path after "tile/" ("0/x001/234.p/7", "entries/000"). Tile contents never change. */
  async tile(path: string): Promise<Outcome<{ tile: TileId; bytes: Uint8Array }>> {
    let tile: TileId;
    try {
      tile = parseTilePath(path.split('/'));
    } catch (err) {
      if (err instanceof TileError) return badRequest(err.message);
      throw err;
    }
    const bytes = await this.state.log.tileBytes(tile);
    if (bytes === undefined) return new Refusal('not_found', `${tilePath(tile)} is beyond the signed tree size ${this.signedSize}`);
    return { tile, bytes };
  }
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}
