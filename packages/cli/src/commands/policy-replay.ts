/**
 * `custody policy replay`: re-evaluate recorded tool-call decisions under another
 * policy set and list the calls whose decision would change. See docs/policies.md,
 * "Replaying recorded decisions".
 */
import type { Envelope } from '@custody/core';
import type { EventView } from '@custody/ledger';
import { type CompiledPolicySet, PolicyEngine, PolicyError, type PolicyRequest } from '@custody/policy';

import { apiJson, type ConnectionOptions, queryString, resolveConnection } from '../connection.js';
import { type Output, paint, safeData, safeJson } from '../output.js';
import { parseTimeFlag, printTable, progress, shortTime } from '../render.js';

/** Options of `custody policy replay`. */
export interface ReplayOptions extends ConnectionOptions {
  policies: string;
  since?: string;
  until?: string;
  all?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/** One replayed decision. */
export interface ReplayRow {
  session: string;
  /** The recorded policy.decided event. */
  event: string;
  index: number;
  time: string;
  tool: string;
  recorded: string;
  replayed: string;
  policies: string[];
  reasons: string[];
  /** Parts of the request that could not be rebuilt from the log (the replay used defaults for them). */
  missing: string[];
}

const SERVER_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** The tool's MCP server and name: `tool.server`, else the part of `tool.name` before its first dot. */
export function targetOf(tool: { name: string; server?: string }): { server: string; name: string } {
  if (tool.server !== undefined && SERVER_NAME.test(tool.server)) {
    const prefix = `${tool.server}.`;
    return { server: tool.server, name: tool.name.startsWith(prefix) ? tool.name.slice(prefix.length) : tool.name };
  }
  const dot = tool.name.indexOf('.');
  if (dot > 0 && SERVER_NAME.test(tool.name.slice(0, dot))) return { server: tool.name.slice(0, dot), name: tool.name.slice(dot + 1) };
  return { server: 'default', name: tool.name };
}

/**
 * The policy request a recorded decision answered, rebuilt from the log: the decision
 * entry (actor, tool, session, initiator, chain, time), the call it decided (its
 * `cause`, for the arguments) and the session's latest `credential.issued` before it
 * (scope, expiry, depth). Anything missing is named in `missing`.
 */
export function requestOf(decision: EventView, call: EventView | undefined, credential: Envelope | undefined): { request: PolicyRequest; missing: string[] } {
  const env = decision.event;
  const missing: string[] = [];
  const now = env.decision?.evaluatedAt ?? env.time;
  const args = call?.event.data?.['arguments'];
  let argumentsValue: Record<string, unknown> | undefined;
  if (call === undefined) missing.push('call');
  else if (call.redacted.includes('/data/arguments')) missing.push('arguments (redacted)');
  else if (args !== null && typeof args === 'object' && !Array.isArray(args)) argumentsValue = args as Record<string, unknown>;
  const chainScope = env.chain?.at(-1)?.scope;
  const scope = credential?.credential?.scope ?? chainScope;
  if (scope === undefined) missing.push('scope');
  const expiresAt = credential?.credential?.expiresAt;
  if (expiresAt === undefined) missing.push('expiresAt');
  const depth = credential?.credential?.depth ?? Math.max(0, (env.chain?.length ?? 2) - 2);
  const request: PolicyRequest = {
    action: 'tools/call',
    principal: { type: env.actor.type, id: env.actor.id },
    target: targetOf(env.tool!),
    ...(argumentsValue !== undefined ? { arguments: argumentsValue } : {}),
    session: {
      id: env.session!.id,
      scope: scope ?? [],
      // Without a recorded expiry the session is taken as live at the time of the call.
      expiresAt: expiresAt ?? new Date(Date.parse(now) + 3_600_000).toISOString(),
      depth,
      initiator: env.initiator?.id ?? '',
      ...(env.session?.objective !== undefined ? { objective: env.session.objective } : {}),
    },
    approval: { status: 'none' },
    now,
  };
  return { request, missing };
}

async function allPages(conn: ReturnType<typeof resolveConnection>, query: Record<string, string | undefined>, onPage: (n: number) => void): Promise<EventView[]> {
  const out: EventView[] = [];
  let cursor: string | undefined;
  do {
    const page = await apiJson<{ events: EventView[]; nextCursor?: string }>(conn, `/v1/events${queryString({ ...query, limit: 1000, order: 'asc', ...(cursor ? { cursor } : {}) })}`);
    out.push(...page.events);
    onPage(out.length);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return out;
}

/** `custody policy replay --policies DIR`: exit 0, listing the calls whose decision would change. */
export async function runPolicyReplay(opts: ReplayOptions, io: Output, load: (dir: string) => CompiledPolicySet): Promise<number> {
  const now = Date.now();
  const since = parseTimeFlag(opts.since, '--since', now);
  const until = parseTimeFlag(opts.until, '--until', now);
  const set = load(opts.policies);
  const engine = new PolicyEngine(set);
  const conn = resolveConnection(opts);
  const bar = progress(io, opts.quiet === true || opts.json === true);
  const decisions = await allPages(conn, { type: 'policy.decided', since, until }, (n) => bar.update(`reading recorded decisions: ${n}`));
  const timelines = new Map<string, EventView[]>();
  const rows: ReplayRow[] = [];
  for (const [i, d] of decisions.entries()) {
    bar.update(`replaying ${i + 1}/${decisions.length}`);
    const env = d.event;
    if (env.session === undefined || env.tool === undefined || env.decision === undefined) continue;
    let events = timelines.get(env.session.id);
    if (events === undefined) {
      events = (await apiJson<{ events: EventView[] }>(conn, `/v1/sessions/${encodeURIComponent(env.session.id)}/timeline`)).events;
      timelines.set(env.session.id, events);
    }
    const call = env.cause === undefined ? undefined : events.find((e) => e.event.id === env.cause);
    const credential = events.filter((e) => e.index < d.index && e.event.type === 'credential.issued').at(-1)?.event;
    const { request, missing } = requestOf(d, call, credential);
    let replayed: { effect: string; policies: string[]; reasons: string[] };
    try {
      replayed = engine.decide(request);
    } catch (err) {
      if (!(err instanceof PolicyError)) throw err;
      // A request the engine refuses (e.g. a principal type the schema has no entity for).
      replayed = { effect: 'not-replayable', policies: [], reasons: [err.message] };
    }
    rows.push({
      session: env.session.id,
      event: env.id,
      index: d.index,
      time: env.time,
      tool: env.tool.name,
      recorded: env.decision.effect,
      replayed: replayed.effect,
      policies: replayed.policies,
      reasons: replayed.reasons,
      missing,
    });
  }
  bar.done();
  const changed = rows.filter((r) => r.recorded !== r.replayed);
  if (opts.json) {
    io.out(safeJson({ version: set.version, replayed: rows.length, changed: changed.length, rows: opts.all ? rows : changed }, 2));
    return 0;
  }
  const shown = opts.all ? rows : changed;
  if (shown.length > 0) {
    printTable(
      io,
      ['TIME', 'SESSION', 'TOOL', 'RECORDED', 'REPLAYED', 'BY', 'MISSING'],
      safeData(shown).map((r) => [shortTime(r.time), r.session, r.tool, r.recorded, r.recorded === r.replayed ? r.replayed : paint(io.color, 'yellow', r.replayed), r.policies.join(', '), r.missing.join(', ')]),
    );
  }
  io.out(`${rows.length} recorded decisions replayed under ${set.version}: ${changed.length === 0 ? paint(io.color, 'green', 'none would change') : paint(io.color, 'yellow', `${changed.length} would change`)}`);
  const incomplete = rows.filter((r) => r.missing.length > 0).length;
  if (incomplete > 0) io.err(`${incomplete} requests could not be rebuilt in full from the log (see MISSING); defaults were used for those parts`);
  return 0;
}
