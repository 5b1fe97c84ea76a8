/**
 * The report conformance suite: every report on every store matches a reference
 * computed in JavaScript from the entries themselves, across pages and time
 * windows, on a log that holds each case a report must catch or must not.
 */
import { decodeEntry, type Envelope, type EventDraft } from '@custody/core';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { principalsOf, scopeCovers } from '../entry-row.js';
import { LedgerError } from '../errors.js';
import {
  actedAfterEndReport,
  AFTER_END_ALLOWED,
  deepDelegationReport,
  deniedCallsReport,
  isRefusal,
  principalActivityReport,
  type ReportPage,
  type ReportRange,
  type ReportRequest,
  SESSION_END_TYPES,
  topPrincipalsReport,
  unapprovedCallsReport,
} from '../reports.js';
import type { LedgerStore, StoredEntry } from '../store.js';
import { filterTimeKey, timeKey } from '../store-shared.js';
import { FixtureLog, scenarioDrafts } from './batch-fixtures.js';
import { storeExcluded } from './postgres-test-env.js';
import type { StoreConformanceOptions } from './store-conformance.js';

/**
 * Registers the report suite for one store (call it at the top level of a test file).
 * @example
 * runReportConformance(sqliteConformanceOptions());
 */
export function runReportConformance(opts: StoreConformanceOptions): void {
  const reason = opts.skip === true ? 'skipped by its options' : typeof opts.skip === 'string' ? opts.skip : storeExcluded(opts.name);
  if (reason !== undefined) {
    describe.skip(`reports: ${opts.name} (${reason})`, () => {
      it('is skipped', () => undefined);
    });
    return;
  }
  describe(`reports: ${opts.name}`, () => defineSuite(opts));
}

const human = (id: string) => ({ type: 'human' as const, id });
const agent = (id: string) => ({ type: 'agent' as const, id });

