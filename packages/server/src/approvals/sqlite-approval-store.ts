/**
 * `SqliteApprovalStore`: the approvals table in the ledger's SQLite file (its own
 * connection; WAL, `synchronous = FULL`, like the ledger's).
 */
import { LedgerError } from '@custody/ledger';
import Database from 'better-sqlite3';

import {
  type ApprovalDecision,
  type ApprovalFilter,
  type ApprovalRecord,
  type ApprovalRow,
  type ApprovalStore,
  approvalDocument,
  approvalFromRow,
  CLAIM_STALE_MS,
  decisionDocument,
  decodeApprovalCursor,
  encodeApprovalCursor,
  sessionEndedDocument,
} from './approval-store.js';

/** Where the SQLite approval store keeps its table. */
export type SqliteApprovalStoreConfig = ({ path: string } | { database: Database.Database }) & {
  /**
   * Who checkpoints the WAL. `automatic` (the default): this connection, inline, as SQLite
   * does. `off`: another connection on the same file does, as the ledger's SqliteStore does
   * when they share ledger.db; without it, each commit here would copy the ledger's WAL
   * back on the request thread (a side write then took up to 13 ms under ingest, not 3).
   */
  checkpoints?: 'automatic' | 'off';
};

const SCHEMA = `
CREATE TABLE IF NOT EXISTS approvals (
  tenant TEXT NOT NULL, id TEXT NOT NULL, session_id TEXT NOT NULL, tool TEXT NOT NULL, arguments_digest TEXT NOT NULL,
  status TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, expires_ms INTEGER NOT NULL, doc TEXT NOT NULL,
  decided_at TEXT, decided_ms INTEGER, decision TEXT, consumed_at TEXT,
  PRIMARY KEY (tenant, id));
CREATE INDEX IF NOT EXISTS approvals_recent ON approvals (tenant, created_at, id);
CREATE INDEX IF NOT EXISTS approvals_due ON approvals (status, expires_ms);
`;
const COLUMNS = 'tenant, id, session_id, tool, arguments_digest, status, created_at, expires_at, doc, decided_at, decision, consumed_at';

/**
 * The approval store on SQLite.
 * @example
 * const approvals = new SqliteApprovalStore({ path: '.custody/ledger.db' });
 * await approvals.migrate();
 */
export class SqliteApprovalStore implements ApprovalStore {
  readonly kind = 'sqlite' as const;
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();

  constructor(config: SqliteApprovalStoreConfig) {
    this.#db = 'database' in config ? config.database : new Database(config.path);
    this.#db.pragma('busy_timeout = 5000');
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

  async create(a: ApprovalRecord): Promise<void> {
    this.#stmt('INSERT INTO approvals (tenant, id, session_id, tool, arguments_digest, status, created_at, expires_at, expires_ms, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(a.tenant, a.id, a.sessionId, a.tool, a.argumentsDigest, a.status, a.createdAt, a.expiresAt, Date.parse(a.expiresAt), approvalDocument(a));
  }

  async get(tenant: string, id: string): Promise<ApprovalRecord | undefined> {
    const row = this.#stmt(`SELECT ${COLUMNS} FROM approvals WHERE tenant = ? AND id = ?`).get(tenant, id) as ApprovalRow | undefined;
    return row === undefined ? undefined : approvalFromRow(row);
  }

  async list(tenant: string, filter: ApprovalFilter, limit: number, cursor?: string): Promise<{ approvals: ApprovalRecord[]; nextCursor?: string }> {
    const where = ['tenant = ?'];
    const args: unknown[] = [tenant];
    if (filter.status !== undefined) {
      if (filter.status === 'pending') where.push("status IN ('pending', 'deciding')");
      else if (filter.status === 'expired') where.push("status IN ('expiring', 'expired')");
      else {
        where.push('status = ?');
        args.push(filter.status);
      }
    }
    if (filter.session !== undefined) {
      where.push('session_id = ?');
      args.push(filter.session);
    }
    if (cursor !== undefined) {
      const c = decodeApprovalCursor(cursor);
      if (c === undefined) throw new LedgerError('CURSOR_INVALID', 'cursor is not one this listing returned', { field: 'cursor' });
      where.push('(created_at < ? OR (created_at = ? AND id < ?))');
      args.push(c[0], c[0], c[1]);
    }
    const rows = this.#stmt(`SELECT ${COLUMNS} FROM approvals WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ?`).all(...args, limit + 1) as ApprovalRow[];
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { approvals: page.map(approvalFromRow), ...(rows.length > limit && last !== undefined ? { nextCursor: encodeApprovalCursor(last.created_at, last.id) } : {}) };
  }

  async claim(tenant: string, id: string, d: ApprovalDecision): Promise<boolean> {
    const decision = decisionDocument(d);
    const r = this.#stmt("UPDATE approvals SET status = 'deciding', decided_at = ?, decided_ms = ?, decision = ? WHERE tenant = ? AND id = ? AND status = 'pending' AND expires_ms > ?")
      .run(d.at, Date.parse(d.at), decision, tenant, id, Date.parse(d.at));
    return r.changes === 1;
  }

  async settle(tenant: string, id: string, outcome: boolean | ApprovalDecision): Promise<boolean> {
    const r =
      outcome === true
        ? this.#stmt("UPDATE approvals SET status = json_extract(decision, '$.status') WHERE tenant = ? AND id = ? AND status = 'deciding'").run(tenant, id)
        : outcome === false
          ? this.#stmt("UPDATE approvals SET status = 'pending', decided_at = NULL, decided_ms = NULL, decision = NULL WHERE tenant = ? AND id = ? AND status = 'deciding'").run(tenant, id)
          : this.#stmt("UPDATE approvals SET status = ?, decided_at = ?, decided_ms = ?, decision = ? WHERE tenant = ? AND id = ? AND status = 'deciding'")
              .run(outcome.status, outcome.at, Date.parse(outcome.at), decisionDocument(outcome), tenant, id);
    return r.changes === 1;
  }

  async staleClaims(now: Date, limit: number): Promise<{ tenant: string; id: string; expiresAt: string }[]> {
    const rows = this.#stmt("SELECT tenant, id, expires_at FROM approvals WHERE status = 'deciding' AND decided_ms <= ? ORDER BY decided_ms LIMIT ?")
      .all(now.getTime() - CLAIM_STALE_MS, limit) as { tenant: string; id: string; expires_at: string }[];
    return rows.map((r) => ({ tenant: r.tenant, id: r.id, expiresAt: r.expires_at }));
  }

  async consume(tenant: string, id: string, b: { sessionId: string; tool: string; argumentsDigest: string }, at: string, usableUntil: string): Promise<boolean> {
    const r = this.#stmt(
        "UPDATE approvals SET consumed_at = ? WHERE tenant = ? AND id = ? AND status = 'granted' AND consumed_at IS NULL AND session_id = ? AND tool = ? AND arguments_digest = ? AND ? < ?",
      )
      .run(at, tenant, id, b.sessionId, b.tool, b.argumentsDigest, at, usableUntil);
    return r.changes === 1;
  }

