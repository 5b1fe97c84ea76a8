/**
 * Issue 9, crash test: the real `custody up` is SIGKILLed twenty times while
 * clients append over HTTP (each re-sending its batch, same ids, until it is
 * acknowledged). Afterwards every acknowledged id is in the log at the index it
 * was acknowledged with, a retried id is never given a second index, and
 * `custody audit` passes. On SQLite, and on PostgreSQL (a fresh schema on the
 * test server; only `custody up` is killed, never the database).
 *
 * Short form: 20 kills (SQLite) and 3 (PostgreSQL) after a few acknowledged
 * batches each; SOAK=1: 20 and 20, after many more.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { postgresTestEnv } from '../../packages/ledger/src/testing/postgres-test-env.js';
import { custody, type Server, startServer } from '../e2e/custody-process.js';
import { freePort, missingAcked, SOAK, soak, startIngest, summarize, waitFor } from './fault-kit.js';

const dirs: string[] = [];
const running = new Set<Server>();
afterAll(async () => {
  // A failed run leaves no server behind.
  for (const s of running) await s.kill();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/**
 * Kills `custody up` `kills` times, each after `acksPerRound` more batches were
 * acknowledged (plus a random moment within the next batches), restarting it on
 * the same port; then checks every acknowledgement and audits.
 */
async function killLoop(name: string, kills: number, acksPerRound: number, env: NodeJS.ProcessEnv = {}) {
  const data = mkdtempSync(join(tmpdir(), `custody-fault-kill-${name}-`));
  dirs.push(data);
  const port = await freePort();
  const args = ['--data', data, '--origin-host', 'custody.fault', '--port', String(port), '--quiet'];
  let server: Server = await startServer(args, env);
  running.add(server);
  const key = readFileSync(join(data, 'admin.key'), 'utf8').trim();
  const load = startIngest({ url: () => server.url, key, prefix: `kill-${name}`, clients: 4, batch: 10 });
  const started = Date.now();
  try {
    for (let k = 0; k < kills; k++) {
      const before = load.stats.ok;
      await waitFor(`${acksPerRound} acknowledged batches before kill ${k + 1}`, () => load.stats.ok >= before + acksPerRound, 60_000, 2);
      // Land the kill at a random point of the batches in flight.
      await new Promise((r) => setTimeout(r, Math.random() * 15));
      await server.kill();
      running.delete(server);
      server = await startServer(args, env);
      running.add(server);
    }
    // Ingest goes on after the last restart; then every client finishes its batch.
    const before = load.stats.ok;
    await waitFor('acknowledgements after the last restart', () => load.stats.ok >= before + 4, 60_000);
  } catch (err) {
    await load.stop(5_000).catch(() => undefined);
    throw new Error(`${String(err)}\nclients saw: ${summarize(load.stats)}\nserver output:\n${server.output().slice(-3000)}`, { cause: err });
  }
  await load.stop();
  const { stats } = load;
  expect(stats.violations).toEqual([]);
  expect(stats.connectionErrors, 'the kills interrupted requests in flight').toBeGreaterThan(0);
  expect(stats.acked.size).toBeGreaterThanOrEqual(kills * acksPerRound * 10);
  expect(await missingAcked(server.url, key, stats.acked)).toEqual([]);
  const code = await server.stop();
  running.delete(server);
  expect(code, server.output()).toBe(0);
  const audit = custody(['audit', '--data', data], env);
  expect(audit.code, audit.stdout + audit.stderr).toBe(0);
  return { acked: stats.acked.size, ms: Date.now() - started, retried: stats.connectionErrors };
}

describe('SIGKILL during sustained ingest', () => {
  it(
    `custody up on SQLite, killed ${soak(20, 20)} times, loses no acknowledged entry and audits clean`,
    async () => {
      const r = await killLoop('sqlite', 20, soak(3, 60));
      console.log(`sigkill/sqlite: 20 kills, ${r.acked} acknowledged entries, ${r.retried} interrupted requests, ${r.ms} ms`);
    },
    soak(150_000, 900_000),
  );
});

const pg = await postgresTestEnv();

describe('SIGKILL during sustained ingest, on PostgreSQL', () => {
  it.skipIf(pg.skip)(
    `custody up on PostgreSQL, killed ${soak(3, 20)} times, loses no acknowledged entry and audits clean`,
    async () => {
      const schema = await pg.freshSchema();
      try {
        const kills = soak(3, 20);
        const r = await killLoop('pg', kills, soak(3, 60), { CUSTODY_POSTGRES_URL: pg.url, CUSTODY_POSTGRES_SCHEMA: schema });
        console.log(`sigkill/postgres: ${kills} kills, ${r.acked} acknowledged entries, ${r.retried} interrupted requests, ${r.ms} ms${SOAK ? ' (soak)' : ''}`);
      } finally {
        await pg.dropSchema(schema);
      }
    },
    soak(120_000, 900_000),
  );
});
