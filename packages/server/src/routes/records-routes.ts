/**
 * Records management (@custody/records): redaction after sealing, erasure for a
 * data subject, retention rules, legal holds, purge runs and keyed-digest search.
 * Every admin act is first recorded as an `admin.*` entry whose actor is the
 * calling key (`key:<id>`). See docs/records.md.
 * @internal
 */
import { type HoldTarget, Records } from '@custody/records';

import { ROLES, callerOf } from '../auth.js';
import { AUTHED, type RouteContext, access, errorResponses, rolesLine } from '../route-kit.js';
import { PAGING, ref } from '../schemas.js';

const POINTER = { type: 'string', minLength: 1, maxLength: 1024, description: 'RFC 6901 JSON Pointer under /data, e.g. /data/arguments.' } as const;
const REASON = { type: 'string', minLength: 1, maxLength: 1024, description: 'Why (recorded in the admin entry; name no sensitive value here).' } as const;
const TIME = { type: 'string', format: 'date-time' } as const;
const strings = { type: 'array', items: { type: 'string' } } as const;

const RULE = {
  type: 'object',
  required: ['type', 'field', 'days', 'updatedAt'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', description: 'Event type, family (tool.*) or *.' },
    field: { type: 'string', description: "JSON Pointer of a committed field, or '' for every committed field." },
    days: { type: 'integer', minimum: 0 },
    updatedAt: TIME,
  },
} as const;

const HOLD = {
  type: 'object',
  required: ['id', 'kind', 'reason', 'createdAt', 'createdBy'],
  additionalProperties: false,
  properties: {
    id: { type: 'string' },
    kind: { type: 'string', enum: ['session', 'principal', 'range'] },
    target: { type: 'string', description: 'The session id or principal id.' },
    since: TIME,
    until: TIME,
    reason: { type: 'string' },
    createdAt: TIME,
    createdBy: { type: 'string' },
    liftedAt: TIME,
    liftedBy: { type: 'string' },
  },
} as const;

const REDACT_RESULT = {
  type: 'object',
  required: ['event', 'index', 'redacted', 'alreadyRedacted'],
  additionalProperties: false,
  properties: {
    event: { type: 'string' },
    index: { type: 'integer', minimum: 0 },
    redacted: { ...strings, description: 'Fields whose disclosure this call dropped.' },
    alreadyRedacted: { ...strings, description: 'Named fields that were already redacted.' },
    entry: { type: 'string', description: 'Id of the admin.redacted entry (absent when nothing was dropped).' },
  },
} as const;

const ERASURE_RESULT = {
  type: 'object',
  required: ['subject', 'scanned', 'events', 'fields'],
  additionalProperties: false,
  properties: {
    subject: { type: 'string' },
    scanned: { type: 'integer', minimum: 0 },
    events: { type: 'integer', minimum: 0 },
    fields: { type: 'integer', minimum: 0 },
    nextCursor: { type: 'string', description: 'Present when more events follow: send it back to continue.' },
  },
} as const;

const PURGE_RESULT = {
  type: 'object',
  required: ['run', 'dryRun', 'scanned', 'events', 'fields', 'held', 'holds', 'entries'],
  additionalProperties: false,
  properties: {
    run: { type: 'string' },
    dryRun: { type: 'boolean' },
    scanned: { type: 'integer', minimum: 0 },
    events: { type: 'integer', minimum: 0 },
    fields: { type: 'integer', minimum: 0 },
    held: { type: 'integer', minimum: 0, description: 'Entries with expired fields kept by a legal hold.' },
    holds: { ...strings, description: 'Ids of the holds that kept something.' },
    entries: { ...strings, description: 'Ids of the admin.purged entries recorded.' },
  },
} as const;

const WRITE = [...AUTHED, 413, 415] as const;