/** Hand-made sessions: each case a report must report, and its near misses. */
function caseDrafts(prefix: string): EventDraft[] {
  let clock = Date.parse('2026-03-01T00:00:00Z');
  const out: EventDraft[] = [];
  const ev = (sid: string, type: EventDraft['type'], extra: Partial<EventDraft> = {}, who: Pick<EventDraft, 'actor'> & Partial<EventDraft> = { initiator: human('ivy@example.com'), actor: agent('agent:case') }): EventDraft => {
    clock += 1000;
    const d: EventDraft = { id: uuidv7(), type, time: new Date(clock).toISOString(), session: { id: `${prefix}-${sid}` }, ...who, ...extra };
    out.push(d);
    return d;
  };
  const call = (sid: string, tool: string, effect: 'allow' | 'deny' | 'approval_required', extra: Partial<EventDraft> = {}) => {
    const req = ev(sid, 'tool.requested', { tool: { name: tool }, ...extra });
    const dec = ev(sid, 'policy.decided', {
      tool: { name: tool },
      cause: req.id,
      decision: { effect, policyVersion: 'v1', policies: [`p-${tool}`], reasons: effect === 'deny' ? ['not allowed'] : [] },
      ...extra,
    });
    return { req, dec };
  };

  // Revoked, then acts: reported at the revocation.
  ev('revoked', 'session.opened', { session: { id: `${prefix}-revoked`, objective: 'revoked then acts' } });
  ev('revoked', 'session.revoked');
  ev('revoked', 'tool.requested', { tool: { name: 'db.query' } });
  // Revoked, then only its credential revoked: not acting.
  ev('quiet', 'session.opened');
  ev('quiet', 'session.revoked');
  ev('quiet', 'credential.revoked', { credential: { jti: 'j-1', fingerprint: 'A'.repeat(43) } });
  // Expired, revoked, then acts: reported once, at the expiry (the first end).
  ev('expired', 'session.opened');
  ev('expired', 'session.expired');
  ev('expired', 'session.revoked');
  ev('expired', 'model.output', { data: { output: 'late' } });
  // Sealed, then an entry anyway (the sequencer refuses this; a store may still hold it).
  ev('sealed', 'session.opened');
  ev('sealed', 'session.closed');
  ev('sealed', 'prompt.received', { data: { prompt: 'after the seal' } });

  // Scope: a delegated chain whose agent link may use github.* and db.query only.
  const scoped = {
    initiator: human('ivy@example.com'),
    actor: agent('agent:scoped'),
    chain: [{ principal: human('ivy@example.com'), scope: ['*'] }, { principal: agent('agent:scoped'), scope: ['github.*', 'tool:db.query'] }],
  };
  ev('scoped', 'session.opened', {}, scoped);
  ev('scoped', 'tool.requested', { tool: { name: 'github.create_issue' } }, scoped);
  ev('scoped', 'tool.requested', { tool: { name: 'db.query' } }, scoped);
  ev('scoped', 'tool.requested', { tool: { name: 'stripe.refund' } }, scoped);
  // "scope" in data only: not a chain scope.
  ev('scoped', 'tool.requested', { tool: { name: 'stripe.refund' }, data: { scope: 'x' } });
  call('denied', 'stripe.refund', 'deny');

  // Approvals.
  const byAgent = call('appr', 'stripe.refund', 'approval_required');
  ev('appr', 'approval.granted', { tool: { name: 'stripe.refund' }, cause: byAgent.req.id, approval: { id: 'a-1', status: 'granted', approver: agent('agent:rubber-stamp') } });
  ev('appr', 'tool.completed', { tool: { name: 'stripe.refund' }, cause: byAgent.req.id });
  const byDecision = call('appr', 'stripe.refund', 'approval_required');
  ev('appr', 'approval.granted', { tool: { name: 'stripe.refund' }, cause: byDecision.dec.id, approval: { id: 'a-2', status: 'granted', approver: human('dana@example.com') } });
  const denied = call('appr', 'slack.post_message', 'approval_required');
  ev('appr', 'approval.requested', { tool: { name: 'slack.post_message' }, cause: denied.req.id, approval: { id: 'a-3', status: 'pending' } });
  ev('appr', 'approval.denied', { tool: { name: 'slack.post_message' }, cause: denied.req.id, approval: { id: 'a-3', status: 'denied', approver: human('dana@example.com') } });
  const other = call('appr2', 'stripe.refund', 'approval_required');
  // A human approval of the same call id, but in another session: does not count.
  ev('appr3', 'approval.granted', { tool: { name: 'stripe.refund' }, cause: other.req.id, approval: { id: 'a-4', status: 'granted', approver: human('dana@example.com') } });

  // Delegation three hops deep.
  const deep = {
    initiator: human('ivy@example.com'),
    actor: agent('agent:leaf'),
    chain: [{ principal: human('ivy@example.com') }, { principal: agent('agent:a') }, { principal: agent('agent:b') }, { principal: agent('agent:leaf') }],
  };
  ev('deep', 'session.delegated', { session: { id: `${prefix}-deep`, parent: `${prefix}-scoped` } }, deep);

  // Revoked while a call was being decided: the server's refusal closes the call's trail
  // after the revocation (POST /v1/decisions). Not acting: not reported.
  const policy = { type: 'service' as const, id: 'custody:policy' };
  const refusal = (sid: string, cause: string | undefined, refused: unknown = true) =>
    ev(sid, 'tool.failed', { tool: { name: 'payments.transfer' }, ...(cause !== undefined ? { cause } : {}), data: { error: 'refused before it ran: the session is no longer active', refused } }, { initiator: human('ivy@example.com'), actor: policy });
  ev('inflight', 'session.opened');
  const inflight = call('inflight', 'payments.transfer', 'allow');
  ev('inflight', 'session.revoked');
  ev('inflight', 'credential.revoked', { credential: { jti: 'j-2', fingerprint: 'B'.repeat(43) } });
  refusal('inflight', inflight.req.id);
  // A call recorded after the revocation, then refused: the call is acting, its refusal is not.
  ev('late-call', 'session.opened');
  ev('late-call', 'session.revoked');
  const late = call('late-call', 'payments.transfer', 'allow');
  refusal('late-call', late.req.id);
  // A refusal, then the call ran anyway: the completion is acting.
  ev('ran-anyway', 'session.opened');
  const ran = call('ran-anyway', 'payments.transfer', 'allow');
  ev('ran-anyway', 'session.revoked');
  refusal('ran-anyway', ran.req.id);
  ev('ran-anyway', 'tool.completed', { tool: { name: 'payments.transfer' }, cause: ran.req.id });
  // Near misses, acting: a "refusal" that names no call, and one whose refused is not true.
  ev('no-cause', 'session.opened');
  ev('no-cause', 'session.revoked');
  refusal('no-cause', undefined);
  ev('not-true', 'session.opened');
  const notTrue = call('not-true', 'payments.transfer', 'allow');
  ev('not-true', 'session.expired');
  refusal('not-true', notTrue.req.id, 'true');

  // Approvals as the server writes them (POST /v1/decisions, then POST /v1/approvals/:id or
  // the expiry sweep): approval.requested names the call in `cause`; approval.granted,
  // approval.denied and approval.expired name the approval.requested in `cause` and the
  // call in `data.call`.
  const served = (sid: string, tool: string, who: Pick<EventDraft, 'actor'> & Partial<EventDraft> = servedAgent) => {
    const base = { tool: { name: tool, server: tool.slice(0, tool.indexOf('.')) } };
    const credential = { jti: uuidv7(), fingerprint: 'C'.repeat(43) };
    const req = ev(sid, 'tool.requested', { ...base, credential, data: { arguments: { amount: 4900 }, capture: 'full' } }, who);
    const dec = ev(
      sid,
      'policy.decided',
      { ...base, cause: req.id, decision: { effect: 'approval_required', policyVersion: 'sha256:v1', policies: ['transfer-needs-approval'], reasons: ['transfers need a human'] }, data: { decidedBy: 'server' } },
      { ...who, actor: servicePolicy },
    );
    const id = `apr-${uuidv7()}`;
    const approval = { id, expiresAt: '2026-03-01T01:00:00.000Z', argumentsDigest: 'D'.repeat(43) };
    const requested = ev(
      sid,
      'approval.requested',
      { ...base, cause: req.id, approval: { ...approval, status: 'pending' }, data: { policies: ['transfer-needs-approval'], reasons: ['transfers need a human'], policyVersion: 'sha256:v1', requestedBy: servicePolicy.id } },
      { ...who, actor: serviceApprovals },
    );
    const answer = (status: 'granted' | 'denied', approver: { type: 'human' | 'agent'; id: string }, inSession = sid) =>
      ev(
        inSession,
        status === 'granted' ? 'approval.granted' : 'approval.denied',
        { ...base, cause: requested.id, approval: { ...approval, status, approver, source: { ip: '127.0.0.1', userAgent: 'custody-cli' } }, data: { call: req.id, apiKey: 'key:k-1' } },
        { ...who, actor: approver },
      );
    const expire = () =>
      ev(sid, 'approval.expired', { ...base, cause: requested.id, approval: { ...approval, status: 'expired' }, data: { call: req.id, reason: 'no human answered in time' } }, { ...who, actor: serviceApprovals });
    return { req, dec, requested, answer, expire, base, credential };
  };
  const servedAgent = { initiator: human('ivy@example.com'), actor: agent('agent:served'), chain: [{ principal: human('ivy@example.com') }, { principal: agent('agent:served') }] };
  const servicePolicy = { type: 'service' as const, id: 'custody-policy' };
  const serviceApprovals = { type: 'service' as const, id: 'custody-approvals' };
  ev('served', 'session.opened', { session: { id: `${prefix}-served`, objective: 'served approvals' } }, servedAgent);
  // Granted by a human, then used: the call with the approval is a new call, allowed, that runs. Approved: not reported.
  const granted = served('served', 'payments.transfer');
  granted.answer('granted', human('bob@example.com'));
  const use = ev('served', 'tool.requested', { ...granted.base, credential: granted.credential, data: { arguments: { amount: 4900 }, capture: 'full' } }, servedAgent);
  ev('served', 'policy.decided', { ...granted.base, cause: use.id, decision: { effect: 'allow', policyVersion: 'sha256:v1', policies: [], reasons: [] }, data: { decidedBy: 'server' } }, { ...servedAgent, actor: servicePolicy });
  ev('served', 'tool.completed', { ...granted.base, cause: use.id }, servedAgent);
  // Denied by a human; expired by the sweep; still pending; granted by an agent (only a human counts).
  served('served', 'payments.transfer').answer('denied', human('bob@example.com'));
  served('served', 'payments.refund').expire();
  served('served', 'payments.payout');
  served('served', 'payments.transfer').answer('granted', agent('agent:rubber-stamp'));
  // Near misses, pending: a human grant in another session naming this session's request,
  // and a human grant whose cause is an entry of the call that is not an approval.requested.
  served('served', 'payments.close').answer('granted', human('bob@example.com'), 'served-elsewhere');
  const notRequest = served('served', 'payments.freeze');
  const output = ev('served', 'model.output', { cause: notRequest.req.id, data: { output: 'ok' } }, servedAgent);
  ev('served', 'approval.granted', { ...notRequest.base, cause: output.id, approval: { id: 'apr-x', status: 'granted', approver: human('bob@example.com') }, data: { call: notRequest.req.id } }, { ...servedAgent, actor: human('bob@example.com') });

  // Custody's bookkeeping after an end, shaped as its writers write it; not acting.
  // The gateway's kill switch cancels a call in flight (packages/gateway, Gateway#record):
  // tool.failed by the agent, `cause` the call, `data.cancelled: true`.
  const cancel = (sid: string, cause: string, cancelled: unknown = true) =>
    ev(
      sid,
      'tool.failed',
      {
        tool: { name: 'payments.transfer', server: 'payments', callId: '7' },
        cause,
        data: { capture: 'full', durationMs: 812.5, upstreamCredentials: [], error: `session ${prefix}-${sid} was revoked`, cancelled },
      },
      servedAgent,
    );
  // The approvals service expires a session's pending approval because it ended (Approvals#record).
  const expireEnded = (sid: string, o: ReturnType<typeof served>, sessionEnded: unknown = 'revoked', actor: EventDraft['actor'] = serviceApprovals, cause = o.requested.id) =>
    ev(
      sid,
      'approval.expired',
      {
        ...o.base,
        cause,
        approval: { id: o.requested.approval!.id, status: 'expired', expiresAt: '2026-03-01T01:00:00.000Z', argumentsDigest: 'D'.repeat(43) },
        data: { call: o.req.id, reason: `the session ended (${String(sessionEnded)}) before anyone answered`, sessionEnded },
      },
      { ...servedAgent, actor },
    );
  const killed = (sid: string, end: 'session.revoked' | 'session.expired' = 'session.revoked') => {
    ev(sid, 'session.opened', {}, servedAgent);
    const c = call(sid, 'payments.transfer', 'allow');
    const held = served(sid, 'payments.transfer');
    ev(sid, end, {}, { ...servedAgent, actor: { type: 'service', id: 'custody-authority' } });
    if (end === 'session.revoked') ev(sid, 'credential.revoked', { credential: { jti: 'j-k', fingerprint: 'K'.repeat(43) } }, { ...servedAgent, actor: { type: 'service', id: 'custody-authority' } });
    return { c, held };
  };
  const kill = killed('killed');
  cancel('killed', kill.c.req.id);
  expireEnded('killed', kill.held);
  const lapsed = killed('expired-held', 'session.expired');
  expireEnded('expired-held', lapsed.held, 'expired');
  // Near misses, acting: a cancellation of a call recorded after the end, of an entry that
  // is not a call, of another session's call, or whose cancelled is not true.
  ev('cancel-late', 'session.opened', {}, servedAgent);
  ev('cancel-late', 'session.revoked', {}, servedAgent);
  cancel('cancel-late', call('cancel-late', 'payments.transfer', 'allow').req.id);
  cancel('cancel-not-call', killed('cancel-not-call').c.dec.id);
  const elsewhere = call('cancel-source', 'payments.transfer', 'allow');
  killed('cancel-elsewhere');
  cancel('cancel-elsewhere', elsewhere.req.id);
  cancel('cancel-not-true', killed('cancel-not-true').c.req.id, 'true');
  // ...and expiries not by the approvals service, not for a session's end (the TTL), with a
  // sessionEnded that is not one of the end states, naming no approval.requested, or of a
  // request recorded after the end.
  expireEnded('expiry-by-agent', killed('expiry-by-agent').held, 'revoked', servedAgent.actor);
  expireEnded('expiry-not-service', killed('expiry-not-service').held, 'revoked', { type: 'agent', id: 'custody-approvals' });
  killed('expiry-ttl').held.expire();
  const odd = killed('expiry-odd-state');
  expireEnded('expiry-odd-state', odd.held, 'gone');
  expireEnded('expiry-odd-state', odd.held, ['revoked']);
  const notRequested = killed('expiry-not-request');
  expireEnded('expiry-not-request', notRequested.held, 'revoked', serviceApprovals, notRequested.held.req.id);
  ev('expiry-late', 'session.opened', {}, servedAgent);
  ev('expiry-late', 'session.revoked', {}, servedAgent);
  expireEnded('expiry-late', served('expiry-late', 'payments.transfer'));
  return out;
}

