/** Small shared pieces: time, principals, links, loading and error states. */
import type { ReactNode } from 'react';
import { Link } from 'react-router-dom';

import { ApiError, type Principal } from './api.js';

export function time(iso: string | undefined): string {
  if (iso === undefined) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function PrincipalLink({ p }: { p: Principal | undefined }): ReactNode {
  if (p === undefined) return <span className="muted">—</span>;
  return (
    <Link to={`/principals/${encodeURIComponent(p.id)}`} className="principal" title={`${p.type}${p.issuer !== undefined ? ` from ${p.issuer}` : ''}${p.verified === true ? ', verified by Custody' : ', as claimed'}`}>
      <span className={`ptype ptype-${p.type}`}>{p.type}</span> {p.id}
      {p.verified === true ? <span className="verified-mark" aria-label="verified"> ✓</span> : null}
    </Link>
  );
}

export function SessionLink({ id }: { id: string | undefined }): ReactNode {
  if (id === undefined) return <span className="muted">—</span>;
  return (
    <Link to={`/sessions/${encodeURIComponent(id)}`} className="mono">
      {id}
    </Link>
  );
}

export function Effect({ effect }: { effect: string | undefined }): ReactNode {
  if (effect === undefined) return null;
  return <span className={`effect effect-${effect}`}>{effect.replace('_', ' ')}</span>;
}

export function Failure({ error }: { error: unknown }): ReactNode {
  if (error === undefined || error === null) return null;
  const e = error instanceof ApiError ? `${error.message} [${error.code}]` : error instanceof Error ? error.message : String(error);
  return (
    <p role="alert" className="error">
      {e}
    </p>
  );
}

/** A block that keeps its height while loading, so the page does not jump. */
export function Loading({ minHeight = 120 }: { minHeight?: number }): ReactNode {
  return (
    <div className="loading" style={{ minHeight }} aria-busy="true">
      Loading…
    </div>
  );
}
