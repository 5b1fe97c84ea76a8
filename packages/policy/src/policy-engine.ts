/**
 * Decisions: evaluates a request against a preparsed policy set and returns
 * `allow`, `deny` or `approval_required`, shaped exactly like the envelope's
 * `decision` part. See docs/policies.md, "Decisions" and "Approvals".
 */
import { type DecisionPart, PRINCIPAL_TYPES, type PrincipalType } from '@custody/core';

import { type CedarJson, fitToType } from './arguments.js';
import { cedar, type EntityJson } from './cedar.js';
import { PolicyError } from './errors.js';
import type { CompiledPolicySet, LoadedPolicy } from './policy-set.js';
import { ACTION_RESOURCE_TYPE, POLICY_ACTIONS, type PolicyAction, PRINCIPAL_ENTITY_TYPE } from './schema.js';

/** The approval states a request can carry. */
export const APPROVAL_STATUSES = ['none', 'pending', 'granted', 'denied', 'expired'] as const;
export type ApprovalStatus = (typeof APPROVAL_STATUSES)[number];

/** What is asked: who, which MCP method on what, with which arguments, in which session. */
export interface PolicyRequest {
  /** The MCP method. */
  action: PolicyAction;
  /** Who performs the call (the actor; usually the agent). */
  principal: { type: PrincipalType; id: string };
  /** The tool, resource or prompt: its name on its MCP server, and the server. */
  target: { server: string; name: string };
  /** The call's arguments (for `tools/call`; attacker-controlled JSON). */
  arguments?: Record<string, unknown>;
  /** The session the call is made in. */
  session: {
    id: string;
    scope: readonly string[];
    /** RFC 3339 time. */
    expiresAt: string;
    /** Delegation depth: 0 for a root session. */
    depth: number;
    /** The initiator's id. */
    initiator: string;
    objective?: string;
  };
  /** The state of a human approval bound to this exact call (default `none`). */
  approval?: { status: ApprovalStatus };
  /** Evaluation time (default: now); RFC 3339 or a Date. */
  now?: string | Date;
}

/** A decision, exactly the envelope's `decision` part (with `evaluatedAt` and `durationMs` always set). */
export type PolicyDecision = DecisionPart & { evaluatedAt: string; durationMs: number };

const SERVER_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** The Cedar entity id of a target: `<server>.<name>`. */
export function targetId(target: { server: string; name: string }): string {
  return `${target.server}.${target.name}`;
}

/** True when `scope` grants `<server>.<name>` exactly or all of the server as `<server>.*`. */
export function scopeCovers(scope: readonly string[], target: { server: string; name: string }): boolean {
  return scope.includes(targetId(target)) || scope.includes(`${target.server}.*`);
}

function isoTime(v: string | Date, field: string): string {
  const d = v instanceof Date ? v : new Date(v);
  if (Number.isNaN(d.getTime()) || (typeof v === 'string' && !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v))) {
    throw new PolicyError('POLICY_REQUEST_INVALID', `${field}: expected an RFC 3339 time such as 2026-11-22T06:00:00Z`);
  }
  return d.toISOString();
}

function invalid(field: string, message: string): never {
  throw new PolicyError('POLICY_REQUEST_INVALID', `${field}: ${message}`);
}

const isText = (v: unknown, max = 512): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;

/**
 * Checks the shape of a request (for requests from files or the network).
 * @throws PolicyError `POLICY_REQUEST_INVALID` naming the field
 */
