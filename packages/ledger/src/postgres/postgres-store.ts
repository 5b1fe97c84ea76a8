/**
 * `PostgresStore`: the `LedgerStore` on PostgreSQL (`pg`), for several stateless
 * Custody processes appending to one consistent log per tenant. Appenders of a
 * tenant are serialised by a transaction-scoped advisory lock; the head check and
 * every write of a batch happen in that one transaction.
 */
import { type NodeId, nodeKey } from '@custody/core';
import pg from 'pg';

import { LedgerError, StoreError } from '../errors.js';
import type {
  ApiKeyRow,
  AuditEntryRow,
  AuditHeadRow,
  EntryColumns,
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
  pageOf,
  postingsOf,
  principalFilters,
  roleNamesSql,
  sessionColumns,
  splitEdge,
  toApiKey,
  toAuditEntry,
  typeFilter,
} from '../store-shared.js';
import { migratePostgres } from './postgres-migrations.js';
import { PostgresRecords } from './postgres-records.js';
import { PostgresStreams } from './postgres-streams.js';
import { PostgresReports } from './postgres-reports.js';

/** Where the PostgreSQL store keeps its data. */
export interface PostgresStoreConfig {
  /** `postgres://user@host:5432/db`. */
  connectionString: string;
  /** Schema holding every table (created by `migrate`). Default `custody`. */
  schema?: string;
  /** Pool settings (size, timeouts, TLS …); `connectionString` above wins. */
  pool?: pg.PoolConfig;
}

/** Candidate entries checked per round trip by a filtered identity query. */
const CANDIDATE_CHUNK = 500;
/** How many index entries per candidate a narrowing range scan may read before probing wins (see #narrow). */
const NARROW_SCAN_FACTOR = 4;
/** Newest entries a range-only query scans before it turns to the range's index. */
const SCAN_WINDOW = 4096;
const READ_CHUNK = 1000;
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** int8 arrives from pg as a string; every one of ours is a safe integer. */
type Int8 = string | number;

interface CheckpointDbRow {
  size: Int8;
  root: Uint8Array;
  note: string;
}

const ENTRY_COLUMNS =
  'e.tenant, e.idx, e.id, e.type, e.time, e.recorded_at, e.entry, e.disclosures, e.digest, e.session_id, e.seq, e.initiator_id, e.actor_id, e.tool_name, e.decision, e.cause, e.trace_id, e.principals';
const SESSION_COLUMNS =
  's.id, s.seq, s.digest, s.sealed, s.initiator_id, s.actor_id, s.objective, s.parent, s.first_at, s.last_at, s.first_index, s.last_index, s.entries, s.last_type';
const API_KEY_COLUMNS = 'tenant, id, role, name, hash, created_at, revoked_at';

