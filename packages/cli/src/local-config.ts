/**
 * The local deployment: the data folder, the log key seed, the store, and the
 * client connection settings (flags > environment > data folder).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { fromBase64, toBase64 } from '@custody/core';
import type { LedgerStore } from '@custody/ledger';

import { type ConnectionOptions, resolveConnection } from './connection.js';
import { CliError } from './output.js';

/** Default data folder. */
export const DEFAULT_DATA = '.custody';
/** Default API port. */
export const DEFAULT_PORT = 8470;

const SEED_HEADER = 'custody-log-seed-v1';

/** The data folder: --data, else $CUSTODY_DATA, else ./.custody. */
export function dataDir(flag?: string): string {
  return resolve(flag ?? process.env['CUSTODY_DATA'] ?? DEFAULT_DATA);
}

/** Creates the data folder (mode 0700) if needed. */
export function ensureDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** Writes a secret file with mode 0600. */
export function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600);
}

function parseSeed(text: string, where: string): Uint8Array {
  const t = text.trim();
  const b64 = t.startsWith(SEED_HEADER) ? t.slice(SEED_HEADER.length).trim() : t;
  let seed: Uint8Array;
  try {
    seed = fromBase64(b64);
  } catch {
    throw new CliError('LOG_KEY_INVALID', `${where} does not hold a log key (expected "${SEED_HEADER} <base64 of 32 bytes>")`);
  }
  if (seed.length !== 32) throw new CliError('LOG_KEY_INVALID', `${where}: the log key must be 32 bytes`);
  return seed;
}

/**
 * The log key seed: --log-key FILE, else $CUSTODY_LOG_KEY (the key itself), else
 * <data>/log.key, generated with mode 0600 on first start. With `create: false` (a
 * command that only checks what the key signed, such as `custody audit`) a missing
 * <data>/log.key is LOG_KEY_MISSING, exit 2, and nothing is written.
 */
export function loadLogSeed(dir: string, flag?: string, opts: { create?: boolean } = {}): { seed: Uint8Array; source: string; created: boolean } {
  if (flag !== undefined) {
    if (!existsSync(flag)) throw new CliError('LOG_KEY_INVALID', `log key file ${flag} does not exist`);
    return { seed: parseSeed(readFileSync(flag, 'utf8'), flag), source: flag, created: false };
  }
  const env = process.env['CUSTODY_LOG_KEY'];
  if (env !== undefined && env !== '') return { seed: parseSeed(env, '$CUSTODY_LOG_KEY'), source: '$CUSTODY_LOG_KEY', created: false };
  const path = join(dir, 'log.key');
  if (existsSync(path)) return { seed: parseSeed(readFileSync(path, 'utf8'), path), source: path, created: false };
  if (opts.create === false) {
    throw new CliError('LOG_KEY_MISSING', `no log key: ${path} does not exist and neither --log-key nor $CUSTODY_LOG_KEY is set; give the data folder \`custody up\` uses (--data), or its log key`);
  }
  ensureDataDir(dir);
  const seed = globalThis.crypto.getRandomValues(new Uint8Array(32));
  writeSecret(path, `${SEED_HEADER} ${toBase64(seed)}\n`);
  return { seed, source: path, created: true };
}

/** Opens the store: PostgreSQL when a URL is given (--postgres or $CUSTODY_POSTGRES_URL), else SQLite in the data folder. */
export async function openStore(dir: string, postgres?: string): Promise<LedgerStore> {
  const url = postgres ?? process.env['CUSTODY_POSTGRES_URL'];
  if (url !== undefined && url !== '') {
    const { PostgresStore } = await import('@custody/ledger');
    const schema = process.env['CUSTODY_POSTGRES_SCHEMA'];
    return new PostgresStore({ connectionString: url, ...(schema ? { schema } : {}) });
  }
  ensureDataDir(dir);
  const { SqliteStore } = await import('@custody/ledger');
  return new SqliteStore({ path: join(dir, 'ledger.db') });
}

/**
 * Where a client connects. Kept for older callers: use `resolveConnection` from
 * connection.ts, which also reads profiles.
 * @deprecated
 */
export function clientConfig(opts: ConnectionOptions): { url: string; apiKey: string } {
  const c = resolveConnection(opts);
  return { url: c.url, apiKey: c.apiKey };
}

export { apiFetch } from './connection.js';
