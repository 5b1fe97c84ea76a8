/**
 * A rough ingest benchmark of the stores: appends pre-built batches of realistic
 * entries and compares the rate with a plain batched INSERT of the same entry rows
 * into a scratch table that has the same entries indexes and nothing else (the
 * target is ≥ 70% of it). Runs each measurement several times, alternating store
 * and baseline on fresh databases, and reports medians.
 *
 * Run: `npx tsx packages/ledger/src/testing/ingest-baseline.ts [batches] [batchSize] [reps]`
 * (`STORES` and `CUSTODY_TEST_POSTGRES_URL` apply).
 * @internal
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import Database from 'better-sqlite3';
import pg from 'pg';

import { PostgresStore } from '../postgres/postgres-store.js';
import { POSTGRES_MIGRATIONS } from '../postgres/postgres-migrations.js';
import { SqliteStore } from '../sqlite/sqlite-store.js';
import { SQLITE_MIGRATIONS } from '../sqlite/sqlite-migrations.js';
import type { EntryRow, LedgerStore, SealedBatch } from '../store.js';
import { encodePrincipals, timeKey } from '../store-shared.js';
import { bulkDrafts, FixtureLog } from './batch-fixtures.js';
import { postgresTestEnv, storeExcluded } from './postgres-test-env.js';

/** One store's ingest figures, entries per second (medians). */
export interface IngestResult {
  store: string;
  entriesPerSecond: number;
  plainPerSecond: number;
  /** entriesPerSecond / plainPerSecond. */
  ratio: number;
  runs: { store: number[]; plain: number[] };
}

const principalsJson = (e: EntryRow) => encodePrincipals(e.principals);

/** The entries table and its indexes, exactly as the store's first migration creates them. */
function entriesDdl(sql: string): string {
  const start = sql.indexOf('CREATE TABLE');
  const entries = sql.indexOf('entries (', start);
  const from = sql.lastIndexOf('CREATE TABLE', entries);
  const to = sql.indexOf('CREATE TABLE', sql.indexOf('CREATE INDEX entries_time'));
  return sql.slice(from, to);
}

/** Builds `batches` batches of `size` realistic entries (sealed, with nodes, sessions, checkpoint). */
export function buildBatches(batches: number, size: number, tenant = 'bench'): SealedBatch[] {
  const log = new FixtureLog({ tenant });
  return Array.from({ length: batches }, (_, i) => log.append(bulkDrafts(size, { seed: i + 1, crowd: 1000, start: new Date(Date.UTC(2026, 0, 1) + i * 60_000) })));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timeAppends(store: LedgerStore, batches: readonly SealedBatch[]): Promise<number> {
  await store.migrate();
  const n = batches.reduce((k, b) => k + b.entries.length, 0);
  const t0 = performance.now();
  for (const b of batches) await store.append(b, b.head.size - b.entries.length);
  const rate = n / ((performance.now() - t0) / 1000);
  await store.close();
  return rate;
}

/** A plain batched INSERT of the batches' entry rows into the store's own entries table and indexes, nothing else (the baseline). */
export function sqlitePlain(path: string, batches: readonly SealedBatch[]): number {
  const db = new Database(path);
  // The store's durability and cache settings.
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('cache_size = -65536');
  db.pragma('wal_autocheckpoint = 8192');
  db.exec(entriesDdl(SQLITE_MIGRATIONS[0]!.sql));
  const insert = db.prepare(
    'INSERT INTO entries (tenant, idx, id, type, time, time_key, recorded_at, entry, disclosures, digest, session_id, seq, initiator_id, actor_id, ' +
      'tool_name, decision, cause, trace_id, principals) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const tx = db.transaction((b: SealedBatch) => {
    for (const e of b.entries) {
      insert.run(b.tenant, e.index, e.id, e.type, e.time, timeKey(e.time), e.recordedAt, e.entry, JSON.stringify(e.disclosures), e.digest, e.sessionId ?? null, e.seq ?? null, e.initiatorId ?? null, e.actorId, e.toolName ?? null, e.decision ?? null, e.cause ?? null, e.traceId ?? null, principalsJson(e));
    }
  });
  const n = batches.reduce((k, b) => k + b.entries.length, 0);
  const t0 = performance.now();
  for (const b of batches) tx.immediate(b);
  const rate = n / ((performance.now() - t0) / 1000);
  db.close();
  return rate;
}

