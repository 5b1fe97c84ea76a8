/**
 * Errors of the HTTP API and the one mapping from anything thrown to a status
 * and a `{ "error": { "code", "message", "field"? } }` body. Every code is listed
 * in docs/errors.md.
 */
import type { Socket } from 'node:net';

import { AuthorityError } from '@custody/authority';
import { CustodyError, FormatError, VerificationError } from '@custody/core';
import { LedgerError, type LedgerErrorCode, StoreError } from '@custody/ledger';
import { RECORDS_STATUS, RecordsError } from '@custody/records';
import type { FastifyError } from 'fastify';

/** Codes the server itself raises (the ledger's and core's codes pass through unchanged). */
export const API_ERROR_CODES = [
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'REQUEST_INVALID',
  'TENANT_MISMATCH',
  'BODY_TOO_LARGE',
  'BATCH_TOO_LARGE',
  'MEDIA_TYPE_UNSUPPORTED',
  'KEY_NOT_FOUND',
  'SERVER_CLOSING',
  'SERVER_BUSY',
  'HEADERS_TOO_LARGE',
  'REQUEST_TIMEOUT',
  'INTERNAL',
  'APPROVAL_NOT_FOUND',
  'APPROVAL_NOT_PENDING',
  'APPROVAL_SELF',
  'APPROVAL_MISMATCH',
  'APPROVAL_NOT_GRANTED',
  'APPROVAL_SESSION_INACTIVE',
  'APPROVER_TOKEN_REFUSED',
  'POLICY_NOT_CONFIGURED',
  'CREDENTIAL_INVALID',
  'OTLP_INVALID',
  'IMPORT_INVALID',
  'IMPORT_RECORD_INVALID',
  'IMPORT_SOURCE_UNKNOWN',
] as const;

/** A code the server itself raises. */
export type ApiErrorCode = (typeof API_ERROR_CODES)[number];

/** An error with its HTTP status, like Hono's `HTTPException`; clients branch on `code`. */
export class ApiError extends CustodyError<ApiErrorCode> {
  readonly status: number;
  /** The field at fault, when one can be named (for example `events[3].session.id`). */
  readonly field: string | undefined;
  /** Response headers that go with the error (for example `WWW-Authenticate`). */
  readonly headers: Readonly<Record<string, string>>;
  constructor(
    code: ApiErrorCode,
    status: number,
    message: string,
    options?: { cause?: unknown; field?: string; headers?: Record<string, string> },
  ) {
    super(code, message, options);
    this.status = status;
    this.field = options?.field;
    this.headers = options?.headers ?? {};
  }
}

/** The body of every error response. */
export interface ErrorBody {
  error: { code: string; message: string; field?: string };
  /** POST /v1/events only, when the store failed after part of the request was committed: each event's result. */
  results?: unknown[];
}

/** An event the sequencer refused, as it appears in POST /v1/events `results`. */
export interface AppendRefusal {
  id: string;
  error: { code: string; message: string; field?: string };
}

/**
 * A POST /v1/events whose append failed in the store (or worse) for some events:
 * answered as its cause, plus `results` when some events were committed first.
 * @internal
 */
export class AppendFailedError extends Error {
  readonly results: readonly unknown[] | undefined;
  constructor(cause: unknown, results: readonly unknown[] | undefined) {
    super('append failed', { cause });
    this.name = 'AppendFailedError';
    this.results = results;
  }
}

/** What the error handler sends for a thrown value. */
export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: ErrorBody;
  /** True for faults of the server (500): log them with their cause. */
  internal: boolean;
}

/** HTTP status of each ledger code. @internal */
export const LEDGER_STATUS: Record<LedgerErrorCode, number> = {
  EVENT_INVALID: 400,
  RANGE_INVALID: 400,
  CURSOR_INVALID: 400,
  EVENT_ID_CONFLICT: 409,
  SESSION_SEALED: 409,
  SESSION_NOT_FOUND: 404,
  EVENT_NOT_FOUND: 404,
  TENANT_NOT_FOUND: 404,
  BATCH_TOO_LARGE: 413,
  // Raised at start-up (a misconfiguration), never by a request.
  CONFIG_INVALID: 500,
};

const RETRY = { 'retry-after': '1' };

function body(code: string, message: string, field?: string): ErrorBody {
  return { error: { code, message, ...(field !== undefined ? { field } : {}) } };
}

function respond(status: number, code: string, message: string, field?: string, headers: Record<string, string> = {}): ErrorResponse {
  return { status, headers, body: body(code, message, field), internal: false };
}

const INTERNAL: Omit<ErrorResponse, 'internal'> = {
  status: 500,
  headers: {},
  body: body('INTERNAL', 'internal error: the request was not completed; the server logged the cause'),
};

/**
 * Maps anything thrown while serving a request to the response: ApiError,
 * LedgerError, StoreError, FormatError and Fastify's own errors each to their 4xx
 * or 503/507; anything else to 500 `INTERNAL` (never with its message).
 * @param bodyLimit the body limit in bytes, named in 413 messages
 */
