/**
 * `createServer`: Custody's HTTP API (Fastify 5) over a Ledger, versioned under
 * `/v1`, with one error handler and an OpenAPI 3.1 document generated from the
 * very route schemas the server validates with.
 */
import swagger from '@fastify/swagger';
import type { Authority } from '@custody/authority';
import type { PreparedEvent } from '@custody/core';
import type { Ledger } from '@custody/ledger';
import type { PolicyEngine } from '@custody/policy';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';

import type { Approvals } from './approvals/approvals.js';
import { ApiError, clientErrorHandler, errorResponse } from './errors.js';
import { type ImportMapping, mappingsBySource } from './import/mapping.js';
import { preparedBodyOf } from './ingest.js';
import { defaultPrepareWorkers, PreparePool } from './prepare-pool.js';
import type { PrepareTask } from './prepare-protocol.js';
import { BEARER, decodeBody, type RouteContext } from './route-kit.js';
import { approvalRoutes } from './routes/approval-routes.js';
import { authorityRoutes } from './routes/authority-routes.js';
import { CONSOLE_HEADERS, consoleRoutes, wantsConsole } from './routes/console-routes.js';
import { decisionRoutes } from './routes/decision-routes.js';
import { eventRoutes } from './routes/event-routes.js';
import { importRoutes } from './routes/import-routes.js';
import { keyRoutes } from './routes/key-routes.js';
import { logRoutes } from './routes/log-routes.js';
import { metaRoutes } from './routes/meta-routes.js';
import { oauthRoutes } from './routes/oauth-routes.js';
import { otlpRoutes } from './routes/otlp-routes.js';
import { recordsRoutes } from './routes/records-routes.js';
import { reportRoutes } from './routes/report-routes.js';
import { sessionRoutes } from './routes/session-routes.js';
import { streamRoutes } from './routes/stream-routes.js';
import { SHARED_SCHEMAS } from './schemas.js';

/** Settings for `createServer`. */
export interface ServerOptions {
  ledger: Ledger;
  /** The identity authority: token exchange, introspection, JWKS and session revoke/close routes. Default none. */
  authority?: Authority;
  /** Largest request body in bytes (413 BODY_TOO_LARGE above it). Default 5 MiB. */
  bodyLimit?: number;
  /** Most events in one POST /v1/events (413 BATCH_TOO_LARGE above it). Default 1,000. */
  maxBatch?: number;
  /**
   * Most write requests (POST /v1/events, /v1/traces, /v1/import/:source) in progress at
   * once; above it a write is refused at once with 503 SERVER_BUSY and `Retry-After`,
   * before its body is read, instead of queueing until the client times out. Default 256.
   */
  maxInflightWrites?: number;
  /** Fastify's logger (pino, JSON lines). Default off. */
  logger?: boolean;
  /**
   * Told of every error answered 500 (an internal error, or STORE_CORRUPT), with the
   * request's method and URL. Default: with `logger` on, the logger; otherwise one line
   * on stderr, so that "the server logged the cause" holds either way.
   */
  onInternalError?: (err: unknown, request: { method: string; url: string }) => void;
  /** Approvals (GET/POST /v1/approvals); with an authority, also POST /v1/decisions. The caller closes it. Default none. */
  approvals?: Approvals;
  /** The policy set POST /v1/decisions decides with when the caller brings no decision. Default none. */
  policy?: PolicyEngine;
  /** Mappings of POST /v1/import/:source, one per source (`loadMappingFile`). Default none. */
  importMappings?: readonly ImportMapping[];
  /** The built web console's folder (packages/console/dist), served at `/` to browsers. Default none. */
  consoleDir?: string;
  /**
   * Preparation workers: worker threads that parse and prepare large POST /v1/events
   * bodies (docs/scaling.md). 0 prepares every body on the request thread. Default one
   * per core beyond the first, at most 4 (none on one core).
   */
  prepareWorkers?: number;
}

/** Bodies at least this long are prepared in a worker (when the server runs any); smaller ones are not worth the hop. */
const WORKER_BODY_BYTES = 32 * 1024;

