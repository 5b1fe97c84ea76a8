/**
 * A hand-compiled check of the v1 envelope for the ingest path: it says "valid"
 * only for input that the zod schema of envelope.ts (and its commitment check)
 * accepts, without allocating, so validation costs a walk over the fields.
 * When it says "not sure", the zod schema decides and writes the error message,
 * so error codes, fields and messages are the schema's, exactly as before.
 *
 * It is conservative by construction: every rule below is the schema's rule or a
 * stricter one (objects must be plain, records must have no symbol keys), and
 * anything it does not model makes it answer false. test/property and
 * envelope.test.ts check that it never accepts what the schema rejects, and that
 * it accepts what Custody itself writes.
 * @internal
 */

const DIGEST = /^[A-Za-z0-9_-]{43}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const TENANT = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const HEX2 = /^[0-9a-f]{2}$/;
const ALL_ZERO = /^0+$/;

/** What the fast check needs from envelope.ts (passed in, so the modules do not import each other in a cycle). */
export interface FastEnvelopeRules {
  isEventType: (type: string) => boolean;
  isSessionlessType: (type: string) => boolean;
  isRealTime: (s: string) => boolean;
  commitmentKey: string;
}

type Obj = Record<string, unknown>;

const digit = (s: string, i: number): number => s.charCodeAt(i) - 48;
const two = (s: string, i: number): number => digit(s, i) * 10 + digit(s, i + 1);

/**
 * For a string that matches the envelope's TIME pattern: true when its date and
 * time exist, computed from the digits (the Gregorian calendar, hours 00-23,
 * minutes and seconds 00-59). Answers only for the ECMAScript date-time format
 * (at most 3 fraction digits), which every engine's Date.parse reads the same
 * way; for more digits it returns undefined and the caller asks Date.parse.
 */
export function realTimeByDigits(s: string): boolean | undefined {
  if (s.length > 24) return undefined;
  const year = two(s, 0) * 100 + two(s, 2);
  const month = two(s, 5);
  const day = two(s, 8);
  if (month < 1 || month > 12 || day < 1) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
  return day <= days && two(s, 11) <= 23 && two(s, 14) <= 59 && two(s, 17) <= 59;
}

