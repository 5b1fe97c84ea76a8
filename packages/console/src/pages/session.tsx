/**
 * The session page: who asked, which agents acted through which delegation chain,
 * every step as a causal tree with its decision, approval and credential, the
 * redacted and disclosed fields, the session's credentials, and a badge that says
 * whether the session's evidence bundle verified in this browser.
 */
import { type ReactNode, useRef, useState } from 'react';
import { useParams } from 'react-router-dom';

import { api, ApiError, type Approval, type AuthoritySession, type CauseNode, type DelegationLink, type EventView, type Timeline } from '../api.js';
import { Effect, Failure, Loading, PrincipalLink, SessionLink, time } from '../format.js';
import { useData } from '../use-data.js';
import { type BrowserVerification, CHECK_TITLES, CHECKS, checkOf, fieldsById, verifySession } from '../verify.js';

type Fields = ReturnType<typeof fieldsById>;

export function SessionPage(): ReactNode {
  const { id = '' } = useParams();
  const timeline = useData(() => api<Timeline>(`/v1/sessions/${encodeURIComponent(id)}/timeline`), [id]);
  const authority = useData(async () => {
    try {
      return await api<{ session: AuthoritySession; descendants: AuthoritySession[] }>(`/v1/authority/sessions/${encodeURIComponent(id)}`);
    } catch (err) {
      // A session recorded by an SDK or an import, not opened by token exchange: no authority record.
      if (err instanceof ApiError && err.status === 404) return undefined;
      throw err;
    }
  }, [id]);
  const approvals = useData(() => api<{ approvals: Approval[] }>(`/v1/approvals?session=${encodeURIComponent(id)}`).catch(() => ({ approvals: [] as Approval[] })), [id]);

  const events = timeline.data?.events ?? [];
  // The bundle, verified here once the timeline is in (the badge compares the two), and again when
  // the session gets new entries (e.g. after a revocation). Until then the badge says it is checking.
  const entries = timeline.data === undefined ? undefined : events.length;
  const verification = useData(async () => (entries === undefined ? undefined : verifySession(id)), [id, entries]);
  const first = events[0]?.event;
  const a = authority.data?.session;
  const objective = a?.objective ?? first?.session?.objective ?? timeline.data?.session.objective;
  // The delegation chain: the authority's record, else the first entry's chain, else who asked and who acted.
  const chain: DelegationLink[] =
    a?.chain ?? first?.chain ?? (first !== undefined ? [...(first.initiator !== undefined ? [{ principal: first.initiator }] : []), { principal: first.actor }] : []);
  const ended = events.find((e) => e.event.type === 'session.revoked' || e.event.type === 'session.expired');
  const sealed = events.find((e) => e.event.type === 'session.closed');
  const fields = fieldsById(verification.data?.report);

  return (
    <>
      <div className="session-head">
        <div>
          <h1>
            Session <span className="mono">{id}</span>
          </h1>
          <p className="objective">{objective ?? <span className="muted">no objective recorded</span>}</p>
          <p className="state">
            {sealed !== undefined ? <span className="tag tag-ok">sealed {time(sealed.event.recordedAt)}</span> : null}
            {ended !== undefined ? <span className="tag tag-bad">{ended.event.type === 'session.revoked' ? 'revoked' : 'expired'} {time(ended.event.recordedAt)}</span> : null}
            {a !== undefined ? <span className={`tag ${a.status === 'active' ? 'tag-live' : ''}`}>authority: {a.status}</span> : null}
            {a?.parent !== undefined ? (
              <span>
                delegated from <SessionLink id={a.parent} />
              </span>
            ) : null}
          </p>
          {a !== undefined ? (
            <RevokeButton
              id={id}
              active={a.status === 'active'}
              onDone={() => {
                authority.reload();
                timeline.reload();
              }}
            />
          ) : null}
        </div>
        <VerifiedBadge id={id} busy={verification.loading} v={verification.data} error={verification.error} sealedInLog={timeline.data !== undefined ? sealed !== undefined || timeline.data.session.sealed === true : undefined}
          ended={ended !== undefined ? (ended.event.type === 'session.revoked' ? 'revoked' : 'expired') : undefined}
        />
      </div>
      <Failure error={timeline.error} />

      <section aria-labelledby="who">
        <h2 id="who">Who asked, and who acted</h2>
        {timeline.loading && authority.loading ? <Loading minHeight={90} /> : <DelegationGraph chain={chain} descendants={authority.data?.descendants ?? []} />}
        {a !== undefined ? (
          <p className="muted small">
            scope <span className="mono">{a.scope.join(' ')}</span> · depth {a.depth} · expires {time(a.expiresAt)}
            {a.endReason !== undefined ? ` · ended: ${a.endReason}` : ''}
          </p>
        ) : null}
      </section>

      <section aria-labelledby="steps">
        <h2 id="steps">What happened, by causation</h2>
        {timeline.loading ? <Loading /> : <CausalTree tree={timeline.data?.tree ?? []} events={events} fields={fields} />}
        {(timeline.data?.external?.length ?? 0) > 0 ? (
          <details className="external">
            <summary>Imported telemetry sharing this session's trace ({timeline.data!.external!.length}) — lower assurance, not in the session's chain</summary>
            <ul>
              {timeline.data!.external!.map((e) => (
                <li key={e.index}>
                  <span className="mono">{time(e.event.time)}</span> <span className="mono">{e.event.type}</span> <PrincipalLink p={e.event.actor} />
                </li>
              ))}
            </ul>
          </details>
        ) : null}
      </section>

      <section aria-labelledby="approvals">
        <h2 id="approvals">Approvals</h2>
        <ApprovalTable approvals={approvals.data?.approvals ?? []} events={events} loading={approvals.loading} />
      </section>

      <section aria-labelledby="credentials">
        <h2 id="credentials">Credentials</h2>
        <CredentialTable session={a} events={events} loading={authority.loading} />
      </section>
    </>
  );
}

