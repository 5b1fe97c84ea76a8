/**
 * Conformance options for `SqliteStore`: each store is a database file in a
 * temporary folder, removed after the suite.
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SqliteStore } from '../sqlite/sqlite-store.js';
import type { LedgerStore } from '../store.js';
import type { CrashChildSpec, StoreConformanceOptions } from './store-conformance.js';

/**
 * Conformance options for `SqliteStore` on database files in a temporary folder.
 * @example
 * runStoreConformance(sqliteConformanceOptions());
 */
export function sqliteConformanceOptions(): StoreConformanceOptions {
  let dir: string | undefined;
  let n = 0;
  const paths = new WeakMap<LedgerStore, string>();
  const open = (path: string): LedgerStore => {
    const store = new SqliteStore({ path });
    paths.set(store, path);
    return store;
  };
  const pathOf = (store: LedgerStore): string => {
    const path = paths.get(store);
    if (path === undefined) throw new Error('not a store made by these options');
    return path;
  };
  return {
    name: 'sqlite',
    createStore: async () => {
      dir ??= mkdtempSync(join(tmpdir(), 'custody-sqlite-'));
      return open(join(dir, `ledger-${n++}.db`));
    },
    reopen: async (store) => {
      await store.close();
      return open(pathOf(store));
    },
    openPeer: async (store) => open(pathOf(store)),
    crashChild: (store): CrashChildSpec => ({ kind: 'sqlite', path: pathOf(store) }),
    teardown: async () => {
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * How many times the WAL of the database at `path` has started over: the checkpoint
 * sequence number of the WAL header (bytes 12-15, big-endian), which SQLite raises by
 * one at each restart. Reads the 16 header bytes only.
 */
export function walRestarts(path: string): number {
  const header = Buffer.alloc(16);
  const fd = openSync(`${path}-wal`, 'r');
  try {
    readSync(fd, header, 0, 16, 0);
  } finally {
    closeSync(fd);
  }
  return header.readUInt32BE(12);
}
