/**
 * Records management on real stores (SQLite, and PostgreSQL when reachable):
 * redaction, erasure, retention with legal hold, and keyed-digest search, each
 * checked with the offline verifier before and after.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { decodeEntry, type EventDraft, fromBase64, parseVerifierKey, utf8, verifyBundle, verifyConsistency, verifyReceipt } from '@custody/core';
import { Ledger, type LedgerStore, PostgresStore, SqliteStore } from '@custody/ledger';
import { postgresTestEnv } from '@custody/ledger/testing';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, describe, expect, it } from 'vitest';

import { RecordsError } from './errors.js';
import { Records } from './records.js';
import { governingRule } from './retention.js';

const pg = await postgresTestEnv();
const dir = mkdtempSync(join(tmpdir(), 'custody-records-'));
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
  rmSync(dir, { recursive: true, force: true });
});

const SEED = new Uint8Array(32).fill(7);
const DAY = 86_400_000;

async function open(kind: 'sqlite' | 'postgres'): Promise<Ledger> {
  let store: LedgerStore;
  if (kind === 'sqlite') store = new SqliteStore({ path: join(dir, `${uuidv7()}.db`) });
  else {
    const schema = await pg.freshSchema();
    store = new PostgresStore({ connectionString: pg.url, schema, pool: { max: 4 } });
    cleanups.push(() => pg.dropSchema(schema));
  }
  const ledger = await Ledger.open({ store, logSeed: SEED, originHost: 'records.test', maxWaitMs: 1 });
  cleanups.unshift(() => ledger.close());
  return ledger;
}

/** A sealed session of `initiator` with two tool calls whose arguments carry a customer id. */
function sessionDrafts(session: string, initiator: string, customers: string[]): EventDraft[] {
  const who = { initiator: { type: 'human' as const, id: initiator }, actor: { type: 'agent' as const, id: 'agent:refunds' } };
  const t = new Date().toISOString();
  const out: EventDraft[] = [{ id: uuidv7(), type: 'session.opened', time: t, session: { id: session, objective: 'refunds' }, ...who }];
  for (const c of customers) {
    out.push({
      id: uuidv7(),
      type: 'tool.requested',
      time: t,
      session: { id: session },
      ...who,
      tool: { name: 'refund' },
      data: { arguments: { customerId: c, amount: 12 }, prompt: `refund ${c}` },
    });
    out.push({ id: uuidv7(), type: 'tool.completed', time: t, session: { id: session }, ...who, tool: { name: 'refund' }, data: { result: { ok: true, customer: c } } });
  }
  out.push({ id: uuidv7(), type: 'session.closed', time: t, session: { id: session }, ...who });
  return out;
}

async function append(ledger: Ledger, tenant: string, drafts: EventDraft[]): Promise<void> {
  for (const r of await ledger.append(tenant, drafts)) if (r.status === 'rejected') throw r.reason;
}

async function adminEntries(ledger: Ledger, tenant: string, type: string) {
  return (await ledger.query(tenant, { type }, { limit: 1000, order: 'asc' })).items.map((v) => v.event);
}

const STORES = [
  ['sqlite', false],
  ['postgres', pg.skip],
] as const;

