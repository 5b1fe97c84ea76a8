/**
 * The ledger on real stores: sequencing, group commit, idempotency, seals,
 * proofs from stored nodes, bundles, audit, several writers on one PostgreSQL,
 * and identical roots for identical input on every store.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  type EventDraft,
  parseCheckpoint,
  parseNote,
  parseVerifierKey,
  type RandomBytes,
  signerFromSeed,
  toBase64,
  verifyBundle,
  verifyCheckpoint,
  verifyConsistency,
  verifyReceipt,
} from '@custody/core';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';

import { audit } from './audit.js';
import { Ledger } from './ledger.js';
import { PostgresStore } from './postgres/postgres-store.js';
import { SqliteStore } from './sqlite/sqlite-store.js';
import type { LedgerStore } from './store.js';
import { postgresTestEnv } from './testing/postgres-test-env.js';

const seed = new Uint8Array(32).fill(3);
const clock = () => new Date('2026-11-22T10:00:00.000Z');
function seeded(n: number): RandomBytes {
  let x = n;
  return (len) => Uint8Array.from({ length: len }, () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 24));
}

const pg = await postgresTestEnv();
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

interface Backend {
  name: string;
  skip: string | false;
  make: () => Promise<LedgerStore>;
}
const backends: Backend[] = [
  { name: 'sqlite', skip: pg.only && pg.only !== 'sqlite' ? 'STORES excludes sqlite' : false, make: async () => new SqliteStore({ path: join(mkdtempSync(join(tmpdir(), 'custody-ledger-')), 'ledger.db') }) },
  {
    name: 'postgres',
    skip: pg.skip,
    make: async () => {
      const schema = await pg.freshSchema();
      cleanups.push(() => pg.dropSchema(schema));
      return new PostgresStore({ connectionString: pg.url, schema });
    },
  },
];

let n = 0;
const uuid = () => `019ab3a0-0000-7000-8000-${(n++).toString(16).padStart(12, '0')}`;
function ev(session: string, type: EventDraft['type'], extra: Partial<EventDraft> = {}): EventDraft {
  return {
    id: uuid(),
    type,
    time: '2026-11-22T09:59:00.000Z',
    session: { id: session },
    initiator: { type: 'human', id: 'alice@example.com' },
    actor: { type: 'agent', id: 'refund-agent' },
    ...(type.startsWith('tool.') ? { tool: { name: 'orders.lookup' } } : {}),
    ...extra,
  } as EventDraft;
}
async function ok(ledger: Ledger, tenant: string, drafts: EventDraft[]) {
  const res = await ledger.append(tenant, drafts);
  return res.map((r) => {
    if (r.status === 'rejected') throw r.reason;
    return r.value;
  });
}

describe.each(backends)('ledger on $name', (b) => {
  it.skipIf(b.skip)('sequences, links and seals sessions; bundles verify as complete', async () => {
    const ledger = await Ledger.open({ store: await b.make(), logSeed: seed, originHost: 'custody.test' });
    const r = await ok(ledger, 'acme', [
      ev('s1', 'session.opened', { session: { id: 's1', objective: 'Refund order 1234' } }),
      ev('s1', 'tool.requested', { data: { arguments: { orderId: '1234' } } }),
      ev('s2', 'session.opened'),
    ]);
    expect(r.map((x) => [x.index, x.seq])).toEqual([[0, 1], [1, 2], [2, 1]]);
    const [closed] = await ok(ledger, 'acme', [ev('s1', 'session.closed')]);
    expect(closed!.seq).toBe(3);
    const bundle = await ledger.bundle('acme', 's1');
    const report = verifyBundle(bundle, { verifierKey: ledger.verifierKey('acme') });
    expect(report.failures).toEqual([]);
    expect(report.verdict).toBe('complete');
    expect(report.records[1]!.disclosed).toEqual(['/data/arguments']);
    expect(verifyBundle(await ledger.bundle('acme', 's2')).verdict).toBe('intact');
    const refused = await ledger.append('acme', [ev('s1', 'tool.requested')]);
    const first = refused[0]!;
    expect(first.status === 'rejected' && (first.reason as { code: string }).code).toBe('SESSION_SEALED');
    const view = await ledger.session('acme', 's1');
    expect(view).toMatchObject({ sealed: true, entries: 3, objective: 'Refund order 1234', initiatorId: 'alice@example.com' });
    await ledger.close();
  });

  it.skipIf(b.skip)('looks up only the ids that may be in the log already: not those minted as their events were prepared (idAssigned)', async () => {
    const store = await b.make();
    const looked: string[][] = [];
    const counting = new Proxy(store, {
      get(target, prop) {
        if (prop === 'findIds') return (tenant: string, ids: readonly string[]) => (looked.push([...ids]), target.findIds(tenant, ids));
        const value: unknown = Reflect.get(target, prop);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const ledger = await Ledger.open({ store: counting, logSeed: seed, originHost: 'custody.test' });
    const minted = [ev('m1', 'session.opened'), ev('m1', 'tool.requested')].map((d) => ({ ...ledger.prepare('acme', d), idAssigned: true }));
    const r = await ledger.appendPrepared('acme', minted);
    expect(r.map((x) => x.status)).toEqual(['fulfilled', 'fulfilled']);
    expect(looked).toEqual([]);
    // A source's own id is looked up, and a re-sent one answers its original result.
    const given = ev('m1', 'tool.completed');
    const [first] = await ok(ledger, 'acme', [given]);
    const [again] = await ok(ledger, 'acme', [given]);
    expect(again).toEqual({ ...first, duplicate: true });
    expect(looked).toEqual([[given.id], [given.id]]);
    await ledger.close();
  });

  it.skipIf(b.skip)('refuses to open a store with another log key than the one that signs its logs, naming both public keys', async () => {
    const store = await b.make();
    const ledger = await Ledger.open({ store, logSeed: seed, originHost: 'custody.test' });
    await ok(ledger, 'acme', [ev('k1', 'session.opened')]);
    const other = new Uint8Array(32).fill(4);
    const err = await Ledger.open({ store, logSeed: other, originHost: 'custody.test' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const pub = (s: Uint8Array) => toBase64(signerFromSeed('custody.test', s).publicKey);
    expect(err).toMatchObject({ name: 'LedgerError', code: 'CONFIG_INVALID' });
    expect((err as Error).message).toContain(`(public key ${pub(seed)})`);
    expect((err as Error).message).toContain(`given (public key ${pub(other)})`);
    // The same key opens it again, and appends go on.
    const again = await Ledger.open({ store, logSeed: seed, originHost: 'custody.test' });
    await ok(again, 'acme', [ev('k1', 'tool.requested')]);
    await ledger.close();
  });

  it.skipIf(b.skip)('lets the event loop turn while a caller appends again as soon as each append settles', async () => {
    const ledger = await Ledger.open({ store: await b.make(), logSeed: seed, originHost: 'custody.test' });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      // Each append refills the queue before the commit loop looks again: without a
      // turn of the event loop between batches, no timer (nor any I/O) would run here.
      // (A direct await: a wrapper's extra promise hops would hide the problem.)
      for (let i = 0; i < 150; i++) await ledger.append('acme', [ev(`loop${i % 3}`, 'tool.requested')]);
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(0);
    expect((await ledger.store.head('acme'))?.size).toBe(150);
    await ledger.close();
  });

  it.skipIf(b.skip)('group-commits concurrent appends into contiguous indexes, one checkpoint per batch', async () => {
    const ledger = await Ledger.open({ store: await b.make(), logSeed: seed, originHost: 'custody.test' });
    const calls = Array.from({ length: 200 }, (_, i) => ok(ledger, 'acme', [ev(`c${i % 7}`, 'tool.requested')]));
    const results = (await Promise.all(calls)).flat();
    expect(results.map((r) => r.index).sort((a, c) => a - c)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    const sizes = await ledger.store.checkpointSizes('acme');
    expect(sizes.at(-1)).toBe(200);
    expect(sizes.length).toBeLessThan(200);
    for (let s = 0; s < 7; s++) {
      const seqs = results.filter((_, i) => i % 7 === s).map((r) => r.seq ?? 0).sort((a, c) => a - c);
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    }
    expect((await audit(ledger.store, { verifierKey: (t) => ledger.verifierKey(t) })).ok).toBe(true);
    await ledger.close();
  });

  it.skipIf(b.skip)('returns the original result for a re-sent event id, never a duplicate', async () => {
    const ledger = await Ledger.open({ store: await b.make(), logSeed: seed, originHost: 'custody.test' });
    const e = ev('s1', 'session.opened');
    const [first] = await ok(ledger, 'acme', [e]);
    const [again, twin] = await ok(ledger, 'acme', [{ ...e }, ev('s1', 'prompt.received', { id: e.id })]);
    expect(first).toEqual({ id: e.id, index: 0, seq: 1, duplicate: false });
    expect(again).toEqual({ ...first, duplicate: true });
    expect(twin).toEqual({ ...first, duplicate: true });
    const both = await ok(ledger, 'acme', [ev('s1', 'prompt.received', { id: 'aaaaaaaa-0000-7000-8000-000000000001' }), ev('s1', 'prompt.received', { id: 'aaaaaaaa-0000-7000-8000-000000000001' })]);
    expect(both[0]!.duplicate).toBe(false);
    expect(both[1]).toEqual({ ...both[0], duplicate: true });
    expect((await ledger.store.head('acme'))!.size).toBe(2);
    await ledger.close();
  });

  it.skipIf(b.skip)('refuses one invalid event, naming the field, and commits the rest', async () => {
    const ledger = await Ledger.open({ store: await b.make(), logSeed: seed, originHost: 'custody.test' });
    const res = await ledger.append('acme', [ev('s1', 'session.opened'), ev('s1', 'policy.decided'), ev('s1', 'prompt.received')]);
    expect(res.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const reason = (res[1] as PromiseRejectedResult).reason as { code: string; field: string };
    expect(reason.code).toBe('EVENT_INVALID');
    expect(reason.field).toBe('tool');
    expect((reason as unknown as { message: string }).message).toContain('decision: required');
    expect((res[2] as PromiseFulfilledResult<{ seq: number }>).value.seq).toBe(2);
    await ledger.close();
  });

  it.skipIf(b.skip)('serves receipts, checkpoints at earlier sizes and consistency proofs from stored nodes', async () => {
    const ledger = await Ledger.open({ store: await b.make(), logSeed: seed, originHost: 'custody.test' });
    for (let i = 0; i < 9; i++) await ok(ledger, 't', Array.from({ length: i + 1 }, () => ev(`s${i}`, 'tool.requested')));
    const key = parseVerifierKey(ledger.verifierKey('t'));
    const latest = await ledger.latestCheckpoint('t');
    expect(latest.size).toBe(45);
    const entries = await ledger.store.getEntries('t', [0, 17, 44]);
    for (const e of entries) {
      expect(verifyReceipt(e.entry, await ledger.receipt('t', e.index), key).index).toBe(e.index);
      if (e.index < 20) expect(verifyReceipt(e.entry, await ledger.receipt('t', e.index, 20), key).checkpoint.size).toBe(20);
    }
    for (const from of [0, 1, 3, 20, 44, 45]) {
      const old = verifyCheckpoint((await ledger.checkpointAt('t', from)).note, key);
      const proof = await ledger.consistency('t', from);
      expect(verifyConsistency(from, 45, old.rootHash, latest.rootHash, proof)).toBe(true);
    }
    await expect(ledger.checkpointAt('t', 46)).rejects.toMatchObject({ code: 'RANGE_INVALID' });
    await expect(ledger.receipt('t', 45)).rejects.toMatchObject({ code: 'RANGE_INVALID' });
    expect(parseCheckpoint(parseNote((await ledger.latestCheckpoint('empty')).note).text).size).toBe(0);
    await ledger.close();
  });

  it.skipIf(b.skip)('refuses new appends with STORE_BUSY once the oldest waiting event has waited past maxQueueWaitMs, and commits all it accepted', async () => {
    const real = await b.make();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // The real store, with commits held at a gate: the log falls behind.
    const store = new Proxy(real, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (prop === 'append') return async (...args: Parameters<LedgerStore['append']>) => (await gate, target.append(...args));
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const ledger = await Ledger.open({ store, logSeed: seed, originHost: 'custody.test', maxQueueWaitMs: 50 });
    const first = ok(ledger, 'acme', [ev('q1', 'session.opened')]);
    await new Promise((r) => setTimeout(r, 10));
    const second = ok(ledger, 'acme', [ev('q1', 'prompt.received')]);
    await new Promise((r) => setTimeout(r, 80));
    await expect(ledger.append('acme', [ev('q1', 'prompt.received')])).rejects.toMatchObject({ code: 'STORE_BUSY', message: expect.stringContaining('oldest waiting event has waited') });
    release();
    expect((await first)[0]!.index).toBe(0);
    expect((await second)[0]!.index).toBe(1);
    // Caught up: appends are taken again.
    expect((await ok(ledger, 'acme', [ev('q1', 'prompt.received')]))[0]).toMatchObject({ index: 2, seq: 3 });
    expect((await real.head('acme'))!.size).toBe(3);
    await ledger.close();
  });

  it.skipIf(b.skip)('keeps tenants apart', async () => {
    const ledger = await Ledger.open({ store: await b.make(), logSeed: seed, originHost: 'custody.test' });
    await ok(ledger, 'a', [ev('s1', 'session.opened')]);
    await ok(ledger, 'b', [ev('s1', 'session.opened'), ev('s1', 'prompt.received')]);
    expect((await ledger.latestCheckpoint('a')).size).toBe(1);
    expect((await ledger.latestCheckpoint('b')).size).toBe(2);
    expect(ledger.verifierKey('a')).not.toBe(ledger.verifierKey('b'));
    expect((await ledger.query('a', { session: 's1' }, { limit: 10 })).items).toHaveLength(1);
    await ledger.close();
  });
});

describe('identical input, identical roots', () => {
  it.skipIf(backends.some((b) => b.skip))('on every store', async () => {
    const roots: string[] = [];
    for (const b of backends) {
      n = 1000;
      const ledger = await Ledger.open({ store: await b.make(), logSeed: seed, originHost: 'custody.test', now: clock, random: seeded(7) });
      for (let i = 0; i < 5; i++) {
        await ok(ledger, 'acme', [ev('s1', i === 0 ? 'session.opened' : 'tool.requested', { data: { arguments: { i } } }), ev(`x${i}`, 'session.opened')]);
      }
      await ok(ledger, 'acme', [ev('s1', 'session.closed')]);
      roots.push((await ledger.latestCheckpoint('acme')).note);
      await ledger.close();
    }
    expect(new Set(roots).size).toBe(1);
  });
});

describe('several writers on one PostgreSQL', () => {
  it.skipIf(pg.skip)('append one consistent log, with no fork and no duplicate index', async () => {
    const schema = await pg.freshSchema();
    cleanups.push(() => pg.dropSchema(schema));
    const a = await Ledger.open({ store: new PostgresStore({ connectionString: pg.url, schema }), logSeed: seed, originHost: 'custody.test' });
    const b = await Ledger.open({ store: new PostgresStore({ connectionString: pg.url, schema }), logSeed: seed, originHost: 'custody.test' });
    const work = (l: Ledger, tag: string) =>
      Promise.all(Array.from({ length: 60 }, (_, i) => ok(l, 'acme', [ev(`shared-${i % 5}`, 'tool.requested', { data: { result: tag } }), ev(`${tag}-${i}`, 'session.opened')])));
    const [ra, rb] = await Promise.all([work(a, 'a'), work(b, 'b')]);
    const all = [...ra.flat(), ...rb.flat()];
    expect(new Set(all.map((r) => r.index)).size).toBe(240);
    expect(Math.max(...all.map((r) => r.index))).toBe(239);
    const report = await audit(a.store, { verifierKey: (t) => a.verifierKey(t) });
    expect(report.tenants.flatMap((t) => t.problems)).toEqual([]);
    expect(report.ok).toBe(true);
    const cpA = await a.latestCheckpoint('acme');
    const cpB = await b.latestCheckpoint('acme');
    expect(cpA.note).toBe(cpB.note);
    await a.close();
    await b.close();
  });
});

describe('a store from before the log key was kept', () => {
  it.skipIf(pg.only && pg.only !== 'sqlite')('has its latest checkpoints checked against the given key once, then keeps the key', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'custody-ledger-')), 'ledger.db');
    const first = await Ledger.open({ store: new SqliteStore({ path }), logSeed: seed, originHost: 'custody.test' });
    await ok(first, 'acme', [ev('u1', 'session.opened')]);
    await first.close();
    // As such a store was: no logPublicKey in its meta.
    const db = new Database(path);
    expect(db.prepare("DELETE FROM meta WHERE key = 'logPublicKey'").run().changes).toBe(1);
    db.close();
    const store = new SqliteStore({ path });
    await expect(Ledger.open({ store, logSeed: new Uint8Array(32).fill(4), originHost: 'custody.test' })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringContaining('the latest checkpoint of tenant acme does not verify with it'),
    });
    expect(await store.getMeta('logPublicKey')).toBeUndefined();
    const ledger = await Ledger.open({ store, logSeed: seed, originHost: 'custody.test' });
    expect(await store.getMeta('logPublicKey')).toBe(toBase64(signerFromSeed('custody.test', seed).publicKey));
    await ledger.close();
  });
});
