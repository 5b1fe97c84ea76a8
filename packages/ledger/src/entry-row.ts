/**
 * Derives an entry's index row (identity fields, principals) from its sealed
 * envelope. The sequencer writes these rows; `audit` recomputes them to prove
 * the stored index still says what the entry says.
 */
import type { Envelope, Principal, SealedEvent } from '@custody/core';

import type { EntryRow, PrincipalRow, SessionRow } from './store.js';

/** The workload identity as indexed: the SPIFFE ID, else `<issuer>|<subject>`. */
export function workloadId(w: NonNullable<Envelope['workload']>): string {
  return w.spiffeId ?? `${w.issuer ?? ''}|${w.subject ?? ''}`;
}

function principal(role: PrincipalRow['role'], p: Principal): PrincipalRow {
  return { role, type: p.type, id: p.id };
}

/** Every principal of an entry, by role, without duplicates. */
export function principalsOf(env: Envelope): PrincipalRow[] {
  const rows: PrincipalRow[] = [];
  if (env.initiator) rows.push(principal('initiator', env.initiator));
  rows.push(principal('actor', env.actor));
  for (const link of env.chain ?? []) rows.push(principal('chain', link.principal));
  if (env.approval?.approver) rows.push(principal('approver', env.approval.approver));
  if (env.workload) rows.push({ role: 'workload', type: env.workload.method, id: workloadId(env.workload) });
  const seen = new Set<string>();
  return rows.filter((r) => {
    const k = `${r.role}\u0000${r.id}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * True when a scope covers a tool: an item `*`, the tool's name, `tool:<name>`, or
 * a prefix pattern ending in `*` (`github.*`, `tool:github.*`). The stores keep its
 * verdict for each call (EntryRow.scopeGap); this is the one place the rule is. It is
 * the reports' rule for scopes as recorded, imported ones included, and more lenient
 * than the one policy and delegation apply (@custody/core's scopeHolds: a token, or
 * `<server>.*`), so a call it flags is out of scope by either.
 */
export function scopeCovers(scope: readonly string[], tool: string): boolean {
  return scope.some((s) => {
    if (s === '*' || s === tool || s === `tool:${tool}`) return true;
    if (!s.endsWith('*')) return false;
    const prefix = s.slice(0, -1);
    return tool.startsWith(prefix) || `tool:${tool}`.startsWith(prefix);
  });
}

/** The first link of a call's delegation chain whose scope does not cover the call's tool, if any. */
export function uncoveredLink(env: Envelope): NonNullable<Envelope['chain']>[number] | undefined {
  // A valid tool.requested always names its tool.
  if (env.type !== 'tool.requested' || env.tool === undefined) return undefined;
  const tool = env.tool.name;
  return (env.chain ?? []).find((l) => l.scope !== undefined && !scopeCovers(l.scope, tool));
}

/** Event types whose delegation chain the deep-delegation report measures. */
export const DELEGATION_TYPES = ['session.opened', 'session.delegated'] as const;

/** The index row of a sealed entry at `index`. */
export function entryRowOf(sealed: Pick<SealedEvent, 'envelope' | 'entry' | 'digest' | 'disclosures'>, index: number): EntryRow {
  const env = sealed.envelope;
  const row: EntryRow = {
    index,
    id: env.id,
    type: env.type,
    time: env.time,
    recordedAt: env.recordedAt,
    entry: sealed.entry,
    disclosures: sealed.disclosures,
    digest: sealed.digest,
    actorId: env.actor.id,
    principals: principalsOf(env),
  };
  if (env.session) {
    row.sessionId = env.session.id;
    row.seq = env.session.seq;
  }
  if (env.initiator) row.initiatorId = env.initiator.id;
  if (env.tool) row.toolName = env.tool.name;
  if (env.decision) row.decision = env.decision.effect;
  if (env.cause) row.cause = env.cause;
  if (env.trace) row.traceId = env.trace.traceId;
  if (uncoveredLink(env) !== undefined) row.scopeGap = true;
  if ((DELEGATION_TYPES as readonly string[]).includes(env.type) && env.chain !== undefined && env.chain.length > 0) row.chainLinks = env.chain.length;
  return row;
}

/**
 * The state of a session after one more sealed entry at `index`: what the
 * sequencer writes to the sessions table in the same transaction.
 */
export function nextSessionRow(prior: SessionRow | undefined, sealed: Pick<SealedEvent, 'envelope' | 'digest'>, index: number, recordedAt: string): SessionRow {
  const env = sealed.envelope;
  const ref = env.session!;
  const sealedNow = env.type === 'session.closed';
  if (prior !== undefined) {
    const next: SessionRow = { ...prior, seq: ref.seq, digest: sealed.digest, sealed: sealedNow, lastAt: recordedAt, lastIndex: index, entries: prior.entries + 1, lastType: env.type };
    if (prior.objective === undefined && ref.objective !== undefined) next.objective = ref.objective;
    return next;
  }
  return {
    id: ref.id,
    seq: ref.seq,
    digest: sealed.digest,
    sealed: sealedNow,
    firstAt: recordedAt,
    lastAt: recordedAt,
    firstIndex: index,
    lastIndex: index,
    entries: 1,
    lastType: env.type,
    ...(env.initiator ? { initiatorId: env.initiator.id } : {}),
    actorId: env.actor.id,
    ...(ref.objective !== undefined ? { objective: ref.objective } : {}),
    ...(ref.parent !== undefined ? { parent: ref.parent } : {}),
  };
}