  async expireDue(now: Date, limit: number, tenant?: string, id?: string): Promise<ApprovalRecord[]> {
    const ms = now.getTime();
    return this.#db.transaction(() => {
      const scope = tenant !== undefined && id !== undefined ? 'AND tenant = ? AND id = ?' : '';
      const rows = this.#stmt(`SELECT ${COLUMNS} FROM approvals WHERE expires_ms <= ? AND (status = 'pending' OR (status = 'deciding' AND decided_ms <= ?)) ${scope} ORDER BY expires_ms LIMIT ?`)
        .all(ms, ms - CLAIM_STALE_MS, ...(scope !== '' ? [tenant, id] : []), limit) as ApprovalRow[];
      // `expiring` until its approval.expired entry is in the ledger (settleExpiry); decided_ms: since when.
      const upd = this.#stmt("UPDATE approvals SET status = 'expiring', decided_at = NULL, decided_ms = ?, decision = NULL WHERE tenant = ? AND id = ?");
      for (const r of rows) upd.run(ms, r.tenant, r.id);
      return rows.map((r) => approvalFromRow({ ...r, status: 'expiring', decided_at: null, decision: null }));
    })();
  }

  async expireSession(tenant: string, sessionId: string, ended: NonNullable<ApprovalRecord['sessionEnded']>, now: Date): Promise<ApprovalRecord[]> {
    const decision = sessionEndedDocument(ended);
    return this.#db.transaction(() => {
      const rows = this.#stmt(`SELECT ${COLUMNS} FROM approvals WHERE tenant = ? AND session_id = ? AND status = 'pending'`).all(tenant, sessionId) as ApprovalRow[];
      const upd = this.#stmt("UPDATE approvals SET status = 'expiring', decided_at = NULL, decided_ms = ?, decision = ? WHERE tenant = ? AND id = ? AND status = 'pending'");
      for (const r of rows) upd.run(now.getTime(), decision, r.tenant, r.id);
      return rows.map((r) => approvalFromRow({ ...r, status: 'expiring', decided_at: null, decision }));
    })();
  }

  async pendingSessions(limit: number): Promise<{ tenant: string; sessionId: string }[]> {
    const rows = this.#stmt("SELECT DISTINCT tenant, session_id FROM approvals WHERE status = 'pending' LIMIT ?").all(limit) as { tenant: string; session_id: string }[];
    return rows.map((r) => ({ tenant: r.tenant, sessionId: r.session_id }));
  }

  async unrecordedExpiries(limit: number): Promise<ApprovalRecord[]> {
    const rows = this.#stmt(`SELECT ${COLUMNS} FROM approvals WHERE status = 'expiring' ORDER BY decided_ms LIMIT ?`).all(limit) as ApprovalRow[];
    return rows.map(approvalFromRow);
  }

  async settleExpiry(tenant: string, id: string): Promise<boolean> {
    return this.#stmt("UPDATE approvals SET status = 'expired' WHERE tenant = ? AND id = ? AND status = 'expiring'").run(tenant, id).changes === 1;
  }
}
