/**
 * The records conformance suite: the rows of `LedgerStore.records` (retention
 * rules, legal holds, settings, cursors, keyed digests) and the compare-and-set
 * of disclosures behave the same on every store, and never touch an entry's
 * bytes, a tree node or a checkpoint.
 */
import { type EventDraft } from '@custody/core';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { LedgerStore, StoredEntry } from '../store.js';
import { FixtureLog } from './batch-fixtures.js';
import { storeExcluded } from './postgres-test-env.js';
import type { StoreConformanceOptions } from './store-conformance.js';

/**
 * Registers the records suite for one store (call it at the top level of a test file).
 * @example
 * runRecordsConformance(sqliteConformanceOptions());
 */
export function runRecordsConformance(opts: StoreConformanceOptions): void {
  const reason = opts.skip === true ? 'skipped by its options' : typeof opts.skip === 'string' ? opts.skip : storeExcluded(opts.name);
  if (reason !== undefined) {
    describe.skip(`records: ${opts.name} (${reason})`, () => {
      it('is skipped', () => undefined);
    });
    return;
  }
  describe(`records: ${opts.name}`, () => defineSuite(opts));
}

let seq = 0;
const newTenant = (label: string) => `${label}-${Date.now().toString(36)}-${(seq++).toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;

function drafts(n: number): EventDraft[] {
  return Array.from({ length: n }, (_, i) => ({
    id: uuidv7(),
    type: 'tool.requested' as const,
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    session: { id: 's-1' },
    initiator: { type: 'human' as const, id: 'ivy@example.com' },
    actor: { type: 'agent' as const, id: 'agent:1' },
    tool: { name: 'refund' },
    data: { arguments: { customerId: `c-${i}`, amount: i }, result: { ok: true } },
  }));
}

function defineSuite(opts: StoreConformanceOptions): void {
  let store: LedgerStore;
  const tenant = newTenant('records');
  let entries: StoredEntry[] = [];

  beforeAll(async () => {
    store = await opts.createStore();
    await store.migrate();
    const log = new FixtureLog({ tenant });
    const b = log.append(drafts(5));
    await store.append(b, 0);
    entries = await store.getEntries(tenant, [0, 1, 2, 3, 4]);
  });

  afterAll(async () => {
    await store?.close();
    await opts.teardown?.();
  });

  it('replaces disclosures only when they are still the expected ones, never the entry bytes', async () => {
    const e = entries[1]!;
    expect(e.disclosures.length).toBe(2);
    const nodesBefore = await store.getNodes(tenant, [{ level: 0, index: 1 }]);
    const cpBefore = await store.latestCheckpoint(tenant);
    expect(await store.records.replaceDisclosures(tenant, 1, ['stale'], [])).toBe(false);
    expect(await store.records.replaceDisclosures(tenant, 1, e.disclosures, [e.disclosures[0]!])).toBe(true);
    // The second writer of the same expected value loses.
    expect(await store.records.replaceDisclosures(tenant, 1, e.disclosures, [])).toBe(false);
    expect(await store.records.replaceDisclosures(tenant, 99, [], [])).toBe(false);
    const after = (await store.getEntries(tenant, [1]))[0]!;
    expect(after.disclosures).toEqual([e.disclosures[0]]);
    expect(after.entry).toEqual(e.entry);
    expect(after.digest).toBe(e.digest);
    expect(await store.getNodes(tenant, [{ level: 0, index: 1 }])).toEqual(nodesBefore);
    expect(await store.latestCheckpoint(tenant)).toEqual(cpBefore);
  });

  it('keeps retention rules per tenant, replacing by type and field', async () => {
    const other = newTenant('records-other');
    await store.records.putRetentionRule(tenant, { type: 'tool.*', field: '', days: 30, updatedAt: '2026-01-01T00:00:00Z' });
    await store.records.putRetentionRule(tenant, { type: '*', field: '/data/result', days: 7, updatedAt: '2026-01-01T00:00:00Z' });
    await store.records.putRetentionRule(tenant, { type: 'tool.*', field: '', days: 60, updatedAt: '2026-01-02T00:00:00Z' });
    await store.records.putRetentionRule(other, { type: '*', field: '', days: 1, updatedAt: '2026-01-01T00:00:00Z' });
    expect(await store.records.retentionRules(tenant)).toEqual([
      { type: '*', field: '/data/result', days: 7, updatedAt: '2026-01-01T00:00:00Z' },
      { type: 'tool.*', field: '', days: 60, updatedAt: '2026-01-02T00:00:00Z' },
    ]);
    expect(await store.records.deleteRetentionRule(tenant, '*', '/data/result')).toBe(true);
    expect(await store.records.deleteRetentionRule(tenant, '*', '/data/result')).toBe(false);
    expect((await store.records.retentionRules(tenant)).map((r) => r.type)).toEqual(['tool.*']);
    expect(await store.records.retentionRules(other)).toHaveLength(1);
  });

  it('keeps legal holds, and lifts each once', async () => {
    const h = { id: uuidv7(), kind: 'session' as const, target: 's-1', reason: 'case 7', createdAt: '2026-01-01T00:00:00Z', createdBy: 'key:a' };
    expect(await store.records.putHold(tenant, h)).toBe(true);
    expect(await store.records.putHold(tenant, { ...h, reason: 'other' })).toBe(false);
    const r = { id: uuidv7(), kind: 'range' as const, since: '2026-01-01T00:00:00Z', until: '2026-02-01T00:00:00Z', reason: 'audit', createdAt: '2026-01-02T00:00:00Z', createdBy: 'key:a' };
    expect(await store.records.putHold(tenant, r)).toBe(true);
    expect(await store.records.holds(tenant)).toEqual([h, r]);
    expect(await store.records.liftHold(tenant, h.id, '2026-01-03T00:00:00Z', 'key:b')).toBe(true);
    expect(await store.records.liftHold(tenant, h.id, '2026-01-04T00:00:00Z', 'key:b')).toBe(false);
    expect(await store.records.liftHold(tenant, 'nope', '2026-01-04T00:00:00Z', 'key:b')).toBe(false);
    expect((await store.records.holds(tenant))[0]).toEqual({ ...h, liftedAt: '2026-01-03T00:00:00Z', liftedBy: 'key:b' });
    expect(await store.records.holds(newTenant('records-none'))).toEqual([]);
  });

  it('keeps settings and one digest key per tenant (the first one stored wins)', async () => {
    expect(await store.records.getSetting(tenant, 'digestPaths')).toBeUndefined();
    await store.records.putSetting(tenant, 'digestPaths', '["/a"]');
    await store.records.putSetting(tenant, 'digestPaths', '["/b"]');
    expect(await store.records.getSetting(tenant, 'digestPaths')).toBe('["/b"]');
    const k1 = new Uint8Array(32).fill(1);
    const k2 = new Uint8Array(32).fill(2);
    expect(await store.records.digestKey(tenant, k1)).toEqual(k1);
    expect(await store.records.digestKey(tenant, k2)).toEqual(k1);
    const [a, b] = await Promise.all([store.records.digestKey(`${tenant}-x`, k1), store.records.digestKey(`${tenant}-x`, k2)]);
    expect(a).toEqual(b);
  });

  it('gives every caller racing for a new tenant the one key that won', async () => {
    // On PostgreSQL the losers' insert waits for the winner's, finds the conflict and does nothing,
    // while the statement's own read cannot see the winner's row: each loser must still get it.
    for (let round = 0; round < 20; round++) {
      const t = `${tenant}-race-${round}`;
      const keys = await Promise.all([1, 2, 3, 4].map((n) => store.records.digestKey(t, new Uint8Array(32).fill(n))));
      for (const k of keys) expect(k).toEqual(keys[0]);
      expect(await store.records.digestKey(t, new Uint8Array(32).fill(9))).toEqual(keys[0]);
    }
  });

  it('indexes keyed digests with a cursor that only moves forward, and deletes them by entry and path', async () => {
    expect(await store.records.cursor(tenant, 'digests')).toBe(0);
    await store.records.putDigests(
      tenant,
      [
        { index: 0, path: '/data/arguments/customerId', digest: 'd-a' },
        { index: 2, path: '/data/arguments/customerId', digest: 'd-a' },
        { index: 2, path: '/data/arguments/other', digest: 'd-a' },
        { index: 3, path: '/data/arguments/customerId', digest: 'd-b' },
      ],
      { name: 'digests', next: 4 },
    );
    // Re-indexing the same rows is harmless; an older cursor does not move it back.
    await store.records.putDigests(tenant, [{ index: 0, path: '/data/arguments/customerId', digest: 'd-a' }], { name: 'digests', next: 1 });
    expect(await store.records.cursor(tenant, 'digests')).toBe(4);
    expect(await store.records.findDigests(tenant, 'd-a', { limit: 10 })).toEqual([0, 2]);
    expect(await store.records.findDigests(tenant, 'd-a', { limit: 1 })).toEqual([0]);
    expect(await store.records.findDigests(tenant, 'd-a', { limit: 10, after: 0 })).toEqual([2]);
    expect(await store.records.findDigests(tenant, 'nope', { limit: 10 })).toEqual([]);
    expect(await store.records.findDigests(newTenant('records-none'), 'd-a', { limit: 10 })).toEqual([]);
    // `/data/argument` is not a parent of `/data/arguments/…`; `/data/arguments` is.
    expect(await store.records.deleteDigests(tenant, 2, ['/data/argument'])).toBe(0);
    expect(await store.records.deleteDigests(tenant, 2, ['/data/arguments'])).toBe(2);
    expect(await store.records.deleteDigests(tenant, 0, ['/data/arguments/customerId'])).toBe(1);
    expect(await store.records.findDigests(tenant, 'd-a', { limit: 10 })).toEqual([]);
    await store.records.setCursor(tenant, 'digests', 0);
    expect(await store.records.cursor(tenant, 'digests')).toBe(0);
    await store.records.putDigests(tenant, [], { name: 'digests', next: 5 });
    expect(await store.records.cursor(tenant, 'digests')).toBe(5);
  });

  it('keeps its rows across a reopen', async () => {
    if (opts.reopen === undefined) return;
    store = await opts.reopen(store);
    expect((await store.records.retentionRules(tenant)).length).toBe(1);
    expect((await store.records.holds(tenant)).length).toBe(2);
    expect(await store.records.cursor(tenant, 'digests')).toBe(5);
    expect((await store.getEntries(tenant, [1]))[0]!.disclosures.length).toBe(1);
  });
}
