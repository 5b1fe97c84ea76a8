/**
 * Approvals under /v1: list them with full context, read one (and wait for its
 * answer), and answer one as a human. See docs/api.md, "Approvals".
 * @internal
 */
import { type Authority, AuthorityError } from '@custody/authority';
import type { Principal } from '@custody/core';
import type { FastifyRequest } from 'fastify';

import { authenticate } from '../api-keys.js';
import { ROLES, callerOf } from '../auth.js';
import { type Approvals, viewOf } from '../approvals/approvals.js';
import type { ApprovalRecord, ApprovalSessionStatus, ApprovalStatus } from '../approvals/approval-store.js';
import { ApiError } from '../errors.js';
import { AUTHED, type RouteContext, access, errorResponses, rolesLine } from '../route-kit.js';
import { PAGING, SESSION_ID } from '../schemas.js';

const API_KEY = /^cust_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/;
const APPROVAL_ID = { type: 'string', pattern: '^apr-[0-9a-f-]{36}$', description: 'Approval id, apr-<UUIDv7>.' } as const;
const STATUSES = ['pending', 'granted', 'denied', 'expired'] as const;
const time = { type: 'string', format: 'date-time' } as const;

/** An approval as the API shows it. */
export const APPROVAL_SCHEMA = {
  $id: 'Approval',
  type: 'object',
  description: 'A human approval bound to one exact call: its session, its tool and the digest of its arguments. Single-use; expires.',
  required: ['id', 'status', 'session', 'tool', 'argumentsDigest', 'createdAt', 'expiresAt', 'call', 'context'],
  additionalProperties: false,
  properties: {
    id: { type: 'string' },
    status: { type: 'string', enum: STATUSES },
    session: { type: 'string' },
    tool: { type: 'string', description: '<server>.<name>' },
    argumentsDigest: { type: 'string', description: 'base64url SHA-256 of the RFC 8785 canonical JSON of the arguments.' },
    createdAt: time,
    expiresAt: time,
    call: { type: 'string', description: 'The id of the call\'s tool.requested entry.' },
    context: {
      type: 'object',
      additionalProperties: true,
      description: 'The session (id, objective, rootObjective: the objective of the human\'s root session when this one is delegated, scope, expiry, depth), initiator, agent, delegation chain, the arguments as disclosed (secrets redacted; absent unless capture is full), the policies and reasons that asked for approval, and who asked.',
    },
    decidedAt: time,
    approver: { type: 'object', additionalProperties: true },
    source: { type: 'object', additionalProperties: { type: 'string' }, description: 'Where the answer came from: ip, userAgent.' },
    reason: { type: 'string' },
    consumedAt: { ...time, description: 'When the approved call used it (single use).' },
    usableUntil: { ...time, description: 'Granted only: until when the approved call can use it (its expiry, or the use window after the grant when later).' },
    lapsed: { type: 'boolean', enum: [true], description: 'Granted only, present when true: the use window passed and it was never used; it can no longer be used (409 APPROVAL_NOT_GRANTED). The status stays granted.' },
    sessionStatus: {
      type: 'string',
      enum: ['active', 'revoked', 'closed', 'expired'],
      description: "The state of the approval's session now: only an active session's approval can be answered (else 409 APPROVAL_SESSION_INACTIVE), and a pending approval of an ended session is expired by the sweeper.",
    },
  },
} as const;

/** Who answers an approval, from the presented credential. */
async function approverOf(request: FastifyRequest, ctx: RouteContext, authority: Authority | undefined): Promise<{ tenant: string; principal: Principal; apiKey?: string }> {
  const header = request.headers.authorization ?? '';
  const m = header.length <= 20_000 ? /^Bearer +(\S+) *$/i.exec(header) : null;
  const challenge = { headers: { 'www-authenticate': 'Bearer realm="custody"' } };
  if (m === null) throw new ApiError('UNAUTHENTICATED', 401, 'send an approve API key or a human token: Authorization: Bearer <key or token>', challenge);
  const token = m[1]!;
  if (API_KEY.test(token)) {
    const key = await authenticate(ctx.ledger, token);
    if (key === undefined) throw new ApiError('UNAUTHENTICATED', 401, 'unknown or revoked API key', challenge);
    if (key.role !== 'approve' && key.role !== 'admin') throw new ApiError('FORBIDDEN', 403, `a key with role ${key.role} cannot answer approvals; it needs approve or admin`);
    // The key's name is the approver (an admin names an approve key after the person who holds it).
    return { tenant: key.tenant, principal: { type: 'human', id: key.name, verified: false }, apiKey: `key:${key.id}` };
  }
  if (authority === undefined) throw new ApiError('UNAUTHENTICATED', 401, 'unknown API key', challenge);
  try {
    if (authority.issuer !== undefined && tokenIssuer(token) === authority.issuer) {
      throw new ApiError('APPROVAL_SELF', 403, 'a session credential (an agent) can never answer an approval: a human must, with an approve key or a human token');
    }
  } catch (err) {
    if (err instanceof ApiError) throw err;
  }
  let human;
  try {
    human = await authority.verifyApproverToken(token);
  } catch (err) {
    // A valid human token meant for token exchange (the subject_token the agent's side holds
    // to open sessions) is not an approver credential: else the agent could approve as that human.
    if (err instanceof AuthorityError && err.code === 'TOKEN_AUDIENCE_INVALID') {
      throw new ApiError('APPROVER_TOKEN_REFUSED', 403, `this human token cannot answer approvals: human tokens for approvals need an aud from the trust entry's approverAudience, never a token-exchange audience (${err.message})`, { cause: err });
    }
    throw new ApiError('UNAUTHENTICATED', 401, `not an API key nor a valid human token: ${err instanceof Error ? err.message : 'invalid'}`, { ...challenge, cause: err });
  }
  return { tenant: human.trust.tenant, principal: { type: 'human', id: human.subject, issuer: human.issuer, verified: true } };
}

