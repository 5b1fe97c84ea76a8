/**
 * What every route module shares: the ledger, the limits, the auth hook and the
 * documented error responses, so that each route's schema (and so the OpenAPI
 * document) names its security and every error it can answer.
 * @internal
 */
// Brings @fastify/swagger's schema fields (tags, summary, security …) into FastifySchema here.
import type {} from '@fastify/swagger';
import { PassThrough, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

import type { PreparedEvent } from '@custody/core';
import type { Ledger } from '@custody/ledger';
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';

import type { ApiKeyRole } from './api-keys.js';
import { ApiError, type ApiErrorCode } from './errors.js';
import type { PrepareTask } from './prepare-protocol.js';
import { requireRole } from './auth.js';
import { ref } from './schemas.js';

/** What a route module gets. */
export interface RouteContext {
  app: FastifyInstance;
  ledger: Ledger;
  /** Most events in one POST /v1/events. */
  maxBatch: number;
  /** Largest body in bytes. */
  bodyLimit: number;
  /** Parses and prepares a POST /v1/events body: in a preparation worker when it is large and one is running (prepare-pool.ts). */
  prepareBody: (task: Omit<PrepareTask, 'id'>) => Promise<PreparedEvent[]>;
}

/** The name of the bearer security scheme in the OpenAPI document. */
export const BEARER = 'bearerAuth';

const DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request: REQUEST_INVALID (schema), JSON_INVALID, EVENT_INVALID, TENANT_MISMATCH, RANGE_INVALID, CURSOR_INVALID, or a format error code; `field` names the culprit when known.',
  401: 'UNAUTHENTICATED: no, unknown or revoked API key (with WWW-Authenticate: Bearer).',
  403: "FORBIDDEN: the key's role may not call this route.",
  404: 'NOT_FOUND (no such route), EVENT_NOT_FOUND, SESSION_NOT_FOUND or KEY_NOT_FOUND.',
  413: 'BODY_TOO_LARGE or BATCH_TOO_LARGE.',
  415: 'MEDIA_TYPE_UNSUPPORTED.',
  500: 'INTERNAL: a fault of the server (logged); should never happen.',
  503: 'STORE_BUSY, STORE_UNAVAILABLE, STORE_HEAD_CONFLICT, SERVER_BUSY or SERVER_CLOSING: nothing was acknowledged; retry after Retry-After seconds.',
  507: 'STORE_FULL: the ledger cannot write; nothing was acknowledged.',
};

const HEADERS: Record<number, Record<string, { type: 'string'; description: string }>> = {
  401: { 'www-authenticate': { type: 'string', description: 'Bearer realm="custody"' } },
  503: { 'retry-after': { type: 'string', description: 'Seconds to wait before retrying.' } },
};

/** Error statuses of every authenticated route. */
export const AUTHED = [400, 401, 403, 500, 503, 507] as const;
/** Error statuses of every public route. */
export const PUBLIC = [400, 500, 503] as const;

/** Documented error responses for `statuses`; `shape` is the body schema's `$id`. */
export function errorResponses(statuses: readonly number[], shape = 'Error'): Record<number, object> {
  const out: Record<number, object> = {};
  for (const status of statuses) {
    out[status] = { description: DESCRIPTIONS[status] ?? 'Error.', ...(HEADERS[status] ? { headers: HEADERS[status] } : {}), ...ref(shape) };
  }
  return out;
}

/** The auth hook and the schema's `security` for a route open to `roles` (undefined: public). */
export function access(ctx: RouteContext, roles: readonly ApiKeyRole[] | undefined): { onRequest?: onRequestAsyncHookHandler; security: Record<string, string[]>[] } {
  if (roles === undefined) return { security: [] };
  return { onRequest: requireRole(ctx.ledger, roles), security: [{ [BEARER]: [] }] };
}

/** A `description` line naming the roles that may call a route. */
export function rolesLine(roles: readonly ApiKeyRole[]): string {
  return `Roles: ${roles.join(', ')}.`;
}

/** Converts RFC 3339 times with an offset to the ledger's UTC `Z` form; passes the rest through. */
export function utc(time: string | undefined): string | undefined {
  if (time === undefined || time.endsWith('Z')) return time;
  const ms = Date.parse(time);
  return Number.isNaN(ms) ? time : new Date(ms).toISOString();
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The route takes gzipped bodies (`Content-Encoding: gzip`); the code of the 400 for
     * bytes that are not gzip. A route without it refuses a compressed body with 415.
     */
    gzip?: ApiErrorCode;
  }
}

/**
 * Every request's body encoding, as a preParsing hook. `Content-Encoding: gzip` (what
 * OTLP exporters and log shippers send with compression on), on a route whose config
 * names `gzip`: the body is inflated as it arrives; Fastify's body limit applies to both
 * the compressed and the inflated length (a small bomb cannot inflate past it), and bytes
 * that are not gzip are 400 with the route's code. Any other encoding is 415, and so is
 * gzip on a route that does not take it (it would be refused as bad JSON otherwise).
 */
export async function decodeBody(request: FastifyRequest, payload: Readable): Promise<Readable> {
  const enc = String(request.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (enc === '' || enc === 'identity') return payload;
  const route = request.routeOptions.url ?? 'this route';
  const invalid = request.routeOptions.config.gzip;
  if (invalid === undefined) {
    throw new ApiError('MEDIA_TYPE_UNSUPPORTED', 415, `Content-Encoding ${enc.slice(0, 40)} is not supported on ${route}: send the body uncompressed (POST /v1/events and /v1/traces take gzip)`);
  }
  if (enc !== 'gzip') throw new ApiError('MEDIA_TYPE_UNSUPPORTED', 415, `Content-Encoding ${enc.slice(0, 40)} is not supported on ${route}: send gzip or none`);
  const out = new PassThrough() as PassThrough & { receivedEncodedLength: number };
  out.receivedEncodedLength = 0;
  const gunzip = createGunzip();
  payload.on('data', (chunk: Buffer) => (out.receivedEncodedLength += chunk.length));
  payload.on('error', (err) => out.destroy(err));
  gunzip.on('error', () => out.destroy(new ApiError(invalid, 400, 'the body is not valid gzip (Content-Encoding: gzip)')));
  payload.pipe(gunzip).pipe(out);
  return out;
}
