/**
 * The `LedgerStore` contract: a store persists bytes, index rows and tree nodes
 * for each tenant's log. It never computes a hash: `@custody/core` computes every
 * hash and root, so every store produces identical roots for identical input.
 *
 * Implementations: `SqliteStore` (embedded default), `PostgresStore`.
 * One conformance suite (`@custody/ledger/testing`) runs against both.
 */
import type { NodeId, StoredNode } from '@custody/core';

import type { StoreRecords } from './records-store.js';
import type { StoreStreams } from './streams-store.js';
import type { StoreReports } from './reports.js';

/** The roles a principal can play in an entry, for identity queries. */
export type PrincipalRole = 'initiator' | 'actor' | 'chain' | 'approver' | 'workload';

/** One principal of an entry, indexed for identity queries. */
export interface PrincipalRow {
  role: PrincipalRole;
  /** `human`, `agent`, `workload`, `service`; for `workload`, the method (`jwt-svid`, …). */
  type: string;
  /** Principal id; for workloads the SPIFFE ID, else `<issuer>|<subject>`. */
  id: string;
}

/** One entry as the sequencer hands it to the store, with its index fields. */
export interface EntryRow {
  /** Zero-based leaf index in the tenant's log. */
  index: number;
  id: string;
  type: string;
  /** Claimed by the source (RFC 3339). */
  time: string;
  /** The ledger's clock (RFC 3339). */
  recordedAt: string;
  /** The exact entry bytes. */
  entry: Uint8Array;
  /** Disclosures for the entry's commitments (may be emptied later by redaction). */
  disclosures: string[];
  /** Entry digest (base64url leaf hash): what the session chain links. */
  digest: string;
  sessionId?: string;
  seq?: number;
  initiatorId?: string;
  actorId: string;
  toolName?: string;
  decision?: string;
  cause?: string;
  traceId?: string;
  principals: PrincipalRow[];
  /**
   * A `tool.requested` whose tool some link of its delegation chain has no scope for
   * (the out-of-scope calls report; scopeCovers). Written and audited, not read back.
   */
  scopeGap?: boolean;
  /** The length of the delegation chain of a `session.opened` or `session.delegated` that has one (the deep-delegation report). Written and audited, not read back. */
  chainLinks?: number;
}

/** An entry as read back. */
export interface StoredEntry extends Omit<EntryRow, 'scopeGap' | 'chainLinks'> {
  tenant: string;
}

/** The state of one session after a batch, written in the same transaction. */
export interface SessionRow {
  id: string;
  /** seq of the session's last entry. */
  seq: number;
  /** digest of the session's last entry. */
  digest: string;
  sealed: boolean;
  /**
   * Set when the session's first entry is in this batch. A store keeps the first
   * value it was given for `initiatorId`, `actorId` and `parent` (a later row may
   * omit them), and the first non-empty `objective`.
   */
  initiatorId?: string;
  actorId?: string;
  objective?: string;
  parent?: string;
  /** recordedAt of the first and last entries. */
  firstAt: string;
  lastAt: string;
  /** index of the first and last entries. */
  firstIndex: number;
  lastIndex: number;
  entries: number;
  /** Last event type seen (e.g. `session.revoked`). */
  lastType: string;
}

/** The head of a tenant's log: enough to resume the Merkle frontier. */
export interface LogHead {
  size: number;
  /** MerkleFrontier edge, largest subtree first. */
  edge: Uint8Array[];
  rootHash: Uint8Array;
}

/**
 * An entry's columns as every store writes them, and hands them back to `audit`
 * unparsed (`auditEntries`): the identity fields, the derived `time_key`, the
 * principals as `encodePrincipals` text and the disclosures as JSON text. Both
 * stores write the values of `entryColumns` (store-shared.ts), so `audit`
 * recomputes each column exactly as it was written by calling it on the entry's
 * `entryRowOf` row.
 */
export interface EntryColumns {
  index: number;
  id: string;
  type: string;
  time: string;
  timeKey: string;
  recordedAt: string;
  digest: string;
  sessionId: string | null;
  seq: number | null;
  initiatorId: string | null;
  actorId: string;
  toolName: string | null;
  decision: string | null;
  cause: string | null;
  traceId: string | null;
  principals: string;
  disclosures: string;
  /** 1 for an out-of-scope `tool.requested` (EntryRow.scopeGap), else null. */
  scopeGap: number | null;
  chainLinks: number | null;
}

/** A stored entry row for `audit`: its bytes and its columns, nothing parsed (a damaged column never throws). */
export interface AuditEntryRow extends EntryColumns {
  entry: Uint8Array;
}

/**
 * A session's columns as every store writes them (and hands them back to
 * `audit`). `objectiveFold` is present only for a store that keeps one (SQLite's
 * `objective_fold`, written as `objectiveFold`).
 */
export type SessionColumns = Omit<SessionRow, OptionalSessionColumn> & { [K in OptionalSessionColumn]-?: NonNullable<SessionRow[K]> | null } & { objectiveFold?: string | null };

