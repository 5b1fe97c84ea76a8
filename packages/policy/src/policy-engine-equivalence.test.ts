/**
 * PolicyEngine against a reference: the engine as it was before slicing (the whole
 * set preparsed as written, the whole context and the resource entity on every call,
 * and a second evaluation without the approval forbids on the approval path). Every
 * decision must be the same. Cedar reports the policies it found as an unordered set,
 * so the reference's lists are compared as sets (with each policy paired to its
 * reason); the engine's own lists must be in policy-set order.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { fitToType, type CedarJson } from './arguments.js';
import { cedar } from './cedar.js';
import { PolicyError } from './errors.js';
import { parsePolicyCases } from './policy-cases.js';
import { type ApprovalStatus, PolicyEngine, type PolicyRequest, scopeCovers, targetId } from './policy-engine.js';
import { asPermitText, type Needs, policyFacts, project, scopeMatches } from './policy-facts.js';
import { type CompiledPolicySet, compilePolicySet, readPolicyFolder } from './policy-set.js';
import { ACTION_RESOURCE_TYPE, POLICY_ACTIONS, PRINCIPAL_ENTITY_TYPE } from './schema.js';

const examples = fileURLToPath(new URL('../../../examples/policies', import.meta.url));

type Effects = { effect: string; policies: string[]; reasons: string[] };

/** The engine's evaluation before slicing, kept here as the reference. */
class ReferenceEngine {
  private readonly byId: Map<string, CompiledPolicySet['policies'][number]>;
  private readonly fullId: string;
  private readonly baseId: string | undefined;

  constructor(private readonly set: CompiledPolicySet) {
    this.byId = new Map(set.policies.map((p) => [p.id, p]));
    this.fullId = `reference:${set.version}:all`;
    const preparse = (id: string, ps: typeof set.policies) => cedar.preparsePolicySet(id, { staticPolicies: Object.fromEntries(ps.map((p) => [p.id, p.text])) });
    preparse(this.fullId, set.policies);
    this.baseId = set.policies.some((p) => p.approval) ? `reference:${set.version}:base` : undefined;
    if (this.baseId !== undefined) preparse(this.baseId, set.policies.filter((p) => !p.approval));
  }

