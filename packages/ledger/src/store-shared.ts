/**
 * Pure helpers shared by the `LedgerStore` implementations (`SqliteStore`,
 * `PostgresStore`): batch consistency checks, the principals postings encoding,
 * tree-node runs, page / cursor handling, filter normalisation and the row
 * encodings both schemas store alike. No I/O and no backend-specific SQL: what
 * differs per driver (statements, integer types, error mapping) stays in the stores.
 * @internal
 */
import { decodeEntry, type Envelope, FormatError, type StoredNode } from '@custody/core';

import { LedgerError, StoreError } from './errors.js';
import type { ApiKeyRow, AuditEntryRow, EntryColumns, EntryFilter, EntryRow, Page, PrincipalRole, PrincipalRow, SealedBatch, PostingsRow, SessionColumns, SessionRow, StoredEntry } from './store.js';

/** Bytes of a tree hash (SHA-256). @internal */
export const HASH_SIZE = 32;
/** Most tree nodes per row of the nodes table (256 hashes = 8 KiB); rows start at multiples of it or where a batch starts. @internal */
export const NODE_RUN = 256;
/** Entries per bucket of the principals postings (see sqlite-migrations.ts). @internal */
export const BUCKET = 4096;
/** Most items a listing returns per page. @internal */
export const MAX_LIMIT = 1000;

// ---------------------------------------------------------------------------
// Batch checks
// ---------------------------------------------------------------------------

/**
 * Refuses a value that is not a {@link HASH_SIZE}-byte hash.
 * @throws StoreError `STORE_CORRUPT`
 * @internal
 */
export function checkHash(h: Uint8Array, field: string): void {
  if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) {
    throw new StoreError('STORE_CORRUPT', `refusing to store ${field}: not a ${HASH_SIZE}-byte hash`);
  }
}

/**
 * Refuses a batch that would leave the log inconsistent (a caller bug): nothing is written.
 * @throws StoreError `STORE_CORRUPT`
 * @internal
 */
export function checkBatch(batch: SealedBatch, expectedSize: number): void {
  const bad = (why: string) => new StoreError('STORE_CORRUPT', `refusing an inconsistent batch for ${batch.tenant}: ${why}`);
  if (!Number.isSafeInteger(expectedSize) || expectedSize < 0) throw bad(`expectedSize ${expectedSize} is not a size`);
  batch.entries.forEach((e, i) => {
    if (e.index !== expectedSize + i) throw bad(`entry ${i} has index ${e.index}, expected ${expectedSize + i}`);
  });
  if (batch.head.size !== expectedSize + batch.entries.length) throw bad(`head size ${batch.head.size} is not ${expectedSize} + ${batch.entries.length}`);
  if (batch.checkpoint.size !== batch.head.size) throw bad(`checkpoint size ${batch.checkpoint.size} is not the head size ${batch.head.size}`);
  batch.head.edge.forEach((h, i) => checkHash(h, `head.edge[${i}]`));
  checkHash(batch.head.rootHash, 'head.rootHash');
  checkHash(batch.checkpoint.rootHash, 'checkpoint.rootHash');
  // The nodes must be exactly the complete subtrees whose last leaf is in this batch.
  let expected = 0;
  for (let leaf = expectedSize; leaf < batch.head.size; leaf++) {
    expected += 1;
    for (let l = leaf; l % 2 === 1; l = (l - 1) / 2) expected += 1;
  }
  if (batch.nodes.length !== expected) throw bad(`it has ${batch.nodes.length} tree nodes, appending its entries creates ${expected}`);
  for (const n of batch.nodes) {
    const last = (n.index + 1) * 2 ** n.level - 1;
    if (!(last >= expectedSize && last < batch.head.size) || n.hash?.length !== HASH_SIZE) throw bad(`tree node ${n.level}/${n.index} is not one this batch creates`);
  }
}

