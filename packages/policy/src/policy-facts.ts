/**
 * What each policy needs from a request, worked out once per policy set from the
 * policy's JSON form (Cedar's EST): which requests its scope can match, which parts
 * of `context` its conditions read, and whether it needs the resource's entity (the
 * tool's parent server). PolicyEngine uses these facts to hand Cedar only the
 * policies whose scope matches (with that scope opened, since it is known to match),
 * with only the context they read, and to decide a policy without conditions by its
 * scope alone. Cedar's answer is the same: a policy whose scope does not match is
 * neither satisfied nor in error (scope constraints cannot error), and a policy's
 * value depends on `context` only through the attributes it reads. Anything this
 * analysis does not recognise counts as "matches every request, reads all of the
 * context, needs the entity".
 * @internal
 */
import type { CedarJson } from './arguments.js';

/** An entity reference as the EST writes it. @internal */
export interface Uid {
  type: string;
  id: string;
}

/** A principal or resource scope constraint. `unknown` (e.g. a template slot) matches everything. @internal */
export type EntityScope =
  | { op: 'any' }
  | { op: 'unknown' }
  | { op: '=='; uid: Uid }
  | { op: 'in'; uid: Uid }
  | { op: 'is'; type: string; in?: Uid };

/** An action scope constraint: any action, or one of these (Custody's schema has no action groups). @internal */
export type ActionScope = { op: 'any' } | { op: 'unknown' } | { op: 'oneOf'; uids: Uid[] };

/** The parts of a value that policies read: all of it, or some of its attributes (recursively). @internal */
export interface Needs {
  all: boolean;
  attrs: Map<string, Needs>;
}

/** Facts about one policy. @internal */
export interface PolicyFacts {
  principal: EntityScope;
  action: ActionScope;
  resource: EntityScope;
  /** What its conditions read of `context`. */
  context: Needs;
  /** True when its scope may need the resource entity and its parent (an `in` on the resource). */
  scopeEntity: boolean;
  /** True when its conditions may need the resource entity (they mention `resource` or an entity literal). */
  entity: boolean;
  /** True when every part of its scope is understood here, so that {@link scopeMatches} is exact. */
  exactScope: boolean;
  /** True when it has no conditions and a scope fully understood here: it is satisfied exactly when {@link scopeMatches}. */
  scopeOnly: boolean;
}

/** The entities of a request, as PolicyEngine builds them: the principal has no parents; the resource's one parent is its server. @internal */
export interface ScopeRequest {
  principal: Uid;
  action: Uid;
  resource: Uid;
  server: Uid;
}

/** Needs nothing (yet). @internal */
export function needsNothing(): Needs {
  return { all: false, attrs: new Map() };
}

/** Marks all of the value at `path` (below `n`) as needed. */
function need(n: Needs, path: readonly string[]): void {
  let at = n;
  for (const a of path) {
    if (at.all) return;
    let next = at.attrs.get(a);
    if (next === undefined) {
      next = needsNothing();
      at.attrs.set(a, next);
    }
    at = next;
  }
  at.all = true;
  at.attrs.clear();
}

