import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';

import { Ledger } from '../ledger.js';
import { bulkDrafts } from '../testing/batch-fixtures.js';
import { buildBatches } from '../testing/ingest-baseline.js';
import { walRestarts } from '../testing/sqlite-test-env.js';
import { CHECKPOINT_INTERVAL_MS } from './sqlite-checkpointer.js';
import { SqliteStore } from './sqlite-store.js';

const walPages = (path: string) => {
  try {
    return statSync(`${path}-wal`).size / 4096;
  } catch {
    return 0;
  }
};

describe('the background WAL checkpointer', () => {
  it('keeps the WAL from growing while commits never checkpoint inline, and leaves a consistent file', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'custody-ckpt-')), 'ledger.db');
    const store = new SqliteStore({ path });
    await store.migrate();
    const batches = buildBatches(20, 100);
    for (const b of batches) {
      await store.append(b, b.head.size - b.entries.length);
      await new Promise((r) => setTimeout(r, 10));
    }
    // Give the worker a couple of ticks, then the WAL must have been copied back at least once.
    await new Promise((r) => setTimeout(r, 600));
    // Copied into the database file while the store is still open: only the worker does that.
    expect(statSync(path).size).toBeGreaterThan(500_000);
    await store.close();
    const db = new Database(path, { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect((db.prepare('SELECT count(*) AS n FROM entries').get() as { n: number }).n).toBe(2_000);
    db.close();
    expect(walPages(path)).toBeLessThan(8192);
  });

  it('lets the WAL start over under steady small commits, so it stays bounded', async () => {
    // The worker's pass alone never ends with every frame copied while commits keep
    // landing, and the WAL only starts over when a commit finds it fully copied: before
    // the store finished each pass itself, this run left a WAL of hundreds of MiB.
    const path = join(mkdtempSync(join(tmpdir(), 'custody-ckpt-')), 'ledger.db');
    const store = new SqliteStore({ path });
    const ledger = await Ledger.open({ store, logSeed: new Uint8Array(32).fill(5), originHost: 'custody.test' });
    const drafts = bulkDrafts(40_000, { seed: 3, crowd: 50 });
    const until = performance.now() + 5 * CHECKPOINT_INTERVAL_MS;
    let commits = 0;
    for (let i = 0; performance.now() < until && i + 2 <= drafts.length; i += 2, commits++) {
      const res = await ledger.append('acme', drafts.slice(i, i + 2));
      expect(res.every((r) => r.status === 'fulfilled')).toBe(true);
    }
    const restarts = walRestarts(path);
    const walMiB = statSync(`${path}-wal`).size / 2 ** 20;
    await ledger.close();
    expect(commits).toBeGreaterThan(100);
    expect(restarts).toBeGreaterThanOrEqual(2);
    // Between two restarts the WAL holds at most one interval of commits (about 70 MiB here).
    expect(walMiB).toBeLessThan(160);
  });

  it('can be left to SQLite', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'custody-ckpt-')), 'ledger.db');
    const store = new SqliteStore({ path, checkpoints: 'automatic' });
    await store.migrate();
    const [b] = buildBatches(1, 10);
    await store.append(b!, 0);
    await store.close();
  });
});