describe.each(STORES)('records on %s', (kind, skip) => {
  it.skipIf(skip)('redacts after sealing: bundles before and after verify, the later one reports the field redacted, no value is recorded', async () => {
    const ledger = await open(kind);
    const records = new Records(ledger);
    const tenant = 'acme';
    const drafts = sessionDrafts('s-red', 'ivy@example.com', ['c-1042']);
    await append(ledger, tenant, drafts);
    const before = await ledger.bundle(tenant, 's-red');
    const key = ledger.verifierKey(tenant);
    const r0 = verifyBundle(before, { verifierKey: key });
    expect(r0.verdict).toBe('complete');
    expect(r0.records[1]!.redacted).toEqual([]);

    const call = drafts[1]!.id!;
    const res = await records.redact(tenant, { event: call, fields: ['/data/arguments'], reason: 'GDPR request 88', by: 'key:admin1' });
    expect(res).toMatchObject({ event: call, redacted: ['/data/arguments'], alreadyRedacted: [] });
    expect(res.entry).toBeDefined();

    const after = await ledger.bundle(tenant, 's-red');
    const r1 = verifyBundle(after, { verifierKey: key });
    expect(r1.verdict).toBe('complete');
    expect(r1.records[1]!.redacted).toEqual(['/data/arguments']);
    expect(r1.records[1]!.disclosed).toEqual(['/data/prompt']);
    // The old bundle still verifies on its own, its entries are byte-identical, and the log grew consistently.
    expect(verifyBundle(before, { verifierKey: key }).ok).toBe(true);
    expect(after.records.map((x) => x.entry)).toEqual(before.records.map((x) => x.entry));
    const oldSize = r0.checkpoint!.size;
    const newCp = r1.checkpoint!;
    const proof = await ledger.consistency(tenant, oldSize, newCp.size);
    expect(verifyConsistency(oldSize, newCp.size, fromBase64(r0.checkpoint!.rootHash), fromBase64(newCp.rootHash), proof)).toBe(true);

    const [entry] = await adminEntries(ledger, tenant, 'admin.redacted');
    expect(entry).toMatchObject({ type: 'admin.redacted', actor: { type: 'service', id: 'key:admin1' }, data: { event: call, fields: ['/data/arguments'], reason: 'GDPR request 88' } });
    const stored = await ledger.store.getEntryById(tenant, entry!.id);
    expect(new TextDecoder().decode(stored!.entry)).not.toContain('c-1042');
    expect((await ledger.event(tenant, call)).redacted).toEqual(['/data/arguments']);

    // Again: nothing left to drop, nothing recorded.
    const again = await records.redact(tenant, { event: call, fields: ['/data/arguments'], reason: 'again', by: 'key:admin1' });
    expect(again).toMatchObject({ redacted: [], alreadyRedacted: ['/data/arguments'] });
    expect(again.entry).toBeUndefined();
    expect(await adminEntries(ledger, tenant, 'admin.redacted')).toHaveLength(1);

    await expect(records.redact(tenant, { event: call, fields: ['/data/arguments/customerId'], reason: 'x', by: 'k' })).rejects.toMatchObject({
      code: 'FIELD_NOT_COMMITTED',
    });
    await expect(records.redact(tenant, { event: call, fields: ['tool'], reason: 'x', by: 'k' })).rejects.toMatchObject({ code: 'POINTER_INVALID' });
    await expect(records.redact(tenant, { event: call, fields: ['/data/prompt'], reason: ' ', by: 'k' })).rejects.toMatchObject({ code: 'RECORDS_REQUEST_INVALID' });
    await expect(records.redact(tenant, { event: uuidv7(), fields: ['/data/prompt'], reason: 'x', by: 'k' })).rejects.toMatchObject({ code: 'EVENT_NOT_FOUND' });
  });

  it.skipIf(skip)('erases a data subject page by page, and leaves everyone else disclosed', async () => {
    const ledger = await open(kind);
    const records = new Records(ledger);
    const tenant = 'acme';
    await append(ledger, tenant, sessionDrafts('s-a', 'ann@example.com', ['c-1', 'c-2']));
    await append(ledger, tenant, sessionDrafts('s-b', 'bob@example.com', ['c-3']));
    await append(ledger, tenant, sessionDrafts('s-a2', 'ann@example.com', ['c-4']));
    let cursor: string | undefined;
    let events = 0;
    let pages = 0;
    do {
      const r = await records.erase(tenant, { subject: 'ann@example.com', reason: 'erasure request 9', by: 'key:dpo', limit: 3, ...(cursor ? { cursor } : {}) });
      events += r.events;
      cursor = r.nextCursor;
      pages++;
    } while (cursor !== undefined);
    expect(pages).toBeGreaterThan(1);
    expect(events).toBe(6); // 3 tool calls x (requested + completed)
    for (const s of ['s-a', 's-a2']) {
      const rep = verifyBundle(await ledger.bundle(tenant, s), { verifierKey: ledger.verifierKey(tenant) });
      expect(rep.verdict).toBe('complete');
      expect(rep.records.every((x) => x.disclosed.length === 0)).toBe(true);
      expect(rep.records.some((x) => x.redacted.length > 0)).toBe(true);
    }
    const bob = verifyBundle(await ledger.bundle(tenant, 's-b'), { verifierKey: ledger.verifierKey(tenant) });
    expect(bob.records.filter((x) => x.disclosed.length > 0)).toHaveLength(2);
    const logged = await adminEntries(ledger, tenant, 'admin.redacted');
    expect(logged).toHaveLength(6);
    expect(logged.every((e) => (e.data as { erasure: { subject: string } }).erasure.subject === 'ann@example.com')).toBe(true);
  });

  it.skipIf(skip)('purges past retention, keeps held entries until the hold is lifted, and every proof still verifies', async () => {
    const ledger = await open(kind);
    let now = new Date();
    const records = new Records(ledger, { now: () => now, chunk: 2 });
    const tenant = 'acme';
    await append(ledger, tenant, sessionDrafts('s-old', 'ann@example.com', ['c-1']));
    await append(ledger, tenant, sessionDrafts('s-hold', 'bob@example.com', ['c-2']));
    const key = ledger.verifierKey(tenant);
    const bundlesBefore = { old: await ledger.bundle(tenant, 's-old'), hold: await ledger.bundle(tenant, 's-hold') };
    const receiptBefore = await ledger.receipt(tenant, 1);

    await records.setRetention(tenant, { type: 'tool.*', days: 30, by: 'key:admin' });
    await records.setRetention(tenant, { type: 'tool.requested', field: '/data/prompt', days: 90, by: 'key:admin' });
    const hold = await records.placeHold(tenant, { kind: 'session', session: 's-hold', reason: 'litigation 12', by: 'key:legal' });

    // Not yet due: nothing purged, but the run is recorded.
    const early = await records.purge(tenant, { by: 'key:admin' });
    expect(early).toMatchObject({ events: 0, fields: 0, held: 0 });
    expect(early.entries).toHaveLength(1);

    now = new Date(Date.now() + 31 * DAY);
    const dry = await records.purge(tenant, { by: 'key:admin', dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, events: 2, fields: 2, held: 2, entries: [] });
    const run = await records.purge(tenant, { by: 'key:admin' });
    // s-old: the call's arguments (tool.*, 30 days) and the result; its prompt is kept 90 days.
    expect(run).toMatchObject({ events: 2, fields: 2, held: 2, holds: [hold.id] });
    const old = verifyBundle(await ledger.bundle(tenant, 's-old'), { verifierKey: key });
    expect(old.verdict).toBe('complete');
    expect(old.records[1]!.redacted).toEqual(['/data/arguments']);
    expect(old.records[1]!.disclosed).toEqual(['/data/prompt']);
    expect(old.records[2]!.redacted).toEqual(['/data/result']);
    const held = verifyBundle(await ledger.bundle(tenant, 's-hold'), { verifierKey: key });
    expect(held.records.every((x) => x.redacted.length === 0)).toBe(true);

    // Everything made before the purge still verifies, and the old receipt's checkpoint is consistent with the new head.
    expect(verifyBundle(bundlesBefore.old, { verifierKey: key }).ok).toBe(true);
    expect(verifyBundle(bundlesBefore.hold, { verifierKey: key }).ok).toBe(true);
    const entry1 = (await ledger.store.getEntries(tenant, [1]))[0]!.entry;
    expect(verifyReceipt(entry1, receiptBefore, parseVerifierKey(key)).index).toBe(1);

    // Lifting the hold lets the next run purge it.
    await records.liftHold(tenant, { id: hold.id, by: 'key:legal', reason: 'case closed' });
    const later = await records.purge(tenant, { by: 'key:admin' });
    expect(later).toMatchObject({ events: 2, held: 0 });
    expect(verifyBundle(await ledger.bundle(tenant, 's-hold'), { verifierKey: key }).records[1]!.redacted).toEqual(['/data/arguments']);

    now = new Date(Date.now() + 91 * DAY);
    const prompts = await records.purge(tenant, { by: 'key:admin' });
    expect(prompts.fields).toBe(2);
    const purged = await adminEntries(ledger, tenant, 'admin.purged');
    expect(purged.length).toBeGreaterThanOrEqual(5);
    expect(await adminEntries(ledger, tenant, 'admin.retention_set')).toHaveLength(2);
    expect(await adminEntries(ledger, tenant, 'admin.hold_placed')).toHaveLength(1);
    expect(await adminEntries(ledger, tenant, 'admin.hold_lifted')).toHaveLength(1);
    // The admin entries name events and fields, never values.
    for (const e of purged) expect(JSON.stringify(e)).not.toMatch(/"c-\d"|refund c-/);
    await expect(records.liftHold(tenant, { id: hold.id, by: 'k' })).rejects.toMatchObject({ code: 'HOLD_NOT_FOUND' });
  });

  it.skipIf(skip)('holds on a principal and on a time range block a purge too', async () => {
    const ledger = await open(kind);
    const now = new Date(Date.now() + 10 * DAY);
    const records = new Records(ledger, { now: () => now });
    const tenant = 'acme';
    await append(ledger, tenant, sessionDrafts('s-1', 'ann@example.com', ['c-1']));
    await append(ledger, tenant, sessionDrafts('s-2', 'bob@example.com', ['c-2']));
    await records.setRetention(tenant, { type: '*', days: 1, by: 'key:admin' });
    await records.placeHold(tenant, { kind: 'principal', principal: 'ann@example.com', reason: 'inquiry', by: 'key:legal' });
    const range = await records.placeHold(tenant, {
      kind: 'range',
      since: new Date(Date.now() - DAY).toISOString(),
      until: new Date(Date.now() + DAY).toISOString(),
      reason: 'incident window',
      by: 'key:legal',
    });
    expect((await records.purge(tenant, { by: 'key:admin' })).events).toBe(0);
    await records.liftHold(tenant, { id: range.id, by: 'key:legal' });
    const r = await records.purge(tenant, { by: 'key:admin' });
    // Only bob's two calls; ann's stay under the principal hold.
    expect(r).toMatchObject({ events: 2, held: 2 });
    await expect(records.placeHold(tenant, { kind: 'range', since: 'yesterday', until: 'today', reason: 'x', by: 'k' } as never)).rejects.toMatchObject({
      code: 'HOLD_INVALID',
    });
    await expect(records.setRetention(tenant, { type: 'Tool', days: 1, by: 'k' })).rejects.toMatchObject({ code: 'RETENTION_INVALID' });
    await expect(records.setRetention(tenant, { type: '*', days: -1, by: 'k' })).rejects.toMatchObject({ code: 'RETENTION_INVALID' });
    await expect(records.deleteRetention(tenant, { type: 'tool.*', by: 'k' })).rejects.toMatchObject({ code: 'RETENTION_NOT_FOUND' });
  });

  it.skipIf(skip)('finds every call that used a value by its keyed digest, without storing the value, and forgets it on redaction', async () => {
    const ledger = await open(kind);
    const records = new Records(ledger);
    const tenant = 'acme';
    const d1 = sessionDrafts('s-1', 'ann@example.com', ['c-7', 'c-8']);
    await append(ledger, tenant, d1);
    await expect(records.findValue(tenant, { path: '/data/arguments/customerId', value: 'c-7' })).rejects.toMatchObject({ code: 'DIGEST_PATH_NOT_INDEXED' });
    await records.setDigestPaths(tenant, { paths: ['/data/arguments/customerId', '/data/result/customer'], by: 'key:admin' });
    // Entries appended after the paths were set are found too.
    const d2 = sessionDrafts('s-2', 'bob@example.com', ['c-7']);
    await append(ledger, tenant, d2);
    const found = await records.findValue(tenant, { path: '/data/arguments/customerId', value: 'c-7' });
    expect(found.items.map((v) => v.event.id)).toEqual([d1[1]!.id, d2[1]!.id]);
    const paged = await records.findValue(tenant, { path: '/data/arguments/customerId', value: 'c-7', limit: 1 });
    expect(paged.items).toHaveLength(1);
    const next = await records.findValue(tenant, { path: '/data/arguments/customerId', value: 'c-7', limit: 1, cursor: paged.nextCursor! });
    expect(next.items.map((v) => v.event.id)).toEqual([d2[1]!.id]);
    expect(next.nextCursor).toBeUndefined();
    expect((await records.findValue(tenant, { path: '/data/result/customer', value: 'c-8' })).items.map((v) => v.event.id)).toEqual([d1[4]!.id]);
    expect((await records.findValue(tenant, { path: '/data/arguments/customerId', value: 'c-9' })).items).toEqual([]);

    // The value is nowhere in the digest index.
    const digests = await ledger.store.records.findDigests(tenant, 'c-7', { limit: 10 });
    expect(digests).toEqual([]);

    await records.redact(tenant, { event: d2[1]!.id!, fields: ['/data/arguments'], reason: 'erasure', by: 'key:admin' });
    expect((await records.findValue(tenant, { path: '/data/arguments/customerId', value: 'c-7' })).items.map((v) => v.event.id)).toEqual([d1[1]!.id]);
    await expect(records.findValue(tenant, { path: '/data/arguments/customerId', value: 'c-7', cursor: 'x' })).rejects.toMatchObject({ code: 'CURSOR_INVALID' });
    expect(await adminEntries(ledger, tenant, 'admin.digest_paths_set')).toHaveLength(1);
  });
});

