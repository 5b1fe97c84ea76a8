/**
 * Sessions of the authority under /v1: revoke (the kill switch, cascading to
 * every descendant), close (the agent ends its task; writes the seal), and
 * list/show with status, scope, expiry and the delegation tree.
 * @internal
 */
import { type Authority, AuthorityError, type SessionListFilter, type SessionRecord, type SessionStatus } from '@custody/authority';
import type { Principal } from '@custody/core';
import type { FastifyRequest } from 'fastify';

import { authenticate } from '../api-keys.js';
import { ROLES, callerOf } from '../auth.js';
import { ApiError } from '../errors.js';
import { AUTHED, type RouteContext, access, errorResponses, rolesLine } from '../route-kit.js';
import { SESSION_ID, ref } from '../schemas.js';

const API_KEY = /^cust_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/;

const time = { type: 'string', format: 'date-time' } as const;
const strings = { type: 'array', items: { type: 'string' } } as const;

/** A session as the authority keeps it. */
export const AUTHORITY_SESSION_SCHEMA = {
  $id: 'AuthoritySession',
  type: 'object',
  description: "A session opened by token exchange: who, which agent, its scope, audience and expiry, its status, and where it sits in its delegation tree.",
  required: ['tenant', 'id', 'root', 'depth', 'initiator', 'agent', 'chain', 'scope', 'audience', 'objective', 'createdAt', 'expiresAt', 'status'],
  additionalProperties: false,
  properties: {
    tenant: { type: 'string' },
    id: { type: 'string' },
    parent: { type: 'string' },
    root: { type: 'string' },
    depth: { type: 'integer', minimum: 0 },
    initiator: ref('Principal'),
    agent: ref('Principal'),
    chain: { type: 'array', items: { type: 'object', additionalProperties: true } },
    workload: { type: 'object', additionalProperties: true },
    scope: strings,
    audience: strings,
    objective: { type: 'string' },
    clientId: { type: 'string' },
    createdAt: time,
    expiresAt: time,
    status: { type: 'string', enum: ['active', 'revoked', 'closed', 'expired'] },
    endedAt: time,
    endedBy: { type: 'string' },
    endReason: { type: 'string' },
    credentials: {
      type: 'array',
      description: 'Credentials issued for the session: jti and fingerprint only, never a token.',
      items: {
        type: 'object',
        required: ['jti', 'fingerprint', 'issuedAt', 'expiresAt', 'status'],
        additionalProperties: false,
        properties: {
          jti: { type: 'string' },
          tenant: { type: 'string' },
          sessionId: { type: 'string' },
          fingerprint: { type: 'string' },
          issuedAt: time,
          expiresAt: time,
          status: { type: 'string', enum: ['active', 'revoked', 'expired'] },
          endedAt: time,
        },
      },
    },
  },
} as const;

interface SessionCaller {
  tenant: string;
  principal: Principal;
}

function unauthenticated(message: string): ApiError {
  return new ApiError('UNAUTHENTICATED', 401, message, { headers: { 'www-authenticate': 'Bearer realm="custody", error="invalid_token"' } });
}

function bearerOf(request: FastifyRequest): string {
  const header = request.headers.authorization;
  if (header === undefined || header === '') throw unauthenticated('send an admin API key or a token: Authorization: Bearer <key or token>');
  const m = header.length <= 20_000 ? /^Bearer +(\S+) *$/i.exec(header) : null;
  if (m === null) throw unauthenticated('the Authorization header must be: Bearer <key or token>');
  return m[1]!;
}

/** An admin API key of the session's tenant. */
async function adminCaller(ctx: RouteContext, token: string): Promise<SessionCaller> {
  const key = await authenticate(ctx.ledger, token);
  if (key === undefined) throw unauthenticated('unknown or revoked API key');
  if (key.role !== 'admin') throw new ApiError('FORBIDDEN', 403, `a key with role ${key.role} cannot do this; it needs admin (or the session's own token)`);
  return { tenant: key.tenant, principal: { type: 'service', id: `key:${key.id}` } };
}

/** Wraps token verification failures as 401 in the /v1 shape. */
async function verified<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof AuthorityError && err.code.startsWith('TOKEN_') && err.status === 400) throw unauthenticated(`${err.message} [${err.code}]`);
    throw err;
  }
}

