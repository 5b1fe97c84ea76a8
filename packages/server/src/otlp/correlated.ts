/**
 * The imported `external.*` entries that belong beside a session's timeline:
 * those sharing a W3C trace id with the session's own events.
 * @internal
 */
import type { EventView, Ledger } from '@custody/ledger';

/** Most traces looked up for one timeline, and most entries per trace. */
const MAX_TRACES = 32;
const PER_TRACE = 1000;

/** `external.*` entries of the session's traces, in log order, without the session's own. */
export async function correlatedExternal(ledger: Ledger, tenant: string, events: readonly EventView[]): Promise<EventView[]> {
  const own = new Set(events.map((e) => e.event.id));
  const traces = [...new Set(events.map((e) => e.event.trace?.traceId).filter((t): t is string => t !== undefined))].slice(0, MAX_TRACES);
  const found = new Map<string, EventView>();
  for (const traceId of traces) {
    const page = await ledger.query(tenant, { traceId, type: 'external.*' }, { limit: PER_TRACE, order: 'asc' });
    for (const v of page.items) if (!own.has(v.event.id)) found.set(v.event.id, v);
  }
  return [...found.values()].sort((a, b) => a.index - b.index);
}
