/**
 * `PostgresApprovalStore`: the approvals table in the ledger's PostgreSQL schema.
 * Every node reads and writes the same rows; each state change is one conditional
 * UPDATE, so of several nodes exactly one decides, uses or expires an approval.
 */
import { LedgerError } from '@custody/ledger';
import pg from 'pg';

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

/** Where the PostgreSQL approval store keeps its table. */
export interface PostgresApprovalStoreConfig {
  connectionString: string;
  /** The schema (the ledger's; default `custody`). */
  schema?: string;
  /** Pool size. Default 4. */
  max?: number;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const COLUMNS = 'tenant, id, session_id, tool, arguments_digest, status, created_at, expires_at, doc, decided_at, decision, consumed_at';

/**
 * The approval store on PostgreSQL.
 * @example
 * const approvals = new PostgresApprovalStore({ connectionString: 'postgres://custody@db/custody' });
 * await approvals.migrate();
 */
export class PostgresApprovalStore implements ApprovalStore {
  readonly kind = 'postgres' as const;
  readonly #pool: pg.Pool;
  readonly #s: string;
  readonly #schema: string;

  constructor(config: PostgresApprovalStoreConfig) {
    const schema = config.schema ?? 'custody';
    if (!SCHEMA_NAME.test(schema)) throw new RangeError(`schema must be 1-63 characters of a-z 0-9 _, got ${JSON.stringify(schema)}`);
    this.#schema = schema;
    this.#s = `"${schema}"`;
    this.#pool = new pg.Pool({ connectionString: config.connectionString, max: config.max ?? 4 });
    this.#pool.on('error', () => undefined);
    // A checked-out client whose connection ends (PostgreSQL restarted) emits 'error' too:
    // without a listener that would crash the process; its query rejects instead.
    this.#pool.on('connect', (client) => client.on('error', () => undefined));
  }

  async migrate(): Promise<void> {
    const c = await this.#pool.connect();
    try {
      await c.query('BEGIN');
      // Several nodes may start at once: one creates, the others wait.
      await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${this.#schema}/approvals-migrate`]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${this.#s}`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.#s}.approvals (
        tenant TEXT NOT NULL, id TEXT NOT NULL, session_id TEXT NOT NULL, tool TEXT NOT NULL, arguments_digest TEXT NOT NULL,
        status TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, expires_ms BIGINT NOT NULL, doc TEXT NOT NULL,
        decided_at TEXT, decided_ms BIGINT, decision TEXT, consumed_at TEXT,
        PRIMARY KEY (tenant, id))`);
      await c.query(`CREATE INDEX IF NOT EXISTS approvals_recent ON ${this.#s}.approvals (tenant, created_at, id)`);
      await c.query(`CREATE INDEX IF NOT EXISTS approvals_due ON ${this.#s}.approvals (status, expires_ms)`);
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }

  async create(a: ApprovalRecord): Promise<void> {
    await this.#pool.query(
      `INSERT INTO ${this.#s}.approvals (tenant, id, session_id, tool, arguments_digest, status, created_at, expires_at, expires_ms, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [a.tenant, a.id, a.sessionId, a.tool, a.argumentsDigest, a.status, a.createdAt, a.expiresAt, Date.parse(a.expiresAt), approvalDocument(a)],
    );
  }

  async get(tenant: string, id: string): Promise<ApprovalRecord | undefined> {
    const r = await this.#pool.query<ApprovalRow>(`SELECT ${COLUMNS} FROM ${this.#s}.approvals WHERE tenant = $1 AND id = $2`, [tenant, id]);
    return r.rows[0] === undefined ? undefined : approvalFromRow(r.rows[0]);
  }

  async list(tenant: string, filter: ApprovalFilter, limit: number, cursor?: string): Promise<{ approvals: ApprovalRecord[]; nextCursor?: string }> {
    const where = ['tenant = $1'];
    const args: unknown[] = [tenant];
    const add = (sql: (n: number) => string, ...vs: unknown[]) => {
      where.push(sql(args.length + 1));
      args.push(...vs);
    };
    if (filter.status === 'pending') where.push("status IN ('pending', 'deciding')");
    else if (filter.status === 'expired') where.push("status IN ('expiring', 'expired')");
    else if (filter.status !== undefined) add((n) => `status = $${n}`, filter.status);
    if (filter.session !== undefined) add((n) => `session_id = $${n}`, filter.session);
    if (cursor !== undefined) {
      const c = decodeApprovalCursor(cursor);
      if (c === undefined) throw new LedgerError('CURSOR_INVALID', 'cursor is not one this listing returned', { field: 'cursor' });
      add((n) => `(created_at < $${n} OR (created_at = $${n} AND id < $${n + 1}))`, c[0], c[1]);
    }
    const r = await this.#pool.query<ApprovalRow>(`SELECT ${COLUMNS} FROM ${this.#s}.approvals WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT $${args.length + 1}`, [...args, limit + 1]);
    const page = r.rows.slice(0, limit);
    const last = page[page.length - 1];
    return { approvals: page.map(approvalFromRow), ...(r.rows.length > limit && last !== undefined ? { nextCursor: encodeApprovalCursor(last.created_at, last.id) } : {}) };
  }

  async claim(tenant: string, id: string, d: ApprovalDecision): Promise<boolean> {
    const decision = decisionDocument(d);
    const r = await this.#pool.query(
      `UPDATE ${this.#s}.approvals SET status = 'deciding', decided_at = $1, decided_ms = $2, decision = $3 WHERE tenant = $4 AND id = $5 AND status = 'pending' AND expires_ms > $2`,
      [d.at, Date.parse(d.at), decision, tenant, id],
    );
    return r.rowCount === 1;
  }

  async settle(tenant: string, id: string, outcome: boolean | ApprovalDecision): Promise<boolean> {
    const r =
      typeof outcome === 'boolean'
        ? await this.#pool.query(
            outcome
              ? `UPDATE ${this.#s}.approvals SET status = (decision::jsonb)->>'status' WHERE tenant = $1 AND id = $2 AND status = 'deciding'`
              : `UPDATE ${this.#s}.approvals SET status = 'pending', decided_at = NULL, decided_ms = NULL, decision = NULL WHERE tenant = $1 AND id = $2 AND status = 'deciding'`,
            [tenant, id],
          )
        : await this.#pool.query(
            `UPDATE ${this.#s}.approvals SET status = $1, decided_at = $2, decided_ms = $3, decision = $4 WHERE tenant = $5 AND id = $6 AND status = 'deciding'`,
            [outcome.status, outcome.at, Date.parse(outcome.at), decisionDocument(outcome), tenant, id],
          );
    return r.rowCount === 1;
  }

