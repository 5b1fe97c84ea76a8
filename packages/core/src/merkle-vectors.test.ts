import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { fromHex, toHex } from './bytes.js';
import {
  MerkleFrontier,
  consistencyProof,
  consistencyProofFromNodes,
  inclusionProof,
  inclusionProofFromNodes,
  leafHash,
  nodeKey,
  rootFromInclusionProof,
  rootFromLeafHashes,
  rootFromNodes,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js';
import type { NodeLookup } from './merkle.js';

// Every file in test-vectors/v1/merkle/ is checked against the implementation.
const dir = new URL('../../../test-vectors/v1/merkle/', import.meta.url);
const names = readdirSync(fileURLToPath(dir))
  .filter((name) => name.endsWith('.json'))
  .sort();

type Obj = Record<string, unknown>;

function obj(value: unknown, what: string): Obj {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what}: not an object`);
  return value as Obj;
}
function str(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new Error(`${what}: not a string`);
  return value;
}
function int(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new Error(`${what}: not a count`);
  return value;
}
function arr(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${what}: not an array`);
  return value as unknown[];
}
/** Lowercase hex only, as the vectors promise. */
function hexBytes(value: unknown, what: string): Uint8Array {
  const text = str(value, what);
  if (!/^(?:[0-9a-f]{2})*$/.test(text)) throw new Error(`${what}: not lowercase hex`);
  return fromHex(text);
}
const hexList = (value: unknown, what: string): Uint8Array[] =>
  arr(value, what).map((h, i) => hexBytes(h, `${what}[${i}]`));
const hex = (hashes: readonly Uint8Array[]): string[] => hashes.map(toHex);

function load(name: string): Obj {
  return obj(JSON.parse(readFileSync(new URL(name, dir), 'utf8')) as unknown, name);
}

function checkTree(name: string, vector: Obj): void {
  const leaves = hexList(obj(vector.input, 'input').leaves, 'input.leaves').map(leafHash);
  const expected = obj(vector.expected, 'expected');
  if (expected.leafHashes !== undefined) expect(hex(leaves)).toEqual(hexList(expected.leafHashes, 'leafHashes').map(toHex));

  const store = new Map<string, Uint8Array>();
  const roots = [new MerkleFrontier().root()];
  const frontier = new MerkleFrontier();
  for (const leaf of leaves) {
    for (const node of frontier.append(leaf)) store.set(nodeKey(node), node.hash);
    roots.push(frontier.root());
  }
  const lookup: NodeLookup = (id) => store.get(nodeKey(id))!;

  const rootEntries = Object.entries(obj(expected.roots, 'roots'));
  expect(rootEntries.length).toBeGreaterThan(0);
  for (const [size, rootHex] of rootEntries) {
    const n = Number(size);
    const want = toHex(hexBytes(rootHex, `roots.${size}`));
    expect(toHex(rootFromLeafHashes(leaves.slice(0, n))), `${name} root ${size}`).toBe(want);
    expect(toHex(rootFromNodes(n, lookup))).toBe(want);
    expect(toHex(roots[n]!)).toBe(want);
  }
  for (const [i, entry] of arr(expected.inclusion, 'inclusion').entries()) {
    const e = obj(entry, `inclusion[${i}]`);
    const index = int(e.index, 'index');
    const size = int(e.size, 'size');
    const proof = hexList(e.proof, 'proof');
    const label = `${name} inclusion ${index}/${size}`;
    expect(hex(inclusionProof(index, leaves.slice(0, size))), label).toEqual(hex(proof));
    expect(hex(inclusionProofFromNodes(index, size, lookup)), label).toEqual(hex(proof));
    expect(verifyInclusion(leaves[index]!, index, size, proof, roots[size]!), label).toBe(true);
  }
  for (const [i, entry] of arr(expected.consistency, 'consistency').entries()) {
    const e = obj(entry, `consistency[${i}]`);
    const from = int(e.from, 'from');
    const to = int(e.to, 'to');
    const proof = hexList(e.proof, 'proof');
    const label = `${name} consistency ${from}->${to}`;
    expect(hex(consistencyProof(from, leaves.slice(0, to))), label).toEqual(hex(proof));
    expect(hex(consistencyProofFromNodes(from, to, lookup)), label).toEqual(hex(proof));
    expect(verifyConsistency(from, to, roots[from]!, roots[to]!, proof), label).toBe(true);
  }
}