export function checkRequest(r: unknown): PolicyRequest {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) invalid('request', 'expected an object');
  const q = r as Record<string, unknown>;
  if (!POLICY_ACTIONS.includes(q['action'] as PolicyAction)) invalid('action', `expected one of ${POLICY_ACTIONS.join(', ')}`);
  const p = q['principal'] as Record<string, unknown> | undefined;
  if (p === null || typeof p !== 'object') invalid('principal', 'expected { "type", "id" }');
  if (!PRINCIPAL_TYPES.includes(p['type'] as PrincipalType)) invalid('principal.type', `expected one of ${PRINCIPAL_TYPES.join(', ')}`);
  if (!isText(p['id'])) invalid('principal.id', 'expected 1-512 characters');
  const t = q['target'] as Record<string, unknown> | undefined;
  if (t === null || typeof t !== 'object') invalid('target', 'expected { "server", "name" }');
  if (typeof t['server'] !== 'string' || !SERVER_NAME.test(t['server'])) invalid('target.server', 'expected 1-64 characters of A-Z a-z 0-9 _ -');
  if (!isText(t['name'], 1024)) invalid('target.name', 'expected 1-1024 characters');
  const a = q['arguments'];
  if (a !== undefined && (a === null || typeof a !== 'object' || Array.isArray(a))) invalid('arguments', 'expected an object');
  const s = q['session'] as Record<string, unknown> | undefined;
  if (s === null || typeof s !== 'object') invalid('session', 'expected { "id", "scope", "expiresAt", "depth", "initiator" }');
  if (!isText(s['id'], 128)) invalid('session.id', 'expected 1-128 characters');
  if (!Array.isArray(s['scope']) || !s['scope'].every((x) => isText(x, 256))) invalid('session.scope', 'expected an array of scope tokens');
  if (typeof s['expiresAt'] !== 'string') invalid('session.expiresAt', 'expected an RFC 3339 time');
  isoTime(s['expiresAt'], 'session.expiresAt');
  if (typeof s['depth'] !== 'number' || !Number.isInteger(s['depth']) || s['depth'] < 0 || s['depth'] > 64) invalid('session.depth', 'expected an integer 0-64');
  if (!isText(s['initiator'])) invalid('session.initiator', 'expected 1-512 characters');
  if (s['objective'] !== undefined && !isText(s['objective'], 4096)) invalid('session.objective', 'expected 1-4096 characters');
  const ap = q['approval'] as Record<string, unknown> | undefined;
  if (ap !== undefined && (ap === null || typeof ap !== 'object' || !APPROVAL_STATUSES.includes(ap['status'] as ApprovalStatus))) {
    invalid('approval.status', `expected one of ${APPROVAL_STATUSES.join(', ')}`);
  }
  if (q['now'] !== undefined) {
    if (typeof q['now'] !== 'string') invalid('now', 'expected an RFC 3339 time');
    isoTime(q['now'], 'now');
  }
  return r as PolicyRequest;
}

const datetime = (iso: string): CedarJson => ({ __extn: { fn: 'datetime', arg: iso } });
const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

/**
 * Decides requests against one compiled policy set. The policy set is preparsed
 * into cedar-wasm once, here (the schema was applied at load); each {@link PolicyEngine.decide} is one
 * `statefulIsAuthorized` call (two on the approval path), with the request in
 * `context` and a single resource entity.
 * @example
 * const engine = new PolicyEngine(loadPolicySet('examples/policies'));
 * const decision = engine.decide({
 *   action: 'tools/call',
 *   principal: { type: 'agent', id: 'agent:refunds' },
 *   target: { server: 'payments', name: 'transfer' },
 *   arguments: { amount: 5000, currency: 'EUR' },
 *   session: { id: 's-1', scope: ['payments.transfer'], expiresAt: '2026-11-22T07:00:00Z', depth: 0, initiator: 'alice@example.com' },
 * });
 * // { effect: 'approval_required', policyVersion: 'sha256:…', policies: ['transfer-needs-approval'], reasons: […], … }
 */
export class PolicyEngine {
  /** The policy-set version every decision carries. */
  readonly version: string;
  /** The compiled set (policies, warnings, files). */
  readonly policySet: CompiledPolicySet;
  private readonly byId: ReadonlyMap<string, LoadedPolicy>;
  private readonly fullId: string;
  /** The set without approval forbids; undefined when there are none. */
  private readonly baseId: string | undefined;

  constructor(set: CompiledPolicySet) {
    this.policySet = set;
    this.version = set.version;
    this.byId = new Map(set.policies.map((p) => [p.id, p]));
    // cedar-wasm caches preparsed sets by id for the life of the process; ids derive
    // from the version, so equal sets share one cache slot. The schema was checked at
    // load (compilePolicySet); requests are well-typed by construction (see call()).
    this.fullId = `${set.version}:all`;
    const preparse = (id: string, policies: readonly LoadedPolicy[]) => {
      const r = cedar.preparsePolicySet(id, { staticPolicies: Object.fromEntries(policies.map((p) => [p.id, p.text])) });
      if (r.type === 'failure') throw new PolicyError('POLICY_INVALID', `cannot preparse the policy set: ${r.errors.map((e) => e.message).join('; ')}`);
    };
    preparse(this.fullId, set.policies);
    const hasApproval = set.policies.some((p) => p.approval);
    this.baseId = hasApproval ? `${set.version}:base` : undefined;
    if (this.baseId !== undefined) preparse(this.baseId, set.policies.filter((p) => !p.approval));
  }

  /**
   * Decides one request. Never throws for a request that passed {@link checkRequest}'s
   * shape: anything Cedar cannot evaluate is a `deny` (fail closed) whose reasons say why.
   */
  decide(request: PolicyRequest): PolicyDecision {
    const started = performance.now();
    const now = request.now === undefined ? new Date().toISOString() : isoTime(request.now, 'now');
    const result = this.evaluate(request, now);
    return { ...result, policyVersion: this.version, evaluatedAt: now, durationMs: round3(performance.now() - started) };
  }

