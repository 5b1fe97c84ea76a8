/**
 * The records-management rows of `SqliteStore` (../records-store.ts): retention
 * rules, legal holds, settings, cursors, keyed digests and the compare-and-set of
 * an entry's disclosures.
 * @internal
 */

import { type LegalHoldRow, type RetentionRuleRow, type StoreRecords, type ValueDigestRow, type HoldDbRow, toHold } from '../records-store.js';
import { bytes, clampLimit } from '../store-shared.js';
import { SqlitePart } from './sqlite-part.js';

/** @internal */
export class SqliteRecords extends SqlitePart implements StoreRecords {
  async replaceDisclosures(tenant: string, index: number, expected: readonly string[], next: readonly string[]): Promise<boolean> {
    return this.run(
      () =>
        this.stmt('UPDATE entries SET disclosures = ? WHERE tenant = ? AND idx = ? AND disclosures = ?').run(
          JSON.stringify(next),
          tenant,
          index,
          JSON.stringify(expected),
        ).changes > 0,
    );
  }

  async retentionRules(tenant: string): Promise<RetentionRuleRow[]> {
    return this.run(() =>
      (
        this.stmt('SELECT type, field, days, updated_at FROM retention_rules WHERE tenant = ? ORDER BY type, field').all(tenant) as {
          type: string;
          field: string;
          days: number;
          updated_at: string;
        }[]
      ).map((r) => ({ type: r.type, field: r.field, days: r.days, updatedAt: r.updated_at })),
    );
  }

  async putRetentionRule(tenant: string, rule: RetentionRuleRow): Promise<void> {
    this.run(() =>
      this.stmt(
        'INSERT INTO retention_rules (tenant, type, field, days, updated_at) VALUES (?, ?, ?, ?, ?) ' +
          'ON CONFLICT (tenant, type, field) DO UPDATE SET days = excluded.days, updated_at = excluded.updated_at',
      ).run(tenant, rule.type, rule.field, rule.days, rule.updatedAt),
    );
  }

  async deleteRetentionRule(tenant: string, type: string, field: string): Promise<boolean> {
    return this.run(() => this.stmt('DELETE FROM retention_rules WHERE tenant = ? AND type = ? AND field = ?').run(tenant, type, field).changes > 0);
  }

  async holds(tenant: string): Promise<LegalHoldRow[]> {
    return this.run(() =>
      (
        this.stmt(
          'SELECT id, kind, target, since, until, reason, created_at, created_by, lifted_at, lifted_by FROM legal_holds WHERE tenant = ? ORDER BY created_at, id',
        ).all(tenant) as HoldDbRow[]
      ).map(toHold),
    );
  }

  async putHold(tenant: string, h: LegalHoldRow): Promise<boolean> {
    return this.run(
      () =>
        this.stmt(
          'INSERT INTO legal_holds (tenant, id, kind, target, since, until, reason, created_at, created_by, lifted_at, lifted_by) ' +
            'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
        ).run(
          tenant,
          h.id,
          h.kind,
          h.target ?? null,
          h.since ?? null,
          h.until ?? null,
          h.reason,
          h.createdAt,
          h.createdBy,
          h.liftedAt ?? null,
          h.liftedBy ?? null,
        ).changes > 0,
    );
  }

  async liftHold(tenant: string, id: string, at: string, by: string): Promise<boolean> {
    return this.run(
      () => this.stmt('UPDATE legal_holds SET lifted_at = ?, lifted_by = ? WHERE tenant = ? AND id = ? AND lifted_at IS NULL').run(at, by, tenant, id).changes > 0,
    );
  }

  async getSetting(tenant: string, name: string): Promise<string | undefined> {
    return this.run(() => (this.stmt('SELECT value FROM record_settings WHERE tenant = ? AND name = ?').get(tenant, name) as { value: string } | undefined)?.value);
  }

  async putSetting(tenant: string, name: string, value: string): Promise<void> {
    this.run(() =>
      this.stmt('INSERT INTO record_settings (tenant, name, value) VALUES (?, ?, ?) ON CONFLICT (tenant, name) DO UPDATE SET value = excluded.value').run(
        tenant,
        name,
        value,
      ),
    );
  }

  async digestKey(tenant: string, candidate: Uint8Array): Promise<Uint8Array> {
    return this.run(() => {
      this.stmt('INSERT INTO digest_keys (tenant, key) VALUES (?, ?) ON CONFLICT DO NOTHING').run(tenant, candidate);
      return bytes((this.stmt('SELECT key FROM digest_keys WHERE tenant = ?').get(tenant) as { key: Uint8Array }).key);
    });
  }

  async cursor(tenant: string, name: string): Promise<number> {
    return this.run(() => (this.stmt('SELECT next FROM record_cursors WHERE tenant = ? AND name = ?').get(tenant, name) as { next: number } | undefined)?.next ?? 0);
  }

  async setCursor(tenant: string, name: string, next: number): Promise<void> {
    this.run(() =>
      this.stmt('INSERT INTO record_cursors (tenant, name, next) VALUES (?, ?, ?) ON CONFLICT (tenant, name) DO UPDATE SET next = excluded.next').run(
        tenant,
        name,
        next,
      ),
    );
  }

  async putDigests(tenant: string, rows: readonly ValueDigestRow[], cursor: { name: string; next: number }): Promise<void> {
    const insert = this.stmt('INSERT INTO value_digests (tenant, digest, idx, path) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING');
    const advance = this.stmt(
      'INSERT INTO record_cursors (tenant, name, next) VALUES (?, ?, ?) ON CONFLICT (tenant, name) DO UPDATE SET next = max(next, excluded.next)',
    );
    this.run(() =>
      this.db.transaction(() => {
        for (const r of rows) insert.run(tenant, r.digest, r.index, r.path);
        advance.run(tenant, cursor.name, cursor.next);
      }).immediate(),
    );
  }

  async findDigests(tenant: string, digest: string, page: { limit: number; after?: number }): Promise<number[]> {
    return this.run(() =>
      (
        this.stmt('SELECT DISTINCT idx FROM value_digests WHERE tenant = ? AND digest = ? AND idx > ? ORDER BY idx LIMIT ?').all(
          tenant,
          digest,
          page.after ?? -1,
          clampLimit(page.limit),
        ) as { idx: number }[]
      ).map((r) => r.idx),
    );
  }

  async deleteDigests(tenant: string, index: number, paths: readonly string[]): Promise<number> {
    const del = this.stmt('DELETE FROM value_digests WHERE tenant = ? AND idx = ? AND (path = ? OR substr(path, 1, length(?) + 1) = ? || \'/\')');
    return this.run(() =>
      this.db.transaction(() => {
        let n = 0;
        for (const p of paths) n += del.run(tenant, index, p, p, p).changes;
        return n;
      }).immediate(),
    );
  }
}
