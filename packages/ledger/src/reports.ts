/**
 * Reports: the questions a compliance reviewer or an investigator asks of a whole
 * tenant log, answered from the stores' indexes (see docs/api.md, "Reports", for
 * the precise definitions). Stores select entries by log index (`StoreReports`);
 * this module turns the selections into rows, each linked to its session.
 */
import { type Envelope } from '@custody/core';

import { uncoveredLink } from './entry-row.js';
import { LedgerError } from './errors.js';
import type { LedgerStore, StoredEntry } from './store.js';
import { clampLimit, decodeCursor, decodeStoredEntry, encodeCursor, ROLE_BIT } from './store-shared.js';

/** Every report, by the name the API and the CLI use. */
export const REPORT_NAMES = ['unapproved-calls', 'denied-calls', 'acted-after-end', 'deep-delegation', 'principal-activity', 'top-principals'] as const;
/** A report name. */
export type ReportName = (typeof REPORT_NAMES)[number];

/** Event types that end a session (its seal, a revocation, an expiry). */
export const SESSION_END_TYPES = ['session.revoked', 'session.expired', 'session.closed'] as const;
/** Event types that may follow a session's end without counting as acting: the end of the session or of its credentials. */
export const AFTER_END_ALLOWED = [...SESSION_END_TYPES, 'credential.revoked', 'credential.expired'] as const;

/**
 * True for the refusal that closes a call's trail: a `tool.failed` that names its call in
 * `cause` and says `data.refused: true`. POST /v1/decisions appends one when the session
 * was revoked while it decided the call (after the `session.revoked`, so that no allowed
 * call is left without an outcome); it is the server refusing, not the agent acting, so
 * `acted-after-end` does not count it. Every store's SQL implements this same rule.
 */
export function isRefusal(env: Pick<Envelope, 'type' | 'cause' | 'data'>): boolean {
  return env.type === 'tool.failed' && env.cause !== undefined && env.data?.['refused'] === true;
}

/** The principal id of Custody's approvals service (`{ type: "service", id }`), which records approval expiries. */
export const APPROVALS_SERVICE_ID = 'custody-approvals';
/** `data.sessionEnded` of an `approval.expired` written because its session ended. */
export const SESSION_ENDED_STATES = ['revoked', 'closed', 'expired'] as const;

/**
 * True for Custody's own bookkeeping after a session's end, of something recorded before
 * that end (`before(id)`: the type and log index of an entry of the same session, or
 * undefined; `end`: the end entry's index). Two shapes, as their writers write them:
 *
 * - a **cancellation**: a `tool.failed` with `data.cancelled: true` whose `cause` is a
 *   `tool.requested` of the session recorded before the end (the gateway's kill switch
 *   cancelling a call in flight);
 * - a **session expiry of an approval**: an `approval.expired` by the approvals service
 *   (actor `{ type: "service", id: "custody-approvals" }`) with `data.sessionEnded` one of
 *   {@link SESSION_ENDED_STATES}, whose `cause` is an `approval.requested` of the session
 *   recorded before the end (only Custody or an admin key can write approval.expired).
 *
 * `acted-after-end` does not count them; every store's SQL implements this same rule.
 */
export function isEndBookkeeping(env: Pick<Envelope, 'type' | 'cause' | 'data' | 'actor'>, before: (id: string) => { type: string; index: number } | undefined, end: number): boolean {
  if (env.cause === undefined) return false;
  let causeType: string;
  if (env.type === 'tool.failed' && env.data?.['cancelled'] === true) causeType = 'tool.requested';
  else if (
    env.type === 'approval.expired' &&
    env.actor.type === 'service' &&
    env.actor.id === APPROVALS_SERVICE_ID &&
    (SESSION_ENDED_STATES as readonly unknown[]).includes(env.data?.['sessionEnded'])
  ) {
    causeType = 'approval.requested';
  } else return false;
  const cause = before(env.cause);
  return cause !== undefined && cause.type === causeType && cause.index < end;
}