// ---- verification ------------------------------------------------------------------

function VerifiedBadge({ id, busy, v, error, sealedInLog, ended }: { id: string; busy: boolean; v: BrowserVerification | undefined; error: unknown; sealedInLog: boolean | undefined; ended: string | undefined }): ReactNode {
  if (busy || (v === undefined && error === undefined)) {
    return (
      <div className="badge badge-wait" role="status" aria-live="polite" data-testid="verify-badge" data-state="checking">
        Verifying in your browser…
      </div>
    );
  }
  if (v === undefined) {
    return (
      <div className="badge badge-bad" role="status" aria-live="polite" data-testid="verify-badge" data-state="error">
        <strong>Could not verify</strong>
        <span className="small">The bundle or the log key could not be downloaded:</span>
        <Failure error={error} />
      </div>
    );
  }
  const { report, records, ms, key } = v;
  const failures = [...report.failures];
  // The one thing a bundle alone cannot show is entries left out after its last one;
  // the seal closes that gap. If the log says the session is sealed, the bundle must hold a valid seal.
  const sessionReport = report.sessions.find((s) => s.id === id);
  if (sealedInLog === true && sessionReport !== undefined && !sessionReport.sealed) {
    failures.push({ code: 'SEAL_MISSING', message: 'the log lists this session as sealed, but the bundle holds no seal: entries may have been left out' });
  }
  const ok = report.ok && failures.length === 0;
  const failed = new Set(failures.map((f) => checkOf(f.code)));
  const open = sessionReport !== undefined && !sessionReport.sealed;
  const unsealed = ended !== undefined ? `not sealed: ${ended}` : 'not sealed yet';
  return (
    <div className={`badge ${ok ? 'badge-ok' : 'badge-bad'}`} role="status" aria-live="polite" data-testid="verify-badge" data-state={ok ? 'verified' : 'failed'}>
      <strong>{ok ? '✔ Verified in your browser' : '✘ Verification failed in your browser'}</strong>
      <span className="small">
        {records} entries · {ok ? (open ? `intact, ${unsealed}` : 'complete (sealed)') : `failed: ${CHECKS.filter((c) => failed.has(c)).join(', ')}`} · {ms.toFixed(0)} ms
      </span>
      <ul className="checks" aria-label="Checks">
        {CHECKS.map((name) => {
          const state = failed.has(name) ? 'failed' : name === 'seal' && open && ok ? 'open' : 'passed';
          if (name === 'format' && state === 'passed') return null;
          return (
            <li key={name} className={state === 'failed' ? 'bad' : state === 'open' ? 'muted' : 'ok'} data-check={name} data-result={state} title={CHECK_TITLES[name]}>
              {state === 'failed' ? '✘' : state === 'open' ? '…' : '✔'} {name}
              {state === 'open' ? ` (${unsealed})` : ''}
              <span className="sr-only">: {state}</span>
            </li>
          );
        })}
      </ul>
      {failures.length > 0 ? (
        <ol className="failures" aria-label="What failed">
          {failures.slice(0, 20).map((f, i) => (
            <li key={i}>
              <strong>{checkOf(f.code)}</strong> <code>{f.code}</code>
              {f.record !== undefined ? ` (record ${f.record})` : ''}: {f.message}
            </li>
          ))}
          {failures.length > 20 ? <li>… and {failures.length - 20} more</li> : null}
        </ol>
      ) : null}
      {report.ignored !== undefined ? (
        <p className="small ignored" data-testid="verify-ignored">
          Not covered by any proof, and not read: <code>{report.ignored.join(', ')}</code>. The bundle carries these fields, but they are not evidence.
        </p>
      ) : null}
      <span className="small muted" title={key}>
        key {key.split('+').slice(0, 2).join('+')}
      </span>
    </div>
  );
}

