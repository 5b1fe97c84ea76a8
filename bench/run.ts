/**
 * `npm run bench`: runs every benchmark and rewrites its section of docs/benchmarks.md.
 * BENCH_QUICK=1 for a smaller, faster run (skips the 10M-entry query run). BENCH_ONLY=core to run one.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const quick = process.env['BENCH_QUICK'] === '1';
const benches: Record<string, string | { file: string; env: Record<string, string>; full?: true }> = {
  core: 'core/core-bench.ts',
  ingest: 'ingest/ingest-bench.ts',
  query: 'query/query-bench.ts',
  // 10M entries: about an hour on 2 cores (building the log dominates); not in quick runs.
  query10m: { file: 'query/query-bench.ts', env: { BENCH_QUERY_ENTRIES: '10000000', BENCH_AUDIT: '0' }, full: true },
  policy: 'policy/policy-bench.ts',
  gateway: 'gateway/gateway-bench.ts',
};
const only = process.env['BENCH_ONLY'];
let failed = 0;
for (const [name, b] of Object.entries(benches)) {
  if (only && only !== name) continue;
  const { file, env, full } = typeof b === 'string' ? { file: b, env: {}, full: false } : b;
  if (full === true && quick && only !== name) continue;
  process.stdout.write(`\n== bench ${name}\n`);
  const r = spawnSync(process.execPath, ['--max-old-space-size=8192', '--import', 'tsx', fileURLToPath(new URL(file, import.meta.url))], { stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