interface Decoded {
  e: StoredEntry;
  env: Envelope;
}

async function readAll(store: LedgerStore, tenant: string): Promise<Decoded[]> {
  const out: Decoded[] = [];
  for await (const e of store.readEntries(tenant, 0, Number.MAX_SAFE_INTEGER)) out.push({ e, env: decodeEntry(e.entry) });
  return out;
}

function inRange(env: Envelope, range: ReportRange): boolean {
  const k = timeKey(env.time);
  if (range.since !== undefined && k < filterTimeKey(range.since, 'since')) return false;
  if (range.until !== undefined && k >= filterTimeKey(range.until, 'until')) return false;
  return true;
}

/** The reference selections, newest first. */
function reference(all: Decoded[], range: ReportRange, depth = 2) {
  const desc = (xs: Decoded[]) => xs.filter((d) => inRange(d.env, range)).map((d) => d.e.index).sort((a, b) => b - a);
  const bySession = new Map<string, Decoded[]>();
  for (const d of all) if (d.env.session) bySession.set(d.env.session.id, [...(bySession.get(d.env.session.id) ?? []), d]);
  const unapproved = all.filter(({ env }) => {
    if (env.type !== 'policy.decided' || env.decision?.effect !== 'approval_required') return false;
    const keys = new Set([env.cause ?? env.id, env.id]);
    const session = bySession.get(env.session!.id) ?? [];
    // The approval.requested entries of the call: a decision naming one answers the call.
    for (const r of session) if (r.env.type === 'approval.requested' && r.env.cause !== undefined && keys.has(r.env.cause)) keys.add(r.env.id);
    return !session.some((g) => g.env.type === 'approval.granted' && g.env.cause !== undefined && keys.has(g.env.cause) && g.env.approval?.approver?.type === 'human');
  });
  const denied = all.filter(
    ({ env }) =>
      (env.type === 'policy.decided' && env.decision?.effect === 'deny') ||
      (env.type === 'tool.requested' && (env.chain ?? []).some((l) => l.scope !== undefined && !scopeCovers(l.scope, env.tool!.name))),
  );
  const ends: ReadonlySet<string> = new Set(SESSION_END_TYPES);
  const allowed: ReadonlySet<string> = new Set(AFTER_END_ALLOWED);
  const after: Decoded[] = [];
  for (const entries of bySession.values()) {
    const end = entries.find((d) => ends.has(d.env.type));
    if (end === undefined) continue;
    // Custody's bookkeeping of something recorded before the end: the gateway's cancellation
    // of a call, the approvals service's expiry of an approval because its session ended.
    const before = (id: string | undefined, type: string) => entries.some((c) => c.env.id === id && c.env.type === type && c.e.index < end.e.index);
    const bookkeeping = ({ env }: Decoded) =>
      (env.type === 'tool.failed' && env.data?.['cancelled'] === true && before(env.cause, 'tool.requested')) ||
      (env.type === 'approval.expired' &&
        env.actor.type === 'service' &&
        env.actor.id === 'custody-approvals' &&
        ['revoked', 'closed', 'expired'].includes(env.data?.['sessionEnded'] as string) &&
        before(env.cause, 'approval.requested'));
    if (entries.some((d) => d.e.index > end.e.index && !allowed.has(d.env.type) && !isRefusal(d.env) && !bookkeeping(d))) after.push(end);
  }
  const deep = all.filter(({ env }) => (env.type === 'session.opened' || env.type === 'session.delegated') && (env.chain?.length ?? 0) > depth + 1);
  return { unapproved: desc(unapproved), denied: desc(denied), after: desc(after), deep: desc(deep) };
}

