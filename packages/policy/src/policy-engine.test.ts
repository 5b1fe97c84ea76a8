import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { validateEnvelope } from '@custody/core';
import { describe, expect, it } from 'vitest';

import { PolicyError } from './errors.js';
import { parsePolicyCases, runPolicyCases } from './policy-cases.js';
import { checkRequest, PolicyEngine, type PolicyRequest } from './policy-engine.js';
import { compilePolicySet, loadPolicySet } from './policy-set.js';

const examples = fileURLToPath(new URL('../../../examples/policies', import.meta.url));
const engine = new PolicyEngine(loadPolicySet(examples));

const base: PolicyRequest = {
  action: 'tools/call',
  principal: { type: 'agent', id: 'agent:refunds' },
  target: { server: 'payments', name: 'transfer' },
  arguments: { amount: 250000, currency: 'EUR' },
  session: { id: 's-1', scope: ['payments.*'], expiresAt: '2026-11-22T12:00:00Z', depth: 0, initiator: 'alice@example.com' },
  now: '2026-11-22T10:00:00Z',
};

describe('PolicyEngine', () => {
  it('passes the example cases', () => {
    const cases = parsePolicyCases(JSON.parse(readFileSync(`${examples}/cases.json`, 'utf8')));
    const failed = runPolicyCases(engine, cases).filter((r) => !r.pass);
    expect(failed).toEqual([]);
  });

  it("returns a decision that is the envelope's decision part, unchanged", () => {
    const decision = engine.decide(base);
    expect(decision).toMatchObject({ effect: 'approval_required', policies: ['transfer-needs-approval'], policyVersion: engine.version, evaluatedAt: '2026-11-22T10:00:00.000Z' });
    expect(decision.durationMs).toBeGreaterThanOrEqual(0);
    const env = validateEnvelope({
      v: 1,
      id: '01900000-0000-7000-8000-000000000000',
      tenant: 'acme',
      type: 'policy.decided',
      time: '2026-11-22T10:00:00.000Z',
      recordedAt: '2026-11-22T10:00:00.000Z',
      session: { id: 's-1', seq: 1, prev: null },
      initiator: { type: 'human', id: 'alice@example.com' },
      actor: { type: 'service', id: 'gateway' },
      tool: { name: 'payments.transfer' },
      decision,
    });
    expect(env.decision).toEqual(decision);
  });

  it('lifts an approval forbid only when the approval is granted, never a hard forbid', () => {
    expect(engine.decide({ ...base, approval: { status: 'pending' } }).effect).toBe('approval_required');
    expect(engine.decide({ ...base, approval: { status: 'granted' } }).effect).toBe('allow');
    expect(engine.decide({ ...base, arguments: { amount: 250000, currency: 'USD' }, approval: { status: 'granted' } })).toMatchObject({ effect: 'deny', policies: ['transfer-currency'] });
  });

  it('asks for approval only when some policy would permit the call', () => {
    const set = compilePolicySet([
      { name: 'a.cedar', text: '@id("ask") @approval("required") forbid (principal, action, resource);\n@id("some") permit (principal, action, resource) when { context.session.depth == 0 };' },
    ]);
    const e = new PolicyEngine(set);
    expect(e.decide(base).effect).toBe('approval_required');
    expect(e.decide({ ...base, session: { ...base.session, depth: 1 } })).toMatchObject({ effect: 'deny', policies: [] });
  });

  it('fails closed on arguments of the wrong type and on a forbid that errors', () => {
    expect(engine.decide({ ...base, arguments: { amount: 12.5, currency: 'EUR' } })).toMatchObject({ effect: 'deny', policies: [] });
    expect(engine.decide({ ...base, arguments: { amount: 2500, currency: ['EUR'] } }).reasons[0]).toContain('arguments.currency');
    // Undeclared arguments are dropped, not an error.
    expect(engine.decide({ ...base, arguments: { amount: 2500, currency: 'EUR', memo: { any: 'thing' } } }).effect).toBe('allow');
    const set = compilePolicySet([
      { name: 'a.cedar', text: '@id("p") permit (principal, action, resource);\n@id("f") forbid (principal, action, resource) when { context.arguments has x && context.arguments.x * 4611686018427387904 > 1 };' },
      { name: 's.cedarschema', text: 'type Arguments = { x?: Long };' },
    ]);
    const e = new PolicyEngine(set);
    expect(e.decide({ ...base, arguments: { x: 0 } }).effect).toBe('allow');
    const overflow = e.decide({ ...base, arguments: { x: 4 } });
    expect(overflow).toMatchObject({ effect: 'deny', policies: ['f'] });
    expect(overflow.reasons[0]).toContain('fail closed');
  });

  it('supports nested, set and decimal arguments through common types', () => {
    const set = compilePolicySet([
      { name: 'a.cedar', text: '@id("p") permit (principal, action, resource) when { context.arguments has money && context.arguments.money.value.lessThan(decimal("10.5")) && context.arguments has tags && context.arguments.tags.contains("ok") };' },
      { name: 's.cedarschema', text: 'type Money = { value: decimal };\ntype Arguments = { money?: Money, tags?: Set<String> };' },
    ]);
    const e = new PolicyEngine(set);
    expect(e.decide({ ...base, arguments: { money: { value: 3.25 }, tags: ['ok'] } }).effect).toBe('allow');
    expect(e.decide({ ...base, arguments: { money: { value: 30 }, tags: ['ok'] } }).effect).toBe('deny');
    expect(e.decide({ ...base, arguments: { money: {}, tags: ['ok'] } }).reasons[0]).toContain('arguments.money.value is required');
  });

  it('rejects malformed requests with POLICY_REQUEST_INVALID naming the field', () => {
    const bad = (r: unknown, field: string) => {
      try {
        checkRequest(r);
      } catch (err) {
        expect(err).toBeInstanceOf(PolicyError);
        expect((err as PolicyError).code).toBe('POLICY_REQUEST_INVALID');
        expect((err as PolicyError).message.startsWith(field)).toBe(true);
        return;
      }
      throw new Error(`accepted ${JSON.stringify(r)}`);
    };
    bad(null, 'request');
    bad({ ...base, action: 'tools/delete' }, 'action');
    bad({ ...base, principal: { type: 'robot', id: 'x' } }, 'principal.type');
    bad({ ...base, target: { server: 'a.b', name: 'x' } }, 'target.server');
    bad({ ...base, session: { ...base.session, expiresAt: 'tomorrow' } }, 'session.expiresAt');
    bad({ ...base, session: { ...base.session, depth: -1 } }, 'session.depth');
    bad({ ...base, approval: { status: 'maybe' } }, 'approval.status');
    expect(() => parsePolicyCases({ cases: [{ name: 'x', request: {}, expect: 'allow' }] })).toThrow(expect.objectContaining({ code: 'POLICY_CASES_INVALID' }) as Error);
    expect(() => parsePolicyCases({ cases: [{ name: 'x', request: base, expect: 'maybe' }] })).toThrow(/expect must be one of/);
  });
});