  private reasonOf(id: string, fallback: string): string {
    return this.byId.get(id)?.reason ?? fallback;
  }

  private evaluate(request: PolicyRequest, now: string): Pick<DecisionPart, 'effect' | 'policies' | 'reasons'> {
    const deny = (policies: string[], reasons: string[]) => ({ effect: 'deny' as const, policies, reasons });
    const args = fitToType(request.arguments ?? {}, this.policySet.argumentsType, 'arguments');
    if (!args.ok) return deny([], [`${args.path} ${args.message}; denied (fail closed)`]);
    const resourceType = ACTION_RESOURCE_TYPE[request.action];
    const id = targetId(request.target);
    const approvalStatus = request.approval?.status ?? 'none';
    const context: Record<string, CedarJson> = {
      arguments: args.value,
      session: {
        id: request.session.id,
        scope: [...request.session.scope],
        inScope: scopeCovers(request.session.scope, request.target),
        expiresAt: datetime(isoTime(request.session.expiresAt, 'session.expiresAt')),
        depth: request.session.depth,
        initiator: request.session.initiator,
        ...(request.session.objective !== undefined ? { objective: request.session.objective } : {}),
      },
      approval: { status: approvalStatus, granted: approvalStatus === 'granted' },
      target: { name: id, server: request.target.server },
      now: datetime(now),
    };
    const principalType = PRINCIPAL_ENTITY_TYPE[request.principal.type];
    const entities: EntityJson[] = [{ uid: { type: resourceType, id }, attrs: {}, parents: [{ type: 'Server', id: request.target.server }] }];
    const call = (policySetId: string) =>
      cedar.statefulIsAuthorized({
        principal: { type: principalType, id: request.principal.id },
        action: { type: 'Action', id: request.action },
        resource: { type: resourceType, id },
        context,
        entities,
        preparsedPolicySetId: policySetId,
        // The context is built here and its arguments fitted to the schema, so it is
        // well-typed by construction; validating it again per call halves throughput
        // (docs/benchmarks.md). A type error that slipped through fails closed below.
        validateRequest: false,
      });
    const what = `${request.action} on ${resourceType}::${JSON.stringify(id)}`;

    const answer = call(this.fullId);
    if (answer.type === 'failure') return deny([], [`cannot evaluate ${what}: ${answer.errors.map((e) => e.message).join('; ')}; denied (fail closed)`]);
    const { decision, diagnostics } = answer.response;
    const errored = diagnostics.errors.map((e) => ({ id: e.policyId, message: e.error.message, policy: this.byId.get(e.policyId) }));
    // A forbid that errors would silently not apply: fail closed instead.
    const brokenForbids = errored.filter((e) => e.policy?.effect === 'forbid');
    if (brokenForbids.length > 0) {
      return deny(
        brokenForbids.map((e) => e.id),
        brokenForbids.map((e) => `policy ${e.id} could not be evaluated (${e.message}); denied (fail closed)`),
      );
    }
    const erroredNotes = errored.map((e) => `policy ${e.id} could not be evaluated: ${e.message}`);
    if (decision === 'allow') {
      return { effect: 'allow', policies: diagnostics.reason, reasons: diagnostics.reason.map((p) => this.reasonOf(p, `permitted by ${p}`)) };
    }
    const satisfied = diagnostics.reason;
    if (satisfied.length === 0) return deny([], [`no policy permits ${what}`, ...erroredNotes]);
    const hard = satisfied.filter((p) => this.byId.get(p)?.approval !== true);
    if (hard.length > 0) return deny(hard, hard.map((p) => this.reasonOf(p, `forbidden by ${p}`)));

    // Only approval forbids stand in the way: would the call be permitted without them?
    const base = call(this.baseId!);
    if (base.type === 'failure') return deny(satisfied, [`cannot evaluate ${what}: ${base.errors.map((e) => e.message).join('; ')}; denied (fail closed)`]);
    if (base.response.decision !== 'allow') return deny([], [`no policy permits ${what}`, ...erroredNotes]);
    const permits = base.response.diagnostics.reason;
    if (approvalStatus === 'granted') {
      return {
        effect: 'allow',
        policies: [...permits, ...satisfied],
        reasons: [...permits.map((p) => this.reasonOf(p, `permitted by ${p}`)), ...satisfied.map((p) => `approved by a human as ${p} requires`)],
      };
    }
    return { effect: 'approval_required', policies: satisfied, reasons: satisfied.map((p) => this.reasonOf(p, `a human must approve this call (${p})`)) };
  }
}
