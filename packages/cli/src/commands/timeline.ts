import type { CauseNode, EventView, SessionRow } from '@custody/ledger';

import { apiJson, type ConnectionOptions, resolveConnection } from '../connection.js';
import { CliError, type Output, paint, safeData, safeJson } from '../output.js';
import { effectStyle, shortTime, tint } from '../render.js';

/** Options of `custody timeline`. */
export interface TimelineOptions extends ConnectionOptions {
  json?: boolean;
}

interface Timeline {
  session: SessionRow;
  events: EventView[];
  tree: CauseNode[];
  /** Imported external.* entries sharing a trace id with the session's events (lower assurance). */
  external?: EventView[];
}

type Env = EventView['event'];

const ENDS = new Set(['session.closed', 'session.revoked', 'session.expired']);

/** What one step says, for the tree: decisions with policies and reasons, approvals, credentials, the end. */
function stepLines(io: Output, e: Env, agent: string | undefined): { head: string; more: string[] } {
  const more: string[] = [];
  const bits: string[] = [paint(io.color, 'bold', e.type)];
  if (e.tool) bits.push(e.tool.name + (e.tool.callId ? ` (${e.tool.callId})` : ''));
  if (e.actor.id !== agent) bits.push(paint(io.color, 'dim', `by ${e.actor.type} ${e.actor.id}`));
  if (e.decision) {
    bits.push(tint(io, effectStyle(e.decision.effect), e.decision.effect));
    more.push(`policies: ${e.decision.policies.length > 0 ? e.decision.policies.join(', ') : '(none)'}  policy set ${e.decision.policyVersion}`);
    for (const r of e.decision.reasons) more.push(`reason: ${r}`);
  }
  if (e.approval) {
    const a = e.approval;
    bits.push(tint(io, effectStyle(a.status), a.status ?? '') + ` approval ${a.id}`);
    if (a.approver) more.push(`approver: ${a.approver.type} ${a.approver.id}${a.approver.verified ? ' (verified)' : ''}`);
    if (a.source) more.push(`from: ${Object.entries(a.source).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    if (a.expiresAt) more.push(`expires: ${shortTime(a.expiresAt)}`);
    if (a.reason) more.push(`reason: ${a.reason}`);
  }
  if (e.credential) {
    const c = e.credential;
    bits.push(`credential ${c.jti}`);
    more.push(`fingerprint ${c.fingerprint}${c.issuedAt ? `  issued ${shortTime(c.issuedAt)}` : ''}${c.expiresAt ? `  expires ${shortTime(c.expiresAt)}` : ''}`);
    if (c.scope) more.push(`scope: ${c.scope.join(' ')}`);
  }
  if (e.seal) bits.push(paint(io.color, 'green', `sealed: ${e.seal.count} entries`));
  if (e.type === 'session.revoked' || e.type === 'session.expired') bits[0] = paint(io.color, 'red', e.type);
  if ((e.type === 'session.opened' || e.type === 'session.delegated') && e.session?.objective) more.push(`objective: ${e.session.objective}`);
  const handoff = e.type === 'session.delegated' ? (e.data?.['handoff'] as Record<string, unknown> | undefined) : undefined;
  if (handoff !== undefined && typeof handoff === 'object') {
    const text = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? String(v) : undefined);
    if (handoff['stage'] === 'accepted') bits.push(`handoff ${text(handoff['id']) ?? '?'} accepted from ${text(handoff['from']) ?? '?'} (${text(handoff['mode']) ?? '?'})`);
    else bits.push(`handoff ${text(handoff['id']) ?? '?'} offered${text(handoff['to']) !== undefined ? ` to ${text(handoff['to'])}` : ''}`);
    if (Array.isArray(handoff['scope'])) more.push(`scope: ${handoff['scope'].map(String).join(' ')}`);
  }
  return { head: bits.join('  '), more };
}

/** The delegation chain of a session, root first, from its first entry that carries one. */
function chainOf(events: EventView[]): string {
  const withChain = events.find((v) => v.event.chain !== undefined && v.event.chain.length > 0)?.event;
  if (withChain?.chain) return withChain.chain.map((l) => `${l.principal.id}${l.scope ? ` [${l.scope.join(' ')}]` : ''}`).join(' → ');
  const first = events[0]?.event;
  return first ? `${first.initiator?.id ?? '?'} → ${first.actor.id}` : '';
}

/**
 * Prints a session's timeline: the header, then the causal tree (by `cause`; roots and
 * siblings in seq order). Every value is shown through `safeText` (objectives, tool names,
 * ids and reasons are agent- or server-supplied).
 */
export function printTimeline(io: Output, timeline: Timeline): void {
  const t = safeData(timeline);
  const s = t.session;
  const byId = new Map(t.events.map((v) => [v.event.id, v]));
  const first = t.events[0]?.event;
  const end = [...t.events].reverse().find((v) => ENDS.has(v.event.type))?.event;
  const status = s.sealed
    ? paint(io.color, 'green', 'sealed')
    : end?.type === 'session.revoked'
      ? paint(io.color, 'red', 'revoked')
      : end?.type === 'session.expired'
        ? paint(io.color, 'red', 'expired')
        : paint(io.color, 'yellow', 'open (not sealed)');
  io.out(`${paint(io.color, 'bold', `Session ${s.id}`)}  ${status}  ${s.entries} entries, seq 1…${s.seq}`);
  if (s.objective) io.out(`  objective  ${s.objective}`);
  if (first?.initiator) io.out(`  initiator  ${first.initiator.type} ${first.initiator.id}${first.initiator.verified ? ' (verified)' : ' (claimed)'}`);
  io.out(`  chain      ${chainOf(t.events)}`);
  if (s.parent) io.out(`  parent     ${s.parent}  (custody timeline ${s.parent})`);
  if (first?.workload) io.out(`  workload   ${first.workload.spiffeId ?? first.workload.subject ?? ''} (${first.workload.method}${first.workload.verified ? ', verified' : ''})`);
  io.out(`  recorded   ${shortTime(s.firstAt)} … ${shortTime(s.lastAt)}  (log index ${s.firstIndex}…${s.lastIndex})`);
  io.out('');
  const agent = first?.actor.id;
  const walk = (nodes: CauseNode[], prefix: string) => {
    const sorted = [...nodes].sort((a, b) => (a.seq ?? a.index) - (b.seq ?? b.index));
    sorted.forEach((n, i) => {
      const last = i === sorted.length - 1;
      const v = byId.get(n.id);
      if (v === undefined) return;
      const { head, more } = stepLines(io, v.event, agent);
      const seq = `#${n.seq ?? '-'}`.padStart(4);
      io.out(`${prefix}${last ? '└─' : '├─'} ${paint(io.color, 'dim', `${seq} ${shortTime(v.event.time)}`)}  ${head}`);
      const inner = `${prefix}${last ? '   ' : '│  '}`;
      for (const m of more) io.out(`${inner}${n.children.length > 0 ? '│' : ' '}      ${paint(io.color, 'dim', m)}`);
      if (v.redacted.length > 0) io.out(`${inner}${n.children.length > 0 ? '│' : ' '}      ${paint(io.color, 'dim', `redacted: ${v.redacted.join(', ')}`)}`);
      walk(n.children, inner);
    });
  };
  walk(t.tree, '');
  io.out('');
  const external = t.external ?? [];
  if (external.length > 0) {
    io.out(`${paint(io.color, 'bold', `Imported (${external.length})`)}  ${paint(io.color, 'yellow', 'lower assurance')}: external.* entries sharing this session's trace ids, not in its chain; identities as the source claimed them`);
    for (const v of external) {
      const e = v.event;
      const source = typeof e.data?.['source'] === 'string' ? e.data['source'] : 'external';
      const bits = [paint(io.color, 'dim', `${shortTime(e.time)}`), paint(io.color, 'bold', e.type)];
      if (e.tool) bits.push(e.tool.name);
      bits.push(paint(io.color, 'dim', `by ${e.actor.type} ${e.actor.id} (claimed)`));
      bits.push(paint(io.color, 'yellow', `[imported from ${source}]`));
      io.out(`  ◦ ${bits.join('  ')}`);
    }
    io.out('');
  }
  if (s.sealed) io.out(`${paint(io.color, 'green', '✔')} sealed: the seal commits to ${s.seq} entries; export and verify: custody export --session ${s.id} -o ${s.id}.bundle.json`);
  else if (end?.type === 'session.revoked' || end?.type === 'session.expired') io.out(`${paint(io.color, 'red', '■')} ${end.type.slice(8)} at ${shortTime(end.time)} by ${end.actor.id}`);
  else io.out(`${paint(io.color, 'yellow', '●')} not sealed: later entries may still arrive`);
}

/** `custody timeline <session>`: the session as a causal tree. */
export async function runTimeline(session: string, opts: TimelineOptions, io: Output): Promise<number> {
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(session)) {
    throw new CliError('SESSION_INVALID', `a session id is 1-128 characters of A-Z a-z 0-9 . _ : -; got ${JSON.stringify(session.slice(0, 140))}`);
  }
  const conn = resolveConnection(opts);
  const t = await apiJson<Timeline>(conn, `/v1/sessions/${encodeURIComponent(session)}/timeline`);
  if (opts.json) io.out(safeJson(t, 2));
  else printTimeline(io, t);
  return 0;
}
