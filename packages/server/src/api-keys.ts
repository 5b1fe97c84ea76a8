/**
 * API keys: random, bound to one tenant and one role, stored only as the
 * base64url SHA-256 of the whole key string. Creating and revoking a key is
 * itself an entry (`admin.key_created`, `admin.key_revoked`) in the tenant's log.
 */
import { randomBytes } from 'node:crypto';

import { sha256, toBase64url, utf8 } from '@custody/core';
import { type ApiKeyRow, Ledger, type LedgerStore } from '@custody/ledger';
import { v7 as uuidv7 } from 'uuid';

import { ApiError } from './errors.js';

/** A key's role: `ingest` appends; `read` queries, proves and exports; `approve` reads (approvals come later); `admin` does everything in its tenant, keys included. */
export type ApiKeyRole = ApiKeyRow['role'];

/** Every role, least powerful first. */
export const API_KEY_ROLES: readonly ApiKeyRole[] = ['ingest', 'read', 'approve', 'admin'];

/** What to create. */
export interface CreateApiKeyOptions {
  tenant: string;
  role: ApiKeyRole;
  /** What the key is for, shown in listings (1-256 characters). */
  name: string;
  /**
   * Who creates it: the id of the `service` principal recorded as the entry's
   * actor, e.g. `key:<admin key id>` through the API. Default `custody`.
   */
  by?: string;
}

/** What to revoke. */
export interface RevokeApiKeyOptions {
  tenant: string;
  id: string;
  /** Who revokes it (as in CreateApiKeyOptions.by). Default `custody`. */
  by?: string;
}

/** A newly created key: `key` is the only copy of the secret, shown once. */
export interface CreatedApiKey {
  key: string;
  row: ApiKeyRow;
}

const PREFIX = 'cust_';
/** `cust_<12 base32 characters>_<43 base64url characters>` (60-bit id, 256-bit secret). */
const KEY = /^cust_([a-z2-7]{12})_([A-Za-z0-9_-]{43})$/;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const TENANT = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** The stored form of a key: base64url SHA-256 of the whole key string. */
export function hashApiKey(key: string): string {
  return toBase64url(sha256(utf8(key)));
}

function newKeyId(): string {
  // 256 is a multiple of 32, so `byte & 31` is uniform.
  return Array.from(randomBytes(12), (b) => BASE32[b & 31]).join('');
}

function storeOf(target: Ledger | LedgerStore): LedgerStore {
  return target instanceof Ledger ? target.store : target;
}

function checkActor(by: string): void {
  if (typeof by !== 'string' || by.length === 0 || by.length > 512) throw new ApiError('REQUEST_INVALID', 400, 'by must be 1-512 characters', { field: 'by' });
}

async function record(ledger: Ledger, tenant: string, type: 'admin.key_created' | 'admin.key_revoked', by: string, row: ApiKeyRow): Promise<void> {
  const [result] = await ledger.append(tenant, [
    {
      id: uuidv7(),
      type,
      time: new Date().toISOString(),
      actor: { type: 'service', id: by },
      // Never the secret, nor its hash.
      data: { keyId: row.id, role: row.role, name: row.name },
    },
  ]);
  if (result?.status === 'rejected') throw result.reason;
}

/**
 * Creates an API key for one tenant and role. With a `Ledger`, first appends
 * `admin.key_created` to the tenant's log and only then stores the key, so no
 * key is ever live without its entry. A bare `LedgerStore` (bootstrap, tests)
 * stores the key without an entry: prefer the ledger wherever there is one.
 * @returns the key (shown once; only its hash is stored) and its row
 * @throws ApiError `REQUEST_INVALID` for a bad tenant, role or name; the ledger's
 *   and store's errors when the entry or the key cannot be written
 * @example
 * const { key } = await createApiKey(ledger, { tenant: 'acme', role: 'ingest', name: 'orders agent' });
 */
export async function createApiKey(target: Ledger | LedgerStore, opts: CreateApiKeyOptions): Promise<CreatedApiKey> {
  if (!TENANT.test(opts.tenant)) {
    throw new ApiError('REQUEST_INVALID', 400, 'tenant must be 1-63 characters of a-z 0-9 . _ - starting with a letter or digit', { field: 'tenant' });
  }
  if (!API_KEY_ROLES.includes(opts.role)) {
    throw new ApiError('REQUEST_INVALID', 400, `role must be one of ${API_KEY_ROLES.join(', ')}`, { field: 'role' });
  }
  if (typeof opts.name !== 'string' || opts.name.trim().length === 0 || opts.name.length > 256) {
    throw new ApiError('REQUEST_INVALID', 400, 'name must be 1-256 characters, not only spaces', { field: 'name' });
  }
  // The name of an approve key is the approver's id in the evidence and in the self-approval
  // check: no control characters (terminal escapes, newlines) nor invisible format ones
  // (zero-width, bidi overrides) that would make it print or compare as someone else.
  const bad = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.exec(opts.name);
  if (bad !== null) {
    const cp = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw new ApiError('REQUEST_INVALID', 400, `name must not contain control or invisible format characters (U+${cp} at position ${bad.index})`, { field: 'name' });
  }
  const by = opts.by ?? 'custody';
  checkActor(by);
  const id = newKeyId();
  const key = `${PREFIX}${id}_${toBase64url(randomBytes(32))}`;
  const row: ApiKeyRow = { id, tenant: opts.tenant, role: opts.role, name: opts.name, hash: hashApiKey(key), createdAt: new Date().toISOString() };
  if (target instanceof Ledger) await record(target, opts.tenant, 'admin.key_created', by, row);
  await storeOf(target).putApiKey(row);
  return { key, row };
}

/**
 * Revokes a live key of a tenant. With a `Ledger`, revokes first and then appends
 * `admin.key_revoked`: a failure in between leaves the key revoked (never live
 * with a revocation on record).
 * @returns false when the tenant has no live key with this id
 */
export async function revokeApiKey(target: Ledger | LedgerStore, opts: RevokeApiKeyOptions): Promise<boolean> {
  const by = opts.by ?? 'custody';
  checkActor(by);
  const store = storeOf(target);
  const row = (await store.listApiKeys(opts.tenant)).find((k) => k.id === opts.id && k.tenant === opts.tenant && k.revokedAt === undefined);
  if (row === undefined) return false;
  if (!(await store.revokeApiKey(opts.tenant, opts.id, new Date().toISOString()))) return false;
  if (target instanceof Ledger) await record(target, opts.tenant, 'admin.key_revoked', by, row);
  return true;
}

/**
 * Finds the live key a client presented (attacker-controlled input).
 * @returns the key's row, or undefined for a malformed, unknown or revoked key
 */
export async function authenticate(target: Ledger | LedgerStore, key: string): Promise<ApiKeyRow | undefined> {
  const m = KEY.exec(key);
  if (m === null) return undefined;
  const row = await storeOf(target).findApiKey(hashApiKey(key));
  if (row === undefined || row.id !== m[1] || row.revokedAt !== undefined) return undefined;
  return row;
}
