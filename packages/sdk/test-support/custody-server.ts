/**
 * A real Custody server for the SDK's tests, in this process: the ledger, the
 * authority (token exchange, introspection, revocation), approvals and the
 * example policies over real SQLite (or PostgreSQL when `CUSTODY_TEST_POSTGRES_URL`
 * answers), listening on a real port. Tokens come from real test issuers. Faults
 * are injected only between the SDK and the server, by a fetch wrapper
 * (`faultyFetch`), the way a proxy or load balancer in front of Custody would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Authority, type AuthorityStore, parseTrustConfig, PostgresAuthorityStore, signingKeyFromSeed, SqliteAuthorityStore } from '@custody/authority';
import { createTestIssuer, type TestIssuer } from '@custody/authority/testing';
import { Ledger, type LedgerStore, PostgresStore, SqliteStore } from '@custody/ledger';
import { postgresTestEnv, storeExcluded } from '@custody/ledger/testing';
import { loadPolicySet, PolicyEngine } from '@custody/policy';
import { Approvals, createApiKey, createServer, PostgresApprovalStore, SqliteApprovalStore } from '@custody/server';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** The stores the SDK tests run on: SQLite always, PostgreSQL when it is reachable (else skipped). */
export async function backends(): Promise<{ name: 'sqlite' | 'postgres'; skip: string | false }[]> {
  const pg = await postgresTestEnv();
  return [
    { name: 'sqlite', skip: storeExcluded('sqlite') ?? false },
    { name: 'postgres', skip: pg.skip },
  ];
}

/** A running server and what tests need around it. */
export interface TestCustody {
  url: string;
  ledger: Ledger;
  /** An admin API key of tenant `default`. */
  admin: string;
  /** An ingest API key of tenant `default` (what docs/sdk.md recommends for agents). */
  ingest: string;
  /** A subject (human) and actor (agent) token for token exchange. */
  tokens(human?: string, agent?: string): Promise<{ subjectToken: string; actorToken: string }>;
  /** The session's events in log order. */
  events(session: string): Promise<{ index: number; event: { id: string; type: string; cause?: string; data?: Record<string, unknown>; tool?: { name: string } } }[]>;
  /** The tenant's approvals of a session. */
  pendingApprovals(session: string): Promise<string[]>;
  /** Answers an approval as an admin key. */
  answer(approval: string, decision: 'approve' | 'deny'): Promise<number>;
  /** Revokes a session (the kill switch) as an admin key. */
  revoke(session: string): Promise<number>;
  close(): Promise<void>;
}

/** Starts a whole Custody server on `backend`. */
export async function startCustody(backend: 'sqlite' | 'postgres'): Promise<TestCustody> {
  const idp: TestIssuer = await createTestIssuer('https://idp.test', 'custody');
  const agents: TestIssuer = await createTestIssuer('https://agents.test', 'custody');
  const trust = parseTrustConfig({ humans: [{ issuer: idp.issuer, audience: 'custody', jwks: idp.jwks }], agents: [{ issuer: agents.issuer, audience: 'custody', jwks: agents.jwks }] });
  let stores: { ledger: LedgerStore; authority: AuthorityStore; approvals: SqliteApprovalStore | PostgresApprovalStore };
  let teardown: () => Promise<void>;
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'custody-sdk-test-'));
    const path = join(dir, 'ledger.db');
    stores = { ledger: new SqliteStore({ path }), authority: new SqliteAuthorityStore({ path }), approvals: new SqliteApprovalStore({ path }) };
    teardown = async () => rmSync(dir, { recursive: true, force: true });
  } else {
    const pg = await postgresTestEnv();
    const schema = await pg.freshSchema();
    stores = {
      ledger: new PostgresStore({ connectionString: pg.url, schema }),
      authority: new PostgresAuthorityStore({ connectionString: pg.url, schema }),
      approvals: new PostgresApprovalStore({ connectionString: pg.url, schema }),
    };
    teardown = () => pg.dropSchema(schema);
  }
  const ledger = await Ledger.open({ store: stores.ledger, logSeed: new Uint8Array(32).fill(7), originHost: 'custody.test' });
  const authority = await Authority.open({ store: stores.authority, ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(8)), issuer: 'https://custody.test', sweepIntervalMs: 0 });
  await stores.approvals.migrate();
  const approvals = new Approvals({ store: stores.approvals, sweepIntervalMs: 0 }, ledger);
  const policy = new PolicyEngine(loadPolicySet(join(root, 'examples/policies')));
  const app = await createServer({ ledger, authority, approvals, policy, prepareWorkers: 0 });
  const url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
  const admin = (await createApiKey(ledger, { tenant: 'default', role: 'admin', name: 'admin' })).key;
  const ingest = (await createApiKey(ledger, { tenant: 'default', role: 'ingest', name: 'agent' })).key;
  const call = (path: string, init: RequestInit = {}) =>
    fetch(`${url}${path}`, { ...init, headers: { authorization: `Bearer ${admin}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) } });
  return {
    url,
    ledger,
    admin,
    ingest,
    async tokens(human = 'alice@example.com', agent = 'agent:payer') {
      return { subjectToken: await idp.sign({ sub: human }), actorToken: await agents.sign({ sub: agent }) };
    },
    async events(session) {
      const { events } = await ledger.timeline('default', session);
      return [...events].sort((a, b) => a.index - b.index) as never;
    },
    async pendingApprovals(session) {
      const res = await call(`/v1/approvals?status=pending&session=${encodeURIComponent(session)}`);
      return ((await res.json()) as { approvals: { id: string }[] }).approvals.map((a) => a.id);
    },
    async answer(approval, decision) {
      return (await call(`/v1/approvals/${approval}`, { method: 'POST', body: JSON.stringify({ decision, reason: 'test' }) })).status;
    },
    async revoke(session) {
      return (await call(`/v1/sessions/${session}/revoke`, { method: 'POST', body: JSON.stringify({ reason: 'kill switch' }) })).status;
    },
    async close() {
      await app.close();
      await approvals.close();
      await authority.close();
      await ledger.close();
      await teardown();
    },
  };
}

/** What the network between the SDK and Custody does to a request. */
export type Fault = 'forward' | 'unavailable' | 'html200' | 'empty200' | 'short200';

/**
 * A fetch that forwards to the real server unless `fault(url, init)` says
 * otherwise: `unavailable` (a 503 from a proxy), `html200` (a maintenance page),
 * `empty200` (`{}`), `short200` (forwards, then drops the last result).
 */
export function faultyFetch(fault: (url: string, init: RequestInit | undefined) => Fault): (input: string, init?: RequestInit) => Promise<Response> {
  return async (input, init) => {
    const f = fault(input, init);
    if (f === 'unavailable') return new Response('<html>503 Service Unavailable</html>', { status: 503, headers: { 'content-type': 'text/html' } });
    if (f === 'html200') return new Response('<html>Scheduled maintenance</html>', { status: 200, headers: { 'content-type': 'text/html' } });
    if (f === 'empty200') return new Response('{}', { status: 200, headers: { 'content-type': 'application/json' } });
    const res = await fetch(input, init);
    if (f !== 'short200') return res;
    const body = (await res.json()) as { results?: unknown[] };
    return new Response(JSON.stringify({ results: (body.results ?? []).slice(0, -1) }), { status: res.status, headers: { 'content-type': 'application/json' } });
  };
}