/** Default `depth` of `deep-delegation`: a chain deeper than root → agent → sub-agent. */
export const DEFAULT_DELEGATION_DEPTH = 2;

/** A time window on entries' `time` (RFC 3339; `since` inclusive, `until` exclusive), as for EntryFilter. */
export interface ReportRange {
  since?: string;
  until?: string;
}

/** What every paged report takes. */
export interface ReportRequest extends ReportRange {
  /** Rows per page, clamped to [1, 1000]. */
  limit?: number;
  /** `nextCursor` of the previous page of the same report. */
  cursor?: string;
}

/**
 * What a store answers for reports: each method selects entries by log index,
 * newest first, strictly below `before` (undefined: from the head), at most `limit`.
 * The range applies to the selected entries' `time`.
 * Implementations MUST answer from indexes the store maintains (they run on logs of
 * millions of entries) and MUST NOT write.
 */
export interface StoreReports {
  /**
   * `policy.decided` entries with effect `approval_required` for which no
   * `approval.granted` by a human approver exists in the same session whose
   * `cause` is the decision's `cause` (the call), the decision itself, or an
   * `approval.requested` of the same session whose `cause` is either (the server's
   * approvals name the request in the decision's `cause`).
   */
  unapprovedCalls(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]>;
  /** `policy.decided` entries with effect `deny`. */
  deniedCalls(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]>;
  /**
   * `tool.requested` entries whose delegation chain has a link with a `scope`
   * that does not cover the tool (see scopeCovers in entry-row.ts).
   */
  outOfScopeCalls(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]>;
  /**
   * The first end entry (`session.revoked`, `session.expired`, `session.closed`)
   * of each session that has a later entry (in log order) of a type other than
   * {@link AFTER_END_ALLOWED} that is not a refusal ({@link isRefusal}) nor Custody's
   * bookkeeping of something recorded before the end ({@link isEndBookkeeping}).
   */
  actedAfterEnd(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]>;
  /** `session.opened` / `session.delegated` entries whose chain has more than `links` links. */
  deepDelegation(tenant: string, links: number, range: ReportRange, before: number | undefined, limit: number): Promise<number[]>;
  /** Every entry the principal appears in (any role), in log order, with its roles there (ROLE_BIT mask). */
  principalEntries(tenant: string, principal: string, range: ReportRange): Promise<PrincipalEntry[]>;
  /** Initiators and agents (the sessions' first actors) by number of sessions active in the range, most first. */
  topPrincipals(tenant: string, range: ReportRange, limit: number): Promise<TopPrincipal[]>;
  /** How many entries of each type, and of each decision effect, have their `time` in the range. */
  typeCounts(tenant: string, range: ReportRange): Promise<TypeCount[]>;
  /**
   * Sessions active in the range (as for topPrincipals): all of them, the sealed ones, and
   * the open ones: not sealed, and not ended. A session is ended by any `session.revoked` or
   * `session.expired` among its entries, whatever follows it (a refusal of a call decided
   * during the revocation, a cancelled call, an approval expired with the session:
   * Custody's own bookkeeping; any real activity after the end is acted-after-end's to
   * report), or by a last entry in AFTER_END_ALLOWED (a credential's revocation or expiry).
   */
  sessionCounts(tenant: string, range: ReportRange): Promise<{ sessions: number; sealed: number; open: number }>;
}

/** A count of entries by type, or of `policy.decided` entries by effect (`decision` set). */
export interface TypeCount {
  type: string;
  decision?: string;
  count: number;
}

/** One entry of a principal, as `principalEntries` returns it. */
export interface PrincipalEntry {
  index: number;
  type: string;
  tool?: string;
  decision?: string;
  session?: string;
  /** ROLE_BIT mask of the principal's roles in the entry. */
  roles: number;
}