  decide(request: PolicyRequest): Effects {
    const now = new Date(request.now ?? '').toISOString();
    const reasonOf = (id: string, fallback: string) => this.byId.get(id)?.reason ?? fallback;
    const deny = (policies: string[], reasons: string[]) => ({ effect: 'deny', policies, reasons });
    const args = fitToType(request.arguments ?? {}, this.set.argumentsType, 'arguments');
    if (!args.ok) return deny([], [`${args.path} ${args.message}; denied (fail closed)`]);
    const resourceType = ACTION_RESOURCE_TYPE[request.action];
    const id = targetId(request.target);
    const approvalStatus = request.approval?.status ?? 'none';
    const datetime = (iso: string): CedarJson => ({ __extn: { fn: 'datetime', arg: iso } });
    const context: Record<string, CedarJson> = {
      arguments: args.value,
      session: {
        id: request.session.id,
        scope: [...request.session.scope],
        inScope: scopeCovers(request.session.scope, request.target),
        expiresAt: datetime(new Date(request.session.expiresAt).toISOString()),
        depth: request.session.depth,
        initiator: request.session.initiator,
        ...(request.session.objective !== undefined ? { objective: request.session.objective } : {}),
      },
      approval: { status: approvalStatus, granted: approvalStatus === 'granted' },
      target: { name: id, server: request.target.server },
      now: datetime(now),
    };
    const call = (policySetId: string) =>
      cedar.statefulIsAuthorized({
        principal: { type: PRINCIPAL_ENTITY_TYPE[request.principal.type], id: request.principal.id },
        action: { type: 'Action', id: request.action },
        resource: { type: resourceType, id },
        context,
        entities: [{ uid: { type: resourceType, id }, attrs: {}, parents: [{ type: 'Server', id: request.target.server }] }],
        preparsedPolicySetId: policySetId,
        validateRequest: false,
      });
    const what = `${request.action} on ${resourceType}::${JSON.stringify(id)}`;
    const answer = call(this.fullId);
    if (answer.type === 'failure') return deny([], [`cannot evaluate ${what}: ${answer.errors.map((e) => e.message).join('; ')}; denied (fail closed)`]);
    const { decision, diagnostics } = answer.response;
    const errored = diagnostics.errors.map((e) => ({ id: e.policyId, message: e.error.message, policy: this.byId.get(e.policyId) }));
    const brokenForbids = errored.filter((e) => e.policy?.effect === 'forbid');
    if (brokenForbids.length > 0) {
      return deny(
        brokenForbids.map((e) => e.id),
        brokenForbids.map((e) => `policy ${e.id} could not be evaluated (${e.message}); denied (fail closed)`),
      );
    }
    const erroredNotes = errored.map((e) => `policy ${e.id} could not be evaluated: ${e.message}`);
    if (decision === 'allow') return { effect: 'allow', policies: diagnostics.reason, reasons: diagnostics.reason.map((p) => reasonOf(p, `permitted by ${p}`)) };
    const satisfied = diagnostics.reason;
    if (satisfied.length === 0) return deny([], [`no policy permits ${what}`, ...erroredNotes]);
    const hard = satisfied.filter((p) => this.byId.get(p)?.approval !== true);
    if (hard.length > 0) return deny(hard, hard.map((p) => reasonOf(p, `forbidden by ${p}`)));
    const base = call(this.baseId!);
    if (base.type === 'failure') return deny(satisfied, [`cannot evaluate ${what}: ${base.errors.map((e) => e.message).join('; ')}; denied (fail closed)`]);
    if (base.response.decision !== 'allow') return deny([], [`no policy permits ${what}`, ...erroredNotes]);
    const permits = base.response.diagnostics.reason;
    if (approvalStatus === 'granted') {
      return {
        effect: 'allow',
        policies: [...permits, ...satisfied],
        reasons: [...permits.map((p) => reasonOf(p, `permitted by ${p}`)), ...satisfied.map((p) => `approved by a human as ${p} requires`)],
      };
    }
    return { effect: 'approval_required', policies: satisfied, reasons: satisfied.map((p) => reasonOf(p, `a human must approve this call (${p})`)) };
  }
}

/** A decision with its lists as sets (and each policy paired with its reason when they pair up). */
function normal(d: Effects) {
  const pairs = d.policies.length === d.reasons.length ? d.policies.map((p, i) => `${p} => ${d.reasons[i]}`).sort() : null;
  return { effect: d.effect, policies: [...d.policies].sort(), reasons: [...d.reasons].sort(), pairs };
}

/** Decides `requests` with both engines and expects the same decisions, the engine's lists in policy-set order; returns the effects. */
function expectSame(set: CompiledPolicySet, requests: readonly PolicyRequest[]): string[] {
  const effects: string[] = [];
  const engine = new PolicyEngine(set);
  const reference = new ReferenceEngine(set);
  const position = new Map(set.policies.map((p, i) => [p.id, i]));
  for (const r of requests) {
    const got = engine.decide(r);
    effects.push(got.reasons.some((x) => x.startsWith('cannot evaluate')) ? 'failure' : got.reasons.some((x) => x.includes('could not be evaluated')) ? 'error' : got.effect);
    expect({ request: r, decision: normal(got) }).toEqual({ request: r, decision: normal(reference.decide(r)) });
    const approvedLast = got.effect === 'allow' && got.reasons.some((x) => x.startsWith('approved by a human'));
    if (!approvedLast) {
      const at = got.policies.map((p) => position.get(p)!);
      expect(at).toEqual([...at].sort((a, b) => a - b));
    }
  }
  return effects;
}

