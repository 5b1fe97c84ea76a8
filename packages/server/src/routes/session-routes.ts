/**
 * Sessions (list, one, timeline, bundle) and a principal's activity.
 * @internal
 */
import { CustodyError } from '@custody/core';
import { disclosuresColumn, type Ledger, type SessionFilter, StoreError } from '@custody/ledger';

import { ROLES, callerOf } from '../auth.js';
import { correlatedExternal } from '../otlp/correlated.js';
import { AUTHED, type RouteContext, access, errorResponses, rolesLine, utc } from '../route-kit.js';
import { ENTRY_FILTERS, PAGING, SESSION_FILTERS, SESSION_ID, ref } from '../schemas.js';
import { type EntryQuery, entryQueryOf, pageSchema } from './event-routes.js';

/** The query string of a session listing: the SessionFilter fields, and paging. */
type SessionQuery = SessionFilter & { limit?: number; cursor?: string; order?: 'asc' | 'desc' };

const { principal: _principal, ...PRINCIPAL_FILTERS } = ENTRY_FILTERS;

/** Rows read per statement, and at most, while looking for a session's unreadable entry. */
const SCAN_CHUNK = 512;
const SCAN_LIMIT = 100_000;

/**
 * The index of the first entry of the session whose stored disclosures column is not a
 * JSON list of strings, read unparsed (`auditEntries`, as `custody audit` reads it) over
 * the session's index range; undefined when there is none in the first SCAN_LIMIT rows.
 */
async function unreadableEntry(ledger: Ledger, tenant: string, session: string): Promise<number | undefined> {
  const row = await ledger.store.getSession(tenant, session);
  if (row === undefined) return undefined;
  const end = Math.min(row.lastIndex + 1, row.firstIndex + SCAN_LIMIT);
  for (let from = row.firstIndex; from < end; from += SCAN_CHUNK) {
    const bad = (await ledger.store.auditEntries(tenant, from, Math.min(from + SCAN_CHUNK, end))).find((e) => e.sessionId === session && disclosuresColumn(e.disclosures) === undefined);
    if (bad !== undefined) return bad.index;
  }
  return undefined;
}

/**
 * Reads a session's entries with `read`. When that fails because a stored entry of the
 * session cannot be read back (its disclosures column is not a JSON list of strings: the
 * store's STORE_CORRUPT, which names the tenant and index but not the session; a TypeError
 * from a store that hands such a column on), the failure becomes a StoreError STORE_CORRUPT naming the
 * session and the entry's index. The server answers it as every STORE_CORRUPT (500
 * INTERNAL, docs/errors.md) and logs it with that message. Other failures pass unchanged.
 * @internal
 */
export async function readingSession<T>(ledger: Ledger, tenant: string, session: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    const corrupt = err instanceof StoreError ? err.code === 'STORE_CORRUPT' : !(err instanceof CustodyError);
    if (!corrupt) throw err;
    const index = await unreadableEntry(ledger, tenant, session).catch(() => undefined);
    if (index === undefined) throw err;
    throw new StoreError(
      'STORE_CORRUPT',
      `session ${session}: the stored disclosures column of entry ${index} is not a JSON list of strings; the entry cannot be read back (custody audit reports it as ENTRY_UNREADABLE)`,
      { cause: err },
    );
  }
}