/** Registers the authority's /v1 session routes. */
export function authorityRoutes(ctx: RouteContext, authority: Authority): void {
  const { app } = ctx;
  app.addSchema(AUTHORITY_SESSION_SCHEMA);
  const read = access(ctx, ROLES.read);
  const hook = read.onRequest ? { onRequest: read.onRequest } : {};
  const params = { type: 'object', required: ['id'], properties: { id: SESSION_ID } } as const;
  // The body is optional: a POST without one is { }.
  const optionalBody = {
    preValidation: async (request: FastifyRequest) => {
      if (request.body === undefined || request.body === null) request.body = {};
    },
  };
  const body = {
    type: 'object',
    additionalProperties: false,
    properties: { reason: { type: 'string', minLength: 1, maxLength: 1024, description: 'Why, recorded in the ledger.' } },
  } as const;

  app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>(
    '/v1/sessions/:id/revoke',
    {
      ...optionalBody,
      schema: {
        tags: ['authority'],
        summary: 'Revoke a session and every descendant (kill switch)',
        description:
          'Revokes the session and every session delegated from it, at once: their credentials are inactive to introspection on every node when this answers. ' +
          "Records session.revoked and credential.revoked for each. Callers: an admin API key of the tenant, or the session's initiator with a token from a trusted human issuer. " +
          'Sessions already inactive are skipped (`revoked` lists those revoked now). `recorded` is false when the entries are queued for the ledger rather than in it yet.',
        security: [{ bearerAuth: [] }],
        params,
        body,
        response: {
          200: {
            type: 'object',
            required: ['session', 'revoked', 'recorded'],
            additionalProperties: false,
            properties: { session: { type: 'string' }, revoked: strings, recorded: { type: 'boolean' } },
          },
          ...errorResponses([...AUTHED, 404, 413, 415]),
        },
      },
    },
    async (request) => {
      const token = bearerOf(request);
      let caller: SessionCaller;
      if (API_KEY.test(token)) caller = await adminCaller(ctx, token);
      else {
        const human = await verified(authority.verifyHumanToken(token));
        const session = (await authority.store.getSession(human.trust.tenant, request.params.id)) ?? null;
        if (session === null) throw new AuthorityError('AUTHORITY_SESSION_NOT_FOUND', `no session ${request.params.id}`);
        if (session.initiator.id !== human.subject || session.initiator.issuer !== human.issuer) throw new ApiError('FORBIDDEN', 403, "only the session's initiator (or an admin key) may revoke it");
        caller = { tenant: session.tenant, principal: { type: 'human', id: human.subject, issuer: human.issuer, verified: true } };
      }
      return authority.revokeSession(caller.tenant, request.params.id, { principal: caller.principal, ...(request.body?.reason !== undefined ? { reason: request.body.reason } : {}) });
    },
  );

  app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>(
    '/v1/sessions/:id/close',
    {
      ...optionalBody,
      schema: {
        tags: ['authority'],
        summary: 'Close a session (the agent ends its task)',
        description:
          "Ends the session: its credentials stop working, any active descendant is revoked, and the ledger's seal (session.closed) is written, so a verifier can tell the complete session from a truncated one. " +
          "Callers: the session's own credential (the agent), or an admin API key of the tenant. `sealed` is false when the seal is queued for the ledger rather than in it yet.",
        security: [{ bearerAuth: [] }],
        params,
        body,
        response: {
          200: {
            type: 'object',
            required: ['session', 'sealed', 'revoked'],
            additionalProperties: false,
            properties: { session: { type: 'string' }, sealed: { type: 'boolean' }, revoked: strings },
          },
          ...errorResponses([...AUTHED, 404, 409, 413, 415]),
        },
      },
    },
    async (request) => {
      const token = bearerOf(request);
      let caller: SessionCaller;
      if (API_KEY.test(token)) caller = await adminCaller(ctx, token);
      else {
        const v = await verified(authority.verifyCredential(token));
        if (v.session.id !== request.params.id) throw new ApiError('FORBIDDEN', 403, "a session credential may close only its own session");
        caller = { tenant: v.session.tenant, principal: v.session.agent };
      }
      return authority.closeSession(caller.tenant, request.params.id, { principal: caller.principal, ...(request.body?.reason !== undefined ? { reason: request.body.reason } : {}) });
    },
  );

  app.get<{ Querystring: SessionListFilter & { limit?: number; cursor?: string } }>(
    '/v1/authority/sessions',
    {
      ...hook,
      schema: {
        tags: ['authority'],
        summary: 'List sessions opened by token exchange',
        description: `The tenant's authority sessions, newest first, with status, scope and expiry; every given filter must hold. ${rolesLine(ROLES.read)}`,
        security: read.security,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { type: 'string', enum: ['active', 'revoked', 'closed', 'expired'] },
            initiator: { type: 'string', minLength: 1, maxLength: 512 },
            agent: { type: 'string', minLength: 1, maxLength: 512 },
            root: { type: 'string', minLength: 1, maxLength: 128, description: 'Only the delegation tree of this root session.' },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            cursor: { type: 'string', minLength: 1, maxLength: 1024 },
          },
        },
        response: {
          200: { type: 'object', required: ['sessions'], additionalProperties: false, properties: { sessions: { type: 'array', items: ref('AuthoritySession') }, nextCursor: { type: 'string' } } },
          ...errorResponses(AUTHED),
        },
      },
    },
    async (request) => {
      const { limit, cursor, ...rest } = request.query;
      const filter: SessionListFilter = {};
      if (rest.status !== undefined) filter.status = rest.status as SessionStatus;
      if (rest.initiator !== undefined) filter.initiator = rest.initiator;
      if (rest.agent !== undefined) filter.agent = rest.agent;
      if (rest.root !== undefined) filter.root = rest.root;
      const { tenant } = callerTenant(request);
      return authority.listSessions(tenant, filter, limit ?? 100, cursor);
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/authority/sessions/:id',
    {
      ...hook,
      schema: {
        tags: ['authority'],
        summary: 'One session opened by token exchange, with its delegation tree',
        description: `The session (with its credentials' jti and fingerprint) and every session delegated from it, parents first. ${rolesLine(ROLES.read)}`,
        security: read.security,
        params,
        response: {
          200: {
            type: 'object',
            required: ['session', 'descendants'],
            additionalProperties: false,
            properties: { session: ref('AuthoritySession'), descendants: { type: 'array', items: ref('AuthoritySession') } },
          },
          ...errorResponses([...AUTHED, 404]),
        },
      },
    },
    async (request) => {
      const { tenant } = callerTenant(request);
      const session = await authority.session(tenant, request.params.id);
      const tree: SessionRecord[] = await authority.tree(tenant, request.params.id);
      return { session, descendants: tree.slice(1) };
    },
  );
}

function callerTenant(request: FastifyRequest): { tenant: string } {
  return { tenant: callerOf(request).tenant };
}
