/**
 * bench/query runs end to end on a tiny log, so a change that breaks it (it opens
 * ledgers over a fixture log, audits both stores, runs every query and report) shows
 * in CI, not at the next benchmark run. The figures it writes go to a temporary file.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { postgresTestEnv } from '../../packages/ledger/src/testing/postgres-test-env.js';

const pg = await postgresTestEnv();

describe('bench/query (smoke: 3,000 entries)', () => {
  it('builds both stores, audits them and answers every query and report', () => {
    const docs = join(mkdtempSync(join(tmpdir(), 'custody-bench-smoke-')), 'benchmarks.md');
    const bench = fileURLToPath(new URL('../../bench/query/query-bench.ts', import.meta.url));
    const run = spawnSync(process.execPath, ['--import', 'tsx', bench], {
      env: { ...process.env, BENCH_DOCS: docs, BENCH_QUERY_ENTRIES: '3000', BENCH_QUERY_BUDGET_MS: '30' },
      encoding: 'utf8',
      timeout: 240_000,
    });
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    const out = readFileSync(docs, 'utf8');
    expect(out).toContain('3,000 entries');
    expect(out).toContain('report: `compliance`');
    if (pg.skip === false) expect(out).toMatch(/\| PostgreSQL \| [\d.]+ s \|/);
  }, 300_000);
});
