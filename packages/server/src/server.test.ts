/**
 * The HTTP API over a real SqliteStore: appends (one, array, NDJSON), idempotency,
 * validation naming the field, limits, every read route with paging, the log
 * endpoints verified with @custody/core, keys, auth, roles, tenant isolation and
 * the mapping of store errors.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import {
  fromBase64,
  parseCheckpoint,
  parseVerifierKey,
  verifyBundle,
  verifyCheckpoint,
  verifyConsistency,
  verifyReceipt,
} from '@custody/core';
import { Ledger, type LedgerStore, PostgresStore, SqliteStore, StoreError } from '@custody/ledger';
import { postgresTestEnv, storeExcluded } from '@custody/ledger/testing';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type ApiKeyRole, authenticate, createApiKey, hashApiKey, revokeApiKey } from './api-keys.js';
import { createServer } from './server.js';

const SEED = new Uint8Array(32).fill(7);
const dirs: string[] = [];
const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const pg = await postgresTestEnv();

/** The stores every behaviour runs on: the real SQLite and PostgreSQL of this machine. */
const BACKENDS: { name: 'sqlite' | 'postgres'; skip: string | false; make: () => Promise<LedgerStore> }[] = [
  { name: 'sqlite', skip: storeExcluded('sqlite') ?? false, make: async () => sqlite() },
  {
    name: 'postgres',
    skip: pg.skip,
    make: async () => {
      const schema = await pg.freshSchema();
      closers.unshift(() => pg.dropSchema(schema));
      return new PostgresStore({ connectionString: pg.url, schema, pool: { max: 4 } });
    },
  },
];

function sqlite(): SqliteStore {
  const dir = mkdtempSync(join(tmpdir(), 'custody-server-'));
  dirs.push(dir);
  return new SqliteStore({ path: join(dir, 'ledger.db') });
}

interface Harness {
  app: FastifyInstance;
  ledger: Ledger;
  keys: Record<string, string>;
  call: (method: InjectOptions['method'], url: string, opts?: { key?: string; body?: unknown; type?: string; raw?: string }) => Promise<LightMyRequestResponse>;
}

interface HarnessOptions {
  store?: LedgerStore;
  bodyLimit?: number;
  maxBatch?: number;
  maxInflightWrites?: number;
  ledgerMaxBatch?: number;
}

async function harness(opts: HarnessOptions = {}): Promise<Harness> {
  const ledger = await Ledger.open({ store: opts.store ?? sqlite(), logSeed: SEED, originHost: 'custody.test', ...(opts.ledgerMaxBatch ? { maxBatch: opts.ledgerMaxBatch } : {}) });
  const app = await createServer({ ledger, ...(opts.bodyLimit ? { bodyLimit: opts.bodyLimit } : {}), ...(opts.maxBatch ? { maxBatch: opts.maxBatch } : {}), ...(opts.maxInflightWrites ? { maxInflightWrites: opts.maxInflightWrites } : {}) });
  closers.push(() => ledger.close(), () => app.close());
  const keys: Record<string, string> = {};
  const make = async (tenant: string, role: ApiKeyRole) => {
    keys[`${tenant}:${role}`] = (await createApiKey(ledger, { tenant, role, name: `${role} key` })).key;
  };
  for (const role of ['ingest', 'read', 'approve', 'admin'] as const) await make('acme', role);
  for (const role of ['ingest', 'read', 'admin'] as const) await make('globex', role);
  const call: Harness['call'] = (method, url, o = {}) => {
    const headers: Record<string, string> = {};
    if (o.key !== undefined) headers['authorization'] = `Bearer ${o.key}`;
    if (o.type !== undefined) headers['content-type'] = o.type;
    const payload = o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body));
    if (payload !== undefined && o.type === undefined) headers['content-type'] = 'application/json';
    return app.inject({ method, url, headers, ...(payload !== undefined ? { payload } : {}) });
  };
  return { app, ledger, keys, call };
}

let n = 0;
/** A fresh session id. */
const sid = () => `s-${++n}`;
const human = { type: 'human', id: 'alice@example.com' } as const;
const agent = { type: 'agent', id: 'refund-bot' } as const;
const open = (session: string, extra: Record<string, unknown> = {}) => ({
  type: 'session.opened',
  session: { id: session, objective: 'refund order 1234' },
  initiator: human,
  actor: agent,
  ...extra,
});
const step = (session: string, type: string, extra: Record<string, unknown> = {}) => ({ type, session: { id: session }, initiator: human, actor: agent, ...extra });
const uuid = (i: number) => `0193a0c2-0000-7000-8000-${String(i).padStart(12, '0')}`;

async function logSize(h: Harness, key: string): Promise<number> {
  const res = await h.call('GET', '/v1/log/checkpoint', { key });
  return parseCheckpoint(res.body.split('\n\n')[0]! + '\n').size;
}

