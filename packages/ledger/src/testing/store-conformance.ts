/**
 * The `LedgerStore` conformance suite: one set of tests that every store must
 * pass (ordering, durability, concurrent appends, head conflicts, a crash
 * mid-batch, tree nodes and roots, sessions, checkpoints, API keys, metadata,
 * redaction, every query filter with pagination, and tenant isolation).
 * Each store's test file is three lines.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

import {
  bytesEqual,
  type EventDraft,
  inclusionProofFromNodes,
  inclusionProofNodes,
  leafHash,
  nodeKey,
  type NodeId,
  rootFromNodes,
  subtreeNodes,
  verifyInclusion,
} from '@custody/core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { LedgerError, StoreError } from '../errors.js';
import type { EntryFilter, EntryRow, LedgerStore, SealedBatch, SessionFilter, SessionRow, StoredEntry } from '../store.js';
import { bulkDrafts, FixtureLog, scenarioDrafts } from './batch-fixtures.js';
import { storeExcluded } from './postgres-test-env.js';

/** How the crash test's child process opens the store under test. */
export type CrashChildSpec = { kind: 'sqlite'; path: string } | { kind: 'postgres'; connectionString: string; schema: string };

/** What the suite needs to know about a store. */
export interface StoreConformanceOptions {
  /** Backend name (`sqlite`, `postgres`); `STORES` filters on it. */
  name: string;
  /** A new store instance (not yet migrated). Instances may share data: tests use their own tenants. */
  createStore: () => Promise<LedgerStore>;
  /** Closes `store` and opens a new instance on the same data (durability tests). */
  reopen?: (store: LedgerStore) => Promise<LedgerStore>;
  /** A second instance on the same data while `store` stays open (another process's pool). */
  openPeer?: (store: LedgerStore) => Promise<LedgerStore>;
  /** How a child process opens the same data as `store` (crash test). */
  crashChild?: (store: LedgerStore) => CrashChildSpec;
  /** Runs after the suite (drop schemas, remove files). */
  teardown?: () => Promise<void>;
  /** Skip the suite; a string says why (it is shown, never silent). */
  skip?: boolean | string;
}

/**
 * Registers the conformance suite for one store (call it at the top level of a test file).
 * @example
 * runStoreConformance(sqliteConformanceOptions());
 */
export function runStoreConformance(opts: StoreConformanceOptions): void {
  const reason = opts.skip === true ? 'skipped by its options' : typeof opts.skip === 'string' ? opts.skip : storeExcluded(opts.name);
  if (reason !== undefined) {
    describe.skip(`LedgerStore conformance: ${opts.name} (${reason})`, () => {
      it('is skipped', () => undefined);
    });
    return;
  }
  describe(`LedgerStore conformance: ${opts.name}`, () => defineSuite(opts));
}

// ---------------------------------------------------------------------------

let tenantSeq = 0;
/** A tenant no other test (or earlier run on the same database) uses. */
function newTenant(label: string): string {
  return `${label}-${Date.now().toString(36)}-${(tenantSeq++).toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
}

async function readAll(store: LedgerStore, tenant: string, from = 0, to = Number.MAX_SAFE_INTEGER): Promise<StoredEntry[]> {
  const out: StoredEntry[] = [];
  for await (const e of store.readEntries(tenant, from, to)) out.push(e);
  return out;
}

/** The stored form of an appended row. */
/** What a read gives back for an appended row: all of it but the report columns, which are written and audited only. */
function stored(row: EntryRow, tenant: string): StoredEntry {
  const { scopeGap: _gap, chainLinks: _links, ...read } = row;
  return { ...read, tenant };
}

function expectSameEntries(actual: readonly StoredEntry[], rows: readonly EntryRow[], tenant: string): void {
  expect(actual.map((e) => e.index)).toEqual(rows.map((r) => r.index));
  actual.forEach((e, i) => {
    const row = rows[i]!;
    expect(e.entry).toBeInstanceOf(Uint8Array);
    expect(bytesEqual(e.entry, row.entry)).toBe(true);
    expect(e).toEqual(stored(row, tenant));
  });
}

async function expectCode(p: Promise<unknown>, cls: typeof StoreError | typeof LedgerError, code: string): Promise<void> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${cls.name} ${code}`).toBeInstanceOf(cls);
  expect((err as { code: string }).code).toBe(code);
}

/** Every node a batch created, as ids. */
function nodeIds(batches: readonly SealedBatch[]): NodeId[] {
  return batches.flatMap((b) => b.nodes.map((n) => ({ level: n.level, index: n.index })));
}

/** `time` as nanoseconds since the epoch, for the reference filter. */
function nanos(time: string): bigint {
  const m = /^(.{19})(?:\.(\d{1,9}))?Z$/.exec(time);
  if (m === null) throw new Error(`not a time: ${time}`);
  return BigInt(Date.parse(`${m[1]!}Z`)) * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/** The reference implementation of EntryFilter over appended rows. */
function matches(e: EntryRow, f: EntryFilter, objectives: ReadonlyMap<string, string | undefined>): boolean {
  const has = (id: string, roles?: string[]) => e.principals.some((p) => p.id === id && (roles === undefined || roles.includes(p.role)));
  if (f.initiator !== undefined && !has(f.initiator, ['initiator'])) return false;
  if (f.agent !== undefined && !has(f.agent, ['actor', 'chain'])) return false;
  if (f.workload !== undefined && !has(f.workload, ['workload'])) return false;
  if (f.principal !== undefined && !has(f.principal)) return false;
  if (f.approver !== undefined && !has(f.approver, ['approver'])) return false;
  if (f.session !== undefined && e.sessionId !== f.session) return false;
  if (f.objective !== undefined) {
    const o = e.sessionId === undefined ? undefined : objectives.get(e.sessionId);
    if (o === undefined || !o.toLowerCase().includes(f.objective.toLowerCase())) return false;
  }
  if (f.tool !== undefined && e.toolName !== f.tool) return false;
  if (f.decision !== undefined && e.decision !== f.decision) return false;
  if (f.type !== undefined && (f.type.endsWith('.*') ? !e.type.startsWith(f.type.slice(0, -1)) : e.type !== f.type)) return false;
  if (f.traceId !== undefined && e.traceId !== f.traceId) return false;
  if (f.since !== undefined && nanos(e.time) < nanos(f.since)) return false;
  if (f.until !== undefined && nanos(e.time) >= nanos(f.until)) return false;
  return true;
}

/** Every page of a query, following cursors. */
async function allPages<T>(fetch: (cursor?: string) => Promise<{ items: T[]; nextCursor?: string }>, limit: number): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  for (let pages = 0; ; pages++) {
    const page = await fetch(cursor);
    expect(page.items.length).toBeLessThanOrEqual(limit);
    out.push(...page.items);
    if (page.nextCursor === undefined) return out;
    expect(page.items.length).toBe(limit);
    cursor = page.nextCursor;
    if (pages > 10_000) throw new Error('pagination does not end');
  }
}

