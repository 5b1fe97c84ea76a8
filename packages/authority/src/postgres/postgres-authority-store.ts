/**
 * `PostgresAuthorityStore`: the authority's tables in the ledger's PostgreSQL
 * schema. Every node reads and writes the same rows, so a revocation on one
 * node is what introspection on every node sees at once.
 */
import type { EventDraft } from '@custody/core';
import pg from 'pg';

import {
  type AuthorityStore,
  type CredentialRecord,
  credentialFromRow,
  decodeListCursor,
  type EndChange,
  type Ended,
  encodeListCursor,
  type OutboxEvent,
  type SessionListFilter,
  type SessionRecord,
  sessionDocument,
  sessionFromRow,
} from '../authority-store.js';
import { AuthorityError } from '../errors.js';

/** Where the PostgreSQL authority store keeps its tables. */
export interface PostgresAuthorityStoreConfig {
  connectionString: string;
  /** The schema (the ledger's; default `custody`). */
  schema?: string;
  /** Pool size. Default 4. */
  max?: number;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const SESSION_COLUMNS = 'tenant, id, parent_id, root_id, depth, doc, created_at, expires_at, status, ended_at, ended_by, end_reason';

type Row = Parameters<typeof sessionFromRow>[0];
type CredRow = Parameters<typeof credentialFromRow>[0];

/**
 * The authority store on PostgreSQL.
 * @example
 * const store = new PostgresAuthorityStore({ connectionString: 'postgres://custody@db/custody' });
 * await store.migrate();
 */
export class PostgresAuthorityStore implements AuthorityStore {
  readonly kind = 'postgres' as const;
  readonly #pool: pg.Pool;
  readonly #s: string;
  readonly #schema: string;

  constructor(config: PostgresAuthorityStoreConfig) {
    const schema = config.schema ?? 'custody';
    if (!SCHEMA_NAME.test(schema)) throw new AuthorityError('AUTHORITY_CONFIG_INVALID', `schema must be 1-63 characters of a-z 0-9 _, got ${JSON.stringify(schema)}`);
    this.#schema = schema;
    this.#s = `"${schema}"`;
    this.#pool = new pg.Pool({ connectionString: config.connectionString, max: config.max ?? 4 });
    this.#pool.on('error', () => undefined);
    // A checked-out client whose connection ends (PostgreSQL restarted) emits 'error' too:
    // without a listener that would crash the process; its query rejects instead.
    this.#pool.on('connect', (client) => client.on('error', () => undefined));
  }

