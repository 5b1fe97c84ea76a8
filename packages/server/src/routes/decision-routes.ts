/**
 * POST /v1/decisions: the decision point for an enforcement point (the MCP
 * gateway, an agent SDK). Verifies the session credential live, decides the call
 * (or takes the enforcement point's decision), opens an approval when one is
 * required, uses a granted approval once, and records `tool.requested`,
 * `policy.decided` (and `approval.requested`) durably before it answers.
 * See docs/api.md, "Decisions".
 * @internal
 */
import { type Authority, AuthorityError, type VerifiedCredential } from '@custody/authority';
import { createDisclosure, type DecisionPart, type EventDraft, type Principal, redactSecrets } from '@custody/core';
import type { PolicyEngine } from '@custody/policy';
import type { FastifyRequest } from 'fastify';
import { v7 as uuidv7 } from 'uuid';

import { authenticate } from '../api-keys.js';
import { ApprovalRefused, type Approvals, argumentsDigest, assertAppended } from '../approvals/approvals.js';
import type { ApprovalRecord } from '../approvals/approval-store.js';
import { ApiError } from '../errors.js';
import { AUTHED, type RouteContext, errorResponses } from '../route-kit.js';

const API_KEY = /^cust_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/;
/** The principal of decisions the server makes itself. */
export const POLICY_ACTOR: Principal = { type: 'service', id: 'custody-policy' };

/** Capture levels for arguments (and results): disclosures kept, commitment only, nothing. */
export type Capture = 'full' | 'digest' | 'none';

interface DecisionBody {
  credential?: string;
  tool: { server: string; name: string };
  arguments?: Record<string, unknown>;
  callId?: string;
  capture?: Capture;
  decision?: DecisionPart;
  approval?: string;
  approvalTtlSeconds?: number;
  cause?: string;
}

