/**
 * Preparation workers: a large POST /v1/events body prepared in a real worker thread
 * lands as the same entries, and is refused with the same status, code, message and
 * field, as when it is prepared on the request thread; a worker that dies costs
 * nothing (its bodies are prepared on the request thread), and a pool whose workers
 * cannot start turns itself off.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

import { isCustodyOnlyType, prepareEvent, verifyBundle } from '@custody/core';
import { Ledger, SqliteStore } from '@custody/ledger';
import { bulkDrafts } from '@custody/ledger/testing';
import type { FastifyInstance } from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';

import { createApiKey } from './api-keys.js';
import { preparedBodyOf } from './ingest.js';
import { PreparePool } from './prepare-pool.js';
import type { PrepareTask } from './prepare-protocol.js';
import { createServer } from './server.js';

const dirs: string[] = [];
const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function server(prepareWorkers: number): Promise<{ app: FastifyInstance; ledger: Ledger; ingest: string; admin: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'custody-prepare-'));
  dirs.push(dir);
  const ledger = await Ledger.open({ store: new SqliteStore({ path: join(dir, 'ledger.db') }), logSeed: new Uint8Array(32).fill(3), originHost: 'prepare.test' });
  const app = await createServer({ ledger, prepareWorkers });
  closers.push(() => ledger.close(), () => app.close());
  const ingest = (await createApiKey(ledger, { tenant: 'acme', role: 'ingest', name: 'ingest' })).key;
  const admin = (await createApiKey(ledger, { tenant: 'acme', role: 'admin', name: 'admin' })).key;
  return { app, ledger, ingest, admin };
}

const post = (app: FastifyInstance, key: string, body: string, type = 'application/json') =>
  app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${key}`, 'content-type': type }, payload: body });

/** A batch well over the size that goes to a worker. */
function bigBatch(seed: number): Record<string, unknown>[] {
  // What an ingest key may write: not Custody's own records.
  const drafts = bulkDrafts(600, { seed, crowd: 50 }).filter((d) => !isCustodyOnlyType(d.type));
  return drafts.slice(0, 300) as unknown as Record<string, unknown>[];
}