// ---- delegation ----------------------------------------------------------------------

function DelegationGraph({ chain, descendants }: { chain: DelegationLink[]; descendants: AuthoritySession[] }): ReactNode {
  if (chain.length === 0) return <p className="muted">No delegation chain recorded.</p>;
  return (
    <div className="graph" role="list" aria-label="Delegation chain">
      {chain.map((link, i) => (
        <div className="node-wrap" role="listitem" key={i}>
          {i > 0 ? (
            <span className="arrow" aria-hidden="true">
              →
            </span>
          ) : null}
          <div className={`node node-${link.principal.type}`}>
            <PrincipalLink p={link.principal} />
            {link.scope !== undefined ? <div className="small mono">{link.scope.join(' ')}</div> : null}
            {link.session !== undefined ? (
              <div className="small">
                <SessionLink id={link.session} />
              </div>
            ) : null}
          </div>
        </div>
      ))}
      {descendants.length > 0 ? (
        <div className="node-wrap" role="listitem">
          <span className="arrow" aria-hidden="true">
            ⇢
          </span>
          <div className="node node-children">
            <div className="small muted">delegated further</div>
            {descendants.map((d) => (
              <div key={d.id} className="small">
                <SessionLink id={d.id} /> {d.agent.id} <span className="tag">{d.status}</span>
              </div>
            ))}
          </div>
        </div>
      ) : null}
    </div>
  );
}

// ---- the causal tree -------------------------------------------------------------------

function CausalTree({ tree, events, fields }: { tree: CauseNode[]; events: EventView[]; fields: Fields }): ReactNode {
  const byId = new Map(events.map((e) => [e.event.id, e]));
  if (tree.length === 0) return <p className="muted">No entries.</p>;
  // Nested lists: each step's children are the steps it caused (a decision under its call, a result under its approval).
  return (
    <ul className="tree" aria-label="Causal tree">
      {tree.map((n) => (
        <TreeNode key={n.id} node={n} byId={byId} fields={fields} />
      ))}
    </ul>
  );
}

function TreeNode({ node, byId, fields }: { node: CauseNode; byId: Map<string, EventView>; fields: Fields }): ReactNode {
  const v = byId.get(node.id);
  return (
    <li>
      {v !== undefined ? <Step v={v} checked={fields.get(node.id)} /> : <span className="mono">{node.type}</span>}
      {node.children.length > 0 ? (
        <ul aria-label={`caused by ${node.type}`}>
          {node.children.map((c) => (
            <TreeNode key={c.id} node={c} byId={byId} fields={fields} />
          ))}
        </ul>
      ) : null}
    </li>
  );
}

/** Fields the view shows opened, among the ones Custody commits by default (when the browser has not checked the bundle). */
function disclosedFields(data: Record<string, unknown> | undefined): string[] {
  if (data === undefined) return [];
  return ['prompt', 'arguments', 'result', 'output'].filter((k) => data[k] !== undefined && !(typeof data[k] === 'object' && data[k] !== null && '$commitment' in (data[k] as object))).map((k) => `/data/${k}`);
}

