/**
 * POST /v1/events (append), GET /v1/events (identity query), GET /v1/events/:id.
 * @internal
 */
import { FormatError } from '@custody/core';
import { type AppendResult, type EntryFilter, LedgerError } from '@custody/ledger';
import type { FastifySchemaCompiler } from 'fastify';

import { ROLES, callerOf } from '../auth.js';
import { ApiError, AppendFailedError, type AppendRefusal, errorResponse } from '../errors.js';
import { AUTHED, type RouteContext, access, errorResponses, rolesLine, utc } from '../route-kit.js';
import { ENTRY_FILTERS, PAGING, ref } from '../schemas.js';

/** The query string of an identity query: the EntryFilter fields (`traceId` is `trace`), and paging. */
export type EntryQuery = Omit<EntryFilter, 'traceId'> & {
  trace?: string;
  limit?: number;
  cursor?: string;
  order?: 'asc' | 'desc';
};

/** One entry of `results`: where the event landed, or why it was refused. */
type ResultItem = AppendResult | AppendRefusal;

/** EntryFilter and page of a query string (`trace` is the filter's `traceId`). */
export function entryQueryOf(q: EntryQuery): { filter: EntryFilter; page: { limit: number; cursor?: string; order: 'asc' | 'desc' } } {
  const filter: EntryFilter = {};
  const keys = ['initiator', 'agent', 'workload', 'principal', 'approver', 'session', 'objective', 'tool', 'decision', 'type'] as const;
  for (const k of keys) if (q[k] !== undefined) filter[k] = q[k];
  if (q.trace !== undefined) filter.traceId = q.trace;
  const since = utc(q.since);
  const until = utc(q.until);
  if (since !== undefined) filter.since = since;
  if (until !== undefined) filter.until = until;
  return { filter, page: { limit: q.limit ?? 100, order: q.order ?? 'desc', ...(q.cursor !== undefined ? { cursor: q.cursor } : {}) } };
}

/**
 * The body "validator" of POST /v1/events: none. Both JSON and NDJSON bodies arrive
 * as their text, and the handler parses and checks them (preparedBodyOf), in a
 * preparation worker when the body is large: each event is checked by
 * @custody/core's envelope rules (a dry-run seal), which name the event and field.
 * Ajv is not used on events: with Fastify's settings it would coerce values in place
 * (123 → "123"), and evidence must be stored as sent.
 */
const eventsBodyCompiler: FastifySchemaCompiler<unknown> = () => (data: unknown) => {
  if (typeof data === 'string') return { value: data };
  return { error: new ApiError('REQUEST_INVALID', 400, 'the body must be an event object, an array of events, or NDJSON') };
};

const QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { ...ENTRY_FILTERS, ...PAGING },
} as const;