const base: PolicyRequest = {
  action: 'tools/call',
  principal: { type: 'agent', id: 'agent:a' },
  target: { server: 'payments', name: 'transfer' },
  arguments: { amount: 250000, currency: 'EUR' },
  session: { id: 's-1', scope: ['payments.*', 'files.read_file', 'crm.*'], expiresAt: '2026-11-22T12:00:00Z', depth: 0, initiator: 'alice@example.com' },
  now: '2026-11-22T10:00:00Z',
};
const STATUSES: ApprovalStatus[] = ['none', 'pending', 'granted', 'denied', 'expired'];

describe('PolicyEngine decides as the two-call reference does', () => {
  it('on the example policies and cases, under every approval status', () => {
    const set = compilePolicySet(readPolicyFolder(examples));
    const cases = parsePolicyCases(JSON.parse(readFileSync(`${examples}/cases.json`, 'utf8')));
    expectSame(
      set,
      cases.flatMap((c) => STATUSES.map((status) => ({ ...c.request, approval: { status } }))),
    );
  });

  it('on the benchmark set (examples plus per-server rules)', () => {
    let extra = '';
    for (const s of ['crm', 'tickets', 'git']) {
      extra += `@id("${s}-read")\npermit (principal is Agent, action == Action::"tools/call", resource in Server::"${s}")\nwhen { context.session.depth <= 2 };\n\n`;
      extra += `@id("${s}-bulk")\nforbid (principal, action == Action::"tools/call", resource in Server::"${s}")\nwhen { context.arguments has amount && context.arguments.amount > 10000 };\n\n`;
    }
    const set = compilePolicySet([...readPolicyFolder(examples), { name: '40-generated.cedar', text: extra }]);
    const requests: PolicyRequest[] = [];
    for (const [server, name] of [['files', 'read_file'], ['payments', 'transfer'], ['crm', 'lookup'], ['git', 'push'], ['admin', 'drop']] as const) {
      for (const args of [{}, { amount: 2500, currency: 'EUR' }, { amount: 250000, currency: 'EUR' }, { amount: 9000000, currency: 'USD' }, { path: '/a/.env' }]) {
        for (const status of STATUSES) requests.push({ ...base, target: { server, name }, arguments: args, approval: { status } });
      }
    }
    expectSame(set, requests);
  });

  it('when errors, failures and times Cedar cannot read are involved', () => {
    const set = compilePolicySet([
      {
        name: 'a.cedar',
        text: [
          '@id("p") permit (principal, action, resource);',
          '@id("ask") @approval("required") forbid (principal, action, resource) when { context.arguments has x && context.arguments.x > 1 };',
          '@id("f") forbid (principal, action, resource) when { context.arguments has x && context.arguments.x * 4611686018427387904 > 1 };',
          '@id("g") permit (principal, action, resource) when { context.arguments has y && context.arguments.y * 4611686018427387904 > 1 };',
          '@id("price") forbid (principal, action, resource) when { context.arguments has price && context.arguments.price.greaterThan(decimal("100.0")) };',
        ].join('\n'),
      },
      { name: 's.cedarschema', text: 'type Arguments = { x?: Long, y?: Long, price?: decimal };' },
    ]);
    expectSame(set, [
      { ...base, arguments: {} },
      { ...base, arguments: { x: 0 } },
      { ...base, arguments: { x: 4 } },
      { ...base, arguments: { y: 4 } },
      { ...base, arguments: { price: 1e21 } },
      { ...base, arguments: { price: 150 } },
      { ...base, arguments: { price: 'not a decimal' } },
      { ...base, now: '9999-12-31T23:30:00-01:00' },
      { ...base, session: { ...base.session, expiresAt: '9999-12-31T23:30:00-01:00' } },
      // Requests that did not pass checkRequest: Cedar refuses them, and says why.
      { ...base, principal: { type: 'robot' as 'agent', id: 'r' } },
      { ...base, action: 'tools/delete' as 'tools/call' },
      { ...base, session: { ...base.session, depth: 1.5 } },
    ]);
  });

  it('when there are more distinct slices than the engine preparses', () => {
    const n = 300;
    const text = Array.from({ length: n }, (_, i) => `@id("a${i}") permit (principal == Agent::"a${i}", action, resource) when { context.session.depth < ${i % 3} };`).join('\n');
    const set = compilePolicySet([{ name: 'a.cedar', text: `${text}\n@id("deep") forbid (principal, action, resource) when { context.session.depth > 1 };` }]);
    expectSame(
      set,
      Array.from({ length: n + 5 }, (_, i) => ({ ...base, principal: { type: 'agent' as const, id: `a${i}` }, session: { ...base.session, depth: i % 4 } })),
    );
  });

  it('on generated policy sets and requests (property)', () => {
    let compiled = 0;
    const seen = new Set<string>();
    const servers = ['payments', 'files', 'crm', 'admin'];
    const often = <T,>(common: T, rare: fc.Arbitrary<T>) => fc.oneof({ weight: 2, arbitrary: fc.constant(common) }, { weight: 1, arbitrary: rare });
    const principalScope = often('principal', fc.constantFrom('principal is Agent', 'principal is Human', 'principal == Agent::"a1"', 'principal in Agent::"a2"', 'principal is Agent in Agent::"a1"'));
    const actionScope = often('action', fc.constantFrom('action == Action::"tools/call"', 'action in [Action::"tools/list", Action::"resources/list"]', 'action in Action::"tools/call"', 'action == Action::"prompts/get"'));
    const resourceScope = often(
      'resource',
      fc.constantFrom(
      'resource is Tool',
      'resource == Tool::"payments.transfer"',
      ...servers.map((s) => `resource in Server::"${s}"`),
      'resource is Tool in Server::"files"',
      'resource is Resource',
      ),
    );
    const condition = fc.constantFrom(
      'context.session.inScope',
      'context.now >= context.session.expiresAt',
      'context.session.depth > 1',
      'context.session.depth <= 2',
      'context.arguments has amount && context.arguments.amount > 100000',
      'context.arguments has amount && context.arguments.amount > 0 && context.arguments has currency',
      'context.arguments has currency && context.arguments.currency != "EUR"',
      'context.arguments has path && context.arguments.path like "*.env"',
      'context.arguments has x && context.arguments.x * 4611686018427387904 > 1',
      'context.approval.granted',
      'context.approval.status == "pending"',
      'context.target.server == "crm"',
      'context.target == { name: "files.read_file", server: "files" }',
      'context.session.scope.contains("crm.*")',
      'context.session has objective && context.session.objective like "*refund*"',
      'context has now',
      'resource in Server::"payments"',
      'principal == Agent::"a1"',
      'if context.session.depth == 0 then context.session.inScope else false',
      'context.arguments has money.value && context.arguments.money.value.lessThan(decimal("10.5"))',
      'context.session.initiator == "alice@example.com"',
      'context.session.depth >= 0',
    );
    const policy = fc.record({
      effect: fc.constantFrom('permit', 'forbid', 'forbid-approval'),
      principal: principalScope,
      action: actionScope,
      resource: resourceScope,
      conditions: fc.array(fc.record({ kind: fc.constantFrom('when', 'unless'), body: condition }), { maxLength: 2 }),
    });
    const args = fc.record(
      {
        amount: fc.oneof(fc.integer({ min: -10, max: 10_000_000 }), fc.constant('12')),
        currency: fc.constantFrom('EUR', 'USD'),
        path: fc.constantFrom('/srv/a.json', '/srv/.env'),
        x: fc.integer({ min: 0, max: 3 }),
        money: fc.record({ value: fc.oneof(fc.double({ min: 0, max: 30, noNaN: true }), fc.constant(1e21)) }, { requiredKeys: [] }),
        memo: fc.string(),
      },
      { requiredKeys: [] },
    );
    const request = fc.record({
      action: often<PolicyRequest['action']>('tools/call', fc.constantFrom(...POLICY_ACTIONS)),
      principal: fc.record({ type: often<PolicyRequest['principal']['type']>('agent', fc.constantFrom('human', 'workload')), id: fc.constantFrom('a1', 'a2', 'a3') }),
      target: fc.record({ server: fc.constantFrom(...servers), name: fc.constantFrom('transfer', 'read_file', 'lookup') }),
      arguments: args,
      depth: fc.integer({ min: 0, max: 3 }),
      scope: fc.subarray(['payments.*', 'files.read_file', 'crm.lookup', 'admin.*']),
      objective: fc.option(fc.constantFrom('a refund', 'a report'), { nil: undefined }),
      expiresAt: fc.constantFrom('2026-11-22T12:00:00Z', '2026-11-22T09:00:00Z', '9999-12-31T23:30:00-01:00'),
      now: fc.constantFrom('2026-11-22T10:00:00Z', '2026-11-22T10:00:00.123+02:00'),
      approval: fc.constantFrom(...STATUSES),
    });
    fc.assert(
      fc.property(fc.array(policy, { minLength: 2, maxLength: 8 }), fc.array(request, { minLength: 1, maxLength: 12 }), (policies, requests) => {
        const text = policies
          .map((p, i) => {
            const head = p.effect === 'forbid-approval' ? `@id("p${i}") @approval("required") forbid` : `@id("p${i}") ${p.effect}`;
            return `${head} (${p.principal}, ${p.action}, ${p.resource}) ${p.conditions.map((c) => `${c.kind} { ${c.body} }`).join(' ')};`;
          })
          .join('\n');
        let set: CompiledPolicySet | undefined;
        try {
          set = compilePolicySet([
            { name: 'a.cedar', text },
            { name: 's.cedarschema', text: 'type Money = { value: decimal };\ntype Arguments = { amount?: Long, currency?: String, path?: String, x?: Long, money?: Money };' },
          ]);
        } catch (err) {
          // A generated policy the strict validator rejects (e.g. comparing a Human with an Agent).
          if (!(err instanceof PolicyError && err.code === 'POLICY_INVALID')) throw err;
        }
        fc.pre(set !== undefined);
        compiled++;
        const effects = expectSame(
          set,
          requests.map((r) => ({
            action: r.action,
            principal: r.principal,
            target: r.target,
            arguments: r.arguments,
            session: { id: 's-1', scope: r.scope, expiresAt: r.expiresAt, depth: r.depth, initiator: 'alice@example.com', ...(r.objective !== undefined ? { objective: r.objective } : {}) },
            approval: { status: r.approval },
            now: r.now,
          })),
        );
        for (const e of effects) seen.add(e);
      }),
      { numRuns: Number(process.env['POLICY_EQUIVALENCE_RUNS'] ?? 80), seed: 20261201 },
    );
    expect(compiled).toBeGreaterThanOrEqual(30);
    expect([...seen].sort()).toEqual(['allow', 'approval_required', 'deny', 'error', 'failure']);
  });
});