  async staleClaims(now: Date, limit: number): Promise<{ tenant: string; id: string; expiresAt: string }[]> {
    const r = await this.#pool.query<{ tenant: string; id: string; expires_at: string }>(
      `SELECT tenant, id, expires_at FROM ${this.#s}.approvals WHERE status = 'deciding' AND decided_ms <= $1 ORDER BY decided_ms LIMIT $2`,
      [now.getTime() - CLAIM_STALE_MS, limit],
    );
    return r.rows.map((row) => ({ tenant: row.tenant, id: row.id, expiresAt: row.expires_at }));
  }

  async consume(tenant: string, id: string, b: { sessionId: string; tool: string; argumentsDigest: string }, at: string, usableUntil: string): Promise<boolean> {
    const r = await this.#pool.query(
      `UPDATE ${this.#s}.approvals SET consumed_at = $1 WHERE tenant = $2 AND id = $3 AND status = 'granted' AND consumed_at IS NULL AND session_id = $4 AND tool = $5 AND arguments_digest = $6 AND $1 < $7`,
      [at, tenant, id, b.sessionId, b.tool, b.argumentsDigest, usableUntil],
    );
    return r.rowCount === 1;
  }

  async expireDue(now: Date, limit: number, tenant?: string, id?: string): Promise<ApprovalRecord[]> {
    const ms = now.getTime();
    const scope = tenant !== undefined && id !== undefined ? 'AND tenant = $4 AND id = $5' : '';
    // One statement: rows locked and changed by exactly one node (SKIP LOCKED).
    const r = await this.#pool.query<ApprovalRow>(
      `UPDATE ${this.#s}.approvals a SET status = 'expiring', decided_at = NULL, decided_ms = $1, decision = NULL
       FROM (SELECT tenant, id FROM ${this.#s}.approvals
             WHERE expires_ms <= $1 AND (status = 'pending' OR (status = 'deciding' AND decided_ms <= $2)) ${scope}
             ORDER BY expires_ms LIMIT $3 FOR UPDATE SKIP LOCKED) due
       WHERE a.tenant = due.tenant AND a.id = due.id
       RETURNING a.tenant, a.id, a.session_id, a.tool, a.arguments_digest, a.status, a.created_at, a.expires_at, a.doc, a.decided_at, a.decision, a.consumed_at`,
      [ms, ms - CLAIM_STALE_MS, limit, ...(scope !== '' ? [tenant, id] : [])],
    );
    return r.rows.map(approvalFromRow);
  }

  async expireSession(tenant: string, sessionId: string, ended: NonNullable<ApprovalRecord['sessionEnded']>, now: Date): Promise<ApprovalRecord[]> {
    const r = await this.#pool.query<ApprovalRow>(
      `UPDATE ${this.#s}.approvals SET status = 'expiring', decided_at = NULL, decided_ms = $1, decision = $2
       WHERE tenant = $3 AND session_id = $4 AND status = 'pending'
       RETURNING ${COLUMNS}`,
      [now.getTime(), sessionEndedDocument(ended), tenant, sessionId],
    );
    return r.rows.map(approvalFromRow);
  }

  async pendingSessions(limit: number): Promise<{ tenant: string; sessionId: string }[]> {
    const r = await this.#pool.query<{ tenant: string; session_id: string }>(`SELECT DISTINCT tenant, session_id FROM ${this.#s}.approvals WHERE status = 'pending' LIMIT $1`, [limit]);
    return r.rows.map((row) => ({ tenant: row.tenant, sessionId: row.session_id }));
  }

  async unrecordedExpiries(limit: number): Promise<ApprovalRecord[]> {
    const r = await this.#pool.query<ApprovalRow>(`SELECT ${COLUMNS} FROM ${this.#s}.approvals WHERE status = 'expiring' ORDER BY decided_ms LIMIT $1`, [limit]);
    return r.rows.map(approvalFromRow);
  }

  async settleExpiry(tenant: string, id: string): Promise<boolean> {
    const r = await this.#pool.query(`UPDATE ${this.#s}.approvals SET status = 'expired' WHERE tenant = $1 AND id = $2 AND status = 'expiring'`, [tenant, id]);
    return r.rowCount === 1;
  }
}