// ---------------------------------------------------------------------------
// Principals postings (the inverted principals index) and role masks
// ---------------------------------------------------------------------------

/** The role bits of principals.roles. @internal */
export const ROLE_BIT: Readonly<Record<PrincipalRole, number>> = { initiator: 1, actor: 2, chain: 4, approver: 8, workload: 16 };

/** One principal's postings in one bucket for one batch: a row of the principals table. @internal */
export type Postings = PostingsRow;

/**
 * The batch's principals as postings rows: per (bucket, principal id), the entries
 * it appears in with its roles there, encoded as unsigned LEB128 pairs
 * (index − previous index, role bits), the previous index starting at `first`.
 * @internal
 */
export function postingsOf(entries: readonly EntryRow[]): Postings[] {
  type Group = { bucket: number; id: string; first: number; type: string; pairs: number[] };
  let bucket = -1;
  let inBucket = new Map<string, Group>();
  const out: Group[] = [];
  for (const e of entries) {
    const b = Math.floor(e.index / BUCKET);
    if (b !== bucket) {
      bucket = b;
      inBucket = new Map();
    }
    const ps = e.principals;
    for (let i = 0; i < ps.length; i++) {
      const p = ps[i]!;
      // An id seen earlier in this entry was merged there.
      let seen = false;
      for (let j = 0; j < i && !seen; j++) seen = ps[j]!.id === p.id;
      if (seen) continue;
      let bits = ROLE_BIT[p.role];
      for (let j = i + 1; j < ps.length; j++) if (ps[j]!.id === p.id) bits |= ROLE_BIT[ps[j]!.role];
      let g = inBucket.get(p.id);
      if (g === undefined) {
        g = { bucket, id: p.id, first: e.index, type: p.type, pairs: [] };
        inBucket.set(p.id, g);
        out.push(g);
      }
      g.pairs.push(e.index, bits);
    }
  }
  return out.map((g) => {
    const bytes = new Uint8Array(g.pairs.length * 8);
    let at = 0;
    let prev = g.first;
    const put = (n: number) => {
      for (; n >= 128; n = Math.floor(n / 128)) bytes[at++] = (n % 128) + 128;
      bytes[at++] = n;
    };
    for (let i = 0; i < g.pairs.length; i += 2) {
      put(g.pairs[i]! - prev);
      put(g.pairs[i + 1]!);
      prev = g.pairs[i]!;
    }
    return { bucket: g.bucket, id: g.id, first: g.first, type: g.type, postings: bytes.slice(0, at) };
  });
}

/**
 * The part of a stored principals row that {@link decodePostings} reads; `first_idx`
 * may arrive as a string (PostgreSQL int8).
 * @internal
 */
export interface PostingsColumns {
  first_idx: number | string;
  postings: Uint8Array;
}

/**
 * The entry indexes of postings rows (ascending) whose roles meet `mask` (0: any role).
 * @throws StoreError `STORE_CORRUPT` for a truncated row
 * @internal
 */
export function decodePostings(rows: readonly PostingsColumns[], mask: number): number[] {
  const out: number[] = [];
  for (const row of rows) {
    eachPosting(row.postings, Number(row.first_idx), (index, bits) => {
      if (mask === 0 || (bits & mask) !== 0) out.push(index);
    });
  }
  return out;
}

/**
 * Calls `fn` with each (entry index, role bits) pair of one postings blob, in
 * order, the previous index starting at `first`: the one decoder of the encoding
 * {@link postingsOf} writes (queries and `audit` both read through it).
 * @throws StoreError `STORE_CORRUPT` for a truncated blob
 * @internal
 */
export function eachPosting(b: Uint8Array, first: number, fn: (index: number, bits: number) => void): void {
  let prev = first;
  for (let at = 0; at < b.length; ) {
    let delta = 0;
    let bits = 0;
    for (let k = 0; k < 2; k++) {
      let n = 0;
      let scale = 1;
      for (;;) {
        const byte = b[at++];
        if (byte === undefined) throw new StoreError('STORE_CORRUPT', 'a stored postings row is truncated');
        n += (byte % 128) * scale;
        if (byte < 128) break;
        scale *= 128;
      }
      if (k === 0) delta = n;
      else bits = n;
    }
    prev += delta;
    fn(prev, bits);
  }
}

