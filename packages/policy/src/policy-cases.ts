/**
 * Policy unit cases: requests with the decision each should get. Used by
 * `custody policy test DIR --cases FILE`. See docs/policies.md, "Testing policies".
 */
import { type DecisionEffect, DECISION_EFFECTS } from '@custody/core';

import { PolicyError } from './errors.js';
import { checkRequest, type PolicyDecision, type PolicyEngine, type PolicyRequest } from './policy-engine.js';

/** One case: a request and the expected effect (and, optionally, the policies that must decide it). */
export interface PolicyCase {
  name: string;
  request: PolicyRequest;
  expect: DecisionEffect;
  /** When given, each of these ids must be among the decision's policies. */
  policies?: string[];
}

/** A case's outcome. */
export interface PolicyCaseResult {
  name: string;
  pass: boolean;
  expected: DecisionEffect;
  decision: PolicyDecision;
  /** Why it failed, when it did. */
  failure?: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Merges `over` into `base`: objects merge key by key, anything else replaces. */
function merge(base: unknown, over: unknown): unknown {
  if (!isObject(base) || !isObject(over)) return over === undefined ? base : over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = merge(base[k], v);
  return out;
}

/**
 * Checks a parsed cases document (client-controlled): either an array of cases
 * or `{ "defaults": <partial request>, "cases": [...] }`, where each case's
 * `request` is merged over `defaults` (objects key by key; `arguments` too).
 * @throws PolicyError `POLICY_CASES_INVALID` naming the case and field
 */
export function parsePolicyCases(doc: unknown): PolicyCase[] {
  const list = Array.isArray(doc) ? doc : isObject(doc) ? doc['cases'] : undefined;
  const defaults = isObject(doc) ? doc['defaults'] : undefined;
  if (!Array.isArray(list)) throw new PolicyError('POLICY_CASES_INVALID', 'expected an array of cases or { "defaults": {…}, "cases": [ … ] }');
  if (defaults !== undefined && !isObject(defaults)) throw new PolicyError('POLICY_CASES_INVALID', 'defaults: expected an object (a partial request)');
  if (list.length === 0) throw new PolicyError('POLICY_CASES_INVALID', 'cases: there are no cases');
  return list.map((c: unknown, i) => {
    const at = `cases[${i}]`;
    if (!isObject(c)) throw new PolicyError('POLICY_CASES_INVALID', `${at}: expected { "name", "request", "expect" }`);
    const name = typeof c['name'] === 'string' && c['name'] !== '' ? c['name'] : at;
    if (!DECISION_EFFECTS.includes(c['expect'] as DecisionEffect)) {
      throw new PolicyError('POLICY_CASES_INVALID', `${at} (${name}): expect must be one of ${DECISION_EFFECTS.join(', ')}`);
    }
    const pol = c['policies'];
    if (pol !== undefined && !(Array.isArray(pol) && pol.every((p) => typeof p === 'string'))) {
      throw new PolicyError('POLICY_CASES_INVALID', `${at} (${name}): policies must be an array of policy ids`);
    }
    let request: PolicyRequest;
    try {
      request = checkRequest(merge(defaults ?? {}, c['request'] ?? {}));
    } catch (err) {
      if (err instanceof PolicyError) throw new PolicyError('POLICY_CASES_INVALID', `${at} (${name}): request.${err.message}`, { cause: err });
      throw err;
    }
    return { name, request, expect: c['expect'] as DecisionEffect, ...(pol !== undefined ? { policies: pol as string[] } : {}) };
  });
}

/** Runs each case through `engine`. */
export function runPolicyCases(engine: PolicyEngine, cases: readonly PolicyCase[]): PolicyCaseResult[] {
  return cases.map((c) => {
    const decision = engine.decide(c.request);
    let failure: string | undefined;
    if (decision.effect !== c.expect) failure = `expected ${c.expect}, got ${decision.effect}${decision.reasons.length > 0 ? ` (${decision.reasons.join('; ')})` : ''}`;
    else {
      const missing = (c.policies ?? []).filter((p) => !decision.policies.includes(p));
      if (missing.length > 0) failure = `expected policies ${missing.join(', ')} among [${decision.policies.join(', ')}]`;
    }
    return { name: c.name, pass: failure === undefined, expected: c.expect, decision, ...(failure !== undefined ? { failure } : {}) };
  });
}