/** Runs the crash child and SIGKILLs it partway through its second append. */
async function crashMidAppend(spec: CrashChildSpec, tenant: string, entries: number): Promise<{ size: number; first: string; last: string; killedMidAppend: boolean }> {
  const here = fileURLToPath(import.meta.url);
  const fromSource = here.endsWith('.ts');
  const script = here.replace(/store-conformance\.(ts|js)$/, `crash-child.${fromSource ? 'ts' : 'js'}`);
  const execArgs = fromSource ? ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href] : [];
  const child = spawn(process.execPath, [...execArgs, script, JSON.stringify({ spec, tenant, entries })], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let info: { calibrated: number; size: number; first: string; last: string } | undefined;
  let done = false;
  let killed = false;
  for await (const line of createInterface({ input: child.stdout })) {
    const msg = JSON.parse(line) as { calibrated?: number; size?: number; first?: string; last?: string; appending?: boolean; done?: boolean };
    if (msg.calibrated !== undefined) info = msg as typeof info;
    if (msg.appending === true) {
      // Kill a third of the way into an append as long as the calibration one.
      const delay = Math.max(1, Math.round((info?.calibrated ?? 30) * 0.3));
      setTimeout(() => {
        killed = !done;
        child.kill('SIGKILL');
      }, delay);
    }
    if (msg.done === true) done = true;
  }
  const exit = await exited;
  if (info === undefined) throw new Error(`the crash child failed before appending (exit ${String(exit.code)}):\n${stderr}`);
  return { size: info.size, first: info.first, last: info.last, killedMidAppend: killed && exit.signal === 'SIGKILL' };
}

// ---------------------------------------------------------------------------

