/**
 * `SqliteStore`: the embedded `LedgerStore` on better-sqlite3 (one process, one
 * writer). WAL journal with `synchronous = FULL`, so a batch is on disk before
 * `append` resolves and survives power loss.
 */
import { type NodeId, nodeKey } from '@custody/core';
import Database from 'better-sqlite3';

import { LedgerError, StoreError } from '../errors.js';
import type {
  ApiKeyRow,
  AuditEntryRow,
  AuditHeadRow,
  EntryFilter,
  LedgerStore,
  LogHead,
  Page,
  PageRequest,
  PostingsRow,
  SealedBatch,
  SessionColumns,
  SessionFilter,
  SessionRow,
  StoreCapabilities,
  StoredCheckpoint,
  StoredEntry,
} from '../store.js';
import {
  type ApiKeyDbRow,
  type AuditEntryDbRow,
  BUCKET,
  type EntryDbRow,
  type SessionDbRow,
  sessionColumnsOf,
  toEntry,
  toSession,
  bytes,
  checkBatch,
  checkHash,
  clampLimit,
  clockKey,
  decodeCursor,
  decodePostings,
  encodeCursor,
  entryColumns,
  filterTimeKey,
  HASH_SIZE,
  joinEdge,
  nodeRuns,
  objectiveFold,
  pageOf,
  postingsOf,
  principalFilters,
  type RoleFilter,
  roleNamesSql,
  sessionColumns,
  splitEdge,
  toApiKey,
  toAuditEntry,
  typeFilter,
} from '../store-shared.js';
import { type Checkpointer, startCheckpointer } from './sqlite-checkpointer.js';
import { migrateSqlite, SQLITE_SCHEMA_VERSION, sqliteSchemaVersion } from './sqlite-migrations.js';
import { SqliteRecords } from './sqlite-records.js';
import { SqliteStreams } from './sqlite-streams.js';
import { SqliteReports } from './sqlite-reports.js';

/** Where the SQLite store keeps its data. */
export type SqliteStoreConfig = (
  | {
      /** Database file, created if missing; `':memory:'` for a throwaway store. */
      path: string;
    }
  | {
      /** An open better-sqlite3 database; the store configures it and closes it on `close()`. */
      database: Database.Database;
    }
) & {
  /** How long a write waits for another connection's lock before `STORE_BUSY`, in ms. Default 5000. */
  busyTimeoutMs?: number;
  /**
   * Who checkpoints the WAL into the database file. `background` (the default for a
   * database file): a worker thread with its own connection, so no commit waits for
   * a checkpoint (when small commits keep landing, this connection finishes the
   * worker's pass between two of them, about a millisecond, so that the WAL starts
   * over). `automatic`: SQLite, inside the commit that crosses ~32 MiB of WAL.
   */
  checkpoints?: 'background' | 'automatic';
};

/** Candidate entries checked per statement by an identity query. */
const CANDIDATE_CHUNK = 256;
/** Newest entries a range-only query scans before it turns to the range's index. */
const SCAN_WINDOW = 4096;
const READ_CHUNK = 1000;
const QUERY_CACHE = 256;

type Statement = Database.Statement<unknown[], unknown>;

const ENTRY_COLUMNS =
  'e.tenant, e.idx, e.id, e.type, e.time, e.recorded_at, e.entry, e.disclosures, e.digest, e.session_id, e.seq, e.initiator_id, e.actor_id, e.tool_name, e.decision, e.cause, e.trace_id, e.principals';
const SESSION_COLUMNS =
  's.id, s.seq, s.digest, s.sealed, s.initiator_id, s.actor_id, s.objective, s.parent, s.first_at, s.last_at, s.first_index, s.last_index, s.entries, s.last_type';

/** Statements prepared once and reused by every call. */
interface Statements {
  headSize: Statement;
  insertEntry: Statement;
  insertPostings: Statement;
  postings: Statement;
  insertNodes: Statement;
  nodesEnd: Statement;
  upsertSession: Statement;
  upsertHead: Statement;
  insertCheckpoint: Statement;
  head: Statement;
  tenants: Statement;
  session: Statement;
  findId: Statement;
  entryByIndex: Statement;
  entryById: Statement;
  entryRange: Statement;
  sessionEntries: Statement;
  nodeRun: Statement;
  auditEntries: Statement;
  auditPostings: Statement;
  auditSession: Statement;
  auditSessionRange: Statement;
  checkpoint: Statement;
  latestCheckpoint: Statement;
  putCheckpoint: Statement;
  checkpointSizes: Statement;
  setDisclosures: Statement;
  getMeta: Statement;
  initMeta: Statement;
  putApiKey: Statement;
  findApiKey: Statement;
  listApiKeys: Statement;
  listAllApiKeys: Statement;
  revokeApiKey: Statement;
}

/**
 * The embedded ledger store. Single writer: `capabilities.multiWriter` is false, so
 * run one appending process per database file (readers in other processes are fine).
 * @example
 * const store = new SqliteStore({ path: '.custody/ledger.db' });
 * await store.migrate();
 * const ledger = await Ledger.open({ store, logSeed });
 */
