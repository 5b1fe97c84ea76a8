/**
 * Log stream routes (admin): add, list, show, remove and retry the tenant's
 * streams to a webhook (signed CloudEvents), Splunk HEC or syslog. Secrets are
 * accepted, never returned (a generated webhook secret is returned once, on
 * creation). Every change is an `admin.stream_*` entry. See docs/records.md,
 * "Streaming".
 * @internal
 */
import { STREAM_KINDS, type StreamInput, Streams } from '@custody/records';

import { ROLES, callerOf } from '../auth.js';
import { AUTHED, type RouteContext, access, errorResponses, rolesLine } from '../route-kit.js';

const TIME = { type: 'string', format: 'date-time' } as const;

const STREAM = {
  type: 'object',
  required: ['id', 'name', 'kind', 'status', 'cursor', 'failures', 'createdAt', 'updatedAt', 'target', 'batchSize', 'maxFailures', 'backoffMs', 'maxBackoffMs'],
  additionalProperties: false,
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    kind: { type: 'string', enum: [...STREAM_KINDS] },
    status: { type: 'string', enum: ['active', 'dead_letter'], description: 'dead_letter: stopped after maxFailures consecutive failures until retried.' },
    cursor: { type: 'integer', minimum: 0, description: 'Next entry index to deliver; every entry before it was acknowledged by the target.' },
    lag: { type: 'integer', minimum: 0, description: 'Entries appended but not yet acknowledged.' },
    failures: { type: 'integer', minimum: 0, description: 'Consecutive failed deliveries.' },
    lastError: { type: 'string' },
    lastErrorAt: TIME,
    lastDeliveredAt: TIME,
    createdAt: TIME,
    updatedAt: TIME,
    target: {
      type: 'object',
      additionalProperties: false,
      description: 'Where the stream sends, without secrets.',
      properties: {
        url: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'integer' },
        tls: { type: 'boolean' },
        index: { type: 'string' },
        sourcetype: { type: 'string' },
        facility: { type: 'integer' },
      },
    },
    secretFingerprint: { type: 'string', description: 'First 16 hex digits of the SHA-256 of the webhook secret or HEC token.' },
    batchSize: { type: 'integer' },
    maxFailures: { type: 'integer' },
    backoffMs: { type: 'integer' },
    maxBackoffMs: { type: 'integer' },
    entry: { type: 'string', description: 'Id of the admin entry this call recorded (retry).' },
  },
} as const;

const ADD = {
  type: 'object',
  required: ['name', 'kind'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 64, description: 'Unique per tenant: letters, digits, . _ -.' },
    kind: { type: 'string', enum: [...STREAM_KINDS] },
    url: { type: 'string', maxLength: 2048, description: 'webhook, splunk_hec: https URL (http only to a loopback host). A HEC base URL gets /services/collector/event.' },
    secret: { type: 'string', minLength: 16, maxLength: 512, description: 'webhook: HMAC-SHA-256 key; generated (and returned once) when absent. Never returned.' },
    token: { type: 'string', minLength: 1, maxLength: 512, description: 'splunk_hec: the HEC token (sent as Authorization: Splunk <token>). Never returned.' },
    index: { type: 'string', minLength: 1, maxLength: 256, description: 'splunk_hec: index.' },
    sourcetype: { type: 'string', minLength: 1, maxLength: 256, description: 'splunk_hec: sourcetype (default custody:entry).' },
    host: { type: 'string', minLength: 1, maxLength: 255, description: 'syslog: server.' },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'syslog: port (default 601, or 6514 with tls).' },
    tls: { type: 'boolean', description: 'syslog: TLS (RFC 5425).' },
    ca: { type: 'string', maxLength: 65536, description: 'syslog with tls: extra trusted CA certificates (PEM).' },
    facility: { type: 'integer', minimum: 0, maximum: 23, description: 'syslog: facility (default 13, log audit).' },
    batchSize: { type: 'integer', minimum: 1, maximum: 1000, description: 'Entries per delivery (default 100).' },
    maxFailures: { type: 'integer', minimum: 1, maximum: 100, description: 'Consecutive failures before dead letter (default 10).' },
    backoffMs: { type: 'integer', minimum: 10, maximum: 60000, description: 'First retry delay (default 1000), doubled per failure, with jitter.' },
    maxBackoffMs: { type: 'integer', minimum: 10, maximum: 3600000, description: 'Longest retry delay (default 60000).' },
    from: {
      description: 'Where delivery starts: "now" (default; entries appended after this call), "start" (the whole log) or an entry index.',
      oneOf: [{ type: 'string', enum: ['now', 'start'] }, { type: 'integer', minimum: 0 }],
    },
  },
} as const;

