/**
 * GET /v1/reports/<name>: the compliance and investigation reports over a tenant's
 * whole log (definitions in docs/api.md, "Reports"). Every row links to its session.
 * @internal
 */
import { COMPLIANCE_FRAMEWORKS, type ReportRange, type ReportRequest } from '@custody/ledger';

import { ROLES, callerOf } from '../auth.js';
import { AUTHED, type RouteContext, access, errorResponses, rolesLine, utc } from '../route-kit.js';

const time = { type: 'string', format: 'date-time', description: 'RFC 3339 in UTC, e.g. 2026-11-22T06:00:00.123Z' } as const;
const str = { type: 'string' } as const;
const strings = { type: 'array', items: str } as const;

/** The time window of every report. */
const RANGE = {
  since: { ...time, description: 'Entries whose `time` is at or after this (RFC 3339).' },
  until: { ...time, description: 'Entries whose `time` is before this (RFC 3339).' },
} as const;
const LIMIT = { type: 'integer', minimum: 1, maximum: 1000, default: 100, description: 'Most rows in one page.' } as const;
const CURSOR = { type: 'string', minLength: 1, maxLength: 2048, description: 'nextCursor of the previous page.' } as const;

/** What every entry-anchored row carries. */
const ROW_BASE = {
  session: { ...str, description: 'The session the row is about.' },
  sessionPath: { ...str, description: 'API path of the session, e.g. /v1/sessions/s-1 (add /timeline or /bundle).' },
  index: { type: 'integer', minimum: 0, description: 'Log index of the entry the row is about.' },
  event: { ...str, description: 'Id of that entry.' },
  type: str,
  time,
  recordedAt: time,
  initiator: str,
  actor: str,
} as const;
const ROW_REQUIRED = ['session', 'sessionPath', 'index', 'event', 'type', 'time', 'recordedAt', 'actor'] as const;

const row = (properties: Record<string, unknown>, required: readonly string[] = []) =>
  ({ type: 'object', additionalProperties: false, required: [...ROW_REQUIRED, ...required], properties: { ...ROW_BASE, ...properties } }) as const;

const page = (name: string, items: object) => ({
  description: 'A page of rows, newest first; nextCursor is present when more follow.',
  type: 'object',
  required: ['report', 'rows'],
  additionalProperties: false,
  properties: { report: { type: 'string', const: name }, rows: { type: 'array', items }, nextCursor: str },
});

const UNAPPROVED_ROW = row(
  {
    tool: str,
    call: { ...str, description: "The call: the decision's cause (its tool.requested event), else the decision itself." },
    policies: strings,
    reasons: strings,
    approval: { type: 'string', enum: ['none', 'pending', 'denied', 'expired', 'granted-not-human'], description: 'What became of the approval.' },
    ran: { type: 'boolean', description: 'The call ran anyway (tool.completed or tool.failed).' },
  },
  ['tool', 'call', 'policies', 'reasons', 'approval', 'ran'],
);
const DENIED_ROW = row(
  {
    kind: { type: 'string', enum: ['denied', 'out-of-scope'] },
    tool: str,
    policies: strings,
    reasons: strings,
    scope: { ...strings, description: 'For out-of-scope: the scope that does not cover the tool.' },
  },
  ['kind', 'tool'],
);
const AFTER_END_ROW = row(
  {
    after: { type: 'integer', minimum: 1, description: 'Entries of the session after its end that count as acting.' },
    first: {
      type: 'object',
      additionalProperties: false,
      required: ['event', 'index', 'type', 'time', 'recordedAt', 'actor'],
      properties: { event: str, index: { type: 'integer' }, type: str, time, recordedAt: time, actor: str },
    },
  },
  ['after', 'first'],
);
const DEEP_ROW = row(
  {
    depth: { type: 'integer', minimum: 0, description: 'Delegation hops after the root (root → agent is 1).' },
    chain: { ...strings, description: 'Principal ids of the chain, root first.' },
    parent: str,
  },
  ['depth', 'chain'],
);
const TOP_ROW = {
  type: 'object',
  additionalProperties: false,
  required: ['principal', 'role', 'sessions', 'entries', 'lastSession', 'lastSessionPath'],
  properties: {
    principal: str,
    role: { type: 'string', enum: ['initiator', 'agent'] },
    sessions: { type: 'integer', minimum: 0 },
    entries: { type: 'integer', minimum: 0 },
    lastSession: str,
    lastSessionPath: str,
  },
} as const;
const counts = { type: 'object', additionalProperties: { type: 'integer' } } as const;
const ACTIVITY = {
  description: "The principal's entries in the window, counted, and its sessions (most recent first).",
  type: 'object',
  required: ['report', 'principal', 'entries', 'byType', 'byTool', 'byDecision', 'byRole', 'rows'],
  additionalProperties: false,
  properties: {
    report: { type: 'string', const: 'principal-activity' },
    principal: str,
    entries: { type: 'integer', minimum: 0 },
    byType: counts,
    byTool: counts,
    byDecision: counts,
    byRole: { ...counts, description: 'Entries per role played (initiator, actor, chain, approver, workload); an entry may count under several.' },
    rows: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['session', 'sessionPath', 'entries', 'lastIndex'],
        properties: { session: str, sessionPath: str, entries: { type: 'integer' }, lastIndex: { type: 'integer' } },
      },
    },
  },
} as const;