  async #tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.#pool.connect();
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  async migrate(): Promise<void> {
    const s = this.#s;
    await this.#tx(async (c) => {
      // Several nodes may start at once: one creates, the others wait.
      await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${this.#schema}/authority-migrate`]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${s}.authority_signing_keys (kid TEXT PRIMARY KEY, jwk TEXT NOT NULL, created_at TEXT NOT NULL)`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${s}.authority_sessions (
        tenant TEXT NOT NULL, id TEXT NOT NULL, parent_id TEXT, root_id TEXT NOT NULL, depth INTEGER NOT NULL,
        initiator_id TEXT NOT NULL, agent_id TEXT NOT NULL, doc TEXT NOT NULL,
        created_at TEXT NOT NULL, expires_at TEXT NOT NULL, expires_ms BIGINT NOT NULL,
        status TEXT NOT NULL, ended_at TEXT, ended_by TEXT, end_reason TEXT,
        PRIMARY KEY (tenant, id))`);
      await c.query(`CREATE INDEX IF NOT EXISTS authority_sessions_parent ON ${s}.authority_sessions (tenant, parent_id)`);
      await c.query(`CREATE INDEX IF NOT EXISTS authority_sessions_due ON ${s}.authority_sessions (status, expires_ms)`);
      await c.query(`CREATE INDEX IF NOT EXISTS authority_sessions_recent ON ${s}.authority_sessions (tenant, created_at, id)`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${s}.authority_credentials (
        jti TEXT PRIMARY KEY, tenant TEXT NOT NULL, session_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
        issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, status TEXT NOT NULL, ended_at TEXT)`);
      await c.query(`CREATE INDEX IF NOT EXISTS authority_credentials_session ON ${s}.authority_credentials (tenant, session_id)`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${s}.authority_outbox (
        id BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, draft TEXT NOT NULL, created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, lease_ms BIGINT NOT NULL DEFAULT 0, failed TEXT)`);
    });
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }

  async putSigningKey(kid: string, jwk: Record<string, unknown>, at: string): Promise<void> {
    await this.#pool.query(`INSERT INTO ${this.#s}.authority_signing_keys (kid, jwk, created_at) VALUES ($1, $2, $3) ON CONFLICT (kid) DO NOTHING`, [kid, JSON.stringify(jwk), at]);
  }

  async signingKeys(): Promise<Record<string, unknown>[]> {
    const res = await this.#pool.query<{ jwk: string }>(`SELECT jwk FROM ${this.#s}.authority_signing_keys ORDER BY created_at, kid`);
    return res.rows.map((r) => JSON.parse(r.jwk) as Record<string, unknown>);
  }

  async createSession(s: SessionRecord, c: CredentialRecord): Promise<boolean> {
    return this.#tx(async (client) => {
      if (s.parent !== undefined) {
        // The tree's lock (its root row), then the parent's status read by a new
        // statement: under READ COMMITTED that sees any revocation that held the lock before.
        await this.#lockTree(client, s.tenant, s.root);
        const parent = await client.query<{ status: string }>(`SELECT status FROM ${this.#s}.authority_sessions WHERE tenant = $1 AND id = $2`, [s.tenant, s.parent]);
        if (parent.rows[0]?.status !== 'active') return false;
      }
      await client.query(
        `INSERT INTO ${this.#s}.authority_sessions (tenant, id, parent_id, root_id, depth, initiator_id, agent_id, doc, created_at, expires_at, expires_ms, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
        [s.tenant, s.id, s.parent ?? null, s.root, s.depth, s.initiator.id, s.agent.id, sessionDocument(s), s.createdAt, s.expiresAt, Date.parse(s.expiresAt), s.status],
      );
      await client.query(`INSERT INTO ${this.#s}.authority_credentials (jti, tenant, session_id, fingerprint, issued_at, expires_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
        c.jti,
        c.tenant,
        c.sessionId,
        c.fingerprint,
        c.issuedAt,
        c.expiresAt,
        c.status,
      ]);
      return true;
    });
  }

