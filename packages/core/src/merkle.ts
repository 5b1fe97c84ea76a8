/**
 * RFC 6962 / RFC 9162 §2.1 Merkle trees over SHA-256: hashing, proof generation,
 * proof verification, and a stored-node model that lets a ledger build any proof
 * from O(log n) stored hashes of complete subtrees.
 *
 * All sizes and indexes are JS numbers (non-negative safe integers). Bit tricks
 * are done with arithmetic, not `>>`/`&`, which would truncate above 2^32.
 * Hashes are 32-byte `Uint8Array`s, treated as immutable once handed over.
 */
import { bytesEqual, concatBytes } from './bytes.js';
import { FormatError } from './errors.js';
import { sha256 } from './hash.js';

/** Byte length of every hash in the tree. */
export const HASH_SIZE = 32;

/** A complete (perfect) subtree: covers leaves `[index * 2^level, (index + 1) * 2^level)`. */
export interface NodeId {
  readonly level: number;
  readonly index: number;
}

/** A complete subtree together with its hash (level 0 nodes are leaf hashes). */
export interface StoredNode extends NodeId {
  readonly hash: Uint8Array;
}

/** Reads the stored hash of a complete subtree. */
export type NodeLookup = (id: NodeId) => Uint8Array;

/** A leaf range `[start, end)`. */
type Range = readonly [start: number, end: number];

// Longest proofs a 2^53 tree can need; longer inputs are rejected before hashing.
const MAX_INCLUSION_PATH = 64;
const MAX_CONSISTENCY_PATH = 128;

// ---------------------------------------------------------------------------
// Hashing (RFC 9162 §2.1.1)
// ---------------------------------------------------------------------------

/** SHA-256 of the empty string: the root of the empty tree, MTH({}) (RFC 9162 §2.1.1). */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));
// Private copy for comparisons, so a caller mutating EMPTY_ROOT cannot affect verification.
const EMPTY_ROOT_COPY = EMPTY_ROOT.slice();

// Scratch buffers: sha256 returns a fresh array, so reusing the input is safe.
const nodeScratch = new Uint8Array(1 + 2 * HASH_SIZE);
nodeScratch[0] = 0x01;
const LEAF_SCRATCH_MAX = 64 * 1024;
let leafScratch = new Uint8Array(1024);

/** Leaf hash, MTH({d}) = SHA-256(0x00 || data) (RFC 9162 §2.1.1). */
export function leafHash(data: Uint8Array): Uint8Array {
  const length = data.length + 1;
  if (length > LEAF_SCRATCH_MAX) {
    const buf = new Uint8Array(length);
    buf.set(data, 1);
    return sha256(buf);
  }
  if (length > leafScratch.length) {
    leafScratch = new Uint8Array(Math.max(length, leafScratch.length * 2));
  }
  leafScratch[0] = 0x00;
  leafScratch.set(data, 1);
  return sha256(leafScratch.subarray(0, length));
}

/** Interior node hash, SHA-256(0x01 || left || right) (RFC 9162 §2.1.1). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  if (left.length === HASH_SIZE && right.length === HASH_SIZE) {
    nodeScratch.set(left, 1);
    nodeScratch.set(right, 1 + HASH_SIZE);
    return sha256(nodeScratch);
  }
  // Not reachable from this module with valid input; kept correct for any lengths.
  return sha256(concatBytes(Uint8Array.of(0x01), left, right));
}

// ---------------------------------------------------------------------------
// Argument checks and integer helpers (safe above 2^32)
// ---------------------------------------------------------------------------

function checkCount(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new FormatError('MERKLE_RANGE', `${name} must be a non-negative safe integer, got ${String(value)}`, {
      field: name,
    });
  }
}

function checkIndex(index: number, size: number): void {
  checkCount(index, 'index');
  checkCount(size, 'size');
  if (index >= size) {
    throw new FormatError('MERKLE_RANGE', `index ${index} is outside a tree of size ${size}`, { field: 'index' });
  }
}

function checkSizes(oldSize: number, newSize: number): void {
  checkCount(oldSize, 'oldSize');
  checkCount(newSize, 'newSize');
  if (oldSize > newSize) {
    throw new FormatError('MERKLE_RANGE', `oldSize ${oldSize} is larger than newSize ${newSize}`, {
      field: 'oldSize',
    });
  }
}

function isHash(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length === HASH_SIZE;
}

function checkHash(value: unknown, name: string): asserts value is Uint8Array {
  if (!isHash(value)) {
    throw new FormatError('MERKLE_RANGE', `${name} must be a ${HASH_SIZE}-byte hash`, { field: name });
  }
}

function isHashList(value: unknown, max: number): value is readonly Uint8Array[] {
  if (!Array.isArray(value) || value.length > max) return false;
  for (const item of value as unknown[]) if (!isHash(item)) return false;
  return true;
}

/** The largest power of two strictly less than `n` (n >= 2): RFC 9162's k. */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}

