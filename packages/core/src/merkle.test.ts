import { describe, expect, it } from 'vitest';

import { concatBytes, fromHex, toHex, utf8 } from './bytes.js';
import { FormatError } from './errors.js';
import { sha256 } from './hash.js';
import {
  EMPTY_ROOT,
  HASH_SIZE,
  MerkleFrontier,
  consistencyProof,
  consistencyProofFromNodes,
  consistencyProofNodes,
  inclusionProof,
  inclusionProofFromNodes,
  inclusionProofNodes,
  leafHash,
  nodeHash,
  nodeKey,
  rootFromInclusionProof,
  rootFromLeafHashes,
  rootFromNodes,
  subtreeNodes,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js';
import type { NodeId, NodeLookup } from './merkle.js';
import {
  type Ids,
  REF_COMPACT_TREES,
  REF_CONSISTENCY,
  REF_CONSISTENCY_NODES,
  REF_INCLUSION,
  REF_INCLUSION_NODES,
  REF_LEAF_INPUTS,
  REF_NODE_HASHES,
  REF_ROOTS,
} from '../../../test/fixtures/rfc6962-reference.js';

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const hex = (hashes: readonly Uint8Array[]): string[] => hashes.map(toHex);
const unhex = (hashes: readonly string[]): Uint8Array[] => hashes.map((h) => fromHex(h));
const keysOf = (ids: readonly NodeId[]): string[] => ids.map(nodeKey).sort();
const refKeys = (ids: Ids): string[] => ids.map(([level, index]) => nodeKey({ level, index })).sort();

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

function replaceAt<T>(list: readonly T[], i: number, value: T): T[] {
  const out = list.slice();
  out[i] = value;
  return out;
}

/** Bits to flip in a 32-byte hash: all 256 for small trees, a spread of 8 otherwise. */
function bitsToFlip(exhaustive: boolean, seed: number): number[] {
  if (exhaustive) return Array.from({ length: 256 }, (_, i) => i);
  return Array.from({ length: 8 }, (_, j) => (seed * 31 + j * 37) % 256);
}

function expectRangeError(fn: () => unknown): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(FormatError);
  expect((caught as FormatError).code).toBe('MERKLE_RANGE');
}

// A literal transcription of RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1 (recursive,
// with slices), hashing through `sha256` directly: an independent oracle.
const refNode = (l: Uint8Array, r: Uint8Array): Uint8Array => sha256(concatBytes(Uint8Array.of(1), l, r));
const refK = (n: number): number => 2 ** Math.ceil(Math.log2(n) - 1);
function refMth(d: readonly Uint8Array[]): Uint8Array {
  if (d.length === 0) return sha256(new Uint8Array(0));
  if (d.length === 1) return d[0]!;
  const k = refK(d.length);
  return refNode(refMth(d.slice(0, k)), refMth(d.slice(k)));
}
function refPath(m: number, d: readonly Uint8Array[]): Uint8Array[] {
  if (d.length <= 1) return [];
  const k = refK(d.length);
  return m < k ? [...refPath(m, d.slice(0, k)), refMth(d.slice(k))] : [...refPath(m - k, d.slice(k)), refMth(d.slice(0, k))];
}
function refSubproof(m: number, d: readonly Uint8Array[], b: boolean): Uint8Array[] {
  if (m === d.length) return b ? [] : [refMth(d)];
  const k = refK(d.length);
  return m <= k
    ? [...refSubproof(m, d.slice(0, k), b), refMth(d.slice(k))]
    : [...refSubproof(m - k, d.slice(k), false), refMth(d.slice(0, k))];
}

