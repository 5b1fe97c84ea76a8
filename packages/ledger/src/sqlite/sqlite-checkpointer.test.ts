import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';

import { buildBatches } from '../testing/ingest-baseline.js';
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

  it('can be left to SQLite', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'custody-ckpt-')), 'ledger.db');
    const store = new SqliteStore({ path, checkpoints: 'automatic' });
    await store.migrate();
    const [b] = buildBatches(1, 10);
    await store.append(b!, 0);
    await store.close();
  });
});
