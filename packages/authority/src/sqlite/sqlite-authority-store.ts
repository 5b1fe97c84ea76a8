/**
 * `SqliteAuthorityStore`: the authority's tables in the ledger's SQLite file
 * (its own connection; WAL, `synchronous = FULL`, like the ledger's).
 */
import type { EventDraft } from '@custody/core';
import Database from 'better-sqlite3';

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

/** Where the SQLite authority store keeps its tables. */
export type SqliteAuthorityStoreConfig = ({ path: string } | { database: Database.Database }) & {
  /** How long a write waits for the ledger connection's lock, in ms. Default 5000. */
  busyTimeoutMs?: number;
  /**
   * Who checkpoints the WAL. `automatic` (the default): this connection, inline, as SQLite
   * does. `off`: another connection on the same file does, as the ledger's SqliteStore does
   * when they share ledger.db; without it, each commit here would copy the ledger's WAL
   * back on the request thread (a side write then took up to 13 ms under ingest, not 3).
   */
  checkpoints?: 'automatic' | 'off';
};

const SCHEMA = `
CREATE TABLE IF NOT EXISTS authority_signing_keys (kid TEXT PRIMARY KEY, jwk TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS authority_sessions (
  tenant TEXT NOT NULL, id TEXT NOT NULL, parent_id TEXT, root_id TEXT NOT NULL, depth INTEGER NOT NULL,
  initiator_id TEXT NOT NULL, agent_id TEXT NOT NULL, doc TEXT NOT NULL,
  created_at TEXT NOT NULL, expires_at TEXT NOT NULL, expires_ms INTEGER NOT NULL,
  status TEXT NOT NULL, ended_at TEXT, ended_by TEXT, end_reason TEXT,
  PRIMARY KEY (tenant, id));
CREATE INDEX IF NOT EXISTS authority_sessions_parent ON authority_sessions (tenant, parent_id);
CREATE INDEX IF NOT EXISTS authority_sessions_due ON authority_sessions (status, expires_ms);
CREATE INDEX IF NOT EXISTS authority_sessions_recent ON authority_sessions (tenant, created_at, id);
CREATE TABLE IF NOT EXISTS authority_credentials (
  jti TEXT PRIMARY KEY, tenant TEXT NOT NULL, session_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
  issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, status TEXT NOT NULL, ended_at TEXT);
CREATE INDEX IF NOT EXISTS authority_credentials_session ON authority_credentials (tenant, session_id);
CREATE TABLE IF NOT EXISTS authority_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, draft TEXT NOT NULL, created_at TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, lease_ms INTEGER NOT NULL DEFAULT 0, failed TEXT);
`;

const SESSION_COLUMNS = 'tenant, id, parent_id, root_id, depth, doc, created_at, expires_at, status, ended_at, ended_by, end_reason';

type Row = Parameters<typeof sessionFromRow>[0];
type CredRow = Parameters<typeof credentialFromRow>[0];

/**
 * The authority store on SQLite.
 * @example
 * const store = new SqliteAuthorityStore({ path: '.custody/ledger.db' });
 * await store.migrate();
 */
export class SqliteAuthorityStore implements AuthorityStore {
  readonly kind = 'sqlite' as const;
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();

  constructor(config: SqliteAuthorityStoreConfig) {
    this.#db = 'database' in config ? config.database : new Database(config.path);
    this.#db.pragma(`busy_timeout = ${config.busyTimeoutMs ?? 5000}`);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    if (config.checkpoints === 'off') this.#db.pragma('wal_autocheckpoint = 0');
  }

