/**
 * The child process of the conformance suite's crash test (run as a script, not
 * imported). It opens the store named by its argument, appends one batch to
 * measure how long an append takes, then starts a second, identical-size batch
 * and reports it on stdout, so the parent can SIGKILL it mid-write.
 *
 * Argument: JSON `{ spec: CrashChildSpec, tenant: string, entries: number }`.
 * Output: JSON lines `{ calibrated, size, first, last }`, `{ appending: true }`, `{ done: true }`.
 * @internal
 */
import Database from 'better-sqlite3';

import { PostgresStore } from '../postgres/postgres-store.js';
import { SqliteStore } from '../sqlite/sqlite-store.js';
import type { LedgerStore } from '../store.js';
import { bulkDrafts, FixtureLog } from './batch-fixtures.js';
import type { CrashChildSpec } from './store-conformance.js';

interface ChildArgs {
  spec: CrashChildSpec;
  tenant: string;
  entries: number;
}

const say = (msg: object) => process.stdout.write(`${JSON.stringify(msg)}\n`);

const args = JSON.parse(process.argv[2] ?? '{}') as ChildArgs;
let store: LedgerStore;
if (args.spec.kind === 'sqlite') {
  const db = new Database(args.spec.path);
  store = new SqliteStore({ database: db });
  // A tiny page cache, so the open transaction spills uncommitted pages into the
  // WAL before the kill: recovery must then ignore frames with no commit.
  db.pragma('cache_size = 50');
} else {
  store = new PostgresStore({ connectionString: args.spec.connectionString, schema: args.spec.schema });
}
await store.migrate();
const head = await store.head(args.tenant);
const log = new FixtureLog({ tenant: args.tenant, ...(head ? { head } : {}), start: new Date('2026-06-01T00:00:00Z') });
const first = log.append(bulkDrafts(args.entries, { prefix: 'crash-a' }));
const t0 = performance.now();
await store.append(first, head?.size ?? 0);
const calibrated = performance.now() - t0;
const second = log.append(bulkDrafts(args.entries, { prefix: 'crash-b' }));
say({ calibrated, size: first.head.size, first: second.entries[0]!.id, last: second.entries[second.entries.length - 1]!.id });
say({ appending: true });
await store.append(second, first.head.size);
say({ done: true });
await store.close();
