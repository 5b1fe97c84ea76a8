/** Search: by user, agent, session, approver, tool, decision, type and time; and the latest sessions. */
import { type FormEvent, type ReactNode, useState } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router-dom';

import { api, type EventView, query } from '../api.js';
import { Effect, Failure, Loading, PrincipalLink, SessionLink, time } from '../format.js';
import { useData } from '../use-data.js';

const FIELDS = [
  ['initiator', 'User (initiator)', 'alice@example.com'],
  ['agent', 'Agent', 'agent:refunds'],
  ['session', 'Session', 'ses-…'],
  ['approver', 'Approver', 'bob@example.com'],
  ['tool', 'Tool', 'payments.transfer'],
  ['type', 'Event type', 'tool.* or policy.decided'],
] as const;

interface SessionRow {
  id: string;
  sealed: boolean;
  initiatorId?: string;
  actorId?: string;
  objective?: string;
  firstAt: string;
  lastAt: string;
  entries: number;
  lastType: string;
}

/** An RFC 3339 time as a datetime-local input's value, in this browser's zone. */
function toLocal(iso: string | null): string | undefined {
  if (iso === null) return undefined;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return undefined;
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
}

function toIso(local: string): string | undefined {
  if (local === '') return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export function SearchPage(): ReactNode {
  const [params, setParams] = useSearchParams();
  const navigate = useNavigate();
  const [form, setForm] = useState<Record<string, string>>(() => {
    const f: Record<string, string> = Object.fromEntries([...params.entries()]);
    const sinceLocal = toLocal(params.get('since'));
    const untilLocal = toLocal(params.get('until'));
    return { ...f, ...(sinceLocal !== undefined ? { sinceLocal } : {}), ...(untilLocal !== undefined ? { untilLocal } : {}) };
  });
  const searched = [...params.keys()].length > 0;
  const qs = params.toString();
  const events = useData(async () => (searched ? api<{ events: EventView[]; nextCursor?: string }>(`/v1/events?${qs}&limit=100`) : undefined), [qs]);
  // Sessions by the filters GET /v1/sessions knows: who asked, which agent, when (active in the range).
  const sessionFilter = { initiator: params.get('initiator') ?? undefined, agent: params.get('agent') ?? undefined, since: params.get('since') ?? undefined, until: params.get('until') ?? undefined };
  const sq = query({ ...sessionFilter, limit: 25 });
  const filteredSessions = Object.values(sessionFilter).some((v) => v !== undefined);
  const sessions = useData(async () => api<{ sessions: SessionRow[] }>(`/v1/sessions${sq}`), [sq]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const p: Record<string, string> = {};
    for (const [k, v] of Object.entries(form)) if (v.trim() !== '' && !k.endsWith('Local')) p[k] = v.trim();
    // A bare session id goes straight to the session page.
    const keys = Object.keys(p);
    if (keys.length === 1 && keys[0] === 'session') {
      navigate(`/sessions/${encodeURIComponent(p['session']!)}`);
      return;
    }
    setParams(p);
  };
  const set = (k: string) => (e: { target: { value: string } }) => setForm((f) => ({ ...f, [k]: e.target.value }));

  return (
    <>
      <h1>Search the log</h1>
      <form className="search" onSubmit={submit} aria-label="Search events">
        {FIELDS.map(([name, label, placeholder]) => (
          <div className="field" key={name}>
            <label htmlFor={`f-${name}`}>{label}</label>
            <input id={`f-${name}`} name={name} value={form[name] ?? ''} onChange={set(name)} placeholder={placeholder} />
          </div>
        ))}
        <div className="field">
          <label htmlFor="f-decision">Decision</label>
          <select id="f-decision" value={form['decision'] ?? ''} onChange={set('decision')}>
            <option value="">any</option>
            <option value="allow">allow</option>
            <option value="deny">deny</option>
            <option value="approval_required">approval required</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="f-since">Since</label>
          <input id="f-since" type="datetime-local" value={form['sinceLocal'] ?? ''} onChange={(e) => setForm((f) => ({ ...f, sinceLocal: e.target.value, since: toIso(e.target.value) ?? '' }))} />
        </div>
        <div className="field">
          <label htmlFor="f-until">Until</label>
          <input id="f-until" type="datetime-local" value={form['untilLocal'] ?? ''} onChange={(e) => setForm((f) => ({ ...f, untilLocal: e.target.value, until: toIso(e.target.value) ?? '' }))} />
        </div>
        <div className="actions">
          <button type="submit">Search</button>
          {searched ? (
            <button
              type="button"
              className="secondary"
              onClick={() => {
                setForm({});
                setParams({});
              }}
            >
              Clear
            </button>
          ) : null}
        </div>
      </form>

      {searched ? (
        <section aria-labelledby="results">
          <h2 id="results">Events{events.data !== undefined ? ` (${events.data.events.length}${events.data.nextCursor !== undefined ? '+' : ''})` : ''}</h2>
          <Failure error={events.error} />
          {events.loading ? <Loading /> : events.data !== undefined ? <EventTable events={events.data.events} /> : null}
        </section>
      ) : null}

      <section aria-labelledby="recent">
        <h2 id="recent">{filteredSessions ? 'Sessions matching who and when' : 'Latest sessions'}</h2>
        <Failure error={sessions.error} />
        {sessions.loading ? (
          <Loading />
        ) : (
          <table>
            <thead>
              <tr>
                <th scope="col">Session</th>
                <th scope="col">Objective</th>
                <th scope="col">Initiator</th>
                <th scope="col">Agent</th>
                <th scope="col">Entries</th>
                <th scope="col">Last activity</th>
                <th scope="col">State</th>
              </tr>
            </thead>
            <tbody>
              {(sessions.data?.sessions ?? []).map((s) => (
                <tr key={s.id}>
                  <td>
                    <SessionLink id={s.id} />
                  </td>
                  <td>{s.objective ?? <span className="muted">—</span>}</td>
                  <td>{s.initiatorId !== undefined ? <Link to={`/principals/${encodeURIComponent(s.initiatorId)}`}>{s.initiatorId}</Link> : '—'}</td>
                  <td>{s.actorId !== undefined ? <Link to={`/principals/${encodeURIComponent(s.actorId)}`}>{s.actorId}</Link> : '—'}</td>
                  <td className="num">{s.entries}</td>
                  <td className="mono">{time(s.lastAt)}</td>
                  <td>{s.sealed ? <span className="tag tag-ok">sealed</span> : s.lastType === 'session.revoked' ? <span className="tag tag-bad">revoked</span> : <span className="tag">open</span>}</td>
                </tr>
              ))}
              {sessions.data?.sessions.length === 0 ? (
                <tr>
                  <td colSpan={7} className="muted">
                    {filteredSessions ? 'No sessions match.' : <>No sessions yet. Run <code>npx custody demo --live</code> to record some.</>}
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}

export function EventTable({ events }: { events: EventView[] }): ReactNode {
  if (events.length === 0) return <p className="muted">No events match.</p>;
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">Time</th>
          <th scope="col">Type</th>
          <th scope="col">Initiator</th>
          <th scope="col">Actor</th>
          <th scope="col">Tool</th>
          <th scope="col">Decision</th>
          <th scope="col">Session</th>
        </tr>
      </thead>
      <tbody>
        {events.map(({ event: e, index }) => (
          <tr key={index}>
            <td className="mono">{time(e.time)}</td>
            <td className="mono">{e.type}</td>
            <td>
              <PrincipalLink p={e.initiator} />
            </td>
            <td>
              <PrincipalLink p={e.actor} />
            </td>
            <td className="mono">{e.tool?.name ?? ''}</td>
            <td>
              <Effect effect={e.decision?.effect} />
            </td>
            <td>
              <SessionLink id={e.session?.id} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