  /** The prepared statement for `sql`, prepared once (a bounded cache: some SQL texts vary with their filters). */
  #stmt(sql: string): Database.Statement {
    let st = this.#statements.get(sql);
    if (st === undefined) {
      if (this.#statements.size >= 128) this.#statements.clear();
      st = this.#db.prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  async migrate(): Promise<void> {
    this.#db.exec(SCHEMA);
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }

  async putSigningKey(kid: string, jwk: Record<string, unknown>, at: string): Promise<void> {
    this.#stmt('INSERT INTO authority_signing_keys (kid, jwk, created_at) VALUES (?, ?, ?) ON CONFLICT (kid) DO NOTHING').run(kid, JSON.stringify(jwk), at);
  }

  async signingKeys(): Promise<Record<string, unknown>[]> {
    const rows = this.#stmt('SELECT jwk FROM authority_signing_keys ORDER BY created_at, kid').all() as { jwk: string }[];
    return rows.map((r) => JSON.parse(r.jwk) as Record<string, unknown>);
  }

  async createSession(s: SessionRecord, c: CredentialRecord): Promise<boolean> {
    // IMMEDIATE: the write lock is taken before the parent is read, so no
    // revocation can commit between the check and the insert.
    return this.#db.transaction(() => {
      if (s.parent !== undefined) {
        const parent = this.#stmt('SELECT status FROM authority_sessions WHERE tenant = ? AND id = ?').get(s.tenant, s.parent) as { status: string } | undefined;
        if (parent?.status !== 'active') return false;
      }
      this.#stmt(`INSERT INTO authority_sessions (tenant, id, parent_id, root_id, depth, initiator_id, agent_id, doc, created_at, expires_at, expires_ms, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(s.tenant, s.id, s.parent ?? null, s.root, s.depth, s.initiator.id, s.agent.id, sessionDocument(s), s.createdAt, s.expiresAt, Date.parse(s.expiresAt), s.status);
      this.#stmt('INSERT INTO authority_credentials (jti, tenant, session_id, fingerprint, issued_at, expires_at, status) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(c.jti, c.tenant, c.sessionId, c.fingerprint, c.issuedAt, c.expiresAt, c.status);
      return true;
    }).immediate();
  }

  async getSession(tenant: string, id: string): Promise<SessionRecord | undefined> {
    const row = this.#stmt(`SELECT ${SESSION_COLUMNS} FROM authority_sessions WHERE tenant = ? AND id = ?`).get(tenant, id) as Row | undefined;
    return row === undefined ? undefined : sessionFromRow(row);
  }

  async listSessions(tenant: string, filter: SessionListFilter, limit: number, cursor?: string): Promise<{ sessions: SessionRecord[]; nextCursor?: string }> {
    const where = ['tenant = ?'];
    const args: unknown[] = [tenant];
    const add = (sql: string, v: unknown) => {
      where.push(sql);
      args.push(v);
    };
    if (filter.status !== undefined) add('status = ?', filter.status);
    if (filter.initiator !== undefined) add('initiator_id = ?', filter.initiator);
    if (filter.agent !== undefined) add('agent_id = ?', filter.agent);
    if (filter.root !== undefined) add('root_id = ?', filter.root);
    if (cursor !== undefined) {
      const c = decodeListCursor(cursor);
      if (c === undefined) throw new AuthorityError('EXCHANGE_INVALID', 'cursor is not one this listing returned', { field: 'cursor' });
      where.push('(created_at < ? OR (created_at = ? AND id < ?))');
      args.push(c[0], c[0], c[1]);
    }
    const rows = this.#stmt(`SELECT ${SESSION_COLUMNS} FROM authority_sessions WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ?`)
      .all(...args, limit + 1) as Row[];
    const sessions = rows.slice(0, limit).map(sessionFromRow);
    const last = sessions[sessions.length - 1];
    return { sessions, ...(rows.length > limit && last !== undefined ? { nextCursor: encodeListCursor(last.createdAt, last.id) } : {}) };
  }

  async subtree(tenant: string, id: string): Promise<SessionRecord[]> {
    return this.#subtree(tenant, id);
  }

  #subtree(tenant: string, id: string): SessionRecord[] {
    const rows = this.#stmt(
        `WITH RECURSIVE t(id) AS (SELECT id FROM authority_sessions WHERE tenant = ? AND id = ?
           UNION SELECT s.id FROM authority_sessions s JOIN t ON s.parent_id = t.id WHERE s.tenant = ?)
         SELECT ${SESSION_COLUMNS} FROM authority_sessions WHERE tenant = ? AND id IN (SELECT id FROM t) ORDER BY depth, created_at, id`,
      )
      .all(tenant, id, tenant, tenant) as Row[];
    return rows.map(sessionFromRow);
  }

  async getCredential(jti: string): Promise<CredentialRecord | undefined> {
    const row = this.#stmt('SELECT * FROM authority_credentials WHERE jti = ?').get(jti) as CredRow | undefined;
    return row === undefined ? undefined : credentialFromRow(row);
  }

  async credentialsOf(tenant: string, sessionId: string): Promise<CredentialRecord[]> {
    const rows = this.#stmt('SELECT * FROM authority_credentials WHERE tenant = ? AND session_id = ? ORDER BY issued_at, jti').all(tenant, sessionId) as CredRow[];
    return rows.map(credentialFromRow);
  }

  #end(tenant: string, ids: readonly string[], change: EndChange): Ended {
    const sessions: SessionRecord[] = [];
    const credentials: CredentialRecord[] = [];
    const endSession = this.#stmt(
      `UPDATE authority_sessions SET status = ?, ended_at = ?, ended_by = ?, end_reason = ? WHERE tenant = ? AND id = ? AND status = 'active' RETURNING ${SESSION_COLUMNS}`,
    );
    const credStatus = change.status === 'expired' ? 'expired' : 'revoked';
    const endCreds = this.#stmt(`UPDATE authority_credentials SET status = ?, ended_at = ? WHERE tenant = ? AND session_id = ? AND status = 'active' RETURNING *`);
    for (const id of ids) {
      const row = endSession.get(change.status, change.at, change.by, change.reason, tenant, id) as Row | undefined;
      if (row === undefined) continue;
      sessions.push(sessionFromRow(row));
      for (const c of endCreds.all(credStatus, change.at, tenant, id) as CredRow[]) credentials.push(credentialFromRow(c));
    }
    return { sessions, credentials };
  }

  #enqueue(tenant: string, drafts: readonly EventDraft[]): number[] {
    const insert = this.#stmt('INSERT INTO authority_outbox (tenant, draft, created_at) VALUES (?, ?, ?) RETURNING id');
    const at = new Date().toISOString();
    return drafts.map((d) => (insert.get(tenant, JSON.stringify(d), at) as { id: number }).id);
  }

  async endSessions(tenant: string, ids: readonly string[], change: EndChange, record: (ended: Ended) => EventDraft[]): Promise<Ended & { outbox: number[] }> {
    return this.#db.transaction(() => {
      const ended = this.#end(tenant, ids, change);
      const outbox = ended.sessions.length > 0 ? this.#enqueue(tenant, record(ended)) : [];
      return { ...ended, outbox };
    }).immediate();
  }

  async endTree(tenant: string, id: string, change: { self: EndChange; descendants: EndChange }, record: (ended: Ended) => EventDraft[]): Promise<Ended & { outbox: number[] }> {
    // IMMEDIATE: the tree is read under the write lock, which a delegation's
    // createSession needs too, so none slips in between the read and the update.
    return this.#db.transaction(() => {
      const ids = this.#subtree(tenant, id).map((s) => s.id);
      const self = ids[0] === id ? this.#end(tenant, [id], change.self) : { sessions: [], credentials: [] };
      const down = this.#end(tenant, ids.slice(1), change.descendants);
      const ended: Ended = { sessions: [...self.sessions, ...down.sessions], credentials: [...self.credentials, ...down.credentials] };
      const outbox = ended.sessions.length > 0 ? this.#enqueue(tenant, record(ended)) : [];
      return { ...ended, outbox };
    }).immediate();
  }

  async expireDue(now: Date, limit: number, record: (tenant: string, ended: Ended) => EventDraft[]): Promise<{ tenant: string; ended: Ended; outbox: number[] }[]> {
    return this.#db.transaction(() => {
      const due = this.#stmt("SELECT tenant, id, expires_at FROM authority_sessions WHERE status = 'active' AND expires_ms <= ? ORDER BY expires_ms LIMIT ?")
        .all(now.getTime(), limit) as { tenant: string; id: string; expires_at: string }[];
      const out: { tenant: string; ended: Ended; outbox: number[] }[] = [];
      for (const tenant of new Set(due.map((d) => d.tenant))) {
        const ids = due.filter((d) => d.tenant === tenant);
        const ended: Ended = { sessions: [], credentials: [] };
        for (const d of ids) {
          const e = this.#end(tenant, [d.id], { status: 'expired', at: d.expires_at, by: 'custody', reason: 'expired' });
          ended.sessions.push(...e.sessions);
          ended.credentials.push(...e.credentials);
        }
        out.push({ tenant, ended, outbox: this.#enqueue(tenant, record(tenant, ended)) });
      }
      return out;
    }).immediate();
  }

  async enqueue(tenant: string, drafts: readonly EventDraft[]): Promise<number[]> {
    return this.#db.transaction(() => this.#enqueue(tenant, drafts))();
  }

  async claimOutbox(limit: number, leaseMs: number, ids?: readonly number[]): Promise<OutboxEvent[]> {
    return this.#db.transaction(() => {
      const now = Date.now();
      const rows = (
        ids === undefined
          ? this.#stmt('SELECT id, tenant, draft, attempts FROM authority_outbox WHERE failed IS NULL AND lease_ms <= ? ORDER BY id LIMIT ?').all(now, limit)
          : this.#stmt(`SELECT id, tenant, draft, attempts FROM authority_outbox WHERE failed IS NULL AND lease_ms <= ? AND id IN (${ids.map(() => '?').join(',') || 'NULL'}) ORDER BY id LIMIT ?`)
              .all(now, ...ids, limit)
      ) as { id: number; tenant: string; draft: string; attempts: number }[];
      const lease = this.#stmt('UPDATE authority_outbox SET lease_ms = ?, attempts = attempts + 1 WHERE id = ?');
      for (const r of rows) lease.run(now + leaseMs, r.id);
      return rows.map((r) => ({ id: r.id, tenant: r.tenant, draft: JSON.parse(r.draft) as EventDraft, attempts: r.attempts + 1 }));
    }).immediate();
  }

  async deleteOutbox(ids: readonly number[]): Promise<void> {
    const del = this.#stmt('DELETE FROM authority_outbox WHERE id = ?');
    this.#db.transaction(() => ids.forEach((id) => del.run(id)))();
  }

  async failOutbox(ids: readonly number[], reason: string): Promise<void> {
    const fail = this.#stmt('UPDATE authority_outbox SET failed = ? WHERE id = ?');
    this.#db.transaction(() => ids.forEach((id) => fail.run(reason.slice(0, 1000), id)))();
  }
}