/** One registered route, as the OpenAPI coverage test sees it. @internal */
export interface RouteInfo {
  method: string;
  url: string;
}

/** Default largest body: 5 MiB. */
export const DEFAULT_BODY_LIMIT = 5 * 1024 * 1024;
/** Default most events per request. */
export const DEFAULT_MAX_BATCH = 1_000;
/** Default most write requests in progress at once. */
export const DEFAULT_MAX_INFLIGHT_WRITES = 256;
/** The routes that end in a ledger append: the ones counted against maxInflightWrites. */
const WRITE_ROUTES = new Set(['POST /v1/events', 'POST /v1/traces', 'POST /v1/import/:source']);

/** Longest path parameter (Fastify's default is 100; principal ids may be longer). */
const MAX_PARAM_LENGTH = 4096;

const routeTables = new WeakMap<FastifyInstance, RouteInfo[]>();

/**
 * Every route registered on a server made by createServer (HEAD routes are not exposed).
 * @internal
 */
export function routesOf(app: FastifyInstance): readonly RouteInfo[] {
  return routeTables.get(app) ?? [];
}

/**
 * Creates the HTTP API over `ledger`. The caller listens (or `inject`s) and closes
 * it; closing the server does not close the ledger.
 * @example
 * const app = await createServer({ ledger });
 * await app.listen({ port: 8470, host: '127.0.0.1' });
 */