// A 70-leaf tree with its stored nodes, filled from MerkleFrontier.append.
const MAX = 70;
const LEAVES = Array.from({ length: MAX }, (_, i) => leafHash(utf8(`leaf-${i}`)));
const STORE = new Map<string, Uint8Array>();
const ROOTS: Uint8Array[] = [];
{
  const frontier = new MerkleFrontier();
  ROOTS.push(frontier.root());
  for (const leaf of LEAVES) {
    for (const node of frontier.append(leaf)) STORE.set(nodeKey(node), node.hash);
    ROOTS.push(frontier.root());
  }
}
function recordingLookup(): { lookup: NodeLookup; read: Set<string> } {
  const read = new Set<string>();
  const lookup: NodeLookup = (id) => {
    const key = nodeKey(id);
    read.add(key);
    const hash = STORE.get(key);
    if (hash === undefined) throw new Error(`missing node ${key}`);
    return hash;
  };
  return { lookup, read };
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe('hashing (RFC 9162 §2.1.1)', () => {
  it('hashes leaves and nodes with the 0x00 / 0x01 prefixes', () => {
    const data = utf8('custody');
    expect(toHex(leafHash(data))).toBe(toHex(sha256(Uint8Array.of(0), data)));
    const a = leafHash(utf8('a'));
    const b = leafHash(utf8('b'));
    expect(toHex(nodeHash(a, b))).toBe(toHex(sha256(Uint8Array.of(1), a, b)));
    expect(toHex(nodeHash(b, a))).not.toBe(toHex(nodeHash(a, b)));
    // Not 32-byte inputs still follow the definition.
    expect(toHex(nodeHash(Uint8Array.of(7), b))).toBe(toHex(sha256(Uint8Array.of(1, 7), b)));
  });

  it('does not let scratch-buffer reuse leak between calls', () => {
    const big = new Uint8Array(5000).fill(9);
    const first = leafHash(big);
    leafHash(utf8('x'));
    expect(toHex(leafHash(big))).toBe(toHex(first));
    const huge = new Uint8Array(200_000).fill(3);
    expect(toHex(leafHash(huge))).toBe(toHex(sha256(Uint8Array.of(0), huge)));
    const a = LEAVES[0]!;
    const b = LEAVES[1]!;
    const ab = nodeHash(a, b);
    nodeHash(b, a);
    expect(toHex(ab)).toBe(toHex(nodeHash(a, b)));
  });

  it('has the empty-tree root SHA-256("")', () => {
    expect(toHex(EMPTY_ROOT)).toBe(REF_ROOTS[0]);
    expect(toHex(rootFromLeafHashes([]))).toBe(REF_ROOTS[0]);
    expect(HASH_SIZE).toBe(32);
  });
});

describe('RFC 6962 reference tree (transparency-dev/merkle test data)', () => {
  const leaves = REF_LEAF_INPUTS.map((h) => leafHash(fromHex(h)));

  it('has the published leaf hashes and roots for sizes 0..8', () => {
    expect(hex(leaves)).toEqual(REF_NODE_HASHES[0]);
    for (let n = 0; n <= 8; n++) {
      expect(toHex(rootFromLeafHashes(leaves.slice(0, n))), `size ${n}`).toBe(REF_ROOTS[n]);
    }
  });

  it('frontier creates exactly the published complete-subtree hashes and edges', () => {
    const frontier = new MerkleFrontier();
    const created = new Map<string, string>();
    expect(frontier.edge()).toEqual([]);
    for (let n = 1; n <= 8; n++) {
      for (const node of frontier.append(leaves[n - 1]!)) created.set(nodeKey(node), toHex(node.hash));
      expect(toHex(frontier.root()), `size ${n}`).toBe(REF_ROOTS[n]);
      const edge = REF_COMPACT_TREES[n]!.map(([level, index]) => REF_NODE_HASHES[level]![index]!);
      expect(hex(frontier.edge()), `edge of size ${n}`).toEqual(edge);
    }
    const expected = new Map<string, string>();
    REF_NODE_HASHES.forEach((row, level) => row.forEach((h, index) => expected.set(nodeKey({ level, index }), h)));
    expect(created).toEqual(expected);
  });

  it('produces and verifies the published inclusion proofs', () => {
    for (const { index, size, proof } of REF_INCLUSION) {
      const tree = leaves.slice(0, size);
      const root = fromHex(REF_ROOTS[size]!);
      expect(hex(inclusionProof(index, tree)), `${index}/${size}`).toEqual(proof);
      expect(verifyInclusion(leaves[index]!, index, size, unhex(proof), root)).toBe(true);
    }
  });

  it('produces and verifies the published consistency proofs', () => {
    for (const { from, to, proof } of REF_CONSISTENCY) {
      expect(hex(consistencyProof(from, leaves.slice(0, to))), `${from}->${to}`).toEqual(proof);
      const ok = verifyConsistency(from, to, fromHex(REF_ROOTS[from]!), fromHex(REF_ROOTS[to]!), unhex(proof));
      expect(ok).toBe(true);
    }
  });

  it('builds the same proofs from the published node hashes alone', () => {
    const lookup: NodeLookup = ({ level, index }) => fromHex(REF_NODE_HASHES[level]![index]!);
    for (const { index, size, proof } of REF_INCLUSION) {
      expect(hex(inclusionProofFromNodes(index, size, lookup))).toEqual(proof);
    }
    for (const { from, to, proof } of REF_CONSISTENCY) {
      expect(hex(consistencyProofFromNodes(from, to, lookup))).toEqual(proof);
    }
    for (let n = 0; n <= 8; n++) expect(toHex(rootFromNodes(n, lookup))).toBe(REF_ROOTS[n]);
  });

  it('reads the published set of stored nodes per proof', () => {
    for (const { index, size, ids } of REF_INCLUSION_NODES) {
      expect(keysOf(inclusionProofNodes(index, size)), `${index}/${size}`).toEqual(refKeys(ids));
    }
    for (const { from, to, ids } of REF_CONSISTENCY_NODES) {
      expect(keysOf(consistencyProofNodes(from, to)), `${from}->${to}`).toEqual(refKeys(ids));
    }
  });

  it('rejects the published argument errors', () => {
    for (const [index, size] of [
      [0, 0],
      [1, 0],
      [2, 1],
      [3, 0],
      [8, 7],
    ] as const) {
      expectRangeError(() => inclusionProofNodes(index, size));
    }
    expectRangeError(() => consistencyProofNodes(5, 0));
    expectRangeError(() => consistencyProofNodes(9, 8));
  });
});

describe(`all trees of size 1..${MAX}`, () => {
  it('roots agree: frontier, leaves, stored nodes and the RFC recursion', () => {
    for (let n = 0; n <= MAX; n++) {
      const tree = LEAVES.slice(0, n);
      const root = toHex(ROOTS[n]!);
      expect(toHex(rootFromLeafHashes(tree)), `size ${n}`).toBe(root);
      expect(toHex(refMth(tree)), `size ${n}`).toBe(root);
      expect(toHex(rootFromNodes(n, recordingLookup().lookup)), `size ${n}`).toBe(root);
    }
  });

  it('inclusion proofs: leaves == stored nodes == RFC PATH, read exactly the listed nodes, and verify', () => {
    for (let n = 1; n <= MAX; n++) {
      const tree = LEAVES.slice(0, n);
      for (let i = 0; i < n; i++) {
        const proof = inclusionProof(i, tree);
        const { lookup, read } = recordingLookup();
        expect(hex(inclusionProofFromNodes(i, n, lookup)), `${i}/${n}`).toEqual(hex(proof));
        expect(hex(proof), `${i}/${n}`).toEqual(hex(refPath(i, tree)));
        const ids = inclusionProofNodes(i, n);
        expect(keysOf(ids)).toEqual([...read].sort());
        expect(new Set(ids.map(nodeKey)).size).toBe(ids.length);
        expect(verifyInclusion(LEAVES[i]!, i, n, proof, ROOTS[n]!), `${i}/${n}`).toBe(true);
        expect(toHex(rootFromInclusionProof(LEAVES[i]!, i, n, proof)!)).toBe(toHex(ROOTS[n]!));
      }
    }
  });

  it('inclusion proofs reject every tampering', () => {
    // Collected rather than asserted one by one: this runs about half a million checks.
    const accepted: string[] = [];
    for (let n = 1; n <= MAX; n++) {
      const tree = LEAVES.slice(0, n);
      const root = ROOTS[n]!;
      const exhaustive = n <= 16;
      for (let i = 0; i < n; i++) {
        const leaf = LEAVES[i]!;
        const proof = inclusionProof(i, tree);
        const reject = (what: string, l: Uint8Array, idx: number, size: number, p: readonly Uint8Array[], r: Uint8Array) => {
          if (verifyInclusion(l, idx, size, p, r)) accepted.push(`${i}/${n}: ${what}`);
        };
        // Single-bit flips in every proof element, the leaf and the root.
        proof.forEach((element, j) => {
          for (const bit of bitsToFlip(exhaustive, i + j)) {
            reject(`proof[${j}] bit ${bit}`, leaf, i, n, replaceAt(proof, j, flipBit(element, bit)), root);
          }
        });
        for (const bit of bitsToFlip(exhaustive, i)) {
          reject(`leaf bit ${bit}`, flipBit(leaf, bit), i, n, proof, root);
          reject(`root bit ${bit}`, leaf, i, n, proof, flipBit(root, bit));
        }
        // Every other index, and every other leaf at this index.
        for (let j = 0; j < n; j++) {
          if (j === i) continue;
          reject(`index ${j}`, leaf, j, n, proof, root);
          reject(`leaf ${j}`, LEAVES[j]!, i, n, proof, root);
        }
        // Every other size, with that size's root (the proof alone does not pin the
        // size, so a checkpoint binds size and root together), and the RFC test
        // suite's size * 2 and size / 2 against this root.
        for (let s = i + 1; s <= MAX; s++) {
          if (s !== n) reject(`size ${s} with its root`, leaf, i, s, proof, ROOTS[s]!);
        }
        reject('size * 2', leaf, i, 2 * n, proof, root);
        if (i < Math.floor(n / 2)) reject('size / 2', leaf, i, Math.floor(n / 2), proof, root);
        // Roots of other trees, truncated, extended and padded proofs.
        reject('empty root', leaf, i, n, proof, EMPTY_ROOT);
        if (n > 1) reject('previous root', leaf, i, n, proof, ROOTS[n - 1]!);
        if (proof.length > 0) {
          reject('last element removed', leaf, i, n, proof.slice(0, -1), root);
          reject('first element removed', leaf, i, n, proof.slice(1), root);
          reject('element inserted', leaf, i, n, [...proof.slice(0, 1), sha256(utf8('x')), ...proof.slice(1)], root);
        }
        reject('trailing root', leaf, i, n, [...proof, root], root);
        reject('preceding root', leaf, i, n, [root, ...proof], root);
        reject('trailing garbage', leaf, i, n, [...proof, new Uint8Array(0)], root);
        reject('preceding garbage', leaf, i, n, [new Uint8Array(0), ...proof], root);
      }
    }
    expect(accepted).toEqual([]);
  });

  it('consistency proofs for all 0 <= m <= n: leaves == stored nodes == RFC SUBPROOF, and verify', () => {
    for (let n = 1; n <= MAX; n++) {
      const tree = LEAVES.slice(0, n);
      for (let m = 0; m <= n; m++) {
        const proof = consistencyProof(m, tree);
        const { lookup, read } = recordingLookup();
        expect(hex(consistencyProofFromNodes(m, n, lookup)), `${m}->${n}`).toEqual(hex(proof));
        expect(hex(proof)).toEqual(m === 0 ? [] : hex(refSubproof(m, tree, true)));
        const ids = consistencyProofNodes(m, n);
        expect(keysOf(ids)).toEqual([...read].sort());
        expect(new Set(ids.map(nodeKey)).size).toBe(ids.length);
        expect(verifyConsistency(m, n, ROOTS[m]!, ROOTS[n]!, proof), `${m}->${n}`).toBe(true);
      }
    }
  });

  it('consistency proofs reject every tampering', () => {
    const accepted: string[] = [];
    for (let n = 2; n <= MAX; n++) {
      const tree = LEAVES.slice(0, n);
      const exhaustive = n <= 16;
      for (let m = 1; m < n; m++) {
        const proof = consistencyProof(m, tree);
        const r1 = ROOTS[m]!;
        const r2 = ROOTS[n]!;
        const reject = (what: string, s1: number, s2: number, a: Uint8Array, b: Uint8Array, p: readonly Uint8Array[]) => {
          if (verifyConsistency(s1, s2, a, b, p)) accepted.push(`${m}->${n}: ${what}`);
        };
        proof.forEach((element, j) => {
          for (const bit of bitsToFlip(exhaustive, m + j)) {
            reject(`proof[${j}] bit ${bit}`, m, n, r1, r2, replaceAt(proof, j, flipBit(element, bit)));
          }
        });
        for (const bit of bitsToFlip(exhaustive, m)) {
          reject(`old root bit ${bit}`, m, n, flipBit(r1, bit), r2, proof);
          reject(`new root bit ${bit}`, m, n, r1, flipBit(r2, bit), proof);
        }
        // Other old sizes, with either root; other new sizes with their own root.
        for (let m2 = 1; m2 <= n; m2++) {
          if (m2 === m) continue;
          reject(`old size ${m2}`, m2, n, r1, r2, proof);
          reject(`old size ${m2} with its root`, m2, n, ROOTS[m2]!, r2, proof);
        }
        for (let n2 = m; n2 <= MAX; n2++) {
          if (n2 !== n) reject(`new size ${n2} with its root`, m, n2, r1, ROOTS[n2]!, proof);
        }
        reject('new size * 2', m, 2 * n, r1, r2, proof);
        const half = Math.floor(n / 2);
        if (m < half) reject('new size / 2', m, half, r1, r2, proof);
        reject('swapped roots', m, n, r2, r1, proof);
        reject('empty proof', m, n, r1, r2, []);
        reject('truncated', m, n, r1, r2, proof.slice(0, -1));
        for (const [name, extra] of [
          ['old root', r1],
          ['new root', r2],
          ['proof[0]', proof[0]!],
          ['garbage', new Uint8Array(0)],
        ] as const) {
          reject(`trailing ${name}`, m, n, r1, r2, [...proof, extra]);
          reject(`preceding ${name}`, m, n, r1, r2, [extra, ...proof]);
        }
      }
    }
    expect(accepted).toEqual([]);
  });
});

describe('verifiers on edge cases', () => {
  const leaf = LEAVES[0]!;
  const root = ROOTS[5]!;

  it('single-leaf tree: root is the leaf hash and the proof is empty', () => {
    expect(verifyInclusion(leaf, 0, 1, [], leaf)).toBe(true);
    expect(verifyInclusion(leaf, 0, 1, [], new Uint8Array(0))).toBe(false);
    expect(verifyInclusion(new Uint8Array(0), 0, 1, [], leaf)).toBe(false);
    expect(verifyInclusion(new Uint8Array(0), 0, 1, [], new Uint8Array(0))).toBe(false);
  });

  it('returns false, never throws, for malformed proofs and hashes', () => {
    const proof = inclusionProof(2, LEAVES.slice(0, 5));
    const bad: unknown[] = [
      replaceAt(proof, 0, proof[0]!.subarray(0, 31)),
      replaceAt(proof, 0, concatBytes(proof[0]!, Uint8Array.of(0))),
      replaceAt<unknown>(proof, 1, 'not bytes'),
      replaceAt<unknown>(proof, 1, undefined),
      'not an array',
      null,
      Array.from({ length: 200 }, () => proof[0]!),
    ];
    for (const p of bad) {
      expect(verifyInclusion(LEAVES[2]!, 2, 5, p as Uint8Array[], root)).toBe(false);
      expect(rootFromInclusionProof(LEAVES[2]!, 2, 5, p as Uint8Array[])).toBeUndefined();
      expect(verifyConsistency(2, 5, ROOTS[2]!, root, p as Uint8Array[])).toBe(false);
    }
    expect(verifyInclusion(LEAVES[2]!, 2, 5, proof, root)).toBe(true);
    expect(verifyInclusion(LEAVES[2]!, 2, 5, proof, root.subarray(1))).toBe(false);
    expect(verifyInclusion(LEAVES[2]!.subarray(1), 2, 5, proof, root)).toBe(false);
    const cproof = consistencyProof(2, LEAVES.slice(0, 5));
    expect(verifyConsistency(2, 5, ROOTS[2]!, root, cproof)).toBe(true);
    expect(verifyConsistency(2, 5, ROOTS[2]!.subarray(1), root, cproof)).toBe(false);
    expect(verifyConsistency(2, 5, ROOTS[2]!, concatBytes(root, root), cproof)).toBe(false);
  });

  it('returns undefined from rootFromInclusionProof for a proof of the wrong length', () => {
    const proof = inclusionProof(3, LEAVES.slice(0, 8));
    expect(rootFromInclusionProof(LEAVES[3]!, 3, 8, proof.slice(0, 2))).toBeUndefined();
    expect(rootFromInclusionProof(LEAVES[3]!, 3, 8, [...proof, proof[0]!])).toBeUndefined();
    const wrong = rootFromInclusionProof(LEAVES[4]!, 3, 8, proof);
    expect(wrong).toBeDefined();
    expect(toHex(wrong!)).not.toBe(toHex(ROOTS[8]!));
  });

  it('throws MERKLE_RANGE for impossible indexes and sizes', () => {
    for (const [index, size] of [
      [0, 0],
      [5, 5],
      [6, 5],
      [-1, 5],
      [1.5, 5],
      [Number.NaN, 5],
      [0, Number.POSITIVE_INFINITY],
      [0, 2 ** 53],
    ] as const) {
      expectRangeError(() => verifyInclusion(leaf, index, size, [], root));
      expectRangeError(() => rootFromInclusionProof(leaf, index, size, []));
      expectRangeError(() => inclusionProofNodes(index, size));
      expectRangeError(() => inclusionProofFromNodes(index, size, recordingLookup().lookup));
    }
    expectRangeError(() => inclusionProof(3, LEAVES.slice(0, 3)));
    expectRangeError(() => inclusionProof(0, []));
    expectRangeError(() => verifyConsistency(6, 5, root, root, []));
    expectRangeError(() => verifyConsistency(-1, 5, root, root, []));
    expectRangeError(() => consistencyProof(4, LEAVES.slice(0, 3)));
    expectRangeError(() => consistencyProofNodes(2.5, 3));
    expectRangeError(() => consistencyProofFromNodes(4, 3, recordingLookup().lookup));
    expectRangeError(() => rootFromNodes(-1, recordingLookup().lookup));
    expectRangeError(() => rootFromLeafHashes([leaf, new Uint8Array(31)]));
    expectRangeError(() => inclusionProofFromNodes(0, 2, () => new Uint8Array(3)));
  });

  it('handles the sizes RFC 9162 leaves undefined: equal sizes and an empty old tree', () => {
    const r1 = ROOTS[1]!;
    const r2 = ROOTS[2]!;
    // Equal sizes: empty proof, identical roots.
    expect(verifyConsistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])).toBe(true);
    expect(verifyConsistency(0, 0, EMPTY_ROOT, r1, [])).toBe(false);
    expect(verifyConsistency(1, 1, r1, r1, [])).toBe(true);
    expect(verifyConsistency(1, 1, r1, r2, [])).toBe(false);
    expect(verifyConsistency(1, 1, r1, r1, [EMPTY_ROOT])).toBe(false);
    expect(verifyConsistency(2, 2, r2, r2, [r2])).toBe(false);
    // The empty tree is consistent with every tree, by an empty proof.
    expect(verifyConsistency(0, 1, EMPTY_ROOT, r1, [])).toBe(true);
    expect(verifyConsistency(0, 5, EMPTY_ROOT, root, [])).toBe(true);
    expect(verifyConsistency(0, 5, r1, root, [])).toBe(false);
    expect(verifyConsistency(0, 5, EMPTY_ROOT, root, [EMPTY_ROOT])).toBe(false);
    expect(verifyConsistency(0, 5, EMPTY_ROOT, root.subarray(2), [])).toBe(false);
    // Different sizes need a proof.
    expect(verifyConsistency(1, 2, r1, r2, [])).toBe(false);
    expect(consistencyProof(0, LEAVES.slice(0, 5))).toEqual([]);
    expect(consistencyProof(5, LEAVES.slice(0, 5))).toEqual([]);
  });
});

