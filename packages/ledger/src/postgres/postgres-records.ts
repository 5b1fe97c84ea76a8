/**
 * The records-management rows of `PostgresStore` (../records-store.ts; the same
 * rows as ../sqlite/sqlite-records.ts). Every write is one statement, so it is
 * atomic without an explicit transaction.
 * @internal
 */
import { StoreError } from '../errors.js';
import { type LegalHoldRow, type RetentionRuleRow, type StoreRecords, type ValueDigestRow, type HoldDbRow, toHold } from '../records-store.js';
import { bytes, clampLimit } from '../store-shared.js';
import type { PostgresQuery } from './postgres-reports.js';

type Int8 = string | number;

/** @internal */
export class PostgresRecords implements StoreRecords {
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

  async replaceDisclosures(tenant: string, index: number, expected: readonly string[], next: readonly string[]): Promise<boolean> {
    const r = await this.#query(`UPDATE ${this.#q}.entries SET disclosures = $1 WHERE tenant = $2 AND idx = $3 AND disclosures = $4`, [
      JSON.stringify(next),
      tenant,
      index,
      JSON.stringify(expected),
    ]);
    return (r.rowCount ?? 0) > 0;
  }

  async retentionRules(tenant: string): Promise<RetentionRuleRow[]> {
    const { rows } = await this.#query<{ type: string; field: string; days: number; updated_at: string }>(
      `SELECT type, field, days, updated_at FROM ${this.#q}.retention_rules WHERE tenant = $1 ORDER BY type, field`,
      [tenant],
    );
    return rows.map((r) => ({ type: r.type, field: r.field, days: r.days, updatedAt: r.updated_at }));
  }

  async putRetentionRule(tenant: string, rule: RetentionRuleRow): Promise<void> {
    await this.#query(
      `INSERT INTO ${this.#q}.retention_rules (tenant, type, field, days, updated_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tenant, type, field) DO UPDATE SET days = excluded.days, updated_at = excluded.updated_at`,
      [tenant, rule.type, rule.field, rule.days, rule.updatedAt],
    );
  }

  async deleteRetentionRule(tenant: string, type: string, field: string): Promise<boolean> {
    const r = await this.#query(`DELETE FROM ${this.#q}.retention_rules WHERE tenant = $1 AND type = $2 AND field = $3`, [tenant, type, field]);
    return (r.rowCount ?? 0) > 0;
  }

  async holds(tenant: string): Promise<LegalHoldRow[]> {
    const { rows } = await this.#query<HoldDbRow>(
      `SELECT id, kind, target, since, until, reason, created_at, created_by, lifted_at, lifted_by FROM ${this.#q}.legal_holds
       WHERE tenant = $1 ORDER BY created_at, id`,
      [tenant],
    );
    return rows.map(toHold);
  }

  async putHold(tenant: string, h: LegalHoldRow): Promise<boolean> {
    const r = await this.#query(
      `INSERT INTO ${this.#q}.legal_holds (tenant, id, kind, target, since, until, reason, created_at, created_by, lifted_at, lifted_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
      [tenant, h.id, h.kind, h.target ?? null, h.since ?? null, h.until ?? null, h.reason, h.createdAt, h.createdBy, h.liftedAt ?? null, h.liftedBy ?? null],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async liftHold(tenant: string, id: string, at: string, by: string): Promise<boolean> {
    const r = await this.#query(`UPDATE ${this.#q}.legal_holds SET lifted_at = $1, lifted_by = $2 WHERE tenant = $3 AND id = $4 AND lifted_at IS NULL`, [
      at,
      by,
      tenant,
      id,
    ]);
    return (r.rowCount ?? 0) > 0;
  }

  async getSetting(tenant: string, name: string): Promise<string | undefined> {
    const { rows } = await this.#query<{ value: string }>(`SELECT value FROM ${this.#q}.record_settings WHERE tenant = $1 AND name = $2`, [tenant, name]);
    return rows[0]?.value;
  }

  async putSetting(tenant: string, name: string, value: string): Promise<void> {
    await this.#query(
      `INSERT INTO ${this.#q}.record_settings (tenant, name, value) VALUES ($1, $2, $3) ON CONFLICT (tenant, name) DO UPDATE SET value = excluded.value`,
      [tenant, name, value],
    );
  }

  async digestKey(tenant: string, candidate: Uint8Array): Promise<Uint8Array> {
    // Insert unless present, then read whichever key won. When another caller's first insert
    // for this tenant commits while this statement waits on it, ON CONFLICT finds that row but
    // the statement's own read, on a snapshot taken before the commit, cannot: it returns no
    // row, and a new statement (a new snapshot, READ COMMITTED) reads the winner's key.
    const { rows } = await this.#query<{ key: Uint8Array }>(
      `WITH ins AS (INSERT INTO ${this.#q}.digest_keys (tenant, key) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING key)
       SELECT key FROM ins UNION ALL SELECT key FROM ${this.#q}.digest_keys WHERE tenant = $1 LIMIT 1`,
      [tenant, candidate],
    );
    if (rows[0] !== undefined) return bytes(rows[0].key);
    const again = await this.#query<{ key: Uint8Array }>(`SELECT key FROM ${this.#q}.digest_keys WHERE tenant = $1`, [tenant]);
    if (again.rows[0] === undefined) throw new StoreError('STORE_CORRUPT', `the digest key of tenant ${tenant} was neither stored nor readable`);
    return bytes(again.rows[0].key);
  }

  async cursor(tenant: string, name: string): Promise<number> {
    const { rows } = await this.#query<{ next: Int8 }>(`SELECT next FROM ${this.#q}.record_cursors WHERE tenant = $1 AND name = $2`, [tenant, name]);
    return rows[0] === undefined ? 0 : Number(rows[0].next);
  }

  async setCursor(tenant: string, name: string, next: number): Promise<void> {
    await this.#query(
      `INSERT INTO ${this.#q}.record_cursors (tenant, name, next) VALUES ($1, $2, $3) ON CONFLICT (tenant, name) DO UPDATE SET next = excluded.next`,
      [tenant, name, next],
    );
  }

  async putDigests(tenant: string, rows: readonly ValueDigestRow[], cursor: { name: string; next: number }): Promise<void> {
    await this.#query(
      `WITH d AS (
         INSERT INTO ${this.#q}.value_digests (tenant, digest, idx, path)
         SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[]) ON CONFLICT DO NOTHING)
       INSERT INTO ${this.#q}.record_cursors (tenant, name, next) VALUES ($1, $5, $6)
       ON CONFLICT (tenant, name) DO UPDATE SET next = greatest(${this.#q}.record_cursors.next, excluded.next)`,
      [tenant, rows.map((r) => r.digest), rows.map((r) => r.index), rows.map((r) => r.path), cursor.name, cursor.next],
    );
  }

  async findDigests(tenant: string, digest: string, page: { limit: number; after?: number }): Promise<number[]> {
    const { rows } = await this.#query<{ idx: Int8 }>(
      `SELECT DISTINCT idx FROM ${this.#q}.value_digests WHERE tenant = $1 AND digest = $2 AND idx > $3 ORDER BY idx LIMIT $4`,
      [tenant, digest, page.after ?? -1, clampLimit(page.limit)],
    );
    return rows.map((r) => Number(r.idx));
  }

  async deleteDigests(tenant: string, index: number, paths: readonly string[]): Promise<number> {
    const r = await this.#query(
      `DELETE FROM ${this.#q}.value_digests WHERE tenant = $1 AND idx = $2
       AND EXISTS (SELECT 1 FROM unnest($3::text[]) p WHERE path = p OR starts_with(path, p || '/'))`,
      [tenant, index, [...paths]],
    );
    return r.rowCount ?? 0;
  }
}