/** One row of `top-principals`. */
export interface TopPrincipal {
  principal: string;
  /** `initiator` (asked for the work) or `agent` (the session's first actor). */
  role: 'initiator' | 'agent';
  /** Sessions in the range in which it had that role. */
  sessions: number;
  /** Entries of those sessions. */
  entries: number;
  /** Its most recently active session. */
  lastSession: string;
  /** API path of that session. */
  lastSessionPath: string;
}

/** Where a row's session lives in the API. */
export function sessionPath(id: string): string {
  return `/v1/sessions/${encodeURIComponent(id)}`;
}

/** What every entry-anchored row carries: the entry, its session and who. */
export interface ReportRowBase {
  session: string;
  /** API path of the session: GET it, or add /timeline or /bundle. */
  sessionPath: string;
  /** Log index and id of the entry the row is about. */
  index: number;
  event: string;
  type: string;
  time: string;
  recordedAt: string;
  initiator?: string;
  actor: string;
}

/** A row of `unapproved-calls`. */
export interface UnapprovedCallRow extends ReportRowBase {
  tool: string;
  /** The call: the decision's `cause` (its tool.requested event), else the decision itself. */
  call: string;
  policies: string[];
  reasons: string[];
  /** The approval's fate: never asked, still pending, denied, expired, or granted only by a non-human. */
  approval: 'none' | 'pending' | 'denied' | 'expired' | 'granted-not-human';
  /** True when the call ran anyway (a tool.completed or tool.failed for it). */
  ran: boolean;
}

/** A row of `denied-calls`. */
export interface DeniedCallRow extends ReportRowBase {
  /** `denied`: a policy.decided deny; `out-of-scope`: a tool.requested outside its chain's scope. */
  kind: 'denied' | 'out-of-scope';
  tool: string;
  policies?: string[];
  reasons?: string[];
  /** For out-of-scope: the scope that does not cover the tool (the first such link's). */
  scope?: string[];
}

/** A row of `acted-after-end`: the end entry, and what followed it. */
export interface ActedAfterEndRow extends ReportRowBase {
  /** Entries of the session after the end that count as acting. */
  after: number;
  /** The first of them. */
  first: { event: string; index: number; type: string; time: string; recordedAt: string; actor: string };
}

/** A row of `deep-delegation`: the session's opening entry and its chain. */
export interface DeepDelegationRow extends ReportRowBase {
  /** Delegation hops: links after the root (root → agent is 1). */
  depth: number;
  /** Principal ids of the chain, root first. */
  chain: string[];
  parent?: string;
}

/** A page of a report's rows. */
export interface ReportPage<R> {
  report: ReportName;
  rows: R[];
  /** Present when more rows follow: pass it as `cursor`. */
  nextCursor?: string;
}

/** The answer of `principal-activity`. */
export interface PrincipalActivity {
  report: 'principal-activity';
  principal: string;
  /** Entries in the range in which the principal appears. */
  entries: number;
  byType: Record<string, number>;
  byTool: Record<string, number>;
  byDecision: Record<string, number>;
  /** Entries per role the principal played (an entry may count under several). */
  byRole: Record<string, number>;
  /** Its sessions in the range, most recent first (at most `limit`): sessions in which it appears. */
  rows: { session: string; sessionPath: string; entries: number; lastIndex: number }[];
}

/** Checks and normalises a report's range (client-controlled). */
function checkRange(range: ReportRange): ReportRange {
  const out: ReportRange = {};
  for (const k of ['since', 'until'] as const) {
    const v = range[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(Date.parse(v))) {
      throw new LedgerError('RANGE_INVALID', `${k} must be an RFC 3339 time such as 2026-11-22T06:00:00Z`, { field: k });
    }
    out[k] = v;
  }
  return out;
}

function base(e: StoredEntry, env: Envelope): ReportRowBase {
  return {
    session: env.session?.id ?? '',
    sessionPath: env.session ? sessionPath(env.session.id) : '',
    index: e.index,
    event: env.id,
    type: env.type,
    time: env.time,
    recordedAt: env.recordedAt,
    ...(env.initiator ? { initiator: env.initiator.id } : {}),
    actor: env.actor.id,
  };
}

