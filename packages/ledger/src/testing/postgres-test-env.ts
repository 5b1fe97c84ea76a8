/**
 * The PostgreSQL side of store tests, shared by every package that tests against
 * the real server of this machine: which stores `STORES` selects, whether the
 * server is reachable, throwaway schemas, and the conformance options for
 * `PostgresStore`.
 *
 * When PostgreSQL is unreachable the tests are skipped with a warning saying how
 * to start it, except in CI (`CI=true`), where they fail: CI never skips a backend.
 */
import { randomBytes } from 'node:crypto';

import pg from 'pg';

import { PostgresStore } from '../postgres/postgres-store.js';
import type { LedgerStore } from '../store.js';
import type { CrashChildSpec, StoreConformanceOptions } from './store-conformance.js';

/** How to start the machine's PostgreSQL cluster. */
export const POSTGRES_START_HINT = 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start';

/** The test server when `CUSTODY_TEST_POSTGRES_URL` is not set. */
export const DEFAULT_TEST_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/test';

/** The stores `STORES` selects (a comma list such as `sqlite,postgres`); undefined selects all. */
export function selectedStores(): string[] | undefined {
  const raw = process.env['STORES'];
  if (raw === undefined || raw.trim() === '') return undefined;
  return raw
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
}

/** Why `STORES` excludes the store named `name`, or undefined when it is selected. */
export function storeExcluded(name: string): string | undefined {
  const stores = selectedStores();
  return stores === undefined || stores.includes(name.toLowerCase()) ? undefined : `STORES=${process.env['STORES'] ?? ''} excludes ${name}`;
}

/** The PostgreSQL test server, as tests see it. */
export interface PostgresTestEnv {
  /** Connection string of the test server. */
  url: string;
  /** Why PostgreSQL tests are skipped, or false when they run. */
  skip: string | false;
  /** The one store `STORES` selects, when it names exactly one. */
  only: string | undefined;
  /** A new, unused schema name (`custody_test_<random>`); `PostgresStore.migrate` creates it. */
  freshSchema(): Promise<string>;
  /** Drops a schema made by `freshSchema`, and everything in it. */
  dropSchema(schema: string): Promise<void>;
}

let warned = false;

/**
 * Probes the test server once: reachable, skipped (with a warning naming the
 * fix), or, in CI, a thrown error naming the fix.
 * @example
 * const pg = await postgresTestEnv();
 * it.skipIf(pg.skip)('works on PostgreSQL', async () => { … });
 */
export async function postgresTestEnv(): Promise<PostgresTestEnv> {
  const url = process.env['CUSTODY_TEST_POSTGRES_URL'] ?? DEFAULT_TEST_POSTGRES_URL;
  const stores = selectedStores();
  const only = stores?.length === 1 ? stores[0] : undefined;
  const env = (skip: string | false): PostgresTestEnv => ({
    url,
    skip,
    only,
    freshSchema: async () => `custody_test_${randomBytes(6).toString('hex')}`,
    dropSchema: (schema) => dropSchema(url, schema),
  });
  const excluded = storeExcluded('postgres');
  if (excluded !== undefined) return env(excluded);
  const problem = await probe(url);
  if (problem === undefined) return env(false);
  const message = `PostgreSQL is unreachable at ${redact(url)} (${problem}). Start it with: ${POSTGRES_START_HINT} (or set CUSTODY_TEST_POSTGRES_URL, or STORES=sqlite to test SQLite only)`;
  if (process.env['CI'] === 'true') throw new Error(`${message}. CI runs every store; refusing to skip PostgreSQL.`);
  if (!warned) {
    warned = true;
    process.emitWarning(`skipping PostgreSQL store tests: ${message}`, { code: 'CUSTODY_POSTGRES_SKIPPED' });
  }
  return env(`skipped: ${message}`);
}

/**
 * Conformance options for `PostgresStore` on a fresh schema, dropped after the suite.
 * @example
 * runStoreConformance(await postgresConformanceOptions());
 */
export async function postgresConformanceOptions(): Promise<StoreConformanceOptions> {
  const env = await postgresTestEnv();
  if (env.skip !== false) {
    const reason = env.skip;
    return { name: 'postgres', skip: reason, createStore: () => Promise.reject(new Error(reason)) };
  }
  const schema = await env.freshSchema();
  const open = (): LedgerStore => new PostgresStore({ connectionString: env.url, schema, pool: { max: 4 } });
  return {
    name: 'postgres',
    createStore: async () => open(),
    reopen: async (store) => {
      await store.close();
      return open();
    },
    openPeer: async () => open(),
    crashChild: (): CrashChildSpec => ({ kind: 'postgres', connectionString: env.url, schema }),
    teardown: () => env.dropSchema(schema),
  };
}

async function probe(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message || err.name : String(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function dropSchema(url: string, schema: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`not a schema name: ${schema}`);
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@/]*@/, '//$1:***@');
}