export class SqliteStore implements LedgerStore {
  readonly kind = 'sqlite' as const;
  readonly capabilities: StoreCapabilities = Object.freeze({ multiWriter: false });
  /** The report selections (sqlite-reports.ts). */
  readonly reports: SqliteReports;
  /** Records management (sqlite-records.ts). */
  readonly records: SqliteRecords;
  /** Log streams (sqlite-streams.ts). */
  readonly streams: SqliteStreams;
  readonly #db: Database.Database;
  #statements: Statements | undefined;
  readonly #queries = new Map<string, Statement>();
  #appendTx: ((batch: SealedBatch, expectedSize: number) => void) | undefined;
  #checkpointer: Checkpointer | undefined;
  #closed = false;

  constructor(config: SqliteStoreConfig) {
    const cfg = Object.freeze({ ...config });
    try {
      this.#db = 'database' in cfg ? cfg.database : new Database(cfg.path);
      const db = this.#db;
      db.pragma('journal_mode = WAL');
      // FULL: the WAL is synced at every commit, so an acknowledged batch survives power loss.
      db.pragma('synchronous = FULL');
      db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(cfg.busyTimeoutMs ?? 5000))}`);
      db.pragma('foreign_keys = OFF');
      db.pragma('cache_size = -65536');
      db.pragma('temp_store = MEMORY');
      // A redacted or purged value is overwritten where it lay, not merely unlinked: without
      // this, the old disclosure stays readable in the file's free space.
      db.pragma('secure_delete = ON');
      // Checkpoint every ~32 MiB of WAL rather than 4 MiB: a page rewritten by many
      // batches is copied back to the database file once per checkpoint, not per batch.
      db.pragma('wal_autocheckpoint = 8192');
      db.pragma('journal_size_limit = 67108864');
      const file = db.name;
      if ((cfg.checkpoints ?? 'background') === 'background' && !db.readonly && !db.memory && file !== '' && !file.startsWith('file:')) {
        db.pragma('wal_autocheckpoint = 0');
        this.#checkpointer = startCheckpointer(file, () => this.#finishCheckpoint(), () => {
          // The worker is gone: let SQLite checkpoint inline again rather than grow the WAL forever.
          this.#checkpointer = undefined;
          if (!this.#closed && db.open) db.pragma('wal_autocheckpoint = 8192');
        });
      }
    } catch (err) {
      throw toStoreError(err);
    }
    this.reports = new SqliteReports(this.#db, (fn) => this.#run(fn));
    this.records = new SqliteRecords(this.#db, (fn) => this.#run(fn));
    this.streams = new SqliteStreams(this.#db, (fn) => this.#run(fn));
  }

  /**
   * The end of a background checkpoint, on this connection between two commits: copies
   * the frames written during the worker's pass, so that the next commit can start the
   * WAL over (sqlite-checkpointer.ts says why the worker cannot do this alone).
   */
  #finishCheckpoint(): void {
    const db = this.#db;
    if (this.#closed || !db.open || db.inTransaction) return;
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // Busy (another checkpoint, or a statement of this connection still iterating):
      // nothing is lost, the WAL starts over after a later pass.
    }
  }

  async migrate(): Promise<void> {
    try {
      migrateSqlite(this.#db);
      this.#db.pragma('analysis_limit = 1000');
      optimize(this.#db, 'optimize = 0x10002');
    } catch (err) {
      const e = toStoreError(err);
      throw e.code === 'STORE_BUSY' || e.code === 'STORE_FULL' || e.code === 'STORE_MIGRATION_FAILED'
        ? e
        : new StoreError('STORE_MIGRATION_FAILED', `migrating the SQLite schema failed: ${e.message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#checkpointer?.stop();
    try {
      if (this.#db.open) {
        if (!this.#db.readonly) optimize(this.#db, 'optimize');
        this.#db.close();
      }
    } catch (err) {
      throw toStoreError(err);
    }
  }

  async getMeta(key: string): Promise<string | undefined> {
    return this.#run(() => (this.#s().getMeta.get(key) as { value: string } | undefined)?.value);
  }

  async initMeta(key: string, value: string): Promise<string> {
    return this.#run(() => {
      const s = this.#s();
      s.initMeta.run(key, value);
      return (s.getMeta.get(key) as { value: string }).value;
    });
  }

  async tenants(): Promise<string[]> {
    return this.#run(() => (this.#s().tenants.all() as { tenant: string }[]).map((r) => r.tenant));
  }

  async head(tenant: string): Promise<LogHead | undefined> {
    return this.#run(() => {
      const r = this.#s().head.get(tenant) as { size: number; edge: Uint8Array; root: Uint8Array } | undefined;
      return r === undefined ? undefined : { size: r.size, edge: splitEdge(r.edge), rootHash: bytes(r.root) };
    });
  }

  async sessions(tenant: string, ids: readonly string[]): Promise<Map<string, SessionRow>> {
    return this.#run(() => {
      const stmt = this.#s().session;
      const out = new Map<string, SessionRow>();
      for (const id of ids) {
        const r = stmt.get(tenant, id) as SessionDbRow | undefined;
        if (r !== undefined) out.set(id, toSession(r));
      }
      return out;
    });
  }

  async findIds(tenant: string, ids: readonly string[]): Promise<Map<string, { index: number; seq?: number }>> {
    return this.#run(() => {
      const stmt = this.#s().findId;
      const out = new Map<string, { index: number; seq?: number }>();
      for (const id of ids) {
        const r = stmt.get(tenant, id) as { idx: number; seq: number | null } | undefined;
        if (r !== undefined) out.set(id, r.seq === null ? { index: r.idx } : { index: r.idx, seq: r.seq });
      }
      return out;
    });
  }

  async append(batch: SealedBatch, expectedSize: number): Promise<void> {
    checkBatch(batch, expectedSize);
    this.#run(() => {
      this.#s();
      this.#appendTx!(batch, expectedSize);
    });
  }

  /** The append transaction body; runs inside BEGIN IMMEDIATE, so the head check and the writes are one unit. */
  #appendBody(batch: SealedBatch, expectedSize: number): void {
    const s = this.#statements!;
    const tenant = batch.tenant;
    const current = (s.headSize.get(tenant) as { size: number } | undefined)?.size ?? 0;
    if (current !== expectedSize) {
      throw new StoreError('STORE_HEAD_CONFLICT', `the log of ${tenant} has ${current} entries, not the expected ${expectedSize}`);
    }
    if (batch.entries.length === 0) return;
    try {
      for (const e of batch.entries) {
        const c = entryColumns(e);
        s.insertEntry.run(
          tenant,
          c.index,
          c.id,
          c.type,
          c.time,
          c.timeKey,
          c.recordedAt,
          e.entry,
          c.disclosures,
          c.digest,
          c.sessionId,
          c.seq,
          c.initiatorId,
          c.actorId,
          c.toolName,
          c.decision,
          c.cause,
          c.traceId,
          c.principals,
          c.scopeGap,
          c.chainLinks,
        );
      }
    } catch (err) {
      if (isConstraint(err)) {
        throw new StoreError('STORE_HEAD_CONFLICT', `an entry of this batch is already in the log of ${tenant} (same event id or index)`, { cause: err });
      }
      throw err;
    }
    try {
      for (const p of postingsOf(batch.entries)) s.insertPostings.run(tenant, p.bucket, p.id, p.first, p.type, p.postings);
      let level = -1;
      for (const run of nodeRuns(batch.nodes)) {
        if (run.level !== level) {
          // Each level's runs must continue exactly where that level's stored nodes end.
          level = run.level;
          const next = (s.nodesEnd.get(tenant, level) as { next: number } | undefined)?.next ?? 0;
          if (next !== run.start) {
            throw new StoreError('STORE_CORRUPT', `the stored tree of ${tenant} ends at node ${level}/${next}, this batch continues at ${level}/${run.start}`);
          }
        }
        s.insertNodes.run(tenant, run.level, run.start, run.hashes);
      }
      for (const r of uniqueSessions(batch.sessions)) {
        const c = sessionColumns(r);
        s.upsertSession.run(
          tenant,
          c.id,
          c.seq,
          c.digest,
          c.sealed ? 1 : 0,
          c.initiatorId,
          c.actorId,
          c.objective,
          objectiveFold(c.objective),
          c.parent,
          c.firstAt,
          c.lastAt,
          c.firstIndex,
          c.lastIndex,
          c.entries,
          c.lastType,
        );
      }
      s.upsertHead.run(tenant, batch.head.size, joinEdge(batch.head.edge), batch.head.rootHash);
      s.insertCheckpoint.run(tenant, batch.checkpoint.size, batch.checkpoint.rootHash, batch.checkpoint.note);
    } catch (err) {
      if (isConstraint(err)) {
        throw new StoreError('STORE_CORRUPT', `the stored tree of ${tenant} already has nodes or a checkpoint beyond its head`, { cause: err });
      }
      throw err;
    }
  }

  async *readEntries(tenant: string, from: number, to: number): AsyncIterable<StoredEntry> {
    // Chunked, so no statement stays open across an await (another call may write meanwhile).
    for (let next = from; next < to; ) {
      const start = next;
      const rows = this.#run(() => this.#s().entryRange.all(tenant, start, to, READ_CHUNK) as EntryDbRow[]);
      if (rows.length === 0) return;
      for (const r of rows) yield toEntry(r);
      next = Number(rows[rows.length - 1]!.idx) + 1;
      if (rows.length < READ_CHUNK) return;
    }
  }

  async getEntries(tenant: string, indexes: readonly number[]): Promise<StoredEntry[]> {
    return this.#run(() => {
      const stmt = this.#s().entryByIndex;
      const out: StoredEntry[] = [];
      for (const i of [...new Set(indexes)].sort((a, b) => a - b)) {
        const r = stmt.get(tenant, i) as EntryDbRow | undefined;
        if (r !== undefined) out.push(toEntry(r));
      }
      return out;
    });
  }

  async getEntryById(tenant: string, id: string): Promise<StoredEntry | undefined> {
    return this.#run(() => {
      const r = this.#s().entryById.get(tenant, id) as EntryDbRow | undefined;
      return r === undefined ? undefined : toEntry(r);
    });
  }

  async sessionEntries(tenant: string, sessionId: string): Promise<StoredEntry[]> {
    return this.#run(() => (this.#s().sessionEntries.all(tenant, sessionId) as EntryDbRow[]).map(toEntry));
  }

  async auditEntries(tenant: string, from: number, to: number): Promise<AuditEntryRow[]> {
    return this.#run(() => (this.#s().auditEntries.all(tenant, from, to) as AuditEntryDbRow[]).map(toAuditEntry));
  }

  async auditPostings(tenant: string, bucket: number): Promise<PostingsRow[]> {
    return this.#run(() =>
      (this.#s().auditPostings.all(tenant, bucket) as { bucket: number; pid: string; first_idx: number; ptype: string; postings: Uint8Array }[]).map((r) => ({
        bucket: r.bucket,
        id: r.pid,
        first: r.first_idx,
        type: r.ptype,
        postings: bytes(r.postings),
      })),
    );
  }

  async auditSessions(tenant: string, which: { from: number; to: number } | { ids: readonly string[] }): Promise<SessionColumns[]> {
    return this.#run(() => {
      const s = this.#s();
      const rows =
        'ids' in which
          ? which.ids.map((id) => s.auditSession.get(tenant, id) as AuditSessionDbRow | undefined).filter((r) => r !== undefined)
          : (s.auditSessionRange.all(tenant, which.from, which.to) as AuditSessionDbRow[]);
      return rows.map((r) => ({ ...sessionColumnsOf(r), objectiveFold: r.objective_fold }));
    });
  }

  async auditHead(tenant: string): Promise<AuditHeadRow | undefined> {
    return this.#run(() => {
      const r = this.#s().head.get(tenant) as { size: number; edge: Uint8Array; root: Uint8Array } | undefined;
      return r === undefined ? undefined : { size: r.size, edge: bytes(r.edge), root: bytes(r.root) };
    });
  }

  async getNodes(tenant: string, ids: readonly NodeId[]): Promise<Map<string, Uint8Array>> {
    return this.#run(() => {
      const stmt = this.#s().nodeRun;
      const out = new Map<string, Uint8Array>();
      // The last run read at each level, reused while ids fall inside it (audit reads ranges).
      const runs = new Map<number, { start: number; hashes: Uint8Array }>();
      for (const id of ids) {
        let row = runs.get(id.level);
        if (row === undefined || id.index < row.start || id.index >= row.start + row.hashes.length / HASH_SIZE) {
          row = stmt.get(tenant, id.level, id.index) as { start: number; hashes: Uint8Array } | undefined;
          if (row === undefined) continue;
          runs.set(id.level, row);
        }
        const hash = hashAt(row, id.index);
        if (hash !== undefined) out.set(nodeKey(id), hash);
      }
      return out;
    });
  }

  async getCheckpoint(tenant: string, size: number): Promise<StoredCheckpoint | undefined> {
    return this.#run(() => toCheckpoint(this.#s().checkpoint.get(tenant, size) as CheckpointDbRow | undefined));
  }

  async latestCheckpoint(tenant: string): Promise<StoredCheckpoint | undefined> {
    return this.#run(() => toCheckpoint(this.#s().latestCheckpoint.get(tenant) as CheckpointDbRow | undefined));
  }

  async putCheckpoint(tenant: string, cp: StoredCheckpoint): Promise<void> {
    checkHash(cp.rootHash, 'checkpoint.rootHash');
    this.#run(() => this.#s().putCheckpoint.run(tenant, cp.size, cp.rootHash, cp.note));
  }

  async checkpointSizes(tenant: string): Promise<number[]> {
    return this.#run(() => (this.#s().checkpointSizes.all(tenant) as { size: number }[]).map((r) => r.size));
  }

  /**
   * Identity queries. The store picks the access path itself (SQLite has no
   * statistics worth trusting for `ORDER BY idx LIMIT n`): identity filters drive
   * through the postings; else the most selective equality filter's index, which
   * yields log order; else (only ranges: time, type family, objective) a bounded
   * scan of the newest entries, then the range's own index for the rest.
   */
  async queryEntries(tenant: string, filter: EntryFilter, page: PageRequest): Promise<Page<StoredEntry>> {
    const limit = clampLimit(page.limit);
    const desc = page.order !== 'asc';
    const after = page.cursor === undefined ? undefined : decodeCursor(page.cursor, 'e');
    const dir = desc ? 'DESC' : 'ASC';
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, ...values: unknown[]) => {
      where.push(sql);
      params.push(...values);
    };
    const family = filter.type === undefined ? undefined : typeFilter(filter.type);
    if (filter.session !== undefined) add('e.session_id = ?', filter.session);
    if (filter.traceId !== undefined) add('e.trace_id = ?', filter.traceId);
    if (filter.tool !== undefined) add('e.tool_name = ?', filter.tool);
    if (filter.decision !== undefined) add('e.decision = ?', filter.decision);
    if (family?.exact !== undefined) add('e.type = ?', family.exact);
    else if (family !== undefined) add('e.type >= ? AND e.type < ?', family.from, family.to);
    if (filter.since !== undefined) add('e.time_key >= ?', filterTimeKey(filter.since, 'since'));
    if (filter.until !== undefined) add('e.time_key < ?', filterTimeKey(filter.until, 'until'));
    if (filter.objective !== undefined) {
      // A probe per entry (the session's primary key), not a scan of every session.
      add('EXISTS (SELECT 1 FROM sessions s WHERE s.tenant = e.tenant AND s.id = e.session_id AND instr(s.objective_fold, ?) > 0)', filter.objective.toLowerCase());
    }
    const roles = principalFilters(filter);
    const page1 = (rows: EntryDbRow[]) => pageOf(rows.map(toEntry), limit, (e) => encodeCursor('e', e.index));

    // 1. Identity filters (unless a session or trace, which are small, is named): the postings.
    if (roles.length > 0 && filter.session === undefined && filter.traceId === undefined) {
      // A join from the candidate list (one primary-key probe each); `idx IN (…)` was 16× slower.
      const sql = `SELECT ${ENTRY_COLUMNS} FROM json_each(?) c CROSS JOIN entries e INDEXED BY entries_idx ON e.tenant = ? AND e.idx = c.value${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY e.idx ${dir} LIMIT ?`;
      // Equality filters narrow each bucket's candidates through their covering
      // (tenant, value, idx) index first, so non-matching entries are never read.
      const narrow: [string, string][] = [];
      if (filter.tool !== undefined) narrow.push(['entries_tool', 'e.tool_name = ?']);
      if (filter.decision !== undefined) narrow.push(['entries_decision', 'e.decision = ?']);
      if (family?.exact !== undefined) narrow.push(['entries_type', 'e.type = ?']);
      const values = [filter.tool, filter.decision, family?.exact].filter((x) => x !== undefined);
      const narrowing = narrow.map(([index, cond], i) => ({
        stmt: this.#query(`SELECT e.idx FROM entries e INDEXED BY ${index} WHERE e.tenant = ? AND ${cond} AND e.idx >= ? AND e.idx < ?`),
        value: values[i],
      }));
      return page1(this.#run(() => this.#byPostings(tenant, roles, narrowing, sql, params, desc, after, limit + 1)));
    }
    for (const r of roles) {
      add(`EXISTS (SELECT 1 FROM json_each(e.principals) j WHERE j.value ->> 2 = ?${roleNamesSql('j.value ->> 0', r.mask)})`, r.id);
    }
    const cond = where.length > 0 ? ` AND ${where.join(' AND ')}` : '';
    // 2. An equality filter: its (tenant, value, idx) index is already in log order.
    const index =
      filter.session !== undefined
        ? 'entries_session'
        : filter.traceId !== undefined
          ? 'entries_trace'
          : filter.tool !== undefined
            ? 'entries_tool'
            : filter.decision !== undefined
              ? 'entries_decision'
              : family?.exact !== undefined
                ? 'entries_type'
                : where.length === 0
                  ? 'entries_idx'
                  : undefined;
    if (index !== undefined) {
      const bound = after === undefined ? [] : [after];
      const sql = `SELECT ${ENTRY_COLUMNS} FROM entries e INDEXED BY ${index} WHERE e.tenant = ?${cond}${after === undefined ? '' : ` AND e.idx ${desc ? '<' : '>'} ?`} ORDER BY e.idx ${dir} LIMIT ?`;
      return page1(this.#run(() => this.#query(sql).all(tenant, ...params, ...bound, limit + 1) as EntryDbRow[]));
    }
    // 3. Only ranges. Matches are usually dense among recent entries: scan a bounded
    // window next to the cursor first; if the page is not full, take the remaining
    // matches' indexes from the range's own index (sorting integers only), then fetch.
    return page1(
      this.#run(() => {
        const size = (this.#s().headSize.get(tenant) as { size: number } | undefined)?.size ?? 0;
        const edge = after ?? (desc ? size : -1);
        const [lo, hi] = desc ? [Math.max(0, edge - SCAN_WINDOW), edge] : [edge + 1, edge + 1 + SCAN_WINDOW];
        const scan = `SELECT ${ENTRY_COLUMNS} FROM entries e INDEXED BY entries_idx WHERE e.tenant = ? AND e.idx >= ? AND e.idx < ?${cond} ORDER BY e.idx ${dir} LIMIT ?`;
        const out = this.#query(scan).all(tenant, lo, hi, ...params, limit + 1) as EntryDbRow[];
        if (out.length > limit || (desc ? lo === 0 : hi >= size)) return out;
        const time = filter.since !== undefined || filter.until !== undefined;
        const rangeIndex = time ? 'entries_time' : family !== undefined ? 'entries_type' : 'entries_session';
        // Objective alone: the matching sessions' entries, through the session index.
        const bySessions = rangeIndex === 'entries_session' ? ' AND e.session_id IN (SELECT s.id FROM sessions s WHERE s.tenant = ? AND instr(s.objective_fold, ?) > 0)' : '';
        const extra = bySessions === '' ? [] : [tenant, filter.objective!.toLowerCase()];
        const rest = `SELECT e.idx FROM entries e INDEXED BY ${rangeIndex} WHERE e.tenant = ?${cond}${bySessions} AND e.idx ${desc ? '<' : '>='} ? ORDER BY e.idx ${dir} LIMIT ?`;
        const more = (this.#query(rest).all(tenant, ...params, ...extra, desc ? lo : hi, limit + 1 - out.length) as { idx: number }[]).map((r) => r.idx);
        if (more.length === 0) return out;
        const fetch = `SELECT ${ENTRY_COLUMNS} FROM json_each(?) c CROSS JOIN entries e INDEXED BY entries_idx ON e.tenant = ? AND e.idx = c.value ORDER BY e.idx ${dir}`;
        return out.concat(this.#query(fetch).all(JSON.stringify(more), tenant) as EntryDbRow[]);
      }),
    );
  }

  /**
   * Walks the postings buckets in log order: a bucket's candidates are the entries
   * in every named principal's postings (with a matching role); `sql` (parameters:
   * JSON list of candidates, tenant, `params`, limit) keeps those that pass the
   * entry filters, until `want` rows are found.
   */
  #byPostings(
    tenant: string,
    roles: readonly RoleFilter[],
    narrowing: readonly { stmt: Statement; value: unknown }[],
    sql: string,
    params: readonly unknown[],
    desc: boolean,
    after: number | undefined,
    want: number,
  ): EntryDbRow[] {
    const s = this.#s();
    const size = (s.headSize.get(tenant) as { size: number } | undefined)?.size ?? 0;
    const out: EntryDbRow[] = [];
    if (size === 0) return out;
    const stmt = this.#query(sql);
    const last = Math.floor((size - 1) / BUCKET);
    const from = after === undefined ? (desc ? last : 0) : Math.min(last, Math.floor(after / BUCKET));
    for (let b = from; b >= 0 && b <= last && out.length < want; b += desc ? -1 : 1) {
      let candidates: number[] | undefined;
      for (const r of roles) {
        const found = decodePostings(s.postings.all(tenant, b, r.id) as PostingDbRow[], r.mask);
        if (candidates === undefined) candidates = found;
        else {
          const keep = new Set(found);
          candidates = candidates.filter((i) => keep.has(i));
        }
        if (candidates.length === 0) break;
      }
      for (const n of narrowing) {
        if (candidates === undefined || candidates.length === 0) break;
        const keep = new Set((n.stmt.all(tenant, n.value, b * BUCKET, (b + 1) * BUCKET) as { idx: number }[]).map((r) => r.idx));
        candidates = candidates.filter((i) => keep.has(i));
      }
      let list = candidates ?? [];
      if (after !== undefined) list = list.filter((i) => (desc ? i < after : i > after));
      if (desc) list.reverse();
      for (let at = 0; at < list.length && out.length < want; at += CANDIDATE_CHUNK) {
        const chunk = list.slice(at, at + CANDIDATE_CHUNK);
        for (const r of stmt.all(JSON.stringify(chunk), tenant, ...params, want - out.length) as EntryDbRow[]) out.push(r);
      }
    }
    return out;
  }

  async getSession(tenant: string, id: string): Promise<SessionRow | undefined> {
    return this.#run(() => {
      const r = this.#s().session.get(tenant, id) as SessionDbRow | undefined;
      return r === undefined ? undefined : toSession(r);
    });
  }

  async listSessions(tenant: string, filter: SessionFilter, page: PageRequest): Promise<Page<SessionRow>> {
    const limit = clampLimit(page.limit);
    const desc = page.order !== 'asc';
    const after = page.cursor === undefined ? undefined : decodeCursor(page.cursor, 's');
    const where: string[] = ['s.tenant = ?'];
    const params: unknown[] = [tenant];
    const add = (sql: string, value: unknown) => {
      where.push(sql);
      params.push(value);
    };
    if (filter.initiator !== undefined) add('s.initiator_id = ?', filter.initiator);
    if (filter.agent !== undefined) add('s.actor_id = ?', filter.agent);
    if (filter.objective !== undefined) add('instr(s.objective_fold, ?) > 0', filter.objective.toLowerCase());
    if (filter.sealed !== undefined) add('s.sealed = ?', filter.sealed ? 1 : 0);
    if (filter.since !== undefined) add('s.last_at >= ?', clockKey(filter.since, 'since'));
    if (filter.until !== undefined) add('s.first_at < ?', clockKey(filter.until, 'until'));
    if (after !== undefined) add(desc ? 's.last_index < ?' : 's.last_index > ?', after);
    const sql = `SELECT ${SESSION_COLUMNS} FROM sessions s WHERE ${where.join(' AND ')} ORDER BY s.last_index ${desc ? 'DESC' : 'ASC'} LIMIT ?`;
    const rows = this.#run(() => this.#query(sql).all(...params, limit + 1) as SessionDbRow[]);
    return pageOf(rows.map(toSession), limit, (s) => encodeCursor('s', s.lastIndex));
  }

  async setDisclosures(tenant: string, index: number, disclosures: string[]): Promise<void> {
    const changed = this.#run(() => this.#s().setDisclosures.run(JSON.stringify(disclosures), tenant, index).changes);
    if (changed === 0) throw new LedgerError('EVENT_NOT_FOUND', `no entry ${index} in the log of ${tenant}`, { field: 'index' });
  }

  async putApiKey(row: ApiKeyRow): Promise<void> {
    this.#run(() => this.#s().putApiKey.run(row.tenant, row.id, row.role, row.name, row.hash, row.createdAt, row.revokedAt ?? null));
  }

  async findApiKey(hash: string): Promise<ApiKeyRow | undefined> {
    return this.#run(() => {
      const r = this.#s().findApiKey.get(hash) as ApiKeyDbRow | undefined;
      return r === undefined ? undefined : toApiKey(r);
    });
  }

  async listApiKeys(tenant?: string): Promise<ApiKeyRow[]> {
    return this.#run(() => {
      const s = this.#s();
      const rows = (tenant === undefined ? s.listAllApiKeys.all() : s.listApiKeys.all(tenant)) as ApiKeyDbRow[];
      return rows.map(toApiKey);
    });
  }

  async revokeApiKey(tenant: string, id: string, at: string): Promise<boolean> {
    return this.#run(() => this.#s().revokeApiKey.run(at, tenant, id).changes > 0);
  }

  /** Runs a synchronous database call, mapping driver errors to StoreError. */
  #run<T>(fn: () => T): T {
    if (this.#closed) throw new StoreError('STORE_UNAVAILABLE', 'the SQLite store is closed');
    try {
      return fn();
    } catch (err) {
      throw toStoreError(err);
    }
  }

  #query(sql: string): Statement {
    let stmt = this.#queries.get(sql);
    if (stmt === undefined) {
      if (this.#queries.size >= QUERY_CACHE) this.#queries.delete(this.#queries.keys().next().value!);
      stmt = this.#db.prepare(sql);
      this.#queries.set(sql, stmt);
    }
    return stmt;
  }

  /** The prepared statements, once the schema is current. */
  #s(): Statements {
    if (this.#statements !== undefined) return this.#statements;
    const version = sqliteSchemaVersion(this.#db);
    if (version !== SQLITE_SCHEMA_VERSION) {
      throw new StoreError(
        'STORE_MIGRATION_FAILED',
        `the database schema is version ${version}, this Custody uses version ${SQLITE_SCHEMA_VERSION}: run migrate()`,
      );
    }
    const db = this.#db;
    const p = (sql: string): Statement => db.prepare(sql);
    this.#statements = {
      headSize: p('SELECT size FROM heads WHERE tenant = ?'),
      insertEntry: p(
        'INSERT INTO entries (tenant, idx, id, type, time, time_key, recorded_at, entry, disclosures, digest, session_id, seq, ' +
          'initiator_id, actor_id, tool_name, decision, cause, trace_id, principals, scope_gap, chain_links) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      insertPostings: p('INSERT INTO principals (tenant, bucket, pid, first_idx, ptype, postings) VALUES (?, ?, ?, ?, ?, ?)'),
      postings: p('SELECT first_idx, postings FROM principals WHERE tenant = ? AND bucket = ? AND pid = ? ORDER BY first_idx'),
      insertNodes: p('INSERT INTO nodes (tenant, level, start, hashes) VALUES (?, ?, ?, ?)'),
      nodesEnd: p(`SELECT start + length(hashes) / ${HASH_SIZE} AS next FROM nodes WHERE tenant = ? AND level = ? ORDER BY start DESC LIMIT 1`),
      // The first entry's identity fields (initiator, agent, parent) stay as first written,
      // so their indexes are not rewritten; the rest is the session's new state.
      upsertSession: p(
        'INSERT INTO sessions (tenant, id, seq, digest, sealed, initiator_id, actor_id, objective, objective_fold, parent, first_at, last_at, ' +
          'first_index, last_index, entries, last_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (tenant, id) DO UPDATE SET seq = excluded.seq, digest = excluded.digest, sealed = excluded.sealed, ' +
          'objective = coalesce(sessions.objective, excluded.objective), objective_fold = coalesce(sessions.objective_fold, excluded.objective_fold), ' +
          'last_at = excluded.last_at, last_index = excluded.last_index, entries = excluded.entries, last_type = excluded.last_type',
      ),
      upsertHead: p(
        'INSERT INTO heads (tenant, size, edge, root) VALUES (?, ?, ?, ?) ' +
          'ON CONFLICT (tenant) DO UPDATE SET size = excluded.size, edge = excluded.edge, root = excluded.root',
      ),
      insertCheckpoint: p('INSERT INTO checkpoints (tenant, size, root, note) VALUES (?, ?, ?, ?)'),
      head: p('SELECT size, edge, root FROM heads WHERE tenant = ?'),
      tenants: p('SELECT tenant FROM heads ORDER BY tenant'),
      session: p(`SELECT ${SESSION_COLUMNS} FROM sessions s WHERE s.tenant = ? AND s.id = ?`),
      findId: p('SELECT idx, seq FROM entries WHERE tenant = ? AND id = ?'),
      entryByIndex: p(`SELECT ${ENTRY_COLUMNS} FROM entries e WHERE e.tenant = ? AND e.idx = ?`),
      entryById: p(`SELECT ${ENTRY_COLUMNS} FROM entries e WHERE e.tenant = ? AND e.id = ?`),
      entryRange: p(`SELECT ${ENTRY_COLUMNS} FROM entries e WHERE e.tenant = ? AND e.idx >= ? AND e.idx < ? ORDER BY e.idx LIMIT ?`),
      // Log order within a session is its seq order (the sequencer assigns both; audit checks it).
      sessionEntries: p(`SELECT ${ENTRY_COLUMNS} FROM entries e WHERE e.tenant = ? AND e.session_id = ? ORDER BY e.idx`),
      nodeRun: p('SELECT start, hashes FROM nodes WHERE tenant = ? AND level = ? AND start <= ? ORDER BY start DESC LIMIT 1'),
      auditEntries: p(
        'SELECT e.idx, e.id, e.type, e.time, e.time_key, e.recorded_at, e.entry, e.disclosures, e.digest, e.session_id, e.seq, e.initiator_id, ' +
          'e.actor_id, e.tool_name, e.decision, e.cause, e.trace_id, e.principals, e.scope_gap, e.chain_links FROM entries e WHERE e.tenant = ? AND e.idx >= ? AND e.idx < ? ORDER BY e.idx',
      ),
      auditPostings: p('SELECT bucket, pid, first_idx, ptype, postings FROM principals WHERE tenant = ? AND bucket = ? ORDER BY pid, first_idx'),
      auditSession: p(`SELECT ${SESSION_COLUMNS}, s.objective_fold FROM sessions s WHERE s.tenant = ? AND s.id = ?`),
      auditSessionRange: p(`SELECT ${SESSION_COLUMNS}, s.objective_fold FROM sessions s INDEXED BY sessions_recent WHERE s.tenant = ? AND s.last_index >= ? AND s.last_index < ? ORDER BY s.last_index`),
      checkpoint: p('SELECT size, root, note FROM checkpoints WHERE tenant = ? AND size = ?'),
      latestCheckpoint: p('SELECT size, root, note FROM checkpoints WHERE tenant = ? ORDER BY size DESC LIMIT 1'),
      putCheckpoint: p('INSERT INTO checkpoints (tenant, size, root, note) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING'),
      checkpointSizes: p('SELECT size FROM checkpoints WHERE tenant = ? ORDER BY size'),
      setDisclosures: p('UPDATE entries SET disclosures = ? WHERE tenant = ? AND idx = ?'),
      getMeta: p('SELECT value FROM meta WHERE key = ?'),
      initMeta: p('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING'),
      putApiKey: p(
        'INSERT INTO api_keys (tenant, id, role, name, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (tenant, id) DO UPDATE SET role = excluded.role, name = excluded.name, hash = excluded.hash, ' +
          'created_at = excluded.created_at, revoked_at = excluded.revoked_at',
      ),
      findApiKey: p('SELECT tenant, id, role, name, hash, created_at, revoked_at FROM api_keys WHERE hash = ?'),
      listApiKeys: p('SELECT tenant, id, role, name, hash, created_at, revoked_at FROM api_keys WHERE tenant = ? ORDER BY created_at, id'),
      listAllApiKeys: p('SELECT tenant, id, role, name, hash, created_at, revoked_at FROM api_keys ORDER BY tenant, created_at, id'),
      revokeApiKey: p('UPDATE api_keys SET revoked_at = ? WHERE tenant = ? AND id = ? AND revoked_at IS NULL'),
    };
    this.#appendTx = db.transaction((batch: SealedBatch, expectedSize: number) => this.#appendBody(batch, expectedSize)).immediate;
    return this.#statements;
  }
}

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

