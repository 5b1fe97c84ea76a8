/**
 * `npm run bench`: runs every benchmark and rewrites its section of docs/benchmarks.md.
 * BENCH_QUICK=1 for a smaller, faster run. BENCH_ONLY=core to run one.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const benches: Record<string, string> = {
  core: 'core/core-bench.ts',
  ingest: 'ingest/ingest-bench.ts',
  query: 'query/query-bench.ts',
  policy: 'policy/policy-bench.ts',
  gateway: 'gateway/gateway-bench.ts',
};
const only = process.env['BENCH_ONLY'];
let failed = 0;
for (const [name, file] of Object.entries(benches)) {
  if (only && only !== name) continue;
  process.stdout.write(`\n== bench ${name}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(new URL(file, import.meta.url))], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
