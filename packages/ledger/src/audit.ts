/**
 * `audit`: rebuilds each tenant's tree from the stored entries and checks it
 * against every stored tree node, checkpoint and session chain; recomputes every
 * derived column of each entry, the principals postings, the session rows and the
 * head from the entry bytes (through the very functions the stores write with:
 * entry-row.ts, store-shared.ts) and compares them with what is stored; checks
 * each stored disclosure against its commitment. Reports the first bad index and
 * why; a damaged row is a problem at its index, never a thrown error.
 */
import {
  bytesEqual,
  checkDisclosures,
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

import { entryRowOf, nextSessionRow } from './entry-row.js';
import { StoreError } from './errors.js';
import { BUCKET, DERIVED_ENTRY_COLUMNS, disclosuresColumn, eachPosting, entryColumns, joinEdge, objectiveFold, postingsOf, sessionColumns } from './store-shared.js';
import type { AuditHeadRow, EntryRow, LedgerStore, PrincipalRow, SessionColumns, SessionRow } from './store.js';

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

/** Entries per read; half a postings bucket, so buckets end at chunk ends. */
const CHUNK = BUCKET / 2;
/** Session ids per lookup in the final session pass. */
const ID_CHUNK = 500;

/** Audits the stored logs. */
export async function audit(store: LedgerStore, opts: AuditOptions): Promise<AuditReport> {
  const tenants = opts.tenants ?? (await store.tenants());
  const results: TenantAudit[] = [];
  for (const tenant of tenants) results.push(await auditTenant(store, tenant, opts));
  const problems = results.flatMap((r) => r.problems);
  const first = problems[0];
  return { ok: results.every((r) => r.ok), tenants: results, ...(first ? { first } : {}) };
}

/** What audit expects of one session, from its entries so far. */
interface SessionState {
  row: SessionRow;
  /** lastIndex of `row` when the stored row was found equal to it. */
  checkedAt?: number;
  reported?: boolean;
}

/** Stop signal: the tenant's audit ends here. */
class Stop extends Error {}

async function auditTenant(store: LedgerStore, tenant: string, opts: AuditOptions): Promise<TenantAudit> {
  const problems: AuditProblem[] = [];
  const stopAtFirst = opts.stopAtFirst ?? true;
  const chains = new Map<string, SessionState>();
  let total = 0;
  let sizes: number[] = [];
  const report = (): TenantAudit => {
    problems.sort((a, b) => (a.index ?? Number.MAX_SAFE_INTEGER) - (b.index ?? Number.MAX_SAFE_INTEGER));
    return { tenant, entries: total, checkpoints: sizes.length, sessions: chains.size, ok: problems.length === 0, problems };
  };
  /** Records a problem; throws Stop when the audit stops at the first one. */
  const fail = (code: string, message: string, index?: number): void => {
    problems.push({ tenant, code, message, ...(index !== undefined ? { index } : {}) });
    if (stopAtFirst) throw new Stop();
  };
  let at = 0;
  try {
    await auditLog();
  } catch (err) {
    if (err instanceof Stop) return report();
    // A row the store cannot even hand back (a damaged page, an unreadable blob).
    if (err instanceof StoreError && err.code === 'STORE_CORRUPT') {
      problems.push({ tenant, code: 'ENTRY_UNREADABLE', message: `the store cannot read the rows from index ${at}: ${err.message}`, index: at });
      return report();
    }
    throw err;
  }
  return report();

  async function auditLog(): Promise<void> {
    // Sizes before the head: the head only grows, so a checkpoint beyond it means a damaged head.
    sizes = await store.checkpointSizes(tenant);
    const head = await store.auditHead(tenant);
    const lastCp = sizes.length > 0 ? sizes[sizes.length - 1]! : undefined;
    total = Math.max(head?.size ?? 0, lastCp ?? 0);
    if (lastCp !== undefined && head?.size !== lastCp) {
      const size = head === undefined ? 'missing' : `size ${head.size}`;
      fail('HEAD_MISMATCH', `the stored head (${size}) is not at the latest signed checkpoint (size ${lastCp})`, Math.min(head?.size ?? 0, lastCp));
    }
    const verifier = parseVerifierKey(opts.verifierKey(tenant));
    const frontier = new MerkleFrontier();
    let sizeIdx = 0;
    let expected = 0;

    const checkCheckpointAt = async (size: number): Promise<void> => {
      const cp = await store.getCheckpoint(tenant, size);
      if (cp === undefined) return;
      try {
        const parsed = verifyCheckpoint(cp.note, verifier);
        if (parsed.size !== size || !bytesEqual(parsed.rootHash, cp.rootHash)) {
          fail('CHECKPOINT_MISMATCH', `stored checkpoint at size ${size} disagrees with its own note`, size - 1);
          return;
        }
      } catch (err) {
        if (err instanceof Stop) throw err;
        fail('CHECKPOINT_INVALID', `checkpoint at size ${size} does not verify: ${(err as Error).message}`, size > 0 ? size - 1 : undefined);
        return;
      }
      if (!bytesEqual(frontier.root(), cp.rootHash)) {
        fail('ROOT_MISMATCH', `the tree rebuilt from the entries has a different root at size ${size} than the signed checkpoint`, size - 1);
      }
    };

    if (sizes[0] === 0) await checkCheckpointAt(0);

    // The principals of the current postings bucket's entries, to recompute its postings.
    let bucketRows: EntryRow[] = [];
    const principalsAt = new Map<number, PrincipalRow[]>();

    for (let from = 0; from < total; from += CHUNK) {
      const to = Math.min(total, from + CHUNK);
      at = from;
      const batch = await store.auditEntries(tenant, from, to);
      const created: { id: NodeId; hash: Uint8Array; index: number }[] = [];
      for (const e of batch) {
        at = e.index;
        if (e.index !== expected) {
          fail('ENTRY_MISSING', `entry ${expected} is missing (next stored is ${e.index})`, expected);
          expected = e.index;
        }
        expected++;
        let env: Envelope;
        try {
          env = decodeEntry(e.entry);
        } catch (err) {
          fail('ENTRY_MALFORMED', `entry ${e.index}: ${(err as FormatError).message}`, e.index);
          continue;
        }
        const leaf = leafHash(e.entry);
        const digest = toBase64url(leaf);
        if (digest !== e.digest) fail('ENTRY_CHANGED', `entry ${e.index}'s bytes no longer match the digest recorded when it was appended`, e.index);
        for (const n of frontier.append(leaf)) created.push({ id: { level: n.level, index: n.index }, hash: n.hash, index: e.index });
        const disclosures = disclosuresColumn(e.disclosures);
        if (disclosures === undefined) fail('ENTRY_UNREADABLE', `entry ${e.index}: the stored disclosures column is not a JSON list of strings`, e.index);
        // The index row must say what the entry says: every derived column, as the store writes it.
        const want = entryRowOf({ envelope: env, entry: e.entry, digest, disclosures: disclosures ?? [] }, e.index);
        const cols = entryColumns(want);
        const diff = DERIVED_ENTRY_COLUMNS.find((k) => cols[k] !== e[k]);
        if (diff !== undefined) fail('INDEX_MISMATCH', `entry ${e.index}: stored index column ${columnName(diff)} does not match the entry`, e.index);
        // Each disclosure must open a commitment of the entry (a redacted one is absent, not wrong).
        if (disclosures !== undefined && disclosures.length > 0) {
          const bad = checkDisclosures(env, disclosures).failures[0];
          if (bad !== undefined) fail('DISCLOSURE_MISMATCH', `entry ${e.index}: stored disclosure ${bad.disclosure}: ${bad.message}`, e.index);
        }
        bucketRows.push(want);
        // The session chain, and the session row it implies.
        if (env.session) {
          const ref = env.session;
          const s = chains.get(ref.id);
          const prior = s?.row;
          let problem: string | undefined;
          if (prior?.sealed) problem = `session ${ref.id} has an entry after its seal`;
          else if (ref.seq !== (prior?.seq ?? 0) + 1) problem = `session ${ref.id} jumps from seq ${prior?.seq ?? 0} to ${ref.seq}`;
          else if (ref.prev !== (prior?.digest ?? null)) problem = `session ${ref.id} seq ${ref.seq} does not link to the entry before it`;
          else if (env.type === 'session.closed' && (env.seal!.count !== ref.seq || env.seal!.head !== ref.prev)) problem = `session ${ref.id}'s seal does not match its chain`;
          if (problem !== undefined) fail('CHAIN_BROKEN', problem, e.index);
          if (s?.checkedAt !== undefined && s.checkedAt === prior?.lastIndex && !s.reported) {
            // The stored row was found final at the session's previous entry: it misses this one.
            s.reported = true;
            fail('SESSION_ROW_MISMATCH', `session ${ref.id}'s stored row ends at index ${s.checkedAt}, before its entry ${e.index}`, e.index);
          }
          const next = nextSessionRow(prior, { envelope: env, digest }, e.index, env.recordedAt);
          if (s === undefined) chains.set(ref.id, { row: next });
          else s.row = next;
        }
        // Checkpoints at sizes inside this chunk.
        while (sizeIdx < sizes.length && sizes[sizeIdx]! <= frontier.size) {
          const size = sizes[sizeIdx++]!;
          if (size === frontier.size && size > 0) await checkCheckpointAt(size);
        }
      }
      // Every node the rebuilt tree created must equal the stored one.
      const stored = await store.getNodes(tenant, created.map((c) => c.id));
      for (const c of created) {
        const s = stored.get(nodeKey(c.id));
        if (s === undefined || !bytesEqual(s, c.hash)) {
          const first = c.id.index * 2 ** c.id.level;
          fail('NODE_MISMATCH', `stored tree node ${nodeKey(c.id)} (leaves from ${first}) does not match the entries`, c.id.level === 0 ? c.index : first);
        }
      }
      // The session rows that say their last entry is in this chunk.
      await checkSessionRows(await store.auditSessions(tenant, { from, to }));
      // The principals postings of a finished bucket.
      if (to % BUCKET === 0 || to === total) {
        await checkPostings(Math.floor((to - 1) / BUCKET), bucketRows, principalsAt);
        bucketRows = [];
        principalsAt.clear();
      }
      opts.onProgress?.({ tenant, done: to, total });
    }
    at = expected;
    if (expected < total) fail('ENTRY_MISSING', `entry ${expected} is missing (the head says the log has ${total})`, expected);

    // Sessions whose row was not found equal in the pass: missing, moved or wrong.
    const unchecked = [...chains.entries()].filter(([, s]) => s.checkedAt !== s.row.lastIndex && !s.reported);
    for (let i = 0; i < unchecked.length; i += ID_CHUNK) {
      const part = unchecked.slice(i, i + ID_CHUNK);
      const rows = new Map((await store.auditSessions(tenant, { ids: part.map(([id]) => id) })).map((r) => [r.id, r]));
      for (const [id, s] of part) {
        const r = rows.get(id);
        if (r !== undefined && r.lastIndex >= total && (await appendedSince(r))) continue;
        s.reported = true;
        fail('SESSION_ROW_MISMATCH', r === undefined ? `session ${id} has entries but no stored row` : `session ${id}'s stored row does not match its entries (${sessionDiff(s.row, r)})`, s.row.lastIndex);
      }
    }
    // Rows naming a last entry outside the log.
    for (const range of [{ from: Number.MIN_SAFE_INTEGER, to: 0 }, { from: total, to: Number.MAX_SAFE_INTEGER }]) {
      for (const r of await store.auditSessions(tenant, range)) {
        if (chains.has(r.id) || (await appendedSince(r))) continue;
        fail('SESSION_ROW_MISMATCH', `stored session row ${r.id} names entry ${r.lastIndex}, which the log does not have`, Math.max(0, Math.min(r.lastIndex, total)));
      }
    }

    // The stored head must be the rebuilt tree: size, frontier edge and root.
    if (head !== undefined && frontier.size === head.size) checkHead(head, frontier);
  }

  function checkHead(head: AuditHeadRow, frontier: MerkleFrontier): void {
    const index = Math.max(0, head.size - 1);
    if (!bytesEqual(head.root, frontier.root())) fail('HEAD_MISMATCH', 'the stored head root does not match the rebuilt tree', index);
    else if (!bytesEqual(head.edge, joinEdge(frontier.edge()))) fail('HEAD_MISMATCH', 'the stored head edge (the Merkle frontier the next append resumes from) does not match the rebuilt tree', index);
  }

  /** Whether a row beyond the audited log is a session appended to since the audit began (a live log). */
  async function appendedSince(r: SessionColumns): Promise<boolean> {
    if (r.lastIndex < total) return false;
    const [e] = await store.auditEntries(tenant, r.lastIndex, r.lastIndex + 1);
    return e !== undefined && e.sessionId === r.id;
  }

  async function checkSessionRows(rows: SessionColumns[]): Promise<void> {
    for (const r of rows) {
      const s = chains.get(r.id);
      if (s === undefined) {
        fail('SESSION_ROW_MISMATCH', `stored session row ${r.id} names entry ${r.lastIndex}, which belongs to no such session`, r.lastIndex);
        continue;
      }
      const diff = sessionDiff(s.row, r);
      if (diff === undefined) s.checkedAt = s.row.lastIndex;
      else if (!s.reported) {
        s.reported = true;
        fail('SESSION_ROW_MISMATCH', `session ${r.id}'s stored row does not match its entries (${diff})`, Math.min(r.lastIndex, s.row.lastIndex));
      }
    }
  }

  /**
   * Compares a finished bucket's stored postings with those its entries imply:
   * per principal id, the (index, role bits) pairs, and each row's type.
   */
  async function checkPostings(bucket: number, rows: EntryRow[], principalsAt: Map<number, PrincipalRow[]>): Promise<void> {
    const want = new Map<string, number[]>();
    for (const p of postingsOf(rows)) {
      const pairs: number[] = [];
      eachPosting(p.postings, p.first, (i, bits) => pairs.push(i, bits));
      want.set(p.id, pairs);
    }
    for (const r of rows) principalsAt.set(r.index, r.principals);
    const got = new Map<string, number[]>();
    let firstBad: { index: number; why: string } | undefined;
    const bad = (index: number, why: string) => {
      if (firstBad === undefined || index < firstBad.index) firstBad = { index, why };
    };
    for (const row of await store.auditPostings(tenant, bucket)) {
      let pairs = got.get(row.id);
      if (pairs === undefined) got.set(row.id, (pairs = []));
      try {
        // Entries appended since the audit began are not audited.
        eachPosting(row.postings, row.first, (i, bits) => i < total && pairs.push(i, bits));
      } catch {
        bad(row.first, `the postings row of ${row.id} from ${row.first} is truncated`);
        continue;
      }
      const ps = principalsAt.get(row.first);
      if (ps !== undefined) {
        const type = postingsOf([{ index: row.first, principals: ps } as EntryRow]).find((p) => p.id === row.id)?.type;
        if (type !== undefined && type !== row.type) bad(row.first, `the postings row of ${row.id} from ${row.first} has type ${row.type}, the entry says ${type}`);
      }
    }
    for (const [id, pairs] of got) {
      const w = want.get(id) ?? [];
      const at = firstDifference(sortPairs(pairs), w);
      if (at !== undefined) bad(at, `the postings of ${id} disagree with the entries at index ${at}`);
    }
    for (const [id, w] of want) {
      if (!got.has(id)) bad(w[0]!, `the postings of ${id} are missing (first entry ${w[0]})`);
    }
    if (firstBad !== undefined) fail('POSTINGS_MISMATCH', `bucket ${bucket}: ${firstBad.why}`, firstBad.index);
  }
}

const COLUMN_NAMES: Record<(typeof DERIVED_ENTRY_COLUMNS)[number], string> = {
  id: 'id',
  type: 'type',
  time: 'time',
  timeKey: 'time_key',
  recordedAt: 'recorded_at',
  sessionId: 'session_id',
  seq: 'seq',
  initiatorId: 'initiator_id',
  actorId: 'actor_id',
  toolName: 'tool_name',
  decision: 'decision',
  cause: 'cause',
  traceId: 'trace_id',
  principals: 'principals',
  scopeGap: 'scope_gap',
  chainLinks: 'chain_links',
};

function columnName(k: (typeof DERIVED_ENTRY_COLUMNS)[number]): string {
  return COLUMN_NAMES[k];
}

/** The first differing column of a stored session row, or undefined when it is what the entries imply. */
function sessionDiff(want: SessionRow, got: SessionColumns): string | undefined {
  const w = sessionColumns(want);
  const k = (Object.keys(w) as (keyof SessionColumns)[]).find((key) => w[key] !== got[key]);
  if (k !== undefined) return `${k}: stored ${JSON.stringify(got[k])}, expected ${JSON.stringify(w[k])}`;
  if ('objectiveFold' in got && got.objectiveFold !== objectiveFold(w.objective)) return 'objectiveFold';
  return undefined;
}

/** (index, bits) pairs sorted by index (rows of several batches arrive by first index, which keeps order; sort to be sure). */
function sortPairs(pairs: number[]): number[] {
  for (let i = 2; i < pairs.length; i += 2) {
    if (pairs[i]! < pairs[i - 2]!) {
      const list: [number, number][] = [];
      for (let j = 0; j < pairs.length; j += 2) list.push([pairs[j]!, pairs[j + 1]!]);
      list.sort((a, b) => a[0] - b[0]);
      return list.flat();
    }
  }
  return pairs;
}

/** The entry index of the first difference between two pair lists, or undefined when equal. */
function firstDifference(got: number[], want: number[]): number | undefined {
  const n = Math.min(got.length, want.length);
  for (let i = 0; i < n; i += 2) {
    if (got[i] !== want[i] || got[i + 1] !== want[i + 1]) return Math.min(got[i]!, want[i]!);
  }
  if (got.length === want.length) return undefined;
  return got.length > want.length ? got[n]! : want[n]!;
}
