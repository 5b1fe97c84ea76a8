/**
 * The stores that share ledger.db with the ledger (authority, approvals) leave the
 * WAL's checkpoints to the ledger's connection when told to (`checkpoints: 'off'`, as
 * `custody up` does): otherwise each of their commits, once the WAL holds more than
 * SQLite's default 1,000 pages, would copy the ledger's WAL back on the request thread.
 */
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SqliteAuthorityStore } from '@custody/authority';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';

import { SqliteApprovalStore } from './sqlite-approval-store.js';

/**
 * A database file whose WAL holds about 2,000 pages the file itself does not have yet,
 * and the connection that wrote them (kept open: closing the last one checkpoints).
 */
function fileWithBigWal(): { path: string; writer: Database.Database } {
  const path = join(mkdtempSync(join(tmpdir(), 'custody-side-')), 'ledger.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE filler (b BLOB)');
  const ins = db.prepare('INSERT INTO filler (b) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < 2000; i++) ins.run(Buffer.alloc(3000, i % 251));
  })();
  return { path, writer: db };
}

const stores = [
  { name: 'authority', open: (path: string, checkpoints?: 'off') => new SqliteAuthorityStore({ path, ...(checkpoints ? { checkpoints } : {}) }) },
  { name: 'approvals', open: (path: string, checkpoints?: 'off') => new SqliteApprovalStore({ path, ...(checkpoints ? { checkpoints } : {}) }) },
];

describe.each(stores)('the $name store beside the ledger', ({ open }) => {
  it("with checkpoints: 'off', its commits leave the WAL alone", async () => {
    const { path, writer } = fileWithBigWal();
    const before = statSync(path).size;
    const store = open(path, 'off');
    await store.migrate();
    expect(statSync(path).size).toBe(before);
    await store.close();
    writer.close();
  });

  it('by default, checkpoints as SQLite does (a file of its own still gets checkpointed)', async () => {
    const { path, writer } = fileWithBigWal();
    const before = statSync(path).size;
    const store = open(path);
    await store.migrate();
    expect(statSync(path).size).toBeGreaterThan(before + 4_000_000);
    await store.close();
    writer.close();
  });
});