/** Runs a selection page by page: `limit + 1` indexes tell whether more follow. */
async function pageOfIndexes(
  req: ReportRequest,
  select: (before: number | undefined, limit: number) => Promise<number[]>,
): Promise<{ indexes: number[]; nextCursor?: string }> {
  const limit = clampLimit(req.limit ?? 100);
  const before = req.cursor === undefined ? undefined : decodeCursor(req.cursor, 'e');
  const found = await select(before, limit + 1);
  if (found.length <= limit) return { indexes: found };
  const indexes = found.slice(0, limit);
  return { indexes, nextCursor: encodeCursor('e', indexes[indexes.length - 1]!) };
}

/** Merges newest-first index lists into one, newest first, without repeats. @internal */
export function mergeDesc(lists: readonly number[][], limit: number): number[] {
  return [...new Set(lists.flat())].sort((a, b) => b - a).slice(0, limit);
}

async function entriesAt(store: LedgerStore, tenant: string, indexes: readonly number[]): Promise<Map<number, StoredEntry>> {
  return new Map((await store.getEntries(tenant, indexes)).map((e) => [e.index, e]));
}

/**
 * Each distinct session's entries (sessions are small: a few to a few hundred
 * entries). Not decoded: the index fields (type, cause) are enough to judge them.
 */
async function sessionsOf(store: LedgerStore, tenant: string, ids: Iterable<string>): Promise<Map<string, StoredEntry[]>> {
  const out = new Map<string, StoredEntry[]>();
  await Promise.all([...new Set(ids)].map(async (id) => out.set(id, await store.sessionEntries(tenant, id))));
  return out;
}

/**
 * The steps of a call among its session's entries: those whose `cause` is the call or its
 * decision, and those whose `cause` is an `approval.requested` among them (the server's
 * approvals name that request in the `cause` of approval.granted / denied / expired).
 */
function callSteps<E extends { id: string; type: string; cause?: string }>(entries: readonly E[], call: string, decision: string): E[] {
  const keys = new Set([call, decision]);
  const direct = entries.filter((s) => s.cause !== undefined && keys.has(s.cause));
  const requests = new Set(direct.filter((s) => s.type === 'approval.requested').map((s) => s.id));
  return requests.size === 0 ? direct : [...direct, ...entries.filter((s) => s.cause !== undefined && requests.has(s.cause) && !keys.has(s.cause))];
}

/** `unapproved-calls`: sensitive tool calls without a human approval. */
export async function unapprovedCallsReport(store: LedgerStore, tenant: string, req: ReportRequest): Promise<ReportPage<UnapprovedCallRow>> {
  const range = checkRange(req);
  const { indexes, nextCursor } = await pageOfIndexes(req, (before, limit) => store.reports.unapprovedCalls(tenant, range, before, limit));
  const entries = await entriesAt(store, tenant, indexes);
  const decoded = indexes.map((i) => entries.get(i)).filter((e): e is StoredEntry => e !== undefined).map((e) => ({ e, env: decodeStoredEntry(e) }));
  const sessions = await sessionsOf(store, tenant, decoded.map((d) => d.env.session?.id ?? '').filter((s) => s !== ''));
  const rows = decoded.map(({ e, env }): UnapprovedCallRow => {
    const call = env.cause ?? env.id;
    const steps = callSteps(sessions.get(env.session?.id ?? '') ?? [], call, env.id);
    const has = (type: string) => steps.some((s) => s.type === type);
    const approval: UnapprovedCallRow['approval'] = has('approval.granted')
      ? 'granted-not-human'
      : has('approval.denied')
        ? 'denied'
        : has('approval.expired')
          ? 'expired'
          : has('approval.requested')
            ? 'pending'
            : 'none';
    return {
      ...base(e, env),
      tool: env.tool?.name ?? '',
      call,
      policies: env.decision?.policies ?? [],
      reasons: env.decision?.reasons ?? [],
      approval,
      ran: has('tool.completed') || has('tool.failed'),
    };
  });
  return { report: 'unapproved-calls', rows, ...(nextCursor !== undefined ? { nextCursor } : {}) };
}

