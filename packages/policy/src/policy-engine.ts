/**
 * Decisions: evaluates a request against a preparsed policy set and returns
 * `allow`, `deny` or `approval_required`, shaped exactly like the envelope's
 * `decision` part. See docs/policies.md, "Decisions" and "Approvals".
 */
import { isDeepStrictEqual } from 'node:util';

import { type DecisionPart, PRINCIPAL_TYPES, type PrincipalType, scopeHolds } from '@custody/core';

import { type CedarJson, fitToType } from './arguments.js';
import { cedar, type CedarType } from './cedar.js';
import { PolicyError } from './errors.js';
import { asPermitText, mergeNeeds, type Needs, needsNothing, type PolicyFacts, policyFacts, project, scopeMatches } from './policy-facts.js';
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

/** True when `scope` grants `<server>.<name>` exactly or all of the server as `<server>.*` (@custody/core's scopeHolds). */
export function scopeCovers(scope: readonly string[], target: { server: string; name: string }): boolean {
  return scopeHolds(scope, targetId(target));
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

/** `toISOString()` with a four-digit year: always a valid Cedar datetime (its ±YYYYYY years are not). */
const CEDAR_DATETIME = /^\d{4}-/;
/**
 * At most this many slices of a policy set are preparsed per engine (cedar-wasm keeps
 * each for the life of the process); requests that would need more use the whole set.
 */
const MAX_SLICES = 256;

/** A preparsed subset of the policy set: the policies whose scope matches some request. */
interface Slice {
  /** Its cedar-wasm id. */
  id: string;
  /** What its policies read of `context`. */
  context: Needs;
  /** True when its policies may need the resource entity. */
  entity: boolean;
}

/** True when a value of type `t` can make cedar-wasm refuse the context (an extension value, or an `__`-escape key). */
function mayFailToParse(t: CedarType): boolean {
  const n = t as { type: string; element?: CedarType; attributes?: Record<string, CedarType> };
  if (n.type === 'String' || n.type === 'Long' || n.type === 'Boolean' || n.type === 'Bool') return false;
  if (n.type === 'Set') return n.element === undefined || mayFailToParse(n.element);
  if (n.type === 'Record') return Object.entries(n.attributes ?? {}).some(([k, a]) => k.startsWith('__') || mayFailToParse(a));
  return true; // decimal, datetime, ipaddr, duration, or a type not known here
}

/**
 * Decides requests against one compiled policy set, with one `statefulIsAuthorized`
 * call per decision at most (the schema was applied at load). The request travels in
 * `context`, with the resource's entity (its parent is its server) when a policy needs it.
 *
 * Facts about each policy, worked out here once (policy-facts.ts), keep each call
 * small: Cedar is handed only the policies whose scope can match the request (a
 * preparsed slice per distinct set of them), and only the parts of `context` those
 * policies read; a policy without conditions is decided by its scope alone, without
 * Cedar. Every policy is preparsed as a `permit`, so that Cedar's `reason` lists every
 * satisfied policy, forbids included; the engine then combines them as Cedar would
 * (a satisfied forbid denies; otherwise a satisfied permit allows), and tells an
 * approval forbid from a hard one without a second evaluation. Decisions list their
 * policies in policy-set order.
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
  /** Policy id → its position in the set (the order decisions list policies in). */
  private readonly position: ReadonlyMap<string, number>;
  private readonly facts: readonly PolicyFacts[];
  /** Each policy's text with its effect turned to `permit`. */
  private readonly asPermit: readonly string[];
  /** The same with its scope opened to `(principal, action, resource)`, where its scope is matched exactly here. */
  private readonly asOpenPermit: readonly (string | undefined)[];
  private readonly slices = new Map<string, Slice>();
  /** The whole set (as permits, scopes kept), preparsed at construction: the fallback. */
  private readonly whole: Slice;
  private readonly argumentsMayFail: boolean;
  private lastExpiresAt: [string, string] = ['', ''];

  constructor(set: CompiledPolicySet) {
    this.policySet = set;
    this.version = set.version;
    this.byId = new Map(set.policies.map((p) => [p.id, p]));
    this.position = new Map(set.policies.map((p, i) => [p.id, i]));
    const json = (id: string, text: string) => {
      const j = cedar.policyToJson(text);
      if (j.type === 'failure') throw new PolicyError('POLICY_INVALID', `cannot read policy ${id}: ${j.errors.map((e) => e.message).join('; ')}`);
      return j.json;
    };
    const est = set.policies.map((p) => json(p.id, p.text));
    this.facts = est.map(policyFacts);
    // Each rewritten policy must be the same policy but for its effect (and scope).
    this.asPermit = set.policies.map((p, i) => {
      const text = asPermitText(p.text);
      if (text === p.text) return text;
      if (text === undefined || !isDeepStrictEqual(json(p.id, text), { ...est[i]!, effect: 'permit' })) {
        throw new PolicyError('POLICY_INVALID', `cannot prepare policy ${p.id} for evaluation: its text does not start with its annotations and effect`);
      }
      return text;
    });
    const all = { op: 'All' };
    this.asOpenPermit = set.policies.map((p, i) => {
      if (!this.facts[i]!.exactScope) return undefined;
      const text = asPermitText(p.text, true);
      const open = { ...est[i]!, effect: 'permit', principal: all, action: all, resource: all };
      return text !== undefined && isDeepStrictEqual(json(p.id, text), open) ? text : undefined;
    });
    this.argumentsMayFail = mayFailToParse(set.argumentsType);
    const whole = this.preparse(`${this.version}:permits:all`, set.policies.map((_, i) => i), false);
    if (whole === undefined) throw new PolicyError('POLICY_INVALID', 'cannot preparse the policy set');
    this.whole = whole;
  }

  /**
   * Decides one request. Never throws for a request that passed {@link checkRequest}'s
   * shape: anything Cedar cannot evaluate is a `deny` (fail closed) whose reasons say why.
   */
  decide(request: PolicyRequest): PolicyDecision {
    const started = performance.now();
    const now = request.now === undefined ? new Date().toISOString() : isoTime(request.now, 'now');
    const { effect, policies, reasons } = this.evaluate(request, now);
    return { effect, policies, reasons, policyVersion: this.version, evaluatedAt: now, durationMs: round3(performance.now() - started) };
  }

  private reasonOf(id: string, fallback: string): string {
    return this.byId.get(id)?.reason ?? fallback;
  }

  /** The slice key: a hex bit mask (four policies a digit) of the policies `member` selects. */
  private keyOf(member: (i: number) => boolean): string {
    let key = '';
    let digit = 0;
    const n = this.facts.length;
    for (let i = 0; i < n; i++) {
      if (member(i)) digit |= 1 << (i & 3);
      if ((i & 3) === 3 || i === n - 1) {
        key += digit.toString(16);
        digit = 0;
      }
    }
    return key;
  }

  /**
   * The preparsed slice for `key` (the policies whose scope matches the request), preparsing
   * it on first use; undefined if cedar-wasm refuses it. Every request with this key
   * matches the scope of every member whose scope is matched exactly here, so those
   * members go to Cedar with their scope opened, and need no resource entity for it.
   */
  private slice(key: string): Slice | undefined {
    const known = this.slices.get(key);
    if (known !== undefined) return known;
    if (this.slices.size >= MAX_SLICES) return this.whole;
    const members: number[] = [];
    for (let i = 0; i < this.facts.length; i++) if ((parseInt(key[i >> 2]!, 16) >> (i & 3)) & 1) members.push(i);
    const s = this.preparse(`${this.version}:slice:${key}`, members, true);
    if (s !== undefined) this.slices.set(key, s);
    return s;
  }

  /**
   * Preparses `members` as permits under `id` (scopes opened where allowed, with `open`).
   * cedar-wasm caches preparsed sets by id for the life of the process; ids derive from
   * the version and the members, so equal slices share one cache slot.
   */
  private preparse(id: string, members: readonly number[], open: boolean): Slice | undefined {
    const policies = this.policySet.policies;
    const context = needsNothing();
    let entity = false;
    const texts: Record<string, string> = {};
    for (const i of members) {
      const f = this.facts[i]!;
      const opened = open ? this.asOpenPermit[i] : undefined;
      texts[policies[i]!.id] = opened ?? this.asPermit[i]!;
      mergeNeeds(context, f.context);
      entity ||= f.entity || (opened === undefined && f.scopeEntity);
    }
    const r = cedar.preparsePolicySet(id, { staticPolicies: texts });
    return r.type === 'failure' ? undefined : { id, context, entity };
  }

  /** `isoTime` of a session's expiry, remembering the last one (a session's calls share it). */
  private expiresAt(v: string): string {
    if (this.lastExpiresAt[0] !== v) this.lastExpiresAt = [v, isoTime(v, 'session.expiresAt')];
    return this.lastExpiresAt[1];
  }

  /** `ids` in policy-set order, once each (Cedar reports them as an unordered set). */
  private inOrder(ids: readonly string[]): string[] {
    return [...new Set(ids)].sort((a, b) => (this.position.get(a) ?? -1) - (this.position.get(b) ?? -1));
  }

  private evaluate(request: PolicyRequest, now: string): Pick<DecisionPart, 'effect' | 'policies' | 'reasons'> {
    const deny = (policies: string[], reasons: string[]) => ({ effect: 'deny' as const, policies, reasons });
    const args = fitToType(request.arguments ?? {}, this.policySet.argumentsType, 'arguments');
    if (!args.ok) return deny([], [`${args.path} ${args.message}; denied (fail closed)`]);
    const resourceType = ACTION_RESOURCE_TYPE[request.action];
    const id = targetId(request.target);
    const approvalStatus = request.approval?.status ?? 'none';
    const expiresAt = this.expiresAt(request.session.expiresAt);
    const principal = { type: PRINCIPAL_ENTITY_TYPE[request.principal.type], id: request.principal.id };
    const action = { type: 'Action', id: request.action };
    const resource = { type: resourceType, id };
    const server = { type: 'Server', id: request.target.server };
    const what = `${request.action} on ${resourceType}::${JSON.stringify(id)}`;

    // Which policies can apply: those whose scope matches. A policy without conditions
    // is decided by its scope alone, here; the others go to Cedar, as one slice.
    const scope = { principal, action, resource, server };
    const facts = this.facts;
    const byScope: string[] = [];
    let toCedar = false;
    const key = this.keyOf((i) => {
      const f = facts[i]!;
      if (!scopeMatches(f, scope)) return false;
      if (f.scopeOnly) {
        byScope.push(this.policySet.policies[i]!.id);
        return false;
      }
      toCedar = true;
      return true;
    });
    // A request cedar-wasm might refuse to parse (a principal or resource type it has no
    // entity for, a time or argument it cannot read) goes to Cedar whole, so that it
    // fails closed with Cedar's own reason; only the others take the shortcuts.
    const plain =
      typeof principal.type === 'string' &&
      typeof resourceType === 'string' &&
      typeof principal.id === 'string' &&
      Number.isSafeInteger(request.session.depth) &&
      CEDAR_DATETIME.test(now) &&
      CEDAR_DATETIME.test(expiresAt) &&
      !(this.argumentsMayFail && Object.keys(args.value).length > 0);
    let answer: { reason: string[]; errors: { policyId: string; error: { message: string } }[] } = { reason: [], errors: [] };
    if (toCedar || !plain) {
      const session: Record<string, CedarJson> = {
        id: request.session.id,
        scope: request.session.scope as string[],
        inScope: scopeCovers(request.session.scope, request.target),
        expiresAt: datetime(expiresAt),
        depth: request.session.depth,
        initiator: request.session.initiator,
      };
      if (request.session.objective !== undefined) session['objective'] = request.session.objective;
      const context: Record<string, CedarJson> = {
        arguments: args.value,
        session,
        approval: { status: approvalStatus, granted: approvalStatus === 'granted' },
        target: { name: id, server: request.target.server },
        now: datetime(now),
      };
      const slice = this.slice(key) ?? this.whole;
      const r = cedar.statefulIsAuthorized({
        principal,
        action,
        resource,
        context: (plain ? project(context, slice.context) : context) as Record<string, CedarJson>,
        entities: slice.entity || !plain ? [{ uid: resource, attrs: {}, parents: [server] }] : [],
        preparsedPolicySetId: slice.id,
        // The context is built here and its arguments fitted to the schema, so it is
        // well-typed by construction; validating it again per call halves throughput
        // (docs/benchmarks.md). A type error that slipped through fails closed below.
        validateRequest: false,
      });
      if (r.type === 'failure') return deny([], [`cannot evaluate ${what}: ${r.errors.map((e) => e.message).join('; ')}; denied (fail closed)`]);
      answer = r.response.diagnostics;
    }
    const errored = answer.errors
      .map((e) => ({ id: e.policyId, message: e.error.message, policy: this.byId.get(e.policyId) }))
      .sort((a, b) => (this.position.get(a.id) ?? -1) - (this.position.get(b.id) ?? -1));
    // A forbid that errors would silently not apply: fail closed instead.
    const brokenForbids = errored.filter((e) => e.policy?.effect === 'forbid');
    if (brokenForbids.length > 0) {
      return deny(
        brokenForbids.map((e) => e.id),
        brokenForbids.map((e) => `policy ${e.id} could not be evaluated (${e.message}); denied (fail closed)`),
      );
    }
    const erroredNotes = errored.map((e) => `policy ${e.id} could not be evaluated: ${e.message}`);
    // Cedar evaluated every policy as a permit, so `reason` is every satisfied policy;
    // combine them as Cedar would: a satisfied forbid denies, else a satisfied permit allows.
    const satisfied = this.inOrder([...answer.reason, ...byScope]);
    const permits = satisfied.filter((p) => this.byId.get(p)?.effect === 'permit');
    const forbids = satisfied.filter((p) => this.byId.get(p)?.effect === 'forbid');
    if (forbids.length === 0) {
      if (permits.length === 0) return deny([], [`no policy permits ${what}`, ...erroredNotes]);
      return { effect: 'allow', policies: permits, reasons: permits.map((p) => this.reasonOf(p, `permitted by ${p}`)) };
    }
    const hard = forbids.filter((p) => this.byId.get(p)?.approval !== true);
    if (hard.length > 0) return deny(hard, hard.map((p) => this.reasonOf(p, `forbidden by ${p}`)));
    // Only approval forbids stand in the way: would the call be permitted without them?
    if (permits.length === 0) return deny([], [`no policy permits ${what}`, ...erroredNotes]);
    if (approvalStatus === 'granted') {
      return {
        effect: 'allow',
        policies: [...permits, ...forbids],
        reasons: [...permits.map((p) => this.reasonOf(p, `permitted by ${p}`)), ...forbids.map((p) => `approved by a human as ${p} requires`)],
      };
    }
    return { effect: 'approval_required', policies: forbids, reasons: forbids.map((p) => this.reasonOf(p, `a human must approve this call (${p})`)) };
  }
}
