/**
 * C2SP tlog-tiles paths, bundles and tile sets (protocol/tlog/tiles.ts), with the spec's own
 * examples (c2sp.org/tlog-tiles: index 1234067, a tree of 70,000 leaves, a tree of 256 leaves).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeTileIndex, parseTilePath, tilePath, encodeBundle, parseBundle, tilesChanged, partialWidth, TileError, locateSubtree, TileTree } from './tiles.js';
import { MerkleTree, leafHash } from './merkle.js';

test('tile index encoding: the spec example and edges', () => {
  assert.equal(encodeTileIndex(1234067), 'x001/x234/067');
  assert.equal(encodeTileIndex(0), '000');
  assert.equal(encodeTileIndex(999), '999');
  assert.equal(encodeTileIndex(1000), 'x001/000');
  assert.equal(tilePath({ level: 0, index: 1234067, width: 256 }), 'tile/0/x001/x234/067');
  assert.equal(tilePath({ level: 2, index: 5, width: 17 }), 'tile/2/005.p/17');
  assert.equal(tilePath({ level: 'entries', index: 1000, width: 1 }), 'tile/entries/x001/000.p/1');
});

test('parseTilePath accepts exactly the canonical encoding', () => {
  for (const tile of [{ level: 0, index: 1234067, width: 256 }, { level: 3, index: 7, width: 255 }, { level: 'entries' as const, index: 999_999, width: 1 }]) {
    assert.deepEqual(parseTilePath(tilePath(tile).split('/').slice(1)), tile);
  }
  const bad = ['0', '00/000', '0/1', '0/0000', '0/001/002', '0/x001', '0/x000/001', '01/000', '64/000', '0/000.p/0', '0/000.p/256', '0/000.p/017', '0/000.p', 'foo/000', '0/abc', '0/x001/x002/x003/x004/x005/x006/007'];
  for (const text of bad) assert.throws(() => parseTilePath(text.split('/')), (err: unknown) => err instanceof TileError && err.code === 'bad_path', text);
});

test('the tiles of a tree of 70,000 leaves, and of 256 (spec examples)', () => {
  const tiles = tilesChanged(0, 70_000);
  const level0 = tiles.filter((t) => t.level === 0);
  assert.equal(level0.filter((t) => t.width === 256).length, 273);
  assert.deepEqual(level0.filter((t) => t.width < 256), [{ level: 0, index: 273, width: 112 }]);
  assert.deepEqual(tiles.filter((t) => t.level === 1), [{ level: 1, index: 0, width: 256 }, { level: 1, index: 1, width: 17 }]);
  assert.deepEqual(tiles.filter((t) => t.level === 2), [{ level: 2, index: 0, width: 1 }]);
  assert.equal(tiles.filter((t) => t.level === 'entries').length, 274);
  assert.deepEqual(tilesChanged(0, 256), [{ level: 0, index: 0, width: 256 }, { level: 'entries', index: 0, width: 256 }, { level: 1, index: 0, width: 1 }]);
  assert.equal(partialWidth(1, 70_000), 17);
  // Only what changed: from 70,000 to 70,001 the level-0 partial grows; nothing else.
  assert.deepEqual(tilesChanged(70_000, 70_001), [{ level: 0, index: 273, width: 113 }, { level: 'entries', index: 273, width: 113 }]);
});

test('entry bundles: round trip, exact width, torn prefix, bad input', () => {
  const entries = [Uint8Array.of(1), new Uint8Array(300).fill(7), new Uint8Array(0xffff).fill(9)];
  const bytes = encodeBundle(entries);
  assert.deepEqual(parseBundle(bytes, 3).map((e) => e.length), [1, 300, 0xffff]);
  assert.throws(() => parseBundle(bytes, 2), /3 entries, expected 2/);
  assert.throws(() => parseBundle(bytes.subarray(0, bytes.length - 1)), /runs past the end/);
  assert.equal(parseBundle(bytes.subarray(0, bytes.length - 1), undefined, { prefix: true }).length, 2);
  assert.throws(() => parseBundle(Uint8Array.of(0, 0)), /empty entry/);
  assert.throws(() => parseBundle(Uint8Array.of(0)), /truncated length/);
  assert.throws(() => encodeBundle([new Uint8Array(0x10000)]), /1 to 65535 bytes/);
  assert.throws(() => encodeBundle([]), /1 to 256 entries/);
});

test('a subtree located in a tile: TileTree inner nodes equal the Merkle tree nodes', () => {
  const tree = new MerkleTree();
  const hashes = new Uint8Array(256 * 32);
  for (let i = 0; i < 256; i++) {
    const h = leafHash(Uint8Array.of(i, 1));
    tree.append(h);
    hashes.set(h, i * 32);
  }
  for (const height of [0, 1, 3, 7]) {
    // Subtree 0 of each height is the root of the first 2^height leaves.
    const at = locateSubtree(height, 0);
    assert.deepEqual(TileTree.from(0, 0, hashes, 256).node(Math.log2(at.count), at.first / at.count).slice(), tree.root(2 ** height));
  }
  assert.deepEqual(TileTree.from(0, 0, hashes, 256).node(8, 0).slice(), tree.root(256));
  const partial = TileTree.from(0, 0, hashes, 5);
  assert.deepEqual(partial.node(2, 0).slice(), tree.root(4), 'a growing (edge) tile has the nodes of its complete runs');
  assert.deepEqual(partial.hashes(), hashes.subarray(0, 5 * 32));
  assert.deepEqual(locateSubtree(8, 5), { level: 1, tileIndex: 0, first: 5, count: 1 });
  assert.deepEqual(locateSubtree(10, 300), { level: 1, tileIndex: 4, first: 176, count: 4 });
});