function defineSuite(opts: StoreConformanceOptions): void {
  const open: LedgerStore[] = [];
  const track = async (store: LedgerStore): Promise<LedgerStore> => {
    open.push(store);
    await store.migrate();
    return store;
  };
  const fresh = async (): Promise<LedgerStore> => track(await opts.createStore());
  const reopen = async (store: LedgerStore): Promise<LedgerStore> => track(await opts.reopen!(store));
  const peer = async (store: LedgerStore): Promise<LedgerStore> => (opts.openPeer ? track(await opts.openPeer(store)) : store);

  afterEach(async () => {
    for (const s of open.splice(0)) await s.close().catch(() => undefined);
  });
  afterAll(async () => {
    await opts.teardown?.();
  });

  /** Appends batches of these sizes of scenario events; returns the log and the batches. */
  async function seed(store: LedgerStore, tenant: string, sizes: readonly number[], log = new FixtureLog({ tenant })): Promise<{ log: FixtureLog; batches: SealedBatch[]; rows: EntryRow[] }> {
    const batches: SealedBatch[] = [];
    for (const [i, n] of sizes.entries()) {
      const batch = log.append(bulkDrafts(n, { seed: i + 1 }));
      await store.append(batch, batch.head.size - batch.entries.length);
      batches.push(batch);
    }
    return { log, batches, rows: batches.flatMap((b) => b.entries) };
  }

  describe('schema and empty logs', () => {
    it('migrate() is idempotent, also when run concurrently', async () => {
      const store = await fresh();
      const other = await peer(store);
      await Promise.all([store.migrate(), other.migrate(), store.migrate()]);
      expect(store.kind).toBe(opts.name);
      expect(typeof store.capabilities.multiWriter).toBe('boolean');
    });

    it('an empty log reads as empty', async () => {
      const store = await fresh();
      const t = newTenant('empty');
      expect(await store.head(t)).toBeUndefined();
      expect(await store.tenants()).not.toContain(t);
      expect(await readAll(store, t)).toEqual([]);
      expect(await store.getEntries(t, [0, 1])).toEqual([]);
      expect(await store.getEntryById(t, '01900000-0000-7000-8000-000000000000')).toBeUndefined();
      expect((await store.findIds(t, ['x'])).size).toBe(0);
      expect((await store.sessions(t, ['s'])).size).toBe(0);
      expect(await store.getSession(t, 's')).toBeUndefined();
      expect(await store.sessionEntries(t, 's')).toEqual([]);
      expect((await store.getNodes(t, [{ level: 0, index: 0 }])).size).toBe(0);
      expect(await store.latestCheckpoint(t)).toBeUndefined();
      expect(await store.checkpointSizes(t)).toEqual([]);
      expect(await store.queryEntries(t, {}, { limit: 10 })).toEqual({ items: [] });
      expect(await store.listSessions(t, {}, { limit: 10 })).toEqual({ items: [] });
    });
  });

  describe('order', () => {
    it('readEntries returns exactly what was appended, bytes identical, in index order', async () => {
      const store = await fresh();
      const t = newTenant('order');
      const { batches, rows, log } = await seed(store, t, [37, 1, 100, 250]);
      expectSameEntries(await readAll(store, t), rows, t);
      expectSameEntries(await readAll(store, t, 30, 140), rows.slice(30, 140), t);
      expectSameEntries(await readAll(store, t, 387, 1000), rows.slice(387), t);
      expect(await readAll(store, t, 5, 5)).toEqual([]);
      // getEntries: stored ones among the indexes, in index order.
      expectSameEntries(await store.getEntries(t, [200, 3, 9999, 3, 0]), [rows[0]!, rows[3]!, rows[200]!], t);
      expect(await store.getEntryById(t, rows[42]!.id)).toEqual(stored(rows[42]!, t));
      const found = await store.findIds(t, [rows[5]!.id, rows[300]!.id, 'missing']);
      expect([...found.keys()].sort()).toEqual([rows[5]!.id, rows[300]!.id].sort());
      expect(found.get(rows[5]!.id)).toEqual(rows[5]!.seq === undefined ? { index: 5 } : { index: 5, seq: rows[5]!.seq });
      // The head resumes the frontier; one checkpoint per batch.
      const head = await store.head(t);
      expect(head?.size).toBe(388);
      expect(head?.edge.every((h) => h instanceof Uint8Array && h.length === 32)).toBe(true);
      expect(head?.edge.map((h) => [...h])).toEqual(log.head!.edge.map((h) => [...h]));
      expect(bytesEqual(head!.rootHash, log.head!.rootHash)).toBe(true);
      expect(await store.checkpointSizes(t)).toEqual([37, 38, 138, 388]);
      for (const b of batches) {
        const cp = await store.getCheckpoint(t, b.checkpoint.size);
        expect(cp?.note).toBe(b.checkpoint.note);
        expect(bytesEqual(cp!.rootHash, b.checkpoint.rootHash)).toBe(true);
      }
      expect((await store.latestCheckpoint(t))?.note).toBe(batches[3]!.checkpoint.note);
      expect(await store.getCheckpoint(t, 39)).toBeUndefined();
      expect(await store.tenants()).toContain(t);
    });

    it('reads more than one chunk of entries in order', async () => {
      const store = await fresh();
      const t = newTenant('chunks');
      const { rows } = await seed(store, t, [500, 500, 300]);
      const all = await readAll(store, t);
      expect(all.length).toBe(1300);
      expect(all.every((e, i) => e.index === i && bytesEqual(e.entry, rows[i]!.entry))).toBe(true);
    });
  });

  describe('tree nodes', () => {
    it('stores every node; roots and inclusion proofs from stored nodes match the log', async () => {
      const store = await fresh();
      const t = newTenant('nodes');
      const { batches, rows } = await seed(store, t, [1, 2, 61, 64, 100, 29, 300]);
      const ids = nodeIds(batches);
      const got = await store.getNodes(t, ids);
      expect(got.size).toBe(ids.length);
      for (const b of batches) for (const n of b.nodes) expect(bytesEqual(got.get(nodeKey(n))!, n.hash), nodeKey(n)).toBe(true);
      // Nodes not (yet) created are absent.
      const size = rows.length;
      const absent = await store.getNodes(t, [
        { level: 0, index: size },
        { level: 1, index: size },
        { level: 9, index: 1 },
        { level: 20, index: 0 },
      ]);
      expect(absent.size).toBe(0);
      // Every checkpoint's root rebuilt from stored nodes equals the root core computed.
      for (const b of batches) {
        const s = b.checkpoint.size;
        const nodes = await store.getNodes(t, subtreeNodes(0, s));
        expect(bytesEqual(rootFromNodes(s, (id) => nodes.get(nodeKey(id))!), b.checkpoint.rootHash)).toBe(true);
      }
      for (const index of [0, 1, 63, 64, 200, size - 1]) {
        const nodes = await store.getNodes(t, inclusionProofNodes(index, size));
        const proof = inclusionProofFromNodes(index, size, (id) => nodes.get(nodeKey(id))!);
        expect(verifyInclusion(leafHash(rows[index]!.entry), index, size, proof, batches[batches.length - 1]!.head.rootHash)).toBe(true);
      }
    });
  });

  describe('sessions', () => {
    it('session rows round-trip and follow each batch', async () => {
      const store = await fresh();
      const t = newTenant('sessions');
      const log = new FixtureLog({ tenant: t });
      const drafts = scenarioDrafts({ sessions: 6, toolCalls: 3, seal: (i) => i < 3, prefix: 'sess' });
      // Split so that sessions continue across batches.
      const cut = Math.floor(drafts.length / 2);
      const b1 = log.append(drafts.slice(0, cut));
      await store.append(b1, 0);
      const ids = [...new Set(drafts.flatMap((d) => (d.session ? [d.session.id] : [])))];
      const after1 = await store.sessions(t, [...ids, 'no-such-session']);
      expect(after1.size).toBe(ids.length);
      for (const s of b1.sessions) expect(after1.get(s.id)).toEqual(s);
      const b2 = log.append(drafts.slice(cut));
      await store.append(b2, b1.head.size);
      for (const id of ids) {
        expect(await store.getSession(t, id)).toEqual(log.session(id));
        const entries = await store.sessionEntries(t, id);
        expect(entries.map((e) => e.seq)).toEqual(entries.map((_, i) => i + 1));
        expect(entries.every((e) => e.sessionId === id && e.tenant === t)).toBe(true);
        expect(entries.length).toBe(log.session(id)!.entries);
      }
      const sealed = [...(await store.sessions(t, ids)).values()].filter((s) => s.sealed).map((s) => s.id);
      expect(sealed.sort()).toEqual(['sess-0', 'sess-1', 'sess-2']);
      // The first entry's identity stays when a later row omits it.
      const s0 = log.session('sess-0')!;
      const later = log.fork();
      const b3 = later.append([{ id: '01900000-0000-7000-8000-00000000beef', type: 'session.expired', time: '2026-02-01T00:00:00Z', session: { id: 'sess-3' }, initiator: { type: 'human', id: 'x@example.com' }, actor: { type: 'service', id: 'svc:custody' } }]);
      const row = b3.sessions[0]!;
      const { initiatorId: _i, actorId: _a, ...bare } = row;
      await store.append({ ...b3, sessions: [bare] }, b2.head.size);
      const after3 = await store.getSession(t, 'sess-3');
      expect(after3).toEqual({ ...row, initiatorId: log.session('sess-3')!.initiatorId, actorId: log.session('sess-3')!.actorId });
      expect(await store.getSession(t, 'sess-0')).toEqual(s0);
    });
  });

  describe('durability', () => {
    it.skipIf(!opts.reopen)('after close and reopen everything is there and the head resumes', async () => {
      let store = await fresh();
      const t = newTenant('durable');
      const { log, batches, rows } = await seed(store, t, [10, 90]);
      await store.putApiKey({ id: 'k1', tenant: t, role: 'read', name: 'reader', hash: `h-${t}`, createdAt: '2026-01-01T00:00:00.000Z' });
      await store.setDisclosures(t, 3, []);
      store = await reopen(store);
      const all = await readAll(store, t);
      expectSameEntries(all, rows.map((r) => (r.index === 3 ? { ...r, disclosures: [] } : r)), t);
      expect(await store.checkpointSizes(t)).toEqual([10, 100]);
      expect((await store.findApiKey(`h-${t}`))?.id).toBe('k1');
      const head = await store.head(t);
      expect(head?.size).toBe(100);
      // A log resumed from the stored head continues the same tree.
      const resumed = new FixtureLog({ tenant: t, head: head!, sessions: log.sessions });
      const next = resumed.append(bulkDrafts(33, { seed: 9 }));
      await store.append(next, 100);
      const nodes = await store.getNodes(t, subtreeNodes(0, 133));
      expect(bytesEqual(rootFromNodes(133, (id) => nodes.get(nodeKey(id))!), next.head.rootHash)).toBe(true);
      expect(batches.length).toBe(2);
    });
  });

  describe('head conflicts', () => {
    it('a stale or future expectedSize rejects with STORE_HEAD_CONFLICT and writes nothing', async () => {
      const store = await fresh();
      const t = newTenant('stale');
      const { log } = await seed(store, t, [20]);
      const stale = log.fork();
      const winner = log.append(bulkDrafts(5, { seed: 2 }));
      await store.append(winner, 20);
      const loser = stale.append(bulkDrafts(7, { seed: 3 }));
      await expectCode(store.append(loser, 20), StoreError, 'STORE_HEAD_CONFLICT');
      // A batch consistent with a size the log has not reached.
      const ahead = new FixtureLog({ tenant: t, head: (await seedAhead(t)).head! }).append(bulkDrafts(3, { seed: 4 }));
      await expectCode(store.append(ahead, ahead.head.size - 3), StoreError, 'STORE_HEAD_CONFLICT');
      await expectNothingWritten(store, t, 25, [loser, ahead]);
      // The right head still appends.
      await store.append(log.append(bulkDrafts(2, { seed: 5 })), 25);
      expect((await store.head(t))?.size).toBe(27);
    });

    it('an event id already in the log rejects with STORE_HEAD_CONFLICT and writes nothing', async () => {
      const store = await fresh();
      const t = newTenant('dupid');
      const { log, rows } = await seed(store, t, [12]);
      const fork = log.fork();
      const drafts: EventDraft[] = bulkDrafts(6, { seed: 7 });
      drafts[4] = { ...drafts[4]!, id: rows[3]!.id };
      const dup = log.append(drafts);
      await expectCode(store.append(dup, 12), StoreError, 'STORE_HEAD_CONFLICT');
      await expectNothingWritten(store, t, 12, [dup], [rows[3]!.id]);
      // Two events with one id in the same batch.
      const twice = bulkDrafts(4, { seed: 8 });
      twice[3] = { ...twice[3]!, id: twice[1]!.id };
      const inner = fork.fork().append(twice);
      await expectCode(store.append(inner, 12), StoreError, 'STORE_HEAD_CONFLICT');
      await expectNothingWritten(store, t, 12, [inner]);
      await store.append(fork.append(bulkDrafts(3, { seed: 9 })), 12);
      expect((await store.head(t))?.size).toBe(15);
    });

    async function seedAhead(tenant: string): Promise<FixtureLog> {
      const ahead = new FixtureLog({ tenant });
      ahead.append(bulkDrafts(40, { seed: 11 }));
      return ahead;
    }

    async function expectNothingWritten(store: LedgerStore, t: string, size: number, refused: SealedBatch[], keep: string[] = []): Promise<void> {
      expect((await store.head(t))?.size).toBe(size);
      expect((await readAll(store, t)).length).toBe(size);
      expect((await store.checkpointSizes(t)).every((s) => s <= size)).toBe(true);
      const ids = refused.flatMap((b) => b.entries.map((e) => e.id)).filter((id) => !keep.includes(id));
      expect((await store.findIds(t, ids)).size).toBe(0);
      const beyond = refused.flatMap((b) => b.nodes.filter((n) => (n.index + 1) * 2 ** n.level > size).map((n) => ({ level: n.level, index: n.index })));
      expect((await store.getNodes(t, beyond)).size).toBe(0);
      for (const b of refused) {
        for (const s of b.sessions) {
          const row = await store.getSession(t, s.id);
          if (row !== undefined) expect(row.lastIndex).toBeLessThan(size);
        }
      }
    }
  });

  describe('concurrent appends', () => {
    it('two appends racing from the same head: exactly one wins, the other is a head conflict', async () => {
      const a = await fresh();
      const b = await peer(a);
      const t = newTenant('race');
      let { log } = await seed(a, t, [3]);
      for (let round = 0; round < 5; round++) {
        const size = log.size;
        const left = log.fork();
        const right = log.fork();
        const bl = left.append(bulkDrafts(150, { seed: 100 + round }));
        const br = right.append(bulkDrafts(120, { seed: 200 + round }));
        const results = await Promise.allSettled([a.append(bl, size), b.append(br, size)]);
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(won.length).toBe(1);
        expect(lost.length).toBe(1);
        expect(lost[0]!.reason).toBeInstanceOf(StoreError);
        expect((lost[0]!.reason as StoreError).code).toBe('STORE_HEAD_CONFLICT');
        const leftWon = results[0]!.status === 'fulfilled';
        const winner = leftWon ? bl : br;
        const loser = leftWon ? br : bl;
        expect((await b.head(t))?.size).toBe(winner.head.size);
        expectSameEntries(await readAll(a, t, size), winner.entries, t);
        expect((await a.findIds(t, loser.entries.map((e) => e.id))).size).toBe(0);
        log = leftWon ? left : right;
      }
    });

    it('writers that re-read the head on conflict build one consistent log', async () => {
      const first = await fresh();
      const stores = [first, await peer(first), await peer(first), await peer(first)];
      const t = newTenant('writers');
      const perWriter = 6;
      const written: string[][] = stores.map(() => []);
      await Promise.all(
        stores.map(async (store, w) => {
          for (let done = 0, attempt = 0; done < perWriter; attempt++) {
            if (attempt > 500) throw new Error('a writer never got through');
            const head = await store.head(t);
            const batch = new FixtureLog({ tenant: t, ...(head ? { head } : {}) }).append(bulkDrafts(5 + w, { seed: w * 1000 + attempt, prefix: `w${w}` }));
            try {
              await store.append(batch, head?.size ?? 0);
              written[w]!.push(...batch.entries.map((e) => e.id));
              done++;
            } catch (err) {
              // Another writer moved the head: re-read it and try again.
              if (!(err instanceof StoreError) || err.code !== 'STORE_HEAD_CONFLICT') throw err;
            }
          }
        }),
      );
      const total = written.reduce((n, ids) => n + ids.length, 0);
      const head = await first.head(t);
      expect(head?.size).toBe(total);
      const all = await readAll(first, t);
      expect(all.map((e) => e.index)).toEqual(all.map((_, i) => i));
      expect(new Set(all.map((e) => e.id)).size).toBe(total);
      expect(new Set(all.map((e) => e.id))).toEqual(new Set(written.flat()));
      const nodes = await first.getNodes(t, subtreeNodes(0, total));
      expect(bytesEqual(rootFromNodes(total, (id) => nodes.get(nodeKey(id))!), head!.rootHash)).toBe(true);
      const leaves = await first.getNodes(t, all.map((e) => ({ level: 0, index: e.index })));
      for (const e of all) expect(bytesEqual(leafHash(e.entry), leaves.get(`0/${e.index}`)!)).toBe(true);
    });
  });

  describe('crash mid-batch', () => {
    it.skipIf(!opts.crashChild)('a process killed mid-append leaves the whole batch or none of it', async () => {
      let store = await fresh();
      const t = newTenant('crash');
      await seed(store, t, [25]);
      const n = 5000;
      const { size, first, last, killedMidAppend } = await crashMidAppend(opts.crashChild!(store), t, n);
      expect(killedMidAppend, 'the child was killed before its append resolved').toBe(true);
      if (opts.reopen) store = await reopen(store);
      const head = await store.head(t);
      expect([size, size + n]).toContain(head?.size);
      const all = await readAll(store, t);
      expect(all.length).toBe(head!.size);
      expect(all.every((e, i) => e.index === i)).toBe(true);
      expect((await store.latestCheckpoint(t))?.size).toBe(head!.size);
      const found = await store.findIds(t, [first, last]);
      expect(found.size).toBe(head!.size === size ? 0 : 2);
      const nodes = await store.getNodes(t, subtreeNodes(0, head!.size));
      expect(bytesEqual(rootFromNodes(head!.size, (id) => nodes.get(nodeKey(id))!), head!.rootHash)).toBe(true);
      expect((await store.getNodes(t, [{ level: 0, index: head!.size }])).size).toBe(0);
      // The log goes on from the recovered head.
      const more = new FixtureLog({ tenant: t, head: head! }).append(bulkDrafts(10, { seed: 77 }));
      await store.append(more, head!.size);
      expect((await store.head(t))?.size).toBe(head!.size + 10);
    });
  });

  describe('checkpoints, API keys, metadata, redaction', () => {
    it('putCheckpoint stores an earlier size once; latestCheckpoint stays the head', async () => {
      const store = await fresh();
      const t = newTenant('cp');
      const { batches } = await seed(store, t, [10, 10]);
      const nodes = await store.getNodes(t, subtreeNodes(0, 7));
      const rootHash = rootFromNodes(7, (id) => nodes.get(nodeKey(id))!);
      await store.putCheckpoint(t, { size: 7, rootHash, note: 'note at 7\n' });
      await store.putCheckpoint(t, { size: 7, rootHash, note: 'a second note at 7\n' });
      expect((await store.getCheckpoint(t, 7))?.note).toBe('note at 7\n');
      expect(await store.checkpointSizes(t)).toEqual([7, 10, 20]);
      expect((await store.latestCheckpoint(t))?.note).toBe(batches[1]!.checkpoint.note);
      await store.putCheckpoint(t, { size: 0, rootHash, note: 'empty\n' });
      expect(await store.checkpointSizes(t)).toEqual([0, 7, 10, 20]);
    });

    it('API keys: put, find by hash, list, revoke once', async () => {
      const store = await fresh();
      const t = newTenant('keys');
      const u = newTenant('keys');
      const k1 = { id: 'k1', tenant: t, role: 'ingest' as const, name: 'agent fleet', hash: `hash-1-${t}`, createdAt: '2026-01-01T00:00:00.000Z' };
      const k2 = { id: 'k2', tenant: t, role: 'admin' as const, name: 'ops', hash: `hash-2-${t}`, createdAt: '2026-01-02T00:00:00.000Z' };
      const k3 = { id: 'k1', tenant: u, role: 'read' as const, name: 'other tenant', hash: `hash-3-${u}`, createdAt: '2026-01-01T00:00:00.000Z' };
      for (const k of [k2, k1, k3]) await store.putApiKey(k);
      expect(await store.findApiKey(k1.hash)).toEqual(k1);
      expect(await store.findApiKey('no such hash')).toBeUndefined();
      expect(await store.listApiKeys(t)).toEqual([k1, k2]);
      const all = await store.listApiKeys();
      expect(all).toEqual(expect.arrayContaining([k1, k2, k3]));
      expect(await store.revokeApiKey(t, 'k1', '2026-02-01T00:00:00.000Z')).toBe(true);
      expect(await store.revokeApiKey(t, 'k1', '2026-03-01T00:00:00.000Z')).toBe(false);
      expect(await store.revokeApiKey(t, 'nope', '2026-03-01T00:00:00.000Z')).toBe(false);
      expect(await store.findApiKey(k1.hash)).toEqual({ ...k1, revokedAt: '2026-02-01T00:00:00.000Z' });
      expect(await store.findApiKey(k3.hash)).toEqual(k3);
    });

    it('initMeta: the first writer wins, also across instances', async () => {
      const a = await fresh();
      const b = await peer(a);
      const key = newTenant('meta');
      expect(await a.getMeta(key)).toBeUndefined();
      const [x, y] = await Promise.all([a.initMeta(key, 'first'), b.initMeta(key, 'second')]);
      expect(x).toBe(y);
      expect(await a.initMeta(key, 'third')).toBe(x);
      expect(await b.getMeta(key)).toBe(x);
    });

    it('setDisclosures changes disclosures, never the entry bytes', async () => {
      const store = await fresh();
      const t = newTenant('redact');
      const { rows } = await seed(store, t, [40]);
      const target = rows.find((r) => r.disclosures.length > 0)!;
      await store.setDisclosures(t, target.index, []);
      const after = await store.getEntryById(t, target.id);
      expect(after?.disclosures).toEqual([]);
      expect(bytesEqual(after!.entry, target.entry)).toBe(true);
      expect(after).toEqual({ ...stored(target, t), disclosures: [] });
      await store.setDisclosures(t, target.index, target.disclosures.slice(0, 1));
      expect((await store.getEntries(t, [target.index]))[0]?.disclosures).toEqual(target.disclosures.slice(0, 1));
      expectSameEntries(await readAll(store, t, target.index + 1), rows.slice(target.index + 1), t);
      await expectCode(store.setDisclosures(t, 9999, []), LedgerError, 'EVENT_NOT_FOUND');
    });
  });

  describe('queries', () => {
    /** One tenant with a rich log, and a second tenant holding the very same events. */
    async function dataset(store: LedgerStore) {
      const a = newTenant('qa');
      const b = newTenant('qb');
      const drafts = scenarioDrafts({ sessions: 20, toolCalls: 3, prefix: 'q', seed: 5 });
      // Times of mixed precision inside one second, to compare as times, not text.
      const extra: EventDraft[] = [
        { id: '01900000-0000-7000-8000-000000000a01', type: 'admin.key_created', time: '2026-03-01T10:00:05Z', actor: { type: 'service', id: 'svc:admin' } },
        { id: '01900000-0000-7000-8000-000000000a02', type: 'admin.key_created', time: '2026-03-01T10:00:05.5Z', actor: { type: 'service', id: 'svc:admin' } },
        { id: '01900000-0000-7000-8000-000000000a03', type: 'admin.key_revoked', time: '2026-03-01T10:00:05.123456789Z', actor: { type: 'service', id: 'svc:admin' } },
        { id: '01900000-0000-7000-8000-000000000a04', type: 'external.okta.login', time: '2026-03-01T10:00:06Z', actor: { type: 'human', id: 'bob@example.com' }, workload: { method: 'oidc', verified: false, issuer: 'https://okta.example.com', subject: 'u-1' } },
      ];
      const all = [...drafts.slice(0, 90), ...extra, ...drafts.slice(90)];
      const sizes = [17, 1, 60, 45, 33];
      const logs = { [a]: new FixtureLog({ tenant: a }), [b]: new FixtureLog({ tenant: b }) };
      const rows: EntryRow[] = [];
      for (const t of [a, b]) {
        let at = 0;
        for (const n of [...sizes, all.length]) {
          const part = all.slice(at, at + n);
          if (part.length === 0) break;
          at += part.length;
          const batch = logs[t]!.append(part);
          await store.append(batch, batch.head.size - batch.entries.length);
          if (t === a) rows.push(...batch.entries);
        }
      }
      const objectives = new Map(logs[a]!.sessions.map((s) => [s.id, s.objective]));
      return { a, b, rows, log: logs[a]!, sessions: logs[a]!.sessions, objectives };
    }

    it('every EntryFilter field, alone and combined, matches the reference, in both orders, across pages', async () => {
      const store = await fresh();
      const { a, b, rows, objectives } = await dataset(store);
      const some = (f: (r: EntryRow) => string | undefined) => rows.map(f).find((x) => x !== undefined)!;
      const trace = some((r) => r.traceId);
      const session = rows[rows.length - 1]!.sessionId ?? some((r) => r.sessionId);
      // Combinations taken from real entries, so they match something.
      const role = (r: EntryRow, name: string) => r.principals.find((p) => p.role === name)?.id;
      const approved = rows.find((r) => role(r, 'approver') !== undefined)!;
      const attested = rows.find((r) => role(r, 'workload') !== undefined && r.initiatorId !== undefined)!;
      const traced = rows.find((r) => r.traceId !== undefined && r.toolName !== undefined)!;
      const filters: EntryFilter[] = [
        {},
        { initiator: 'alice@example.com' },
        { agent: 'agent:triage' },
        { agent: 'agent:sub-search' },
        { workload: 'spiffe://example.org/sa/agent-billing' },
        { workload: 'https://okta.example.com|u-1' },
        { principal: 'bob@example.com' },
        { principal: 'svc:admin' },
        { approver: 'dave@example.com' },
        { session },
        { objective: 'ÜBERLINGEN' },
        { objective: 'refund order' },
        { tool: 'db.query' },
        { decision: 'deny' },
        { decision: 'approval_required' },
        { type: 'policy.decided' },
        { type: 'approval.*' },
        { type: 'admin.*' },
        { type: 'tool.*' },
        { type: 'session.*' },
        { traceId: trace },
        { since: '2026-03-01T10:00:05Z' },
        { since: '2026-03-01T10:00:05.2Z', until: '2026-03-01T10:00:06Z' },
        { until: '2026-01-01T00:00:03Z' },
        { since: '2026-01-01T00:00:02.5Z', until: '2026-01-01T00:00:04.000000001Z' },
        { agent: 'agent:billing', tool: 'stripe.refund' },
        { initiator: 'carol@example.com', type: 'tool.*', since: '2026-01-01T00:00:03Z' },
        { principal: 'alice@example.com', decision: 'allow' },
        { session, type: 'tool.*' },
        { approver: role(approved, 'approver')!, objective: objectives.get(approved.sessionId!)!.split(' ')[1]!.toUpperCase() },
        { workload: role(attested, 'workload')!, agent: attested.actorId, initiator: attested.initiatorId! },
        { agent: traced.actorId, traceId: traced.traceId!, tool: traced.toolName! },
        { agent: 'nobody' },
        { tool: 'db.query', decision: 'deny', type: 'policy.decided' },
      ];
      let nonEmpty = 0;
      for (const f of filters) {
        const expected = rows.filter((r) => matches(r, f, objectives)).map((r) => r.index);
        if (expected.length > 0) nonEmpty++;
        const desc = await allPages((cursor) => store.queryEntries(a, f, { limit: 7, ...(cursor ? { cursor } : {}) }), 7);
        expect(desc.map((e) => e.index), JSON.stringify(f)).toEqual([...expected].reverse());
        expect(desc.every((e) => e.tenant === a)).toBe(true);
        const asc = await allPages((cursor) => store.queryEntries(a, f, { limit: 11, order: 'asc', ...(cursor ? { cursor } : {}) }), 11);
        expect(asc.map((e) => e.index), JSON.stringify(f)).toEqual(expected);
        // The other tenant holds the same events; no filter returns them to this one.
        const other = await store.queryEntries(b, f, { limit: 1000 });
        expect(other.items.every((e) => e.tenant === b)).toBe(true);
        expect(other.items.length).toBe(expected.length);
      }
      expect(nonEmpty).toBe(filters.length - 1);
      // Items are whole entries.
      const one = (await store.queryEntries(a, { tool: 'db.query' }, { limit: 1 })).items[0]!;
      expect(one).toEqual(stored(rows[one.index]!, a));
    });

    it('cursors stay stable while the log grows; garbage cursors are CURSOR_INVALID; limits are clamped', async () => {
      const store = await fresh();
      const { a, rows, log, objectives } = await dataset(store);
      const f: EntryFilter = { agent: 'agent:triage' };
      const expected = rows.filter((r) => matches(r, f, objectives)).map((r) => r.index).reverse();
      const p1 = await store.queryEntries(a, f, { limit: 5 });
      expect(p1.items.map((e) => e.index)).toEqual(expected.slice(0, 5));
      // Newer entries land between pages; the next page continues where the first ended.
      await store.append(log.append(scenarioDrafts({ sessions: 4, prefix: 'late', seed: 3 })), rows.length);
      const p2 = await store.queryEntries(a, f, { limit: 5, cursor: p1.nextCursor! });
      expect(p2.items.map((e) => e.index)).toEqual(expected.slice(5, 10));
      const sessionsPage = await store.listSessions(a, {}, { limit: 1 });
      const bad = ['', 'garbage!', 'AAAA', '====', Buffer.from('e-1').toString('base64url'), Buffer.from('e01').toString('base64url'), Buffer.from(`e${'9'.repeat(17)}`).toString('base64url'), `${p1.nextCursor!}=`, sessionsPage.nextCursor!];
      for (const cursor of bad) await expectCode(store.queryEntries(a, f, { limit: 5, cursor }), LedgerError, 'CURSOR_INVALID');
      for (const cursor of ['x', p1.nextCursor!]) await expectCode(store.listSessions(a, {}, { limit: 5, cursor }), LedgerError, 'CURSOR_INVALID');
      await expectCode(store.queryEntries(a, { since: 'yesterday' }, { limit: 5 }), LedgerError, 'RANGE_INVALID');
      for (const limit of [0, -5, 0.5, Number.NaN]) {
        const page = await store.queryEntries(a, {}, { limit });
        expect(page.items.length, `limit ${limit}`).toBe(Number.isNaN(limit) ? Math.min(1000, log.size) : 1);
      }
      expect((await store.queryEntries(a, {}, { limit: 2.9 })).items.length).toBe(2);
    });

    it('a limit above 1000 is clamped to 1000', async () => {
      const store = await fresh();
      const t = newTenant('clamp');
      await seed(store, t, [500, 500, 100]);
      const page = await store.queryEntries(t, {}, { limit: 5000 });
      expect(page.items.length).toBe(1000);
      expect(page.items[0]!.index).toBe(1099);
      const rest = await store.queryEntries(t, {}, { limit: 5000, cursor: page.nextCursor! });
      expect(rest.items.map((e) => e.index)).toEqual([99, 98, 97, 96, 95, 94, 93, 92, 91, 90, 89, 88, 87, 86, 85, 84, 83, 82, 81, 80, 79, 78, 77, 76, 75, 74, 73, 72, 71, 70, 69, 68, 67, 66, 65, 64, 63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
      expect(rest.nextCursor).toBeUndefined();
    });

    it('identity queries page in log order across a large log', async () => {
      const store = await fresh();
      const t = newTenant('large');
      const log = new FixtureLog({ tenant: t });
      const rows: EntryRow[] = [];
      const batches = 20;
      for (let i = 0; i < batches; i++) {
        const drafts = bulkDrafts(500, { seed: 300 + i, crowd: 60, start: new Date(Date.UTC(2026, 1, 1) + i * 60_000) });
        // One agent acts only at the very start and the very end of the log.
        if (i === 0 || i === batches - 1) {
          const tools = drafts.flatMap((d, k) => (d.type.startsWith('tool.') ? [k] : []));
          for (const k of [3, tools[0]!, tools[tools.length - 1]!, 499]) drafts[k] = { ...drafts[k]!, actor: { type: 'agent', id: 'agent:rare' } };
        }
        const batch = log.append(drafts);
        await store.append(batch, batch.head.size - batch.entries.length);
        rows.push(...batch.entries);
      }
      const count = new Map<string, number>();
      for (const r of rows) for (const p of r.principals) if (p.role === 'initiator') count.set(p.id, (count.get(p.id) ?? 0) + 1);
      const byCount = [...count.entries()].sort((x, y) => x[1] - y[1]);
      const rareHuman = byCount[0]![0];
      const busyHuman = byCount[byCount.length - 1]![0];
      const approver = rows.flatMap((r) => r.principals.filter((p) => p.role === 'approver').map((p) => p.id))[0]!;
      const tool = rows.find((r) => r.toolName !== undefined)!.toolName!;
      const objectives = new Map(log.sessions.map((x) => [x.id, x.objective]));
      const early = rows.find((r) => r.index > 1500 && r.sessionId !== undefined)!;
      const ticket = /\(ticket [0-9a-f]+\)/.exec(objectives.get(early.sessionId!) ?? '')![0];
      const filters: EntryFilter[] = [
        { agent: 'agent:rare' },
        { initiator: rareHuman },
        { principal: busyHuman },
        { approver },
        { principal: busyHuman, tool, decision: 'allow' },
        { agent: 'agent:rare', type: 'tool.*' },
        // Ranges alone: the matches lie far behind the newest entries.
        { since: rows[2000]!.time, until: rows[2600]!.time },
        { type: 'admin.*' },
        { type: 'approval.*', until: rows[3000]!.time },
        { objective: ticket.toUpperCase() },
        { tool, since: rows[9000]!.time },
        { until: rows[40]!.time },
      ];
      for (const f of filters) {
        const expected = rows.filter((r) => matches(r, f, objectives)).map((r) => r.index);
        expect(expected.length, JSON.stringify(f)).toBeGreaterThan(0);
        const desc = await allPages((cursor) => store.queryEntries(t, f, { limit: 50, ...(cursor ? { cursor } : {}) }), 50);
        expect(desc.map((e) => e.index), JSON.stringify(f)).toEqual([...expected].reverse());
        const asc = await allPages((cursor) => store.queryEntries(t, f, { limit: 97, order: 'asc', ...(cursor ? { cursor } : {}) }), 97);
        expect(asc.map((e) => e.index), JSON.stringify(f)).toEqual(expected);
      }
    });

    it('listSessions: every SessionFilter field, newest first by default, across pages, per tenant', async () => {
      const store = await fresh();
      const { a, b, sessions } = await dataset(store);
      const ref = (f: SessionFilter): SessionRow[] =>
        sessions
          .filter(
            (s) =>
              (f.initiator === undefined || s.initiatorId === f.initiator) &&
              (f.agent === undefined || s.actorId === f.agent) &&
              (f.objective === undefined || (s.objective ?? '').toLowerCase().includes(f.objective.toLowerCase())) &&
              (f.sealed === undefined || s.sealed === f.sealed) &&
              (f.since === undefined || Date.parse(s.lastAt) >= Date.parse(f.since)) &&
              (f.until === undefined || Date.parse(s.firstAt) < Date.parse(f.until)),
          )
          .sort((x, y) => y.lastIndex - x.lastIndex);
      const filters: SessionFilter[] = [
        {},
        { initiator: 'alice@example.com' },
        { agent: 'agent:triage' },
        { agent: 'agent:sub-writer' },
        { objective: 'überlingen' },
        { sealed: true },
        { sealed: false },
        { since: '2026-01-01T00:00:03Z' },
        { until: '2026-01-01T00:00:01Z' },
        { since: '2026-01-01T00:00:01.5Z', until: '2026-01-01T00:00:03Z' },
        { initiator: 'bob@example.com', sealed: true, objective: 'refund' },
        { agent: 'nobody' },
      ];
      for (const f of filters) {
        const expected = ref(f);
        const desc = await allPages((cursor) => store.listSessions(a, f, { limit: 3, ...(cursor ? { cursor } : {}) }), 3);
        expect(desc, JSON.stringify(f)).toEqual(expected);
        const asc = await allPages((cursor) => store.listSessions(a, f, { limit: 4, order: 'asc', ...(cursor ? { cursor } : {}) }), 4);
        expect(asc, JSON.stringify(f)).toEqual([...expected].reverse());
        const other = await store.listSessions(b, f, { limit: 1000 });
        expect(other.items.length).toBe(expected.length);
      }
      expect(ref({ sealed: true }).length).toBeGreaterThan(0);
    });

    it('tenants are isolated: the same ids and sessions in two tenants never mix', async () => {
      const store = await fresh();
      const { a, b, rows, sessions } = await dataset(store);
      const c = newTenant('qc');
      const [ha, hb] = [await store.head(a), await store.head(b)];
      expect(ha?.size).toBe(hb?.size);
      expect((await store.getEntryById(b, rows[0]!.id))?.tenant).toBe(b);
      expect((await store.getEntryById(a, rows[0]!.id))?.tenant).toBe(a);
      const sid = sessions[0]!.id;
      expect((await store.sessionEntries(a, sid)).every((e) => e.tenant === a)).toBe(true);
      expect((await store.sessionEntries(a, sid)).length).toBe(sessions[0]!.entries);
      expect(await store.getSession(c, sid)).toBeUndefined();
      expect((await store.findIds(c, [rows[0]!.id])).size).toBe(0);
      expect((await store.getNodes(c, [{ level: 0, index: 0 }])).size).toBe(0);
      expect(await store.latestCheckpoint(c)).toBeUndefined();
      expect(await store.queryEntries(c, { principal: 'alice@example.com' }, { limit: 10 })).toEqual({ items: [] });
      expect(await store.listSessions(c, {}, { limit: 10 })).toEqual({ items: [] });
      await store.setDisclosures(a, 0, ['x']);
      expect((await store.getEntries(b, [0]))[0]?.disclosures).toEqual(rows[0]!.disclosures);
      const tenants = await store.tenants();
      expect(tenants).toEqual(expect.arrayContaining([a, b]));
      expect(tenants).not.toContain(c);
    });
  });

  describe('refusals', () => {
    it('refuses a batch inconsistent with its own head (a caller bug) and writes nothing', async () => {
      const store = await fresh();
      const t = newTenant('bad');
      const { log } = await seed(store, t, [5]);
      const good = log.fork().append(bulkDrafts(4, { seed: 3 }));
      const broken: SealedBatch[] = [
        { ...good, nodes: good.nodes.slice(1) },
        { ...good, entries: good.entries.slice(1) },
        { ...good, head: { ...good.head, size: good.head.size + 1 } },
        { ...good, checkpoint: { ...good.checkpoint, size: 2 } },
        { ...good, head: { ...good.head, rootHash: new Uint8Array(31) } },
      ];
      for (const batch of broken) await expectCode(store.append(batch, 5), StoreError, 'STORE_CORRUPT');
      expect((await store.head(t))?.size).toBe(5);
      await store.append(good, 5);
      expect((await store.head(t))?.size).toBe(9);
    });
  });
}