describe('governingRule', () => {
  const rule = (type: string, field: string, days: number) => ({ type, field, days, updatedAt: '2026-01-01T00:00:00Z' });
  const rules = [rule('*', '', 365), rule('*', '/data/prompt', 30), rule('tool.*', '', 90), rule('tool.completed', '/data/result', 7)];
  it('picks the most specific type, then the most specific field', () => {
    expect(governingRule(rules, 'prompt.received', '/data/prompt')?.days).toBe(30);
    expect(governingRule(rules, 'model.output', '/data/output')?.days).toBe(365);
    expect(governingRule(rules, 'tool.requested', '/data/prompt')?.days).toBe(90);
    expect(governingRule(rules, 'tool.completed', '/data/result')?.days).toBe(7);
    expect(governingRule(rules, 'tool.completed', '/data/arguments')?.days).toBe(90);
    expect(governingRule([rule('tool.*', '', 1)], 'tools.x', '/data/a')).toBeUndefined();
    expect(governingRule([], 'tool.completed', '/data/result')).toBeUndefined();
  });
  it('is an error class with codes', () => {
    expect(new RecordsError('HOLD_INVALID', 'm').code).toBe('HOLD_INVALID');
    expect(decodeEntry).toBeTypeOf('function');
    expect(utf8('x')).toHaveLength(1);
  });
});