function popCount(n: number): number {
  let count = 0;
  while (n > 0) {
    count += n % 2;
    n = Math.floor(n / 2);
  }
  return count;
}

// ---------------------------------------------------------------------------
// Tree head, MTH (RFC 9162 §2.1.1)
// ---------------------------------------------------------------------------

function checkLeafHashes(leafHashes: readonly Uint8Array[]): void {
  for (let i = 0; i < leafHashes.length; i++) checkHash(leafHashes[i], `leafHashes[${i}]`);
}

/** MTH of `leafHashes[start, end)`: a stack of complete subtrees, folded right to left. */
function rootOfRange(leafHashes: readonly Uint8Array[], start: number, end: number): Uint8Array {
  if (start === end) return EMPTY_ROOT_COPY.slice();
  if (end - start === 1) return leafHashes[start]!.slice();
  const stack: Uint8Array[] = [];
  for (let i = start; i < end; i++) {
    let h = leafHashes[i]!;
    // Merge completed subtrees: one per trailing 1-bit of the count so far.
    for (let n = i - start; n % 2 === 1; n = (n - 1) / 2) h = nodeHash(stack.pop()!, h);
    stack.push(h);
  }
  let root = stack.pop()!;
  while (stack.length > 0) root = nodeHash(stack.pop()!, root);
  return root;
}

/** The Merkle Tree Hash MTH(D[n]) of a list of leaf hashes, iteratively (RFC 9162 §2.1.1). */
export function rootFromLeafHashes(leafHashes: readonly Uint8Array[]): Uint8Array {
  checkLeafHashes(leafHashes);
  return rootOfRange(leafHashes, 0, leafHashes.length);
}

// ---------------------------------------------------------------------------
// Proof shapes: which leaf ranges a proof's elements are the MTH of
// ---------------------------------------------------------------------------

/**
 * Ranges hashed by PATH(m, D[n]) (RFC 9162 §2.1.3.1), in proof order (the leaf's
 * sibling first). The recursion only ever descends into one side, so it unrolls
 * into a loop from the root down; the output is then reversed.
 */
function inclusionRanges(index: number, size: number): Range[] {
  const out: Range[] = [];
  let lo = 0;
  let hi = size;
  while (hi - lo > 1) {
    const k = splitPoint(hi - lo);
    if (index < lo + k) {
      // PATH(m, D[0:k]) : MTH(D[k:n])
      out.push([lo + k, hi]);
      hi = lo + k;
    } else {
      // PATH(m - k, D[k:n]) : MTH(D[0:k])
      out.push([lo, lo + k]);
      lo += k;
    }
  }
  return out.reverse();
}

/**
 * Ranges hashed by PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (RFC 9162 §2.1.4.1),
 * in proof order. Empty for m = n and (by convention, as the RFC defines no proof
 * there) for m = 0.
 */
function consistencyRanges(oldSize: number, newSize: number): Range[] {
  const out: Range[] = [];
  if (oldSize === 0) return out;
  let lo = 0;
  let hi = newSize;
  let m = oldSize; // relative to lo
  let complete = true; // the RFC's flag b
  for (;;) {
    if (m === hi - lo) {
      // SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
      if (!complete) out.push([lo, hi]);
      break;
    }
    const k = splitPoint(hi - lo);
    if (m <= k) {
      // SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
      out.push([lo + k, hi]);
      hi = lo + k;
    } else {
      // SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
      out.push([lo, lo + k]);
      lo += k;
      m -= k;
      complete = false;
    }
  }
  return out.reverse();
}