/** Registers the records routes; `records` defaults to one over the context's ledger. */
export function recordsRoutes(ctx: RouteContext, records = new Records(ctx.ledger)): void {
  const { app } = ctx;
  const admin = access(ctx, ROLES.admin);
  const read = access(ctx, ROLES.read);
  const adminHook = admin.onRequest ? { onRequest: admin.onRequest } : {};
  const readHook = read.onRequest ? { onRequest: read.onRequest } : {};
  const by = (id: string) => `key:${id}`;

  app.post<{ Params: { id: string }; Body: { fields: string[]; reason: string } }>(
    '/v1/events/:id/redact',
    {
      ...adminHook,
      schema: {
        tags: ['records'],
        summary: 'Redact fields of an event',
        description:
          'Drops the disclosures of committed fields of one event, after sealing too. First appends admin.redacted (naming the event and the fields, never their values). ' +
          'The entry bytes and every proof stay as they were; bundles made before and after both verify, the later one reports the fields as redacted. ' +
          `Fields already redacted are reported in alreadyRedacted. A field in clear (not a commitment) cannot be redacted: 400 FIELD_NOT_COMMITTED. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 128, description: 'Event id.' } } },
        body: {
          type: 'object',
          required: ['fields', 'reason'],
          additionalProperties: false,
          properties: { fields: { type: 'array', minItems: 1, maxItems: 64, items: POINTER }, reason: REASON },
        },
        response: { 200: REDACT_RESULT, ...errorResponses([...WRITE, 404]) },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      return records.redact(caller.tenant, { event: request.params.id, fields: request.body.fields, reason: request.body.reason, by: by(caller.id) });
    },
  );

  app.post<{ Body: { subject: string; reason: string; cursor?: string; limit?: number } }>(
    '/v1/records/erasures',
    {
      ...adminHook,
      schema: {
        tags: ['records'],
        summary: 'Erase a data subject (one page)',
        description:
          'Redacts every committed field of every event whose initiator is `subject`, oldest first, one page of events per call; one admin.redacted entry per event, with erasure.subject. ' +
          `Call again with nextCursor until it is absent. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        body: {
          type: 'object',
          required: ['subject', 'reason'],
          additionalProperties: false,
          properties: {
            subject: { type: 'string', minLength: 1, maxLength: 2048, description: 'Principal id of the data subject (the initiator).' },
            reason: REASON,
            cursor: PAGING.cursor,
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 200, description: 'Events examined in this call.' },
          },
        },
        response: { 200: ERASURE_RESULT, ...errorResponses(WRITE) },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const b = request.body;
      return records.erase(caller.tenant, { subject: b.subject, reason: b.reason, by: by(caller.id), ...(b.cursor !== undefined ? { cursor: b.cursor } : {}), ...(b.limit !== undefined ? { limit: b.limit } : {}) });
    },
  );

  app.get(
    '/v1/records/retention',
    {
      ...readHook,
      schema: {
        tags: ['records'],
        summary: 'List retention rules',
        description: `The tenant's retention rules. ${rolesLine(ROLES.read)}`,
        security: read.security,
        response: { 200: { type: 'object', required: ['rules'], additionalProperties: false, properties: { rules: { type: 'array', items: RULE } } }, ...errorResponses(AUTHED) },
      },
    },
    async (request) => ({ rules: await records.retention(callerOf(request).tenant) }),
  );

  app.put<{ Body: { type: string; field?: string; days: number } }>(
    '/v1/records/retention',
    {
      ...adminHook,
      schema: {
        tags: ['records'],
        summary: 'Set a retention rule',
        description:
          'Keeps the committed fields of events of `type` (and only `field`, if named) for `days` days after recordedAt; a purge drops them afterwards. ' +
          'The most specific type wins, then the most specific field. Appends admin.retention_set first. ' +
          rolesLine(ROLES.admin),
        security: admin.security,
        body: {
          type: 'object',
          required: ['type', 'days'],
          additionalProperties: false,
          properties: {
            type: { type: 'string', minLength: 1, maxLength: 256, description: 'Event type, family (tool.*) or *.' },
            field: { type: 'string', maxLength: 1024, description: "JSON Pointer of a committed field; '' or absent for every committed field." },
            days: { type: 'integer', minimum: 0, maximum: 36500 },
          },
        },
        response: { 200: RULE, ...errorResponses(WRITE) },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const b = request.body;
      return records.setRetention(caller.tenant, { type: b.type, days: b.days, by: by(caller.id), ...(b.field !== undefined ? { field: b.field } : {}) });
    },
  );

  app.delete<{ Querystring: { type: string; field?: string } }>(
    '/v1/records/retention',
    {
      ...adminHook,
      schema: {
        tags: ['records'],
        summary: 'Delete a retention rule',
        description: `Removes the rule for type (and field); appends admin.retention_deleted first. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        querystring: {
          type: 'object',
          required: ['type'],
          additionalProperties: false,
          properties: { type: { type: 'string', minLength: 1, maxLength: 256 }, field: { type: 'string', maxLength: 1024 } },
        },
        response: { 204: { description: 'Deleted.', type: 'null' }, ...errorResponses([...AUTHED, 404]) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const q = request.query;
      await records.deleteRetention(caller.tenant, { type: q.type, by: by(caller.id), ...(q.field !== undefined ? { field: q.field } : {}) });
      return reply.code(204).send();
    },
  );

  app.get(
    '/v1/records/holds',
    {
      ...readHook,
      schema: {
        tags: ['records'],
        summary: 'List legal holds',
        description: `Every legal hold of the tenant, lifted ones included. ${rolesLine(ROLES.read)}`,
        security: read.security,
        response: { 200: { type: 'object', required: ['holds'], additionalProperties: false, properties: { holds: { type: 'array', items: HOLD } } }, ...errorResponses(AUTHED) },
      },
    },
    async (request) => ({ holds: await records.holds(callerOf(request).tenant) }),
  );

  app.post<{ Body: { kind: HoldTarget['kind']; session?: string; principal?: string; since?: string; until?: string; reason: string } }>(
    '/v1/records/holds',
    {
      ...adminHook,
      schema: {
        tags: ['records'],
        summary: 'Place a legal hold',
        description:
          'Blocks purging of every entry of a session, of a principal (in any role), or recorded in [since, until), until lifted. Appends admin.hold_placed first. ' +
          rolesLine(ROLES.admin),
        security: admin.security,
        body: {
          type: 'object',
          required: ['kind', 'reason'],
          additionalProperties: false,
          properties: {
            kind: { type: 'string', enum: ['session', 'principal', 'range'] },
            session: { type: 'string', minLength: 1, maxLength: 512 },
            principal: { type: 'string', minLength: 1, maxLength: 512 },
            since: { type: 'string', maxLength: 64 },
            until: { type: 'string', maxLength: 64 },
            reason: REASON,
          },
        },
        response: { 201: HOLD, ...errorResponses(WRITE) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const b = request.body;
      const hold = await records.placeHold(caller.tenant, { ...(b as unknown as HoldTarget), reason: b.reason, by: by(caller.id) });
      return reply.code(201).send(hold);
    },
  );

  app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>(
    '/v1/records/holds/:id/lift',
    {
      ...adminHook,
      schema: {
        tags: ['records'],
        summary: 'Lift a legal hold',
        description: `Lifts a hold in force; appends admin.hold_lifted first. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 128, description: 'Hold id.' } } },
        body: { type: 'object', additionalProperties: false, properties: { reason: REASON } },
        response: { 200: HOLD, ...errorResponses([...WRITE, 404]) },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const reason = request.body?.reason;
      return records.liftHold(caller.tenant, { id: request.params.id, by: by(caller.id), ...(reason !== undefined ? { reason } : {}) });
    },
  );

  app.post<{ Body: { dryRun?: boolean } | undefined }>(
    '/v1/records/purge',
    {
      ...adminHook,
      schema: {
        tags: ['records'],
        summary: 'Run a purge',
        description:
          'Drops every disclosure past its retention rule, except in entries a legal hold covers, and their keyed digests; entries, tree nodes and checkpoints stay, so every proof still verifies. ' +
          `Records admin.purged entries naming each event and field first. dryRun: count only, record nothing. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        body: { type: 'object', additionalProperties: false, properties: { dryRun: { type: 'boolean', default: false } } },
        response: { 200: PURGE_RESULT, ...errorResponses(WRITE) },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      return records.purge(caller.tenant, { by: by(caller.id), dryRun: request.body?.dryRun === true });
    },
  );

  app.get(
    '/v1/records/digest-paths',
    {
      ...readHook,
      schema: {
        tags: ['records'],
        summary: 'List keyed-digest paths',
        description: `The JSON Pointers whose values the tenant indexes as keyed digests. ${rolesLine(ROLES.read)}`,
        security: read.security,
        response: { 200: { type: 'object', required: ['paths'], additionalProperties: false, properties: { paths: strings } }, ...errorResponses(AUTHED) },
      },
    },
    async (request) => ({ paths: await records.digestPaths(callerOf(request).tenant) }),
  );

  app.put<{ Body: { paths: string[] } }>(
    '/v1/records/digest-paths',
    {
      ...adminHook,
      schema: {
        tags: ['records'],
        summary: 'Set keyed-digest paths',
        description:
          'Replaces the JSON Pointers whose values are indexed as HMAC-SHA-256 digests under a per-tenant key (never the values), and re-indexes the log. ' +
          `Appends admin.digest_paths_set first. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        body: { type: 'object', required: ['paths'], additionalProperties: false, properties: { paths: { type: 'array', maxItems: 32, items: POINTER } } },
        response: { 200: { type: 'object', required: ['paths'], additionalProperties: false, properties: { paths: strings } }, ...errorResponses(WRITE) },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      return { paths: await records.setDigestPaths(caller.tenant, { paths: request.body.paths, by: by(caller.id) }) };
    },
  );

  app.get<{ Querystring: { path: string; value: string; limit?: number; cursor?: string } }>(
    '/v1/records/find',
    {
      ...readHook,
      schema: {
        tags: ['records'],
        summary: 'Find events by a value',
        description:
          'Every event whose value at `path` (an indexed pointer) equals `value`, oldest first, found by keyed digest: the store does not hold the value. ' +
          `Text and JSON scalars match alike (42 finds "42"). Redacted and purged values are not found. ${rolesLine(ROLES.read)}`,
        security: read.security,
        querystring: {
          type: 'object',
          required: ['path', 'value'],
          additionalProperties: false,
          properties: { path: POINTER, value: { type: 'string', maxLength: 4096 }, limit: PAGING.limit, cursor: PAGING.cursor },
        },
        response: {
          200: {
            type: 'object',
            required: ['events'],
            additionalProperties: false,
            properties: { events: { type: 'array', items: ref('EventView') }, nextCursor: { type: 'string' } },
          },
          ...errorResponses(AUTHED),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const page = await records.findValue(callerOf(request).tenant, {
        path: q.path,
        value: q.value,
        ...(q.limit !== undefined ? { limit: q.limit } : {}),
        ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
      });
      return { events: page.items, ...(page.nextCursor !== undefined ? { nextCursor: page.nextCursor } : {}) };
    },
  );
}
