/**
 * Issue 9, fault test: PostgreSQL restarts under `custody up` mid-ingest.
 * While the database is away clients get 503 with Retry-After (STORE_UNAVAILABLE
 * or STORE_BUSY), never another status and never a dropped connection; they
 * retry the same batch; once PostgreSQL is back the server recovers by itself
 * (no restart) and nothing acknowledged is lost (`custody audit` passes).
 *
 * The database is a private instance of this test (initdb on a free port, run as
 * the postgres user), never the machine's shared server, which other tests use.
 * Short form: a fast and an immediate (crash-like) restart; SOAK=1: ten.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { api, custody, type Server, startServer } from '../e2e/custody-process.js';
import { missingAcked, type PrivatePostgres, privatePostgresUnavailable, soak, startIngest, startPrivatePostgres, summarize, waitFor } from './fault-kit.js';

const unavailable = privatePostgresUnavailable();
if (unavailable !== undefined && process.env['CI'] === 'true') throw new Error(`the PostgreSQL restart test needs a private PostgreSQL server: ${unavailable}`);

let pg: PrivatePostgres | undefined;
let server: Server | undefined;
const dirs: string[] = [];
afterAll(async () => {
  await server?.stop();
  pg?.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('PostgreSQL restarts mid-ingest', () => {
  it.skipIf(unavailable !== undefined)(
    'clients see 503 with Retry-After and retry; the server recovers by itself; nothing acknowledged is lost',
    async () => {
      const started = Date.now();
      pg = await startPrivatePostgres();
      const data = mkdtempSync(join(tmpdir(), 'custody-fault-pgrestart-'));
      dirs.push(data);
      const env = { CUSTODY_POSTGRES_URL: pg.url, CUSTODY_POSTGRES_SCHEMA: 'custody' };
      server = await startServer(['--data', data, '--origin-host', 'custody.fault', '--quiet'], env);
      const s = server;
      const key = readFileSync(join(data, 'admin.key'), 'utf8').trim();
      const load = startIngest({ url: () => s.url, key, prefix: 'pgr', clients: 4, batch: 10 });
      const restarts = soak(2, 10);
      try {
        for (let r = 0; r < restarts; r++) {
          const mode = r % 2 === 0 ? 'fast' : 'immediate';
          const ok = load.stats.ok;
          await waitFor(`acknowledged batches before restart ${r + 1}`, () => load.stats.ok >= ok + 5, 30_000);
          const refused = load.stats.statuses.get(503) ?? 0;
          pg.stop(mode);
          // Down: every client is refused (503) rather than acknowledged.
          await waitFor(`503 answers while PostgreSQL is down (restart ${r + 1}, ${mode})`, () => (load.stats.statuses.get(503) ?? 0) >= refused + 8, 30_000);
          const health = await api(s.url, key, '/v1/health');
          expect(health.status).toBe(503);
          const okWhileDown = load.stats.ok;
          pg.start();
          // Back: the same server acknowledges again, with no restart of its own.
          await waitFor(`acknowledgements after PostgreSQL came back (restart ${r + 1})`, () => load.stats.ok >= okWhileDown + 8, 30_000);
        }
      } catch (err) {
        await load.stop(5_000).catch(() => undefined);
        throw new Error(`${String(err)}\nclients saw: ${summarize(load.stats)}\nserver output:\n${s.output().slice(-3000)}${pg.log()}`, { cause: err });
      }
      await load.stop();
      const { stats } = load;
      expect(stats.violations).toEqual([]);
      expect(stats.connectionErrors, 'the server never dropped a request').toBe(0);
      expect(stats.missingRetryAfter, 'every 503 carries Retry-After').toBe(0);
      expect([...stats.statuses.keys()]).toEqual([503]);
      expect([...stats.codes.keys()].every((c) => c === 'STORE_UNAVAILABLE' || c === 'STORE_BUSY'), JSON.stringify([...stats.codes])).toBe(true);
      expect(server.child.exitCode).toBeNull();
      expect((await api(s.url, key, '/v1/health')).status).toBe(200);
      expect(await missingAcked(s.url, key, stats.acked)).toEqual([]);
      expect(await server.stop()).toBe(0);
      server = undefined;
      const audit = custody(['audit', '--data', data], env);
      expect(audit.code, audit.stdout + audit.stderr).toBe(0);
      console.log(
        `postgres-restart: ${restarts} restarts, ${stats.acked.size} acknowledged entries, ${stats.statuses.get(503)} answers 503 (${[...stats.codes].map(([c, n]) => `${c} ${n}`).join(', ')}), ${Date.now() - started} ms`,
      );
    },
    soak(120_000, 600_000),
  );
});