export function errorResponse(err: unknown, bodyLimit?: number): ErrorResponse {
  if (err instanceof AppendFailedError) {
    const r = errorResponse(err.cause, bodyLimit);
    return err.results === undefined ? r : { ...r, body: { ...r.body, results: [...err.results] } };
  }
  if (err instanceof ApiError) return respond(err.status, err.code, err.message, err.field, { ...err.headers });
  if (err instanceof AuthorityError) return err.status >= 500 ? { ...INTERNAL, internal: true } : respond(err.status, err.code, err.message, err.field, err.status === 503 ? { ...RETRY } : {});
  if (err instanceof LedgerError) return respond(LEDGER_STATUS[err.code] ?? 400, err.code, err.message, err.field);
  if (err instanceof RecordsError) return respond(RECORDS_STATUS[err.code] ?? 400, err.code, err.message, err.field);
  if (err instanceof StoreError) {
    switch (err.code) {
      case 'STORE_BUSY':
      case 'STORE_UNAVAILABLE':
      case 'STORE_HEAD_CONFLICT':
        return respond(503, err.code, `the ledger could not commit now (${err.message}); nothing was acknowledged: retry`, undefined, { ...RETRY });
      case 'STORE_FULL':
        return respond(507, err.code, "the ledger's storage is full: nothing was written or acknowledged; an operator must free or add space");
      case 'STORE_CORRUPT':
        // Logged like an internal error; the message is the store's own (it names the entry, never a value).
        return { ...respond(500, err.code, `the ledger's store holds data it cannot read back: ${err.message}. An operator must run custody audit`), internal: true };
      default:
        return { ...INTERNAL, internal: true };
    }
  }
  if (err instanceof FormatError) return respond(400, err.code, err.message, err.field);
  if (err instanceof VerificationError) return { ...INTERNAL, internal: true };
  if (isFastifyError(err)) return fastifyErrorResponse(err, bodyLimit);
  return { ...INTERNAL, internal: true };
}

/**
 * Answers what Node's HTTP parser refuses before Fastify sees a request (headers
 * or URL over Node's 16 KiB limit, a request that times out, bytes that are not
 * HTTP) in the API's error shape, instead of Fastify's default body. Fastify's
 * `clientErrorHandler`.
 * @internal
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, reason, code, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'HEADERS_TOO_LARGE', 'the request line and headers are larger than the server accepts (16 KiB): shorten the URL or the headers']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'REQUEST_TIMEOUT', 'the request was not received in time']
        : [400, 'Bad Request', 'REQUEST_INVALID', 'the request is not valid HTTP/1.1'];
  const text = JSON.stringify(body(code, message));
  if (socket.writable) socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Length: ${Buffer.byteLength(text)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${text}`);
  socket.destroy(err);
}

function isFastifyError(err: unknown): err is FastifyError {
  return err instanceof Error && typeof (err as Partial<FastifyError>).code === 'string' && (err as FastifyError).code.startsWith('FST_');
}

function fastifyErrorResponse(err: FastifyError, bodyLimit: number | undefined): ErrorResponse {
  switch (err.code) {
    case 'FST_ERR_VALIDATION':
      return validationResponse(err);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return respond(413, 'BODY_TOO_LARGE', `the body is larger than ${bodyLimit ?? 'the limit of'} bytes`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return respond(415, 'MEDIA_TYPE_UNSUPPORTED', 'unsupported Content-Type: send application/json (or application/x-ndjson to POST /v1/events)');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return respond(400, 'REQUEST_INVALID', 'the body is empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return respond(400, 'JSON_INVALID', 'the body is not valid JSON (or holds a __proto__ or constructor.prototype key)');
    default: {
      const status = err.statusCode;
      if (status !== undefined && status >= 400 && status < 500) return respond(status, 'REQUEST_INVALID', err.message);
      return { ...INTERNAL, internal: true };
    }
  }
}

const PART: Record<string, string> = { querystring: 'query parameter', params: 'path parameter', body: 'body field', headers: 'header' };

/** The first Ajv error of a Fastify validation error, naming the field. */
function validationResponse(err: FastifyError): ErrorResponse {
  const first = err.validation?.[0];
  const part = err.validationContext ?? 'request';
  if (first === undefined) return respond(400, 'REQUEST_INVALID', err.message);
  const params = first.params as Record<string, unknown>;
  const tokens = first.instancePath.split('/').slice(1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  let message = first.message ?? 'is invalid';
  if (typeof params['missingProperty'] === 'string') {
    tokens.push(params['missingProperty']);
    message = 'is required';
  } else if (typeof params['additionalProperty'] === 'string') {
    tokens.push(params['additionalProperty']);
    message = part === 'querystring' ? 'is not a parameter of this route' : 'is not a known field';
  } else if (Array.isArray(params['allowedValues'])) {
    message = `must be one of ${(params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  }
  const field = tokens.map((t, i) => (/^\d+$/.test(t) ? `[${t}]` : i === 0 ? t : `.${t}`)).join('');
  const label = PART[part] ?? part;
  return respond(400, 'REQUEST_INVALID', field === '' ? `${label === 'body field' ? 'body' : label}: ${message}` : `${label} ${field}: ${message}`, field === '' ? undefined : field);
}