/** The SQL of the store, with the schema name in place. */
function statements(q: string) {
  return {
    head: `SELECT size, edge, root FROM ${q}.heads WHERE tenant = $1`,
    headSize: `SELECT size FROM ${q}.heads WHERE tenant = $1`,
    // One statement writes the whole batch: every table from unnest()ed arrays.
    append: `WITH
  e AS (
    INSERT INTO ${q}.entries (tenant, idx, id, type, time, time_key, recorded_at, entry, disclosures, digest, session_id, seq,
                              initiator_id, actor_id, tool_name, decision, cause, trace_id, principals, scope_gap, chain_links)
    SELECT $1::text, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::text[],
                                   $10::text[], $11::text[], $12::bigint[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                                   $18::text[], $19::text[], $50::smallint[], $51::integer[])),
  p AS (
    INSERT INTO ${q}.principals (tenant, bucket, pid, first_idx, ptype, postings)
    SELECT $1::text, * FROM unnest($20::bigint[], $21::text[], $22::bigint[], $23::text[], $47::bytea[])),
  n AS (
    INSERT INTO ${q}.nodes (tenant, level, start, hashes)
    SELECT $1::text, * FROM unnest($24::smallint[], $25::bigint[], $26::bytea[])),
  s AS (
    INSERT INTO ${q}.sessions AS t (tenant, id, seq, digest, sealed, initiator_id, actor_id, objective, parent, first_at, last_at,
                                    first_index, last_index, entries, last_type)
    SELECT $1::text, * FROM unnest($27::text[], $28::bigint[], $29::text[], $30::boolean[], $31::text[], $32::text[], $33::text[],
                                   $34::text[], $35::text[], $36::text[], $37::bigint[], $38::bigint[], $39::bigint[], $40::text[])
    ON CONFLICT (tenant, id) DO UPDATE SET seq = EXCLUDED.seq, digest = EXCLUDED.digest, sealed = EXCLUDED.sealed,
      objective = coalesce(t.objective, EXCLUDED.objective), last_at = EXCLUDED.last_at, last_index = EXCLUDED.last_index,
      entries = EXCLUDED.entries, last_type = EXCLUDED.last_type),
  h AS (
    INSERT INTO ${q}.heads (tenant, size, edge, root) VALUES ($1::text, $41::bigint, $42::bytea, $43::bytea)
    ON CONFLICT (tenant) DO UPDATE SET size = EXCLUDED.size, edge = EXCLUDED.edge, root = EXCLUDED.root),
  c AS (
    INSERT INTO ${q}.checkpoints (tenant, size, root, note) VALUES ($1::text, $44::bigint, $45::bytea, $46::text))
-- Levels whose new nodes do not start where that level's stored nodes end (the
-- statement's snapshot predates its own inserts); any row means roll back.
SELECT w.level, w.first FROM unnest($48::smallint[], $49::bigint[]) AS w(level, first)
WHERE w.first <> coalesce((SELECT n.start + octet_length(n.hashes) / ${HASH_SIZE} FROM ${q}.nodes n
                           WHERE n.tenant = $1 AND n.level = w.level ORDER BY n.start DESC LIMIT 1), 0)`,
    tenants: `SELECT tenant FROM ${q}.heads ORDER BY tenant`,
    sessions: `SELECT ${SESSION_COLUMNS} FROM ${q}.sessions s WHERE s.tenant = $1 AND s.id = ANY($2::text[])`,
    session: `SELECT ${SESSION_COLUMNS} FROM ${q}.sessions s WHERE s.tenant = $1 AND s.id = $2`,
    findIds: `SELECT id, idx, seq FROM ${q}.entries WHERE tenant = $1 AND id = ANY($2::text[])`,
    postings: `SELECT bucket, pid, first_idx, postings FROM ${q}.principals WHERE tenant = $1 AND bucket = ANY($2::bigint[]) AND pid = ANY($3::text[])
      ORDER BY bucket, first_idx`,
    entryRange: `SELECT ${ENTRY_COLUMNS} FROM ${q}.entries e WHERE e.tenant = $1 AND e.idx >= $2 AND e.idx < $3 ORDER BY e.idx LIMIT $4`,
    entriesAt: `SELECT ${ENTRY_COLUMNS} FROM ${q}.entries e WHERE e.tenant = $1 AND e.idx = ANY($2::bigint[]) ORDER BY e.idx`,
    entryById: `SELECT ${ENTRY_COLUMNS} FROM ${q}.entries e WHERE e.tenant = $1 AND e.id = $2`,
    // Log order within a session is its seq order (the sequencer assigns both; audit checks it).
    sessionEntries: `SELECT ${ENTRY_COLUMNS} FROM ${q}.entries e WHERE e.tenant = $1 AND e.session_id = $2 ORDER BY e.idx`,
    // Per wanted node, its hash sliced out of the run holding it (the last run of its
    // level starting at or before it); hashes are stored uncompressed, so the slice
    // reads only the TOAST chunk it needs.
    nodeHashes: `SELECT w.level, w.idx, substring(r.hashes FROM ((w.idx - r.start) * ${HASH_SIZE} + 1)::integer FOR ${HASH_SIZE}) AS hash
      FROM unnest($2::smallint[], $3::bigint[]) AS w(level, idx)
      CROSS JOIN LATERAL (SELECT n.start, n.hashes FROM ${q}.nodes n WHERE n.tenant = $1 AND n.level = w.level AND n.start <= w.idx
        ORDER BY n.start DESC LIMIT 1) AS r
      WHERE w.idx < r.start + octet_length(r.hashes) / ${HASH_SIZE}`,
    // Where each level's stored nodes end (the next index expected there).
    auditEntries: `SELECT e.idx, e.id, e.type, e.time, e.time_key, e.recorded_at, e.entry, e.disclosures, e.digest, e.session_id, e.seq, e.initiator_id,
      e.actor_id, e.tool_name, e.decision, e.cause, e.trace_id, e.principals, e.scope_gap, e.chain_links FROM ${q}.entries e WHERE e.tenant = $1 AND e.idx >= $2 AND e.idx < $3 ORDER BY e.idx`,
    auditPostings: `SELECT bucket, pid, first_idx, ptype, postings FROM ${q}.principals WHERE tenant = $1 AND bucket = $2 ORDER BY pid, first_idx`,
    auditSessionRange: `SELECT ${SESSION_COLUMNS} FROM ${q}.sessions s WHERE s.tenant = $1 AND s.last_index >= $2 AND s.last_index < $3 ORDER BY s.last_index`,
    checkpoint: `SELECT size, root, note FROM ${q}.checkpoints WHERE tenant = $1 AND size = $2`,
    latestCheckpoint: `SELECT size, root, note FROM ${q}.checkpoints WHERE tenant = $1 ORDER BY size DESC LIMIT 1`,
    putCheckpoint: `INSERT INTO ${q}.checkpoints (tenant, size, root, note) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
    checkpointSizes: `SELECT size FROM ${q}.checkpoints WHERE tenant = $1 ORDER BY size`,
    setDisclosures: `UPDATE ${q}.entries SET disclosures = $3 WHERE tenant = $1 AND idx = $2`,
    getMeta: `SELECT value FROM ${q}.meta WHERE key = $1`,
    initMeta: `INSERT INTO ${q}.meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
    putApiKey: `INSERT INTO ${q}.api_keys (${API_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
      ON CONFLICT (tenant, id) DO UPDATE SET role = EXCLUDED.role, name = EXCLUDED.name, hash = EXCLUDED.hash,
      created_at = EXCLUDED.created_at, revoked_at = EXCLUDED.revoked_at`,
    findApiKey: `SELECT ${API_KEY_COLUMNS} FROM ${q}.api_keys WHERE hash = $1`,
    listApiKeys: `SELECT ${API_KEY_COLUMNS} FROM ${q}.api_keys WHERE tenant = $1 ORDER BY created_at, id`,
    listAllApiKeys: `SELECT ${API_KEY_COLUMNS} FROM ${q}.api_keys ORDER BY tenant, created_at, id`,
    revokeApiKey: `UPDATE ${q}.api_keys SET revoked_at = $3 WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL`,
  };
}

/**
 * The PostgreSQL ledger store. Multi-writer: any number of processes may append
 * to one tenant's log through their own `PostgresStore`; exactly one of two
 * appends from the same head succeeds, the other gets `STORE_HEAD_CONFLICT`.
 * @example
 * const store = new PostgresStore({ connectionString: 'postgres://custody@db/custody' });
 * await store.migrate();
 * const ledger = await Ledger.open({ store, logSeed });
 */
