/**
 * Bearer-key authentication and role checks. The tenant of every request comes
 * from its key, never from the request.
 */
import type { ApiKeyRow, Ledger } from '@custody/ledger';
import type { FastifyRequest, onRequestAsyncHookHandler } from 'fastify';

import { type ApiKeyRole, authenticate } from './api-keys.js';
import { ApiError } from './errors.js';

/** Who is calling: the presented key's row. */
export type Caller = ApiKeyRow;

/** Which roles may call a route. */
export const ROLES = {
  append: ['ingest', 'admin'],
  read: ['read', 'approve', 'admin'],
  admin: ['admin'],
} as const satisfies Record<string, readonly ApiKeyRole[]>;

const callers = new WeakMap<FastifyRequest, Caller>();

/** Longest Authorization header considered (a key is 61 characters). */
const MAX_HEADER = 512;

function unauthenticated(message: string, invalid: boolean): ApiError {
  const challenge = invalid ? 'Bearer realm="custody", error="invalid_token"' : 'Bearer realm="custody"';
  return new ApiError('UNAUTHENTICATED', 401, message, { headers: { 'www-authenticate': challenge } });
}

/**
 * An onRequest hook that lets through only a live key with one of `roles`.
 * @internal
 */
export function requireRole(ledger: Ledger, roles: readonly ApiKeyRole[]): onRequestAsyncHookHandler {
  return async (request) => {
    const header = request.headers.authorization;
    if (header === undefined || header === '') throw unauthenticated('send an API key: Authorization: Bearer <key>', false);
    const m = header.length <= MAX_HEADER ? /^Bearer +(\S+) *$/i.exec(header) : null;
    if (m === null) throw unauthenticated('the Authorization header must be: Bearer <key>', true);
    const caller = await authenticate(ledger, m[1]!);
    if (caller === undefined) throw unauthenticated('unknown or revoked API key', true);
    if (!roles.includes(caller.role)) {
      throw new ApiError('FORBIDDEN', 403, `a key with role ${caller.role} cannot do this; it needs ${roles.join(' or ')}`);
    }
    callers.set(request, caller);
  };
}

/**
 * The caller of an authenticated request.
 * @internal
 */
export function callerOf(request: FastifyRequest): Caller {
  const caller = callers.get(request);
  // Only reachable if a route forgot its requireRole hook: fail closed.
  if (caller === undefined) throw unauthenticated('send an API key: Authorization: Bearer <key>', false);
  return caller;
}
