/**
 * bench/core: Merkle append, inclusion-proof verification at 1M leaves, and
 * bundle verification of a 10,000-entry session, each against Node's bare
 * SHA-256 rate measured in the same run.
 */
import { hash } from 'node:crypto';

import {
  type EventDraft,
  inclusionProofFromNodes,
  leafHash,
  MemoryLog,
  MerkleFrontier,
  type NodeId,
  signerFromSeed,
  verifyBundle,
  verifyInclusion,
} from '@custody/core';

import { fmt, machine, median, peakRssMiB, percentile, timeRounds, writeSection } from '../lib.js';

const quick = process.env['BENCH_QUICK'] === '1';
const LEAVES = quick ? 200_000 : 1_000_000;
const ROUNDS = quick ? 3 : 5;
const PROOFS = quick ? 20_000 : 100_000;
const BUNDLE_ENTRIES = quick ? 2_000 : 10_000;

function bareSha256Rate(n: number): number {
  const buf = new Uint8Array(65);
  const times = timeRounds(ROUNDS, () => {
    for (let i = 0; i < n; i++) {
      buf[0] = i & 0xff;
      buf[1] = (i >> 8) & 0xff;
      hash('sha256', buf, 'buffer');
    }
  });
  return n / (median(times) / 1000);
}

function appendRate(n: number, leafBytes: number): number {
  const data = new Uint8Array(leafBytes);
  const times = timeRounds(ROUNDS, () => {
    const tree = new MerkleFrontier();
    for (let i = 0; i < n; i++) {
      data[0] = i & 0xff;
      data[1] = (i >> 8) & 0xff;
      tree.append(leafHash(data));
    }
    tree.root();
  });
  return n / (median(times) / 1000);
}

/** Builds an n-leaf tree, keeping every stored node in one flat array per level. */
function buildTree(n: number) {
  const levels: Uint8Array[] = [];
  const tree = new MerkleFrontier();
  const data = new Uint8Array(8);
  const view = new DataView(data.buffer);
  for (let i = 0; i < n; i++) {
    view.setFloat64(0, i);
    for (const node of tree.append(leafHash(data))) {
      const cap = Math.ceil(n / 2 ** node.level) * 32;
      levels[node.level] ??= new Uint8Array(cap);
      levels[node.level]!.set(node.hash, node.index * 32);
    }
  }
  const lookup = (id: NodeId) => levels[id.level]!.subarray(id.index * 32, id.index * 32 + 32);
  return { root: tree.root(), lookup, leaf: (i: number) => (view.setFloat64(0, i), leafHash(data)) };
}

function inclusionVerify(n: number) {
  const { root, lookup, leaf } = buildTree(n);
  let x = 12345;
  const cases = Array.from({ length: PROOFS }, () => {
    x = (x * 1103515245 + 12345) >>> 0;
    const index = x % n;
    return { index, leaf: leaf(index), proof: inclusionProofFromNodes(index, n, lookup) };
  });
  const per: number[] = [];
  let ok = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t = performance.now();
    for (const c of cases) if (verifyInclusion(c.leaf, c.index, n, c.proof, root)) ok++;
    per.push(((performance.now() - t) * 1000) / cases.length);
  }
  if (ok !== cases.length * ROUNDS) throw new Error('an inclusion proof failed to verify');
  // Generation from stored nodes, for the ledger's read path.
  const t = performance.now();
  for (const c of cases) inclusionProofFromNodes(c.index, n, lookup);
  const genUs = ((performance.now() - t) * 1000) / cases.length;
  return { verifyUs: median(per), genUs, proofLength: cases[0]!.proof.length };
}