/** Every row of a paged report, page by page. */
async function allPages<R extends { index: number }, Q extends ReportRequest>(run: (req: Q) => Promise<ReportPage<R>>, req: Q): Promise<R[]> {
  const rows: R[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const res = await run({ ...req, ...(cursor !== undefined ? { cursor } : {}) });
    rows.push(...res.rows);
    if (res.nextCursor === undefined) return rows;
    expect(res.rows).toHaveLength(req.limit ?? 100);
    cursor = res.nextCursor;
  }
  throw new Error('too many pages');
}

function defineSuite(opts: StoreConformanceOptions): void {
  let store: LedgerStore;
  let all: Decoded[];
  const tenant = `reports-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
  const prefix = `case-${Math.floor(Math.random() * 1e9).toString(36)}`;

  beforeAll(async () => {
    store = await opts.createStore();
    await store.migrate();
    const log = new FixtureLog({ tenant });
    const bulk = scenarioDrafts({ sessions: 60, toolCalls: 3, seed: 7, prefix: `${prefix}-bulk` });
    const cases = caseDrafts(prefix);
    for (const drafts of [bulk.slice(0, 250), cases, bulk.slice(250)]) {
      const b = log.append(drafts);
      await store.append(b, b.head.size - b.entries.length);
    }
    all = await readAll(store, tenant);
  });

  afterAll(async () => {
    await store?.close();
    await opts.teardown?.();
  });

  const windows: [string, ReportRange][] = [
    ['the whole log', {}],
    ['a time window', { since: '2026-01-01T00:00:05Z', until: '2026-03-01T00:00:20.5Z' }],
  ];

  it.each(windows)('typeCounts and sessionCounts match the entries over %s', async (_, range) => {
    const inWindow = all.filter((d) => inRange(d.env, range));
    const byType = new Map<string, number>();
    const byDecision = new Map<string, number>();
    for (const { env } of inWindow) {
      byType.set(env.type, (byType.get(env.type) ?? 0) + 1);
      if (env.decision) byDecision.set(env.decision.effect, (byDecision.get(env.decision.effect) ?? 0) + 1);
    }
    const counts = await store.reports.typeCounts(tenant, range);
    expect(new Map(counts.filter((c) => c.decision === undefined).map((c) => [c.type, c.count]))).toEqual(byType);
    expect(new Map(counts.filter((c) => c.decision !== undefined).map((c) => [c.decision!, c.count]))).toEqual(byDecision);
    // Sessions: those active in the window by recordedAt (the sessions table's clock), sealed, and open.
    const sessions = new Map<string, Decoded[]>();
    for (const d of all) if (d.env.session) sessions.set(d.env.session.id, [...(sessions.get(d.env.session.id) ?? []), d]);
    const active = [...sessions.values()].filter((es) => {
      const first = es[0]!.env.recordedAt;
      const last = es[es.length - 1]!.env.recordedAt;
      return (range.since === undefined || last >= range.since) && (range.until === undefined || first < range.until);
    });
    const allowed: ReadonlySet<string> = new Set(AFTER_END_ALLOWED);
    // Sealed: the seal is the session's last entry (the ledger refuses anything after it;
    // this fixture writes a case past a seal to prove the reports see through it).
    const last = (es: Decoded[]) => es[es.length - 1]!.env.type;
    const sealed = active.filter((es) => last(es) === 'session.closed').length;
    // Open: neither sealed nor ended: no revocation or expiry anywhere in it, whatever follows.
    const ends: ReadonlySet<string> = new Set(SESSION_END_TYPES);
    const open = active.filter((es) => last(es) !== 'session.closed' && !allowed.has(last(es)) && !es.some((d) => ends.has(d.env.type))).length;
    expect(await store.reports.sessionCounts(tenant, range)).toEqual({ sessions: active.length, sealed, open });
  });

  it.each(windows)('unapproved-calls match the reference over %s, across pages', async (_, range) => {
    const ref = reference(all, range).unapproved;
    expect(ref.length).toBeGreaterThan(3);
    const rows = await allPages((r) => unapprovedCallsReport(store, tenant, r), { ...range, limit: 3 });
    expect(rows.map((r) => r.index)).toEqual(ref);
    for (const r of rows) {
      expect(r.sessionPath).toBe(`/v1/sessions/${encodeURIComponent(r.session)}`);
      expect(r.type).toBe('policy.decided');
    }
  });

  it('unapproved-calls says what became of each approval', async () => {
    const rows = (await unapprovedCallsReport(store, tenant, { limit: 1000 })).rows.filter((r) => r.session.startsWith(`${prefix}-appr`));
    const bySession = (s: string) => rows.filter((r) => r.session === `${prefix}-${s}`);
    // The agent's approval does not count, and the call ran; the denied one did not run.
    expect(bySession('appr').map((r) => [r.tool, r.approval, r.ran])).toEqual([
      ['slack.post_message', 'denied', false],
      ['stripe.refund', 'granted-not-human', true],
    ]);
    // An approval in another session does not count.
    expect(bySession('appr2').map((r) => r.approval)).toEqual(['none']);
    expect(bySession('appr2')[0]!.policies).toEqual(['p-stripe.refund']);
  });

  it('unapproved-calls follows the approval.requested hop of approvals as the server writes them', async () => {
    const rows = (await unapprovedCallsReport(store, tenant, { limit: 1000 })).rows.filter((r) => r.session === `${prefix}-served`);
    // The human grant (used later by another call) leaves no row; the rest, newest first.
    expect(rows.map((r) => [r.tool, r.approval, r.ran])).toEqual([
      ['payments.freeze', 'pending', false],
      ['payments.close', 'pending', false],
      ['payments.transfer', 'granted-not-human', false],
      ['payments.payout', 'pending', false],
      ['payments.refund', 'expired', false],
      ['payments.transfer', 'denied', false],
    ]);
    for (const r of rows) expect(r.call).not.toBe(r.event);
  });

  it.each(windows)('denied-calls (denied and out of scope) match the reference over %s, across pages', async (_, range) => {
    const ref = reference(all, range).denied;
    const rows = await allPages((r) => deniedCallsReport(store, tenant, r), { ...range, limit: 4 });
    expect(rows.map((r) => r.index)).toEqual(ref);
    const outside = rows.filter((r) => r.kind === 'out-of-scope');
    expect(outside.map((r) => [r.tool, r.scope])).toEqual(range.since === undefined ? [['stripe.refund', ['github.*', 'tool:db.query']]] : outside.map((r) => [r.tool, r.scope]));
    expect(rows.filter((r) => r.kind === 'denied').every((r) => r.reasons !== undefined && r.type === 'policy.decided')).toBe(true);
  });

  it('acted-after-end reports the first end of each session that acted after it', async () => {
    const ref = reference(all, {}).after;
    const rows = await allPages((r) => actedAfterEndReport(store, tenant, r), { limit: 1 });
    expect(rows.map((r) => r.index)).toEqual(ref);
    expect(rows.map((r) => [r.session.slice(prefix.length + 1), r.type, r.first.type, r.after]).sort()).toEqual([
      ['cancel-elsewhere', 'session.revoked', 'tool.failed', 1],
      ['cancel-late', 'session.revoked', 'tool.requested', 3],
      ['cancel-not-call', 'session.revoked', 'tool.failed', 1],
      ['cancel-not-true', 'session.revoked', 'tool.failed', 1],
      ['expired', 'session.expired', 'model.output', 1],
      ['expiry-by-agent', 'session.revoked', 'approval.expired', 1],
      ['expiry-late', 'session.revoked', 'tool.requested', 4],
      ['expiry-not-request', 'session.revoked', 'approval.expired', 1],
      ['expiry-not-service', 'session.revoked', 'approval.expired', 1],
      ['expiry-odd-state', 'session.revoked', 'approval.expired', 2],
      ['expiry-ttl', 'session.revoked', 'approval.expired', 1],
      ['late-call', 'session.revoked', 'tool.requested', 2],
      ['no-cause', 'session.revoked', 'tool.failed', 1],
      ['not-true', 'session.expired', 'tool.failed', 1],
      ['ran-anyway', 'session.revoked', 'tool.completed', 1],
      ['revoked', 'session.revoked', 'tool.requested', 1],
      ['sealed', 'session.closed', 'prompt.received', 1],
    ]);
  });

  it('acted-after-end does not count the refusal that closes a call in flight at a revocation', async () => {
    const rows = (await actedAfterEndReport(store, tenant, { limit: 1000 })).rows;
    const session = (sid: string) => rows.find((r) => r.session === `${prefix}-${sid}`);
    // Revoked while the call was decided; after the end only its credential's revocation and the refusal.
    const inflight = all.filter((d) => d.env.session?.id === `${prefix}-inflight`).map((d) => d.env.type);
    expect(inflight).toEqual(['session.opened', 'tool.requested', 'policy.decided', 'session.revoked', 'credential.revoked', 'tool.failed']);
    expect(session('inflight')).toBeUndefined();
    // Killed with a call in flight and an approval pending: the gateway's cancellation and the
    // approvals service's expiry follow the end, and are not acting (nor after an expiry).
    const killed = all.filter((d) => d.env.session?.id === `${prefix}-killed`).map((d) => d.env.type);
    expect(killed.slice(killed.indexOf('session.revoked'))).toEqual(['session.revoked', 'credential.revoked', 'tool.failed', 'approval.expired']);
    expect(session('killed')).toBeUndefined();
    expect(session('expired-held')).toBeUndefined();
    // The refusal between the end and the run is skipped: `first` is what ran.
    const ran = session('ran-anyway')!;
    const completed = all.find((d) => d.env.session?.id === `${prefix}-ran-anyway` && d.env.type === 'tool.completed')!;
    expect(ran.first).toMatchObject({ type: 'tool.completed', index: completed.e.index, event: completed.env.id });
    // The store's selection leaves the end out itself (so pages stay full), in a window too.
    const end = all.find((d) => d.env.session?.id === `${prefix}-inflight` && d.env.type === 'session.revoked')!;
    expect(await store.reports.actedAfterEnd(tenant, {}, undefined, 1000)).toEqual(reference(all, {}).after);
    expect(await store.reports.actedAfterEnd(tenant, { since: end.env.time, until: new Date(Date.parse(end.env.time) + 1).toISOString() }, undefined, 10)).toEqual([]);
  });

  it('deep-delegation: chains deeper than depth, default 2', async () => {
    const rows = (await deepDelegationReport(store, tenant, {})).rows;
    expect(rows.map((r) => r.index)).toEqual(reference(all, {}).deep);
    expect(rows.map((r) => [r.session, r.depth, r.chain.length, r.parent])).toEqual([[`${prefix}-deep`, 3, 4, `${prefix}-scoped`]]);
    // The fixture's delegated sessions are two hops deep: depth 1 catches them too.
    const one = await allPages((r) => deepDelegationReport(store, tenant, r), { depth: 1, limit: 5 });
    expect(one.map((r) => r.index)).toEqual(reference(all, {}, 1).deep);
    expect(one.length).toBeGreaterThan(5);
    await expect(deepDelegationReport(store, tenant, { depth: -1 })).rejects.toMatchObject({ code: 'RANGE_INVALID', field: 'depth' });
  });

  it('principal-activity counts a principal by type, tool, decision and role', async () => {
    const who = 'ivy@example.com';
    for (const range of windows.map((w) => w[1])) {
      const mine = all.filter((d) => principalsOf(d.env).some((p) => p.id === who) && inRange(d.env, range));
      const res = await principalActivityReport(store, tenant, { principal: who, ...range });
      expect(res.entries).toBe(mine.length);
      const byType: Record<string, number> = {};
      for (const d of mine) byType[d.env.type] = (byType[d.env.type] ?? 0) + 1;
      expect(res.byType).toEqual(byType);
      expect(res.byRole['initiator']).toBe(mine.filter((d) => d.env.initiator?.id === who).length);
      expect(res.byRole['chain']).toBe(mine.filter((d) => d.env.chain?.some((l) => l.principal.id === who)).length);
      expect(res.byDecision['deny'] ?? 0).toBe(mine.filter((d) => d.env.decision?.effect === 'deny').length);
      expect(res.rows.map((r) => r.session)).toEqual([...new Set(mine.map((d) => d.env.session!.id).reverse())]);
    }
    const approver = await principalActivityReport(store, tenant, { principal: 'dana@example.com' });
    expect(approver.byRole).toEqual({ approver: 3 });
    expect((await principalActivityReport(store, tenant, { principal: 'nobody' })).entries).toBe(0);
  });

  it('top-principals ranks initiators and agents by sessions', async () => {
    const res = await topPrincipalsReport(store, tenant, { limit: 5 });
    expect(res.rows).toHaveLength(5);
    const sessions = (await store.listSessions(tenant, {}, { limit: 1000 })).items;
    const count = new Map<string, number>();
    for (const s of sessions) {
      count.set(`initiator ${s.initiatorId}`, (count.get(`initiator ${s.initiatorId}`) ?? 0) + 1);
      count.set(`agent ${s.actorId}`, (count.get(`agent ${s.actorId}`) ?? 0) + 1);
    }
    const best = Math.max(...count.values());
    expect(res.rows[0]!.sessions).toBe(best);
    for (const r of res.rows) {
      expect(r.sessions).toBe(count.get(`${r.role} ${r.principal}`));
      const last = sessions.find((s) => s.id === r.lastSession)!;
      expect(r.role === 'initiator' ? last.initiatorId : last.actorId).toBe(r.principal);
      expect(r.lastSessionPath).toBe(`/v1/sessions/${encodeURIComponent(r.lastSession)}`);
    }
    expect((await topPrincipalsReport(store, tenant, { since: '2030-01-01T00:00:00Z' })).rows).toEqual([]);
  });

  it('bad input is a LedgerError naming the field, never a crash', async () => {
    await expect(unapprovedCallsReport(store, tenant, { cursor: 'garbage!' })).rejects.toMatchObject({ code: 'CURSOR_INVALID' });
    await expect(deniedCallsReport(store, tenant, { since: 'yesterday' })).rejects.toBeInstanceOf(LedgerError);
    await expect(actedAfterEndReport(store, tenant, { until: '2026-13-45T00:00:00Z' })).rejects.toMatchObject({ code: 'RANGE_INVALID', field: 'until' });
    await expect(principalActivityReport(store, tenant, { principal: '' })).rejects.toMatchObject({ code: 'RANGE_INVALID', field: 'principal' });
    // An empty tenant answers empty reports.
    expect((await unapprovedCallsReport(store, 'no-such-tenant', {})).rows).toEqual([]);
    expect((await principalActivityReport(store, 'no-such-tenant', { principal: 'x' })).entries).toBe(0);
  });
}