function Step({ v, checked }: { v: EventView; checked: { disclosed: string[]; redacted: string[] } | undefined }): ReactNode {
  const e = v.event;
  const [open, setOpen] = useState(false);
  // Disclosed and redacted fields as this browser found them in the bundle, else as the server's view says.
  const disclosed = checked?.disclosed ?? disclosedFields(e.data);
  const redacted = checked?.redacted ?? v.redacted;
  const how = checked !== undefined ? 'checked in your browser' : "as the server's view says";
  return (
    <div className={`step step-${e.type.split('.')[0]}`}>
      <div className="step-line">
        <span className="seq">#{e.session?.seq ?? v.index}</span>
        <span className="mono type">{e.type}</span>
        <span className="mono small">{time(e.time)}</span>
        <PrincipalLink p={e.actor} />
        {e.tool !== undefined ? <span className="mono tool">{e.tool.name}</span> : null}
        {e.decision !== undefined ? <Effect effect={e.decision.effect} /> : null}
        <button type="button" className="link small" aria-expanded={open} onClick={() => setOpen(!open)}>
          {open ? 'less' : 'details'}
        </button>
      </div>
      {e.decision !== undefined ? (
        <div className="detail">
          policies <span className="mono">{e.decision.policies.join(', ') || '—'}</span>
          {e.decision.reasons.length > 0 ? <> · {e.decision.reasons.join('; ')}</> : null}
        </div>
      ) : null}
      {e.approval?.approver !== undefined ? (
        <div className="detail">
          {e.approval.status ?? 'approval'} by <PrincipalLink p={e.approval.approver} />
          {e.approval.source !== undefined ? <> from {Object.entries(e.approval.source).map(([k, x]) => `${k} ${x}`).join(', ')}</> : null}
          {e.approval.reason !== undefined ? <> · “{e.approval.reason}”</> : null}
        </div>
      ) : null}
      {e.credential !== undefined ? (
        <div className="detail">
          credential <span className="mono">{e.credential.jti}</span> · fingerprint <span className="mono">{e.credential.fingerprint.slice(0, 16)}…</span>
          {e.credential.expiresAt !== undefined ? <> · expires {time(e.credential.expiresAt)}</> : null}
        </div>
      ) : null}
      {e.seal !== undefined ? (
        <div className="detail">
          seal: {e.seal.count} entries, head <span className="mono">{e.seal.head.slice(0, 16)}…</span>
        </div>
      ) : null}
      {disclosed.length > 0 || redacted.length > 0 ? (
        <div className="detail fields">
          {disclosed.map((f) => (
            <span key={f} className="tag tag-ok" title={`committed; its disclosure is held and opens the commitment (${how})`}>
              disclosed {f}
            </span>
          ))}
          {redacted.map((f) => (
            <span key={f} className="tag tag-bad" title={`committed; its disclosure was dropped (redacted): the entry and its proofs stay valid (${how})`}>
              redacted {f}
            </span>
          ))}
        </div>
      ) : null}
      {open ? <pre className="json">{JSON.stringify(e, null, 2)}</pre> : null}
    </div>
  );
}

// ---- approvals and credentials --------------------------------------------------------