function bundleVerify(entries: number) {
  const signer = signerFromSeed('custody.bench/default', new Uint8Array(32).fill(7));
  const log = new MemoryLog({ tenant: 'default', signer });
  const base = {
    time: '2026-11-22T09:00:00.000Z',
    session: { id: 'bench-session' },
    initiator: { type: 'human' as const, id: 'alice@example.com', verified: true },
    actor: { type: 'agent' as const, id: 'refund-agent', verified: true },
    trace: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' },
  };
  const id = (i: number) => `019ab3a0-0000-7000-8000-${i.toString(16).padStart(12, '0')}`;
  log.append({ ...base, id: id(0), type: 'session.opened' });
  for (let i = 1; i < entries - 1; i++) {
    log.append({ ...base, id: id(i), type: 'tool.requested', tool: { name: 'orders.lookup', server: 'orders-mcp' }, data: { arguments: { orderId: String(i) } } } as EventDraft);
  }
  const head = log.sessionHead('bench-session')!;
  log.append({ ...base, id: id(entries), type: 'session.closed', seal: { count: head.seq + 1, head: head.head } });
  const text = JSON.stringify(log.bundle('bench-session'));
  const times: number[] = [];
  let verdict = '';
  for (let r = 0; r < ROUNDS; r++) {
    const t = performance.now();
    const report = verifyBundle(JSON.parse(text), { verifierKey: signer.verifierText });
    times.push(performance.now() - t);
    verdict = report.verdict;
  }
  if (verdict !== 'complete') throw new Error(`bench bundle did not verify: ${verdict}`);
  return { ms: median(times), p100: percentile(times, 100), bytes: text.length };
}

const bare = bareSha256Rate(LEAVES);
const appendSmall = appendRate(LEAVES, 64);
const appendEntry = appendRate(LEAVES, 480);
const incl = inclusionVerify(LEAVES);
const bundle = bundleVerify(BUNDLE_ENTRIES);
const perLeafHashes = (64 + 1 + 32 + 32) / 65; // for reference only
void perLeafHashes;

const pct = (x: number) => `${fmt((x / bare) * 100, 0)}%`;
const rows = [
  ['bare `crypto.hash("sha256")`, 65-byte input (baseline)', `${fmt(bare)} hashes/s`, '100%', ''],
  ['leaf hash + tree append, 64-byte leaves', `${fmt(appendSmall)} leaves/s`, pct(appendSmall), '≥ 0.4M/s and ≥ 30%'],
  ['leaf hash + tree append, 480-byte entries', `${fmt(appendEntry)} leaves/s`, pct(appendEntry), ''],
  [`inclusion proof verification at ${fmt(LEAVES)} leaves (${incl.proofLength} hashes)`, `${fmt(incl.verifyUs, 1)} µs/proof`, `${fmt(incl.verifyUs / (1e6 / bare), 1)}× one bare hash`, '≤ 50 µs'],
  [`inclusion proof generation from stored nodes at ${fmt(LEAVES)} leaves`, `${fmt(incl.genUs, 1)} µs/proof`, `${fmt(incl.genUs / (1e6 / bare), 1)}× one bare hash`, ''],
  [`bundle verification, ${fmt(BUNDLE_ENTRIES)}-entry session (${fmt(bundle.bytes / 2 ** 20, 1)} MiB JSON)`, `${fmt(bundle.ms)} ms (${fmt((BUNDLE_ENTRIES / bundle.ms) * 1000)} entries/s)`, `${fmt(bundle.ms / ((BUNDLE_ENTRIES * 1000) / bare), 0)}× ${fmt(BUNDLE_ENTRIES)} bare hashes`, '< 1 s'],
];
const body = `## Core: hashing, proofs, bundle verification (\`bench/core\`)

Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}${quick ? ' — QUICK run (BENCH_QUICK=1), smaller sizes' : ''}.
Settings: ${fmt(LEAVES)} leaves, median of ${ROUNDS} rounds, ${fmt(PROOFS)} random proofs (fixed LCG seed), ${fmt(BUNDLE_ENTRIES)}-entry sealed session with committed arguments. Peak RSS ${fmt(peakRssMiB())} MiB.
Ratios are against the bare SHA-256 rate measured in the same run.

| what | rate | vs baseline | target |
| --- | --- | --- | --- |
${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}

Each append hashes the leaf once and, amortised, one interior node: two SHA-256 calls, so 50% of the bare rate is the ceiling.
Bundle verification parses each entry, checks it is canonical JSON and a valid envelope, checks its receipt, disclosures and chain link.`;
writeSection('core', body);
process.stdout.write(body + '\n');
