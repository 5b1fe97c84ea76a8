/**
 * `audit`: rebuilds each tenant's tree from the stored entries and checks it
 * against every stored tree node, checkpoint and session chain, and the index
 * rows against the entries. Reports the first bad index and why.
 */
import {
  bytesEqual,
  decodeEntry,
  type Envelope,
  type FormatError,
  leafHash,
  MerkleFrontier,
  type NodeId,
  nodeKey,
  parseVerifierKey,
  toBase64url,
  verifyCheckpoint,
} from '@custody/core';

import { entryRowOf } from './entry-row.js';
import type { LedgerStore, StoredEntry } from './store.js';

/** Progress of an audit, reported every few thousand entries. */
export interface AuditProgress {
  tenant: string;
  done: number;
  total: number;
}

/** One problem found by an audit. */
export interface AuditProblem {
  tenant: string;
  /** The first leaf index at fault, when there is one. */
  index?: number;
  code: string;
  message: string;
}

/** The audit of one tenant's log. */
export interface TenantAudit {
  tenant: string;
  entries: number;
  checkpoints: number;
  sessions: number;
  ok: boolean;
  problems: AuditProblem[];
}

export interface AuditReport {
  ok: boolean;
  tenants: TenantAudit[];
  /** The first problem, in tenant order then index order. */
  first?: AuditProblem;
}

export interface AuditOptions {
  /** Only these tenants (default: all). */
  tenants?: string[];
  /** The note verifier key of each tenant's log, to check checkpoint signatures. */
  verifierKey: (tenant: string) => string;
  onProgress?: (p: AuditProgress) => void;
  /** Stop a tenant's audit at its first problem (default true). */
  stopAtFirst?: boolean;
}

const CHUNK = 2_000;

/** Audits the stored logs. */
export async function audit(store: LedgerStore, opts: AuditOptions): Promise<AuditReport> {
  const tenants = opts.tenants ?? (await store.tenants());
  const results: TenantAudit[] = [];
  for (const tenant of tenants) results.push(await auditTenant(store, tenant, opts));
  const first = results.flatMap((r) => r.problems)[0];
  return { ok: results.every((r) => r.ok), tenants: results, ...(first ? { first } : {}) };
}

