/**
 * `audit` against changed stored bytes, on every store: each derived column, the
 * principals postings, the session rows, the head and the disclosures are checked
 * against the entries, and a damaged row is reported at its index, never thrown.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { type EventDraft, verifyBundle } from '@custody/core';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';

import { audit, type AuditReport } from './audit.js';
import { Ledger } from './ledger.js';
import { PostgresStore } from './postgres/postgres-store.js';
import { SqliteStore } from './sqlite/sqlite-store.js';
import type { LedgerStore } from './store.js';
import { postgresTestEnv } from './testing/postgres-test-env.js';

const seed = new Uint8Array(32).fill(5);
const pgEnv = await postgresTestEnv();
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

/** Runs SQL on the store's tables behind its back; `?` placeholders. */
type Exec = (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

interface Backend {
  name: 'sqlite' | 'postgres';
  skip: string | false;
  /** A fresh store location: open a store on it, and tamper with it directly. */
  make: () => Promise<{ open: () => LedgerStore; exec: Exec }>;
}

const backends: Backend[] = [
  {
    name: 'sqlite',
    skip: pgEnv.only && pgEnv.only !== 'sqlite' ? 'STORES excludes sqlite' : false,
    make: async () => {
      const path = join(mkdtempSync(join(tmpdir(), 'custody-audit-')), 'ledger.db');
      return {
        open: () => new SqliteStore({ path }),
        exec: async (sql, params = []) => {
          const db = new Database(path);
          try {
            const stmt = db.prepare(sql);
            return stmt.reader ? (stmt.all(...params) as Record<string, unknown>[]) : (stmt.run(...params), []);
          } finally {
            db.close();
          }
        },
      };
    },
  },
  {
    name: 'postgres',
    skip: pgEnv.skip,
    make: async () => {
      const schema = await pgEnv.freshSchema();
      cleanups.push(() => pgEnv.dropSchema(schema));
      return {
        open: () => new PostgresStore({ connectionString: pgEnv.url, schema }),
        exec: async (sql, params = []) => {
          const client = new pg.Client({ connectionString: pgEnv.url, options: `-c search_path=${schema}` });
          await client.connect();
          try {
            let n = 0;
            return (await client.query(sql.replace(/\?/g, () => `$${++n}`), params)).rows as Record<string, unknown>[];
          } finally {
            await client.end();
          }
        },
      };
    },
  },
];

let n = 0;
const uuid = () => `019ab3a1-0000-7000-8000-${(n++).toString(16).padStart(12, '0')}`;
function ev(session: string, type: EventDraft['type'], extra: Partial<EventDraft> = {}): EventDraft {
  return {
    id: uuid(),
    type,
    time: '2026-11-22T09:59:00Z',
    session: { id: session },
    initiator: { type: 'human', id: 'alice@example.com' },
    actor: { type: 'agent', id: 'refund-agent' },
    ...(type.startsWith('tool.') ? { tool: { name: 'orders.lookup' } } : {}),
    ...extra,
  } as EventDraft;
}

/**
 * The log of every case: 0 s1 opened, 1 s1 tool (a disclosure), 2 s2 opened,
 * 3 s1 closed (sealed), 4 s2 tool (a disclosure), 5 s3 opened; in three batches.
 */
async function fixture(b: Backend) {
  const at = await b.make();
  const ledger = await Ledger.open({ store: at.open(), logSeed: seed, originHost: 'custody.test' });
  const append = async (drafts: EventDraft[]) => {
    for (const r of await ledger.append('acme', drafts)) if (r.status === 'rejected') throw r.reason;
  };
  await append([ev('s1', 'session.opened', { session: { id: 's1', objective: 'Refund order 1234' } }), ev('s1', 'tool.requested', { data: { arguments: { orderId: '1234' } } })]);
  await append([ev('s2', 'session.opened'), ev('s1', 'session.closed')]);
  await append([ev('s2', 'tool.requested', { data: { arguments: { orderId: '999' } } }), ev('s3', 'session.opened')]);
  const verifierKey = ledger.verifierKey('acme');
  await ledger.close();
  const run = async (stopAtFirst = true): Promise<AuditReport> => {
    const store = at.open();
    try {
      return await audit(store, { verifierKey: () => verifierKey, stopAtFirst });
    } finally {
      await store.close();
    }
  };
  return { ...at, run, verifierKey };
}

describe.each(backends)('audit on $name', (b) => {
  const sealedFalse = b.name === 'sqlite' ? 0 : false;

  it.skipIf(b.skip)('passes on an untouched log, and after a redaction', async () => {
    const f = await fixture(b);
    expect((await f.run()).tenants[0]!.problems).toEqual([]);
    const store = f.open();
    await store.setDisclosures('acme', 1, []);
    await store.close();
    const report = await f.run();
    expect(report.tenants[0]!.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });

  const cases: { name: string; tamper: (f: Awaited<ReturnType<typeof fixture>>) => Promise<void>; code: string; index: number }[] = [
    {
      name: 'an edited entries.time_key',
      tamper: (f) => f.exec("UPDATE entries SET time_key = '2030-01-01T00:00:00.000000000Z' WHERE tenant = 'acme' AND idx = 2").then(() => undefined),
      code: 'INDEX_MISMATCH',
      index: 2,
    },
    {
      name: 'an emptied entries.principals',
      tamper: (f) => f.exec("UPDATE entries SET principals = '[]' WHERE tenant = 'acme' AND idx = 4").then(() => undefined),
      code: 'INDEX_MISMATCH',
      index: 4,
    },
    {
      name: "deleted postings rows of a principal",
      tamper: (f) => f.exec("DELETE FROM principals WHERE tenant = 'acme' AND pid = 'alice@example.com' AND first_idx >= 2").then(() => undefined),
      code: 'POSTINGS_MISMATCH',
      index: 2,
    },
    {
      name: 'sessions.sealed cleared on a sealed session',
      tamper: (f) => f.exec("UPDATE sessions SET sealed = ? WHERE tenant = 'acme' AND id = 's1'", [sealedFalse]).then(() => undefined),
      code: 'SESSION_ROW_MISMATCH',
      index: 3,
    },
    {
      name: 'a changed sessions.seq',
      tamper: (f) => f.exec("UPDATE sessions SET seq = 7 WHERE tenant = 'acme' AND id = 's2'").then(() => undefined),
      code: 'SESSION_ROW_MISMATCH',
      index: 4,
    },
    {
      name: 'a moved sessions.last_index',
      tamper: (f) => f.exec("UPDATE sessions SET last_index = 1 WHERE tenant = 'acme' AND id = 's2'").then(() => undefined),
      code: 'SESSION_ROW_MISMATCH',
      index: 1,
    },
    {
      name: 'a corrupted heads.edge',
      tamper: async (f) => {
        const [row] = await f.exec("SELECT edge FROM heads WHERE tenant = 'acme'");
        const edge = Buffer.from(row!['edge'] as Uint8Array);
        edge[3] = edge[3]! ^ 0xff;
        await f.exec("UPDATE heads SET edge = ? WHERE tenant = 'acme'", [edge]);
      },
      code: 'HEAD_MISMATCH',
      index: 5,
    },
    {
      name: 'a swapped disclosure',
      tamper: async (f) => {
        const [row] = await f.exec("SELECT disclosures FROM entries WHERE tenant = 'acme' AND idx = 1");
        await f.exec("UPDATE entries SET disclosures = ? WHERE tenant = 'acme' AND idx = 4", [row!['disclosures']]);
      },
      code: 'DISCLOSURE_MISMATCH',
      index: 4,
    },
    {
      name: 'a corrupt disclosures column',
      tamper: (f) => f.exec("UPDATE entries SET disclosures = 'not json' WHERE tenant = 'acme' AND idx = 1").then(() => undefined),
      code: 'ENTRY_UNREADABLE',
      index: 1,
    },
    // JSON, but not the list of strings the stores write (which the stores refuse as STORE_CORRUPT).
    ...['{}', 'null', '"x"', '[1]'].map((text) => ({
      name: `a disclosures column of JSON ${text}`,
      tamper: (f: Awaited<ReturnType<typeof fixture>>) => f.exec('UPDATE entries SET disclosures = ? WHERE tenant = \'acme\' AND idx = 4', [text]).then(() => undefined),
      code: 'ENTRY_UNREADABLE',
      index: 4,
    })),
  ];

  it.skipIf(b.skip).each(cases)('fails at the first bad index on $name', async (c) => {
    const f = await fixture(b);
    expect((await f.run()).ok).toBe(true);
    await c.tamper(f);
    const report = await f.run();
    expect(report.ok).toBe(false);
    expect(report.first).toMatchObject({ tenant: 'acme', code: c.code, index: c.index });
    // Without stopping, the audit goes on and still names the same first problem.
    const all = await f.run(false);
    expect(all.first).toMatchObject({ code: c.code, index: c.index });
  });

  it.skipIf(b.skip)('fills in the report columns of entries written before them, by the rule the ledger writes them with, and audits them', async () => {
    const at = await b.make();
    const ledger = await Ledger.open({ store: at.open(), logSeed: seed, originHost: 'custody.test' });
    const link = (id: string, scope?: string[]) => ({ principal: { type: id.includes('@') ? ('human' as const) : ('agent' as const), id }, ...(scope ? { scope } : {}) });
    const chain = [link('alice@example.com'), link('planner', ['github.*', 'tool:slack.post']), link('refund-agent', ['github.issues'])];
    const call = (tool: string, c = chain) => ev('s9', 'tool.requested', { tool: { name: tool }, chain: c });
    const drafts = [
      ev('s9', 'session.opened', { chain }),
      call('github.issues'), // covered by every link
      call('github.pulls'), // refund-agent's scope does not cover it: a gap
      call('slack.post', [link('alice@example.com'), link('planner', ['tool:slack.post'])]), // tool:<name>
      call('payments.send', [link('alice@example.com'), link('planner', ['*'])]), // *
      call('payments.send', [link('alice@example.com'), link('planner', ['payments.sen'])]), // not a prefix pattern: a gap
      call('orders.lookup', [link('alice@example.com'), link('planner')]), // no scope: nothing to miss
      ev('s9', 'session.delegated', { chain: [...chain, link('sub-agent', ['github.issues'])] }),
      ev('s9', 'tool.completed', { tool: { name: 'payments.send' }, chain: [link('alice@example.com'), link('planner', ['x'])] }), // not a request
    ];
    for (const r of await ledger.append('acme', drafts)) if (r.status === 'rejected') throw r.reason;
    const verifierKey = ledger.verifierKey('acme');
    await ledger.close();
    const columns = async () => (await at.exec("SELECT idx, scope_gap, chain_links FROM entries WHERE tenant = 'acme' ORDER BY idx")).map((r) => [Number(r['idx']), r['scope_gap'] ?? null, r['chain_links'] ?? null]);
    const written = await columns();
    expect(written).toEqual([
      [0, null, 3],
      [1, null, null],
      [2, 1, null],
      [3, null, null],
      [4, null, null],
      [5, 1, null],
      [6, null, null],
      [7, null, 4],
      [8, null, null],
    ]);

    // The schema as it was before these columns, with the entries already in it.
    const indexes = ['entries_scope_gap', 'entries_chain_links', 'entries_session_grants', ...(b.name === 'postgres' ? ['entries_session_ends'] : [])];
    for (const i of indexes) await at.exec(`DROP INDEX ${i}`);
    await at.exec('ALTER TABLE entries DROP COLUMN scope_gap');
    await at.exec('ALTER TABLE entries DROP COLUMN chain_links');
    await at.exec(b.name === 'sqlite' ? 'PRAGMA user_version = 4' : 'DELETE FROM schema_migrations WHERE version = 4');
    const store = at.open();
    await store.migrate();
    expect(await columns()).toEqual(written);
    expect((await store.reports!.outOfScopeCalls('acme', {}, undefined, 10)).sort()).toEqual([2, 5]);
    expect(await store.reports!.deepDelegation('acme', 3, {}, undefined, 10)).toEqual([7]);
    expect((await audit(store, { verifierKey: () => verifierKey })).ok).toBe(true);

    // audit holds the columns to the entries: a cleared gap is named.
    await at.exec("UPDATE entries SET scope_gap = NULL WHERE tenant = 'acme' AND idx = 5");
    const report = await audit(store, { verifierKey: () => verifierKey });
    expect(report.first).toMatchObject({ code: 'INDEX_MISMATCH', index: 5 });
    expect(report.first?.message).toContain('scope_gap');
    await store.close();
  });

  it.skipIf(b.skip)('catches what a bundle verify would: a swapped disclosure fails both', async () => {
    const f = await fixture(b);
    const [row] = await f.exec("SELECT disclosures FROM entries WHERE tenant = 'acme' AND idx = 1");
    await f.exec("UPDATE entries SET disclosures = ? WHERE tenant = 'acme' AND idx = 4", [row!['disclosures']]);
    const ledger = await Ledger.open({ store: f.open(), logSeed: seed, originHost: 'custody.test' });
    const verdict = verifyBundle(await ledger.bundle('acme', 's2'), { verifierKey: f.verifierKey });
    await ledger.close();
    expect(verdict.failures.map((x) => x.code)).toContain('DISCLOSURE_MISMATCH');
    expect((await f.run()).first?.code).toBe('DISCLOSURE_MISMATCH');
  });

  it.skipIf(b.skip).each(['{', '{}', 'null'])('reports a corrupt disclosures column (%s) at its index and goes on to later problems', async (text) => {
    const f = await fixture(b);
    await f.exec("UPDATE entries SET disclosures = ? WHERE tenant = 'acme' AND idx = 1", [text]);
    await f.exec("UPDATE entries SET time_key = 'x' WHERE tenant = 'acme' AND idx = 5");
    const report = await f.run(false);
    expect(report.tenants[0]!.problems.map((p) => [p.code, p.index])).toEqual([
      ['ENTRY_UNREADABLE', 1],
      ['INDEX_MISMATCH', 5],
    ]);
  });
});