describe('preparation workers', () => {
  it('a large batch prepared in a worker lands as it would on the request thread, and its session bundles verify', async () => {
    const withWorkers = await server(1);
    const without = await server(0);
    const events = bigBatch(11);
    const body = JSON.stringify(events);
    expect(body.length).toBeGreaterThan(32 * 1024);
    const a = await post(withWorkers.app, withWorkers.ingest, body);
    const b = await post(without.app, without.ingest, body);
    expect(a.statusCode).toBe(201);
    expect(b.statusCode).toBe(201);
    // Same ids, indexes and session positions.
    expect(a.json()).toEqual(b.json());
    // Same envelopes (salts differ, so commitments are compared by shape): read back one of each.
    const first = (a.json() as { results: { id: string }[] }).results[0]!.id;
    const ea = (await withWorkers.app.inject({ url: `/v1/events/${first}`, headers: { authorization: `Bearer ${withWorkers.admin}` } })).json();
    const eb = (await without.app.inject({ url: `/v1/events/${first}`, headers: { authorization: `Bearer ${without.admin}` } })).json();
    expect(ea.event).toEqual({ ...eb.event, recordedAt: ea.event.recordedAt });
    const session = (events[0]!['session'] as { id: string }).id;
    const bundle = (await withWorkers.app.inject({ url: `/v1/sessions/${encodeURIComponent(session)}/bundle`, headers: { authorization: `Bearer ${withWorkers.admin}` } })).json();
    const key = (await withWorkers.app.inject({ url: '/v1/log/key', headers: { authorization: `Bearer ${withWorkers.admin}` } })).body.trim();
    expect(verifyBundle(bundle, { verifierKey: key }).ok).toBe(true);
  });

  it('refuses a large bad body with the same status, code, message and field as the request thread', async () => {
    const withWorkers = await server(1);
    const without = await server(0);
    const pad = 'x'.repeat(40 * 1024);
    const good = bigBatch(12);
    const bad = (i: number, change: (e: Record<string, unknown>) => void) => {
      const copy = structuredClone(good);
      change(copy[i]!);
      return JSON.stringify(copy);
    };
    const cases: { name: string; body: string; type?: string; key?: 'ingest' | 'admin' }[] = [
      { name: 'not JSON', body: `[${JSON.stringify(good[0])},${pad}` },
      { name: 'empty (blank)', body: ' '.repeat(40 * 1024) },
      { name: '__proto__ key', body: `[{"__proto__":{"x":1},"pad":"${pad}"}]` },
      { name: 'constructor.prototype key', body: `[{"constructor":{"prototype":{"x":1}},"pad":"${pad}"}]` },
      { name: 'a JSON string', body: JSON.stringify(pad) },
      { name: 'an event at index 200 with no type', body: bad(200, (e) => delete e['type']) },
      { name: 'an event naming another tenant', body: bad(5, (e) => (e['tenant'] = 'other')) },
      { name: 'an admin.* event from an ingest key', body: bad(7, (e) => (e['type'] = 'admin.key.created')) },
      { name: 'too many events', body: JSON.stringify(Array.from({ length: 1001 }, () => ({ type: 'x.y', data: { pad: 'x'.repeat(40) } }))) },
      { name: 'too deep', body: bad(3, (e) => (e['data'] = JSON.parse('['.repeat(70) + ']'.repeat(70)) as unknown)) },
      { name: 'NDJSON with a bad line', body: good.map((e) => JSON.stringify(e)).join('\n') + '\n{oops', type: 'application/x-ndjson' },
    ];
    for (const c of cases) {
      expect(c.body.length, c.name).toBeGreaterThanOrEqual(32 * 1024);
      const a = await post(withWorkers.app, withWorkers[c.key ?? 'ingest'], c.body, c.type);
      const b = await post(without.app, without[c.key ?? 'ingest'], c.body, c.type);
      expect(a.statusCode, c.name).toBeGreaterThanOrEqual(400);
      expect(a.statusCode, c.name).toBeLessThan(500);
      expect({ status: a.statusCode, body: a.json() }, c.name).toEqual({ status: b.statusCode, body: b.json() });
    }
    // Nothing of any refused body was appended, on either server.
    for (const s of [withWorkers, without]) {
      const r = (await s.app.inject({ url: '/v1/events?limit=1', headers: { authorization: `Bearer ${s.admin}` } })).json() as { events: unknown[] };
      expect(r.events.length).toBe(1); // the admin.key.created entries of the two keys
    }
  });

  it('prepares a dead worker’s bodies on the request thread, replaces it, and turns off after workers that never start', async () => {
    const logs: string[] = [];
    const inline = (task: Omit<PrepareTask, 'id'>) => preparedBodyOf(task.body, { ...task, now: new Date(task.now), prepare: (d) => prepareEvent(d, { tenant: task.tenant }) });
    const task = (n: number): Omit<PrepareTask, 'id'> => ({ body: JSON.stringify(bigBatch(n)), tenant: 'acme', ndjson: false, admin: false, maxBatch: 1000, now: new Date().toISOString() });

    // A worker that exits on its first task: every task still gets its events.
    const dying = new PreparePool({ size: 1, sensitivePaths: undefined, inline, log: (m) => logs.push(m), spawn: () => new Worker('require("node:worker_threads").parentPort.once("message", () => process.exit(3))', { eval: true }) });
    const results = await Promise.all([task(1), task(2), task(3)].map((t) => dying.prepare(t)));
    expect(results.map((r) => r.length)).toEqual([300, 300, 300]);
    expect(dying.counts).toEqual({ inWorker: 0, inline: 3 });
    expect(logs.some((m) => m.includes('exited (code 3)'))).toBe(true);
    await dying.close();

    // Workers that fail to load: after three, the pool prepares on the request thread and says so once more.
    logs.length = 0;
    const broken = new PreparePool({ size: 1, sensitivePaths: undefined, inline, log: (m) => logs.push(m), spawn: () => new Worker('throw new Error("no such module")', { eval: true }) });
    for (let i = 0; i < 5; i++) expect((await broken.prepare(task(i))).length).toBe(300);
    expect(broken.active).toBe(false);
    expect(logs.at(-1)).toContain('Preparation workers are off');
    await broken.close();

    // The real worker; after close, bodies are still prepared.
    logs.length = 0;
    const real = new PreparePool({ size: 2, sensitivePaths: undefined, inline, log: (m) => logs.push(m) });
    const nine = task(9);
    const inWorker = await real.prepare(nine);
    expect(real.counts).toEqual({ inWorker: 1, inline: 0 });
    // What the worker prepared is what this thread prepares, but for the salts.
    const here = inline(nine);
    expect(inWorker.map((e) => e.id)).toEqual(here.map((e) => e.id));
    expect(inWorker.map((e) => e.envelope.type)).toEqual(here.map((e) => e.envelope.type));
    expect(inWorker.map((e) => e.disclosures.length)).toEqual(here.map((e) => e.disclosures.length));
    await real.close();
    expect((await real.prepare(task(10))).length).toBe(300);
    expect(real.counts).toEqual({ inWorker: 1, inline: 1 });
    expect(logs).toEqual([]);
  });
});