/** Registers the event routes. */
export function eventRoutes(ctx: RouteContext): void {
  const { app, ledger } = ctx;

  const append = access(ctx, ROLES.append);
  // In a scope of its own, so that only this route receives JSON as text: its body is
  // parsed by the handler, off the request thread when it is large (prepare-pool.ts).
  void app.register(async (scope) => {
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => done(null, body));
    scope.route({
      method: 'POST',
      url: '/v1/events',
      ...(append.onRequest ? { onRequest: append.onRequest } : {}),
      config: { gzip: 'REQUEST_INVALID' },
      validatorCompiler: eventsBodyCompiler,
      schema: {
        tags: ['events'],
        summary: 'Append events',
        description:
          'Appends one event (a JSON object), a batch (a JSON array) or NDJSON (application/x-ndjson, one event per line) to the tenant of the API key. ' +
          `Every event is validated before any is appended: one bad event (400 EVENT_INVALID, naming events[i] and the field) writes nothing. At most ${ctx.maxBatch} events and ${ctx.bodyLimit} bytes per request. ` +
          'The body may be gzipped (`Content-Encoding: gzip`); the byte limit then applies to the inflated body too, and other encodings are 415. ' +
          'The answer comes after the events are durable: `results` in request order. 201 when every event was new; 200 when some or all were duplicates ' +
          '(an id already in the log: its original result, `duplicate: true`, never a second entry); 207 when the sequencer refused some events ' +
          '(e.g. SESSION_SEALED, or closing a session that has no entries): those appear as `{ id, error }`, the others were appended. ' +
          'Only admin keys may append admin.* events (403 FORBIDDEN otherwise). ' +
          'On 503/507 nothing of the failed part was acknowledged; `results` then shows what was committed before the failure, and re-sending the request is safe when events carry ids. ' +
          rolesLine(ROLES.append),
        security: append.security,
        body: {
          content: {
            'application/json': { schema: { oneOf: [ref('EventInput'), { type: 'array', minItems: 1, items: ref('EventInput') }] } },
            'application/x-ndjson': { schema: { type: 'string', description: 'One EventInput as JSON per line.' } },
          },
        },
        response: {
          200: { description: 'Appended; some or all events were duplicates.', ...resultsSchema },
          201: { description: 'Appended; every event was new.', ...resultsSchema },
          207: { description: 'Some events were refused by the sequencer; each has `error` in results. The others were appended.', ...resultsSchema },
          ...errorResponses([400, 401, 403, 413, 415, 500], 'Error'),
          ...errorResponses([503, 507], 'AppendFailure'),
        },
      },
      handler: async (request, reply) => {
        const caller = callerOf(request);
        const tenant = caller.tenant;
        // No body at all (no Content-Type, so no parser and no validator ran).
        if (typeof request.body !== 'string') throw new ApiError('REQUEST_INVALID', 400, 'the body must be an event object, an array of events, or NDJSON');
        const events = await ctx.prepareBody({
          body: request.body,
          tenant,
          ndjson: request.mediaType === 'application/x-ndjson',
          admin: caller.role === 'admin',
          maxBatch: ctx.maxBatch,
          now: new Date().toISOString(),
        });
        const settled = await ledger.appendPrepared(tenant, events);
        const results: ResultItem[] = [];
        let fatal: unknown;
        let refused = false;
        settled.forEach((s, i) => {
          if (s.status === 'fulfilled') {
            results.push(s.value);
            return;
          }
          const err: unknown = s.reason;
          if (err instanceof LedgerError || err instanceof FormatError) {
            refused = true;
            const field = err.field === undefined ? `events[${i}]` : err.field.startsWith('events[') ? err.field : `events[${i}].${err.field}`;
            results.push({ id: events[i]!.id, error: { code: err.code, message: err.message, field } });
          } else {
            fatal ??= err;
            const { body } = errorResponse(err, ctx.bodyLimit);
            results.push({ id: events[i]!.id, error: { code: body.error.code, message: body.error.message } });
          }
        });
        // The store failed part of the request: answer its error, with what was committed before it.
        if (fatal !== undefined) throw new AppendFailedError(fatal, results.some((x) => !('error' in x)) ? results : undefined);
        const allNew = results.every((x) => 'duplicate' in x && !x.duplicate);
        return reply.code(refused ? 207 : allNew ? 201 : 200).send({ results });
      },
    });
  });

  const read = access(ctx, ROLES.read);
  app.get<{ Querystring: EntryQuery }>(
    '/v1/events',
    {
      ...(read.onRequest ? { onRequest: read.onRequest } : {}),
      schema: {
        tags: ['events'],
        summary: 'Query events',
        description: `Identity query over the tenant's entries; every given filter must hold. Newest first unless order=asc; pass nextCursor as cursor for the next page. ${rolesLine(ROLES.read)}`,
        security: read.security,
        querystring: QUERY,
        response: { 200: pageSchema('events', ref('EventView')), ...errorResponses(AUTHED) },
      },
    },
    async (request) => {
      const { filter, page } = entryQueryOf(request.query);
      const res = await ledger.query(callerOf(request).tenant, filter, page);
      return { events: res.items, ...(res.nextCursor !== undefined ? { nextCursor: res.nextCursor } : {}) };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/events/:id',
    {
      ...(read.onRequest ? { onRequest: read.onRequest } : {}),
      schema: {
        tags: ['events'],
        summary: 'One event',
        description: `One event by id, with its log index, digest and any redacted fields. ${rolesLine(ROLES.read)}`,
        security: read.security,
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 128, description: 'Event id.' } } },
        response: { 200: ref('EventView'), ...errorResponses([...AUTHED, 404]) },
      },
    },
    async (request) => ledger.event(callerOf(request).tenant, request.params.id),
  );
}

const resultsSchema = {
  type: 'object',
  required: ['results'],
  additionalProperties: false,
  properties: { results: { type: 'array', items: ref('AppendResult'), description: 'One per event, in request order.' } },
} as const;

/** A page of `items` under `name`, with `nextCursor` when more follow. */
export function pageSchema(name: string, items: object): object {
  return {
    description: 'A page; nextCursor is present when more items follow.',
    type: 'object',
    required: [name],
    additionalProperties: false,
    properties: { [name]: { type: 'array', items }, nextCursor: { type: 'string' } },
  };
}
