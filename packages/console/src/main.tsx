/**
 * The Custody console: sign in with an API key, search the log, open a session
 * (causal tree, delegation graph, decisions, approvals, credentials, redactions,
 * and a bundle verified in this browser), answer approvals, revoke a session,
 * and read principals and reports. See docs/console.md.
 */
import './styles.css';

import { type FormEvent, type ReactNode, StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { BrowserRouter, Navigate, NavLink, Route, Routes, useLocation, useNavigate } from 'react-router-dom';

import { api, apiKey, signIn, signOut } from './api.js';
import { Failure } from './format.js';
import { ApprovalsPage } from './pages/approvals.js';
import { PrincipalPage } from './pages/principal.js';
import { ReportPage, ReportsPage } from './pages/reports.js';
import { SearchPage } from './pages/search.js';
import { SessionPage } from './pages/session.js';

function SignIn(): ReactNode {
  const [key, setKey] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const navigate = useNavigate();
  const location = useLocation();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      // Any key with read access (read, approve or admin) can use the console.
      await api('/v1/sessions?limit=1', { key: key.trim() });
      signIn(key.trim());
      const from = (location.state as { from?: string } | null)?.from;
      navigate(from !== undefined && from !== '/signin' ? from : '/', { replace: true });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <h1>Custody</h1>
      <p className="muted">The accountability plane for AI agents.</p>
      <form onSubmit={(e) => void submit(e)}>
        <label htmlFor="api-key">API key</label>
        <input id="api-key" type="password" autoComplete="off" value={key} onChange={(e) => setKey(e.target.value)} placeholder="cust_…" required autoFocus />
        <p className="hint">
          A key with the <code>read</code>, <code>approve</code> or <code>admin</code> role. On a fresh install: <code>cat .custody/admin.key</code>. It is kept for this tab only.
        </p>
        <button type="submit" disabled={busy || key.trim() === ''}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <Failure error={error} />
      </form>
    </main>
  );
}

function Layout({ children }: { children: ReactNode }): ReactNode {
  const navigate = useNavigate();
  return (
    <>
      <a href="#content" className="skip">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">Custody</span>
        <nav aria-label="Main">
          <NavLink to="/" end>
            Search
          </NavLink>
          <NavLink to="/approvals">Approvals</NavLink>
          <NavLink to="/reports">Reports</NavLink>
        </nav>
        <button
          type="button"
          className="link"
          onClick={() => {
            signOut();
            navigate('/signin');
          }}
        >
          Sign out
        </button>
      </header>
      <main id="content">{children}</main>
    </>
  );
}

function Guard({ children }: { children: ReactNode }): ReactNode {
  const location = useLocation();
  if (apiKey() === undefined) return <Navigate to="/signin" replace state={{ from: location.pathname + location.search }} />;
  return <Layout>{children}</Layout>;
}

function App(): ReactNode {
  return (
    <BrowserRouter>
      <Routes>
        <Route path="/signin" element={<SignIn />} />
        <Route path="/" element={<Guard><SearchPage /></Guard>} />
        <Route path="/sessions/:id" element={<Guard><SessionPage /></Guard>} />
        <Route path="/approvals" element={<Guard><ApprovalsPage /></Guard>} />
        <Route path="/principals/:id" element={<Guard><PrincipalPage /></Guard>} />
        <Route path="/reports" element={<Guard><ReportsPage /></Guard>} />
        <Route path="/reports/:name" element={<Guard><ReportPage /></Guard>} />
        <Route path="*" element={<Guard><p>Nothing here. <NavLink to="/">Search</NavLink></p></Guard>} />
      </Routes>
    </BrowserRouter>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