/** The PostgreSQL baseline: the batches' entry rows, multi-row inserted into the store's own entries table and indexes. */
export async function postgresPlain(url: string, schema: string, batches: readonly SealedBatch[]): Promise<number> {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const q = `"${schema}"`;
  await pool.query(`CREATE SCHEMA ${q}`);
  await pool.query(entriesDdl(POSTGRES_MIGRATIONS[0]!.sql(q)));
  const sql =
    `INSERT INTO ${q}.entries (tenant, idx, id, type, time, time_key, recorded_at, entry, disclosures, digest, session_id, seq, initiator_id, actor_id, tool_name, decision, cause, trace_id, principals) ` +
    'SELECT $1::text, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[])';
  const n = batches.reduce((k, b) => k + b.entries.length, 0);
  const t0 = performance.now();
  for (const b of batches) {
    const es = b.entries;
    const col = <T>(f: (e: EntryRow) => T) => es.map(f);
    const values = [
      b.tenant,
      col((e) => e.index),
      col((e) => e.id),
      col((e) => e.type),
      col((e) => e.time),
      col((e) => timeKey(e.time)),
      col((e) => e.recordedAt),
      col((e) => e.entry),
      col((e) => JSON.stringify(e.disclosures)),
      col((e) => e.digest),
      col((e) => e.sessionId ?? null),
      col((e) => e.seq ?? null),
      col((e) => e.initiatorId ?? null),
      col((e) => e.actorId),
      col((e) => e.toolName ?? null),
      col((e) => e.decision ?? null),
      col((e) => e.cause ?? null),
      col((e) => e.traceId ?? null),
      col(principalsJson),
    ];
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(sql, values);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  }
  const rate = n / ((performance.now() - t0) / 1000);
  await pool.query(`DROP SCHEMA ${q} CASCADE`);
  await pool.end();
  return rate;
}

/**
 * Measures ingest on each selected store against its plain-INSERT baseline.
 * @param reps runs of each (alternating), default 3
 */
export async function measureIngest(batches: readonly SealedBatch[], reps = 3): Promise<IngestResult[]> {
  const results: IngestResult[] = [];
  if (storeExcluded('sqlite') === undefined) {
    const runs = { store: [] as number[], plain: [] as number[] };
    for (let r = 0; r < reps; r++) {
      const dir = mkdtempSync(join(tmpdir(), 'custody-bench-'));
      try {
        runs.store.push(await timeAppends(new SqliteStore({ path: join(dir, 'ledger.db') }), batches));
        runs.plain.push(sqlitePlain(join(dir, 'plain.db'), batches));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    results.push(result('sqlite', runs));
  }
  const env = await postgresTestEnv();
  if (env.skip === false) {
    const runs = { store: [] as number[], plain: [] as number[] };
    for (let r = 0; r < reps; r++) {
      const schema = await env.freshSchema();
      try {
        runs.store.push(await timeAppends(new PostgresStore({ connectionString: env.url, schema }), batches));
      } finally {
        await env.dropSchema(schema);
      }
      runs.plain.push(await postgresPlain(env.url, await env.freshSchema(), batches));
    }
    results.push(result('postgres', runs));
  }
  return results;
}

function result(store: string, runs: { store: number[]; plain: number[] }): IngestResult {
  const entriesPerSecond = median(runs.store);
  const plainPerSecond = median(runs.plain);
  return { store, entriesPerSecond, plainPerSecond, ratio: entriesPerSecond / plainPerSecond, runs };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const batches = Number(process.argv[2] ?? 100);
  const size = Number(process.argv[3] ?? 500);
  const reps = Number(process.argv[4] ?? 3);
  const built = buildBatches(batches, size);
  const entries = built.flatMap((b) => b.entries);
  const avg = entries.reduce((n, e) => n + e.entry.length, 0) / entries.length;
  const perEntry = (f: (b: SealedBatch) => number) => built.reduce((n, b) => n + f(b), 0) / entries.length;
  process.stdout.write(
    `${batches} batches × ${size} entries; entry ${avg.toFixed(0)} B on average; per entry ${perEntry((b) => b.entries.reduce((k, e) => k + e.principals.length, 0)).toFixed(2)} principals, ` +
      `${perEntry((b) => b.nodes.length).toFixed(2)} tree nodes, ${perEntry((b) => b.sessions.length).toFixed(3)} session rows\n`,
  );
  for (const r of await measureIngest(built, reps)) {
    const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
    process.stdout.write(
      `${r.store.padEnd(9)} store ${fmt(r.entriesPerSecond)} entries/s   plain INSERT ${fmt(r.plainPerSecond)} entries/s   ratio ${(r.ratio * 100).toFixed(0)}%   ` +
        `(runs: store ${r.runs.store.map(fmt).join(', ')}; plain ${r.runs.plain.map(fmt).join(', ')})\n`,
    );
  }
}