/** Adds what `from` needs to `into`. @internal */
export function mergeNeeds(into: Needs, from: Needs): void {
  if (into.all) return;
  if (from.all) {
    into.all = true;
    into.attrs.clear();
    return;
  }
  for (const [k, v] of from.attrs) {
    let t = into.attrs.get(k);
    if (t === undefined) {
      t = needsNothing();
      into.attrs.set(k, t);
    }
    mergeNeeds(t, v);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function uidOf(v: unknown): Uid | undefined {
  if (!isObject(v)) return undefined;
  const u = isObject(v['__entity']) ? v['__entity'] : v;
  return typeof u['type'] === 'string' && typeof u['id'] === 'string' ? { type: u['type'], id: u['id'] } : undefined;
}

function entityScope(v: unknown): EntityScope {
  if (!isObject(v)) return { op: 'unknown' };
  const op = v['op'];
  if (op === 'All') return { op: 'any' };
  if (op === 'is' && typeof v['entity_type'] === 'string') {
    if (v['in'] === undefined) return { op: 'is', type: v['entity_type'] };
    const inUid = isObject(v['in']) ? uidOf(v['in']['entity']) : undefined;
    return inUid === undefined ? { op: 'unknown' } : { op: 'is', type: v['entity_type'], in: inUid };
  }
  if (op === '==' || op === 'in') {
    const uid = uidOf(v['entity']);
    return uid === undefined ? { op: 'unknown' } : { op, uid };
  }
  return { op: 'unknown' };
}

function actionScope(v: unknown): ActionScope {
  if (!isObject(v)) return { op: 'unknown' };
  if (v['op'] === 'All') return { op: 'any' };
  if (v['op'] === '==' || v['op'] === 'in') {
    const list = v['op'] === 'in' && Array.isArray(v['entities']) ? (v['entities'] as unknown[]) : [v['entity']];
    const uids = list.map(uidOf);
    return uids.every((u): u is Uid => u !== undefined) ? { op: 'oneOf', uids } : { op: 'unknown' };
  }
  return { op: 'unknown' };
}

/** Thrown inside the walk on an expression it does not recognise. */
class Unrecognised extends Error {}

const UNARY = new Set(['!', 'neg', 'isEmpty']);
const BINARY = new Set(['==', '!=', 'in', '<', '<=', '>', '>=', '&&', '||', '+', '-', '*', 'contains', 'containsAll', 'containsAny', 'getTag', 'hasTag']);
const VARS = new Set(['principal', 'action', 'resource', 'context']);

/** The attribute path of `context.a.b…`, or undefined when `e` is not such a chain. */
function contextPath(e: unknown): string[] | undefined {
  if (!isObject(e)) return undefined;
  if (e['Var'] === 'context' && Object.keys(e).length === 1) return [];
  const g = e['.'];
  if (!isObject(g) || typeof g['attr'] !== 'string' || Object.keys(e).length !== 1) return undefined;
  const left = contextPath(g['left']);
  return left === undefined ? undefined : [...left, g['attr']];
}

function walk(e: unknown, facts: { context: Needs; entity: boolean }): void {
  if (!isObject(e)) throw new Unrecognised();
  const keys = Object.keys(e);
  if (keys.length !== 1) throw new Unrecognised();
  const path = contextPath(e);
  if (path !== undefined) {
    need(facts.context, path);
    return;
  }
  const k = keys[0]!;
  const v = e[k];
  const sub = (x: unknown) => walk(x, facts);
  if (k === 'Value') {
    // A literal: it reads nothing, but an entity literal may be looked up in the entities.
    if (JSON.stringify(v).includes('__entity')) facts.entity = true;
    return;
  }
  if (k === 'Var') {
    if (typeof v !== 'string' || !VARS.has(v)) throw new Unrecognised();
    if (v === 'resource') facts.entity = true;
    return;
  }
  if (UNARY.has(k) && isObject(v)) return sub(v['arg']);
  if (BINARY.has(k) && isObject(v)) {
    sub(v['left']);
    return sub(v['right']);
  }
  if (k === '.' && isObject(v) && typeof v['attr'] === 'string') return sub(v['left']);
  if (k === 'has' && isObject(v)) {
    const attr = v['attr'];
    const attrs = typeof attr === 'string' ? [attr] : Array.isArray(attr) && attr.length > 0 && attr.every((a) => typeof a === 'string') ? (attr as string[]) : undefined;
    if (attrs === undefined) throw new Unrecognised();
    const left = contextPath(v['left']);
    // `context.x has a.b` reads whether x.a and x.a.b exist: keep x.a.b whole when it does.
    if (left !== undefined) need(facts.context, [...left, ...attrs]);
    else sub(v['left']);
    return;
  }
  if (k === 'like' && isObject(v) && Array.isArray(v['pattern'])) return sub(v['left']);
  if (k === 'is' && isObject(v) && typeof v['entity_type'] === 'string') {
    sub(v['left']);
    if (v['in'] !== undefined) sub(v['in']);
    return;
  }
  if (k === 'if-then-else' && isObject(v)) {
    sub(v['if']);
    sub(v['then']);
    return sub(v['else']);
  }
  if (k === 'Record' && isObject(v)) {
    for (const x of Object.values(v)) sub(x);
    return;
  }
  if (k === 'Slot' || k === 'Unknown' || k === 'Error') throw new Unrecognised();
  // `Set` and extension calls (`decimal`, `lessThan`, `offset` …) hold a list of expressions.
  if (Array.isArray(v)) {
    for (const x of v) sub(x);
    return;
  }
  throw new Unrecognised();
}

/** Works out the facts of one policy from its EST (the JSON `policyToJson` returns). @internal */
export function policyFacts(est: unknown): PolicyFacts {
  const p = isObject(est) ? est : {};
  const facts = { context: needsNothing(), entity: false };
  const resource = entityScope(p['resource']);
  const scopeEntity = resource.op === 'in' || resource.op === 'unknown' || (resource.op === 'is' && resource.in !== undefined);
  try {
    if (!Array.isArray(p['conditions'])) throw new Unrecognised();
    for (const c of p['conditions'] as unknown[]) {
      if (!isObject(c) || (c['kind'] !== 'when' && c['kind'] !== 'unless')) throw new Unrecognised();
      walk(c['body'], facts);
    }
  } catch (err) {
    if (!(err instanceof Unrecognised)) throw err;
    facts.context = { all: true, attrs: new Map() };
    facts.entity = true;
  }
  const principal = entityScope(p['principal']);
  const action = actionScope(p['action']);
  const exactScope = principal.op !== 'unknown' && action.op !== 'unknown' && resource.op !== 'unknown';
  const scopeOnly = exactScope && Array.isArray(p['conditions']) && p['conditions'].length === 0;
  return { principal, action, resource, context: facts.context, scopeEntity, entity: facts.entity, exactScope, scopeOnly };
}

const sameUid = (a: Uid, b: Uid) => a.type === b.type && a.id === b.id;

/** True when `scope` can match `self`, an entity whose only ancestor (if any) is `parent`. */
function entityMatches(scope: EntityScope, self: Uid, parent: Uid | undefined): boolean {
  const within = (u: Uid) => sameUid(u, self) || (parent !== undefined && sameUid(u, parent));
  switch (scope.op) {
    case 'any':
    case 'unknown':
      return true;
    case '==':
      return sameUid(scope.uid, self);
    case 'in':
      return within(scope.uid);
    case 'is':
      return scope.type === self.type && (scope.in === undefined || within(scope.in));
  }
}

/**
 * True when the policy's scope can match the request: false only when Cedar would
 * certainly find the policy not satisfied, without error; exact unless the scope has
 * a part not understood here (`unknown`, which matches).
 * @internal
 */
export function scopeMatches(f: PolicyFacts, r: ScopeRequest): boolean {
  if (f.action.op === 'oneOf' && !f.action.uids.some((u) => sameUid(u, r.action))) return false;
  return entityMatches(f.principal, r.principal, undefined) && entityMatches(f.resource, r.resource, r.server);
}

/** True for a Cedar record (not a set, and not an `__extn` / `__entity` escape). */
function isRecord(v: CedarJson): v is { [k: string]: CedarJson } {
  if (typeof v !== 'object' || Array.isArray(v)) return false;
  for (const k in v) if (k.startsWith('__')) return false;
  return true;
}

/**
 * Keeps of `value` only what `needs` says is read. A needed attribute that is absent
 * stays absent (so `has` answers the same); a value that is not a record is kept whole.
 * @internal
 */
export function project(value: CedarJson, needs: Needs): CedarJson {
  if (needs.all || !isRecord(value)) return value;
  const out: { [k: string]: CedarJson } = {};
  for (const [k, n] of needs.attrs) {
    const v = value[k];
    if (v !== undefined) out[k] = project(v, n);
  }
  return out;
}

/** A scanner over policy text: whitespace and `//` comments, string literals. */
function scanner(text: string) {
  const n = text.length;
  const sc = {
    i: 0,
    space(): void {
      for (;;) {
        while (sc.i < n && /\s/.test(text[sc.i]!)) sc.i++;
        if (!text.startsWith('//', sc.i)) return;
        while (sc.i < n && text[sc.i] !== '\n') sc.i++;
      }
    },
    /** Skips the string literal at `i`; false if it does not end. */
    string(): boolean {
      for (sc.i++; sc.i < n && text[sc.i] !== '"'; sc.i++) if (text[sc.i] === '\\') sc.i++;
      if (sc.i >= n) return false;
      sc.i++;
      return true;
    },
  };
  return sc;
}

/**
 * The policy's text with its effect turned to `permit` (from `forbid`) and, with
 * `openScope`, its scope turned to `(principal, action, resource)`; undefined if the
 * text does not start as Cedar's grammar says a policy does: annotations (`@name` or
 * `@name("…")`), whitespace and `//` comments, the effect, then the scope in
 * parentheses. The rest of the text is left byte for byte (rewriting it through the
 * EST would round Long literals above 2^53 to JavaScript numbers). Callers check the
 * result with `policyToJson`.
 * @internal
 */
export function asPermitText(text: string, openScope = false): string | undefined {
  const sc = scanner(text);
  for (;;) {
    sc.space();
    if (text[sc.i] !== '@') break;
    sc.i++;
    while (sc.i < text.length && /[A-Za-z0-9_]/.test(text[sc.i]!)) sc.i++;
    sc.space();
    if (text[sc.i] !== '(') continue;
    sc.i++;
    sc.space();
    if (text[sc.i] !== '"' || !sc.string()) return undefined;
    sc.space();
    if (text[sc.i] !== ')') return undefined;
    sc.i++;
  }
  const at = sc.i;
  if (!(text.startsWith('permit', at) || text.startsWith('forbid', at)) || /[A-Za-z0-9_]/.test(text[at + 6] ?? '')) return undefined;
  const head = `${text.slice(0, at)}permit`;
  if (!openScope) return `${head}${text.slice(at + 6)}`;
  sc.i = at + 6;
  sc.space();
  if (text[sc.i] !== '(') return undefined;
  for (sc.i++; sc.i < text.length; ) {
    const c = text[sc.i];
    if (c === ')') return `${head} (principal, action, resource)${text.slice(sc.i + 1)}`;
    if (c === '"') {
      if (!sc.string()) return undefined;
    } else if (c === '(') return undefined;
    else if (text.startsWith('//', sc.i)) sc.space();
    else sc.i++;
  }
  return undefined;
}