// ---------------------------------------------------------------------------
// Proof generation from all leaf hashes (RFC 9162 §2.1.3.1, §2.1.4.1)
// ---------------------------------------------------------------------------

/** Inclusion proof PATH(index, D[n]) from the full list of leaf hashes (RFC 9162 §2.1.3.1). */
export function inclusionProof(index: number, leafHashes: readonly Uint8Array[]): Uint8Array[] {
  checkIndex(index, leafHashes.length);
  checkLeafHashes(leafHashes);
  return inclusionRanges(index, leafHashes.length).map(([a, b]) => rootOfRange(leafHashes, a, b));
}

/** Consistency proof PROOF(oldSize, D[n]) from the new tree's leaf hashes (RFC 9162 §2.1.4.1). */
export function consistencyProof(oldSize: number, leafHashes: readonly Uint8Array[]): Uint8Array[] {
  checkSizes(oldSize, leafHashes.length);
  checkLeafHashes(leafHashes);
  return consistencyRanges(oldSize, leafHashes.length).map(([a, b]) => rootOfRange(leafHashes, a, b));
}

// ---------------------------------------------------------------------------
// Verification (RFC 9162 §2.1.3.2, §2.1.4.2)
// ---------------------------------------------------------------------------

/**
 * The root an inclusion proof leads to (RFC 9162 §2.1.3.2, steps 2–5 without the
 * final root comparison), or `undefined` when the proof has the wrong length or
 * malformed hashes. Throws `MERKLE_RANGE` for index >= size.
 */
export function rootFromInclusionProof(
  leafHash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
): Uint8Array | undefined {
  // Step 1: leaf_index must be below tree_size.
  checkIndex(index, size);
  if (!isHash(leafHash) || !isHashList(proof, MAX_INCLUSION_PATH)) return undefined;
  // Step 2: fn = leaf_index, sn = tree_size - 1. Step 3: r = hash.
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  // Step 4.
  for (const p of proof) {
    // 4a: a path longer than the tree is high fails.
    if (sn === 0) return undefined;
    if (fn % 2 === 1 || fn === sn) {
      // 4b: p is a left sibling.
      r = nodeHash(p, r);
      // 4b.ii: skip levels where the node has no right sibling.
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      // 4b otherwise: p is a right sibling.
      r = nodeHash(r, p);
    }
    // 4c.
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // Step 5: the path must have reached the root.
  if (sn !== 0) return undefined;
  return r === leafHash ? leafHash.slice() : r;
}

/**
 * Verifies an inclusion proof (RFC 9162 §2.1.3.2); false for any malformed or wrong proof.
 * As in the RFC, the proof alone does not pin `size` (a proof can also fit some other
 * size with the same path shape): `size` and `root` must come from one signed checkpoint.
 */
export function verifyInclusion(
  leafHash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  const computed = rootFromInclusionProof(leafHash, index, size, proof);
  return computed !== undefined && isHash(root) && bytesEqual(computed, root);
}

/**
 * Verifies a consistency proof between two tree heads (RFC 9162 §2.1.4.2); false
 * for any malformed or wrong proof. Sizes the RFC leaves undefined are handled as:
 * equal sizes need an empty proof and equal roots; old size 0 needs an empty proof
 * and the empty-tree root. Throws `MERKLE_RANGE` for oldSize > newSize. Each
 * size must come from the same signed checkpoint as its root.
 */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  checkSizes(oldSize, newSize);
  if (!isHash(oldRoot) || !isHash(newRoot) || !isHashList(proof, MAX_CONSISTENCY_PATH)) return false;
  // Equal sizes (including 0 -> 0): nothing to prove, the roots must be identical.
  if (oldSize === newSize) {
    return proof.length === 0 && bytesEqual(oldRoot, newRoot) && (oldSize > 0 || bytesEqual(oldRoot, EMPTY_ROOT_COPY));
  }
  // The empty tree is a prefix of every tree.
  if (oldSize === 0) return proof.length === 0 && bytesEqual(oldRoot, EMPTY_ROOT_COPY);
  // Step 1: an empty path fails.
  if (proof.length === 0) return false;
  // Step 2: if first is an exact power of 2, prepend first_hash.
  const path = isPowerOfTwo(oldSize) ? [oldRoot, ...proof] : proof;
  // Step 3.
  let fn = oldSize - 1;
  let sn = newSize - 1;
  // Step 4: right-shift both while LSB(fn) is set.
  while (fn % 2 === 1) {
    fn = (fn - 1) / 2;
    sn = Math.floor(sn / 2);
  }
  // Step 5.
  let fr = path[0]!;
  let sr = path[0]!;
  // Step 6.
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    // 6a.
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      // 6b.i, 6b.ii
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      // 6b.iii
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      // 6b otherwise
      sr = nodeHash(sr, c);
    }
    // 6c.
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // Step 7.
  return sn === 0 && bytesEqual(fr, oldRoot) && bytesEqual(sr, newRoot);
}