const ID_PARAMS = { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 128, description: 'Stream id.' } } } as const;

/** Registers the stream routes; `streams` defaults to one over the context's ledger. */
export function streamRoutes(ctx: RouteContext, streams = new Streams(ctx.ledger)): void {
  const { app } = ctx;
  const admin = access(ctx, ROLES.admin);
  const hook = admin.onRequest ? { onRequest: admin.onRequest } : {};
  const by = (id: string) => `key:${id}`;

  app.get(
    '/v1/streams',
    {
      ...hook,
      schema: {
        tags: ['streams'],
        summary: "List the tenant's streams",
        description: `Each stream with its cursor, lag, status (active or dead_letter) and last error; never a secret. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        response: { 200: { type: 'object', required: ['streams'], additionalProperties: false, properties: { streams: { type: 'array', items: STREAM } } }, ...errorResponses([...AUTHED, 413, 415]) },
      },
    },
    async (request) => ({ streams: await streams.list(callerOf(request).tenant) }),
  );

  app.post<{ Body: StreamInput }>(
    '/v1/streams',
    {
      ...hook,
      schema: {
        tags: ['streams'],
        summary: 'Add a stream',
        description:
          'Starts delivering the tenant\'s entries (as EventView: index, event, redacted, digest) to a webhook (one HMAC-signed CloudEvent 1.0 per request, structured mode, header custody-signature), ' +
          'Splunk HEC (a batch of events per request) or syslog (RFC 5424, octet-counted, TCP or TLS), at least once and in index order. Records admin.stream_added (target and secret fingerprint). ' +
          `The response carries the webhook secret only when Custody generated it: store it, it is not shown again. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        body: ADD,
        response: {
          201: {
            type: 'object',
            required: ['stream', 'entry'],
            additionalProperties: false,
            properties: {
              stream: STREAM,
              secret: { type: 'string', description: 'The generated webhook secret, shown once.' },
              entry: { type: 'string', description: 'Id of the admin.stream_added entry.' },
            },
          },
          ...errorResponses([...AUTHED, 409, 413, 415]),
        },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      return reply.code(201).send(await streams.add(caller.tenant, { ...request.body, by: by(caller.id) }));
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/streams/:id',
    {
      ...hook,
      schema: {
        tags: ['streams'],
        summary: 'Show a stream (status)',
        description: `Its cursor, lag, status and last error. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        params: ID_PARAMS,
        response: { 200: STREAM, ...errorResponses([...AUTHED, 404, 413, 415]) },
      },
    },
    async (request) => streams.get(callerOf(request).tenant, request.params.id),
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/streams/:id',
    {
      ...hook,
      schema: {
        tags: ['streams'],
        summary: 'Remove a stream',
        description: `Stops it and deletes its configuration; records admin.stream_removed with its cursor. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        params: ID_PARAMS,
        response: {
          200: { type: 'object', required: ['id', 'entry'], additionalProperties: false, properties: { id: { type: 'string' }, entry: { type: 'string' } } },
          ...errorResponses([...AUTHED, 404, 413, 415]),
        },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      return streams.remove(caller.tenant, request.params.id, by(caller.id));
    },
  );

  app.post<{ Params: { id: string } }>(
    '/v1/streams/:id/retry',
    {
      ...hook,
      schema: {
        tags: ['streams'],
        summary: 'Retry a stream',
        description: `Makes a dead-lettered stream active again with no failures; delivery resumes at its cursor (nothing acknowledged is re-sent, nothing is skipped). Records admin.stream_retried. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        params: ID_PARAMS,
        response: { 200: STREAM, ...errorResponses([...AUTHED, 404, 413, 415]) },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      return streams.retry(caller.tenant, request.params.id, by(caller.id));
    },
  );
}
