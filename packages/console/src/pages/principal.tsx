/** A principal (a human, an agent or a workload): its activity in every role, and its sessions. */
import type { ReactNode } from 'react';
import { useParams } from 'react-router-dom';

import { api, type EventView, type Principal } from '../api.js';
import { Failure, Loading, SessionLink } from '../format.js';
import { useData } from '../use-data.js';
import { EventTable } from './search.js';

interface Activity {
  principal: string;
  entries?: number;
  byType?: Record<string, number>;
  byTool?: Record<string, number>;
  byDecision?: Record<string, number>;
  byRole?: Record<string, number>;
  rows?: { session: string; entries: number; lastIndex: number }[];
}

function Counts({ title, counts }: { title: string; counts: Record<string, number> | undefined }): ReactNode {
  const rows = Object.entries(counts ?? {}).sort((a, b) => b[1] - a[1]);
  return (
    <div className="counts">
      <h3>{title}</h3>
      {rows.length === 0 ? (
        <p className="muted">—</p>
      ) : (
        <table>
          <tbody>
            {rows.slice(0, 12).map(([k, n]) => (
              <tr key={k}>
                <td className="mono">{k}</td>
                <td className="num">{n}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

/** How the log knows this principal: its record in the first entry that names it, in any role. */
function principalIn(events: EventView[], id: string): Principal | undefined {
  for (const { event: e } of events) {
    const all = [e.initiator, e.actor, ...(e.chain ?? []).map((l) => l.principal), e.approval?.approver];
    const p = all.find((x) => x?.id === id);
    if (p !== undefined) return p;
  }
  return undefined;
}

export function PrincipalPage(): ReactNode {
  const { id = '' } = useParams();
  const activity = useData(() => api<Activity>(`/v1/reports/principal-activity?principal=${encodeURIComponent(id)}`), [id]);
  const events = useData(() => api<{ events: EventView[] }>(`/v1/principals/${encodeURIComponent(id)}/events?limit=50`), [id]);
  const a = activity.data;
  const known = principalIn(events.data?.events ?? [], id);
  const kind = known?.type ?? 'principal';
  return (
    <>
      <h1>
        <span className={`ptype ptype-${kind}`}>{kind}</span> <span className="mono">{id}</span>
      </h1>
      <p className="muted small principal-meta">
        {known === undefined ? '\u00a0' : `${known.name !== undefined ? `${known.name} · ` : ''}${known.issuer !== undefined ? `issuer ${known.issuer} · ` : ''}${known.verified === true ? 'identity verified by Custody' : 'identity as claimed (not verified)'}${a?.entries !== undefined ? ` · ${a.entries} entries` : ''}`}
      </p>
      <Failure error={activity.error} />
      {activity.loading ? (
        <Loading />
      ) : a !== undefined ? (
        <div className="grid">
          <Counts title="By role" counts={a.byRole} />
          <Counts title="By type" counts={a.byType} />
          <Counts title="By tool" counts={a.byTool} />
          <Counts title="By decision" counts={a.byDecision} />
        </div>
      ) : null}
      {a?.rows !== undefined && a.rows.length > 0 ? (
        <section aria-labelledby="p-sessions">
          <h2 id="p-sessions">Sessions</h2>
          <ul className="inline-list">
            {a.rows.slice(0, 50).map((s) => (
              <li key={s.session}>
                <SessionLink id={s.session} /> <span className="muted small">({s.entries})</span>
              </li>
            ))}
          </ul>
        </section>
      ) : null}
      <section aria-labelledby="p-events">
        <h2 id="p-events">Latest activity</h2>
        <Failure error={events.error} />
        {events.loading ? <Loading /> : <EventTable events={events.data?.events ?? []} />}
      </section>
    </>
  );
}