export class PostgresStore implements LedgerStore {
  readonly kind = 'postgres' as const;
  readonly capabilities: StoreCapabilities = Object.freeze({ multiWriter: true });
  /** The schema holding the tables. */
  readonly schema: string;
  /** The report selections (postgres-reports.ts). */
  readonly reports: PostgresReports;
  /** Records management (postgres-records.ts). */
  readonly records: PostgresRecords;
  /** Log streams (postgres-streams.ts). */
  readonly streams: PostgresStreams;
  readonly #pool: pg.Pool;
  readonly #q: string;
  readonly #sql: ReturnType<typeof statements>;
  #closed = false;

  constructor(config: PostgresStoreConfig) {
    const cfg = Object.freeze({ ...config });
    const schema = cfg.schema ?? 'custody';
    if (!SCHEMA_NAME.test(schema)) {
      throw new StoreError('STORE_UNAVAILABLE', `schema must be 1-63 characters of a-z 0-9 _ starting with a letter or _, got ${JSON.stringify(schema)}`);
    }
    this.schema = schema;
    this.#q = `"${schema}"`;
    this.#sql = statements(this.#q);
    this.#pool = new pg.Pool({
      max: 10,
      connectionTimeoutMillis: 10_000,
      // A process that hangs mid-append must not hold a tenant's lock forever.
      idle_in_transaction_session_timeout: 60_000,
      application_name: 'custody',
      ...cfg.pool,
      connectionString: cfg.connectionString,
    });
    // An idle client's error (e.g. the server restarted) must not crash the process;
    // the next query reports STORE_UNAVAILABLE.
    this.#pool.on('error', () => undefined);
    // Nor may a checked-out client's: pg emits 'error' on a client whose connection ends
    // (PostgreSQL restarted or crashed mid-transaction) even while its query rejects, and
    // the pool listens only to idle clients. The query's rejection is what callers see.
    this.#pool.on('connect', (client) => client.on('error', () => undefined));
    this.reports = new PostgresReports(this.#q, <R extends pg.QueryResultRow>(sql: string, params: unknown[]) => this.#query<R>(sql, params));
    this.records = new PostgresRecords(this.#q, <R extends pg.QueryResultRow>(sql: string, params: unknown[]) => this.#query<R>(sql, params));
    this.streams = new PostgresStreams(this.#q, <R extends pg.QueryResultRow>(sql: string, params: unknown[]) => this.#query<R>(sql, params));
  }

  async migrate(): Promise<void> {
    const client = await this.#connect();
    try {
      await migratePostgres(client, this.schema);
      client.release();
    } catch (err) {
      client.release(isConnectionError(err) ? toError(err) : undefined);
      const e = toStoreError(err);
      if (isConnectionError(err) || (e instanceof StoreError && e.code !== 'STORE_UNAVAILABLE')) throw e;
      throw new StoreError('STORE_MIGRATION_FAILED', `migrating the PostgreSQL schema ${this.schema} failed: ${e.message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }

  async getMeta(key: string): Promise<string | undefined> {
    const { rows } = await this.#query<{ value: string }>(this.#sql.getMeta, [key]);
    return rows[0]?.value;
  }

  async initMeta(key: string, value: string): Promise<string> {
    // Two statements: after waiting out a concurrent insert, the second sees the winner's row.
    await this.#query(this.#sql.initMeta, [key, value]);
    const { rows } = await this.#query<{ value: string }>(this.#sql.getMeta, [key]);
    return rows[0]!.value;
  }

  async tenants(): Promise<string[]> {
    return (await this.#query<{ tenant: string }>(this.#sql.tenants, [])).rows.map((r) => r.tenant);
  }

  async head(tenant: string): Promise<LogHead | undefined> {
    const { rows } = await this.#query<{ size: Int8; edge: Uint8Array; root: Uint8Array }>(this.#sql.head, [tenant]);
    const r = rows[0];
    return r === undefined ? undefined : { size: Number(r.size), edge: splitEdge(r.edge), rootHash: bytes(r.root) };
  }

  async sessions(tenant: string, ids: readonly string[]): Promise<Map<string, SessionRow>> {
    const out = new Map<string, SessionRow>();
    if (ids.length === 0) return out;
    for (const r of (await this.#query<SessionDbRow>(this.#sql.sessions, [tenant, [...ids]])).rows) out.set(r.id, toSession(r));
    return out;
  }

  async findIds(tenant: string, ids: readonly string[]): Promise<Map<string, { index: number; seq?: number }>> {
    const out = new Map<string, { index: number; seq?: number }>();
    if (ids.length === 0) return out;
    const { rows } = await this.#query<{ id: string; idx: Int8; seq: Int8 | null }>(this.#sql.findIds, [tenant, [...ids]]);
    for (const r of rows) out.set(r.id, r.seq === null ? { index: Number(r.idx) } : { index: Number(r.idx), seq: Number(r.seq) });
    return out;
  }

  async append(batch: SealedBatch, expectedSize: number): Promise<void> {
    checkBatch(batch, expectedSize);
    const tenant = batch.tenant;
    const params = batch.entries.length > 0 ? appendParams(batch) : undefined;
    const client = await this.#connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      // Serialise this tenant's appenders across every process; released at COMMIT/ROLLBACK.
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${this.schema}/${tenant}`]);
      // A new statement, so a new snapshot: it sees the previous lock holder's commit.
      const { rows } = await client.query<{ size: Int8 }>(this.#sql.headSize, [tenant]);
      const current = rows[0] === undefined ? 0 : Number(rows[0].size);
      if (current !== expectedSize) {
        throw new StoreError('STORE_HEAD_CONFLICT', `the log of ${tenant} has ${current} entries, not the expected ${expectedSize}`);
      }
      if (params !== undefined) {
        const { rows: gaps } = await client.query<{ level: number; first: Int8 }>(this.#sql.append, params.values);
        if (gaps[0] !== undefined) {
          throw new StoreError('STORE_CORRUPT', `the stored tree of ${tenant} does not end where this batch's nodes at level ${gaps[0].level} begin (${String(gaps[0].first)})`);
        }
      }
      await client.query('COMMIT');
    } catch (err) {
      if (isConnectionError(err)) broken = toError(err);
      else await client.query('ROLLBACK').catch((e: unknown) => (broken = toError(e)));
      throw toStoreError(err, 'append');
    } finally {
      client.release(broken);
    }
  }

  async *readEntries(tenant: string, from: number, to: number): AsyncIterable<StoredEntry> {
    for (let next = from; next < to; ) {
      const { rows } = await this.#query<EntryDbRow>(this.#sql.entryRange, [tenant, next, to, READ_CHUNK]);
      if (rows.length === 0) return;
      for (const r of rows) yield toEntry(r);
      next = Number(rows[rows.length - 1]!.idx) + 1;
      if (rows.length < READ_CHUNK) return;
    }
  }

  async getEntries(tenant: string, indexes: readonly number[]): Promise<StoredEntry[]> {
    if (indexes.length === 0) return [];
    return (await this.#query<EntryDbRow>(this.#sql.entriesAt, [tenant, [...new Set(indexes)]])).rows.map(toEntry);
  }

  async getEntryById(tenant: string, id: string): Promise<StoredEntry | undefined> {
    const r = (await this.#query<EntryDbRow>(this.#sql.entryById, [tenant, id])).rows[0];
    return r === undefined ? undefined : toEntry(r);
  }

  async sessionEntries(tenant: string, sessionId: string): Promise<StoredEntry[]> {
    return (await this.#query<EntryDbRow>(this.#sql.sessionEntries, [tenant, sessionId])).rows.map(toEntry);
  }

  async auditEntries(tenant: string, from: number, to: number): Promise<AuditEntryRow[]> {
    return (await this.#query<AuditEntryDbRow>(this.#sql.auditEntries, [tenant, from, to])).rows.map(toAuditEntry);
  }

  async auditPostings(tenant: string, bucket: number): Promise<PostingsRow[]> {
    const { rows } = await this.#query<{ bucket: Int8; pid: string; first_idx: Int8; ptype: string; postings: Uint8Array }>(this.#sql.auditPostings, [tenant, bucket]);
    return rows.map((r) => ({ bucket: Number(r.bucket), id: r.pid, first: Number(r.first_idx), type: r.ptype, postings: bytes(r.postings) }));
  }

  async auditSessions(tenant: string, which: { from: number; to: number } | { ids: readonly string[] }): Promise<SessionColumns[]> {
    if ('ids' in which) {
      if (which.ids.length === 0) return [];
      return (await this.#query<SessionDbRow>(this.#sql.sessions, [tenant, [...which.ids]])).rows.map(sessionColumnsOf);
    }
    return (await this.#query<SessionDbRow>(this.#sql.auditSessionRange, [tenant, which.from, which.to])).rows.map(sessionColumnsOf);
  }

  async auditHead(tenant: string): Promise<AuditHeadRow | undefined> {
    const r = (await this.#query<{ size: Int8; edge: Uint8Array; root: Uint8Array }>(this.#sql.head, [tenant])).rows[0];
    return r === undefined ? undefined : { size: Number(r.size), edge: bytes(r.edge), root: bytes(r.root) };
  }

  async getNodes(tenant: string, ids: readonly NodeId[]): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>();
    if (ids.length === 0) return out;
    const wanted = new Map<string, NodeId>();
    for (const id of ids) wanted.set(nodeKey(id), id);
    const w = [...wanted.values()];
    const { rows } = await this.#query<{ level: number; idx: Int8; hash: Uint8Array }>(this.#sql.nodeHashes, [tenant, w.map((x) => x.level), w.map((x) => x.index)]);
    for (const r of rows) if (r.hash.length === HASH_SIZE) out.set(nodeKey({ level: r.level, index: Number(r.idx) }), bytes(r.hash));
    return out;
  }

  async getCheckpoint(tenant: string, size: number): Promise<StoredCheckpoint | undefined> {
    return toCheckpoint((await this.#query<CheckpointDbRow>(this.#sql.checkpoint, [tenant, size])).rows[0]);
  }

  async latestCheckpoint(tenant: string): Promise<StoredCheckpoint | undefined> {
    return toCheckpoint((await this.#query<CheckpointDbRow>(this.#sql.latestCheckpoint, [tenant])).rows[0]);
  }

  async putCheckpoint(tenant: string, cp: StoredCheckpoint): Promise<void> {
    checkHash(cp.rootHash, 'checkpoint.rootHash');
    await this.#query(this.#sql.putCheckpoint, [tenant, cp.size, cp.rootHash, cp.note]);
  }

  async checkpointSizes(tenant: string): Promise<number[]> {
    return (await this.#query<{ size: Int8 }>(this.#sql.checkpointSizes, [tenant])).rows.map((r) => Number(r.size));
  }

  async queryEntries(tenant: string, filter: EntryFilter, page: PageRequest): Promise<Page<StoredEntry>> {
    const limit = clampLimit(page.limit);
    const desc = page.order !== 'asc';
    const after = page.cursor === undefined ? undefined : decodeCursor(page.cursor, 'e');
    const q = this.#q;
    const dir = desc ? 'DESC' : 'ASC';
    const roles = principalFilters(filter);
    /** The entry filters as SQL over `e`, their values numbered after `params`. */
    const entryWhere = (params: unknown[], t: string): string[] => {
      const v = (value: unknown): string => {
        params.push(value);
        return `$${params.length}`;
      };
      const where: string[] = [];
      if (filter.session !== undefined) where.push(`e.session_id = ${v(filter.session)}`);
      if (filter.traceId !== undefined) where.push(`e.trace_id = ${v(filter.traceId)}`);
      if (filter.tool !== undefined) where.push(`e.tool_name = ${v(filter.tool)}`);
      if (filter.decision !== undefined) where.push(`e.decision = ${v(filter.decision)}`);
      if (filter.type !== undefined) {
        const tf = typeFilter(filter.type);
        where.push(tf.exact !== undefined ? `e.type = ${v(tf.exact)}` : `e.type >= ${v(tf.from)} AND e.type < ${v(tf.to)}`);
      }
      if (filter.since !== undefined) where.push(`e.time_key >= ${v(filterTimeKey(filter.since, 'since'))}`);
      if (filter.until !== undefined) where.push(`e.time_key < ${v(filterTimeKey(filter.until, 'until'))}`);
      if (filter.objective !== undefined) {
        where.push(`e.session_id IN (SELECT s.id FROM ${q}.sessions s WHERE s.tenant = ${t} AND strpos(lower(s.objective), ${v(filter.objective.toLowerCase())}) > 0)`);
      }
      return where;
    };
    // A session or trace is small: scan it and check identities in the entry's own
    // principals. Otherwise identity filters drive the query through the postings.
    if (roles.length === 0 || filter.session !== undefined || filter.traceId !== undefined) {
      const params: unknown[] = [tenant];
      const where = entryWhere(params, '$1');
      const v = (value: unknown): string => {
        params.push(value);
        return `$${params.length}`;
      };
      for (const r of roles) {
        where.push(`EXISTS (SELECT 1 FROM jsonb_array_elements(e.principals::jsonb) j WHERE j ->> 2 = ${v(r.id)}${roleNamesSql('j ->> 0', r.mask)})`);
      }
      const equality =
        filter.session !== undefined || filter.traceId !== undefined || filter.tool !== undefined || filter.decision !== undefined || (filter.type !== undefined && !filter.type.endsWith('.*'));
      if (equality || where.length === 0) {
        if (after !== undefined) where.push(`e.idx ${desc ? '<' : '>'} ${v(after)}`);
        const cond = where.length > 0 ? ` AND ${where.join(' AND ')}` : '';
        const sql = `SELECT ${ENTRY_COLUMNS} FROM ${q}.entries e WHERE e.tenant = $1${cond} ORDER BY e.idx ${dir} LIMIT ${v(limit + 1)}`;
        const { rows } = await this.#query<EntryDbRow>(sql, params);
        return pageOf(rows.map(toEntry), limit, (e) => encodeCursor('e', e.index));
      }
      // Only ranges (time, type family, objective). Matches are usually dense among
      // recent entries: scan a bounded window next to the cursor first. If the page
      // is not full, take the remaining matches' indexes in one sort (ORDER BY idx + 0,
      // so the planner uses the range's index instead of walking the whole log in
      // idx order hoping to meet them), then fetch those entries.
      const cond = ` AND ${where.join(' AND ')}`;
      const head = (await this.#query<{ size: Int8 }>(this.#sql.headSize, [tenant])).rows[0];
      const size = head === undefined ? 0 : Number(head.size);
      const edge = after ?? (desc ? size : -1);
      let [lo, hi] = desc ? [Math.max(0, edge - SCAN_WINDOW), edge] : [edge + 1, edge + 1 + SCAN_WINDOW];
      const n = params.length;
      const scan = `SELECT ${ENTRY_COLUMNS} FROM ${q}.entries e WHERE e.tenant = $1 AND e.idx >= $${n + 1} AND e.idx < $${n + 2}${cond} ORDER BY e.idx ${dir} LIMIT $${n + 3}`;
      // The window costs as much as the sort below when it misses (the planner walks
      // the time range's index for it). When the time range ends before, or starts
      // after, both ends of the window, it almost surely misses: the window is then
      // left empty, and the sort covers it too (a plan choice only: the page is the same).
      if (lo < hi && (await this.#timeOutside(tenant, [lo, Math.min(hi, size) - 1], filter))) {
        if (desc) lo = hi;
        else hi = lo;
      }
      const rows = lo < hi ? (await this.#query<EntryDbRow>(scan, [...params, lo, hi, limit + 1])).rows : [];
      if (rows.length <= limit && (desc ? lo > 0 : hi < size)) {
        const rest = `SELECT e.idx FROM ${q}.entries e WHERE e.tenant = $1${cond} AND e.idx ${desc ? '<' : '>='} $${n + 1} ORDER BY e.idx + 0 ${dir} LIMIT $${n + 2}`;
        const more = (await this.#query<{ idx: Int8 }>(rest, [...params, desc ? lo : hi, limit + 1 - rows.length])).rows.map((r) => Number(r.idx));
        if (more.length > 0) {
          const fetch = `SELECT ${ENTRY_COLUMNS} FROM unnest($2::bigint[]) AS c(idx) JOIN ${q}.entries e ON e.tenant = $1 AND e.idx = c.idx ORDER BY e.idx ${dir}`;
          for (const r of (await this.#query<EntryDbRow>(fetch, [tenant, more])).rows) rows.push(r);
        }
      }
      return pageOf(rows.map(toEntry), limit, (e) => encodeCursor('e', e.index));
    }
    // Walk the buckets in log order, a growing window of buckets per round trip
    // (1, 4, 16, 64, 256 …): the candidates of a bucket are the entries in every
    // named principal's postings (with a matching role); the entry filters then run
    // on those candidates only, until the page is full.
    const params: unknown[] = [tenant, null];
    const where = entryWhere(params, '$1');
    const filtered = where.length > 0;
    params.push(null);
    const sql =
      `SELECT ${ENTRY_COLUMNS} FROM unnest($2::bigint[]) AS c(idx) JOIN ${q}.entries e ON e.tenant = $1 AND e.idx = c.idx` +
      `${filtered ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY e.idx ${dir} LIMIT $${params.length}`;
    // Column names are constants of this file; the values are parameters.
    const narrow: [string, string][] = [];
    if (filter.tool !== undefined) narrow.push(['tool_name', filter.tool]);
    if (filter.decision !== undefined) narrow.push(['decision', filter.decision]);
    if (filter.type !== undefined && !filter.type.endsWith('.*')) narrow.push(['type', filter.type]);
    // LATERAL … LIMIT 1 keeps a probe per candidate on the (tenant, value, idx) index
    // (index-only); as EXISTS the planner probed the primary key and read every row.
    // `probe(k)` checks the filters from the k-th on (after a scan settled the first).
    const probe = (from: number): string =>
      `SELECT c.idx FROM unnest($2::bigint[]) AS c(idx)` +
      narrow
        .slice(from)
        .map(([col], i) => ` CROSS JOIN LATERAL (SELECT 1 FROM ${q}.entries t WHERE t.tenant = $1 AND t.${col} = $${i + 3} AND t.idx = c.idx LIMIT 1) AS n${i}`)
        .join('');
    const head = (await this.#query<{ size: Int8 }>(this.#sql.headSize, [tenant])).rows[0];
    const size = head === undefined ? 0 : Number(head.size);
    const rows: EntryDbRow[] = [];
    if (size > 0) {
      const last = Math.floor((size - 1) / BUCKET);
      const ids = [...new Set(roles.map((r) => r.id))];
      let b = after === undefined ? (desc ? last : 0) : Math.min(last, Math.floor(after / BUCKET));
      let walked = 0; // buckets walked, and the candidates they held (the density for the next round's scan)
      let seen = 0;
      for (let window = 1; b >= 0 && b <= last && rows.length <= limit; window = Math.min(window * 4, 256)) {
        const buckets: number[] = [];
        for (; buckets.length < window && b >= 0 && b <= last; b += desc ? -1 : 1) buckets.push(b);
        // With a density from earlier rounds, the narrowing scan of these buckets runs
        // alongside the postings read (its cap from that density) instead of after it.
        const [first, final] = [Math.min(buckets[0]!, buckets[buckets.length - 1]!), Math.max(buckets[0]!, buckets[buckets.length - 1]!)];
        const scanned = narrow.length > 0 && walked > 0 ? this.#narrowScan(tenant, narrow[0]!, first * BUCKET, (final + 1) * BUCKET - 1, Math.max(1024, Math.ceil((NARROW_SCAN_FACTOR * seen * buckets.length) / walked))) : undefined;
        scanned?.catch(() => undefined);
        const found = (await this.#query<PostingDbRow>(this.#sql.postings, [tenant, buckets, ids])).rows;
        const byKey = new Map<string, PostingDbRow[]>();
        for (const r of found) {
          const key = `${Number(r.bucket)}\u0000${r.pid}`;
          const list = byKey.get(key);
          if (list === undefined) byKey.set(key, [r]);
          else list.push(r);
        }
        let list: number[] = [];
        for (const bucket of buckets) {
          let candidates: number[] | undefined;
          for (const r of roles) {
            const hits = decodePostings(byKey.get(`${bucket}\u0000${r.id}`) ?? [], r.mask);
            if (candidates === undefined) candidates = hits;
            else {
              const keep = new Set(hits);
              candidates = candidates.filter((i) => keep.has(i));
            }
            if (candidates.length === 0) break;
          }
          const inBucket = (candidates ?? []).filter((i) => after === undefined || (desc ? i < after : i > after));
          if (desc) inBucket.reverse();
          list = list.concat(inBucket);
        }
        // Equality filters narrow the candidates through their (tenant, value, idx)
        // index (a range scan or a probe per candidate, #narrow), so non-matching
        // entries are never read.
        walked += buckets.length;
        seen += list.length;
        if (narrow.length > 0 && list.length > 0) list = await this.#narrow(tenant, list, narrow, probe, scanned);
        else await scanned;
        // Without entry filters every candidate matches: fetch just what the page needs.
        // With them, check growing chunks of candidates (fewer round trips when matches are rare).
        for (let at = 0, chunkSize = CANDIDATE_CHUNK; at < list.length && rows.length <= limit; chunkSize = Math.min(chunkSize * 2, 16 * CANDIDATE_CHUNK)) {
          const need = limit + 1 - rows.length;
          const chunk = list.slice(at, at + (filtered ? Math.max(need, chunkSize) : need));
          at += chunk.length;
          params[1] = chunk;
          params[params.length - 1] = need;
          for (const r of (await this.#query<EntryDbRow>(sql, params)).rows) rows.push(r);
        }
      }
    }
    return pageOf(rows.map(toEntry), limit, (e) => encodeCursor('e', e.index));
  }

  /** Whether the entries at these indexes all fall outside the filter's time range (false without one). */
  async #timeOutside(tenant: string, at: number[], filter: EntryFilter): Promise<boolean> {
    if (filter.since === undefined && filter.until === undefined) return false;
    const since = filter.since === undefined ? undefined : filterTimeKey(filter.since, 'since');
    const until = filter.until === undefined ? undefined : filterTimeKey(filter.until, 'until');
    const { rows } = await this.#query<{ time_key: string }>(`SELECT time_key FROM ${this.#q}.entries WHERE tenant = $1 AND idx = ANY($2::bigint[])`, [tenant, at]);
    if (rows.length < at.length) return false;
    const keys = rows.map((r) => r.time_key);
    return keys.every((k) => until !== undefined && k >= until) || keys.every((k) => since !== undefined && k < since);
  }

  /**
   * Keeps the candidates that match every equality filter. When the first filter's
   * value is rare within the candidates' span, one index-only range scan of its
   * (tenant, value, idx) index returns its indexes there, intersected here: much
   * cheaper than a probe per candidate (at 1M entries, 3,000 candidates took 15 ms
   * to probe and 5 ms to scan). A dense value stops the scan at its cap, and the
   * candidates are probed one by one instead, so neither path reads more than a few
   * times the candidates. `scanned` is that scan when the caller started it already.
   */
  async #narrow(tenant: string, list: number[], narrow: [string, string][], probe: (from: number) => string, scanned?: Promise<number[] | undefined>): Promise<number[]> {
    const lo = Math.min(list[0]!, list[list.length - 1]!);
    const hi = Math.max(list[0]!, list[list.length - 1]!);
    const hits = await (scanned ?? this.#narrowScan(tenant, narrow[0]!, lo, hi, NARROW_SCAN_FACTOR * list.length));
    let from = 0;
    if (hits !== undefined) {
      const keep = new Set(hits);
      list = list.filter((i) => keep.has(i));
      if (narrow.length === 1 || list.length === 0) return list;
      from = 1;
    }
    const { rows: kept } = await this.#query<{ idx: Int8 }>(probe(from), [tenant, list, ...narrow.slice(from).map(([, v]) => v)]);
    const keep = new Set(kept.map((k) => Number(k.idx)));
    return list.filter((i) => keep.has(i));
  }

  /** The indexes in [lo, hi] whose `col` is `value`, or undefined when there are more than `cap`. */
  async #narrowScan(tenant: string, [col, value]: [string, string], lo: number, hi: number, cap: number): Promise<number[] | undefined> {
    // One array, not a row per index: thousands of rows cost more to send and parse than the scan.
    const { rows } = await this.#query<{ hits: string[] | null }>(
      `SELECT array_agg(t.idx) AS hits FROM (SELECT t.idx FROM ${this.#q}.entries t WHERE t.tenant = $1 AND t.${col} = $2 AND t.idx >= $3 AND t.idx <= $4 LIMIT $5) t`,
      [tenant, value, lo, hi, cap + 1],
    );
    const hits = rows[0]?.hits ?? [];
    return hits.length > cap ? undefined : hits.map(Number);
  }

  async getSession(tenant: string, id: string): Promise<SessionRow | undefined> {
    const r = (await this.#query<SessionDbRow>(this.#sql.session, [tenant, id])).rows[0];
    return r === undefined ? undefined : toSession(r);
  }

  async listSessions(tenant: string, filter: SessionFilter, page: PageRequest): Promise<Page<SessionRow>> {
    const limit = clampLimit(page.limit);
    const desc = page.order !== 'asc';
    const after = page.cursor === undefined ? undefined : decodeCursor(page.cursor, 's');
    const params: unknown[] = [];
    const v = (value: unknown): string => {
      params.push(value);
      return `$${params.length}`;
    };
    const where = [`s.tenant = ${v(tenant)}`];
    if (filter.initiator !== undefined) where.push(`s.initiator_id = ${v(filter.initiator)}`);
    if (filter.agent !== undefined) where.push(`s.actor_id = ${v(filter.agent)}`);
    if (filter.objective !== undefined) where.push(`strpos(lower(s.objective), ${v(filter.objective.toLowerCase())}) > 0`);
    if (filter.sealed !== undefined) where.push(`s.sealed = ${v(filter.sealed)}`);
    if (filter.since !== undefined) where.push(`s.last_at >= ${v(clockKey(filter.since, 'since'))}`);
    if (filter.until !== undefined) where.push(`s.first_at < ${v(clockKey(filter.until, 'until'))}`);
    if (after !== undefined) where.push(`s.last_index ${desc ? '<' : '>'} ${v(after)}`);
    const sql = `SELECT ${SESSION_COLUMNS} FROM ${this.#q}.sessions s WHERE ${where.join(' AND ')} ORDER BY s.last_index ${desc ? 'DESC' : 'ASC'} LIMIT ${v(limit + 1)}`;
    const { rows } = await this.#query<SessionDbRow>(sql, params);
    return pageOf(rows.map(toSession), limit, (s) => encodeCursor('s', s.lastIndex));
  }

  async setDisclosures(tenant: string, index: number, disclosures: string[]): Promise<void> {
    const res = await this.#query(this.#sql.setDisclosures, [tenant, index, JSON.stringify(disclosures)]);
    if (res.rowCount === 0) throw new LedgerError('EVENT_NOT_FOUND', `no entry ${index} in the log of ${tenant}`, { field: 'index' });
  }

  async putApiKey(row: ApiKeyRow): Promise<void> {
    await this.#query(this.#sql.putApiKey, [row.tenant, row.id, row.role, row.name, row.hash, row.createdAt, row.revokedAt ?? null]);
  }

  async findApiKey(hash: string): Promise<ApiKeyRow | undefined> {
    const r = (await this.#query<ApiKeyDbRow>(this.#sql.findApiKey, [hash])).rows[0];
    return r === undefined ? undefined : toApiKey(r);
  }

  async listApiKeys(tenant?: string): Promise<ApiKeyRow[]> {
    const res =
      tenant === undefined ? await this.#query<ApiKeyDbRow>(this.#sql.listAllApiKeys, []) : await this.#query<ApiKeyDbRow>(this.#sql.listApiKeys, [tenant]);
    return res.rows.map(toApiKey);
  }

  async revokeApiKey(tenant: string, id: string, at: string): Promise<boolean> {
    return ((await this.#query(this.#sql.revokeApiKey, [tenant, id, at])).rowCount ?? 0) > 0;
  }

  async #connect(): Promise<pg.PoolClient> {
    if (this.#closed) throw new StoreError('STORE_UNAVAILABLE', 'the PostgreSQL store is closed');
    try {
      return await this.#pool.connect();
    } catch (err) {
      throw toStoreError(err);
    }
  }

  async #query<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    if (this.#closed) throw new StoreError('STORE_UNAVAILABLE', 'the PostgreSQL store is closed');
    try {
      return await this.#pool.query<R>(sql, params);
    } catch (err) {
      throw toStoreError(err);
    }
  }
}

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

/** The parameters of the append statement: one array per column. */
function appendParams(batch: SealedBatch): { values: unknown[] } {
  const es = batch.entries;
  const cs = es.map(entryColumns);
  const col = <T>(f: (e: EntryColumns) => T): T[] => cs.map(f);
  const postings = postingsOf(es);
  const runs = nodeRuns(batch.nodes);
  // The first run of each level (runs come ordered by level, then index).
  const firstRun = new Map<number, number>();
  for (const r of runs) if (!firstRun.has(r.level)) firstRun.set(r.level, r.start);
  const ss = [...new Map(batch.sessions.map((r) => [r.id, r])).values()].map(sessionColumns);
  const scol = <T>(f: (s: SessionColumns) => T): T[] => ss.map(f);
  return {
    values: [
      batch.tenant,
      col((e) => e.index),
      col((e) => e.id),
      col((e) => e.type),
      col((e) => e.time),
      col((e) => e.timeKey),
      col((e) => e.recordedAt),
      es.map((e) => e.entry),
      col((e) => e.disclosures),
      col((e) => e.digest),
      col((e) => e.sessionId),
      col((e) => e.seq),
      col((e) => e.initiatorId),
      col((e) => e.actorId),
      col((e) => e.toolName),
      col((e) => e.decision),
      col((e) => e.cause),
      col((e) => e.traceId),
      col((e) => e.principals),
      postings.map((p) => p.bucket),
      postings.map((p) => p.id),
      postings.map((p) => p.first),
      postings.map((p) => p.type),
      runs.map((r) => r.level),
      runs.map((r) => r.start),
      runs.map((r) => r.hashes),
      scol((s) => s.id),
      scol((s) => s.seq),
      scol((s) => s.digest),
      scol((s) => s.sealed),
      scol((s) => s.initiatorId),
      scol((s) => s.actorId),
      scol((s) => s.objective),
      scol((s) => s.parent),
      scol((s) => s.firstAt),
      scol((s) => s.lastAt),
      scol((s) => s.firstIndex),
      scol((s) => s.lastIndex),
      scol((s) => s.entries),
      scol((s) => s.lastType),
      batch.head.size,
      joinEdge(batch.head.edge),
      batch.head.rootHash,
      batch.checkpoint.size,
      batch.checkpoint.rootHash,
      batch.checkpoint.note,
      postings.map((p) => p.postings),
      [...firstRun.keys()],
      [...firstRun.values()],
      col((e) => e.scopeGap),
      col((e) => e.chainLinks),
    ],
  };
}



function toCheckpoint(r: CheckpointDbRow | undefined): StoredCheckpoint | undefined {
  return r === undefined ? undefined : { size: Number(r.size), rootHash: bytes(r.root), note: r.note };
}

// ---------------------------------------------------------------------------
// Postings rows (batch checks, tree-node rows, cursors and filters: ../store-shared.ts)
// ---------------------------------------------------------------------------

interface PostingDbRow {
  bucket: Int8;
  pid: string;
  first_idx: Int8;
  postings: Uint8Array;
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'EAI_AGAIN']);
const CONNECTION_MESSAGES = /timeout exceeded when trying to connect|Connection terminated|connection error|not queryable|Client was closed|connection is closed/i;

function codeOf(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** True for errors after which the connection cannot be reused. */
function isConnectionError(err: unknown): boolean {
  const code = codeOf(err);
  if (code !== undefined && (CONNECTION_CODES.has(code) || code.startsWith('08') || code.startsWith('57P'))) return true;
  return err instanceof Error && !(err instanceof StoreError) && !(err instanceof LedgerError) && code === undefined && CONNECTION_MESSAGES.test(err.message);
}

/** Maps a pg error to the StoreError a caller acts on. */
function toStoreError(err: unknown, during?: 'append'): StoreError | LedgerError {
  if (err instanceof StoreError || err instanceof LedgerError) return err;
  const code = codeOf(err);
  const message = err instanceof Error ? err.message : String(err);
  if (isConnectionError(err)) return new StoreError('STORE_UNAVAILABLE', `PostgreSQL is unreachable: ${message}`, { cause: err });
  if (code !== undefined) {
    if (code === '23505' && during === 'append') {
      const constraint = (err as { constraint?: unknown }).constraint;
      if (constraint === 'entries_pkey' || constraint === 'entries_id') {
        return new StoreError('STORE_HEAD_CONFLICT', `an entry of this batch is already in the log (same event id or index)`, { cause: err });
      }
      return new StoreError('STORE_CORRUPT', `the stored tree already has a node or checkpoint beyond its head (${String(constraint)})`, { cause: err });
    }
    if (code.startsWith('53')) return new StoreError('STORE_FULL', `PostgreSQL is out of resources (${code}): ${message}`, { cause: err });
    if (code === '40001' || code === '40P01' || code === '55P03' || code === '57014') {
      return new StoreError('STORE_BUSY', `PostgreSQL is busy (${code}): ${message}`, { cause: err });
    }
    if (code === '42P01' || code === '3F000') {
      return new StoreError('STORE_MIGRATION_FAILED', `the schema is missing or not migrated (${message}): run migrate()`, { cause: err });
    }
    if (code.startsWith('28') || code === '3D000') return new StoreError('STORE_UNAVAILABLE', `PostgreSQL refused the connection: ${message}`, { cause: err });
  }
  return new StoreError('STORE_UNAVAILABLE', `PostgreSQL failed: ${message}`, { cause: err });
}
