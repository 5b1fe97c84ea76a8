/** Reports: the compliance questions, answered from the log. Every row links to its session. */
import { type ReactNode, useState } from 'react';
import { Link, useParams, useSearchParams } from 'react-router-dom';

import { api, query } from '../api.js';
import { Effect, Failure, Loading, SessionLink, time } from '../format.js';
import { useData } from '../use-data.js';

const REPORTS = [
  ['unapproved-calls', 'Sensitive calls without a human approval', 'Calls a policy marked approval_required that ran without one.'],
  ['denied-calls', 'Denied and out-of-scope calls', 'Calls denied by policy, and calls attempted outside the delegation scope.'],
  ['acted-after-end', 'Acted after revocation, expiry or seal', 'Sessions with entries after their end. Should be none.'],
  ['deep-delegation', 'Deep delegation', 'Sessions whose delegation chain is deeper than N hops.'],
  ['top-principals', 'Most active principals', 'Initiators and agents by sessions.'],
  ['compliance', 'Compliance evidence and gaps', 'Per control of OWASP Agentic Top 10, NIST AI RMF, CSA MAESTRO or NIST CSF, measured from the log.'],
] as const;

const FRAMEWORKS = ['owasp-agentic', 'nist-ai-rmf', 'maestro', 'csf'] as const;

export function ReportsPage(): ReactNode {
  return (
    <>
      <h1>Reports</h1>
      <ul className="reports">
        {REPORTS.map(([name, title, what]) => (
          <li key={name}>
            <Link to={`/reports/${name}`}>{title}</Link>
            <p className="muted small">{what}</p>
          </li>
        ))}
      </ul>
      <p className="muted small">
        The same reports from the command line: <code>custody report &lt;name&gt;</code>; and from the API: <code>GET /v1/reports/&lt;name&gt;</code>.
      </p>
    </>
  );
}

type Row = Record<string, unknown> & { session?: string };

interface Control {
  id: string;
  title: string;
  status: string;
  evidence: { measure: string; value: number; note?: string }[];
  gaps: { measure: string; count: number; capped: boolean; examples: { session: string }[] }[];
  method: string;
}

export function ReportPage(): ReactNode {
  const { name = '' } = useParams();
  const [params, setParams] = useSearchParams();
  const meta = REPORTS.find(([n]) => n === name);
  const since = params.get('since') ?? '';
  const depth = params.get('depth') ?? '';
  const framework = params.get('framework') ?? 'owasp-agentic';
  const [sinceInput, setSinceInput] = useState(since);
  const q = query({ since: since === '' ? undefined : since, ...(name === 'deep-delegation' ? { depth: depth || undefined } : {}), ...(name === 'compliance' ? { framework } : { limit: 200 }) });
  const data = useData(() => api<{ rows?: Row[]; controls?: Control[]; frameworkTitle?: string; checkpoint?: { size: number } }>(`/v1/reports/${encodeURIComponent(name)}${q}`), [name, q]);

  return (
    <>
      <p>
        <Link to="/reports">Reports</Link> ›
      </p>
      <h1>{meta?.[1] ?? name}</h1>
      <p className="muted">{meta?.[2]}</p>
      <form
        className="search compact"
        onSubmit={(e) => {
          e.preventDefault();
          const p: Record<string, string> = {};
          if (sinceInput.trim() !== '') p['since'] = new Date(sinceInput).toISOString();
          if (depth !== '') p['depth'] = depth;
          if (name === 'compliance') p['framework'] = framework;
          setParams(p);
        }}
      >
        <div className="field">
          <label htmlFor="r-since">Since</label>
          <input id="r-since" type="datetime-local" value={sinceInput.slice(0, 16)} onChange={(e) => setSinceInput(e.target.value)} />
        </div>
        {name === 'deep-delegation' ? (
          <div className="field">
            <label htmlFor="r-depth">Deeper than (hops)</label>
            <input id="r-depth" type="number" min={0} max={63} value={depth} onChange={(e) => setParams({ ...Object.fromEntries(params), depth: e.target.value })} placeholder="2" />
          </div>
        ) : null}
        {name === 'compliance' ? (
          <div className="field">
            <label htmlFor="r-fw">Framework</label>
            <select id="r-fw" value={framework} onChange={(e) => setParams({ ...Object.fromEntries(params), framework: e.target.value })}>
              {FRAMEWORKS.map((f) => (
                <option key={f}>{f}</option>
              ))}
            </select>
          </div>
        ) : null}
        <div className="actions">
          <button type="submit">Run</button>
        </div>
      </form>
      <Failure error={data.error} />
      {data.loading ? <Loading /> : data.data?.controls !== undefined ? <Controls controls={data.data.controls} title={data.data.frameworkTitle} size={data.data.checkpoint?.size} /> : <Rows rows={data.data?.rows ?? []} />}
    </>
  );
}

const SKIP = new Set(['session', 'sessionPath', 'event', 'index', 'lastSessionPath', 'recordedAt']);

function cell(k: string, v: unknown): ReactNode {
  if (v === undefined || v === null) return '';
  if (k === 'lastSession' && typeof v === 'string') return <SessionLink id={v} />;
  if (k === 'effect' || k === 'decision') return <Effect effect={String(v)} />;
  if (k === 'time' && typeof v === 'string') return <span className="mono small">{time(v)}</span>;
  if (Array.isArray(v)) return <span className="small">{v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ')}</span>;
  if (typeof v === 'object') return <span className="small mono">{JSON.stringify(v)}</span>;
  return String(v);
}

function Rows({ rows }: { rows: Row[] }): ReactNode {
  if (rows.length === 0) return <p className="muted">No rows: nothing matches.</p>;
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) => !SKIP.has(k));
  const hasSession = rows.some((r) => typeof r.session === 'string');
  return (
    <table>
      <thead>
        <tr>
          {hasSession ? <th scope="col">Session</th> : null}
          {cols.map((c) => (
            <th scope="col" key={c}>
              {c}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.map((r, i) => (
          <tr key={i}>
            {hasSession ? (
              <td>
                <SessionLink id={r.session} />
              </td>
            ) : null}
            {cols.map((c) => (
              <td key={c}>{cell(c, r[c])}</td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Controls({ controls, title, size }: { controls: Control[]; title: string | undefined; size: number | undefined }): ReactNode {
  return (
    <>
      <p className="muted small">
        {title} · measured at the signed checkpoint of size {size}
      </p>
      {controls.map((c) => (
        <article key={c.id} className="card">
          <h2>
            <span className={`tag ${c.status === 'evidence' ? 'tag-ok' : c.status === 'gap' ? 'tag-bad' : ''}`}>{c.status}</span> {c.id} {c.title}
          </h2>
          <p className="muted small">{c.method}</p>
          <ul className="small">
            {c.evidence.map((e) => (
              <li key={e.measure}>
                {e.measure}: <strong>{e.value}</strong>
              </li>
            ))}
            {c.gaps.map((g) => (
              <li key={g.measure} className="bad">
                gap — {g.measure}: <strong>{g.count}{g.capped ? '+' : ''}</strong>{' '}
                {g.examples.slice(0, 5).map((x) => (
                  <SessionLink key={x.session} id={x.session} />
                ))}
              </li>
            ))}
          </ul>
        </article>
      ))}
    </>
  );
}
