/**
 * Derives an entry's index row (identity fields, principals) from its sealed
 * envelope. The sequencer writes these rows; `audit` recomputes them to prove
 * the stored index still says what the entry says.
 */
import type { Envelope, Principal, SealedEvent } from '@custody/core';

import type { EntryRow, PrincipalRow } from './store.js';

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
  return row;
}