// ---------------------------------------------------------------------------
// Stored-node model
// ---------------------------------------------------------------------------

/** Map key for a node id, `${level}/${index}`. */
export function nodeKey(id: NodeId): string {
  return `${id.level}/${id.index}`;
}

/**
 * An incremental Merkle tree ("compact range"): only the roots of the complete
 * subtrees on the right edge, one per set bit of the size, largest first.
 */
export class MerkleFrontier {
  #size: number;
  readonly #edge: Uint8Array[];

  /** Starts an empty tree, or resumes one from a persisted `size` and `edge()`. */
  constructor(size = 0, edge: readonly Uint8Array[] = []) {
    checkCount(size, 'size');
    if (edge.length !== popCount(size)) {
      throw new FormatError(
        'MERKLE_RANGE',
        `a tree of size ${size} has ${popCount(size)} edge hashes, got ${edge.length}`,
        { field: 'edge' },
      );
    }
    edge.forEach((h, i) => checkHash(h, `edge[${i}]`));
    this.#size = size;
    this.#edge = edge.map((h) => h.slice());
  }

  /** Number of leaves appended so far. */
  get size(): number {
    return this.#size;
  }

  /**
   * Appends one leaf hash (copied); returns the complete nodes this creates: the
   * leaf (level 0) and each parent it completes, bottom-up. O(1) amortised hashing.
   */
  append(leafHash: Uint8Array): StoredNode[] {
    checkHash(leafHash, 'leafHash');
    if (this.#size >= Number.MAX_SAFE_INTEGER) {
      throw new FormatError('MERKLE_RANGE', 'tree size would exceed Number.MAX_SAFE_INTEGER', { field: 'size' });
    }
    let index = this.#size;
    let hash: Uint8Array = leafHash.slice();
    const created: StoredNode[] = [{ level: 0, index, hash }];
    // Each trailing 1-bit of the old size is a complete sibling subtree to merge with.
    for (let level = 0, n = this.#size; n % 2 === 1; n = (n - 1) / 2) {
      hash = nodeHash(this.#edge.pop()!, hash);
      level += 1;
      index = (index - 1) / 2;
      created.push({ level, index, hash });
    }
    this.#edge.push(hash);
    this.#size += 1;
    return created;
  }

  /** Appends leaf hashes in order; returns every node created, in creation order. */
  appendMany(leafHashes: readonly Uint8Array[]): StoredNode[] {
    const created: StoredNode[] = [];
    for (const h of leafHashes) for (const node of this.append(h)) created.push(node);
    return created;
  }

  /** The tree head MTH(D[size]): the edge folded right to left; EMPTY_ROOT when empty (RFC 9162 §2.1.1). */
  root(): Uint8Array {
    const edge = this.#edge;
    if (edge.length === 0) return EMPTY_ROOT_COPY.slice();
    let root = edge[edge.length - 1]!;
    if (edge.length === 1) return root.slice();
    for (let i = edge.length - 2; i >= 0; i--) root = nodeHash(edge[i]!, root);
    return root;
  }

  /** A copy of the edge hashes, largest subtree first, for persisting with `size`. */
  edge(): Uint8Array[] {
    return this.#edge.map((h) => h.slice());
  }
}

/** Splits the leaf range [start, end) into the minimal list of complete subtrees, left to right. */
export function subtreeNodes(start: number, end: number): NodeId[] {
  checkCount(start, 'start');
  checkCount(end, 'end');
  if (start > end) {
    throw new FormatError('MERKLE_RANGE', `range start ${start} is after its end ${end}`, { field: 'start' });
  }
  const out: NodeId[] = [];
  while (start < end) {
    // The largest aligned power-of-two block starting at `start` that fits.
    let level = 0;
    let width = 1;
    while (start % (width * 2) === 0 && start + width * 2 <= end) {
      width *= 2;
      level += 1;
    }
    out.push({ level, index: start / width });
    start += width;
  }
  return out;
}

function dedupe(ids: readonly NodeId[]): NodeId[] {
  const seen = new Set<string>();
  return ids.filter((id) => {
    const key = nodeKey(id);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * Hash of the subtree over [start, end), from stored complete subtrees combined
 * right to left. Valid for ranges whose start is aligned to their width rounded up
 * to a power of two, which holds for every subtree of an RFC 9162 tree.
 */
function rangeHashFromNodes(start: number, end: number, lookup: NodeLookup): Uint8Array {
  const ids = subtreeNodes(start, end);
  let hash = lookupHash(ids[ids.length - 1]!, lookup);
  if (ids.length === 1) return hash.slice();
  for (let i = ids.length - 2; i >= 0; i--) hash = nodeHash(lookupHash(ids[i]!, lookup), hash);
  return hash;
}

function lookupHash(id: NodeId, lookup: NodeLookup): Uint8Array {
  const hash: unknown = lookup(id);
  if (!isHash(hash)) {
    throw new FormatError('MERKLE_RANGE', `no ${HASH_SIZE}-byte hash stored for node ${nodeKey(id)}`, {
      field: nodeKey(id),
    });
  }
  return hash;
}

/** The stored nodes needed to build the inclusion proof for `index` in a tree of `size`, deduplicated. */
export function inclusionProofNodes(index: number, size: number): NodeId[] {
  checkIndex(index, size);
  return dedupe(inclusionRanges(index, size).flatMap(([a, b]) => subtreeNodes(a, b)));
}

/** The stored nodes needed to build the consistency proof from `oldSize` to `newSize`, deduplicated. */
export function consistencyProofNodes(oldSize: number, newSize: number): NodeId[] {
  checkSizes(oldSize, newSize);
  return dedupe(consistencyRanges(oldSize, newSize).flatMap(([a, b]) => subtreeNodes(a, b)));
}

/** Inclusion proof (RFC 9162 §2.1.3.1) built from stored complete-subtree hashes only. */
export function inclusionProofFromNodes(index: number, size: number, lookup: NodeLookup): Uint8Array[] {
  checkIndex(index, size);
  return inclusionRanges(index, size).map(([a, b]) => rangeHashFromNodes(a, b, lookup));
}

/** Consistency proof (RFC 9162 §2.1.4.1) built from stored complete-subtree hashes only. */
export function consistencyProofFromNodes(oldSize: number, newSize: number, lookup: NodeLookup): Uint8Array[] {
  checkSizes(oldSize, newSize);
  return consistencyRanges(oldSize, newSize).map(([a, b]) => rangeHashFromNodes(a, b, lookup));
}

/** Tree head MTH(D[size]) (RFC 9162 §2.1.1) built from stored complete-subtree hashes only. */
export function rootFromNodes(size: number, lookup: NodeLookup): Uint8Array {
  checkCount(size, 'size');
  if (size === 0) return EMPTY_ROOT_COPY.slice();
  return rangeHashFromNodes(0, size, lookup);
}