function ApprovalTable({ approvals, events, loading }: { approvals: Approval[]; events: EventView[]; loading: boolean }): ReactNode {
  if (loading) return <Loading minHeight={60} />;
  // The log is the record: answered approvals from the session's entries, with the approval store's extra detail.
  const answered = events.filter((e) => e.event.type === 'approval.granted' || e.event.type === 'approval.denied' || e.event.type === 'approval.expired');
  if (answered.length === 0 && approvals.length === 0) return <p className="muted">No approvals in this session.</p>;
  const byId = new Map(approvals.map((a) => [a.id, a]));
  const ids = [...new Set([...approvals.map((a) => a.id), ...answered.map((e) => e.event.approval?.id ?? '')])].filter((x) => x !== '');
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">Approval</th>
          <th scope="col">Tool</th>
          <th scope="col">State</th>
          <th scope="col">Who</th>
          <th scope="col">When</th>
          <th scope="col">From where</th>
          <th scope="col">Reason</th>
        </tr>
      </thead>
      <tbody>
        {ids.map((aid) => {
          const a = byId.get(aid);
          const e = answered.find((x) => x.event.approval?.id === aid)?.event;
          const source = e?.approval?.source ?? a?.source;
          return (
            <tr key={aid}>
              <td className="mono small">{aid}</td>
              <td className="mono">{a?.tool ?? e?.tool?.name}</td>
              <td>
                <span className={`tag ${(e?.approval?.status ?? a?.status) === 'granted' ? 'tag-ok' : (e?.approval?.status ?? a?.status) === 'pending' ? 'tag-live' : 'tag-bad'}`}>{e?.approval?.status ?? a?.status}</span>
              </td>
              <td>
                <PrincipalLink p={e?.approval?.approver ?? a?.approver} />
              </td>
              <td className="mono small">{time(e?.recordedAt ?? a?.decidedAt)}</td>
              <td className="small">{source !== undefined ? Object.entries(source).map(([k, x]) => `${k}: ${x}`).join(' · ') : '—'}</td>
              <td>{e?.approval?.reason ?? a?.reason ?? ''}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function CredentialTable({ session, events, loading }: { session: AuthoritySession | undefined; events: EventView[]; loading: boolean }): ReactNode {
  if (loading) return <Loading minHeight={60} />;
  const issued = events.filter((e) => e.event.type === 'credential.issued');
  const revoked = new Map(events.filter((e) => e.event.type === 'credential.revoked' || e.event.type === 'credential.expired').map((e) => [e.event.credential?.jti, e]));
  const rows =
    session?.credentials?.map((c) => ({ jti: c.jti, fingerprint: c.fingerprint, issuedAt: c.issuedAt, expiresAt: c.expiresAt, status: c.status, endedAt: c.endedAt })) ??
    issued.map((e) => ({
      jti: e.event.credential!.jti,
      fingerprint: e.event.credential!.fingerprint,
      issuedAt: e.event.credential!.issuedAt ?? e.event.time,
      expiresAt: e.event.credential!.expiresAt ?? '',
      status: revoked.has(e.event.credential!.jti) ? revoked.get(e.event.credential!.jti)!.event.type.split('.')[1]! : 'issued',
      endedAt: revoked.get(e.event.credential!.jti)?.event.time,
    }));
  if (rows.length === 0) return <p className="muted">No credentials recorded for this session (it was not opened by token exchange).</p>;
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">jti</th>
          <th scope="col">Fingerprint (SHA-256)</th>
          <th scope="col">Issued</th>
          <th scope="col">Expires</th>
          <th scope="col">State</th>
          <th scope="col">Ended</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((c) => (
          <tr key={c.jti}>
            <td className="mono small">{c.jti}</td>
            <td className="mono small">{c.fingerprint.slice(0, 22)}…</td>
            <td className="mono small">{time(c.issuedAt)}</td>
            <td className="mono small">{time(c.expiresAt)}</td>
            <td>
              <span className={`tag ${c.status === 'active' ? 'tag-live' : c.status === 'revoked' ? 'tag-bad' : ''}`}>{c.status}</span>
            </td>
            <td className="mono small">{time(c.endedAt)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// ---- the kill switch ----------------------------------------------------------------------

function RevokeButton({ id, active, onDone }: { id: string; active: boolean; onDone: () => void }): ReactNode {
  const dialog = useRef<HTMLDialogElement>(null);
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string | undefined>(undefined);
  const revoke = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const r = await api<{ revoked: string[] }>(`/v1/sessions/${encodeURIComponent(id)}/revoke`, { method: 'POST', body: reason.trim() !== '' ? { reason: reason.trim() } : {} });
      dialog.current?.close();
      setDone(`Revoked ${r.revoked.length} session${r.revoked.length === 1 ? '' : 's'}: ${r.revoked.join(', ')}`);
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="revoke">
      {active ? (
        <button type="button" className="danger" onClick={() => dialog.current?.showModal()}>
          Revoke session…
        </button>
      ) : null}
      {done !== undefined ? (
        <p role="status" className="ok-text">
          {done}
        </p>
      ) : null}
      <dialog ref={dialog} aria-labelledby="revoke-title">
        <h3 id="revoke-title">Revoke this session?</h3>
        <p>
          The kill switch: session <span className="mono">{id}</span> and every session delegated from it stop at once. Their credentials are refused, calls in flight are cancelled, and the revocation is recorded. This cannot be undone.
        </p>
        <label htmlFor="revoke-reason">Reason (recorded)</label>
        <input id="revoke-reason" value={reason} onChange={(e) => setReason(e.target.value)} placeholder="suspicious transfers" />
        <Failure error={error} />
        <div className="actions">
          <button type="button" className="secondary" onClick={() => dialog.current?.close()} autoFocus>
            Cancel
          </button>
          <button type="button" className="danger" disabled={busy} onClick={() => void revoke()}>
            {busy ? 'Revoking…' : 'Revoke'}
          </button>
        </div>
      </dialog>
    </div>
  );
}