/** W3C Trace Context `traceparent` (version 00): the trace the decision's entries join. */
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The trace context of a request's `traceparent` header, when it is valid (an invalid one is ignored, as W3C says). */
export function traceOf(header: string | string[] | undefined): { traceId: string; spanId: string; flags: string } | undefined {
  const m = typeof header === 'string' ? TRACEPARENT.exec(header.trim()) : null;
  if (m === null || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return undefined;
  return { traceId: m[1]!, spanId: m[2]!, flags: m[3]! };
}

const DECISION_SCHEMA = {
  type: 'object',
  required: ['effect', 'policyVersion', 'policies', 'reasons'],
  additionalProperties: false,
  properties: {
    effect: { type: 'string', enum: ['allow', 'deny', 'approval_required'] },
    policyVersion: { type: 'string', minLength: 1, maxLength: 128 },
    policies: { type: 'array', maxItems: 256, items: { type: 'string', minLength: 1, maxLength: 256 } },
    reasons: { type: 'array', maxItems: 256, items: { type: 'string', minLength: 1, maxLength: 2048 } },
    evaluatedAt: { type: 'string', format: 'date-time' },
    durationMs: { type: 'number', minimum: 0 },
  },
} as const;

/** `data.arguments` of the tool.requested entry for a capture level (secrets already redacted). */
export function capturedArguments(args: Record<string, unknown>, capture: Capture): Record<string, unknown> {
  if (capture === 'none') return {};
  if (capture === 'full') return { arguments: args };
  // A commitment whose disclosure is thrown away at once: the value can never be opened.
  return { arguments: { $commitment: createDisclosure('/data/arguments', args).digest } };
}

/** Registers POST /v1/decisions. */
export function decisionRoutes(ctx: RouteContext, authority: Authority, approvals: Approvals, policy: PolicyEngine | undefined): void {
  const { app, ledger } = ctx;

  app.post<{ Body: DecisionBody }>(
    '/v1/decisions',
    {
      schema: {
        tags: ['decisions'],
        summary: 'Decide a tool call and record it (enforcement points: gateway, SDK)',
        description:
          'Verifies the session credential live (a revoked, closed or expired session is refused at once), decides the call with the server\'s policy set (or records the decision an enforcement point made with its own, `decision`), ' +
          'opens an approval when the decision is approval_required, and uses a granted `approval` bound to this exact call (session, tool, arguments digest) once. ' +
          'Records tool.requested, policy.decided (and approval.requested) durably before answering: if the ledger cannot commit, the answer is 503 and the call must not run (fail closed). ' +
          'Callers: the agent with its session credential as the bearer token (no `decision`), or an enforcement point with an ingest or admin API key and the agent\'s credential in `credential`.',
        security: [{ bearerAuth: [] }],
        body: {
          type: 'object',
          required: ['tool'],
          additionalProperties: false,
          properties: {
            credential: { type: 'string', minLength: 1, maxLength: 16384, description: "The agent's session credential (when the bearer is an API key)." },
            tool: {
              type: 'object',
              required: ['server', 'name'],
              additionalProperties: false,
              properties: { server: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' }, name: { type: 'string', minLength: 1, maxLength: 256 } },
            },
            arguments: { type: 'object', additionalProperties: true, description: 'The call\'s arguments (default {}).' },
            callId: { type: 'string', minLength: 1, maxLength: 256 },
            capture: { type: 'string', enum: ['full', 'digest', 'none'], default: 'full', description: 'full: arguments committed with their disclosure kept; digest: commitment only; none: not recorded. Secrets are redacted first.' },
            decision: { ...DECISION_SCHEMA, description: "The enforcement point's own decision (API key callers only)." },
            approval: { type: 'string', pattern: '^apr-[0-9a-f-]{36}$', description: 'A granted approval for this exact call, used once.' },
            approvalTtlSeconds: { type: 'integer', minimum: 1, maximum: 86400, description: 'How long a new approval waits (capped by the server\'s setting).' },
            cause: { type: 'string', pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$', description: 'The event that led to this call (e.g. the model output that asked for it): the cause of tool.requested. A W3C `traceparent` header puts both entries in that trace.' },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['decision', 'call', 'decisionEvent', 'session'],
            additionalProperties: false,
            properties: {
              decision: { ...DECISION_SCHEMA, additionalProperties: true },
              call: { type: 'string', description: 'Id of the tool.requested entry (the cause for tool.completed / tool.failed).' },
              decisionEvent: { type: 'string' },
              session: { type: 'object', additionalProperties: true, description: 'id, agent, initiator, chain, scope, expiresAt, depth, objective.' },
              credential: { type: 'object', additionalProperties: true, description: 'jti and fingerprint of the session credential.' },
              approval: {
                type: 'object',
                required: ['id', 'status', 'expiresAt'],
                additionalProperties: false,
                properties: { id: { type: 'string' }, status: { type: 'string' }, expiresAt: { type: 'string', format: 'date-time' } },
              },
            },
          },
          ...errorResponses([...AUTHED, 404, 409, 413, 415]),
        },
      },
    },
    async (request) => {
      const body = request.body;
      const { enforcer, tenant, credential } = await callerOf(request, ctx, body);
      const field = enforcer === undefined ? 'token' : 'credential';
      /** A refused credential as this route answers it: 401 to the agent itself, 403 to an enforcement point. */
      const refused = (err: unknown): unknown => {
        if (err instanceof AuthorityError && err.code.startsWith('TOKEN_') && err.status < 500) {
          if (enforcer === undefined) return new ApiError('UNAUTHENTICATED', 401, `${err.message} [${err.code}]`, { headers: { 'www-authenticate': 'Bearer realm="custody", error="invalid_token"' }, cause: err });
          return new ApiError('CREDENTIAL_INVALID', 403, `the session credential is refused: ${err.message} [${err.code}]`, { field: 'credential', cause: err });
        }
        return err;
      };
      let v: VerifiedCredential;
      try {
        v = await authority.verifyCredential(credential, field);
      } catch (err) {
        throw refused(err);
      }
      const s = v.session;
      if (tenant !== undefined && s.tenant !== tenant) throw new ApiError('CREDENTIAL_INVALID', 403, 'the session credential belongs to another tenant', { field: 'credential' });
      if (body.decision !== undefined && enforcer === undefined) throw new ApiError('FORBIDDEN', 403, 'only an enforcement point (an ingest or admin API key) may bring its own decision');
      const args = body.arguments ?? {};
      const tool = `${body.tool.server}.${body.tool.name}`;
      const digest = argumentsDigest(args);
      const capture = body.capture ?? 'full';

      let approval: ApprovalRecord | undefined;
      /** The approval brought was refused: the call is recorded, denied with the refusal, then answered 409. */
      let refusal: ApprovalRefused | undefined;
      const refusedUse = (err: unknown): void => {
        if (!(err instanceof ApprovalRefused)) throw err;
        refusal = err;
        approval = undefined;
      };
      if (body.approval !== undefined) approval = await approvals.check(s.tenant, body.approval, { sessionId: s.id, tool, argumentsDigest: digest }).catch((err: unknown) => void refusedUse(err));

      let decision: DecisionPart;
      if (refusal !== undefined) decision = refusalDecision(refusal, policy?.version ?? body.decision?.policyVersion, approvals.now());
      else if (body.decision !== undefined) decision = body.decision;
      else if (policy !== undefined) {
        decision = policy.decide({
          action: 'tools/call',
          principal: { type: 'agent', id: s.agent.id },
          target: body.tool,
          arguments: args,
          session: { id: s.id, scope: s.scope, expiresAt: s.expiresAt, depth: s.depth, initiator: s.initiator.id, objective: s.objective },
          approval: { status: approval !== undefined ? 'granted' : 'none' },
        });
      } else {
        throw new ApiError('POLICY_NOT_CONFIGURED', 409, 'this server has no policy set (custody up --policies DIR): send the decision your enforcement point made, or configure policies');
      }
      if (approval !== undefined && decision.effect === 'approval_required') {
        throw new ApiError('REQUEST_INVALID', 400, 'a call that brings a granted approval cannot be decided approval_required again', { field: 'decision' });
      }
      if (approval !== undefined && decision.effect === 'allow') {
        await approvals.consume(approval).catch(refusedUse);
        if (refusal !== undefined) decision = refusalDecision(refusal, policy?.version ?? body.decision?.policyVersion, approvals.now());
      }

      const redacted = redactSecrets(args);
      const now = approvals.now().toISOString();
      const callEvent = uuidv7();
      const decisionEvent = uuidv7();
      const trace = traceOf(request.headers.traceparent);
      const common = {
        session: { id: s.id },
        initiator: s.initiator,
        chain: s.chain,
        tool: { name: tool, server: body.tool.server, ...(body.callId !== undefined ? { callId: body.callId } : {}) },
        ...(trace !== undefined ? { trace } : {}),
      };
      const credentialRef = { jti: v.credential.jti, fingerprint: v.credential.fingerprint };
      const drafts: EventDraft[] = [
        {
          id: callEvent,
          type: 'tool.requested',
          time: now,
          ...common,
          ...(body.cause !== undefined ? { cause: body.cause } : {}),
          actor: s.agent,
          ...(s.workload !== undefined ? { workload: s.workload } : {}),
          credential: credentialRef,
          data: {
            ...capturedArguments(redacted.value, capture),
            capture,
            ...(redacted.redactions.length > 0 && capture !== 'none' ? { redacted: redacted.redactions } : {}),
            ...(enforcer !== undefined ? { enforcedBy: enforcer } : {}),
          },
        },
        {
          id: decisionEvent,
          type: 'policy.decided',
          time: now,
          ...common,
          actor: refusal !== undefined ? POLICY_ACTOR : (enforcer ?? POLICY_ACTOR),
          cause: callEvent,
          decision,
          ...(approval !== undefined ? { approval: { id: approval.id, status: 'granted', argumentsDigest: digest, ...(approval.approver !== undefined ? { approver: approval.approver } : {}) } } : {}),
          // A refused approval: the approval as it stands (its own digest: what it was granted
          // for), the call's digest in data, and the refusal's code.
          ...(refusal !== undefined
            ? { approval: { id: refusal.approval.id, status: refusal.approval.status, argumentsDigest: refusal.approval.argumentsDigest, ...(refusal.approval.approver !== undefined ? { approver: refusal.approval.approver } : {}) } }
            : {}),
          data:
            refusal !== undefined
              ? { decidedBy: 'server', approvalRefused: refusal.code, argumentsDigest: digest }
              : { decidedBy: body.decision !== undefined ? 'enforcement-point' : 'server' },
        },
      ];
      let opened: ApprovalRecord | undefined;
      if (decision.effect === 'approval_required') {
        // A delegated session's objective is written by the delegating agent: show the human's too.
        const rootObjective = s.depth > 0 && s.root !== s.id ? (await authority.store.getSession(s.tenant, s.root))?.objective : undefined;
        const p = approvals.prepare(s.tenant, {
          sessionId: s.id,
          tool,
          argumentsDigest: digest,
          callEvent,
          ...(body.approvalTtlSeconds !== undefined ? { ttlSeconds: body.approvalTtlSeconds } : {}),
          context: {
            session: { id: s.id, objective: s.objective, ...(rootObjective !== undefined ? { rootObjective } : {}), scope: s.scope, expiresAt: s.expiresAt, depth: s.depth },
            initiator: s.initiator,
            agent: s.agent,
            chain: s.chain,
            ...(capture === 'full' ? { arguments: redacted.value } : {}),
            capture,
            policies: decision.policies,
            reasons: decision.reasons,
            policyVersion: decision.policyVersion,
            requestedBy: enforcer?.id ?? POLICY_ACTOR.id,
            ...(body.callId !== undefined ? { callId: body.callId } : {}),
          },
        });
        opened = p.record;
        drafts.push(p.draft);
      }
      // Durable before the answer: a call whose decision is not on record must not run.
      assertAppended(await ledger.append(s.tenant, drafts));
      // A refused approval: the attempt is on record (tool.requested, policy.decided deny); the answer is the 409.
      if (refusal !== undefined) throw refusal;
      if (decision.effect !== 'deny') {
        // The kill switch, once more: a revocation that took effect (on any node) while
        // this call was being decided and recorded still stops it. Its trail ends with
        // the refusal, so that no allowed call is left without an outcome.
        try {
          await authority.assertActive(v, field);
        } catch (err) {
          await ledger
            .append(s.tenant, [
              {
                id: uuidv7(),
                type: 'tool.failed',
                time: approvals.now().toISOString(),
                ...common,
                actor: enforcer ?? POLICY_ACTOR,
                cause: callEvent,
                data: { error: `refused before it ran: ${err instanceof Error ? err.message : String(err)}`, refused: true },
              },
            ])
            .catch(() => undefined);
          throw refused(err);
        }
      }
      // The webhook's `decide` link comes from configuration (Custody's issuer: --issuer, the
      // trust file's, else the URL the server listens on), never from the request's Host
      // header, which the agent chooses: a signed notification must not point elsewhere.
      if (opened !== undefined) {
        const base = publicBase(authority);
        await approvals.open(opened, base !== undefined ? `${base}/v1/approvals/${opened.id}` : undefined);
      }
      return {
        decision,
        call: callEvent,
        decisionEvent,
        session: { id: s.id, agent: s.agent, initiator: s.initiator, chain: s.chain, scope: s.scope, expiresAt: s.expiresAt, depth: s.depth, objective: s.objective },
        credential: credentialRef,
        ...(opened !== undefined ? { approval: { id: opened.id, status: 'pending', expiresAt: opened.expiresAt } } : {}),
      };
    },
  );
}

/**
 * The decision recorded for a call whose approval was refused: `deny` by the server, the
 * refusal as its reason, under the policy version in force (the server's, else the
 * enforcement point's).
 */
function refusalDecision(refusal: ApprovalRefused, policyVersion: string | undefined, now: Date): DecisionPart {
  return { effect: 'deny', policies: [], reasons: [refusal.message.slice(0, 2048)], policyVersion: policyVersion ?? 'none', evaluatedAt: now.toISOString() };
}

/** Custody's configured public URL (its issuer, when that is an http(s) URL), or undefined. */
function publicBase(authority: Authority): string | undefined {
  let issuer: string;
  try {
    issuer = authority.issuer;
  } catch {
    return undefined;
  }
  return /^https?:\/\/[^\s/]+/.test(issuer) ? issuer.replace(/\/+$/, '') : undefined;
}

/** The caller: an enforcement point's API key with the credential in the body, or the agent's own credential. */
async function callerOf(request: FastifyRequest, ctx: RouteContext, body: DecisionBody): Promise<{ enforcer?: Principal; tenant?: string; credential: string }> {
  const header = request.headers.authorization ?? '';
  const m = header.length <= 20_000 ? /^Bearer +(\S+) *$/i.exec(header) : null;
  const challenge = { headers: { 'www-authenticate': 'Bearer realm="custody"' } };
  if (m === null) throw new ApiError('UNAUTHENTICATED', 401, 'send a session credential, or an ingest API key with `credential`: Authorization: Bearer <token or key>', challenge);
  const token = m[1]!;
  if (!API_KEY.test(token)) {
    if (body.credential !== undefined && body.credential !== token) throw new ApiError('REQUEST_INVALID', 400, 'with a session credential as the bearer token, omit `credential`', { field: 'credential' });
    return { credential: token };
  }
  const key = await authenticate(ctx.ledger, token);
  if (key === undefined) throw new ApiError('UNAUTHENTICATED', 401, 'unknown or revoked API key', challenge);
  if (key.role !== 'ingest' && key.role !== 'admin') throw new ApiError('FORBIDDEN', 403, `a key with role ${key.role} cannot do this; it needs ingest or admin`);
  if (body.credential === undefined) throw new ApiError('REQUEST_INVALID', 400, "credential is required: the agent's session credential", { field: 'credential' });
  return { enforcer: { type: 'service', id: `key:${key.id}`, name: key.name }, tenant: key.tenant, credential: body.credential };
}