/** One identity filter of an entry query. @internal */
export interface RoleFilter {
  id: string;
  /** Role bits, any of which must be set; 0 for any role. */
  mask: number;
}

/** The identity filters of an entry filter, each with the role bits it accepts. @internal */
export function principalFilters(f: EntryFilter): RoleFilter[] {
  const out: RoleFilter[] = [];
  if (f.initiator !== undefined) out.push({ id: f.initiator, mask: ROLE_BIT.initiator });
  if (f.agent !== undefined) out.push({ id: f.agent, mask: ROLE_BIT.actor | ROLE_BIT.chain });
  if (f.workload !== undefined) out.push({ id: f.workload, mask: ROLE_BIT.workload });
  if (f.approver !== undefined) out.push({ id: f.approver, mask: ROLE_BIT.approver });
  if (f.principal !== undefined) out.push({ id: f.principal, mask: 0 });
  return out;
}

/**
 * The role names of a mask as an SQL condition on `expr` (standard SQL, the same
 * for every store); names are constants of this module, never a caller's value.
 * @internal
 */
export function roleNamesSql(expr: string, mask: number): string {
  if (mask === 0) return '';
  const names = (Object.keys(ROLE_BIT) as PrincipalRole[]).filter((r) => (ROLE_BIT[r] & mask) !== 0);
  return ` AND ${expr} IN (${names.map((r) => `'${r}'`).join(', ')})`;
}

// ---------------------------------------------------------------------------
// Tree-node rows
// ---------------------------------------------------------------------------

/** Consecutive nodes of one level, as one row of the nodes table. @internal */
export interface NodeRun {
  level: number;
  /** Index of the first node. */
  start: number;
  hashes: Uint8Array;
}

/**
 * Groups a batch's nodes into runs of consecutive indexes per level, cut at
 * multiples of NODE_RUN (so no row outgrows NODE_RUN hashes); ordered by level,
 * then index. A level's nodes must be consecutive.
 * @throws StoreError `STORE_CORRUPT` when they are not
 * @internal
 */
export function nodeRuns(nodes: readonly StoredNode[]): NodeRun[] {
  const byLevel: StoredNode[][] = [];
  for (const n of nodes) (byLevel[n.level] ??= []).push(n);
  const runs: NodeRun[] = [];
  for (const list of byLevel) {
    if (list === undefined) continue;
    list.sort((a, b) => a.index - b.index);
    for (let i = 0; i < list.length; ) {
      const first = list[i]!.index;
      const end = Math.min(list.length, i + NODE_RUN - (first % NODE_RUN));
      const hashes = new Uint8Array((end - i) * HASH_SIZE);
      for (let k = i; k < end; k++) {
        if (list[k]!.index !== first + (k - i)) {
          throw new StoreError('STORE_CORRUPT', `refusing a batch whose level-${list[k]!.level} nodes are not consecutive (at ${list[k]!.index})`);
        }
        hashes.set(list[k]!.hash, (k - i) * HASH_SIZE);
      }
      runs.push({ level: list[i]!.level, start: first, hashes });
      i = end;
    }
  }
  return runs;
}

// ---------------------------------------------------------------------------
// Pages and cursors
// ---------------------------------------------------------------------------

/** A requested page size as 1 … {@link MAX_LIMIT} (non-finite: MAX_LIMIT). @internal */
export function clampLimit(limit: number): number {
  return Number.isFinite(limit) ? Math.min(MAX_LIMIT, Math.max(1, Math.floor(limit))) : MAX_LIMIT;
}