/** Registers the session and principal routes. */
export function sessionRoutes(ctx: RouteContext): void {
  const { app, ledger } = ctx;
  const read = access(ctx, ROLES.read);
  const hook = read.onRequest ? { onRequest: read.onRequest } : {};
  const sessionParams = { type: 'object', required: ['id'], properties: { id: SESSION_ID } } as const;

  app.get<{ Querystring: SessionQuery }>(
    '/v1/sessions',
    {
      ...hook,
      schema: {
        tags: ['sessions'],
        summary: 'List sessions',
        description: `The tenant's sessions; every given filter must hold. Paged like GET /v1/events. ${rolesLine(ROLES.read)}`,
        security: read.security,
        querystring: { type: 'object', additionalProperties: false, properties: { ...SESSION_FILTERS, ...PAGING } },
        response: { 200: pageSchema('sessions', ref('Session')), ...errorResponses(AUTHED) },
      },
    },
    async (request) => {
      const q = request.query;
      const filter: SessionFilter = {};
      if (q.initiator !== undefined) filter.initiator = q.initiator;
      if (q.agent !== undefined) filter.agent = q.agent;
      if (q.objective !== undefined) filter.objective = q.objective;
      if (q.sealed !== undefined) filter.sealed = q.sealed;
      const since = utc(q.since);
      const until = utc(q.until);
      if (since !== undefined) filter.since = since;
      if (until !== undefined) filter.until = until;
      const page = { limit: q.limit ?? 100, order: q.order ?? 'desc', ...(q.cursor !== undefined ? { cursor: q.cursor } : {}) } as const;
      const res = await ledger.listSessions(callerOf(request).tenant, filter, page);
      return { sessions: res.items, ...(res.nextCursor !== undefined ? { nextCursor: res.nextCursor } : {}) };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/sessions/:id',
    {
      ...hook,
      schema: {
        tags: ['sessions'],
        summary: 'One session',
        description: `A session's state: its last seq and head digest, whether it is sealed, its initiator, agent and objective. ${rolesLine(ROLES.read)}`,
        security: read.security,
        params: sessionParams,
        response: { 200: ref('Session'), ...errorResponses([...AUTHED, 404]) },
      },
    },
    async (request) => ledger.session(callerOf(request).tenant, request.params.id),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/sessions/:id/timeline',
    {
      ...hook,
      schema: {
        tags: ['sessions'],
        summary: 'Session timeline',
        description: `The session, its events in seq order, their causal tree (by cause) and, under external, imported external.* entries (lower assurance) that share a trace id with them. ${rolesLine(ROLES.read)}`,
        security: read.security,
        params: sessionParams,
        response: {
          200: {
            type: 'object',
            required: ['session', 'events', 'tree'],
            additionalProperties: false,
            properties: {
              session: ref('Session'),
              events: { type: 'array', items: ref('EventView') },
              tree: { type: 'array', items: ref('CauseNode') },
              external: { type: 'array', items: ref('EventView'), description: "Imported external.* entries (e.g. OpenTelemetry spans, lower assurance) that share a trace id with the session's events, in log order; not part of the session's chain." },
            },
          },
          ...errorResponses([...AUTHED, 404]),
        },
      },
    },
    async (request) => {
      const tenant = callerOf(request).tenant;
      const timeline = await readingSession(ledger, tenant, request.params.id, () => ledger.timeline(tenant, request.params.id));
      const external = await correlatedExternal(ledger, tenant, timeline.events);
      return external.length > 0 ? { ...timeline, external } : timeline;
    },
  );

  app.get<{ Params: { id: string }; Querystring: { disclosures?: boolean } }>(
    '/v1/sessions/:id/bundle',
    {
      ...hook,
      schema: {
        tags: ['sessions'],
        summary: 'Evidence bundle',
        description:
          "The session's custody.bundle/v1 evidence bundle: every entry with its receipt against the latest checkpoint, the disclosures, the checkpoint and the verifier key. " +
          `Verify it offline (custody verify --key). disclosures=false exports it redacted: every proof stays valid. ${rolesLine(ROLES.read)}`,
        security: read.security,
        params: sessionParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { disclosures: { type: 'boolean', default: true, description: 'false: leave out every disclosure (a redacted export).' } },
        },
        response: { 200: ref('Bundle'), ...errorResponses([...AUTHED, 404]) },
      },
    },
    async (request, reply) => {
      const tenant = callerOf(request).tenant;
      const bundle = await readingSession(ledger, tenant, request.params.id, () => ledger.bundle(tenant, request.params.id, { disclosures: request.query.disclosures !== false }));
      return reply.header('content-disposition', `attachment; filename="${request.params.id}.bundle.json"`).send(bundle);
    },
  );

  app.get<{ Params: { id: string }; Querystring: Omit<EntryQuery, 'principal'> }>(
    '/v1/principals/:id/events',
    {
      ...hook,
      schema: {
        tags: ['principals'],
        summary: "A principal's activity",
        description: `Entries in which the principal appears in any role (initiator, actor, delegation link, approver, workload), filtered and paged like GET /v1/events. ${rolesLine(ROLES.read)}`,
        security: read.security,
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 2048, description: 'Principal id (for workloads: SPIFFE ID or <issuer>|<subject>).' } } },
        querystring: { type: 'object', additionalProperties: false, properties: { ...PRINCIPAL_FILTERS, ...PAGING } },
        response: { 200: pageSchema('events', ref('EventView')), ...errorResponses(AUTHED) },
      },
    },
    async (request) => {
      const { filter, page } = entryQueryOf({ ...request.query, principal: request.params.id });
      const res = await ledger.query(callerOf(request).tenant, filter, page);
      return { events: res.items, ...(res.nextCursor !== undefined ? { nextCursor: res.nextCursor } : {}) };
    },
  );
}