describe('policyFacts', () => {
  const factsOf = (text: string) => {
    const j = cedar.policyToJson(text);
    if (j.type === 'failure') throw new Error(j.errors[0]!.message);
    return policyFacts(j.json);
  };
  const paths = (n: Needs, at = ''): string[] =>
    n.all ? [at === '' ? '*' : at] : [...n.attrs].flatMap(([k, v]) => paths(v, at === '' ? k : `${at}.${k}`));

  it('finds the context a policy reads, whole where it is used as a value', () => {
    expect(paths(factsOf('permit (principal, action, resource) when { context.arguments has amount && context.arguments.amount > 1 && context.session.scope.contains("x") };').context)).toEqual([
      'arguments.amount',
      'session.scope',
    ]);
    expect(paths(factsOf('permit (principal, action, resource) when { context.target == { name: "a", server: "b" } || context has now };').context)).toEqual(['target', 'now']);
    expect(paths(factsOf('permit (principal, action, resource) when { context.arguments has a.b };').context)).toEqual(['arguments.a.b']);
    expect(factsOf('permit (principal, action, resource) when { context == {} };').context.all).toBe(true);
    expect(factsOf('permit (principal, action, resource);')).toMatchObject({ scopeOnly: true, entity: false });
  });

  it('knows when a policy needs the resource entity', () => {
    expect(factsOf('permit (principal, action, resource == Tool::"a.b");')).toMatchObject({ entity: false, scopeEntity: false, exactScope: true });
    expect(factsOf('permit (principal, action, resource in Server::"a");')).toMatchObject({ entity: false, scopeEntity: true, exactScope: true });
    expect(factsOf('permit (principal, action, resource) when { resource in Server::"a" };').entity).toBe(true);
    expect(factsOf('permit (principal, action, resource) when { principal in Server::"a" };').entity).toBe(true);
  });

  it('matches scopes as Cedar does for the engine’s entities', () => {
    const r = { principal: { type: 'Agent', id: 'a' }, action: { type: 'Action', id: 'tools/call' }, resource: { type: 'Tool', id: 's.t' }, server: { type: 'Server', id: 's' } };
    const m = (text: string) => scopeMatches(factsOf(text), r);
    expect(m('permit (principal is Agent, action == Action::"tools/call", resource in Server::"s");')).toBe(true);
    expect(m('permit (principal in Agent::"a", action in [Action::"tools/list", Action::"tools/call"], resource is Tool in Tool::"s.t");')).toBe(true);
    expect(m('permit (principal is Human, action, resource);')).toBe(false);
    expect(m('permit (principal, action == Action::"tools/list", resource);')).toBe(false);
    expect(m('permit (principal, action, resource in Server::"other");')).toBe(false);
    expect(m('permit (principal, action, resource is Resource);')).toBe(false);
  });

  it('projects a context to what is read, keeping absent attributes absent', () => {
    const f = factsOf('permit (principal, action, resource) when { context.arguments has amount && context.session.depth > 0 && context.now > context.session.expiresAt };');
    const dt = { __extn: { fn: 'datetime', arg: '2026-01-01' } };
    expect(project({ arguments: { currency: 'EUR' }, session: { depth: 1, id: 's', expiresAt: dt }, now: dt, target: { name: 'x' } }, f.context)).toEqual({
      arguments: {},
      session: { depth: 1, expiresAt: dt },
      now: dt,
    });
  });
});

