/**
 * The versioned event envelope (v1): its types, the event taxonomy, and
 * validation whose errors name the field. See docs/format.md, "The envelope".
 */
import * as z from 'zod';

import { fastEnvelopeCheck } from './envelope-fast.js';
import { FormatError } from './errors.js';

/** The envelope version this module writes and reads. */
export const ENVELOPE_VERSION = 1 as const;

/** Principal types. Agents are first-class, never folded into the user. */
export const PRINCIPAL_TYPES = ['human', 'agent', 'workload', 'service'] as const;
export type PrincipalType = (typeof PRINCIPAL_TYPES)[number];

/** The v1 event taxonomy (extend, don't rename). `admin.*` and `external.*` are open families. */
export const EVENT_TYPES = [
  'session.opened',
  'session.delegated',
  'session.closed',
  'session.revoked',
  'session.expired',
  'prompt.received',
  'model.output',
  'tool.requested',
  'policy.decided',
  'approval.requested',
  'approval.granted',
  'approval.denied',
  'approval.expired',
  'tool.completed',
  'tool.failed',
  'credential.issued',
  'credential.revoked',
  'credential.expired',
] as const;
export type KnownEventType = (typeof EVENT_TYPES)[number];
export type EventType = KnownEventType | `admin.${string}` | `external.${string}`;

const KNOWN_TYPES: ReadonlySet<string> = new Set(EVENT_TYPES);
const FAMILY_TYPE = /^(admin|external)\.[a-z0-9_]+(\.[a-z0-9_]+)*$/;

/** True when `type` is in the v1 taxonomy (including the `admin.*` and `external.*` families). */
export function isEventType(type: string): type is EventType {
  return KNOWN_TYPES.has(type) || FAMILY_TYPE.test(type);
}

/**
 * Event types only Custody's own services record: an answered approval, a credential's
 * life, a revocation or expiry. The server refuses them (and every `admin.*`, which
 * records the ledger's own governance) from any key but an admin key, so that an ingest
 * key cannot forge the human approval a report counts or a revocation that never
 * happened; the SDK refuses them before sending. See isCustodyOnlyType.
 */
export const CUSTODY_ONLY_TYPES: ReadonlySet<string> = new Set<KnownEventType>([
  'approval.granted',
  'approval.denied',
  'approval.expired',
  'credential.issued',
  'credential.revoked',
  'credential.expired',
  'session.revoked',
  'session.expired',
]);

/** True for a type only Custody itself (or an admin key) records: CUSTODY_ONLY_TYPES and `admin.*`. */
export function isCustodyOnlyType(type: string): boolean {
  return type.startsWith('admin.') || CUSTODY_ONLY_TYPES.has(type);
}

/** True for types that need no session: `admin.*` and `external.*`. */
export function isSessionlessType(type: string): boolean {
  return type.startsWith('admin.') || type.startsWith('external.');
}

/** The digest of an entry in the session chain: base64url of its RFC 6962 leaf hash. */
const DIGEST = /^[A-Za-z0-9_-]{43}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const TENANT = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** True when the calendar date and time exist (Date.parse rolls 2026-02-30 over; this does not). */
function isRealTime(s: string): boolean {
  const ms = Date.parse(s);
  return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 19) === s.slice(0, 19);
}

const digest = z.string().regex(DIGEST, 'expected a base64url SHA-256 digest (43 characters)');
const uuid = z.string().regex(UUID, 'expected a lowercase UUID');
const time = z
  .string()
  .regex(TIME, 'expected an RFC 3339 UTC time such as 2026-11-22T06:00:00.000Z')
  .refine(isRealTime, 'not a real date and time');
const text = (max: number) => z.string().min(1, 'must not be empty').max(max, `at most ${max} characters`);
const scope = z.array(text(256)).max(256);

const principal = z.strictObject({
  type: z.enum(PRINCIPAL_TYPES),
  id: text(512),
  issuer: text(512).optional(),
  name: text(256).optional(),
  verified: z.boolean().optional(),
});
export type Principal = z.infer<typeof principal>;

const sessionRef = z.strictObject({
  id: z.string().regex(SESSION_ID, 'expected 1-128 characters of A-Z a-z 0-9 . _ : -'),
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  prev: digest.nullable(),
  parent: z.string().regex(SESSION_ID).optional(),
  objective: text(4096).optional(),
});
export type SessionRef = z.infer<typeof sessionRef>;