/** A page of `limit` items from `rows` (fetched with `limit + 1`), with a cursor when more remain. @internal */
export function pageOf<T>(rows: T[], limit: number, cursorOf: (last: T) => string): Page<T> {
  if (rows.length <= limit) return { items: rows };
  const items = rows.slice(0, limit);
  return { items, nextCursor: cursorOf(items[items.length - 1]!) };
}

/** A cursor: base64url of `<kind><last index>`. @internal */
export function encodeCursor(kind: 'e' | 's', index: number): string {
  return Buffer.from(`${kind}${index}`, 'latin1').toString('base64url');
}

/**
 * Parses a cursor (client-controlled): anything this store did not make is CURSOR_INVALID.
 * @throws LedgerError `CURSOR_INVALID`
 * @internal
 */
export function decodeCursor(cursor: string, kind: 'e' | 's'): number {
  const invalid = () => new LedgerError('CURSOR_INVALID', 'the cursor is not one this listing returned', { field: 'cursor' });
  if (typeof cursor !== 'string' || !/^[A-Za-z0-9_-]{2,24}$/.test(cursor)) throw invalid();
  const text = Buffer.from(cursor, 'base64url').toString('latin1');
  if (Buffer.from(text, 'latin1').toString('base64url') !== cursor) throw invalid();
  const m = /^([es])(0|[1-9][0-9]{0,15})$/.exec(text);
  if (m === null || m[1] !== kind) throw invalid();
  const n = Number(m[2]);
  if (!Number.isSafeInteger(n)) throw invalid();
  return n;
}

// ---------------------------------------------------------------------------
// Filters and time keys
// ---------------------------------------------------------------------------

/**
 * A type filter: exact, or `approval.*` as the range [`approval.`, `approval/`):
 * '/' follows '.' in byte order, the collation of every store (SQLite binary,
 * PostgreSQL COLLATE "C").
 * @internal
 */
export function typeFilter(type: string): { exact?: string; from?: string; to?: string } {
  if (!type.endsWith('.*')) return { exact: type };
  const prefix = type.slice(0, -1);
  return { from: prefix, to: `${prefix.slice(0, -1)}/` };
}

const RFC3339_UTC = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/;

/**
 * A sortable key for an RFC 3339 UTC time: nine fractional digits, so that
 * `…:00Z`, `…:00.5Z` and `…:00.123456789Z` compare as times, not as text
 * (the entries' `time_key` column). Anything else is returned unchanged.
 * @internal
 */
export function timeKey(time: string): string {
  const m = RFC3339_UTC.exec(time);
  return m === null ? time : `${m[1]!}.${(m[2] ?? '').padEnd(9, '0')}Z`;
}

/**
 * A `since` / `until` value (client-controlled) as a time key.
 * @throws LedgerError `RANGE_INVALID`
 * @internal
 */
export function filterTimeKey(value: string, field: 'since' | 'until'): string {
  if (typeof value === 'string' && RFC3339_UTC.test(value)) return timeKey(value);
  const ms = typeof value === 'string' && /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new LedgerError('RANGE_INVALID', `${field} must be an RFC 3339 time such as 2026-11-22T06:00:00Z`, { field });
  }
  return timeKey(new Date(ms).toISOString());
}

/**
 * A `since` / `until` value compared with session times, which are the ledger's
 * clock as `Date.toISOString()` writes it (millisecond precision, fixed width):
 * rounded up to the millisecond, so `t >= key` and `t < key` keep their meaning.
 * @throws LedgerError `RANGE_INVALID`
 * @internal
 */
export function clockKey(value: string, field: 'since' | 'until'): string {
  const key = filterTimeKey(value, field);
  const whole = key.slice(0, 19);
  const frac = key.slice(20, 29);
  let ms = Date.parse(`${whole}.${frac.slice(0, 3)}Z`);
  if (/[1-9]/.test(frac.slice(3))) ms += 1;
  return new Date(ms).toISOString();
}