/** Whether the vector expects success (`expected: { valid: true }`) or `expectedError: code`. */
function outcome(vector: Obj, code: string): boolean {
  if (vector.expected !== undefined) {
    expect(vector.expectedError).toBeUndefined();
    expect(obj(vector.expected, 'expected').valid).toBe(true);
    return true;
  }
  expect(vector.expectedError).toBe(code);
  return false;
}

function checkInclusion(name: string, vector: Obj): void {
  const input = obj(vector.input, 'input');
  const leaf = hexBytes(input.leafHash, 'leafHash');
  const index = int(input.index, 'index');
  const size = int(input.size, 'size');
  // Hash lengths are part of what a vector may get wrong, so only the encoding is checked here.
  const proof = hexList(input.proof, 'proof');
  const root = hexBytes(input.root, 'root');
  const valid = outcome(vector, 'PROOF_INCLUSION_FAILED');
  expect(verifyInclusion(leaf, index, size, proof, root), name).toBe(valid);
  const computed = rootFromInclusionProof(leaf, index, size, proof);
  if (valid) expect(toHex(computed!)).toBe(toHex(root));
  else if (computed !== undefined) expect(toHex(computed)).not.toBe(toHex(root));
}

function checkConsistency(name: string, vector: Obj): void {
  const input = obj(vector.input, 'input');
  const valid = outcome(vector, 'PROOF_CONSISTENCY_FAILED');
  const ok = verifyConsistency(
    int(input.oldSize, 'oldSize'),
    int(input.newSize, 'newSize'),
    hexBytes(input.oldRoot, 'oldRoot'),
    hexBytes(input.newRoot, 'newRoot'),
    hexList(input.proof, 'proof'),
  );
  expect(ok, name).toBe(valid);
}

describe('test-vectors/v1/merkle', () => {
  it('holds the reference trees and both kinds of proof vectors', () => {
    expect(names).toContain('rfc6962-reference.json');
    expect(names).toContain('tree-100.json');
    for (const name of names) expect(name).toMatch(/^(?:rfc6962-reference|tree-100|inclusion-[a-z0-9-]+|consistency-[a-z0-9-]+)\.json$/);
  });

  it('the reference tree covers every inclusion and consistency pair of sizes 1..8', () => {
    const expected = obj(load('rfc6962-reference.json').expected, 'expected');
    expect(Object.keys(obj(expected.roots, 'roots')).sort()).toEqual(['1', '2', '3', '4', '5', '6', '7', '8']);
    expect(arr(expected.inclusion, 'inclusion')).toHaveLength(36);
    expect(arr(expected.consistency, 'consistency')).toHaveLength(36);
  });

  for (const name of names) {
    it(name, () => {
      const vector = load(name);
      expect(str(vector.description, 'description').length).toBeGreaterThan(0);
      if (name.startsWith('inclusion-')) checkInclusion(name, vector);
      else if (name.startsWith('consistency-')) checkConsistency(name, vector);
      else checkTree(name, vector);
    });
  }

  it('has at least as many negative vectors as positive ones', () => {
    for (const kind of ['inclusion-', 'consistency-']) {
      const vectors = names.filter((name) => name.startsWith(kind)).map(load);
      const valid = vectors.filter((v) => v.expected !== undefined).length;
      expect(valid, kind).toBeGreaterThan(0);
      expect(vectors.length - valid, kind).toBeGreaterThanOrEqual(valid);
    }
  });
});