describe('MerkleFrontier', () => {
  it('matches rootFromLeafHashes at every size and resumes identically from (size, edge)', () => {
    const whole = new MerkleFrontier();
    const wholeNodes = LEAVES.map((leaf) => whole.append(leaf));
    for (let s = 0; s <= MAX; s++) {
      const head = new MerkleFrontier();
      head.appendMany(LEAVES.slice(0, s));
      expect(head.size).toBe(s);
      expect(toHex(head.root())).toBe(toHex(rootFromLeafHashes(LEAVES.slice(0, s))));
      const resumed = new MerkleFrontier(s, head.edge());
      expect(toHex(resumed.root())).toBe(toHex(ROOTS[s]!));
      for (let i = s; i < MAX; i++) {
        const created = resumed.append(LEAVES[i]!);
        expect(created.map((n) => `${nodeKey(n)}=${toHex(n.hash)}`)).toEqual(
          wholeNodes[i]!.map((n) => `${nodeKey(n)}=${toHex(n.hash)}`),
        );
        expect(toHex(resumed.root())).toBe(toHex(ROOTS[i + 1]!));
      }
      expect(resumed.size).toBe(MAX);
    }
  });

  it('returns the leaf then each completed parent, all of them complete subtrees', () => {
    const frontier = new MerkleFrontier();
    expect(frontier.append(LEAVES[0]!).map(nodeKey)).toEqual(['0/0']);
    expect(frontier.append(LEAVES[1]!).map(nodeKey)).toEqual(['0/1', '1/0']);
    expect(frontier.append(LEAVES[2]!).map(nodeKey)).toEqual(['0/2']);
    expect(frontier.append(LEAVES[3]!).map(nodeKey)).toEqual(['0/3', '1/1', '2/0']);
    // Every stored node hash is the MTH of the leaves it covers.
    for (const [key, hash] of STORE) {
      const [level, index] = key.split('/').map(Number) as [number, number];
      const width = 2 ** level;
      expect(toHex(hash), key).toBe(toHex(rootFromLeafHashes(LEAVES.slice(index * width, (index + 1) * width))));
    }
  });

  it('does O(1) amortised hashing per append', () => {
    const frontier = new MerkleFrontier();
    let created = 0;
    let maxEdge = 0;
    for (let i = 0; i < 1024; i++) {
      created += frontier.append(leafHash(utf8(String(i)))).length;
      maxEdge = Math.max(maxEdge, frontier.edge().length);
    }
    // 1024 leaves plus 1023 parents; each parent is one nodeHash call.
    expect(created).toBeLessThan(2 * 1024);
    expect(created - 1024).toBe(1023);
    expect(maxEdge).toBeLessThanOrEqual(10);
  });

  it('appendMany returns every created node in order', () => {
    const a = new MerkleFrontier();
    const b = new MerkleFrontier();
    const many = a.appendMany(LEAVES.slice(0, 13));
    const one = LEAVES.slice(0, 13).flatMap((leaf) => b.append(leaf));
    expect(many.map(nodeKey)).toEqual(one.map(nodeKey));
    expect(toHex(a.root())).toBe(toHex(b.root()));
  });

  it('hands out copies, so callers cannot corrupt its state', () => {
    const frontier = new MerkleFrontier();
    frontier.appendMany(LEAVES.slice(0, 6));
    const edge = frontier.edge();
    edge[0]!.fill(0);
    frontier.root().fill(0);
    expect(toHex(frontier.root())).toBe(toHex(ROOTS[6]!));
    const empty = new MerkleFrontier();
    empty.root().fill(0);
    expect(toHex(empty.root())).toBe(REF_ROOTS[0]);
  });

  it('validates its resume state and input', () => {
    const edge5 = (() => {
      const f = new MerkleFrontier();
      f.appendMany(LEAVES.slice(0, 5));
      return f.edge();
    })();
    expect(new MerkleFrontier(5, edge5).size).toBe(5);
    expectRangeError(() => new MerkleFrontier(5, edge5.slice(0, 1)));
    expectRangeError(() => new MerkleFrontier(4, edge5));
    expectRangeError(() => new MerkleFrontier(0, edge5));
    expectRangeError(() => new MerkleFrontier(5, [edge5[0]!, new Uint8Array(31)]));
    expectRangeError(() => new MerkleFrontier(-1));
    expectRangeError(() => new MerkleFrontier(1.5, [LEAVES[0]!]));
    expectRangeError(() => new MerkleFrontier().append(new Uint8Array(33)));
    const nearlyFull = new MerkleFrontier(
      Number.MAX_SAFE_INTEGER,
      Array.from({ length: 53 }, () => LEAVES[0]!),
    );
    expectRangeError(() => nearlyFull.append(LEAVES[1]!));
  });
});

