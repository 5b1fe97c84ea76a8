/**
 * The approver's path over HTTP, on a whole server (Fastify, the ledger, the
 * authority, approvals, the example policies) on the real SQLite and PostgreSQL,
 * with real JWTs from test issuers and a real webhook receiver:
 *
 * - a human token held for token exchange (aud of the trust entry's `audience`) never
 *   answers an approval; one with the entry's `approverAudience` does (F1);
 * - the webhook's `decide` link comes from the configured issuer, not the Host header (F3);
 * - an approval of a revoked or closed session cannot be answered, shows its session's
 *   state, and is expired with `approval.expired` naming the end (F6), before the seal
 *   when the session is closed (F5);
 * - the self-approval check ignores case and invisible characters; key names refuse
 *   control characters (F8);
 * - the same approver repeating an answer gets it back; others get a 409 naming it (F11);
 * - refused uses of an approval (another call, reused, lapsed) are recorded as denied calls
 *   naming the refusal and the approval; a lapsed grant says so and is shown lapsed (F10).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Authority, type AuthorityStore, parseTrustConfig, PostgresAuthorityStore, signingKeyFromSeed, SqliteAuthorityStore } from '@custody/authority';
import { createTestIssuer, exchangeToken, type TestIssuer } from '@custody/authority/testing';
import { Ledger, type LedgerStore, PostgresStore, SqliteStore } from '@custody/ledger';
import { postgresTestEnv, storeExcluded } from '@custody/ledger/testing';
import { loadPolicySet, PolicyEngine } from '@custody/policy';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type ApprovalStore } from '../approvals/approval-store.js';
import { Approvals } from '../approvals/approvals.js';
import { PostgresApprovalStore } from '../approvals/postgres-approval-store.js';
import { SqliteApprovalStore } from '../approvals/sqlite-approval-store.js';
import { createApiKey } from '../api-keys.js';
import { createServer } from '../server.js';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
/** Custody's configured public URL (its issuer); the server itself listens on 127.0.0.1. */
const ISSUER = 'https://custody.example';
const pg = await postgresTestEnv();

/** The webhook receiver: every notification's body. */
const hooks: Record<string, unknown>[] = [];
const receiver = createHttpServer((req, res) => {
  let body = '';
  req.on('data', (c: Buffer) => (body += c.toString()));
  req.on('end', () => {
    hooks.push(JSON.parse(body) as Record<string, unknown>);
    res.end();
  });
});
await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
afterAll(() => receiver.close());

const backends = [
  { name: 'sqlite', skip: storeExcluded('sqlite') ?? false },
  { name: 'postgres', skip: pg.skip },
] as const;

interface Answer {
  status: number;
  body: { status?: string; approver?: Record<string, unknown>; decidedAt?: string; sessionStatus?: string; error?: { code: string; message: string; field?: string } };
}