async function auditTenant(store: LedgerStore, tenant: string, opts: AuditOptions): Promise<TenantAudit> {
  const problems: AuditProblem[] = [];
  const stopAtFirst = opts.stopAtFirst ?? true;
  const head = await store.head(tenant);
  const total = head?.size ?? 0;
  const sizes = await store.checkpointSizes(tenant);
  const verifier = parseVerifierKey(opts.verifierKey(tenant));
  const report = (): TenantAudit => ({ tenant, entries: total, checkpoints: sizes.length, sessions: chains.size, ok: problems.length === 0, problems });
  const fail = (code: string, message: string, index?: number) => {
    problems.push({ tenant, code, message, ...(index !== undefined ? { index } : {}) });
    return stopAtFirst;
  };

  const chains = new Map<string, { seq: number; digest: string; sealed: boolean }>();
  const frontier = new MerkleFrontier();
  let sizeIdx = 0;
  let expected = 0;

  const checkCheckpointAt = async (size: number): Promise<boolean> => {
    const cp = await store.getCheckpoint(tenant, size);
    if (cp === undefined) return false;
    try {
      const parsed = verifyCheckpoint(cp.note, verifier);
      if (parsed.size !== size || !bytesEqual(parsed.rootHash, cp.rootHash)) {
        return fail('CHECKPOINT_MISMATCH', `stored checkpoint at size ${size} disagrees with its own note`, size - 1);
      }
    } catch (err) {
      return fail('CHECKPOINT_INVALID', `checkpoint at size ${size} does not verify: ${(err as Error).message}`, size > 0 ? size - 1 : undefined);
    }
    if (!bytesEqual(frontier.root(), cp.rootHash)) {
      return fail('ROOT_MISMATCH', `the tree rebuilt from the entries has a different root at size ${size} than the signed checkpoint`, size - 1);
    }
    return false;
  };

  if (sizes[0] === 0 && (await checkCheckpointAt(0))) return report();

  for (let from = 0; from < total; from += CHUNK) {
    const to = Math.min(total, from + CHUNK);
    const batch: StoredEntry[] = [];
    for await (const e of store.readEntries(tenant, from, to)) batch.push(e);
    const created: { id: NodeId; hash: Uint8Array; index: number }[] = [];
    for (const e of batch) {
      if (e.index !== expected) {
        if (fail('ENTRY_MISSING', `entry ${expected} is missing (next stored is ${e.index})`, expected)) return report();
        expected = e.index;
      }
      expected++;
      let env: Envelope;
      try {
        env = decodeEntry(e.entry);
      } catch (err) {
        if (fail('ENTRY_MALFORMED', `entry ${e.index}: ${(err as FormatError).message}`, e.index)) return report();
        continue;
      }
      const leaf = leafHash(e.entry);
      const digest = toBase64url(leaf);
      if (digest !== e.digest) {
        if (fail('ENTRY_CHANGED', `entry ${e.index}'s bytes no longer match the digest recorded when it was appended`, e.index)) return report();
      }
      for (const n of frontier.append(leaf)) created.push({ id: { level: n.level, index: n.index }, hash: n.hash, index: e.index });
      // The index rows must say what the entry says.
      const want = entryRowOf({ envelope: env, entry: e.entry, digest, disclosures: e.disclosures }, e.index);
      const diff = (['id', 'type', 'time', 'recordedAt', 'sessionId', 'seq', 'initiatorId', 'actorId', 'toolName', 'decision', 'cause', 'traceId'] as const).find(
        (k) => (want[k] ?? null) !== (e[k] ?? null),
      );
      if (diff !== undefined && fail('INDEX_MISMATCH', `entry ${e.index}: stored index field ${diff} does not match the entry`, e.index)) return report();
      // The session chain.
      if (env.session) {
        const s = chains.get(env.session.id);
        const ref = env.session;
        let problem: string | undefined;
        if (s?.sealed) problem = `session ${ref.id} has an entry after its seal`;
        else if (ref.seq !== (s?.seq ?? 0) + 1) problem = `session ${ref.id} jumps from seq ${s?.seq ?? 0} to ${ref.seq}`;
        else if (ref.prev !== (s?.digest ?? null)) problem = `session ${ref.id} seq ${ref.seq} does not link to the entry before it`;
        else if (env.type === 'session.closed' && (env.seal!.count !== ref.seq || env.seal!.head !== ref.prev)) problem = `session ${ref.id}'s seal does not match its chain`;
        if (problem !== undefined && fail('CHAIN_BROKEN', problem, e.index)) return report();
        chains.set(ref.id, { seq: ref.seq, digest, sealed: env.type === 'session.closed' });
      }
      // Checkpoints at sizes inside this chunk.
      while (sizeIdx < sizes.length && sizes[sizeIdx]! <= frontier.size) {
        const size = sizes[sizeIdx++]!;
        if (size === frontier.size && size > 0 && (await checkCheckpointAt(size))) return report();
      }
    }
    // Every node the rebuilt tree created must equal the stored one.
    const stored = await store.getNodes(tenant, created.map((c) => c.id));
    for (const c of created) {
      const s = stored.get(nodeKey(c.id));
      if (s === undefined || !bytesEqual(s, c.hash)) {
        const first = c.id.index * 2 ** c.id.level;
        if (fail('NODE_MISMATCH', `stored tree node ${nodeKey(c.id)} (leaves from ${first}) does not match the entries`, c.id.level === 0 ? c.index : first)) return report();
      }
    }
    opts.onProgress?.({ tenant, done: to, total });
  }
  if (head !== undefined && !bytesEqual(head.rootHash, frontier.root())) fail('ROOT_MISMATCH', 'the stored head root does not match the rebuilt tree', total - 1);
  return report();
}