describe('stored-node model', () => {
  it('subtreeNodes decomposes every range into the minimal aligned complete subtrees', () => {
    expect(subtreeNodes(0, 0)).toEqual([]);
    expect(subtreeNodes(0, 7)).toEqual([
      { level: 2, index: 0 },
      { level: 1, index: 2 },
      { level: 0, index: 6 },
    ]);
    expect(subtreeNodes(3, 13).map(nodeKey)).toEqual(['0/3', '2/1', '2/2', '0/12']);
    for (let start = 0; start <= MAX; start++) {
      for (let end = start; end <= MAX; end++) {
        const ids = subtreeNodes(start, end);
        let at = start;
        ids.forEach((id, i) => {
          const width = 2 ** id.level;
          expect(id.index * width).toBe(at);
          at += width;
          // Minimal: no two neighbours are the two halves of one complete subtree.
          const next = ids[i + 1];
          if (next !== undefined && next.level === id.level) expect(id.index % 2).toBe(1);
        });
        expect(at).toBe(end);
        // Rises then falls in level, so never more than 2 per level.
        expect(ids.length).toBeLessThanOrEqual(2 * Math.max(1, Math.ceil(Math.log2(end - start + 1))));
      }
    }
    expectRangeError(() => subtreeNodes(5, 4));
    expectRangeError(() => subtreeNodes(-1, 4));
  });

  it(`reads O(log n) nodes per proof, for trees up to 2^20`, () => {
    for (const n of [2, 3, 65, 777_777, 1_000_003, 2 ** 20 - 1, 2 ** 20]) {
      const bound = 2 * Math.ceil(Math.log2(n));
      for (const i of [0, 1, n - 1, Math.floor(n / 2), Math.floor(n / 2) + 1, 12345 % n, 999_999 % n]) {
        if (i < n) expect(inclusionProofNodes(i, n).length, `${i}/${n}`).toBeLessThanOrEqual(bound);
      }
      for (const m of [1, 2, 3, n - 1, Math.floor(n / 2), 12345 % n, 999_999 % n]) {
        if (m >= 1 && m <= n) expect(consistencyProofNodes(m, n).length, `${m}->${n}`).toBeLessThanOrEqual(bound);
      }
    }
  });

  it('works above 2^32 (no 32-bit truncation): a tree of identical leaves', () => {
    // With every leaf equal, a complete subtree's hash depends only on its level.
    const byLevel = [LEAVES[0]!];
    for (let l = 1; l <= 53; l++) byLevel.push(nodeHash(byLevel[l - 1]!, byLevel[l - 1]!));
    const lookup: NodeLookup = ({ level }) => byLevel[level]!;
    const n = 2 ** 40 + 2 ** 33 + 7;
    const root = rootFromNodes(n, lookup);
    expect(new MerkleFrontier(n, subtreeNodes(0, n).map((id) => lookup(id))).root()).toEqual(root);
    for (const i of [0, 2 ** 32 + 1, 2 ** 40 - 1, 2 ** 40 + 2 ** 33 + 5, n - 1]) {
      const proof = inclusionProofFromNodes(i, n, lookup);
      expect(proof.length).toBeLessThanOrEqual(41);
      expect(inclusionProofNodes(i, n).length).toBeLessThanOrEqual(2 * 41);
      expect(verifyInclusion(LEAVES[0]!, i, n, proof, root), String(i)).toBe(true);
      expect(verifyInclusion(LEAVES[0]!, i, n, proof, flipBit(root, 200))).toBe(false);
      expect(verifyInclusion(LEAVES[1]!, i, n, proof, root)).toBe(false);
    }
    for (const m of [1, 2 ** 32, 2 ** 32 + 3, 2 ** 40, 2 ** 40 + 2 ** 33 + 1, n]) {
      const proof = consistencyProofFromNodes(m, n, lookup);
      const oldRoot = rootFromNodes(m, lookup);
      expect(verifyConsistency(m, n, oldRoot, root, proof), String(m)).toBe(true);
      expect(consistencyProofNodes(m, n).length).toBeLessThanOrEqual(2 * 41);
      if (m < n) expect(verifyConsistency(m, n, oldRoot, flipBit(root, 5), proof)).toBe(false);
    }
  });

  it('copies hashes returned by a store before handing them out', () => {
    const { lookup } = recordingLookup();
    const proof = inclusionProofFromNodes(0, 2, lookup);
    proof[0]!.fill(0);
    expect(toHex(STORE.get('0/1')!)).toBe(toHex(LEAVES[1]!));
    const root = rootFromNodes(4, lookup);
    root.fill(0);
    expect(toHex(STORE.get('2/0')!)).toBe(toHex(ROOTS[4]!));
  });
});
