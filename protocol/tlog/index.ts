// Transparency log core: RFC 9162 Merkle tree and proofs, C2SP signed notes and
// checkpoints, and the witness that only moves forward along consistent history.
export * from './merkle.js';
export * from './proofs.js';
export * from './note.js';
export * from './checkpoint.js';
export * from './witness.js';
export * from './subtrees.js';
export * from './tiles.js';