const delegationLink = z.strictObject({
  principal,
  scope: scope.optional(),
  session: z.string().regex(SESSION_ID).optional(),
});
export type DelegationLink = z.infer<typeof delegationLink>;

const workload = z
  .strictObject({
    method: z.enum(['jwt-svid', 'x509-svid', 'oidc', 'api-key', 'unverified']),
    verified: z.boolean(),
    spiffeId: z.string().startsWith('spiffe://', 'expected a spiffe:// ID').max(2048).optional(),
    issuer: text(512).optional(),
    subject: text(512).optional(),
  })
  .refine((w) => w.spiffeId !== undefined || w.subject !== undefined, 'needs spiffeId or subject');
export type Workload = z.infer<typeof workload>;

const trace = z.strictObject({
  traceId: z
    .string()
    .regex(/^[0-9a-f]{32}$/, 'expected 32 lowercase hex digits')
    .refine((s) => !/^0+$/.test(s), 'must not be all zero'),
  spanId: z
    .string()
    .regex(/^[0-9a-f]{16}$/, 'expected 16 lowercase hex digits')
    .refine((s) => !/^0+$/.test(s), 'must not be all zero'),
  flags: z.string().regex(/^[0-9a-f]{2}$/).optional(),
  state: z.string().max(512).optional(),
});
export type TraceContext = z.infer<typeof trace>;

const tool = z.strictObject({
  name: text(256),
  server: text(256).optional(),
  callId: text(256).optional(),
});
export type ToolPart = z.infer<typeof tool>;

/** A policy decision's effect. */
export const DECISION_EFFECTS = ['allow', 'deny', 'approval_required'] as const;
export type DecisionEffect = (typeof DECISION_EFFECTS)[number];

const decision = z.strictObject({
  effect: z.enum(DECISION_EFFECTS),
  policyVersion: text(128),
  policies: z.array(text(256)).max(256),
  reasons: z.array(text(2048)).max(256),
  evaluatedAt: time.optional(),
  durationMs: z.number().nonnegative().optional(),
});
export type DecisionPart = z.infer<typeof decision>;

const approval = z.strictObject({
  id: text(128),
  status: z.enum(['pending', 'granted', 'denied', 'expired']).optional(),
  approver: principal.optional(),
  source: z.record(z.string(), z.string().max(1024)).optional(),
  expiresAt: time.optional(),
  argumentsDigest: digest.optional(),
  reason: text(4096).optional(),
});
export type ApprovalPart = z.infer<typeof approval>;

const credential = z.strictObject({
  jti: text(256),
  fingerprint: digest,
  scope: scope.optional(),
  audience: z.union([text(512), z.array(text(512)).max(32)]).optional(),
  issuedAt: time.optional(),
  expiresAt: time.optional(),
  depth: z.number().int().min(0).max(64).optional(),
});
export type CredentialPart = z.infer<typeof credential>;

const seal = z.strictObject({
  count: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  head: digest,
});
export type SealPart = z.infer<typeof seal>;

const jsonObject = z.record(z.string(), z.unknown());

const envelope = z
  .strictObject({
    v: z.literal(ENVELOPE_VERSION),
    id: uuid,
    tenant: z.string().regex(TENANT, 'expected 1-63 characters of a-z 0-9 . _ - starting with a letter or digit'),
    type: z.string().refine(isEventType, 'not an event type of the v1 taxonomy'),
    time,
    recordedAt: time,
    session: sessionRef.optional(),
    initiator: principal.optional(),
    actor: principal,
    chain: z.array(delegationLink).max(64).optional(),
    workload: workload.optional(),
    cause: uuid.optional(),
    trace: trace.optional(),
    tool: tool.optional(),
    decision: decision.optional(),
    approval: approval.optional(),
    credential: credential.optional(),
    seal: seal.optional(),
    data: jsonObject.optional(),
  })
  .superRefine((e, ctx) => {
    const need = (field: keyof typeof e, why: string) => {
      if (e[field] === undefined) ctx.addIssue({ code: 'custom', path: [field], message: `required ${why}` });
    };
    if (!isSessionlessType(e.type)) {
      need('session', `for ${e.type}`);
      need('initiator', `for ${e.type}`);
    }
    if (e.type.startsWith('tool.') || e.type === 'policy.decided') need('tool', `for ${e.type}`);
    if (e.type === 'policy.decided') need('decision', 'for policy.decided');
    if (e.type.startsWith('approval.')) need('approval', `for ${e.type}`);
    if (e.type.startsWith('credential.')) need('credential', `for ${e.type}`);
    if (e.type === 'session.closed') need('seal', 'for session.closed');
    if (e.seal !== undefined && e.type !== 'session.closed') {
      ctx.addIssue({ code: 'custom', path: ['seal'], message: 'only session.closed carries a seal' });
    }
    if (e.session !== undefined && (e.session.seq === 1) !== (e.session.prev === null)) {
      ctx.addIssue({
        code: 'custom',
        path: ['session', 'prev'],
        message: 'must be null exactly when seq is 1',
      });
    }
  });