/** The session fields a row may omit, which a store writes as NULL. */
type OptionalSessionColumn = 'initiatorId' | 'actorId' | 'objective' | 'parent';

/** A tenant's head row as stored, for `audit`: the edge as one blob (`joinEdge`), nothing parsed. */
export interface AuditHeadRow {
  size: number;
  edge: Uint8Array;
  root: Uint8Array;
}

/** One row of the principals postings: one principal's entries in one bucket for one batch (see sqlite-migrations.ts). */
export interface PostingsRow {
  bucket: number;
  /** The principal id. */
  id: string;
  /** The first entry index of the row; the postings' first delta counts from it. */
  first: number;
  /** The principal's type in that first entry. */
  type: string;
  /** Unsigned LEB128 pairs (index − previous index, role bits). */
  postings: Uint8Array;
}

/** A signed checkpoint as stored. */
export interface StoredCheckpoint {
  size: number;
  rootHash: Uint8Array;
  /** The signed note text. */
  note: string;
}

/** Everything one committed batch writes, atomically. */
export interface SealedBatch {
  tenant: string;
  entries: EntryRow[];
  /** Complete-subtree nodes created by the batch (level 0 = leaf hashes). */
  nodes: StoredNode[];
  /** New state of every session the batch touched. */
  sessions: SessionRow[];
  head: LogHead;
  checkpoint: StoredCheckpoint;
}

/** Filters for identity queries; all given ones must hold. */
export interface EntryFilter {
  /** Initiator principal id. */
  initiator?: string;
  /** Agent principal id: the actor or any delegation link. */
  agent?: string;
  /** Workload identity: SPIFFE ID or `<issuer>|<subject>`. */
  workload?: string;
  /** Any role. */
  principal?: string;
  approver?: string;
  session?: string;
  /** Substring of the session objective (case-insensitive). */
  objective?: string;
  tool?: string;
  decision?: string;
  /** Event type, exact, or a family prefix ending in `.*` (e.g. `approval.*`). */
  type?: string;
  traceId?: string;
  /**
   * `time` (the source's claim) at or after, RFC 3339 (compared as instants, so
   * `…:05Z` and `…:05.000Z` are equal). A value that is not a time is
   * `LedgerError('RANGE_INVALID')`.
   */
  since?: string;
  /** `time` before, RFC 3339. */
  until?: string;
}

/** A page request. Cursors are opaque strings made by the store. */
export interface PageRequest {
  /** Clamped to [1, 1000]. */
  limit: number;
  /**
   * `nextCursor` of the previous page of the same listing; the next page starts
   * right after that page's last item, however the log grew meanwhile. Anything
   * else is `LedgerError('CURSOR_INVALID')`.
   */
  cursor?: string;
  /** Log order (default `desc`: newest first). */
  order?: 'asc' | 'desc';
}

export interface Page<T> {
  items: T[];
  /** Present when more items follow. */
  nextCursor?: string;
}

/** Session filters; all given ones must hold. */
export interface SessionFilter {
  initiator?: string;
  /** The session's agent (the actor of its first entry). */
  agent?: string;
  /** Substring of the objective (case-insensitive). */
  objective?: string;
  sealed?: boolean;
  /** Active at or after: `lastAt` ≥ since (RFC 3339). */
  since?: string;
  /** Opened before: `firstAt` < until (RFC 3339). */
  until?: string;
}

/** An API key as stored: only the SHA-256 of its secret. */
export interface ApiKeyRow {
  id: string;
  tenant: string;
  role: 'ingest' | 'read' | 'approve' | 'admin';
  name: string;
  /** base64url SHA-256 of the whole key string. */
  hash: string;
  createdAt: string;
  revokedAt?: string;
}

/** What a store can do; capability flags with conservative defaults. */
export interface StoreCapabilities {
  /** Several processes may append to one tenant log concurrently. */
  multiWriter: boolean;
}

/**
 * Persists ledger entries. Stores keep bytes; they never compute hashes.
 *
 * Every method that writes MUST be atomic and durable before it resolves.
 * Every method MUST reject with a `StoreError`: `STORE_BUSY` / `STORE_UNAVAILABLE`
 * when the backend is busy or unreachable (callers answer 503 and the write is
 * not acknowledged), `STORE_FULL` when the disk is full.
 */
export interface LedgerStore {
  readonly kind: 'sqlite' | 'postgres';
  readonly capabilities: StoreCapabilities;

  /** Creates or upgrades the schema (versioned, forward-only migrations). Idempotent. */
  migrate(): Promise<void>;
  close(): Promise<void>;

  /** Reads a deployment setting (e.g. `originHost`). */
  getMeta(key: string): Promise<string | undefined>;
  /** Sets a setting unless already set; resolves to the value in force. */
  initMeta(key: string, value: string): Promise<string>;

  /** Every tenant with a log. */
  tenants(): Promise<string[]>;
  /** The tenant log's head, or undefined for an empty log. */
  head(tenant: string): Promise<LogHead | undefined>;
  /** The current state of the named sessions (those that exist). */
  sessions(tenant: string, ids: readonly string[]): Promise<Map<string, SessionRow>>;
  /** Entries already stored with these event ids: id → index and seq. */
  findIds(tenant: string, ids: readonly string[]): Promise<Map<string, { index: number; seq?: number }>>;