// ---------------------------------------------------------------------------
// Row encodings both schemas store alike
// ---------------------------------------------------------------------------

/** A row of the api_keys table (the same column types in every store). @internal */
export interface ApiKeyDbRow {
  tenant: string;
  id: string;
  role: ApiKeyRow['role'];
  name: string;
  hash: string;
  created_at: string;
  revoked_at: string | null;
}

/** An api_keys row as an `ApiKeyRow`. @internal */
export function toApiKey(r: ApiKeyDbRow): ApiKeyRow {
  const k: ApiKeyRow = { id: r.id, tenant: r.tenant, role: r.role, name: r.name, hash: r.hash, createdAt: r.created_at };
  if (r.revoked_at !== null) k.revokedAt = r.revoked_at;
  return k;
}

/** A plain Uint8Array copy of a driver Buffer (pg's may be views of a shared pool). @internal */
export function bytes(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

/**
 * Parses a stored JSON column.
 * @throws StoreError `STORE_CORRUPT` when it is not JSON
 * @internal
 */
export function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (cause) {
    throw new StoreError('STORE_CORRUPT', `a stored ${what} column is not JSON`, { cause });
  }
}

/**
 * Parses an entry's stored `disclosures` column, which the stores write as a JSON list of
 * strings. Anything else (not JSON, or JSON such as `{}`, `null` or `"x"`) would make
 * bundles drop the entry's disclosures silently (the fields would look redacted), so it
 * is refused. `custody audit` reports such an entry as ENTRY_UNREADABLE at its index.
 * @throws StoreError `STORE_CORRUPT` naming the tenant and the entry's index
 * @internal
 */
export function parseDisclosures(text: string, tenant: string, index: number): string[] {
  const list = disclosuresColumn(text);
  if (list !== undefined) return list;
  try {
    JSON.parse(text);
  } catch (cause) {
    throw new StoreError('STORE_CORRUPT', `tenant ${tenant}, entry ${index}: the stored disclosures column is not JSON`, { cause });
  }
  throw new StoreError('STORE_CORRUPT', `tenant ${tenant}, entry ${index}: the stored disclosures column is not a JSON list of strings`);
}

/**
 * Decodes a stored entry's bytes. Bytes that are not a valid entry (changed behind the
 * ledger's back) are the store's fault, not the request's: the FormatError of
 * decodeEntry becomes a StoreError `STORE_CORRUPT` naming the tenant, the entry's index
 * and the field, never a value, so the server answers 500 as for every unreadable store
 * (not 400 as if the caller had sent it). `custody audit` reports such an entry as
 * ENTRY_MALFORMED at its index.
 * @throws StoreError `STORE_CORRUPT`
 */
export function decodeStoredEntry(e: Pick<StoredEntry, 'tenant' | 'index' | 'entry'>): Envelope {
  try {
    return decodeEntry(e.entry);
  } catch (cause) {
    if (!(cause instanceof FormatError)) throw cause;
    const at = cause.field !== undefined && cause.field !== '(envelope)' ? ` (at ${cause.field})` : '';
    throw new StoreError('STORE_CORRUPT', `tenant ${e.tenant}, entry ${e.index}: the stored entry bytes are not a valid entry${at}; custody audit reports it as ENTRY_MALFORMED`, { cause });
  }
}

/**
 * A stored disclosures column as what the stores write, a JSON list of strings, or
 * undefined when it is not one (the stores' reads, `custody audit` and the server's
 * session routes all judge it by this). @internal
 */
export function disclosuresColumn(text: string): string[] | undefined {
  if (text === '[]') return [];
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  return Array.isArray(v) && v.every((d) => typeof d === 'string') ? (v as string[]) : undefined;
}