  /** Serialises delegation into, and ending of, one session tree: a row lock on its root. */
  async #lockTree(c: pg.PoolClient, tenant: string, root: string): Promise<void> {
    await c.query(`SELECT 1 FROM ${this.#s}.authority_sessions WHERE tenant = $1 AND id = $2 FOR UPDATE`, [tenant, root]);
  }

  async getSession(tenant: string, id: string): Promise<SessionRecord | undefined> {
    const res = await this.#pool.query<Row>(`SELECT ${SESSION_COLUMNS} FROM ${this.#s}.authority_sessions WHERE tenant = $1 AND id = $2`, [tenant, id]);
    return res.rows[0] === undefined ? undefined : sessionFromRow(res.rows[0]);
  }

  async listSessions(tenant: string, filter: SessionListFilter, limit: number, cursor?: string): Promise<{ sessions: SessionRecord[]; nextCursor?: string }> {
    const args: unknown[] = [tenant];
    const where = ['tenant = $1'];
    const add = (sql: string, v: unknown) => {
      args.push(v);
      where.push(sql.replace('?', `$${args.length}`));
    };
    if (filter.status !== undefined) add('status = ?', filter.status);
    if (filter.initiator !== undefined) add('initiator_id = ?', filter.initiator);
    if (filter.agent !== undefined) add('agent_id = ?', filter.agent);
    if (filter.root !== undefined) add('root_id = ?', filter.root);
    if (cursor !== undefined) {
      const c = decodeListCursor(cursor);
      if (c === undefined) throw new AuthorityError('EXCHANGE_INVALID', 'cursor is not one this listing returned', { field: 'cursor' });
      args.push(c[0], c[1]);
      where.push(`(created_at, id) < ($${args.length - 1}, $${args.length})`);
    }
    args.push(limit + 1);
    const res = await this.#pool.query<Row>(
      `SELECT ${SESSION_COLUMNS} FROM ${this.#s}.authority_sessions WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT $${args.length}`,
      args,
    );
    const sessions = res.rows.slice(0, limit).map(sessionFromRow);
    const last = sessions[sessions.length - 1];
    return { sessions, ...(res.rows.length > limit && last !== undefined ? { nextCursor: encodeListCursor(last.createdAt, last.id) } : {}) };
  }

  async subtree(tenant: string, id: string): Promise<SessionRecord[]> {
    return this.#subtree(this.#pool, tenant, id);
  }

  async #subtree(c: pg.Pool | pg.PoolClient, tenant: string, id: string): Promise<SessionRecord[]> {
    const res = await c.query<Row>(
      `WITH RECURSIVE t(id) AS (SELECT id FROM ${this.#s}.authority_sessions WHERE tenant = $1 AND id = $2
         UNION SELECT s.id FROM ${this.#s}.authority_sessions s JOIN t ON s.parent_id = t.id WHERE s.tenant = $1)
       SELECT ${SESSION_COLUMNS} FROM ${this.#s}.authority_sessions WHERE tenant = $1 AND id IN (SELECT id FROM t) ORDER BY depth, created_at, id`,
      [tenant, id],
    );
    return res.rows.map(sessionFromRow);
  }

  async getCredential(jti: string): Promise<CredentialRecord | undefined> {
    const res = await this.#pool.query<CredRow>(`SELECT * FROM ${this.#s}.authority_credentials WHERE jti = $1`, [jti]);
    return res.rows[0] === undefined ? undefined : credentialFromRow(res.rows[0]);
  }

  async credentialsOf(tenant: string, sessionId: string): Promise<CredentialRecord[]> {
    const res = await this.#pool.query<CredRow>(`SELECT * FROM ${this.#s}.authority_credentials WHERE tenant = $1 AND session_id = $2 ORDER BY issued_at, jti`, [tenant, sessionId]);
    return res.rows.map(credentialFromRow);
  }

  async #end(c: pg.PoolClient, tenant: string, ids: readonly string[], change: EndChange): Promise<Ended> {
    const sessions: SessionRecord[] = [];
    const credentials: CredentialRecord[] = [];
    const credStatus = change.status === 'expired' ? 'expired' : 'revoked';
    for (const id of ids) {
      // Only an active session changes: of several nodes, exactly one ends it and records it.
      const res = await c.query<Row>(
        `UPDATE ${this.#s}.authority_sessions SET status = $1, ended_at = $2, ended_by = $3, end_reason = $4 WHERE tenant = $5 AND id = $6 AND status = 'active' RETURNING ${SESSION_COLUMNS}`,
        [change.status, change.at, change.by, change.reason, tenant, id],
      );
      if (res.rows[0] === undefined) continue;
      sessions.push(sessionFromRow(res.rows[0]));
      const creds = await c.query<CredRow>(
        `UPDATE ${this.#s}.authority_credentials SET status = $1, ended_at = $2 WHERE tenant = $3 AND session_id = $4 AND status = 'active' RETURNING *`,
        [credStatus, change.at, tenant, id],
      );
      credentials.push(...creds.rows.map(credentialFromRow));
    }
    return { sessions, credentials };
  }

  async #enqueue(c: pg.PoolClient | pg.Pool, tenant: string, drafts: readonly EventDraft[]): Promise<number[]> {
    const ids: number[] = [];
    const at = new Date().toISOString();
    for (const d of drafts) {
      const res = await c.query<{ id: string }>(`INSERT INTO ${this.#s}.authority_outbox (tenant, draft, created_at) VALUES ($1, $2, $3) RETURNING id`, [tenant, JSON.stringify(d), at]);
      ids.push(Number(res.rows[0]!.id));
    }
    return ids;
  }

  async endSessions(tenant: string, ids: readonly string[], change: EndChange, record: (ended: Ended) => EventDraft[]): Promise<Ended & { outbox: number[] }> {
    return this.#tx(async (c) => {
      const ended = await this.#end(c, tenant, ids, change);
      const outbox = ended.sessions.length > 0 ? await this.#enqueue(c, tenant, record(ended)) : [];
      return { ...ended, outbox };
    });
  }

  async endTree(tenant: string, id: string, change: { self: EndChange; descendants: EndChange }, record: (ended: Ended) => EventDraft[]): Promise<Ended & { outbox: number[] }> {
    return this.#tx(async (c) => {
      const root = await c.query<{ root_id: string }>(`SELECT root_id FROM ${this.#s}.authority_sessions WHERE tenant = $1 AND id = $2`, [tenant, id]);
      if (root.rows[0] === undefined) return { sessions: [], credentials: [], outbox: [] };
      // The tree's lock first, then the tree read by a new statement: every
      // delegation that committed before is in it, and every later one waits
      // for this transaction and then finds its parent ended.
      await this.#lockTree(c, tenant, root.rows[0].root_id);
      const ids = (await this.#subtree(c, tenant, id)).map((s) => s.id);
      const self = await this.#end(c, tenant, [id], change.self);
      const down = await this.#end(c, tenant, ids.slice(1), change.descendants);
      const ended: Ended = { sessions: [...self.sessions, ...down.sessions], credentials: [...self.credentials, ...down.credentials] };
      const outbox = ended.sessions.length > 0 ? await this.#enqueue(c, tenant, record(ended)) : [];
      return { ...ended, outbox };
    });
  }

  async expireDue(now: Date, limit: number, record: (tenant: string, ended: Ended) => EventDraft[]): Promise<{ tenant: string; ended: Ended; outbox: number[] }[]> {
    return this.#tx(async (c) => {
      // SKIP LOCKED: nodes sweeping at once take different sessions.
      const due = await c.query<{ tenant: string; id: string; expires_at: string }>(
        `SELECT tenant, id, expires_at FROM ${this.#s}.authority_sessions WHERE status = 'active' AND expires_ms <= $1 ORDER BY expires_ms LIMIT $2 FOR UPDATE SKIP LOCKED`,
        [now.getTime(), limit],
      );
      const out: { tenant: string; ended: Ended; outbox: number[] }[] = [];
      for (const tenant of new Set(due.rows.map((d) => d.tenant))) {
        const ended: Ended = { sessions: [], credentials: [] };
        for (const d of due.rows.filter((r) => r.tenant === tenant)) {
          const e = await this.#end(c, tenant, [d.id], { status: 'expired', at: d.expires_at, by: 'custody', reason: 'expired' });
          ended.sessions.push(...e.sessions);
          ended.credentials.push(...e.credentials);
        }
        out.push({ tenant, ended, outbox: ended.sessions.length > 0 ? await this.#enqueue(c, tenant, record(tenant, ended)) : [] });
      }
      return out;
    });
  }

  async enqueue(tenant: string, drafts: readonly EventDraft[]): Promise<number[]> {
    return this.#tx((c) => this.#enqueue(c, tenant, drafts));
  }

  async claimOutbox(limit: number, leaseMs: number, ids?: readonly number[]): Promise<OutboxEvent[]> {
    const now = Date.now();
    const res = await this.#pool.query<{ id: string; tenant: string; draft: string; attempts: number }>(
      `UPDATE ${this.#s}.authority_outbox SET lease_ms = $1, attempts = attempts + 1
       WHERE id IN (SELECT id FROM ${this.#s}.authority_outbox WHERE failed IS NULL AND lease_ms <= $2 ${ids !== undefined ? 'AND id = ANY($4::bigint[])' : ''} ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
       RETURNING id, tenant, draft, attempts`,
      ids !== undefined ? [now + leaseMs, now, limit, ids.map(String)] : [now + leaseMs, now, limit],
    );
    return res.rows
      .map((r) => ({ id: Number(r.id), tenant: r.tenant, draft: JSON.parse(r.draft) as EventDraft, attempts: r.attempts }))
      .sort((a, b) => a.id - b.id);
  }

  async deleteOutbox(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#pool.query(`DELETE FROM ${this.#s}.authority_outbox WHERE id = ANY($1::bigint[])`, [ids.map(String)]);
  }

  async failOutbox(ids: readonly number[], reason: string): Promise<void> {
    if (ids.length === 0) return;
    await this.#pool.query(`UPDATE ${this.#s}.authority_outbox SET failed = $1 WHERE id = ANY($2::bigint[])`, [reason.slice(0, 1000), ids.map(String)]);
  }
}