/** A sealed v1 envelope: what an entry's bytes are the canonical JSON of. */
export interface Envelope {
  v: typeof ENVELOPE_VERSION;
  id: string;
  tenant: string;
  type: EventType;
  time: string;
  recordedAt: string;
  session?: SessionRef;
  initiator?: Principal;
  actor: Principal;
  chain?: DelegationLink[];
  workload?: Workload;
  cause?: string;
  trace?: TraceContext;
  tool?: ToolPart;
  decision?: DecisionPart;
  approval?: ApprovalPart;
  credential?: CredentialPart;
  seal?: SealPart;
  data?: Record<string, unknown>;
}

/** Formats a zod issue path as `session.seq` / `chain[0].principal.id`. */
function fieldName(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(envelope)' : out;
}

/** One problem found by validation, naming the field. */
export interface FieldIssue {
  field: string;
  message: string;
}

/**
 * Validates `value` as a sealed v1 envelope.
 * @returns the issues found, each naming its field; empty when valid.
 */
export function envelopeIssues(value: unknown): FieldIssue[] {
  // The hand-compiled check says "valid" only where the schema below would; otherwise the schema decides and words the issues.
  if (isValidEnvelope(value)) return [];
  return schemaIssues(value);
}

/**
 * The issues the zod schema and the commitment check find, without the fast check
 * in front (what envelopeIssues returned before it had one).
 * @internal
 */
export function schemaIssues(value: unknown): FieldIssue[] {
  const result = envelope.safeParse(value);
  if (result.success) return commitmentIssues(value as Envelope);
  return result.error.issues.map((i) => ({ field: fieldName(i.path), message: i.message }));
}

/**
 * Validates `value` as a sealed v1 envelope and returns it typed.
 * @throws FormatError `ENVELOPE_INVALID` naming the first bad field (all are in the message).
 */
export function validateEnvelope(value: unknown): Envelope {
  const issues = envelopeIssues(value);
  if (issues.length > 0) {
    const first = issues[0]!;
    const all = issues.map((i) => `${i.field}: ${i.message}`).join('; ');
    throw new FormatError('ENVELOPE_INVALID', `invalid envelope: ${all}`, { field: first.field });
  }
  return value as Envelope;
}

/** The reserved key of a commitment object, `{ "$commitment": "<digest>" }`. */
export const COMMITMENT_KEY = '$commitment';

/** Checks that every object using the reserved `$commitment` key is a well-formed commitment. */
function commitmentIssues(env: Envelope): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const walk = (node: unknown, path: string) => {
    if (node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      node.forEach((item, i) => walk(item, `${path}[${i}]`));
      return;
    }
    const obj = node as Record<string, unknown>;
    if (COMMITMENT_KEY in obj) {
      const keys = Object.keys(obj);
      const value = obj[COMMITMENT_KEY];
      if (keys.length !== 1 || typeof value !== 'string' || !DIGEST.test(value)) {
        issues.push({
          field: path,
          message: 'a commitment must be exactly { "$commitment": "<43-character base64url digest>" }',
        });
      }
      return;
    }
    for (const [k, v] of Object.entries(obj)) walk(v, `${path}.${k}`);
  };
  if (env.data !== undefined) walk(env.data, 'data');
  return issues;
}

/** The fast check of envelope-fast.ts, over this module's own predicates. */
const isValidEnvelope = fastEnvelopeCheck({ isEventType, isSessionlessType, isRealTime, commitmentKey: COMMITMENT_KEY });

/**
 * True when the hand-compiled check alone accepts `value` (the schema is then
 * certain to). Exported for the tests that hold the two to the same verdict.
 * @internal
 */
export function fastEnvelopeAccepts(value: unknown): boolean {
  return isValidEnvelope(value);
}
