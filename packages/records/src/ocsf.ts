/**
 * OCSF 1.5.0 export: tool calls as API Activity (6003), policy decisions and
 * session credentials as Authorize Session (3003), and a validator that checks an
 * event against the vendored class and object definitions
 * (../ocsf/ocsf-1.5.0-facts.json, copied from github.com/ocsf/ocsf-schema at tag
 * 1.5.0; see its `source`). The mapping table is in docs/records.md.
 */
import { readFileSync } from 'node:fs';

import type { Envelope, Principal } from '@custody/core';

/** The OCSF version the export writes and validates against. */
export const OCSF_VERSION = '1.5.0';

interface AttributeFact {
  requirement: 'required' | 'recommended' | 'optional' | 'reserved';
  type: string | null;
  object?: string;
  base?: string | null;
  array?: boolean;
  enum?: (number | string)[];
}
interface DefinitionFact {
  attributes: Record<string, AttributeFact>;
  constraints: { at_least_one?: string[]; just_one?: string[] };
}
interface ClassFact extends DefinitionFact {
  caption: string;
  class_uid: number;
  category_uid: number;
  category_name: string;
  activities: Record<string, string>;
}
/** The vendored OCSF facts. */
export interface OcsfFacts {
  source: { repository: string; tag: string; commit: string; note: string };
  version: string;
  classes: Record<string, ClassFact>;
  objects: Record<string, DefinitionFact>;
}

let cached: OcsfFacts | undefined;
/** The vendored OCSF class and object definitions. */
export function ocsfFacts(): OcsfFacts {
  cached ??= JSON.parse(readFileSync(new URL('../ocsf/ocsf-1.5.0-facts.json', import.meta.url), 'utf8')) as OcsfFacts;
  return cached;
}

/** An OCSF event as Custody writes it. */
export type OcsfEvent = Record<string, unknown> & { class_uid: number; type_uid: number };

/** Which OCSF class a Custody event type maps to, or undefined when it has none. */
export function ocsfClassOf(type: string): 'api_activity' | 'authorize_session' | undefined {
  if (type === 'tool.requested' || type === 'tool.completed' || type === 'tool.failed') return 'api_activity';
  if (type === 'policy.decided' || type.startsWith('credential.')) return 'authorize_session';
  return undefined;
}

const USER_TYPE: Record<Principal['type'], number> = { human: 1, agent: 99, workload: 99, service: 99 };

function user(p: Principal): Record<string, unknown> {
  return { uid: p.id, ...(p.name !== undefined ? { name: p.name } : {}), type_id: USER_TYPE[p.type], ...(p.type !== 'human' ? { type: p.type } : {}) };
}

/** The `actor`: initiator → actor.user, the acting agent → actor.app_name / app_uid / invoked_by, session → actor.session. */
function actor(env: Envelope): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (env.initiator !== undefined) out['user'] = user(env.initiator);
  else if (env.actor.type === 'human') out['user'] = user(env.actor);
  if (env.actor.type !== 'human' || env.initiator === undefined) {
    out['app_name'] = env.actor.name ?? env.actor.id;
    out['app_uid'] = env.actor.id;
    out['invoked_by'] = env.actor.id;
  }
  if (env.session !== undefined) out['session'] = session(env);
  return out;
}

function session(env: Envelope): Record<string, unknown> {
  const c = env.credential;
  return {
    uid: env.session!.id,
    ...(env.initiator?.issuer !== undefined ? { issuer: env.initiator.issuer } : {}),
    ...(c !== undefined ? { credential_uid: c.jti } : {}),
    ...(c?.expiresAt !== undefined ? { expiration_time: Date.parse(c.expiresAt) } : {}),
    ...(c?.issuedAt !== undefined ? { created_time: Date.parse(c.issuedAt) } : {}),
  };
}

function metadata(env: Envelope, extra: { origin?: string; digest?: string }): Record<string, unknown> {
  return {
    version: OCSF_VERSION,
    product: { name: 'Custody', vendor_name: 'Custody', ...(extra.origin !== undefined ? { uid: extra.origin } : {}) },
    uid: env.id,
    event_code: env.type,
    original_time: env.time,
    logged_time: Date.parse(env.recordedAt),
    tenant_uid: env.tenant,
    ...(env.session !== undefined ? { correlation_uid: env.session.id } : {}),
    log_name: 'custody.ledger',
  };
}

