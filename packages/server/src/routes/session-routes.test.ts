/**
 * The session routes over a store whose entry cannot be read back: a real Ledger on a
 * SQLite file (and on PostgreSQL), events appended through the server, then an entry's
 * disclosures column damaged with SQL behind the ledger's back. The timeline and the
 * bundle answer as every STORE_CORRUPT (500 STORE_CORRUPT, docs/errors.md), and what the
 * server logs is that StoreError, naming the session and the entry's index, never an
 * unexplained TypeError nor a bundle silently without the entry's disclosures; the
 * session row and the other sessions still read.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Ledger, type LedgerStore, PostgresStore, SqliteStore, StoreError } from '@custody/ledger';
import { postgresTestEnv, storeExcluded } from '@custody/ledger/testing';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createApiKey } from '../api-keys.js';
import { createServer } from '../server.js';

const pgEnv = await postgresTestEnv();

interface Backend {
  name: string;
  skip: string | false;
  /** A store, and how to overwrite a column of an entry's row with SQL, outside the ledger. */
  open(): Promise<{ store: LedgerStore; overwrite: (index: number, column: 'disclosures' | 'entry', value: string | Uint8Array) => Promise<void>; close: () => Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'sqlite',
    skip: storeExcluded('sqlite') ?? false,
    open: async () => {
      const dir = mkdtempSync(join(tmpdir(), 'custody-session-routes-'));
      const path = join(dir, 'ledger.db');
      return {
        store: new SqliteStore({ path }),
        overwrite: async (index, column, value) => {
          const db = new Database(path);
          try {
            expect(db.prepare(`UPDATE entries SET ${column} = ? WHERE tenant = ? AND idx = ?`).run(value, 'default', index).changes).toBe(1);
          } finally {
            db.close();
          }
        },
        close: async () => rmSync(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'postgres',
    skip: pgEnv.skip,
    open: async () => {
      const schema = await pgEnv.freshSchema();
      return {
        store: new PostgresStore({ connectionString: pgEnv.url, schema, pool: { max: 4 } }),
        overwrite: async (index, column, value) => {
          const client = new pg.Client({ connectionString: pgEnv.url });
          await client.connect();
          try {
            const v = typeof value === 'string' ? value : Buffer.from(value);
            const res = await client.query(`UPDATE "${schema}".entries SET ${column} = $1 WHERE tenant = $2 AND idx = $3`, [v, 'default', index]);
            expect(res.rowCount).toBe(1);
          } finally {
            await client.end();
          }
        },
        close: () => pgEnv.dropSchema(schema),
      };
    },
  },
];

describe.each(backends)('session routes over an unreadable entry on $name', (backend) => {
  let app: FastifyInstance;
  let ledger: Ledger;
  let key: string;
  let corrupt: (index: number, text: string) => Promise<void>;
  let overwriteEntry: (index: number, bytes: Uint8Array) => Promise<void>;
  let close: () => Promise<void> = async () => undefined;
  /** What the error handler was given, as the server logs it (`request.log.error({ err })`). */
  const thrown: unknown[] = [];
  /** What the server told its onInternalError (stderr by default, with the logger off). */
  const told: unknown[] = [];
  /** Log index of each appended event, by session and seq. */
  const at = new Map<string, number>();

  beforeAll(async () => {
    if (backend.skip !== false) return;
    const b = await backend.open();
    corrupt = (index, text) => b.overwrite(index, 'disclosures', text);
    overwriteEntry = (index, bytes) => b.overwrite(index, 'entry', bytes);
    close = b.close;
    ledger = await Ledger.open({ store: b.store, logSeed: new Uint8Array(32).fill(9), originHost: 'custody.test' });
    key = (await createApiKey(ledger, { tenant: 'default', role: 'admin', name: 'admin' })).key;
    app = await createServer({ ledger, onInternalError: (err) => told.push(err) });
    app.addHook('onError', async (_request, _reply, err) => {
      thrown.push(err);
    });
    const who = { initiator: { type: 'human', id: 'alice@example.com' }, actor: { type: 'agent', id: 'agent:refunds' } };
    for (const sid of ['s-broken', 's-fine']) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/events',
        headers: { authorization: `Bearer ${key}` },
        payload: [
          { type: 'session.opened', session: { id: sid, objective: 'refund order 1234' }, ...who },
          { type: 'tool.requested', session: { id: sid }, ...who, tool: { name: 'refunds.create' }, data: { arguments: { orderId: '1234' } } },
          { type: 'tool.completed', session: { id: sid }, ...who, tool: { name: 'refunds.create' }, data: { result: { refunded: true } } },
        ],
      });
      expect(res.statusCode).toBe(201);
      (res.json() as { results: { index: number; seq: number }[] }).results.forEach((r) => at.set(`${sid}/${r.seq}`, r.index));
    }
  });

  afterAll(async () => {
    await app?.close();
    await ledger?.close();
    await close();
  });

  const get = (url: string) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } });

  it.skipIf(backend.skip)('reads the sessions while every entry is intact', async () => {
    for (const sid of ['s-broken', 's-fine']) {
      expect((await get(`/v1/sessions/${sid}/timeline`)).statusCode).toBe(200);
      const bundle = await get(`/v1/sessions/${sid}/bundle`);
      expect(bundle.statusCode).toBe(200);
      // The tool call's arguments and result are committed: their disclosures are stored.
      expect((bundle.json() as { records: { disclosures?: string[] }[] }).records.filter((r) => r.disclosures !== undefined)).toHaveLength(2);
    }
    expect(thrown).toEqual([]);
  });

  /** Damages entry 2 of s-broken, GETs `routes` of it: each must fail as that entry's STORE_CORRUPT. */
  const expectCorrupt = async (text: string, routes: string[]) => {
    const index = at.get('s-broken/2')!;
    await corrupt(index, text);
    thrown.length = 0;
    told.length = 0;
    for (const route of routes) {
      const res = await get(`/v1/sessions/s-broken/${route}`);
      expect(res.statusCode, route).toBe(500);
      expect(res.json(), route).toEqual({
        error: {
          code: 'STORE_CORRUPT',
          message: `the ledger's store holds data it cannot read back: session s-broken: the stored disclosures column of entry ${index} is not a JSON list of strings; the entry cannot be read back (custody audit reports it as ENTRY_UNREADABLE). An operator must run custody audit`,
        },
      });
    }
    expect(thrown).toHaveLength(routes.length);
    expect(told).toEqual(thrown);
    for (const err of thrown) {
      expect(err).toBeInstanceOf(StoreError);
      expect(err).toMatchObject({ code: 'STORE_CORRUPT' });
      expect((err as Error).message).toBe(
        `session s-broken: the stored disclosures column of entry ${index} is not a JSON list of strings; the entry cannot be read back (custody audit reports it as ENTRY_UNREADABLE)`,
      );
    }
    // The session row does not read the entries; the other session is untouched.
    const row = await get('/v1/sessions/s-broken');
    expect(row.statusCode).toBe(200);
    expect(row.json()).toMatchObject({ id: 's-broken', seq: 3, entries: 3 });
    expect((await get('/v1/sessions/s-fine/timeline')).statusCode).toBe(200);
    expect((await get('/v1/sessions/s-fine/bundle')).statusCode).toBe(200);
    expect(thrown).toHaveLength(routes.length);
  };

  // The store reads the column with JSON.parse and throws STORE_CORRUPT naming no entry.
  it.skipIf(backend.skip)('a disclosures column that is not JSON: timeline and bundle are 500 as STORE_CORRUPT, logged naming the session and the entry index', async () => {
    await expectCorrupt('["unterminated', ['timeline', 'bundle', 'bundle?disclosures=false']);
  });

  // JSON that is not a list of strings: the store refuses it as STORE_CORRUPT (it handed it
  // on before: the timeline failed on it as a TypeError, and the bundle silently dropped the
  // entry's disclosures, so its fields looked redacted).
  it.each([
    ['a JSON object', '{"salt":"x"}'],
    ['a JSON string', '"WyJzYWx0IiwiL2RhdGEvYXJndW1lbnRzIiwxXQ"'],
    ['null', 'null'],
    ['a list that holds a non-string', '["WyJzYWx0IiwiL2RhdGEvYXJndW1lbnRzIiwxXQ", 7]'],
  ])('a disclosures column that is %s: timeline and bundle are 500 as STORE_CORRUPT naming the entry, not a TypeError nor a bundle without disclosures', async (_, text) => {
    if (backend.skip !== false) return;
    await expectCorrupt(text, ['timeline', 'bundle', 'bundle?disclosures=false']);
  });

  it.skipIf(backend.skip)('the store names the tenant and the entry index of such a column', async () => {
    const index = at.get('s-broken/2')!;
    await corrupt(index, '{"salt":"x"}');
    await expect(ledger.store.sessionEntries('default', 's-broken')).rejects.toMatchObject({
      name: 'StoreError',
      code: 'STORE_CORRUPT',
      message: `tenant default, entry ${index}: the stored disclosures column is not a JSON list of strings`,
    });
    await corrupt(index, '["unterminated');
    await expect(ledger.store.sessionEntries('default', 's-broken')).rejects.toMatchObject({ code: 'STORE_CORRUPT', message: `tenant default, entry ${index}: the stored disclosures column is not JSON` });
  });

  it.skipIf(backend.skip)('other failures pass unchanged: an unknown session is still 404', async () => {
    const res = await get('/v1/sessions/s-none/timeline');
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ error: { code: 'SESSION_NOT_FOUND' } });
    expect((await get('/v1/sessions/s-none/bundle')).json()).toMatchObject({ error: { code: 'SESSION_NOT_FOUND' } });
  });

  // Entry bytes changed behind the ledger's back are the store's fault: 500 STORE_CORRUPT naming
  // the entry (custody audit finds it), never a 400 ENTRY_MALFORMED as if the caller had sent them.
  it.skipIf(backend.skip)('entry bytes that are no valid entry: every read of the entry is 500 STORE_CORRUPT naming it, not 400', async () => {
    const index = at.get('s-broken/2')!;
    await corrupt(index, '[]');
    const [original] = await ledger.store.getEntries('default', [index]);
    const id = original!.id;
    const damaged = [
      new TextEncoder().encode('{"not":"an entry"}'),
      new TextEncoder().encode(new TextDecoder().decode(original!.entry).replace('"tool.requested"', '"tool.requested" ')),
    ];
    for (const bytes of damaged) {
      await overwriteEntry(index, bytes);
      thrown.length = 0;
      const routes = ['/v1/events?session=s-broken', `/v1/events/${id}`, '/v1/sessions/s-broken/timeline'];
      for (const route of routes) {
        const res = await get(route);
        expect(res.statusCode, route).toBe(500);
        expect(res.json().error.code, route).toBe('STORE_CORRUPT');
        expect(res.json().error.message, route).toContain(`tenant default, entry ${index}: the stored entry bytes are not a valid entry`);
      }
      expect(thrown).toHaveLength(routes.length);
      for (const err of thrown) expect(err).toMatchObject({ name: 'StoreError', code: 'STORE_CORRUPT' });
      // What does not decode the entry still reads; the other session is untouched.
      expect((await get('/v1/sessions/s-broken')).statusCode).toBe(200);
      expect((await get('/v1/sessions/s-fine/timeline')).statusCode).toBe(200);
    }
    await overwriteEntry(index, original!.entry);
    expect((await get('/v1/sessions/s-broken/timeline')).statusCode).toBe(200);
  });
});
