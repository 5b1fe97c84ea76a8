/**
 * `unapproved-calls` over approvals made through the real flow: POST /v1/decisions holds
 * a call for approval (tool.requested, policy.decided, approval.requested), a human
 * answers with POST /v1/approvals/:id (approval.granted / approval.denied, whose `cause`
 * is the approval.requested), or the sweep expires it (approval.expired). The report
 * must see each answer: a granted call is not listed, the others say what became of them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Authority, type AuthorityStore, parseTrustConfig, PostgresAuthorityStore, signingKeyFromSeed, SqliteAuthorityStore } from '@custody/authority';
import { createTestIssuer, exchangeToken, type TestIssuer } from '@custody/authority/testing';
import { Ledger, type LedgerStore, PostgresStore, SqliteStore, type UnapprovedCallRow } from '@custody/ledger';
import { postgresTestEnv, storeExcluded } from '@custody/ledger/testing';
import { loadPolicySet, PolicyEngine } from '@custody/policy';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Approvals } from '../approvals/approvals.js';
import { PostgresApprovalStore } from '../approvals/postgres-approval-store.js';
import { SqliteApprovalStore } from '../approvals/sqlite-approval-store.js';
import { createApiKey } from '../api-keys.js';
import { createServer } from '../server.js';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
const pg = await postgresTestEnv();

const backends = [
  { name: 'sqlite', skip: storeExcluded('sqlite') ?? false },
  { name: 'postgres', skip: pg.skip },
] as const;

describe.each(backends)('unapproved-calls after the real approval flow on $name', (backend) => {
  let idp: TestIssuer;
  let agents: TestIssuer;
  let url: string;
  let ledger: Ledger;
  let authority: Authority;
  let approvals: Approvals;
  let app: FastifyInstance;
  let admin: string;
  let approver: string;
  /** How far the approvals' clock runs ahead of the real one (to expire an approval now). */
  let skew = 0;
  let teardown: () => Promise<void> = async () => undefined;

  beforeAll(async () => {
    if (backend.skip !== false) return;
    idp = await createTestIssuer('https://idp.test', 'custody');
    agents = await createTestIssuer('https://agents.test', 'custody');
    const trust = parseTrustConfig({ humans: [{ issuer: idp.issuer, audience: 'custody', jwks: idp.jwks }], agents: [{ issuer: agents.issuer, audience: 'custody', jwks: agents.jwks }] });
    let stores: { ledger: LedgerStore; authority: AuthorityStore; approvals: SqliteApprovalStore | PostgresApprovalStore };
    if (backend.name === 'sqlite') {
      const dir = mkdtempSync(join(tmpdir(), 'custody-unapproved-calls-'));
      const path = join(dir, 'ledger.db');
      stores = { ledger: new SqliteStore({ path }), authority: new SqliteAuthorityStore({ path }), approvals: new SqliteApprovalStore({ path }) };
      teardown = async () => rmSync(dir, { recursive: true, force: true });
    } else {
      const schema = await pg.freshSchema();
      stores = {
        ledger: new PostgresStore({ connectionString: pg.url, schema }),
        authority: new PostgresAuthorityStore({ connectionString: pg.url, schema }),
        approvals: new PostgresApprovalStore({ connectionString: pg.url, schema }),
      };
      teardown = () => pg.dropSchema(schema);
    }
    ledger = await Ledger.open({ store: stores.ledger, logSeed: new Uint8Array(32).fill(5), originHost: 'custody.test' });
    authority = await Authority.open({ store: stores.authority, ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(6)), issuer: 'https://custody.test', sweepIntervalMs: 0 });
    await stores.approvals.migrate();
    approvals = new Approvals({ store: stores.approvals, sweepIntervalMs: 0, now: () => new Date(Date.now() + skew) }, ledger);
    const policy = new PolicyEngine(loadPolicySet(join(root, 'examples/policies')));
    app = await createServer({ ledger, authority, approvals, policy });
    url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
    admin = (await createApiKey(ledger, { tenant: 'default', role: 'admin', name: 'admin' })).key;
    approver = (await createApiKey(ledger, { tenant: 'default', role: 'approve', name: 'bob@example.com' })).key;
  });
  afterAll(async () => {
    await app?.close();
    await approvals?.close();
    await authority?.close();
    await ledger?.close();
    await teardown();
  });

  const open = async () =>
    exchangeToken(url, { subjectToken: await idp.sign({ sub: 'alice@example.com' }), actorToken: await agents.sign({ sub: 'agent:payer' }), scope: 'payments.transfer', objective: 'pay the supplier invoices' });
  /** A transfer above 1,000.00 EUR: held for approval by examples/policies. */
  const transfer = async (credential: string, amount: number, extra: Record<string, unknown> = {}) => {
    const res = await fetch(`${url}/v1/decisions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tool: { server: 'payments', name: 'transfer' }, arguments: { amount, currency: 'EUR', to: 'DE89370400440532013000' }, ...extra }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { decision: { effect: string }; call: string; decisionEvent: string; approval?: { id: string } };
  };
  const answer = async (id: string, decision: 'approve' | 'deny') => {
    const res = await fetch(`${url}/v1/approvals/${id}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${approver}`, 'content-type': 'application/json' },
      body: JSON.stringify({ decision, reason: `${decision} by the test` }),
    });
    expect(res.status).toBe(200);
  };
  const report = async () => {
    const res = await fetch(`${url}/v1/reports/unapproved-calls?limit=1000`, { headers: { authorization: `Bearer ${admin}` } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { rows: UnapprovedCallRow[] }).rows;
  };

  it.skipIf(backend.skip)('a human grant removes the call from the report; a denial, an expiry and no answer say so', async () => {
    const s = await open();
    const granted = await transfer(s.access_token, 400_000);
    const denied = await transfer(s.access_token, 410_000);
    const expired = await transfer(s.access_token, 420_000, { approvalTtlSeconds: 1 });
    const pending = await transfer(s.access_token, 430_000);
    for (const held of [granted, denied, expired, pending]) expect(held.decision.effect).toBe('approval_required');

    await answer(granted.approval!.id, 'approve');
    await answer(denied.approval!.id, 'deny');
    skew = 5_000;
    expect((await approvals.sweep()).expired).toEqual([expired.approval!.id]);
    skew = 0;
    // The granted approval is used once: the same call, now allowed.
    expect((await transfer(s.access_token, 400_000, { approval: granted.approval!.id })).decision.effect).toBe('allow');

    // What the server wrote: each decision entry names the approval.requested in `cause`.
    const { events } = await ledger.timeline('default', s.session_id);
    const requested = events.filter((e) => e.event.type === 'approval.requested');
    expect(requested.map((e) => e.event.cause)).toEqual([granted.call, denied.call, expired.call, pending.call]);
    for (const type of ['approval.granted', 'approval.denied', 'approval.expired']) {
      const d = events.find((e) => e.event.type === type)!;
      expect(requested.map((r) => r.event.id)).toContain(d.event.cause);
      expect([granted.call, denied.call, expired.call]).toContain(d.event.data?.['call']);
    }

    const rows = (await report()).filter((r) => r.session === s.session_id);
    expect(rows.map((r) => [r.call, r.event, r.approval, r.ran])).toEqual([
      [pending.call, pending.decisionEvent, 'pending', false],
      [expired.call, expired.decisionEvent, 'expired', false],
      [denied.call, denied.decisionEvent, 'denied', false],
    ]);
  });
});