/** `denied-calls`: calls denied by policy, and calls attempted outside their chain's scope. */
export async function deniedCallsReport(store: LedgerStore, tenant: string, req: ReportRequest): Promise<ReportPage<DeniedCallRow>> {
  const range = checkRange(req);
  const { indexes, nextCursor } = await pageOfIndexes(req, async (before, limit) => {
    const [denied, outside] = await Promise.all([
      store.reports.deniedCalls(tenant, range, before, limit),
      store.reports.outOfScopeCalls(tenant, range, before, limit),
    ]);
    return mergeDesc([denied, outside], limit);
  });
  const entries = await entriesAt(store, tenant, indexes);
  const rows: DeniedCallRow[] = [];
  for (const i of indexes) {
    const e = entries.get(i);
    if (e === undefined) continue;
    const env = decodeStoredEntry(e);
    const tool = env.tool?.name ?? '';
    if (env.type === 'policy.decided') {
      rows.push({ ...base(e, env), kind: 'denied', tool, policies: env.decision?.policies ?? [], reasons: env.decision?.reasons ?? [] });
    } else {
      const link = uncoveredLink(env);
      rows.push({ ...base(e, env), kind: 'out-of-scope', tool, ...(link?.scope ? { scope: link.scope } : {}) });
    }
  }
  return { report: 'denied-calls', rows, ...(nextCursor !== undefined ? { nextCursor } : {}) };
}

/** `acted-after-end`: sessions with activity after their revocation, expiry or seal. */
export async function actedAfterEndReport(store: LedgerStore, tenant: string, req: ReportRequest): Promise<ReportPage<ActedAfterEndRow>> {
  const range = checkRange(req);
  const { indexes, nextCursor } = await pageOfIndexes(req, (before, limit) => store.reports.actedAfterEnd(tenant, range, before, limit));
  const entries = await entriesAt(store, tenant, indexes);
  const ends = indexes.map((i) => entries.get(i)).filter((e): e is StoredEntry => e !== undefined);
  const sessions = await sessionsOf(store, tenant, ends.map((e) => e.sessionId ?? ''));
  const allowed: ReadonlySet<string> = new Set(AFTER_END_ALLOWED);
  // Only a tool.failed or approval.expired with a cause can be a refusal or bookkeeping: the
  // others are judged by the index fields.
  const acting = (s: StoredEntry, byId: ReadonlyMap<string, StoredEntry>, end: number) => {
    if (allowed.has(s.type)) return false;
    if (s.cause === undefined || (s.type !== 'tool.failed' && s.type !== 'approval.expired')) return true;
    const env = decodeStoredEntry(s);
    return !isRefusal(env) && !isEndBookkeeping(env, (id) => byId.get(id), end);
  };
  const rows: ActedAfterEndRow[] = [];
  for (const e of ends) {
    const env = decodeStoredEntry(e);
    const entries = sessions.get(e.sessionId ?? '') ?? [];
    const byId = new Map(entries.map((s) => [s.id, s]));
    const later = entries.filter((s) => s.index > e.index && acting(s, byId, e.index));
    const first = later[0];
    if (first === undefined) continue; // cannot happen: the store selected it for such an entry
    rows.push({
      ...base(e, env),
      after: later.length,
      first: { event: first.id, index: first.index, type: first.type, time: first.time, recordedAt: first.recordedAt, actor: first.actorId },
    });
  }
  return { report: 'acted-after-end', rows, ...(nextCursor !== undefined ? { nextCursor } : {}) };
}