type PagedQuery = ReportRange & { limit?: number; cursor?: string };

/** The report request of a query string (times with an offset become UTC). */
function requestOf(q: PagedQuery): ReportRequest {
  const since = utc(q.since);
  const until = utc(q.until);
  return {
    ...(since !== undefined ? { since } : {}),
    ...(until !== undefined ? { until } : {}),
    ...(q.limit !== undefined ? { limit: q.limit } : {}),
    ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
  };
}

/** Registers the report routes. */
export function reportRoutes(ctx: RouteContext): void {
  const { app, ledger } = ctx;
  const read = access(ctx, ROLES.read);
  const hook = read.onRequest ? { onRequest: read.onRequest } : {};
  const common = { tags: ['reports'], security: read.security } as const;
  const paged = { type: 'object', additionalProperties: false, properties: { ...RANGE, limit: LIMIT, cursor: CURSOR } } as const;

  app.get<{ Querystring: PagedQuery }>(
    '/v1/reports/unapproved-calls',
    {
      ...hook,
      schema: {
        ...common,
        summary: 'Sensitive tool calls without a human approval',
        description:
          'Every policy.decided entry with effect approval_required for which no approval.granted by a human approver exists in the same session ' +
          "whose cause is the decision's cause (the call's tool.requested event) or the decision itself. `approval` says what became of it; `ran` whether the tool ran anyway. " +
          `The window applies to the decision's time. ${rolesLine(ROLES.read)}`,
        querystring: paged,
        response: { 200: page('unapproved-calls', UNAPPROVED_ROW), ...errorResponses(AUTHED) },
      },
    },
    async (request) => ledger.unapprovedCalls(callerOf(request).tenant, requestOf(request.query)),
  );

  app.get<{ Querystring: PagedQuery }>(
    '/v1/reports/denied-calls',
    {
      ...hook,
      schema: {
        ...common,
        summary: 'Calls denied or attempted outside the session scope',
        description:
          'policy.decided entries with effect deny (kind denied, with policies and reasons), and tool.requested entries whose delegation chain has a link with a scope that does not cover the tool ' +
          `(kind out-of-scope; a scope covers a tool by \`*\`, its name, \`tool:<name>\`, or a prefix ending in \`*\`). ${rolesLine(ROLES.read)}`,
        querystring: paged,
        response: { 200: page('denied-calls', DENIED_ROW), ...errorResponses(AUTHED) },
      },
    },
    async (request) => ledger.deniedCalls(callerOf(request).tenant, requestOf(request.query)),
  );

  app.get<{ Querystring: PagedQuery }>(
    '/v1/reports/acted-after-end',
    {
      ...hook,
      schema: {
        ...common,
        summary: 'Sessions that acted after revocation, expiry or seal',
        description:
          'Sessions with an entry after (in log order) their first session.revoked, session.expired or session.closed entry, other than those ends and credential.revoked / credential.expired. ' +
          `Should be empty. One row per session, at its end entry, with the first entry after it. The window applies to the end entry's time. ${rolesLine(ROLES.read)}`,
        querystring: paged,
        response: { 200: page('acted-after-end', AFTER_END_ROW), ...errorResponses(AUTHED) },
      },
    },
    async (request) => ledger.actedAfterEnd(callerOf(request).tenant, requestOf(request.query)),
  );

  app.get<{ Querystring: PagedQuery & { depth?: number } }>(
    '/v1/reports/deep-delegation',
    {
      ...hook,
      schema: {
        ...common,
        summary: 'Delegation deeper than N',
        description:
          'Sessions whose opening entry (session.opened or session.delegated) carries a delegation chain deeper than `depth` hops (links after the root: human → agent is 1, → sub-agent 2). ' +
          rolesLine(ROLES.read),
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { ...RANGE, limit: LIMIT, cursor: CURSOR, depth: { type: 'integer', minimum: 0, maximum: 64, default: 2, description: 'Report chains deeper than this many hops.' } },
        },
        response: { 200: page('deep-delegation', DEEP_ROW), ...errorResponses(AUTHED) },
      },
    },
    async (request) => ledger.deepDelegation(callerOf(request).tenant, { ...requestOf(request.query), ...(request.query.depth !== undefined ? { depth: request.query.depth } : {}) }),
  );

  app.get<{ Querystring: ReportRange & { principal: string; limit?: number } }>(
    '/v1/reports/principal-activity',
    {
      ...hook,
      schema: {
        ...common,
        summary: "One principal's activity, counted",
        description:
          'The entries in which the principal appears in any role, counted by type, tool, decision and role, and its sessions, most recent first (at most `limit`). ' +
          rolesLine(ROLES.read),
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['principal'],
          properties: {
            principal: { type: 'string', minLength: 1, maxLength: 2048, description: 'Principal id (for workloads: SPIFFE ID or <issuer>|<subject>).' },
            ...RANGE,
            limit: LIMIT,
          },
        },
        response: { 200: ACTIVITY, ...errorResponses(AUTHED) },
      },
    },
    async (request) => {
      const q = request.query;
      return ledger.principalActivity(callerOf(request).tenant, { ...requestOf(q), principal: q.principal });
    },
  );

  app.get<{ Querystring: ReportRange & { limit?: number } }>(
    '/v1/reports/top-principals',
    {
      ...hook,
      schema: {
        ...common,
        summary: 'The most active initiators and agents',
        description:
          "Initiators and agents (a session's first actor) by the number of their sessions active in the window (last entry at or after since, first before until), most first, " +
          `each with its most recent session. ${rolesLine(ROLES.read)}`,
        querystring: { type: 'object', additionalProperties: false, properties: { ...RANGE, limit: { ...LIMIT, default: 20, description: 'Most principals.' } } },
        response: { 200: page('top-principals', TOP_ROW), ...errorResponses(AUTHED) },
      },
    },
    async (request) => ledger.topPrincipals(callerOf(request).tenant, requestOf(request.query)),
  );

  const example = {
    type: 'object',
    additionalProperties: false,
    required: ['session', 'sessionPath', 'index'],
    properties: { session: str, sessionPath: str, index: { type: 'integer' }, bundleSha256: { ...str, description: 'base64url SHA-256 of the RFC 8785 JSON of the session bundle without disclosures.' } },
  } as const;
  const count = { type: 'integer', minimum: 0 } as const;
  const gap = { type: 'object', additionalProperties: false, required: ['count', 'capped', 'examples'], properties: { count, capped: { type: 'boolean' }, examples: { type: 'array', items: example } } } as const;
  app.get<{ Querystring: ReportRange & { framework: string } }>(
    '/v1/reports/compliance',
    {
      ...hook,
      schema: {
        ...common,
        summary: 'Compliance evidence and gaps per control of a framework',
        description:
          'Measures the log over the window (entry counts by type and decision, sessions sealed and open, and the gap selections of the other reports, each counted up to 10,000 with example sessions and their bundle hashes), ' +
          'then maps the measures onto the controls of one framework: owasp-agentic (OWASP Top 10 for Agentic Applications 2026), nist-ai-rmf (NIST AI RMF functions), maestro (CSA MAESTRO layers) or csf (NIST CSF 2.0 PR.AA). ' +
          `A control is "gap" when a gap measure is non-zero, "evidence" when an evidence measure is, else "no-data". See docs/records.md, "Compliance report". ${rolesLine(ROLES.read)}`,
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['framework'],
          properties: { framework: { type: 'string', enum: [...COMPLIANCE_FRAMEWORKS] }, ...RANGE },
        },
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['framework', 'frameworkTitle', 'tenant', 'range', 'generatedAt', 'checkpoint', 'measures', 'controls'],
            properties: {
              framework: str,
              frameworkTitle: str,
              tenant: str,
              range: { type: 'object', additionalProperties: false, properties: { since: time, until: time } },
              generatedAt: time,
              checkpoint: { type: 'object', additionalProperties: false, required: ['size', 'rootHash'], properties: { size: count, rootHash: str } },
              measures: {
                type: 'object',
                additionalProperties: false,
                required: ['entries', 'byType', 'decisions', 'sessions', 'gaps'],
                properties: {
                  entries: count,
                  byType: { type: 'object', additionalProperties: count },
                  decisions: { type: 'object', additionalProperties: false, required: ['allow', 'deny', 'approval_required'], properties: { allow: count, deny: count, approval_required: count } },
                  sessions: { type: 'object', additionalProperties: false, required: ['sessions', 'sealed', 'open'], properties: { sessions: count, sealed: count, open: count } },
                  gaps: {
                    type: 'object',
                    additionalProperties: false,
                    required: ['unapprovedCalls', 'deniedCalls', 'outOfScopeCalls', 'actedAfterEnd', 'deepDelegation'],
                    properties: { unapprovedCalls: gap, deniedCalls: gap, outOfScopeCalls: gap, actedAfterEnd: gap, deepDelegation: gap },
                  },
                },
              },
              controls: {
                type: 'array',
                items: {
                  type: 'object',
                  additionalProperties: false,
                  required: ['id', 'title', 'status', 'evidence', 'gaps', 'method'],
                  properties: {
                    id: str,
                    title: str,
                    status: { type: 'string', enum: ['evidence', 'gap', 'no-data'] },
                    evidence: { type: 'array', items: { type: 'object', additionalProperties: false, required: ['measure', 'value'], properties: { measure: str, value: count, note: str } } },
                    gaps: {
                      type: 'array',
                      items: { type: 'object', additionalProperties: false, required: ['measure', 'count', 'capped', 'examples'], properties: { measure: str, count, capped: { type: 'boolean' }, examples: { type: 'array', items: example } } },
                    },
                    method: str,
                  },
                },
              },
            },
          },
          ...errorResponses(AUTHED),
        },
      },
    },
    async (request) => {
      const { framework } = request.query;
      return ledger.compliance(callerOf(request).tenant, { ...requestOf(request.query), framework });
    },
  );
}