/**
 * Maps one envelope to OCSF, or undefined for a type with no OCSF class here.
 * Custody fields without an OCSF attribute go to `unmapped.custody`, including
 * `data` as given (commitments stay commitments unless the caller revealed them).
 */
export function toOcsf(env: Envelope, extra: { origin?: string; index?: number; digest?: string; redacted?: string[] } = {}): OcsfEvent | undefined {
  const cls = ocsfClassOf(env.type);
  if (cls === undefined) return undefined;
  const fact = ocsfFacts().classes[cls]!;
  const custody: Record<string, unknown> = {
    type: env.type,
    ...(env.session !== undefined ? { session: { id: env.session.id, seq: env.session.seq } } : {}),
    ...(extra.index !== undefined ? { index: extra.index } : {}),
    ...(extra.digest !== undefined ? { digest: extra.digest } : {}),
    ...(env.chain !== undefined ? { chain: env.chain.map((l) => l.principal.id) } : {}),
    ...(env.cause !== undefined ? { cause: env.cause } : {}),
    ...(env.trace !== undefined ? { trace: env.trace } : {}),
    ...(env.decision !== undefined ? { decision: env.decision } : {}),
    ...(env.data !== undefined ? { data: env.data } : {}),
    ...(extra.redacted !== undefined && extra.redacted.length > 0 ? { redacted: extra.redacted } : {}),
  };
  const base = {
    category_uid: fact.category_uid,
    category_name: fact.category_name,
    class_uid: fact.class_uid,
    class_name: fact.caption,
    time: Date.parse(env.time),
    metadata: metadata(env, extra),
    unmapped: { custody },
  };
  if (cls === 'api_activity') {
    const status = env.type === 'tool.completed' ? 1 : env.type === 'tool.failed' ? 2 : 0;
    const workload = env.workload?.spiffeId ?? env.workload?.subject;
    return {
      ...base,
      activity_id: 99,
      activity_name: env.type,
      type_uid: fact.class_uid * 100 + 99,
      type_name: `${fact.caption}: ${env.type}`,
      severity_id: env.type === 'tool.failed' ? 2 : 1,
      status_id: status,
      ...(status === 0 ? {} : { status: status === 1 ? 'Success' : 'Failure' }),
      message: `${env.type} ${env.tool?.name ?? ''}`.trim(),
      actor: actor(env),
      api: {
        operation: env.tool?.name ?? env.type,
        ...(env.tool?.server !== undefined ? { service: { name: env.tool.server } } : {}),
        request: { uid: env.tool?.callId ?? env.id },
      },
      src_endpoint: { uid: workload ?? env.actor.id, name: env.actor.id },
      ...(env.tool?.server !== undefined ? { dst_endpoint: { svc_name: env.tool.server } } : {}),
    };
  }
  // authorize_session: a decision or a credential grants (or refuses) privileges to the session.
  const effect = env.decision?.effect;
  const status = effect === 'allow' || env.type === 'credential.issued' ? 1 : effect === 'deny' ? 2 : 99;
  const privileges =
    env.type === 'policy.decided'
      ? [`tool:${env.tool?.name ?? 'unknown'}`]
      : Array.isArray(env.credential?.scope)
        ? (env.credential.scope as unknown[]).map(String)
        : [env.credential?.scope !== undefined ? String(env.credential.scope) : 'session'];
  const who = env.initiator ?? env.actor;
  return {
    ...base,
    activity_id: 1,
    activity_name: fact.activities['1'],
    type_uid: fact.class_uid * 100 + 1,
    type_name: `${fact.caption}: ${fact.activities['1']}`,
    severity_id: effect === 'deny' ? 3 : 1,
    status_id: status,
    status: status === 1 ? 'Success' : status === 2 ? 'Failure' : (effect ?? env.type.slice('credential.'.length)),
    ...(env.decision !== undefined ? { status_detail: env.decision.reasons.join('; ').slice(0, 4096) || env.decision.effect } : {}),
    message: env.type === 'policy.decided' ? `${effect} ${env.tool?.name ?? ''}`.trim() : env.type,
    user: user(who),
    actor: actor(env),
    ...(env.session !== undefined ? { session: session(env) } : {}),
    privileges,
  };
}