/** The `iss` claim of a JWT, unverified (only to refuse session credentials early). */
function tokenIssuer(token: string): string | undefined {
  const part = token.split('.')[1];
  if (part === undefined) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as { iss?: unknown };
    return typeof claims.iss === 'string' ? claims.iss : undefined;
  } catch {
    return undefined;
  }
}

/** Approvals as the API shows them, each with its session's state (looked up once per session). */
async function viewsOf(approvals: Approvals, list: readonly ApprovalRecord[]): Promise<Record<string, unknown>[]> {
  const states = new Map<string, Promise<ApprovalSessionStatus | undefined>>();
  const stateOf = (a: ApprovalRecord) => {
    const key = `${a.tenant}/${a.sessionId}`;
    let p = states.get(key);
    if (p === undefined) states.set(key, (p = approvals.sessionStatus(a.tenant, a.sessionId)));
    return p;
  };
  return Promise.all(list.map(async (a) => viewOf(a, await stateOf(a), approvals.use(a))));
}

/** Registers the approval routes. */
export function approvalRoutes(ctx: RouteContext, approvals: Approvals, authority: Authority | undefined): void {
  const { app } = ctx;
  app.addSchema(APPROVAL_SCHEMA);
  // Answers need an active session, the sweeper expires approvals of ended sessions, and
  // a close ends its session's pending approvals before the seal.
  if (authority !== undefined) approvals.attachAuthority(authority);
  const read = access(ctx, ROLES.read);
  const hook = read.onRequest ? { onRequest: read.onRequest } : {};
  const anyRole = access(ctx, ['ingest', 'read', 'approve', 'admin']);
  const params = { type: 'object', required: ['id'], properties: { id: APPROVAL_ID } } as const;

  app.get<{ Querystring: { status?: ApprovalStatus; session?: string; limit?: number; cursor?: string } }>(
    '/v1/approvals',
    {
      ...hook,
      schema: {
        tags: ['approvals'],
        summary: 'List approvals, with full context',
        description: `The tenant's approvals, newest first: each with its session, initiator, agent, delegation chain, tool, arguments as disclosed and the policy reasons. ${rolesLine(ROLES.read)}`,
        security: read.security,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { status: { type: 'string', enum: STATUSES }, session: SESSION_ID, limit: PAGING.limit, cursor: PAGING.cursor },
        },
        response: {
          200: { type: 'object', required: ['approvals'], additionalProperties: false, properties: { approvals: { type: 'array', items: { $ref: 'Approval#' } }, nextCursor: { type: 'string' } } },
          ...errorResponses(AUTHED),
        },
      },
    },
    async (request) => {
      const { tenant } = callerOf(request);
      const q = request.query;
      // Answer pending ones that are due as expired, not as pending.
      if (q.status === undefined || q.status === 'pending') await approvals.sweep();
      const page = await approvals.store.list(tenant, { ...(q.status !== undefined ? { status: q.status } : {}), ...(q.session !== undefined ? { session: q.session } : {}) }, q.limit ?? 100, q.cursor);
      return { approvals: await viewsOf(approvals, page.approvals), ...(page.nextCursor !== undefined ? { nextCursor: page.nextCursor } : {}) };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/approvals/:id',
    {
      ...hook,
      schema: {
        tags: ['approvals'],
        summary: 'One approval, with full context',
        description: rolesLine(ROLES.read),
        security: read.security,
        params,
        response: { 200: { $ref: 'Approval#' }, ...errorResponses([...AUTHED, 404]) },
      },
    },
    async (request) => (await viewsOf(approvals, [await approvals.get(callerOf(request).tenant, request.params.id)]))[0],
  );

  app.get<{ Params: { id: string }; Querystring: { wait?: number } }>(
    '/v1/approvals/:id/status',
    {
      ...(anyRole.onRequest ? { onRequest: anyRole.onRequest } : {}),
      schema: {
        tags: ['approvals'],
        summary: "An approval's state, waiting up to `wait` seconds for an answer",
        description:
          'For the enforcement point holding the call (a gateway or an SDK): answers at once unless the approval is pending, else when it is answered or expires, or after `wait` seconds (long poll; default 0, at most 30). No arguments or context. Roles: ingest, read, approve, admin.',
        security: anyRole.security,
        params,
        querystring: { type: 'object', additionalProperties: false, properties: { wait: { type: 'integer', minimum: 0, maximum: 30, default: 0 } } },
        response: {
          200: {
            type: 'object',
            required: ['id', 'status', 'expiresAt'],
            additionalProperties: false,
            properties: {
              id: { type: 'string' },
              status: { type: 'string', enum: STATUSES },
              expiresAt: time,
              decidedAt: time,
              reason: { type: 'string' },
              approver: { type: 'object', additionalProperties: true },
              consumedAt: time,
              usableUntil: { ...time, description: 'Granted only: until when the call can use it.' },
              lapsed: { type: 'boolean', enum: [true], description: 'Granted only, present when true: its use window passed unused; it can no longer be used.' },
            },
          },
          ...errorResponses([...AUTHED, 404]),
        },
      },
    },
    async (request) => {
      const { tenant } = callerOf(request);
      const deadline = Date.now() + (request.query.wait ?? 0) * 1000;
      let a = await approvals.get(tenant, request.params.id);
      while (a.status === 'pending' && Date.now() < deadline && !request.raw.destroyed) {
        await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, Date.parse(a.expiresAt) - Date.now() + 5))));
        a = await approvals.get(tenant, request.params.id);
      }
      const use = approvals.use(a);
      return {
        id: a.id,
        status: a.status,
        expiresAt: a.expiresAt,
        ...(a.decidedAt !== undefined ? { decidedAt: a.decidedAt } : {}),
        ...(a.reason !== undefined ? { reason: a.reason } : {}),
        ...(a.approver !== undefined ? { approver: a.approver } : {}),
        ...(a.consumedAt !== undefined ? { consumedAt: a.consumedAt } : {}),
        ...(use !== undefined ? { usableUntil: use.usableUntil, ...(use.lapsed ? { lapsed: true } : {}) } : {}),
      };
    },
  );

  app.post<{ Params: { id: string }; Body: { decision: 'approve' | 'deny'; reason?: string } }>(
    '/v1/approvals/:id',
    {
      schema: {
        tags: ['approvals'],
        summary: 'Answer an approval (a human)',
        description:
          'Grants or denies one pending approval, recording approval.granted or approval.denied with the approver and the source (IP, user agent). ' +
          "The approver is the name of an approve (or admin) API key, or the subject of a token from a trusted human issuer (verified) whose aud is one of that trust entry's approverAudience: a token for token exchange (the subject_token the agent's side holds) is refused with 403 APPROVER_TOKEN_REFUSED. Session credentials (agents) are refused, and so is anyone in the call's delegation chain: the session's agent, initiator or any delegating agent (APPROVAL_SELF; ids compared without case or invisible characters). " +
          "The session must be active (409 APPROVAL_SESSION_INACTIVE). An approval already answered: the same approver repeating the same answer gets it back (200, nothing new recorded); any other answer gets 409 APPROVAL_NOT_PENDING naming the decision, who made it and when.",
        security: [{ bearerAuth: [] }],
        params,
        body: {
          type: 'object',
          required: ['decision'],
          additionalProperties: false,
          properties: { decision: { type: 'string', enum: ['approve', 'deny'] }, reason: { type: 'string', minLength: 1, maxLength: 4096 } },
        },
        response: { 200: { $ref: 'Approval#' }, ...errorResponses([...AUTHED, 404, 409, 413, 415]) },
      },
    },
    async (request) => {
      const who = await approverOf(request, ctx, authority);
      const ua = request.headers['user-agent'];
      const source: Record<string, string> = { ip: request.ip, ...(typeof ua === 'string' && ua !== '' ? { userAgent: ua.slice(0, 1024) } : {}) };
      const a = await approvals.decide(who.tenant, request.params.id, {
        status: request.body.decision === 'approve' ? 'granted' : 'denied',
        approver: who.principal,
        source,
        ...(request.body.reason !== undefined ? { reason: request.body.reason } : {}),
        ...(who.apiKey !== undefined ? { apiKey: who.apiKey } : {}),
      });
      return (await viewsOf(approvals, [a]))[0];
    },
  );
}