/** `deep-delegation`: sessions whose delegation chain is deeper than `depth` hops. */
export async function deepDelegationReport(store: LedgerStore, tenant: string, req: ReportRequest & { depth?: number }): Promise<ReportPage<DeepDelegationRow>> {
  const range = checkRange(req);
  const depth = req.depth ?? DEFAULT_DELEGATION_DEPTH;
  if (!Number.isSafeInteger(depth) || depth < 0 || depth > 64) {
    throw new LedgerError('RANGE_INVALID', 'depth must be an integer from 0 to 64', { field: 'depth' });
  }
  // depth counts hops after the root, so a chain deeper than `depth` has more than depth + 1 links.
  const { indexes, nextCursor } = await pageOfIndexes(req, (before, limit) => store.reports.deepDelegation(tenant, depth + 1, range, before, limit));
  const entries = await entriesAt(store, tenant, indexes);
  const rows: DeepDelegationRow[] = [];
  for (const i of indexes) {
    const e = entries.get(i);
    if (e === undefined) continue;
    const env = decodeStoredEntry(e);
    const chain = env.chain ?? [];
    rows.push({
      ...base(e, env),
      depth: chain.length - 1,
      chain: chain.map((l) => l.principal.id),
      ...(env.session?.parent !== undefined ? { parent: env.session.parent } : {}),
    });
  }
  return { report: 'deep-delegation', rows, ...(nextCursor !== undefined ? { nextCursor } : {}) };
}

/** `principal-activity`: one principal's entries counted by type, tool, decision and role, and its sessions. */
export async function principalActivityReport(store: LedgerStore, tenant: string, req: ReportRange & { principal: string; limit?: number }): Promise<PrincipalActivity> {
  const range = checkRange(req);
  if (typeof req.principal !== 'string' || req.principal === '') {
    throw new LedgerError('RANGE_INVALID', 'name the principal', { field: 'principal' });
  }
  const limit = clampLimit(req.limit ?? 100);
  const found = await store.reports.principalEntries(tenant, req.principal, range);
  const count = (m: Record<string, number>, k: string | undefined) => {
    if (k !== undefined) m[k] = (m[k] ?? 0) + 1;
  };
  const byType: Record<string, number> = {};
  const byTool: Record<string, number> = {};
  const byDecision: Record<string, number> = {};
  const byRole: Record<string, number> = {};
  const sessions = new Map<string, { entries: number; lastIndex: number }>();
  for (const f of found) {
    count(byType, f.type);
    count(byTool, f.tool);
    count(byDecision, f.decision);
    for (const [role, bit] of Object.entries(ROLE_BIT)) if ((f.roles & bit) !== 0) count(byRole, role);
    if (f.session !== undefined) {
      const s = sessions.get(f.session) ?? { entries: 0, lastIndex: f.index };
      s.entries += 1;
      s.lastIndex = Math.max(s.lastIndex, f.index);
      sessions.set(f.session, s);
    }
  }
  const rows = [...sessions.entries()]
    .sort((a, b) => b[1].lastIndex - a[1].lastIndex)
    .slice(0, limit)
    .map(([id, s]) => ({ session: id, sessionPath: sessionPath(id), entries: s.entries, lastIndex: s.lastIndex }));
  return { report: 'principal-activity', principal: req.principal, entries: found.length, byType, byTool, byDecision, byRole, rows };
}

/** `top-principals`: initiators and agents by sessions in the range. */
export async function topPrincipalsReport(store: LedgerStore, tenant: string, req: ReportRange & { limit?: number }): Promise<ReportPage<TopPrincipal>> {
  const range = checkRange(req);
  const limit = clampLimit(req.limit ?? 20);
  const rows = (await store.reports.topPrincipals(tenant, range, limit))
    .sort((a, b) => b.sessions - a.sessions || b.entries - a.entries || (a.principal < b.principal ? -1 : a.principal > b.principal ? 1 : 0) || (a.role < b.role ? -1 : 1))
    .slice(0, limit);
  return { report: 'top-principals', rows };
}