for (const backend of BACKENDS) {
  describe.skipIf(backend.skip)(`on ${backend.name}`, () => {
    const start = (o: Omit<HarnessOptions, 'store'> = {}) => backend.make().then((store) => harness({ ...o, store }));

    describe('POST /v1/events', () => {
      let h: Harness;
      beforeAll(async () => {
        h = await start();
      });

      it('appends one event, filling id (UUIDv7) and time; the tenant comes from the key', async () => {
        const s = sid();
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: open(s) });
        expect(res.statusCode).toBe(201);
        const { results } = res.json();
        expect(results).toHaveLength(1);
        expect(results[0]).toMatchObject({ seq: 1, duplicate: false });
        expect(results[0].id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        const got = await h.call('GET', `/v1/events/${results[0].id}`, { key: h.keys['acme:read'] });
        expect(got.statusCode).toBe(200);
        const view = got.json();
        expect(view.index).toBe(results[0].index);
        expect(view.event).toMatchObject({ v: 1, tenant: 'acme', type: 'session.opened', session: { id: s, seq: 1, prev: null } });
        expect(Date.parse(view.event.time)).toBeGreaterThan(Date.now() - 60_000);
      });

      it('appends an array in request order, chaining the session', async () => {
        const s = sid();
        const body = [open(s, { id: uuid(1) }), step(s, 'prompt.received', { id: uuid(2), data: { prompt: 'refund it' } }), step(s, 'model.output', { id: uuid(3) })];
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body });
        expect(res.statusCode).toBe(201);
        const { results } = res.json();
        expect(results.map((r: { id: string }) => r.id)).toEqual([uuid(1), uuid(2), uuid(3)]);
        expect(results.map((r: { seq: number }) => r.seq)).toEqual([1, 2, 3]);
        expect(results[1].index).toBe(results[0].index + 1);
        const second = (await h.call('GET', `/v1/events/${uuid(2)}`, { key: h.keys['acme:read'] })).json();
        expect(second.event.data.prompt).toBe('refund it');
        expect(second.event.session.prev).toBe((await h.call('GET', `/v1/events/${uuid(1)}`, { key: h.keys['acme:read'] })).json().digest);
      });

      it('appends NDJSON, skipping blank lines and accepting CRLF', async () => {
        const s = sid();
        const raw = [open(s), step(s, 'prompt.received'), step(s, 'model.output')].map((e) => JSON.stringify(e)).join('\r\n\n') + '\n';
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], type: 'application/x-ndjson; charset=utf-8', raw });
        expect(res.statusCode).toBe(201);
        expect(res.json().results.map((r: { seq: number }) => r.seq)).toEqual([1, 2, 3]);
        const json = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], type: 'application/json; charset=utf-8', raw: JSON.stringify(step(s, 'model.output')) });
        expect(json.json().results[0].seq).toBe(4);
      });

      it('is idempotent by id: a re-send returns the original result and writes nothing (200)', async () => {
        const s = sid();
        const body = [open(s, { id: uuid(10) }), step(s, 'model.output', { id: uuid(11) })];
        const first = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body });
        expect(first.statusCode).toBe(201);
        const size = await logSize(h, h.keys['acme:read']!);
        const again = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body });
        expect(again.statusCode).toBe(200);
        expect(again.json().results).toEqual(first.json().results.map((r: object) => ({ ...r, duplicate: true })));
        expect(await logSize(h, h.keys['acme:read']!)).toBe(size);
        // Mixed: one duplicate and one new event is 200 too.
        const mixed = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: [body[1], step(s, 'model.output', { id: uuid(12) })] });
        expect(mixed.statusCode).toBe(200);
        expect(mixed.json().results.map((r: { duplicate: boolean; seq: number }) => [r.duplicate, r.seq])).toEqual([
          [true, 2],
          [false, 3],
        ]);
      });

      it('drops what the ledger assigns (v, recordedAt, session.seq/prev, seal) and accepts the key tenant in the body', async () => {
        const s = sid();
        const body = { ...open(s), v: 9, recordedAt: 'yesterday', tenant: 'acme', seal: { count: 5, head: 'x' }, session: { id: s, seq: 42, prev: 'nope' } };
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body });
        expect(res.statusCode).toBe(201);
        const view = (await h.call('GET', `/v1/events/${res.json().results[0].id}`, { key: h.keys['acme:read'] })).json();
        expect(view.event).toMatchObject({ v: 1, session: { id: s, seq: 1, prev: null } });
        expect(view.event.seal).toBeUndefined();
        expect(view.event.recordedAt).not.toBe('yesterday');
      });

      it('validates every event before appending any: one bad event writes nothing and is named with its field', async () => {
        const size = await logSize(h, h.keys['acme:read']!);
        const s = sid();
        const cases: [unknown, string, RegExp][] = [
          [[open(s), step(s, 'model.output'), step(s, 'model.output', { session: { id: 'bad id!' } })], 'events[2].session.id', /^events\[2\]\.session\.id: /],
          [[open(s), { type: 'session.opened', session: { id: s }, initiator: human }], 'events[1].actor', /events\[1\]\.actor/],
          [[open(s), 42], 'events[1]', /expected an event object/],
          [{ ...open(s), colour: 'red' }, 'events[0]', /colour/],
          [{ ...open(s), type: 'made.up' }, 'events[0].type', /taxonomy/],
          [{ ...open(s), id: 'not-a-uuid' }, 'events[0].id', /UUID/],
          [{ ...open(s), time: '2026-02-30T00:00:00Z' }, 'events[0].time', /real date/],
          [{ ...open(s), session: 'string' }, 'events[0].session', /object/],
          [step(s, 'tool.requested'), 'events[0].tool', /required/],
        ];
        for (const [body, field, message] of cases) {
          const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body });
          expect(res.statusCode, JSON.stringify(body)).toBe(400);
          expect(res.json().error).toMatchObject({ code: 'EVENT_INVALID', field });
          expect(res.json().error.message).toMatch(message);
        }
        // Values JSON cannot canonicalise, and absurd nesting, are refused the same way.
        const surrogate = `[${JSON.stringify(open(s)).slice(0, -1)},"data":{"note":"\\ud800"}}]`;
        const bad = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], raw: surrogate });
        expect(bad.statusCode).toBe(400);
        expect(bad.json().error.code).toBe('EVENT_INVALID');
        let deep: unknown = 'x';
        for (let i = 0; i < 200; i++) deep = [deep];
        const tooDeep = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: { ...open(s), data: { deep } } });
        expect(tooDeep.json().error).toMatchObject({ code: 'EVENT_INVALID', field: 'events[0]' });
        expect(await logSize(h, h.keys['acme:read']!)).toBe(size);
      });

      it('never stores a coerced value: types are checked, not converted', async () => {
        const s = sid();
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: { ...open(s), actor: { type: 'agent', id: 5 } } });
        expect(res.statusCode).toBe(400);
        expect(res.json().error.field).toBe('events[0].actor.id');
      });

      it('lets only admin keys append admin.* events', async () => {
        const event = { type: 'admin.policy_changed', actor: { type: 'service', id: 'policy-sync' }, data: { version: 'p2' } };
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: [open(sid()), event] });
        expect(res.statusCode).toBe(403);
        expect(res.json().error).toMatchObject({ code: 'FORBIDDEN', field: 'events[1].type' });
        expect((await h.call('POST', '/v1/events', { key: h.keys['acme:admin'], body: event })).statusCode).toBe(201);
      });

      it('lets an ingest key neither record what only Custody records (an answered approval, a revocation) nor claim a verified identity', async () => {
        const size = await logSize(h, h.keys['acme:read']!);
        const s = sid();
        const bob = { type: 'human', id: 'bob@example.com', verified: true };
        for (const [type, extra] of [
          ['approval.granted', { approval: { id: 'apr-forged', approver: bob } }],
          ['session.revoked', {}],
          ['credential.issued', { credential: { jti: 'j', fingerprint: 'A'.repeat(43) } }],
        ] as const) {
          const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: [open(s), step(s, type, extra)] });
          expect(res.statusCode, type).toBe(403);
          expect(res.json().error).toMatchObject({ code: 'FORBIDDEN', field: 'events[1].type' });
        }
        expect(await logSize(h, h.keys['acme:read']!)).toBe(size);

        // "verified" is Custody's word: a caller's claim of it is stored as false.
        const claimed = {
          ...open(s),
          initiator: { type: 'human', id: 'alice@example.com', verified: true },
          actor: { type: 'agent', id: 'agent:x', verified: true },
          chain: [{ principal: { type: 'human', id: 'alice@example.com', verified: true } }],
          workload: { method: 'jwt-svid', verified: true, spiffeId: 'spiffe://example.org/agent' },
        };
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: claimed });
        expect(res.statusCode, res.body).toBe(201);
        const view = (await h.call('GET', `/v1/events/${res.json().results[0].id}`, { key: h.keys['acme:read'] })).json();
        expect(view.event.initiator).toEqual({ type: 'human', id: 'alice@example.com', verified: false });
        expect(view.event.actor).toEqual({ type: 'agent', id: 'agent:x', verified: false });
        expect(view.event.chain[0].principal.verified).toBe(false);
        expect(view.event.workload.verified).toBe(false);
      });

      it('refuses a body tenant that is not the key tenant (400 TENANT_MISMATCH), writing nothing', async () => {
        const size = await logSize(h, h.keys['acme:read']!);
        const s = sid();
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: [open(s), { ...step(s, 'model.output'), tenant: 'globex' }] });
        expect(res.statusCode).toBe(400);
        expect(res.json().error).toMatchObject({ code: 'TENANT_MISMATCH', field: 'events[1].tenant' });
        expect(await logSize(h, h.keys['acme:read']!)).toBe(size);
      });

      it('reports per-event refusals of the sequencer in results with 207; the other events are appended', async () => {
        const s = sid();
        await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: [open(s), step(s, 'session.closed')] });
        const other = sid();
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: [step(s, 'model.output', { id: uuid(20) }), open(other, { id: uuid(21) })] });
        expect(res.statusCode).toBe(207);
        const [refused, ok] = res.json().results;
        expect(refused).toMatchObject({ id: uuid(20), error: { code: 'SESSION_SEALED', field: 'events[0].session.id' } });
        expect(ok).toMatchObject({ id: uuid(21), seq: 1, duplicate: false });
        const closeMissing = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: step('never-opened', 'session.closed') });
        expect(closeMissing.statusCode).toBe(207);
        expect(closeMissing.json().results[0].error.code).toBe('SESSION_NOT_FOUND');
      });

      it('refuses bodies that are empty, not JSON, or of another media type', async () => {
        const key = h.keys['acme:ingest'];
        const cases: [Parameters<Harness['call']>[2], number, string][] = [
          [{ key, body: [] }, 400, 'REQUEST_INVALID'],
          [{ key, raw: '', type: 'application/json' }, 400, 'REQUEST_INVALID'],
          [{ key, raw: '\n \n', type: 'application/x-ndjson' }, 400, 'REQUEST_INVALID'],
          [{ key, raw: '{"type":', type: 'application/json' }, 400, 'JSON_INVALID'],
          [{ key, raw: '"just a string"', type: 'application/json' }, 400, 'REQUEST_INVALID'],
          [{ key, raw: 'null', type: 'application/json' }, 400, 'REQUEST_INVALID'],
          [{ key, raw: '{"__proto__":{"x":1}}', type: 'application/json' }, 400, 'JSON_INVALID'],
          [{ key, raw: 'type=session.opened', type: 'text/plain' }, 415, 'MEDIA_TYPE_UNSUPPORTED'],
          [{ key, raw: 'a=b', type: 'application/x-www-form-urlencoded' }, 415, 'MEDIA_TYPE_UNSUPPORTED'],
        ];
        for (const [opts, status, code] of cases) {
          const res = await h.call('POST', '/v1/events', opts);
          expect(res.statusCode, JSON.stringify(opts)).toBe(status);
          expect(res.json().error.code, JSON.stringify(opts)).toBe(code);
        }
        const ndjson = await h.call('POST', '/v1/events', { key, type: 'application/x-ndjson', raw: `${JSON.stringify(open(sid()))}\n{oops}\n` });
        expect(ndjson.statusCode).toBe(400);
        expect(ndjson.json().error).toMatchObject({ code: 'JSON_INVALID', field: 'events[1]' });
        expect(ndjson.json().error.message).toMatch(/line 2/);
      });
    });

    describe('limits', () => {
      it('refuses more events than maxBatch (413 BATCH_TOO_LARGE) and bodies over bodyLimit (413 BODY_TOO_LARGE)', async () => {
        const h = await start({ maxBatch: 3, bodyLimit: 4096 });
        const s = sid();
        const four = [open(s), step(s, 'model.output'), step(s, 'model.output'), step(s, 'model.output')];
        const batch = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: four });
        expect(batch.statusCode).toBe(413);
        expect(batch.json().error.code).toBe('BATCH_TOO_LARGE');
        const nd = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], type: 'application/x-ndjson', raw: four.map((e) => JSON.stringify(e)).join('\n') });
        expect(nd.statusCode).toBe(413);
        const big = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: { ...open(s), data: { blob: 'x'.repeat(5000) } } });
        expect(big.statusCode).toBe(413);
        expect(big.json().error.code).toBe('BODY_TOO_LARGE');
        expect(await logSize(h, h.keys['acme:read']!)).toBe(4); // the admin.key_created entries of the four acme keys
        expect((await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: four.slice(0, 3) })).statusCode).toBe(201);
      });

      it('takes gzipped bodies on POST /v1/events (JSON and NDJSON), the body limit counting the inflated bytes; other encodings and other routes are 415', async () => {
        const h = await start({ bodyLimit: 4096 });
        const s = sid();
        const gz = (key: string | undefined, url: string, body: Buffer, type = 'application/json', encoding = 'gzip') =>
          h.app.inject({ method: 'POST', url, headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), 'content-type': type, 'content-encoding': encoding }, payload: body });
        const key = h.keys['acme:ingest']!;
        const json = await gz(key, '/v1/events', gzipSync(JSON.stringify([open(s), step(s, 'model.output')])));
        expect(json.statusCode).toBe(201);
        expect(json.json().results.map((r: { seq: number }) => r.seq)).toEqual([1, 2]);
        const nd = await gz(key, '/v1/events', gzipSync(`${JSON.stringify(step(s, 'model.output'))}\n`), 'application/x-ndjson');
        expect(nd.statusCode).toBe(201);
        const size = await logSize(h, h.keys['acme:read']!);
        // Small on the wire, past the limit once inflated: refused, nothing written.
        const bomb = await gz(key, '/v1/events', gzipSync(JSON.stringify({ ...open(sid()), data: { blob: 'x'.repeat(50_000) } })));
        expect(bomb.statusCode).toBe(413);
        expect(bomb.json().error.code).toBe('BODY_TOO_LARGE');
        const notGzip = await gz(key, '/v1/events', Buffer.from(JSON.stringify(open(sid()))));
        expect(notGzip.statusCode).toBe(400);
        expect(notGzip.json().error).toEqual({ code: 'REQUEST_INVALID', message: 'the body is not valid gzip (Content-Encoding: gzip)' });
        const br = await gz(key, '/v1/events', Buffer.from('x'), 'application/json', 'br');
        expect(br.statusCode).toBe(415);
        expect(br.json().error.code).toBe('MEDIA_TYPE_UNSUPPORTED');
        const keys = await gz(h.keys['acme:admin'], '/v1/keys', gzipSync(JSON.stringify({ role: 'read', name: 'zipped' })));
        expect(keys.statusCode).toBe(415);
        expect(keys.json().error.message).toContain('Content-Encoding gzip is not supported on /v1/keys');
        expect(await logSize(h, h.keys['acme:read']!)).toBe(size);
      });

      it('defaults to 1,000 events and 5 MiB', async () => {
        const h = await start();
        const s = sid();
        const many = [open(s), ...Array.from({ length: 1000 }, () => step(s, 'model.output'))];
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: many });
        expect(res.statusCode).toBe(413);
        expect(res.json().error.code).toBe('BATCH_TOO_LARGE');
        const ok = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: many.slice(0, 1000) });
        expect(ok.statusCode).toBe(201);
        expect(ok.json().results[999].seq).toBe(1000);
        const huge = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: { ...open(sid()), data: { blob: 'x'.repeat(5 * 1024 * 1024) } } });
        expect(huge.statusCode).toBe(413);
        expect(huge.json().error.code).toBe('BODY_TOO_LARGE');
      });
    });

    describe('reading', () => {
      let h: Harness;
      const s1 = 'read-1';
      const s2 = 'read-2';
      const trace = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' };
      beforeAll(async () => {
        h = await start();
        const bob = { type: 'human', id: 'bob@example.com' } as const;
        const body = [
          open(s1, { id: uuid(100), time: '2026-11-22T06:00:00Z' }),
          step(s1, 'tool.requested', { id: uuid(101), time: '2026-11-22T06:01:00Z', tool: { name: 'refunds.create' }, data: { arguments: { order: 1234 } }, trace }),
          step(s1, 'policy.decided', {
            id: uuid(102),
            time: '2026-11-22T06:02:00Z',
            cause: uuid(101),
            tool: { name: 'refunds.create' },
            decision: { effect: 'approval_required', policyVersion: 'p1', policies: ['refunds-over-100'], reasons: ['amount over 100'] },
          }),
          step(s1, 'approval.granted', { id: uuid(103), time: '2026-11-22T06:03:00Z', cause: uuid(102), approval: { id: 'ap-1', approver: bob } }),
          step(s1, 'tool.completed', { id: uuid(104), time: '2026-11-22T06:04:00Z', cause: uuid(101), tool: { name: 'refunds.create' }, data: { result: 'ok' } }),
          step(s1, 'session.closed', { id: uuid(105), time: '2026-11-22T06:05:00Z' }),
          { ...open(s2, { id: uuid(106), time: '2026-11-23T06:00:00Z' }), initiator: bob, actor: { type: 'agent', id: 'other-bot' } },
        ];
        // An admin key: the fixture includes approval.granted, which only Custody (or an admin) records.
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:admin'], body });
        expect(res.statusCode).toBe(201);
      });

      const ids = async (url: string, key = h.keys['acme:read']) => {
        const res = await h.call('GET', url, { key });
        expect(res.statusCode, res.body).toBe(200);
        return (res.json().events as { event: { id: string } }[]).map((e) => e.event.id);
      };

      it('GET /v1/events filters by every EntryFilter field', async () => {
        expect(await ids(`/v1/events?session=${s1}&order=asc`)).toEqual([100, 101, 102, 103, 104, 105].map(uuid));
        expect(await ids('/v1/events?initiator=bob%40example.com')).toEqual([uuid(106)]);
        expect(await ids('/v1/events?agent=other-bot')).toEqual([uuid(106)]);
        expect(await ids('/v1/events?approver=bob%40example.com')).toEqual([uuid(103)]);
        expect(await ids('/v1/events?principal=bob%40example.com')).toEqual([uuid(106), uuid(103)]);
        expect(await ids('/v1/events?tool=refunds.create&order=asc')).toEqual([uuid(101), uuid(102), uuid(104)]);
        expect(await ids('/v1/events?decision=approval_required')).toEqual([uuid(102)]);
        expect(await ids('/v1/events?type=approval.*')).toEqual([uuid(103)]);
        expect(await ids('/v1/events?type=session.opened')).toEqual([uuid(106), uuid(100)]);
        expect(await ids(`/v1/events?trace=${trace.traceId}`)).toEqual([uuid(101)]);
        expect(await ids('/v1/events?objective=REFUND%20ORDER&type=session.closed')).toEqual([uuid(105)]);
        expect(await ids('/v1/events?since=2026-11-22T06:03:00Z&until=2026-11-22T06:05:00Z&order=asc')).toEqual([uuid(103), uuid(104)]);
        expect(await ids('/v1/events?since=2026-11-22T07:03:00%2B01:00&until=2026-11-22T06:05:00.000Z')).toEqual([uuid(104), uuid(103)]);
        expect(await ids('/v1/events?workload=spiffe%3A%2F%2Fnone')).toEqual([]);
      });

      it('pages with limit and cursor, both orders', async () => {
        for (const order of ['asc', 'desc']) {
          const seen: string[] = [];
          let cursor: string | undefined;
          for (let guard = 0; guard < 10; guard++) {
            const res = await h.call('GET', `/v1/events?session=${s1}&limit=4&order=${order}${cursor ? `&cursor=${cursor}` : ''}`, { key: h.keys['acme:read'] });
            const page = res.json();
            seen.push(...page.events.map((e: { event: { id: string } }) => e.event.id));
            cursor = page.nextCursor;
            if (cursor === undefined) break;
          }
          const want = [100, 101, 102, 103, 104, 105].map(uuid);
          expect(seen).toEqual(order === 'asc' ? want : want.reverse());
        }
      });

      it('refuses bad query parameters with 400 naming the parameter', async () => {
        const key = h.keys['acme:read'];
        const cases: [string, string, string | undefined][] = [
          ['/v1/events?limit=0', 'REQUEST_INVALID', 'limit'],
          ['/v1/events?limit=1001', 'REQUEST_INVALID', 'limit'],
          ['/v1/events?limit=ten', 'REQUEST_INVALID', 'limit'],
          ['/v1/events?order=sideways', 'REQUEST_INVALID', 'order'],
          ['/v1/events?initator=alice', 'REQUEST_INVALID', 'initator'],
          ['/v1/events?since=yesterday', 'REQUEST_INVALID', 'since'],
          ['/v1/events?trace=xyz', 'REQUEST_INVALID', 'trace'],
          ['/v1/events?cursor=bm9wZQ', 'CURSOR_INVALID', 'cursor'],
          ['/v1/events?session=a&session=b', 'REQUEST_INVALID', 'session'],
          ['/v1/sessions?sealed=maybe', 'REQUEST_INVALID', 'sealed'],
          ['/v1/sessions/bad%20id', 'REQUEST_INVALID', 'id'],
          // Ajv takes these as integers within any bounds: refused before any route sees them.
          ['/v1/events?limit=1e400', 'REQUEST_INVALID', 'limit'],
          ['/v1/events?limit=Infinity', 'REQUEST_INVALID', 'limit'],
          ['/v1/log/proof/inclusion?index=0&size=1e400', 'REQUEST_INVALID', 'size'],
          ['/v1/log/proof/consistency?from=-Infinity&to=1', 'REQUEST_INVALID', 'from'],
        ];
        for (const [url, code, field] of cases) {
          const res = await h.call('GET', url, { key });
          expect(res.statusCode, url).toBe(400);
          expect(res.json().error, url).toMatchObject({ code, ...(field ? { field } : {}) });
        }
      });

      it('GET /v1/events/:id answers 404 EVENT_NOT_FOUND for an unknown id', async () => {
        const res = await h.call('GET', `/v1/events/${uuid(999)}`, { key: h.keys['acme:read'] });
        expect(res.statusCode).toBe(404);
        expect(res.json().error.code).toBe('EVENT_NOT_FOUND');
      });

      it('shows committed fields opened and lists none as redacted while disclosures are held', async () => {
        const view = (await h.call('GET', `/v1/events/${uuid(101)}`, { key: h.keys['acme:read'] })).json();
        expect(view.event.data.arguments).toEqual({ order: 1234 });
        expect(view.redacted).toEqual([]);
      });

      it('GET /v1/sessions lists, filters and pages sessions; GET /v1/sessions/:id shows one', async () => {
        const key = h.keys['acme:read'];
        const all = (await h.call('GET', '/v1/sessions', { key })).json();
        expect(all.sessions.map((x: { id: string }) => x.id)).toEqual([s2, s1]);
        const sealed = (await h.call('GET', '/v1/sessions?sealed=true', { key })).json();
        expect(sealed.sessions.map((x: { id: string }) => x.id)).toEqual([s1]);
        expect((await h.call('GET', '/v1/sessions?initiator=bob%40example.com', { key })).json().sessions.map((x: { id: string }) => x.id)).toEqual([s2]);
        expect((await h.call('GET', '/v1/sessions?agent=refund-bot&objective=refund', { key })).json().sessions.map((x: { id: string }) => x.id)).toEqual([s1]);
        const p1 = (await h.call('GET', '/v1/sessions?limit=1&order=asc', { key })).json();
        expect(p1.sessions.map((x: { id: string }) => x.id)).toEqual([s1]);
        const p2 = (await h.call('GET', `/v1/sessions?limit=1&order=asc&cursor=${p1.nextCursor}`, { key })).json();
        expect(p2.sessions.map((x: { id: string }) => x.id)).toEqual([s2]);
        expect(p2.nextCursor).toBeUndefined();
        const one = (await h.call('GET', `/v1/sessions/${s1}`, { key })).json();
        expect(one).toMatchObject({ id: s1, seq: 6, sealed: true, entries: 6, initiatorId: 'alice@example.com', actorId: 'refund-bot', objective: 'refund order 1234', lastType: 'session.closed' });
        const missing = await h.call('GET', '/v1/sessions/nope', { key });
        expect(missing.statusCode).toBe(404);
        expect(missing.json().error.code).toBe('SESSION_NOT_FOUND');
      });

      it('GET /v1/sessions/:id/timeline gives the events in seq order and their causal tree', async () => {
        const res = await h.call('GET', `/v1/sessions/${s1}/timeline`, { key: h.keys['acme:approve'] });
        expect(res.statusCode).toBe(200);
        const { session, events, tree } = res.json();
        expect(session.id).toBe(s1);
        expect(events.map((e: { event: { session: { seq: number } } }) => e.event.session.seq)).toEqual([1, 2, 3, 4, 5, 6]);
        const shape = (nodes: { id: string; children: unknown[] }[]): unknown => nodes.map((x) => [x.id.slice(-3), shape(x.children as never)]);
        expect(shape(tree)).toEqual([
          ['100', []],
          ['101', [['102', [['103', []]]], ['104', []]]],
          ['105', []],
        ]);
        expect((await h.call('GET', '/v1/sessions/nope/timeline', { key: h.keys['acme:read'] })).statusCode).toBe(404);
      });

      it('GET /v1/sessions/:id/bundle exports a bundle that verifies offline, with or without disclosures', async () => {
        const key = h.keys['acme:read'];
        const verifierKey = (await h.call('GET', '/v1/log/key', { key })).body;
        const res = await h.call('GET', `/v1/sessions/${s1}/bundle`, { key });
        expect(res.statusCode).toBe(200);
        expect(res.headers['content-type']).toMatch(/^application\/json/);
        const bundle = res.json();
        expect(bundle.format).toBe('custody.bundle/v1');
        const report = verifyBundle(bundle, { verifierKey });
        expect(report.failures).toEqual([]);
        expect(report.verdict).toBe('complete');
        expect(bundle.records.some((r: { disclosures?: string[] }) => r.disclosures !== undefined)).toBe(true);
        const redacted = (await h.call('GET', `/v1/sessions/${s1}/bundle?disclosures=false`, { key })).json();
        expect(redacted.records.every((r: { disclosures?: string[] }) => r.disclosures === undefined)).toBe(true);
        const r2 = verifyBundle(redacted, { verifierKey });
        expect(r2.verdict).toBe('complete');
        const open2 = verifyBundle((await h.call('GET', `/v1/sessions/${s2}/bundle`, { key })).json(), { verifierKey });
        expect(open2.verdict).toBe('intact');
        expect((await h.call('GET', '/v1/sessions/nope/bundle', { key })).json().error.code).toBe('SESSION_NOT_FOUND');
      });

      it("GET /v1/principals/:id/events lists a principal's activity in any role, paged", async () => {
        const key = h.keys['acme:read'];
        expect(await ids('/v1/principals/bob%40example.com/events', key)).toEqual([uuid(106), uuid(103)]);
        expect(await ids('/v1/principals/bob%40example.com/events?type=approval.*', key)).toEqual([uuid(103)]);
        const page = (await h.call('GET', '/v1/principals/refund-bot/events?limit=2&order=asc', { key })).json();
        expect(page.events.map((e: { event: { id: string } }) => e.event.id)).toEqual([uuid(100), uuid(101)]);
        expect(page.nextCursor).toBeDefined();
        expect((await h.call('GET', '/v1/principals/x/events?principal=y', { key })).statusCode).toBe(400);
      });
    });

    describe('log endpoints', () => {
      it('serve checkpoints, the key, receipts and consistency proofs that verify with @custody/core', async () => {
        const h = await start();
        const key = h.keys['acme:read']!;
        const verifierText = (await h.call('GET', '/v1/log/key', { key })).body;
        const verifier = parseVerifierKey(verifierText);
        expect(verifier.name).toBe('custody.test/acme');

        const first = await h.call('GET', '/v1/log/checkpoint', { key });
        expect(first.statusCode).toBe(200);
        expect(first.headers['content-type']).toBe('text/plain; charset=utf-8');
        const cp1 = verifyCheckpoint(first.body, verifier);
        expect(cp1.size).toBe(4); // admin.key_created of the four acme keys
        const s = sid();
        await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: [open(s), step(s, 'model.output'), step(s, 'model.output')] });
        const cp2 = verifyCheckpoint((await h.call('GET', '/v1/log/checkpoint', { key })).body, verifier);
        expect(cp2.size).toBe(cp1.size + 3);

        // An earlier size, signed on request.
        const earlier = await h.call('GET', `/v1/log/checkpoint?size=${cp1.size + 1}`, { key });
        expect(verifyCheckpoint(earlier.body, verifier).size).toBe(cp1.size + 1);
        const beyond = await h.call('GET', `/v1/log/checkpoint?size=${cp2.size + 1}`, { key });
        expect(beyond.statusCode).toBe(400);
        expect(beyond.json().error).toMatchObject({ code: 'RANGE_INVALID', field: 'size' });

        // Receipts: the entry bytes come from the bundle.
        const bundle = (await h.call('GET', `/v1/sessions/${s}/bundle`, { key })).json();
        const entry = fromBase64(bundle.records[1].entry);
        const index = cp1.size + 1;
        const receipt = await h.call('GET', `/v1/log/proof/inclusion?index=${index}`, { key });
        expect(receipt.statusCode).toBe(200);
        expect(receipt.headers['content-type']).toBe('text/plain; charset=utf-8');
        expect(verifyReceipt(entry, receipt.body, verifier)).toMatchObject({ index, checkpoint: { size: cp2.size } });
        const atSize = await h.call('GET', `/v1/log/proof/inclusion?index=${index}&size=${index + 1}`, { key });
        expect(verifyReceipt(entry, atSize.body, verifier).checkpoint.size).toBe(index + 1);
        expect((await h.call('GET', `/v1/log/proof/inclusion?index=${cp2.size}`, { key })).json().error.code).toBe('RANGE_INVALID');
        expect((await h.call('GET', '/v1/log/proof/inclusion', { key })).json().error).toMatchObject({ code: 'REQUEST_INVALID', field: 'index' });

        // Consistency: JSON { from, to, proof } with standard base64 hashes.
        const cons = await h.call('GET', `/v1/log/proof/consistency?from=${cp1.size}`, { key });
        expect(cons.statusCode).toBe(200);
        const body = cons.json();
        expect(body.to).toBe(cp2.size);
        expect(body.proof.every((p: string) => /^[A-Za-z0-9+/]{43}=$/.test(p))).toBe(true);
        expect(verifyConsistency(cp1.size, cp2.size, cp1.rootHash, cp2.rootHash, body.proof.map((p: string) => fromBase64(p)))).toBe(true);
        const explicit = (await h.call('GET', `/v1/log/proof/consistency?from=1&to=${cp1.size + 1}`, { key })).json();
        const cpOld = verifyCheckpoint((await h.call('GET', '/v1/log/checkpoint?size=1', { key })).body, verifier);
        const cpNew = verifyCheckpoint(earlier.body, verifier);
        expect(verifyConsistency(1, cp1.size + 1, cpOld.rootHash, cpNew.rootHash, explicit.proof.map((p: string) => fromBase64(p)))).toBe(true);
        const backwards = await h.call('GET', `/v1/log/proof/consistency?from=${cp2.size}&to=1`, { key });
        expect(backwards.statusCode).toBe(400);
        expect(backwards.json().error.code).toBe('RANGE_INVALID');
      });

      it('answers size 0 for an empty tenant log', async () => {
        const h = await start();
        const store = h.ledger.store;
        const { key } = await createApiKey(store, { tenant: 'empty', role: 'read', name: 'no entries' });
        const verifier = parseVerifierKey((await h.call('GET', '/v1/log/key', { key })).body);
        expect(verifyCheckpoint((await h.call('GET', '/v1/log/checkpoint', { key })).body, verifier).size).toBe(0);
      });
    });

    describe('API keys', () => {
      let h: Harness;
      beforeAll(async () => {
        h = await start();
      });

      it('are random, stored only as their SHA-256, and each entry of their life is in the log', async () => {
        const res = await h.call('POST', '/v1/keys', { key: h.keys['acme:admin'], body: { role: 'ingest', name: 'orders agent' } });
        expect(res.statusCode).toBe(201);
        const created = res.json();
        expect(created).toMatchObject({ tenant: 'acme', role: 'ingest', name: 'orders agent' });
        expect(created.key).toMatch(/^cust_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/);
        expect(created.key.slice(5, 17)).toBe(created.id);
        const stored = await h.ledger.store.findApiKey(hashApiKey(created.key));
        expect(stored).toMatchObject({ id: created.id, tenant: 'acme', role: 'ingest' });
        expect(JSON.stringify(stored)).not.toContain(created.key.slice(18));

        const list = (await h.call('GET', '/v1/keys', { key: h.keys['acme:admin'] })).json();
        expect(list.keys.map((k: { id: string }) => k.id)).toContain(created.id);
        expect(list.keys.every((k: { tenant: string }) => k.tenant === 'acme')).toBe(true);
        expect(JSON.stringify(list)).not.toMatch(/hash|cust_/);

        // The new key works; revoking it stops it at once.
        const s = sid();
        expect((await h.call('POST', '/v1/events', { key: created.key, body: open(s) })).statusCode).toBe(201);
        const del = await h.call('DELETE', `/v1/keys/${created.id}`, { key: h.keys['acme:admin'] });
        expect(del.statusCode).toBe(204);
        const after = await h.call('POST', '/v1/events', { key: created.key, body: step(s, 'model.output') });
        expect(after.statusCode).toBe(401);
        expect(after.json().error.code).toBe('UNAUTHENTICATED');
        expect((await h.call('DELETE', `/v1/keys/${created.id}`, { key: h.keys['acme:admin'] })).json().error.code).toBe('KEY_NOT_FOUND');
        const revokedRow = (await h.call('GET', '/v1/keys', { key: h.keys['acme:admin'] })).json().keys.find((k: { id: string }) => k.id === created.id);
        expect(revokedRow.revokedAt).toBeDefined();

        const adminId = (await authenticate(h.ledger, h.keys['acme:admin']!))!.id;
        const entries = (await h.call('GET', '/v1/events?type=admin.*&limit=2', { key: h.keys['acme:read'] })).json().events;
        expect(entries.map((e: { event: { type: string } }) => e.event.type)).toEqual(['admin.key_revoked', 'admin.key_created']);
        for (const e of entries) {
          expect(e.event.actor).toEqual({ type: 'service', id: `key:${adminId}` });
          expect(e.event.data).toEqual({ keyId: created.id, role: 'ingest', name: 'orders agent' });
          expect(e.event.tenant).toBe('acme');
        }
      });

      it('admin keys manage their own tenant only', async () => {
        const globexRead = (await authenticate(h.ledger, h.keys['globex:read']!))!;
        const res = await h.call('DELETE', `/v1/keys/${globexRead.id}`, { key: h.keys['acme:admin'] });
        expect(res.statusCode).toBe(404);
        expect((await h.call('GET', '/v1/log/key', { key: h.keys['globex:read'] })).statusCode).toBe(200);
        const globexKeys = (await h.call('GET', '/v1/keys', { key: h.keys['globex:admin'] })).json().keys;
        expect(globexKeys.every((k: { tenant: string }) => k.tenant === 'globex')).toBe(true);
        const acmeLog = (await h.call('GET', '/v1/events?type=admin.*&limit=1000', { key: h.keys['acme:read'] })).json().events;
        expect(acmeLog.every((e: { event: { tenant: string } }) => e.event.tenant === 'acme')).toBe(true);
      });

      it('refuses bad key requests', async () => {
        const key = h.keys['acme:admin'];
        for (const body of [{ role: 'root', name: 'x' }, { role: 'read' }, { role: 'read', name: '' }, { role: 'read', name: 'x', tenant: 'globex' }]) {
          const res = await h.call('POST', '/v1/keys', { key, body });
          expect(res.statusCode, JSON.stringify(body)).toBe(400);
          expect(res.json().error.code).toBe('REQUEST_INVALID');
        }
        expect((await h.call('POST', '/v1/keys', { key, body: { role: 'read', name: '   ' } })).json().error).toMatchObject({ code: 'REQUEST_INVALID', field: 'name' });
        for (const role of ['ingest', 'read', 'approve'] as const) {
          const res = await h.call('POST', '/v1/keys', { key: h.keys[`acme:${role}`], body: { role: 'admin', name: 'escalate' } });
          expect(res.statusCode).toBe(403);
          expect(res.json().error.code).toBe('FORBIDDEN');
        }
      });

      it('createApiKey and revokeApiKey work on a ledger or a bare store', async () => {
        const store = h.ledger.store;
        const { key, row } = await createApiKey(store, { tenant: 'bootstrap', role: 'admin', name: 'first' });
        expect(await authenticate(store, key)).toMatchObject({ id: row.id, tenant: 'bootstrap', role: 'admin' });
        expect(await authenticate(store, key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A'))).toBeUndefined();
        expect(await authenticate(store, 'cust_short')).toBeUndefined();
        expect(await revokeApiKey(h.ledger, { tenant: 'other', id: row.id })).toBe(false);
        expect(await revokeApiKey(h.ledger, { tenant: 'bootstrap', id: row.id, by: 'cli:direct' })).toBe(true);
        expect(await authenticate(store, key)).toBeUndefined();
        const revoked = await h.ledger.query('bootstrap', { type: 'admin.key_revoked' }, { limit: 10 });
        expect(revoked.items[0]?.event.actor).toEqual({ type: 'service', id: 'cli:direct' });
        await expect(createApiKey(store, { tenant: 'Bad Tenant', role: 'read', name: 'x' })).rejects.toMatchObject({ code: 'REQUEST_INVALID', field: 'tenant' });
      });
    });

    describe('access', () => {
      let h: Harness;
      beforeAll(async () => {
        h = await start();
      });

      it('needs a live key: 401 UNAUTHENTICATED with WWW-Authenticate: Bearer', async () => {
        for (const authorization of [undefined, '', 'Basic dXNlcjpwYXNz', 'Bearer', 'Bearer cust_aaaaaaaaaaaa_' + 'A'.repeat(43), `Bearer ${'x'.repeat(5000)}`]) {
          const res = await h.app.inject({ method: 'GET', url: '/v1/events', headers: authorization === undefined ? {} : { authorization } });
          expect(res.statusCode, String(authorization)).toBe(401);
          expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
          expect(res.json().error.code).toBe('UNAUTHENTICATED');
        }
        const ok = await h.app.inject({ method: 'GET', url: '/v1/events', headers: { authorization: `bearer  ${h.keys['acme:read']}` } });
        expect(ok.statusCode).toBe(200);
      });

      it('checks the role: ingest appends, read/approve/admin read, admin manages keys', async () => {
        const matrix: [string, string, string, number][] = [
          ['GET', '/v1/events', 'ingest', 403],
          ['GET', '/v1/log/checkpoint', 'ingest', 403],
          ['GET', '/v1/sessions', 'approve', 200],
          ['GET', '/v1/log/key', 'read', 200],
          ['GET', '/v1/events', 'admin', 200],
          ['GET', '/v1/keys', 'read', 403],
          ['GET', '/v1/keys', 'admin', 200],
        ];
        for (const [method, url, role, status] of matrix) {
          const res = await h.call(method as 'GET', url, { key: h.keys[`acme:${role}`] });
          expect(res.statusCode, `${role} ${method} ${url}`).toBe(status);
          if (status === 403) expect(res.json().error.code).toBe('FORBIDDEN');
        }
        for (const role of ['read', 'approve']) {
          const res = await h.call('POST', '/v1/events', { key: h.keys[`acme:${role}`], body: open(sid()) });
          expect(res.statusCode).toBe(403);
        }
        expect((await h.call('POST', '/v1/events', { key: h.keys['acme:admin'], body: open(sid()) })).statusCode).toBe(201);
      });

      it('keeps tenants apart: a key never reads or writes another tenant', async () => {
        const s = sid();
        const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: open(s, { id: uuid(500) }) });
        expect(res.statusCode).toBe(201);
        const g = h.keys['globex:read'];
        expect((await h.call('GET', `/v1/events/${uuid(500)}`, { key: g })).statusCode).toBe(404);
        expect((await h.call('GET', `/v1/sessions/${s}`, { key: g })).statusCode).toBe(404);
        expect((await h.call('GET', `/v1/sessions/${s}/timeline`, { key: g })).statusCode).toBe(404);
        expect((await h.call('GET', `/v1/sessions/${s}/bundle`, { key: g })).statusCode).toBe(404);
        expect((await h.call('GET', `/v1/events?session=${s}`, { key: g })).json().events).toEqual([]);
        expect((await h.call('GET', '/v1/principals/alice%40example.com/events', { key: g })).json().events).toEqual([]);
        expect((await h.call('GET', '/v1/sessions', { key: g })).json().sessions).toEqual([]);
        expect(parseVerifierKey((await h.call('GET', '/v1/log/key', { key: g })).body).name).toBe('custody.test/globex');
        // The same event id in another tenant is another event, not a duplicate.
        const same = await h.call('POST', '/v1/events', { key: h.keys['globex:ingest'], body: open(s, { id: uuid(500) }) });
        expect(same.statusCode).toBe(201);
        expect(same.json().results[0].duplicate).toBe(false);
        const mismatch = await h.call('POST', '/v1/events', { key: h.keys['globex:ingest'], body: { ...open(sid()), tenant: 'acme' } });
        expect(mismatch.json().error.code).toBe('TENANT_MISMATCH');
        const globexEvents = (await h.call('GET', '/v1/events?limit=1000', { key: g })).json().events;
        expect(globexEvents.every((e: { event: { tenant: string } }) => e.event.tenant === 'globex')).toBe(true);
        const acmeEvents = (await h.call('GET', '/v1/events?limit=1000', { key: h.keys['acme:read'] })).json().events;
        expect(acmeEvents.every((e: { event: { tenant: string } }) => e.event.tenant === 'acme')).toBe(true);
      });

      it('leaves /, /v1/health and /v1/openapi.json open', async () => {
        const health = await h.call('GET', '/v1/health');
        expect(health.statusCode).toBe(200);
        expect(health.json()).toEqual({ status: 'ok', store: backend.name });
        expect((await h.call('GET', '/')).json().openapi).toBe('/v1/openapi.json');
        expect((await h.call('GET', '/v1/openapi.json')).json().openapi).toBe('3.1.0');
      });

      it('answers unknown routes and bad URLs in the error shape', async () => {
        const res = await h.call('GET', '/v2/events', { key: h.keys['acme:read'] });
        expect(res.statusCode).toBe(404);
        expect(res.json().error.code).toBe('NOT_FOUND');
        expect((await h.call('PUT', '/v1/events', { key: h.keys['acme:read'], body: {} })).json().error.code).toBe('NOT_FOUND');
        const bad = await h.call('GET', '/v1/events/%E0%A4%A', { key: h.keys['acme:read'] });
        expect(bad.statusCode).toBe(400);
        expect(bad.json().error.code).toBe('REQUEST_INVALID');
      });
    });
  });
}