/** The derived columns `audit` compares, in the stores' column order (not the entry bytes, digest or disclosures). @internal */
export const DERIVED_ENTRY_COLUMNS = [
  'id',
  'type',
  'time',
  'timeKey',
  'recordedAt',
  'sessionId',
  'seq',
  'initiatorId',
  'actorId',
  'toolName',
  'decision',
  'cause',
  'traceId',
  'principals',
  'scopeGap',
  'chainLinks',
] as const satisfies readonly (keyof EntryColumns)[];

/** The column values of an entry row as stored. @internal */
export function entryColumns(e: EntryRow): EntryColumns {
  return {
    index: e.index,
    id: e.id,
    type: e.type,
    time: e.time,
    timeKey: timeKey(e.time),
    recordedAt: e.recordedAt,
    digest: e.digest,
    sessionId: e.sessionId ?? null,
    seq: e.seq ?? null,
    initiatorId: e.initiatorId ?? null,
    actorId: e.actorId,
    toolName: e.toolName ?? null,
    decision: e.decision ?? null,
    cause: e.cause ?? null,
    traceId: e.traceId ?? null,
    principals: encodePrincipals(e.principals),
    disclosures: JSON.stringify(e.disclosures),
    scopeGap: e.scopeGap === true ? 1 : null,
    chainLinks: e.chainLinks ?? null,
  };
}

/** The column values of a session row as stored (without a store's own extra columns). @internal */
export function sessionColumns(r: SessionRow): SessionColumns {
  return {
    id: r.id,
    seq: r.seq,
    digest: r.digest,
    sealed: r.sealed,
    initiatorId: r.initiatorId ?? null,
    actorId: r.actorId ?? null,
    objective: r.objective ?? null,
    parent: r.parent ?? null,
    firstAt: r.firstAt,
    lastAt: r.lastAt,
    firstIndex: r.firstIndex,
    lastIndex: r.lastIndex,
    entries: r.entries,
    lastType: r.lastType,
  };
}

/** The case-folded objective a store keeps for the substring filter (JavaScript toLowerCase). @internal */
export function objectiveFold(objective: string | null | undefined): string | null {
  return objective?.toLowerCase() ?? null;
}

/** Principals as stored beside the entry: `[[role, type, id], …]` (the principals table is only an index). @internal */
export function encodePrincipals(rows: readonly PrincipalRow[]): string {
  return JSON.stringify(rows.map((p) => [p.role, p.type, p.id]));
}

/** The inverse of {@link encodePrincipals}. @internal */
export function decodePrincipals(text: string): PrincipalRow[] {
  return parseJson<[PrincipalRole, string, string][]>(text, 'principals').map(([role, type, id]) => ({ role, type, id }));
}

/** A head's edge hashes as one blob (the heads.edge column). @internal */
export function joinEdge(edge: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(edge.length * HASH_SIZE);
  edge.forEach((h, i) => out.set(h, i * HASH_SIZE));
  return out;
}

/**
 * The inverse of {@link joinEdge}.
 * @throws StoreError `STORE_CORRUPT` when the blob is not whole hashes
 * @internal
 */
export function splitEdge(blob: Uint8Array): Uint8Array[] {
  if (blob.length % HASH_SIZE !== 0) throw new StoreError('STORE_CORRUPT', `a stored head edge is ${blob.length} bytes, not a multiple of ${HASH_SIZE}`);
  const out: Uint8Array[] = [];
  for (let i = 0; i < blob.length; i += HASH_SIZE) out.push(new Uint8Array(blob.subarray(i, i + HASH_SIZE)));
  return out;
}

/**
 * An entries row as either store hands it over (the read columns); the integer columns
 * as either driver returns them (pg: int8 as text). @internal
 */
export interface EntryDbRow {
  tenant: string;
  idx: number | string;
  id: string;
  type: string;
  time: string;
  recorded_at: string;
  entry: Uint8Array;
  disclosures: string;
  digest: string;
  session_id: string | null;
  seq: number | string | null;
  initiator_id: string | null;
  actor_id: string;
  tool_name: string | null;
  decision: string | null;
  cause: string | null;
  trace_id: string | null;
  principals: string;
}

