/**
 * The stream rows of `SqliteStore` (../streams-store.ts).
 * @internal
 */
import type Database from 'better-sqlite3';

import type { StoreStreams, StreamRow, StreamStatus } from '../streams-store.js';

/** A stream row as both stores read it. @internal */
export interface StreamDbRow {
  tenant: string;
  id: string;
  name: string;
  kind: string;
  config: string;
  status: string;
  cursor: number | string;
  failures: number;
  last_error: string | null;
  last_error_at: string | null;
  last_delivered_at: string | null;
  created_at: string;
  updated_at: string;
  lease_holder: string | null;
  lease_until: number | string | null;
}

/** A stream row as the contract shows it. @internal */
export function toStream(r: StreamDbRow): StreamRow {
  const s: StreamRow = {
    tenant: r.tenant,
    id: r.id,
    name: r.name,
    kind: r.kind,
    config: r.config,
    status: r.status as StreamStatus,
    cursor: Number(r.cursor),
    failures: r.failures,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
  if (r.last_error !== null) s.lastError = r.last_error;
  if (r.last_error_at !== null) s.lastErrorAt = r.last_error_at;
  if (r.last_delivered_at !== null) s.lastDeliveredAt = r.last_delivered_at;
  if (r.lease_holder !== null) s.leaseHolder = r.lease_holder;
  if (r.lease_until !== null) s.leaseUntil = Number(r.lease_until);
  return s;
}

/** @internal */
export class SqliteStreams implements StoreStreams {
  readonly #db: Database.Database;
  readonly #run: <T>(fn: () => T) => T;

  constructor(db: Database.Database, run: <T>(fn: () => T) => T) {
    this.#db = db;
    this.#run = run;
  }

  async listStreams(tenant?: string): Promise<StreamRow[]> {
    return this.#run(() =>
      (tenant === undefined
        ? (this.#db.prepare('SELECT * FROM streams ORDER BY tenant, name').all() as StreamDbRow[])
        : (this.#db.prepare('SELECT * FROM streams WHERE tenant = ? ORDER BY name').all(tenant) as StreamDbRow[])
      ).map(toStream),
    );
  }

  async getStream(tenant: string, id: string): Promise<StreamRow | undefined> {
    return this.#run(() => {
      const r = this.#db.prepare('SELECT * FROM streams WHERE tenant = ? AND id = ?').get(tenant, id) as StreamDbRow | undefined;
      return r === undefined ? undefined : toStream(r);
    });
  }

  async insertStream(row: StreamRow): Promise<boolean> {
    return this.#run(
      () =>
        this.#db
          .prepare(
            `INSERT INTO streams (tenant, id, name, kind, config, status, cursor, failures, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
          )
          .run(row.tenant, row.id, row.name, row.kind, row.config, row.status, row.cursor, row.failures, row.createdAt, row.updatedAt).changes > 0,
    );
  }

  async deleteStream(tenant: string, id: string): Promise<boolean> {
    return this.#run(() => this.#db.prepare('DELETE FROM streams WHERE tenant = ? AND id = ?').run(tenant, id).changes > 0);
  }

  async acquireStreamLease(tenant: string, id: string, holder: string, now: number, ttl: number): Promise<boolean> {
    return this.#run(
      () =>
        this.#db
          .prepare(
            `UPDATE streams SET lease_holder = ?, lease_until = ?
             WHERE tenant = ? AND id = ? AND status = 'active' AND (lease_holder IS NULL OR lease_holder = ? OR lease_until < ?)`,
          )
          .run(holder, now + ttl, tenant, id, holder, now).changes > 0,
    );
  }

  async releaseStreamLease(tenant: string, id: string, holder: string): Promise<void> {
    this.#run(() => this.#db.prepare('UPDATE streams SET lease_holder = NULL, lease_until = NULL WHERE tenant = ? AND id = ? AND lease_holder = ?').run(tenant, id, holder));
  }

  async advanceStream(tenant: string, id: string, holder: string, from: number, to: number, at: string): Promise<boolean> {
    return this.#run(
      () =>
        this.#db
          .prepare(
            `UPDATE streams SET cursor = ?, failures = 0, last_delivered_at = ?, updated_at = ?
             WHERE tenant = ? AND id = ? AND lease_holder = ? AND cursor = ?`,
          )
          .run(to, at, at, tenant, id, holder, from).changes > 0,
    );
  }

  async failStream(tenant: string, id: string, holder: string, error: string, at: string, deadAfter: number): Promise<StreamRow | undefined> {
    return this.#run(() => {
      const r = this.#db
        .prepare(
          `UPDATE streams SET failures = failures + 1, last_error = ?, last_error_at = ?, updated_at = ?,
             status = CASE WHEN failures + 1 >= ? THEN 'dead_letter' ELSE status END,
             lease_holder = CASE WHEN failures + 1 >= ? THEN NULL ELSE lease_holder END,
             lease_until = CASE WHEN failures + 1 >= ? THEN NULL ELSE lease_until END
           WHERE tenant = ? AND id = ? AND lease_holder = ? RETURNING *`,
        )
        .get(error, at, at, deadAfter, deadAfter, deadAfter, tenant, id, holder) as StreamDbRow | undefined;
      return r === undefined ? undefined : toStream(r);
    });
  }

  async retryStream(tenant: string, id: string, at: string): Promise<boolean> {
    return this.#run(
      () => this.#db.prepare(`UPDATE streams SET status = 'active', failures = 0, updated_at = ? WHERE tenant = ? AND id = ?`).run(at, tenant, id).changes > 0,
    );
  }
}