describe.each(backends)('the approver path on $name', (backend) => {
  let idp: TestIssuer;
  /** A second human issuer, trusted for token exchange only (no approverAudience). */
  let exchangeOnly: TestIssuer;
  let agents: TestIssuer;
  let ledger: Ledger;
  let authority: Authority;
  let approvals: Approvals;
  let app: FastifyInstance;
  let url: string;
  let newApprovalStore: () => ApprovalStore;
  const keys: Record<string, string> = {};
  const logs: string[] = [];
  let teardown: () => Promise<void> = async () => undefined;

  beforeAll(async () => {
    if (backend.skip !== false) return;
    idp = await createTestIssuer('https://idp.test', 'custody');
    exchangeOnly = await createTestIssuer('https://partner-idp.test', 'custody');
    agents = await createTestIssuer('https://agents.test', 'custody', 'ES256');
    const trust = parseTrustConfig({
      humans: [
        { issuer: idp.issuer, audience: 'custody', approverAudience: 'custody-approvals', jwks: idp.jwks },
        { issuer: exchangeOnly.issuer, audience: 'custody', jwks: exchangeOnly.jwks },
      ],
      agents: [{ issuer: agents.issuer, audience: 'custody', jwks: agents.jwks }],
    });
    let stores: { ledger: LedgerStore; authority: AuthorityStore; approvals: ApprovalStore };
    if (backend.name === 'sqlite') {
      const dir = mkdtempSync(join(tmpdir(), 'custody-approver-path-'));
      const path = join(dir, 'ledger.db');
      newApprovalStore = () => new SqliteApprovalStore({ path });
      stores = { ledger: new SqliteStore({ path }), authority: new SqliteAuthorityStore({ path }), approvals: newApprovalStore() };
      teardown = async () => rmSync(dir, { recursive: true, force: true });
    } else {
      const schema = await pg.freshSchema();
      newApprovalStore = () => new PostgresApprovalStore({ connectionString: pg.url, schema });
      stores = { ledger: new PostgresStore({ connectionString: pg.url, schema }), authority: new PostgresAuthorityStore({ connectionString: pg.url, schema }), approvals: newApprovalStore() };
      teardown = () => pg.dropSchema(schema);
    }
    ledger = await Ledger.open({ store: stores.ledger, logSeed: new Uint8Array(32).fill(3), originHost: 'custody.test' });
    authority = await Authority.open({ store: stores.authority, ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(4)), issuer: ISSUER, sweepIntervalMs: 0 });
    await stores.approvals.migrate();
    const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    // A use window of 1 s: an approval granted with a 1 s TTL lapses a second after the grant (F10).
    approvals = new Approvals({ store: stores.approvals, sweepIntervalMs: 0, useWindowSeconds: 1, webhook: { url: hookUrl }, log: (m) => logs.push(m) }, ledger);
    app = await createServer({ ledger, authority, approvals, policy: new PolicyEngine(loadPolicySet(join(root, 'examples/policies'))) });
    url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
    keys['admin'] = (await createApiKey(ledger, { tenant: 'default', role: 'admin', name: 'admin' })).key;
    keys['read'] = (await createApiKey(ledger, { tenant: 'default', role: 'read', name: 'reader' })).key;
    keys['bob'] = (await createApiKey(ledger, { tenant: 'default', role: 'approve', name: 'bob@example.com' })).key;
    keys['carol'] = (await createApiKey(ledger, { tenant: 'default', role: 'approve', name: 'carol@example.com' })).key;
    // An approve key whose name is the initiator's id in other case (as directories often spell it).
    keys['Alice'] = (await createApiKey(ledger, { tenant: 'default', role: 'approve', name: 'Alice@Example.com' })).key;
  });
  afterAll(async () => {
    await app?.close();
    await approvals?.close();
    await authority?.close();
    await ledger?.close();
    await teardown();
  });

  /** The agent side opens a session for `human` with the human's subject token (which it then holds). */
  const open = async (human: string, issuer = idp) => {
    const subjectToken = await issuer.sign({ sub: human });
    const body = await exchangeToken(url, { subjectToken, actorToken: await agents.sign({ sub: 'agent:helpdesk' }), scope: 'payments.transfer', objective: `help ${human}` });
    return { credential: body.access_token, session: body.session_id, subjectToken };
  };
  /** A transfer the example policies hold for approval; its approval id. */
  const hold = async (credential: string, amount = 4_000_000, approvalTtlSeconds?: number) => {
    const res = await fetch(`${url}/v1/decisions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tool: { server: 'payments', name: 'transfer' }, arguments: { amount, currency: 'EUR', to: 'LT12 1000 0111 0100 1000' }, ...(approvalTtlSeconds !== undefined ? { approvalTtlSeconds } : {}) }),
    });
    const body = (await res.json()) as { decision: { effect: string }; approval?: { id: string } };
    expect(body.decision.effect).toBe('approval_required');
    return body.approval!.id;
  };
  const answer = async (id: string, bearer: string, decision: 'approve' | 'deny' = 'approve'): Promise<Answer> => {
    const res = await fetch(`${url}/v1/approvals/${id}`, { method: 'POST', headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' }, body: JSON.stringify({ decision }) });
    return { status: res.status, body: (await res.json()) as Answer['body'] };
  };
  const view = async (id: string) => (await (await fetch(`${url}/v1/approvals/${id}`, { headers: { authorization: `Bearer ${keys['read']!}` } })).json()) as Answer['body'];
  /** The session's entries in log order. */
  const log = async (session: string) => (await ledger.timeline('default', session)).events.sort((a, b) => a.index - b.index).map((e) => e.event);
  const entriesOf = async (session: string, approval: string) => (await log(session)).filter((e) => e.approval?.id === approval).map((e) => e.type);

  it.skipIf(backend.skip)('a number that is not finite (1e400, Infinity) in a query or a JSON body is 400 naming it, never a 500; nothing is recorded', async () => {
    for (const q of ['limit=1e400', 'limit=Infinity']) {
      const res = await fetch(`${url}/v1/approvals?${q}`, { headers: { authorization: `Bearer ${keys['read']!}` } });
      expect(res.status, q).toBe(400);
      expect(await res.json(), q).toEqual({ error: { code: 'REQUEST_INVALID', message: 'query parameter limit: must be a finite number', field: 'limit' } });
    }
    const s = await open('carol@example.com');
    const before = (await log(s.session)).length;
    const res = await fetch(`${url}/v1/decisions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.credential}`, 'content-type': 'application/json' },
      body: '{"tool":{"server":"payments","name":"transfer"},"arguments":{"amount":1e400,"currency":"EUR"}}',
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { code: 'REQUEST_INVALID', message: 'body field arguments.amount: must be a finite number', field: 'arguments.amount' } });
    expect((await log(s.session)).length).toBe(before);
  });

  it.skipIf(backend.skip)('F1: a subject token the agent side holds never answers an approval; a token with the approverAudience does', async () => {
    // A shared agent opens one session for alice and one for bob; bob's transfer is held.
    const alice = await open('alice@example.com');
    const bob = await open('bob@example.com');
    const id = await hold(bob.credential);

    // The agent answers with alice's subject token (the JWT it just exchanged): refused.
    const withSubject = await answer(id, alice.subjectToken);
    expect(withSubject.status).toBe(403);
    expect(withSubject.body.error?.code).toBe('APPROVER_TOKEN_REFUSED');
    expect(withSubject.body.error?.message).toContain('approverAudience');
    // A token meant for both (aud: exchange and approvals) is a token the agent side may hold: refused.
    expect((await answer(id, await idp.sign({ sub: 'alice@example.com', aud: ['custody', 'custody-approvals'] }))).body.error?.code).toBe('APPROVER_TOKEN_REFUSED');
    // An issuer trusted for token exchange only never yields approvers, whatever the aud.
    for (const aud of ['custody', 'custody-approvals']) {
      const r = await answer(id, await exchangeOnly.sign({ sub: 'dora@partner.test', aud }));
      expect(r.status).toBe(403);
      expect(r.body.error?.code).toBe('APPROVER_TOKEN_REFUSED');
    }
    // A forged token is not authenticated at all.
    expect((await answer(id, await (await createTestIssuer(idp.issuer, 'custody-approvals')).sign({ sub: 'alice@example.com' }))).status).toBe(401);
    expect((await view(id)).status).toBe('pending');
    expect(await entriesOf(bob.session, id)).toEqual(['approval.requested']);

    // Alice's approver token (aud: the approverAudience), which only she holds: accepted and verified.
    const granted = await answer(id, await idp.sign({ sub: 'alice@example.com', aud: 'custody-approvals' }));
    expect(granted.status).toBe(200);
    expect(granted.body).toMatchObject({ status: 'granted', approver: { type: 'human', id: 'alice@example.com', issuer: idp.issuer, verified: true } });
    expect(await entriesOf(bob.session, id)).toEqual(['approval.requested', 'approval.granted']);

    // Approve keys work as before.
    const other = await hold(bob.credential, 200_000);
    expect(await answer(other, keys['carol']!, 'deny')).toMatchObject({ status: 200, body: { status: 'denied', approver: { id: 'carol@example.com', verified: false } } });
  });

  it.skipIf(backend.skip)("F3: the webhook's decide link is the configured URL, whatever Host the agent sends", async () => {
    const s = await open('erin@example.com');
    const body = JSON.stringify({ tool: { server: 'payments', name: 'transfer' }, arguments: { amount: 300_000, currency: 'EUR', to: 'DE89' } });
    const target = new URL(url);
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const r = httpRequest(
        { host: target.hostname, port: target.port, method: 'POST', path: '/v1/decisions', headers: { host: 'approvals.attacker.example', authorization: `Bearer ${s.credential}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } },
        (response) => {
          let text = '';
          response.on('data', (c: Buffer) => (text += c.toString()));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
        },
      );
      r.on('error', reject);
      r.end(body);
    });
    expect(res.status).toBe(200);
    const id = (JSON.parse(res.body) as { approval: { id: string } }).approval.id;
    let hook: Record<string, unknown> | undefined;
    for (let i = 0; i < 200 && hook === undefined; i++) {
      hook = hooks.find((h) => (h['approval'] as { id: string }).id === id);
      if (hook === undefined) await new Promise((r) => setTimeout(r, 10));
    }
    expect(hook?.['decide']).toBe(`${ISSUER}/v1/approvals/${id}`);
    expect(JSON.stringify(hook)).not.toContain('attacker');
  });

  it.skipIf(backend.skip)("F6: a revoked session's approval cannot be answered, shows the session's state, and is expired naming the end", async () => {
    const s = await open('frank@example.com');
    const id = await hold(s.credential);
    const other = await open('grace@example.com');
    const swept = await hold(other.credential);
    expect(await view(id)).toMatchObject({ status: 'pending', sessionStatus: 'active' });

    for (const session of [s.session, other.session]) {
      const revoked = await fetch(`${url}/v1/sessions/${session}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${keys['admin']!}`, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'stop' }) });
      expect(revoked.status).toBe(200);
    }
    // The approver sees the session's state before answering.
    expect(await view(id)).toMatchObject({ status: 'pending', sessionStatus: 'revoked' });

    // Answering it: 409 naming why; it is expired at once, recorded as such.
    const late = await answer(id, keys['bob']!);
    expect(late.status).toBe(409);
    expect(late.body.error?.code).toBe('APPROVAL_SESSION_INACTIVE');
    expect(late.body.error?.message).toContain('revoked');
    expect(await view(id)).toMatchObject({ status: 'expired', sessionStatus: 'revoked' });
    // Nobody answers the other one: the sweeper (here, the one a listing runs) expires it without waiting for its TTL.
    const list = (await (await fetch(`${url}/v1/approvals?session=${other.session}`, { headers: { authorization: `Bearer ${keys['read']!}` } })).json()) as { approvals: Answer['body'][] };
    expect(list.approvals).toEqual([expect.objectContaining({ status: 'expired', sessionStatus: 'revoked' })]);
    for (const [session, approval] of [
      [s.session, id],
      [other.session, swept],
    ] as const) {
      const entries = (await log(session)).filter((e) => e.approval?.id === approval);
      expect(entries.map((e) => e.type)).toEqual(['approval.requested', 'approval.expired']);
      expect(entries[1]!.data).toMatchObject({ sessionEnded: 'revoked', reason: expect.stringContaining('session ended') });
    }
    // Later answers name the expiry and why.
    expect((await answer(id, keys['bob']!)).body.error).toMatchObject({ code: 'APPROVAL_NOT_PENDING', message: expect.stringContaining('its session was revoked') });
    // Those expiries follow the revocation, but are Custody's bookkeeping, not the agent acting.
    const report = (await (await fetch(`${url}/v1/reports/acted-after-end?limit=1000`, { headers: { authorization: `Bearer ${keys['read']!}` } })).json()) as { rows: { session: string }[] };
    expect(report.rows.filter((r) => r.session === s.session || r.session === other.session)).toEqual([]);
  });

  it.skipIf(backend.skip)("F7: a delegated session's approval shows the human's objective next to the delegating agent's", async () => {
    const root = await open('ivy@example.com');
    const child = await exchangeToken(url, {
      subjectToken: root.credential,
      delegate: true,
      actorToken: await agents.sign({ sub: 'agent:payments' }),
      scope: 'payments.transfer',
      objective: 'URGENT: CFO-approved supplier payment, pre-cleared by finance',
    });
    const id = await hold(child.access_token);
    const shown = (await view(id)) as unknown as { context: { session: { objective?: string; rootObjective?: string; depth: number } } };
    expect(shown.context.session).toMatchObject({ depth: 1, objective: 'URGENT: CFO-approved supplier payment, pre-cleared by finance', rootObjective: 'help ivy@example.com' });
    // A root session's approval has no second objective.
    const own = (await view(await hold(root.credential))) as unknown as { context: { session: Record<string, unknown> } };
    expect(own.context.session).not.toHaveProperty('rootObjective');
  });

  it.skipIf(backend.skip)('F8: variants of the initiator in case or with invisible characters cannot approve; key names refuse control characters', async () => {
    const alice = await open('alice@example.com');
    const id = await hold(alice.credential);
    // An approve key named Alice@Example.com for alice@example.com's own call.
    const byKey = await answer(id, keys['Alice']!);
    expect(byKey.status).toBe(403);
    expect(byKey.body.error?.code).toBe('APPROVAL_SELF');
    // Her approver token with a zero-width space or in capitals.
    for (const sub of ['alice@example.com\u200b', 'ALICE@EXAMPLE.COM', '\u202ealice@example.com', 'ａｌｉｃｅ@example.com']) {
      const r = await answer(id, await idp.sign({ sub, aud: 'custody-approvals' }));
      expect([sub, r.status, r.body.error?.code]).toEqual([sub, 403, 'APPROVAL_SELF']);
    }
    expect((await view(id)).status).toBe('pending');
    // Key names with control or invisible format characters are refused at creation.
    for (const name of ['bob\u001b[2K@example.com', 'bob@example.com\u200b', 'bob\n@example.com', '\u202ebob']) {
      const res = await fetch(`${url}/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${keys['admin']!}`, 'content-type': 'application/json' }, body: JSON.stringify({ role: 'approve', name }) });
      const body = (await res.json()) as Answer['body'];
      expect([name, res.status, body.error?.code, body.error?.field]).toEqual([name, 400, 'REQUEST_INVALID', 'name']);
    }
  });

  it.skipIf(backend.skip)('F11: the same approver repeating the answer gets it back; any other later answer gets a 409 naming it', async () => {
    const s = await open('heidi@example.com');
    const id = await hold(s.credential);
    const first = await answer(id, keys['bob']!);
    expect(first).toMatchObject({ status: 200, body: { status: 'granted', approver: { id: 'bob@example.com' } } });
    const again = await answer(id, keys['bob']!);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ status: 'granted', approver: { id: 'bob@example.com' }, decidedAt: first.body.decidedAt });
    for (const [key, decision] of [
      ['bob', 'deny'],
      ['carol', 'approve'],
      ['carol', 'deny'],
    ] as const) {
      const r = await answer(id, keys[key]!, decision);
      expect(r.status).toBe(409);
      expect(r.body.error).toMatchObject({ code: 'APPROVAL_NOT_PENDING', message: `approval ${id} was already granted by bob@example.com at ${first.body.decidedAt!}` });
    }
    expect(await entriesOf(s.session, id)).toEqual(['approval.requested', 'approval.granted']);
  });

  it.skipIf(backend.skip)('F10: refused uses of an approval are recorded as denied calls naming the refusal; a lapsed grant says lapsed and is shown so', async () => {
    const s = await open('kim@example.com');
    const other = await open('leo@example.com');
    const args = { amount: 4_000_000, currency: 'EUR', to: 'LT12 1000 0111 0100 1000' };
    const id = await hold(s.credential);
    expect((await answer(id, keys['bob']!)).status).toBe(200);
    type Decided = { status: number; body: { decision?: { effect: string }; call?: string; error?: { code: string; message: string; call?: string } } };
    const use = async (credential: string, approval: string, name = 'transfer', a: Record<string, unknown> = args): Promise<Decided> => {
      const res = await fetch(`${url}/v1/decisions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tool: { server: 'payments', name }, arguments: a, approval }),
      });
      return { status: res.status, body: (await res.json()) as Decided['body'] };
    };
    /** The refused attempts recorded in a session: each call's tool.requested and its policy.decided deny. */
    const refusals = async (session: string, approval: string) => {
      const entries = await log(session);
      return entries
        .filter((e) => e.type === 'policy.decided' && e.approval?.id === approval && e.decision?.effect === 'deny')
        .map((d) => ({ call: entries.find((e) => e.id === d.cause)?.type, actor: d.actor.id, reasons: d.decision?.reasons, approval: d.approval, data: d.data }));
    };

    // Other arguments, another tool, another session: 409 APPROVAL_MISMATCH as before, now on record.
    const probes = [
      [s, await use(s.credential, id, 'transfer', { ...args, amount: 9_000_000 }), `the approval ${id} was granted for other arguments`],
      [s, await use(s.credential, id, 'payout'), `the approval ${id} was granted for another tool`],
      [other, await use(other.credential, id), `the approval ${id} was granted for another session`],
    ] as const;
    for (const [, r, message] of probes) {
      expect(r.status).toBe(409);
      expect(r.body.error).toMatchObject({ code: 'APPROVAL_MISMATCH', message: expect.stringContaining(message) });
      expect(Object.keys(r.body.error!).sort()).toEqual(['code', 'message']);
    }
    const mismatch = (message: string, digest: Record<string, unknown>) => ({
      call: 'tool.requested',
      actor: 'custody-policy',
      reasons: [expect.stringContaining(message)],
      approval: { id, status: 'granted', argumentsDigest: expect.any(String), approver: expect.objectContaining({ id: 'bob@example.com' }) },
      data: { decidedBy: 'server', approvalRefused: 'APPROVAL_MISMATCH', ...digest },
    });
    expect(await refusals(s.session, id)).toEqual([mismatch(probes[0][2], { argumentsDigest: expect.any(String) }), mismatch(probes[1][2], { argumentsDigest: expect.any(String) })]);
    expect(await refusals(other.session, id)).toEqual([mismatch(probes[2][2], { argumentsDigest: expect.any(String) })]);
    const [otherArgs] = await refusals(s.session, id);
    expect(otherArgs!.data?.['argumentsDigest']).not.toBe(otherArgs!.approval?.argumentsDigest);

    // The probes did not use it: the exact call does, once; a replay is refused and recorded.
    const used = await use(s.credential, id);
    expect(used.status).toBe(200);
    expect(used.body.decision?.effect).toBe('allow');
    const replay = await use(s.credential, id);
    expect(replay.status).toBe(409);
    expect(replay.body.error).toMatchObject({ code: 'APPROVAL_NOT_GRANTED', message: expect.stringMatching(/^the approval apr-\S+ was already used at \S+: approvals are single-use$/) });
    const afterReplay = await refusals(s.session, id);
    expect(afterReplay).toHaveLength(3);
    expect(afterReplay[2]).toMatchObject({ call: 'tool.requested', reasons: [replay.body.error!.message], data: { approvalRefused: 'APPROVAL_NOT_GRANTED' } });
    expect(await view(id)).toMatchObject({ status: 'granted', consumedAt: expect.any(String) });
    expect(await view(id)).not.toHaveProperty('lapsed');

    // A grant left unused past its use window (here: TTL 1 s, window 1 s) lapses: shown so, refused as lapsed, on record.
    const late = await hold(s.credential, 4_000_000, 1);
    const granted = await answer(late, keys['bob']!);
    expect(granted.status).toBe(200);
    const until = (granted.body as { usableUntil?: string }).usableUntil!;
    expect(granted.body).not.toHaveProperty('lapsed');
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(until) - Date.now()) + 50));
    expect(await view(late)).toMatchObject({ status: 'granted', usableUntil: until, lapsed: true });
    const state = (await (await fetch(`${url}/v1/approvals/${late}/status`, { headers: { authorization: `Bearer ${keys['read']!}` } })).json()) as Record<string, unknown>;
    expect(state).toMatchObject({ status: 'granted', usableUntil: until, lapsed: true });
    const lapsedUse = await use(s.credential, late);
    expect(lapsedUse.status).toBe(409);
    expect(lapsedUse.body.error?.code).toBe('APPROVAL_NOT_GRANTED');
    expect(lapsedUse.body.error?.message).toContain(`the approval ${late} lapsed unused at ${until}`);
    expect(lapsedUse.body.error?.message).not.toContain('another call');
    expect(await refusals(s.session, late)).toEqual([
      { call: 'tool.requested', actor: 'custody-policy', reasons: [lapsedUse.body.error!.message], approval: expect.objectContaining({ id: late, status: 'granted' }), data: expect.objectContaining({ approvalRefused: 'APPROVAL_NOT_GRANTED' }) },
    ]);
    // The listing shows it lapsed too; it was never used.
    const list = (await (await fetch(`${url}/v1/approvals?session=${s.session}&status=granted`, { headers: { authorization: `Bearer ${keys['read']!}` } })).json()) as { approvals: Record<string, unknown>[] };
    expect(list.approvals.find((a) => a['id'] === late)).toMatchObject({ lapsed: true });
    expect(list.approvals.find((a) => a['id'] === late)).not.toHaveProperty('consumedAt');
  });

  it.skipIf(backend.skip)('F5: closing a session ends its pending approvals before the seal; an expiry after a seal is final; an unrecorded expiry survives a restart', async () => {
    const s = await open('ivan@example.com');
    const id = await hold(s.credential);
    const closed = await fetch(`${url}/v1/sessions/${s.session}/close`, { method: 'POST', headers: { authorization: `Bearer ${s.credential}`, 'content-type': 'application/json' }, body: '{}' });
    expect(closed.status).toBe(200);
    expect(((await closed.json()) as { sealed: boolean }).sealed).toBe(true);
    const entries = await log(s.session);
    const types = entries.map((e) => e.type);
    expect(types.at(-1)).toBe('session.closed');
    const expired = entries.find((e) => e.type === 'approval.expired' && e.approval?.id === id);
    expect(expired?.data).toMatchObject({ sessionEnded: 'closed' });
    expect(await view(id)).toMatchObject({ status: 'expired', sessionStatus: 'closed' });
    expect((await answer(id, keys['bob']!)).body.error).toMatchObject({ code: 'APPROVAL_NOT_PENDING', message: expect.stringContaining('its session was closed') });

    // An approval the close did not see (opened in a race with it): its expiry meets the
    // seal. That is final: logged once, no retry, no entry.
    const raced = approvals.prepare('default', { sessionId: s.session, tool: 'payments.transfer', argumentsDigest: 'r'.repeat(43), callEvent: entries[0]!.id, context: (await approvals.get('default', id)).context, ttlSeconds: 1 });
    await approvals.store.create({ ...raced.record, createdAt: new Date(Date.now() - 5000).toISOString(), expiresAt: new Date(Date.now() - 1000).toISOString() });
    logs.length = 0;
    for (let i = 0; i < 3; i++) await approvals.sweep();
    expect(logs.filter((l) => l.includes(raced.record.id))).toEqual([expect.stringContaining('was sealed before approval.expired could be recorded')]);
    expect((await approvals.get('default', raced.record.id)).status).toBe('expired');
    expect(await approvals.store.unrecordedExpiries(100)).toEqual([]);
    expect((await log(s.session)).length).toBe(entries.length);

    // An expiry the ledger refused is kept in the store, not in memory: after a "restart"
    // (new Approvals on a new store connection), the next sweep records it once.
    const t = await open('judy@example.com');
    const due = await hold(t.credential);
    const refusing = new Proxy(ledger, {
      get(target, prop, receiver) {
        if (prop === 'append') return async () => Promise.reject(new Error('the database is gone'));
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const later = new Date(Date.now() + 3_600_000);
    const first = newApprovalStore();
    const down = new Approvals({ store: first, sweepIntervalMs: 0, now: () => later }, refusing);
    expect((await down.sweep()).expired).toContain(due);
    await down.close();
    expect(await entriesOf(t.session, due)).toEqual(['approval.requested']);
    const restarted = new Approvals({ store: newApprovalStore(), sweepIntervalMs: 0, now: () => later }, ledger);
    await restarted.sweep();
    await restarted.sweep();
    await restarted.close();
    expect(await entriesOf(t.session, due)).toEqual(['approval.requested', 'approval.expired']);
    expect((await view(due)).status).toBe('expired');
    expect(await approvals.store.unrecordedExpiries(100)).toEqual([]);
  });
});
