/**
 * Keyed digests: HMAC-SHA-256 under a per-tenant key of a value found at a JSON
 * Pointer, so an investigator who knows a value can find the entries that held
 * it while the store holds only the digest. The pointer is part of the MAC, so a
 * value has unrelated digests in different fields. See docs/records.md.
 */
import { createHmac } from 'node:crypto';

import { canonicalJson, COMMITMENT_KEY, parsePointer, toBase64url } from '@custody/core';

import { RecordsError } from './errors.js';

/**
 * The text a value is digested as: a string as itself, anything else as its
 * canonical JSON, so `42` and `"42"` find each other (an investigator types text).
 */
export function digestText(value: unknown): string {
  return typeof value === 'string' ? value : canonicalJson(value);
}

/**
 * The keyed digest of `value` at `path`: base64url(HMAC-SHA-256(key, path || 0x00 || text)).
 * @example
 * const d = keyedDigest(key, '/data/arguments/customerId', 'c-1042');
 */
export function keyedDigest(key: Uint8Array, path: string, value: unknown): string {
  const mac = createHmac('sha256', key);
  mac.update(path, 'utf8');
  mac.update(new Uint8Array([0]));
  mac.update(digestText(value), 'utf8');
  return toBase64url(new Uint8Array(mac.digest()));
}

/**
 * Checks a JSON Pointer given by a user (attacker-controlled).
 * @param within a prefix the pointer must be at or under (e.g. `/data`)
 * @throws RecordsError `POINTER_INVALID`
 */
export function checkPointer(pointer: unknown, field: string, within = '/data'): string {
  if (typeof pointer !== 'string' || pointer.length > 1024) {
    throw new RecordsError('POINTER_INVALID', `${field} must be a JSON Pointer of at most 1024 characters`, { field });
  }
  try {
    parsePointer(pointer);
  } catch (cause) {
    throw new RecordsError('POINTER_INVALID', `${field}: ${JSON.stringify(pointer.slice(0, 80))} is not an RFC 6901 JSON Pointer (like /data/arguments)`, { cause, field });
  }
  if (pointer !== within && !pointer.startsWith(within + '/')) {
    throw new RecordsError('POINTER_INVALID', `${field}: ${JSON.stringify(pointer.slice(0, 80))} must be ${within} or under it`, { field });
  }
  return pointer;
}

/** The value at `pointer` in `root`, or undefined (also for a commitment nobody can open). */
export function valueAt(root: unknown, pointer: string): unknown {
  let node = root;
  for (const t of parsePointer(pointer)) {
    if (node === null || typeof node !== 'object') return undefined;
    if (Array.isArray(node)) {
      if (!/^(0|[1-9]\d*)$/.test(t)) return undefined;
      node = node[Number(t)];
    } else {
      if (!Object.prototype.hasOwnProperty.call(node, t)) return undefined;
      node = (node as Record<string, unknown>)[t];
    }
  }
  if (node !== null && typeof node === 'object' && !Array.isArray(node) && COMMITMENT_KEY in node && Object.keys(node).length === 1) return undefined;
  return node;
}

/** Whether `path` is `parent` or under it (JSON Pointer prefix by tokens, not characters). */
export function isAtOrUnder(path: string, parent: string): boolean {
  return parent === '' || path === parent || path.startsWith(parent + '/');
}