/** A stored entry from its row, on either store. @throws StoreError `STORE_CORRUPT` for a disclosures or principals column that cannot be read. @internal */
export function toEntry(r: EntryDbRow): StoredEntry {
  const index = Number(r.idx);
  const e: StoredEntry = {
    tenant: r.tenant,
    index,
    id: r.id,
    type: r.type,
    time: r.time,
    recordedAt: r.recorded_at,
    entry: bytes(r.entry),
    disclosures: parseDisclosures(r.disclosures, r.tenant, index),
    digest: r.digest,
    actorId: r.actor_id,
    principals: decodePrincipals(r.principals),
  };
  if (r.session_id !== null) e.sessionId = r.session_id;
  if (r.seq !== null) e.seq = Number(r.seq);
  if (r.initiator_id !== null) e.initiatorId = r.initiator_id;
  if (r.tool_name !== null) e.toolName = r.tool_name;
  if (r.decision !== null) e.decision = r.decision;
  if (r.cause !== null) e.cause = r.cause;
  if (r.trace_id !== null) e.traceId = r.trace_id;
  return e;
}

/** An entries row as the audit reads it: every stored column (no tenant: the audit reads one tenant at a time). @internal */
export interface AuditEntryDbRow extends Omit<EntryDbRow, 'tenant'> {
  time_key: string;
  scope_gap: number | null;
  chain_links: number | null;
}

/** A sessions row as either store hands it over (pg: int8 as text, boolean `sealed`; SQLite: `sealed` as 0/1). @internal */
export interface SessionDbRow {
  id: string;
  seq: number | string;
  digest: string;
  sealed: boolean | number;
  initiator_id: string | null;
  actor_id: string | null;
  objective: string | null;
  parent: string | null;
  first_at: string;
  last_at: string;
  first_index: number | string;
  last_index: number | string;
  entries: number | string;
  last_type: string;
}

/** A session row's columns as stored (`sealed` as every reader sees it: true, or SQLite's 1). @internal */
export function sessionColumnsOf(r: SessionDbRow): SessionColumns {
  return {
    id: r.id,
    seq: Number(r.seq),
    digest: r.digest,
    sealed: r.sealed === true || r.sealed === 1,
    initiatorId: r.initiator_id,
    actorId: r.actor_id,
    objective: r.objective,
    parent: r.parent,
    firstAt: r.first_at,
    lastAt: r.last_at,
    firstIndex: Number(r.first_index),
    lastIndex: Number(r.last_index),
    entries: Number(r.entries),
    lastType: r.last_type,
  };
}

/** The SessionRow of a stored sessions row: its columns, the empty ones left out. @internal */
export function toSession(r: SessionDbRow): SessionRow {
  const { initiatorId, actorId, objective, parent, objectiveFold: _fold, ...always } = sessionColumnsOf(r);
  const s: SessionRow = always;
  if (initiatorId !== null) s.initiatorId = initiatorId;
  if (actorId !== null) s.actorId = actorId;
  if (objective !== null) s.objective = objective;
  if (parent !== null) s.parent = parent;
  return s;
}

/** The audit's view of an entries row, from either store. @internal */
export function toAuditEntry(r: AuditEntryDbRow): AuditEntryRow {
  return {
    index: Number(r.idx),
    id: r.id,
    type: r.type,
    time: r.time,
    timeKey: r.time_key,
    recordedAt: r.recorded_at,
    entry: bytes(r.entry),
    disclosures: r.disclosures,
    digest: r.digest,
    sessionId: r.session_id,
    seq: r.seq === null ? null : Number(r.seq),
    initiatorId: r.initiator_id,
    actorId: r.actor_id,
    toolName: r.tool_name,
    decision: r.decision,
    cause: r.cause,
    traceId: r.trace_id,
    principals: r.principals,
    scopeGap: r.scope_gap,
    chainLinks: r.chain_links,
  };
}