describe('asPermitText', () => {
  it('turns the effect to permit past annotations, comments and tricky strings, and nothing else', () => {
    expect(asPermitText('forbid (principal, action, resource);')).toBe('permit (principal, action, resource);');
    expect(asPermitText('@id("a") @reason("forbid \\"x\\" (here)")\n// forbid\n@approval("required")\nforbid(principal, action, resource) when { 4611686018427387904 > 1 };')).toBe(
      '@id("a") @reason("forbid \\"x\\" (here)")\n// forbid\n@approval("required")\npermit(principal, action, resource) when { 4611686018427387904 > 1 };',
    );
    expect(asPermitText('@flag forbid (principal, action, resource);')).toBe('@flag permit (principal, action, resource);');
    expect(asPermitText('permit (principal, action, resource);')).toBe('permit (principal, action, resource);');
    expect(asPermitText('@id("a" forbid (principal, action, resource);')).toBeUndefined();
    expect(asPermitText('forbidden (principal, action, resource);')).toBeUndefined();
  });

  it('opens the scope, past strings and comments in it', () => {
    expect(asPermitText('@id("x") forbid (\n  principal == Agent::"a)b", // ) here\n  action in [Action::"tools/call"],\n  resource in Server::"s"\n) when { true };', true)).toBe(
      '@id("x") permit (principal, action, resource) when { true };',
    );
    expect(asPermitText('permit(principal,action,resource);', true)).toBe('permit (principal, action, resource);');
    expect(asPermitText('permit principal;', true)).toBeUndefined();
  });
});
