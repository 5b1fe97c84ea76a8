/**
 * The stream rows of `PostgresStore` (../streams-store.ts; the same rows as
 * ../sqlite/sqlite-streams.ts). Every write is one statement; the lease is a
 * conditional UPDATE, so two nodes never both hold a stream's lease.
 * @internal
 */
import type { StoreStreams, StreamRow } from '../streams-store.js';
import { type StreamDbRow, toStream } from '../sqlite/sqlite-streams.js';
import type { PostgresQuery } from './postgres-reports.js';

/** @internal */
export class PostgresStreams implements StoreStreams {
  readonly #q: string;
  readonly #query: PostgresQuery;

  /**
   * @param q the quoted schema name
   * @param query runs a statement the way the store does
   */
  constructor(q: string, query: PostgresQuery) {
    this.#q = q;
    this.#query = query;
  }

  async listStreams(tenant?: string): Promise<StreamRow[]> {
    const { rows } =
      tenant === undefined
        ? await this.#query<StreamDbRow>(`SELECT * FROM ${this.#q}.streams ORDER BY tenant, name`, [])
        : await this.#query<StreamDbRow>(`SELECT * FROM ${this.#q}.streams WHERE tenant = $1 ORDER BY name`, [tenant]);
    return rows.map(toStream);
  }

  async getStream(tenant: string, id: string): Promise<StreamRow | undefined> {
    const { rows } = await this.#query<StreamDbRow>(`SELECT * FROM ${this.#q}.streams WHERE tenant = $1 AND id = $2`, [tenant, id]);
    return rows[0] === undefined ? undefined : toStream(rows[0]);
  }

  async insertStream(row: StreamRow): Promise<boolean> {
    const r = await this.#query(
      `INSERT INTO ${this.#q}.streams (tenant, id, name, kind, config, status, cursor, failures, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
      [row.tenant, row.id, row.name, row.kind, row.config, row.status, row.cursor, row.failures, row.createdAt, row.updatedAt],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async deleteStream(tenant: string, id: string): Promise<boolean> {
    const r = await this.#query(`DELETE FROM ${this.#q}.streams WHERE tenant = $1 AND id = $2`, [tenant, id]);
    return (r.rowCount ?? 0) > 0;
  }

  async acquireStreamLease(tenant: string, id: string, holder: string, now: number, ttl: number): Promise<boolean> {
    const r = await this.#query(
      `UPDATE ${this.#q}.streams SET lease_holder = $1, lease_until = $2
       WHERE tenant = $3 AND id = $4 AND status = 'active' AND (lease_holder IS NULL OR lease_holder = $1 OR lease_until < $5)`,
      [holder, now + ttl, tenant, id, now],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async releaseStreamLease(tenant: string, id: string, holder: string): Promise<void> {
    await this.#query(`UPDATE ${this.#q}.streams SET lease_holder = NULL, lease_until = NULL WHERE tenant = $1 AND id = $2 AND lease_holder = $3`, [tenant, id, holder]);
  }

  async advanceStream(tenant: string, id: string, holder: string, from: number, to: number, at: string): Promise<boolean> {
    const r = await this.#query(
      `UPDATE ${this.#q}.streams SET cursor = $1, failures = 0, last_delivered_at = $2, updated_at = $2
       WHERE tenant = $3 AND id = $4 AND lease_holder = $5 AND cursor = $6`,
      [to, at, tenant, id, holder, from],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async failStream(tenant: string, id: string, holder: string, error: string, at: string, deadAfter: number): Promise<StreamRow | undefined> {
    const { rows } = await this.#query<StreamDbRow>(
      `UPDATE ${this.#q}.streams SET failures = failures + 1, last_error = $1, last_error_at = $2, updated_at = $2,
         status = CASE WHEN failures + 1 >= $3 THEN 'dead_letter' ELSE status END,
         lease_holder = CASE WHEN failures + 1 >= $3 THEN NULL ELSE lease_holder END,
         lease_until = CASE WHEN failures + 1 >= $3 THEN NULL ELSE lease_until END
       WHERE tenant = $4 AND id = $5 AND lease_holder = $6 RETURNING *`,
      [error, at, deadAfter, tenant, id, holder],
    );
    return rows[0] === undefined ? undefined : toStream(rows[0]);
  }

  async retryStream(tenant: string, id: string, at: string): Promise<boolean> {
    const r = await this.#query(`UPDATE ${this.#q}.streams SET status = 'active', failures = 0, updated_at = $1 WHERE tenant = $2 AND id = $3`, [at, tenant, id]);
    return (r.rowCount ?? 0) > 0;
  }
}
