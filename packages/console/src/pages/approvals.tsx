/** The approval queue: each pending call with its full context; approve or deny with a reason. */
import { type ReactNode, useEffect, useState } from 'react';

import { api, type Approval } from '../api.js';
import { Failure, Loading, PrincipalLink, SessionLink, time } from '../format.js';
import { useData } from '../use-data.js';

export function ApprovalsPage(): ReactNode {
  const pending = useData(() => api<{ approvals: Approval[] }>('/v1/approvals?status=pending'), []);
  // Calls answered here stay on the page, with their answer, until it is left.
  const [answered, setAnswered] = useState<Record<string, { a: Approval; status: string }>>({});
  const open = pending.data?.approvals ?? [];
  const list = [...open.filter((a) => answered[a.id] === undefined), ...Object.values(answered).map((x) => x.a)];
  // New calls arrive while the page is open: look again every few seconds.
  const { reload } = pending;
  useEffect(() => {
    const t = setInterval(reload, 4000);
    return () => clearInterval(t);
  }, [reload]);
  return (
    <>
      <h1>Approvals</h1>
      <p className="muted">
        Calls a policy held for a human. Each approval is bound to the exact call (session, tool, arguments digest), is used once, and expires. You answer as the person your key is named after; nobody in the call's own delegation chain may answer it.
      </p>
      <div className="actions">
        <button type="button" className="secondary" onClick={pending.reload}>
          Refresh
        </button>
      </div>
      <Failure error={pending.error} />
      {pending.loading && pending.data === undefined ? <Loading /> : null}
      {pending.data !== undefined && list.length === 0 ? <p className="muted">Nothing waits for a human.</p> : null}
      {list.map((a) => (
        <ApprovalCard
          key={a.id}
          a={a}
          answer={answered[a.id]?.status}
          onAnswered={(status) => {
            setAnswered((x) => ({ ...x, [a.id]: { a, status } }));
            pending.reload();
          }}
        />
      ))}
    </>
  );
}

function ApprovalCard({ a, answer, onAnswered }: { a: Approval; answer: string | undefined; onAnswered: (status: string) => void }): ReactNode {
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const decide = async (decision: 'approve' | 'deny') => {
    setBusy(true);
    setError(undefined);
    try {
      const r = await api<{ status: string }>(`/v1/approvals/${encodeURIComponent(a.id)}`, { method: 'POST', body: { decision, ...(reason.trim() !== '' ? { reason: reason.trim() } : {}) } });
      onAnswered(r.status);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const c = a.context;
  return (
    <article className="card approval" aria-labelledby={`a-${a.id}`} data-approval={a.id}>
      <h2 id={`a-${a.id}`}>
        <span className="mono">{a.tool}</span> <span className="muted small">expires {time(a.expiresAt)}</span>
      </h2>
      <dl>
        {c.session.rootObjective !== undefined ? (
          <>
            <dt>Asked for</dt>
            <dd>{c.session.rootObjective} <span className="muted small">(the human&rsquo;s session)</span></dd>
            <dt>Objective</dt>
            <dd>
              {c.session.objective ?? '—'} <span className="muted small">(stated by the delegating agent)</span>
            </dd>
          </>
        ) : (
          <>
            <dt>Objective</dt>
            <dd>{c.session.objective ?? '—'}</dd>
          </>
        )}
        <dt>Session</dt>
        <dd>
          <SessionLink id={a.session} /> · scope <span className="mono">{c.session.scope.join(' ')}</span> · depth {c.session.depth}
          {a.sessionStatus !== undefined && a.sessionStatus !== 'active' ? <strong> · {a.sessionStatus}</strong> : null}
        </dd>
        <dt>Asked by</dt>
        <dd>
          <PrincipalLink p={c.initiator} /> through {c.chain.slice(1).map((l, i) => <span key={i}>{i > 0 ? ' → ' : ''}<PrincipalLink p={l.principal} /></span>)}
        </dd>
        <dt>Arguments</dt>
        <dd>{c.arguments !== undefined ? <pre className="json">{JSON.stringify(c.arguments, null, 2)}</pre> : <span className="muted">not recorded (capture {c.capture}); digest <span className="mono">{a.argumentsDigest}</span></span>}</dd>
        <dt>Why a human</dt>
        <dd>
          {c.reasons.join('; ')} <span className="muted small mono">({c.policies.join(', ')})</span>
        </dd>
      </dl>
      {answer !== undefined ? (
        <p role="status" className="ok-text">
          Answered: {answer}.
        </p>
      ) : (
        <div className="answer">
          <label htmlFor={`r-${a.id}`}>Reason (recorded)</label>
          <input id={`r-${a.id}`} value={reason} onChange={(e) => setReason(e.target.value)} placeholder="confirmed with the customer" />
          <button type="button" disabled={busy} onClick={() => void decide('approve')}>
            Approve
          </button>
          <button type="button" className="danger" disabled={busy} onClick={() => void decide('deny')}>
            Deny
          </button>
        </div>
      )}
      <Failure error={error} />
    </article>
  );
}