  /**
   * Appends one sealed batch: entries, index rows, nodes, session rows, the new
   * head and the batch's checkpoint, in one transaction.
   * MUST be atomic and durable before resolving. MUST reject with
   * `STORE_HEAD_CONFLICT` (writing nothing) if the stored head size is not
   * `expectedSize` (0 for an empty log) or if an entry id already exists; on a
   * multi-writer store it MUST serialise appenders of one tenant so that two
   * processes never both succeed from the same head. A batch inconsistent with
   * itself (entry indexes not `expectedSize…`, head or checkpoint size not after
   * its entries, nodes not exactly those its entries complete, hashes not 32
   * bytes) is a caller bug: it MUST reject with `STORE_CORRUPT`, writing nothing.
   * On `STORE_UNAVAILABLE` the outcome may be unknown (the connection dropped
   * during COMMIT): the caller re-reads the head and de-duplicates by event id.
   */
  append(batch: SealedBatch, expectedSize: number): Promise<void>;

  /** Entries with index in [from, to), in index order (read in chunks; appends may land meanwhile). */
  readEntries(tenant: string, from: number, to: number): AsyncIterable<StoredEntry>;
  /** The stored entries among `indexes`, in index order, each once; missing ones are absent. */
  getEntries(tenant: string, indexes: readonly number[]): Promise<StoredEntry[]>;
  getEntryById(tenant: string, id: string): Promise<StoredEntry | undefined>;
  /** A session's entries in seq order (which is log order: the sequencer assigns both). */
  sessionEntries(tenant: string, sessionId: string): Promise<StoredEntry[]>;

  /** Stored tree nodes by id: nodeKey(id) → hash. Missing ones are absent. */
  getNodes(tenant: string, ids: readonly NodeId[]): Promise<Map<string, Uint8Array>>;

  getCheckpoint(tenant: string, size: number): Promise<StoredCheckpoint | undefined>;
  latestCheckpoint(tenant: string): Promise<StoredCheckpoint | undefined>;
  /** Stores a checkpoint signed later (e.g. on request for an earlier size); no-op if one exists. */
  putCheckpoint(tenant: string, cp: StoredCheckpoint): Promise<void>;
  /** Every stored checkpoint size, ascending (for audit). */
  checkpointSizes(tenant: string): Promise<number[]>;

  /**
   * For `audit`: the stored rows of the entries with index in [from, to), in index
   * order, as stored (bytes and columns unparsed, so a damaged column never throws
   * here). Reads one statement; callers ask for bounded ranges (audit: 2,048).
   */
  auditEntries(tenant: string, from: number, to: number): Promise<AuditEntryRow[]>;
  /** For `audit`: every principals postings row of one bucket, as stored (a bucket holds at most 4,096 entries). */
  auditPostings(tenant: string, bucket: number): Promise<PostingsRow[]>;
  /**
   * For `audit`: session rows as stored, either those whose `lastIndex` is in
   * [from, to) (read through the recency index) or those with the given ids.
   */
  auditSessions(tenant: string, which: { from: number; to: number } | { ids: readonly string[] }): Promise<SessionColumns[]>;
  /** For `audit`: the head row as stored (the edge unsplit), or undefined when there is none. */
  auditHead(tenant: string): Promise<AuditHeadRow | undefined>;

  /** Identity queries, newest first by default (log order), with cursor pagination. */
  queryEntries(tenant: string, filter: EntryFilter, page: PageRequest): Promise<Page<StoredEntry>>;
  getSession(tenant: string, id: string): Promise<SessionRow | undefined>;
  /** Sessions by recency of their last entry (`lastIndex`), newest first by default. */
  listSessions(tenant: string, filter: SessionFilter, page: PageRequest): Promise<Page<SessionRow>>;

  /**
   * Replaces an entry's disclosures (redaction). The entry bytes never change.
   * Rejects with `LedgerError('EVENT_NOT_FOUND')` when there is no entry at `index`.
   */
  setDisclosures(tenant: string, index: number, disclosures: string[]): Promise<void>;

  /** Inserts a key, or replaces the key with the same tenant and id. */
  putApiKey(row: ApiKeyRow): Promise<void>;
  findApiKey(hash: string): Promise<ApiKeyRow | undefined>;
  listApiKeys(tenant?: string): Promise<ApiKeyRow[]>;
  /** Marks a key revoked; resolves to false if no such live key. */
  revokeApiKey(tenant: string, id: string, at: string): Promise<boolean>;

  /** The report selections (reports.ts): read-only, answered from the store's indexes. */
  readonly reports: StoreReports;

  /** Records management: retention, legal holds, redaction, keyed digests (records-store.ts). */
  readonly records: StoreRecords;

  /** Log streams: configuration, durable cursor, delivery state, lease (streams-store.ts). */
  readonly streams: StoreStreams;
}