/** A plain object (as zod's isObject and isPlainObject both accept): prototype Object.prototype or null. */
function plain(v: unknown): v is Obj {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Every key `for...in` yields (what zod's strict objects look at) is one of `allowed`. */
function onlyKeys(o: Obj, allowed: ReadonlySet<string>): boolean {
  for (const k in o) if (!allowed.has(k)) return false;
  return true;
}

const text = (v: unknown, max: number): boolean => typeof v === 'string' && v.length >= 1 && v.length <= max;
const optText = (v: unknown, max: number): boolean => v === undefined || text(v, max);
const str = (v: unknown): v is string => typeof v === 'string';
const bool = (v: unknown): boolean => typeof v === 'boolean';
const optBool = (v: unknown): boolean => v === undefined || typeof v === 'boolean';
const intIn = (v: unknown, min: number, max: number): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;
const digest = (v: unknown): boolean => typeof v === 'string' && DIGEST.test(v);

function textArray(v: unknown, item: number, max: number): boolean {
  if (!Array.isArray(v) || v.length > max) return false;
  for (let i = 0; i < v.length; i++) if (!text(v[i], item)) return false;
  return true;
}

const keys = (...k: string[]): ReadonlySet<string> => new Set(k);
const PRINCIPAL_KEYS = keys('type', 'id', 'issuer', 'name', 'verified');
const PRINCIPAL_TYPES: ReadonlySet<unknown> = new Set(['human', 'agent', 'workload', 'service']);
const SESSION_KEYS = keys('id', 'seq', 'prev', 'parent', 'objective');
const LINK_KEYS = keys('principal', 'scope', 'session');
const WORKLOAD_KEYS = keys('method', 'verified', 'spiffeId', 'issuer', 'subject');
const WORKLOAD_METHODS: ReadonlySet<unknown> = new Set(['jwt-svid', 'x509-svid', 'oidc', 'api-key', 'unverified']);
const TRACE_KEYS = keys('traceId', 'spanId', 'flags', 'state');
const TOOL_KEYS = keys('name', 'server', 'callId');
const DECISION_KEYS = keys('effect', 'policyVersion', 'policies', 'reasons', 'evaluatedAt', 'durationMs');
const EFFECTS: ReadonlySet<unknown> = new Set(['allow', 'deny', 'approval_required']);
const APPROVAL_KEYS = keys('id', 'status', 'approver', 'source', 'expiresAt', 'argumentsDigest', 'reason');
const APPROVAL_STATUS: ReadonlySet<unknown> = new Set(['pending', 'granted', 'denied', 'expired']);
const CREDENTIAL_KEYS = keys('jti', 'fingerprint', 'scope', 'audience', 'issuedAt', 'expiresAt', 'depth');
const SEAL_KEYS = keys('count', 'head');
const ENVELOPE_KEYS = keys(
  'v', 'id', 'tenant', 'type', 'time', 'recordedAt', 'session', 'initiator', 'actor', 'chain', 'workload',
  'cause', 'trace', 'tool', 'decision', 'approval', 'credential', 'seal', 'data',
);

function principal(v: unknown): boolean {
  return (
    plain(v) &&
    onlyKeys(v, PRINCIPAL_KEYS) &&
    PRINCIPAL_TYPES.has(v['type']) &&
    text(v['id'], 512) &&
    optText(v['issuer'], 512) &&
    optText(v['name'], 256) &&
    optBool(v['verified'])
  );
}

/** A zod record of strings to `value`: a plain object, no symbol keys, every enumerable own string key's value passes. */
function record(v: unknown, value: (x: unknown) => boolean): boolean {
  if (!plain(v) || Object.getOwnPropertySymbols(v).length > 0) return false;
  for (const k of Object.keys(v)) if (!value(v[k])) return false;
  return true;
}

/** Builds the fast check over the schema's own predicates. */
export function fastEnvelopeCheck(rules: FastEnvelopeRules): (value: unknown) => boolean {
  const { isEventType, isSessionlessType, isRealTime, commitmentKey } = rules;
  const time = (v: unknown): boolean => typeof v === 'string' && TIME.test(v) && (realTimeByDigits(v) ?? isRealTime(v));
  const optTime = (v: unknown): boolean => v === undefined || time(v);
  const sessionId = (v: unknown): boolean => typeof v === 'string' && SESSION_ID.test(v);

  function session(v: unknown): boolean {
    if (!plain(v) || !onlyKeys(v, SESSION_KEYS)) return false;
    const seq = v['seq'];
    const prev = v['prev'];
    return (
      sessionId(v['id']) &&
      intIn(seq, 1, Number.MAX_SAFE_INTEGER) &&
      (prev === null || digest(prev)) &&
      // The envelope's own rule: prev is null exactly when seq is 1.
      (seq === 1) === (prev === null) &&
      (v['parent'] === undefined || sessionId(v['parent'])) &&
      optText(v['objective'], 4096)
    );
  }

  function chain(v: unknown): boolean {
    if (!Array.isArray(v) || v.length > 64) return false;
    for (let i = 0; i < v.length; i++) {
      const link: unknown = v[i];
      if (!plain(link) || !onlyKeys(link, LINK_KEYS) || !principal(link['principal'])) return false;
      if (link['scope'] !== undefined && !textArray(link['scope'], 256, 256)) return false;
      if (link['session'] !== undefined && !sessionId(link['session'])) return false;
    }
    return true;
  }

  function workload(v: unknown): boolean {
    if (!plain(v) || !onlyKeys(v, WORKLOAD_KEYS)) return false;
    const spiffeId = v['spiffeId'];
    return (
      WORKLOAD_METHODS.has(v['method']) &&
      bool(v['verified']) &&
      (spiffeId === undefined || (str(spiffeId) && spiffeId.startsWith('spiffe://') && spiffeId.length <= 2048)) &&
      optText(v['issuer'], 512) &&
      optText(v['subject'], 512) &&
      (spiffeId !== undefined || v['subject'] !== undefined)
    );
  }

  function trace(v: unknown): boolean {
    if (!plain(v) || !onlyKeys(v, TRACE_KEYS)) return false;
    const { traceId, spanId, flags, state } = v;
    return (
      str(traceId) && HEX32.test(traceId) && !ALL_ZERO.test(traceId) &&
      str(spanId) && HEX16.test(spanId) && !ALL_ZERO.test(spanId) &&
      (flags === undefined || (str(flags) && HEX2.test(flags))) &&
      (state === undefined || (str(state) && state.length <= 512))
    );
  }

  function tool(v: unknown): boolean {
    return plain(v) && onlyKeys(v, TOOL_KEYS) && text(v['name'], 256) && optText(v['server'], 256) && optText(v['callId'], 256);
  }

  function decision(v: unknown): boolean {
    if (!plain(v) || !onlyKeys(v, DECISION_KEYS)) return false;
    const d = v['durationMs'];
    return (
      EFFECTS.has(v['effect']) &&
      text(v['policyVersion'], 128) &&
      textArray(v['policies'], 256, 256) &&
      textArray(v['reasons'], 2048, 256) &&
      optTime(v['evaluatedAt']) &&
      (d === undefined || (typeof d === 'number' && Number.isFinite(d) && d >= 0))
    );
  }

  function approval(v: unknown): boolean {
    if (!plain(v) || !onlyKeys(v, APPROVAL_KEYS)) return false;
    return (
      text(v['id'], 128) &&
      (v['status'] === undefined || APPROVAL_STATUS.has(v['status'])) &&
      (v['approver'] === undefined || principal(v['approver'])) &&
      (v['source'] === undefined || record(v['source'], (x) => typeof x === 'string' && x.length <= 1024)) &&
      optTime(v['expiresAt']) &&
      (v['argumentsDigest'] === undefined || digest(v['argumentsDigest'])) &&
      optText(v['reason'], 4096)
    );
  }

  function credential(v: unknown): boolean {
    if (!plain(v) || !onlyKeys(v, CREDENTIAL_KEYS)) return false;
    const aud = v['audience'];
    return (
      text(v['jti'], 256) &&
      digest(v['fingerprint']) &&
      (v['scope'] === undefined || textArray(v['scope'], 256, 256)) &&
      (aud === undefined || text(aud, 512) || textArray(aud, 512, 32)) &&
      optTime(v['issuedAt']) &&
      optTime(v['expiresAt']) &&
      (v['depth'] === undefined || intIn(v['depth'], 0, 64))
    );
  }

  function seal(v: unknown): boolean {
    return plain(v) && onlyKeys(v, SEAL_KEYS) && intIn(v['count'], 1, Number.MAX_SAFE_INTEGER) && digest(v['head']);
  }

  /** No object in `node` misuses the reserved commitment key (the same walk as envelope.ts, without paths). */
  function commitmentsOk(node: unknown): boolean {
    if (node === null || typeof node !== 'object') return true;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) if (i in node && !commitmentsOk(node[i])) return false;
      return true;
    }
    const obj = node as Obj;
    if (commitmentKey in obj) {
      const value = obj[commitmentKey];
      return Object.keys(obj).length === 1 && typeof value === 'string' && DIGEST.test(value);
    }
    for (const k of Object.keys(obj)) if (!commitmentsOk(obj[k])) return false;
    return true;
  }

  return function isValidEnvelope(e: unknown): boolean {
    if (!plain(e) || !onlyKeys(e, ENVELOPE_KEYS)) return false;
    const type = e['type'];
    if (
      e['v'] !== 1 ||
      !(typeof e['id'] === 'string' && UUID.test(e['id'])) ||
      !(typeof e['tenant'] === 'string' && TENANT.test(e['tenant'])) ||
      !(typeof type === 'string' && isEventType(type)) ||
      !time(e['time']) ||
      !time(e['recordedAt']) ||
      !principal(e['actor'])
    ) {
      return false;
    }
    const { session: s, initiator, chain: c, workload: w, cause, trace: t, tool: tl, decision: d, approval: a, credential: cr, seal: sl, data } = e;
    if (s !== undefined && !session(s)) return false;
    if (initiator !== undefined && !principal(initiator)) return false;
    if (c !== undefined && !chain(c)) return false;
    if (w !== undefined && !workload(w)) return false;
    if (cause !== undefined && !(typeof cause === 'string' && UUID.test(cause))) return false;
    if (t !== undefined && !trace(t)) return false;
    if (tl !== undefined && !tool(tl)) return false;
    if (d !== undefined && !decision(d)) return false;
    if (a !== undefined && !approval(a)) return false;
    if (cr !== undefined && !credential(cr)) return false;
    if (sl !== undefined && !seal(sl)) return false;
    if (data !== undefined && !record(data, () => true)) return false;
    // The per-type requirements (the schema's superRefine).
    if (!isSessionlessType(type) && (s === undefined || initiator === undefined)) return false;
    if ((type.startsWith('tool.') || type === 'policy.decided') && tl === undefined) return false;
    if (type === 'policy.decided' && d === undefined) return false;
    if (type.startsWith('approval.') && a === undefined) return false;
    if (type.startsWith('credential.') && cr === undefined) return false;
    if ((type === 'session.closed') !== (sl !== undefined)) return false;
    return data === undefined || commitmentsOk(data);
  };
}
