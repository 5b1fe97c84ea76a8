import type { EventView } from '@custody/ledger';

import { apiJson, type ConnectionOptions, queryString, resolveConnection } from '../connection.js';
import { CliError, type Output, safeData, safeJson, safeText } from '../output.js';
import { collectPages, effectStyle, parseIntFlag, parseTimeFlag, printTable, shortTime, tint } from '../render.js';

/** Options of `custody search`. */
export interface SearchOptions extends ConnectionOptions {
  user?: string;
  agent?: string;
  approver?: string;
  principal?: string;
  workload?: string;
  tool?: string;
  decision?: string;
  type?: string;
  session?: string;
  trace?: string;
  objective?: string;
  since?: string;
  until?: string;
  limit?: string;
  cursor?: string;
  all?: boolean;
  asc?: boolean;
  json?: boolean;
}

const DECISIONS = ['allow', 'deny', 'approval_required'];

/** The GET /v1/events query of the search flags (user input is checked here: exit 2 naming the flag). */
export function searchQuery(opts: SearchOptions, now = Date.now()): Record<string, string | number | undefined> {
  if (opts.decision !== undefined && !DECISIONS.includes(opts.decision)) {
    throw new CliError('DECISION_INVALID', `--decision must be one of ${DECISIONS.join(', ')}; got ${JSON.stringify(opts.decision)}`);
  }
  if (opts.type !== undefined && !/^[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?$/.test(opts.type)) {
    throw new CliError('TYPE_INVALID', `--type must be an event type such as tool.requested, or a family such as approval.*; got ${JSON.stringify(opts.type)}`);
  }
  if (opts.trace !== undefined && !/^[0-9a-f]{32}$/.test(opts.trace)) throw new CliError('TRACE_INVALID', '--trace must be a W3C trace id: 32 lowercase hex digits');
  return {
    initiator: opts.user,
    agent: opts.agent,
    approver: opts.approver,
    principal: opts.principal,
    workload: opts.workload,
    tool: opts.tool,
    decision: opts.decision,
    type: opts.type,
    session: opts.session,
    trace: opts.trace,
    objective: opts.objective,
    since: parseTimeFlag(opts.since, '--since', now),
    until: parseTimeFlag(opts.until, '--until', now),
    limit: parseIntFlag(opts.limit, '--limit', 1, 1000),
    order: opts.asc ? 'asc' : undefined,
  };
}

/** A one-line summary of what an event says beyond its type (of the event as the server gave it: values are shown through `safeText`). */
export function eventDetail(io: Output, raw: EventView['event']): string {
  const e = safeData(raw);
  const bits: string[] = [];
  if (e.tool) bits.push(e.tool.name);
  if (e.decision) bits.push(tint(io, effectStyle(e.decision.effect), e.decision.effect) + (e.decision.policies.length > 0 ? ` [${e.decision.policies.join(', ')}]` : ''));
  if (e.approval) bits.push(`${tint(io, effectStyle(e.approval.status), e.approval.status ?? 'approval')}${e.approval.approver ? ` by ${e.approval.approver.id}` : ''}`);
  if (e.credential) bits.push(`jti ${e.credential.jti}${e.credential.expiresAt ? `, expires ${shortTime(e.credential.expiresAt)}` : ''}`);
  if (e.seal) bits.push(`seal: ${e.seal.count} entries`);
  if (raw.type === 'session.opened' || raw.type === 'session.delegated') if (raw.session?.objective) bits.push(safeJson(raw.session.objective));
  return bits.join('  ');
}

/** `custody search`: identity query over the ledger (GET /v1/events). */
export async function runSearch(opts: SearchOptions, io: Output): Promise<number> {
  const query = searchQuery(opts);
  const conn = resolveConnection(opts);
  const res = await collectPages(io, opts, 'events', async (cursor) => {
    const page = await apiJson<{ events: EventView[]; nextCursor?: string }>(conn, `/v1/events${queryString({ ...query, cursor })}`);
    return { items: page.events, ...(page.nextCursor !== undefined ? { nextCursor: page.nextCursor } : {}) };
  });
  if (opts.json) {
    io.out(safeJson({ events: res.items, ...(res.nextCursor !== undefined ? { nextCursor: res.nextCursor } : {}) }, 2));
    return 0;
  }
  if (res.items.length === 0) {
    io.out('no events match');
    return 0;
  }
  printTable(
    io,
    ['INDEX', 'TIME', 'TYPE', 'SESSION', 'ACTOR', 'DETAIL'],
    res.items.map((v) => [String(v.index), shortTime(safeText(v.event.time)), safeText(v.event.type), safeText(v.event.session?.id ?? '-'), safeText(v.event.actor.id), eventDetail(io, v.event)]),
  );
  if (res.nextCursor !== undefined) io.err(`more events follow: add --cursor ${safeText(res.nextCursor)} (or --all)`);
  return 0;
}