type Override = (...args: never[]) => Promise<unknown>;

/** A SqliteStore whose chosen methods are replaced once armed: a fake, not a mock. */
function failing(inner: SqliteStore): { store: LedgerStore; arm: (o: Partial<Record<keyof LedgerStore, Override>>) => void } {
  let armed: Partial<Record<keyof LedgerStore, Override>> = {};
  const store = new Proxy(inner, {
    get(target, prop) {
      const o = armed[prop as keyof LedgerStore];
      if (o !== undefined) return o;
      const value: unknown = Reflect.get(target, prop);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { store, arm: (o) => (armed = o) };
}
const reject = (err: unknown) => () => Promise.reject(err);

describe('store errors', () => {
  it('maps STORE_BUSY / STORE_UNAVAILABLE / STORE_HEAD_CONFLICT to 503 with Retry-After, STORE_FULL to 507, STORE_CORRUPT to 500 naming it', async () => {
    const cases: [StoreError, number][] = [
      [new StoreError('STORE_BUSY', 'busy'), 503],
      [new StoreError('STORE_UNAVAILABLE', 'down'), 503],
      [new StoreError('STORE_HEAD_CONFLICT', 'raced'), 503],
      [new StoreError('STORE_FULL', 'disk full'), 507],
      [new StoreError('STORE_CORRUPT', 'bad page'), 500],
    ];
    for (const [err, status] of cases) {
      const fake = failing(sqlite());
      const h = await harness({ store: fake.store });
      const size = await logSize(h, h.keys['acme:read']!);
      fake.arm({ append: reject(err) });
      const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: open(sid()) });
      expect(res.statusCode, err.code).toBe(status);
      // Every store error is answered with its own code, STORE_CORRUPT (500) included.
      expect(res.json().error.code).toBe(err.code);
      if (status === 503) expect(res.headers['retry-after']).toBe('1');
      if (status === 507) expect(res.json().error.message).toMatch(/full/);
      expect(res.json().results).toBeUndefined();
      fake.arm({});
      expect(await logSize(h, h.keys['acme:read']!)).toBe(size);
    }
  });

  it('answers 503 with the results committed before the store failed part of a request; a re-send completes it', async () => {
    const inner = sqlite();
    const fake = failing(inner);
    // Ledger batches of 2: the first commits, then the store is busy.
    const h = await harness({ store: fake.store, ledgerMaxBatch: 2 });
    let appends = 0;
    fake.arm({ append: ((batch: never, size: never) => (++appends === 1 ? inner.append(batch, size) : Promise.reject(new StoreError('STORE_BUSY', 'busy')))) as Override });
    const s = sid();
    const body = [open(s, { id: uuid(300) }), step(s, 'model.output', { id: uuid(301) }), step(s, 'model.output', { id: uuid(302) })];
    const res = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body });
    expect(res.statusCode).toBe(503);
    const failed = res.json();
    expect(failed.error.code).toBe('STORE_BUSY');
    expect(failed.results.map((r: { seq?: number; error?: { code: string } }) => r.seq ?? r.error?.code)).toEqual([1, 2, 'STORE_BUSY']);
    fake.arm({});
    const again = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body });
    expect(again.statusCode).toBe(200);
    expect(again.json().results.map((r: { seq: number; duplicate: boolean }) => [r.seq, r.duplicate])).toEqual([
      [1, true],
      [2, true],
      [3, false],
    ]);
  });

  it('refuses writes past maxInflightWrites with 503 SERVER_BUSY before reading them, and takes them again once one ends', async () => {
    const inner = sqlite();
    const fake = failing(inner);
    const h = await harness({ store: fake.store, maxInflightWrites: 2 });
    const size = await logSize(h, h.keys['acme:read']!);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    fake.arm({ append: (async (batch: never, size: never) => (await gate, inner.append(batch, size))) as Override });
    const held = [h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: open(sid()) }), h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: open(sid()) })];
    await new Promise((r) => setTimeout(r, 20));
    const refused = await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: open(sid()) });
    expect(refused.statusCode).toBe(503);
    expect(refused.json().error.code).toBe('SERVER_BUSY');
    expect(refused.headers['retry-after']).toBe('1');
    // Reads are not writes: they are still answered.
    expect((await h.call('GET', '/v1/events', { key: h.keys['acme:read'] })).statusCode).toBe(200);
    // A refused request is not counted, and an answered one frees its place.
    release();
    expect((await Promise.all(held)).map((r) => r.statusCode)).toEqual([201, 201]);
    fake.arm({});
    for (let i = 0; i < 3; i++) expect((await h.call('POST', '/v1/events', { key: h.keys['acme:ingest'], body: open(sid()) })).statusCode).toBe(201);
    expect(await logSize(h, h.keys['acme:read']!)).toBe(size + 5);
  });

  it('maps a store error while authenticating or reading, and on the health check', async () => {
    const fake = failing(sqlite());
    const h = await harness({ store: fake.store });
    const down = new StoreError('STORE_UNAVAILABLE', 'connection refused');
    fake.arm({ findApiKey: reject(down), getMeta: reject(down) });
    const res = await h.call('GET', '/v1/events', { key: h.keys['acme:read'] });
    expect(res.statusCode).toBe(503);
    expect(res.json().error.code).toBe('STORE_UNAVAILABLE');
    expect(res.headers['retry-after']).toBe('1');
    expect((await h.call('GET', '/v1/health')).statusCode).toBe(503);
    fake.arm({ queryEntries: reject(new StoreError('STORE_BUSY', 'locked')) });
    expect((await h.call('GET', '/v1/events', { key: h.keys['acme:read'] })).statusCode).toBe(503);
  });
});

describe('on a real port', () => {
  it('appends and reads over HTTP with fetch', async () => {
    const h = await harness();
    const address = await h.app.listen({ port: 0, host: '127.0.0.1' });
    const s = sid();
    const post = await fetch(`${address}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.keys['acme:ingest']}`, 'content-type': 'application/x-ndjson' },
      body: [open(s), step(s, 'model.output')].map((e) => JSON.stringify(e)).join('\n'),
    });
    expect(post.status).toBe(201);
    const { results } = (await post.json()) as { results: { seq: number }[] };
    expect(results.map((r) => r.seq)).toEqual([1, 2]);
    const cp = await fetch(`${address}/v1/log/checkpoint`, { headers: { authorization: `Bearer ${h.keys['acme:read']}` } });
    expect(cp.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    const verifier = parseVerifierKey(await (await fetch(`${address}/v1/log/key`, { headers: { authorization: `Bearer ${h.keys['acme:read']}` } })).text());
    expect(verifyCheckpoint(await cp.text(), verifier).size).toBe(6);
    const unauth = await fetch(`${address}/v1/events`);
    expect(unauth.status).toBe(401);
    expect(unauth.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });
});