export async function createServer(opts: ServerOptions): Promise<FastifyInstance> {
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
  if (!Number.isSafeInteger(bodyLimit) || bodyLimit < 1) throw new RangeError('bodyLimit must be a positive integer');
  if (!Number.isSafeInteger(maxBatch) || maxBatch < 1) throw new RangeError('maxBatch must be a positive integer');
  const maxInflightWrites = opts.maxInflightWrites ?? DEFAULT_MAX_INFLIGHT_WRITES;
  if (!Number.isSafeInteger(maxInflightWrites) || maxInflightWrites < 1) throw new RangeError('maxInflightWrites must be a positive integer');
  const prepareWorkers = opts.prepareWorkers ?? defaultPrepareWorkers();
  if (!Number.isSafeInteger(prepareWorkers) || prepareWorkers < 0) throw new RangeError('prepareWorkers must be a non-negative integer');
  const ledger = opts.ledger;
  const prepareInline = (task: Omit<PrepareTask, 'id'>): PreparedEvent[] =>
    preparedBodyOf(task.body, { ...task, now: new Date(task.now), prepare: (draft) => ledger.prepare(task.tenant, draft) });
  // With a custom random source (tests), salts must come from it: no workers.
  const pool = prepareWorkers > 0 && ledger.preparation.portable ? new PreparePool({ size: prepareWorkers, sensitivePaths: ledger.preparation.sensitivePaths, inline: prepareInline }) : undefined;
  const prepareBody = async (task: Omit<PrepareTask, 'id'>): Promise<PreparedEvent[]> =>
    pool !== undefined && task.body.length >= WORKER_BODY_BYTES ? pool.prepare(task) : prepareInline(task);

  const onInternalError =
    opts.onInternalError ??
    (opts.logger === true
      ? undefined
      : (err: unknown, request: { method: string; url: string }) =>
          process.stderr.write(`custody: internal error answering ${request.method} ${request.url.slice(0, 200)}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`));
  const sendError = (err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const r = errorResponse(err, bodyLimit);
    if (r.internal) {
      request.log.error({ err }, 'internal error');
      onInternalError?.(err, { method: request.method, url: request.url });
    }
    else if (r.status >= 500) request.log.warn({ err }, r.body.error.message);
    return reply.code(r.status).headers(r.headers).send(r.body);
  };

  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit,
    // Session ids are up to 128 characters, principal ids up to 2048 (Fastify's default is 100).
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    exposeHeadRoutes: false,
    // Closing is answered by our own hook, in our error shape.
    return503OnClosing: false,
    // What Node's HTTP parser refuses (e.g. headers over 16 KiB: 431) is answered in our error shape too.
    clientErrorHandler,
    ajv: {
      // Reject unknown query parameters and body fields instead of silently dropping them.
      customOptions: { removeAdditional: false, allowUnionTypes: true, coerceTypes: 'array', useDefaults: true },
    },
    // A URL that does not decode, or a path parameter over maxParamLength.
    frameworkErrors: (err: FastifyError, request, reply) => {
      const message =
        err.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? `a path parameter is longer than ${MAX_PARAM_LENGTH} characters`
          : err.code === 'FST_ERR_BAD_URL'
            ? 'the URL is not validly percent-encoded'
            : err.message;
      void sendError(new ApiError('REQUEST_INVALID', 400, message, { cause: err }), request, reply);
    },
  });
  routeTables.set(app, []);

  app.setErrorHandler((err: unknown, request, reply) => sendError(err, request, reply));
  // The console, when given: its assets, and its page for browser navigations outside the API.
  const consoleHtml = opts.consoleDir !== undefined ? await consoleRoutes(app, opts.consoleDir) : undefined;
  app.setNotFoundHandler((request, reply) => {
    if (consoleHtml !== undefined && wantsConsole(request)) return reply.code(200).headers(CONSOLE_HEADERS).type('text/html; charset=utf-8').send(consoleHtml);
    return reply.code(404).send({ error: { code: 'NOT_FOUND', message: `no route ${request.method} ${request.url.slice(0, 200)}; see /v1/openapi.json` } });
  });
  // Responses are plain JSON.stringify: route schemas document them (and a test checks
  // every response against the OpenAPI document), but never silently drop a field.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  // Bodies: JSON (Fastify's parser, which refuses __proto__ keys) and NDJSON for events; nothing else (415).
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('application/x-ndjson', { parseAs: 'string' }, (_request, body, done) => done(null, body));

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Custody API',
        version: '1',
        description:
          'The accountability ledger for AI agents: append events, query them by identity, and fetch signed checkpoints, receipts, consistency proofs and evidence bundles that verify offline. ' +
          'Every route but /, /v1/health and /v1/openapi.json needs an API key (Authorization: Bearer <key>); each key belongs to one tenant and one role. ' +
          'Errors are { "error": { "code", "message", "field"? } }.',
      },
      components: {
        securitySchemes: { [BEARER]: { type: 'http', scheme: 'bearer', description: 'An API key, cust_<id>_<secret>, bound to one tenant and one role (ingest, read, approve, admin).' } },
      },
      security: [{ [BEARER]: [] }],
      tags: [
        { name: 'events', description: 'Append and query events.' },
        { name: 'sessions', description: 'Sessions, timelines and evidence bundles.' },
        { name: 'principals', description: "A principal's activity." },
        { name: 'reports', description: 'Compliance and investigation reports over the whole log; every row links to its session.' },
        { name: 'log', description: 'Checkpoints, the verifier key, receipts and consistency proofs.' },
        { name: 'keys', description: 'API keys (admin).' },
        { name: 'authority', description: 'Sessions by token exchange, delegation, introspection, revocation (docs/authority.md).' },
        { name: 'records', description: 'Records management: redaction, erasure, retention, legal hold, purge, keyed-digest search, export.' },
        { name: 'streams', description: 'Log streams to a webhook, Splunk HEC or syslog (admin).' },
        { name: 'decisions', description: 'The decision point for enforcement points (gateway, SDK): verify, decide, record (docs/api.md, "Decisions").' },
        { name: 'approvals', description: 'Human approvals bound to one exact call (docs/api.md, "Approvals").' },
        { name: 'meta', description: 'Health, root and this document.' },
      ],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`) },
  });
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) routeTables.get(app)?.push({ method, url: route.url });
  });

  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  if (pool !== undefined) app.addHook('onClose', async () => pool.close());
  // Writes in progress. Past the limit, the server is at capacity: more would only
  // queue (their latency growing until clients time out with nothing said), so a
  // write is refused before its body is read. The response's 'close' fires once,
  // however the request ends (answered, failed or abandoned), so the count never leaks.
  let writes = 0;
  app.addHook('onRequest', async (request, reply) => {
    if (closing) throw new ApiError('SERVER_CLOSING', 503, 'the server is shutting down: retry on another node or in a moment', { headers: { 'retry-after': '1', connection: 'close' } });
    if (!WRITE_ROUTES.has(`${request.method} ${request.routeOptions.url ?? ''}`)) return;
    if (writes >= maxInflightWrites) {
      throw new ApiError('SERVER_BUSY', 503, `the server is handling ${writes} writes at once, its limit: nothing of this request was recorded; retry after Retry-After`, { headers: { 'retry-after': '1' } });
    }
    writes++;
    reply.raw.once('close', () => writes--);
  });

  // Ajv (coerceTypes) takes a query's 1e400 or Infinity as an integer within any bounds, and
  // JSON.parse reads a body's 1e400 as Infinity: no route can do anything with such a
  // number, so every request is refused that holds one, as a validation error names it.
  app.addHook('preHandler', async (request) => {
    const found = nonFiniteField(request.params, 'path parameter') ?? nonFiniteField(request.query, 'query parameter') ?? nonFiniteField(request.body, 'body field');
    if (found !== undefined) throw new ApiError('REQUEST_INVALID', 400, `${found.label} ${found.field}: must be a finite number`, { field: found.field });
  });

  // Body encodings: gzip inflated on the routes that take it, 415 elsewhere (route-kit.ts).
  app.addHook('preParsing', async (request, _reply, payload) => decodeBody(request, payload));

  const ctx: RouteContext = { app, ledger: opts.ledger, maxBatch, bodyLimit, prepareBody };
  metaRoutes(ctx, consoleHtml);
  eventRoutes(ctx);
  sessionRoutes(ctx);
  reportRoutes(ctx);
  logRoutes(ctx);
  recordsRoutes(ctx);
  streamRoutes(ctx);
  keyRoutes(ctx);
  otlpRoutes(ctx);
  importRoutes(ctx, mappingsBySource(opts.importMappings ?? []));
  if (opts.authority !== undefined) {
    await oauthRoutes(ctx, opts.authority);
    authorityRoutes(ctx, opts.authority);
  }
  if (opts.approvals !== undefined) {
    approvalRoutes(ctx, opts.approvals, opts.authority);
    if (opts.authority !== undefined) decisionRoutes(ctx, opts.authority, opts.approvals, opts.policy);
  }
  return app;
}

/**
 * A number in a parsed request part that is not finite, with its field as validation
 * errors name it (`a.b[2]`), or undefined. Iterative, so a deeply nested body cannot
 * overflow the stack; strings (such as the raw body of POST /v1/events, which its own
 * parser checks) and bytes (a protobuf body) are not looked into. Field names are
 * built only for a part that holds such a number, so a large JSON body (an OTLP
 * export) is walked once, allocating nothing per value.
 */
function nonFiniteField(value: unknown, label: string): { label: string; field: string } | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : { label: label === 'body field' ? 'body' : label, field: '(the body)' };
  if (!holdsNonFinite(value)) return undefined;
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'number' && !Number.isFinite(v)) return { label, field: path };
    for (const [k, x] of children(v)) stack.push([x, typeof k === 'number' ? `${path}[${k}]` : path === '' ? k : `${path}.${k}`]);
  }
  return undefined;
}

/** True when a non-finite number stands anywhere in `value`. */
function holdsNonFinite(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'number' && !Number.isFinite(v)) return true;
    if (v !== null && typeof v === 'object' && !ArrayBuffer.isView(v)) for (const x of Object.values(v)) stack.push(x);
  }
  return false;
}

/** The members of an array (by position) or of a plain object (by key); none for anything else. */
function children(v: unknown): [string | number, unknown][] {
  if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) return [];
  return Array.isArray(v) ? v.map((x, i): [number, unknown] => [i, x]) : Object.entries(v);
}