interface CheckpointDbRow {
  size: number;
  root: Uint8Array;
  note: string;
}


interface AuditSessionDbRow extends SessionDbRow {
  objective_fold: string | null;
}


function toCheckpoint(r: CheckpointDbRow | undefined): StoredCheckpoint | undefined {
  return r === undefined ? undefined : { size: r.size, rootHash: bytes(r.root), note: r.note };
}

/** The batch's sessions, one row per id (the last wins). */
function uniqueSessions(rows: readonly SessionRow[]): Iterable<SessionRow> {
  if (rows.length < 2) return rows;
  return new Map(rows.map((r) => [r.id, r])).values();
}

// ---------------------------------------------------------------------------
// Postings and node rows (batch checks, cursors and filters: ../store-shared.ts)
// ---------------------------------------------------------------------------

interface PostingDbRow {
  first_idx: number;
  postings: Uint8Array;
}

/** The hash of node `index` in a run, if the run holds it. */
function hashAt(run: { start: number; hashes: Uint8Array }, index: number): Uint8Array | undefined {
  const at = (index - run.start) * HASH_SIZE;
  if (at < 0 || at + HASH_SIZE > run.hashes.length) return undefined;
  return run.hashes.slice(at, at + HASH_SIZE);
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/**
 * Runs `PRAGMA optimize`, which may write fresh statistics (ANALYZE). It is only
 * an optimisation: on a full disk (or a read-only file) it is skipped, so that the
 * store still opens for reading and auditing, and closes cleanly.
 */
function optimize(db: Database.Database, pragma: string): void {
  try {
    db.pragma(pragma);
  } catch (err) {
    if (!(err instanceof Database.SqliteError && /^SQLITE_(FULL|IOERR|READONLY|BUSY|LOCKED)/.test(err.code))) throw err;
  }
}

function isConstraint(err: unknown): boolean {
  return err instanceof Database.SqliteError && err.code.startsWith('SQLITE_CONSTRAINT');
}

/** Maps a better-sqlite3 error to the StoreError a caller acts on. */
function toStoreError(err: unknown): StoreError | LedgerError {
  if (err instanceof StoreError || err instanceof LedgerError) return err;
  if (err instanceof Database.SqliteError) {
    const code = err.code;
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
      return new StoreError('STORE_BUSY', `the SQLite database is locked by another connection: ${err.message}`, { cause: err });
    }
    if (code.startsWith('SQLITE_FULL') || code.startsWith('SQLITE_IOERR')) {
      return new StoreError('STORE_FULL', `the SQLite database could not write (disk full or I/O error): ${err.message}`, { cause: err });
    }
    if (code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_NOTADB')) {
      return new StoreError('STORE_CORRUPT', `the SQLite database file is damaged: ${err.message}`, { cause: err });
    }
    return new StoreError('STORE_UNAVAILABLE', `SQLite failed: ${err.message}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new StoreError('STORE_UNAVAILABLE', `SQLite failed: ${message}`, { cause: err });
}