/** One problem found by validateOcsf, with the path of the attribute. */
export interface OcsfIssue {
  path: string;
  message: string;
}

function typeOk(value: unknown, f: AttributeFact): boolean {
  const base = f.base ?? f.type;
  switch (base) {
    case 'string_t':
      return typeof value === 'string';
    case 'integer_t':
    case 'long_t':
    case 'timestamp_t':
    case 'port_t':
      return Number.isSafeInteger(value);
    case 'float_t':
      return typeof value === 'number';
    case 'boolean_t':
      return typeof value === 'boolean';
    case 'json_t':
      return true;
    default:
      return value !== null && typeof value === 'object' && !Array.isArray(value);
  }
}

function checkDefinition(value: Record<string, unknown>, def: DefinitionFact, path: string, facts: OcsfFacts, issues: OcsfIssue[], skipEnum: ReadonlySet<string>): void {
  for (const [name, f] of Object.entries(def.attributes)) {
    if (f.requirement === 'required' && value[name] === undefined) issues.push({ path: `${path}.${name}`, message: 'required attribute missing' });
  }
  for (const [name, v] of Object.entries(value)) {
    const f = def.attributes[name];
    const at = `${path}.${name}`;
    if (f === undefined) {
      issues.push({ path: at, message: 'not an attribute of this class or object' });
      continue;
    }
    const items = f.array ? (Array.isArray(v) ? v : (issues.push({ path: at, message: 'must be an array' }), [])) : [v];
    items.forEach((item, i) => {
      const p = f.array ? `${at}[${i}]` : at;
      if (f.object !== undefined) {
        const obj = facts.objects[f.object];
        if (item === null || typeof item !== 'object' || Array.isArray(item)) issues.push({ path: p, message: `must be a ${f.object} object` });
        else if (obj !== undefined && name !== 'unmapped') checkDefinition(item as Record<string, unknown>, obj, p, facts, issues, new Set());
        return;
      }
      if (!typeOk(item, f)) issues.push({ path: p, message: `must be ${f.type}` });
      else if (f.enum !== undefined && !skipEnum.has(name) && !f.enum.includes(item as number)) issues.push({ path: p, message: `${String(item)} is not one of ${f.enum.join(', ')}` });
    });
  }
  const c = def.constraints;
  if (c.at_least_one !== undefined && !c.at_least_one.some((k) => value[k] !== undefined)) issues.push({ path, message: `needs at least one of ${c.at_least_one.join(', ')}` });
  if (c.just_one !== undefined && c.just_one.filter((k) => value[k] !== undefined).length !== 1) issues.push({ path, message: `needs exactly one of ${c.just_one.join(', ')}` });
}

/**
 * Checks an OCSF event against the vendored definitions of its class: required
 * attributes, known attribute names (recursively, except inside `unmapped`),
 * attribute types, enum ids, constraints, and class, category and type ids.
 * @returns every problem found (empty when it validates)
 */
export function validateOcsf(event: Record<string, unknown>, facts: OcsfFacts = ocsfFacts()): OcsfIssue[] {
  const cls = Object.values(facts.classes).find((c) => c.class_uid === event['class_uid']);
  if (cls === undefined) return [{ path: '$.class_uid', message: `not a vendored class: ${String(event['class_uid'])}` }];
  const issues: OcsfIssue[] = [];
  checkDefinition(event, cls, '$', facts, issues, new Set(['class_uid', 'category_uid']));
  if (event['category_uid'] !== cls.category_uid) issues.push({ path: '$.category_uid', message: `must be ${cls.category_uid}` });
  if (event['type_uid'] !== cls.class_uid * 100 + Number(event['activity_id'])) issues.push({ path: '$.type_uid', message: 'must be class_uid * 100 + activity_id' });
  return issues;
}
