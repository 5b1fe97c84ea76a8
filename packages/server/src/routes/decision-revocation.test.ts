/**
 * The kill switch against decisions in flight: a revocation that takes effect
 * while a call is being decided and recorded (on this node or another one on the
 * same PostgreSQL) still stops the call. No call is allowed whose decision landed
 * in the log after its session's revocation; such a call's trail ends with
 * `tool.failed` (refused), and the caller gets 401/403, never `allow`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
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

import { Approvals } from '../approvals/approvals.js';
import { PostgresApprovalStore } from '../approvals/postgres-approval-store.js';
import { SqliteApprovalStore } from '../approvals/sqlite-approval-store.js';
import { createApiKey } from '../api-keys.js';
import { createServer } from '../server.js';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
const ISSUER = 'https://custody.test';
const pg = await postgresTestEnv();

interface Node {
  url: string;
  ledger: Ledger;
  authority: Authority;
  close(): Promise<void>;
}

/** A whole server on `stores`; `append` wraps its routes' ledger appends (the authority's own are not). */
async function startNode(stores: { ledger: LedgerStore; authority: AuthorityStore; approvals: SqliteApprovalStore | PostgresApprovalStore }, trust: ReturnType<typeof parseTrustConfig>, wrap?: (ledger: Ledger) => Ledger): Promise<Node> {
  const ledger = await Ledger.open({ store: stores.ledger, logSeed: new Uint8Array(32).fill(5), originHost: 'custody.test' });
  const authority = await Authority.open({ store: stores.authority, ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(6)), issuer: ISSUER, sweepIntervalMs: 0 });
  await stores.approvals.migrate();
  const approvals = new Approvals({ store: stores.approvals, sweepIntervalMs: 0 }, ledger);
  const policy = new PolicyEngine(loadPolicySet(join(root, 'examples/policies')));
  const app: FastifyInstance = await createServer({ ledger: wrap ? wrap(ledger) : ledger, authority, approvals, policy });
  const url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
  return {
    url,
    ledger,
    authority,
    async close() {
      await app.close();
      await approvals.close();
      await authority.close();
      await ledger.close();
    },
  };
}

const backends = [
  { name: 'sqlite', skip: storeExcluded('sqlite') ?? false, nodes: 1 },
  { name: 'postgres', skip: pg.skip, nodes: 2 },
] as const;

describe.each(backends)('decisions against the kill switch on $name', (backend) => {
  let idp: TestIssuer;
  let agents: TestIssuer;
  let nodes: Node[] = [];
  let admin: string;
  let teardown: () => Promise<void> = async () => undefined;
  /** Sessions to revoke right after their next tool.requested commits (another node's kill switch, in between). */
  const revokeAfterCommit = new Set<string>();

  beforeAll(async () => {
    if (backend.skip !== false) return;
    idp = await createTestIssuer('https://idp.test', 'custody');
    agents = await createTestIssuer('https://agents.test', 'custody');
    const trust = parseTrustConfig({ humans: [{ issuer: idp.issuer, audience: 'custody', jwks: idp.jwks }], agents: [{ issuer: agents.issuer, audience: 'custody', jwks: agents.jwks }] });
    let stores: () => Parameters<typeof startNode>[0];
    if (backend.name === 'sqlite') {
      const dir = mkdtempSync(join(tmpdir(), 'custody-decision-revocation-'));
      const path = join(dir, 'ledger.db');
      stores = () => ({ ledger: new SqliteStore({ path }), authority: new SqliteAuthorityStore({ path }), approvals: new SqliteApprovalStore({ path }) });
      teardown = async () => rmSync(dir, { recursive: true, force: true });
    } else {
      const schema = await pg.freshSchema();
      stores = () => ({
        ledger: new PostgresStore({ connectionString: pg.url, schema }),
        authority: new PostgresAuthorityStore({ connectionString: pg.url, schema }),
        approvals: new PostgresApprovalStore({ connectionString: pg.url, schema }),
      });
      teardown = () => pg.dropSchema(schema);
    }
    // The first node's routes revoke a flagged session through the last node's authority
    // right after its call's entries commit: the window between check and commit, made certain.
    const wrap = (ledger: Ledger): Ledger =>
      new Proxy(ledger, {
        get(target, prop, receiver) {
          if (prop === 'append') {
            return async (...args: Parameters<Ledger['append']>) => {
              const results = await target.append(...args);
              const call = args[1].find((d) => d.type === 'tool.requested' && revokeAfterCommit.has(d.session!.id));
              if (call !== undefined) {
                revokeAfterCommit.delete(call.session!.id);
                await nodes.at(-1)!.authority.revokeSession(args[0], call.session!.id, { principal: { type: 'human', id: 'oncall@example.com' }, reason: 'kill switch' });
              }
              return results;
            };
          }
          const v = Reflect.get(target, prop, receiver) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    for (let i = 0; i < backend.nodes; i++) nodes.push(await startNode(stores(), trust, i === 0 ? wrap : undefined));
    admin = (await createApiKey(nodes[0]!.ledger, { tenant: 'default', role: 'admin', name: 'admin' })).key;
  });
  afterAll(async () => {
    for (const n of nodes) await n.close();
    nodes = [];
    await teardown();
  });

  const open = async () =>
    exchangeToken(nodes[0]!.url, { subjectToken: await idp.sign({ sub: 'alice@example.com' }), actorToken: await agents.sign({ sub: 'agent:payer' }), scope: 'payments.transfer', objective: 'pay the invoices' });
  const decide = async (node: Node, credential: string, i: number) => {
    const res = await fetch(`${node.url}/v1/decisions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tool: { server: 'payments', name: 'transfer' }, arguments: { amount: 500 + i, currency: 'EUR', to: 'DE89370400440532013000' }, callId: `call-${i}` }),
    });
    return { status: res.status, body: (await res.json()) as { decision?: { effect: string }; call?: string; error?: { code: string } }, at: performance.now() };
  };
  /** The session's entries in log order. */
  const log = async (session: string) => (await nodes[0]!.ledger.timeline('default', session)).events.sort((a, b) => a.index - b.index);

  it.skipIf(backend.skip)('refuses a call whose session was revoked between its check and its commit, and ends its trail with tool.failed', async () => {
    const s = await open();
    expect((await decide(nodes[0]!, s.access_token, 0)).body.decision?.effect).toBe('allow');
    revokeAfterCommit.add(s.session_id);
    const late = await decide(nodes[0]!, s.access_token, 1);
    expect(late.status).toBe(401);
    expect(late.body.error?.code).toBe('UNAUTHENTICATED');
    const entries = await log(s.session_id);
    const types = entries.map((e) => e.event.type);
    expect(types.filter((t) => t === 'tool.requested')).toHaveLength(2);
    const failed = entries.find((e) => e.event.type === 'tool.failed');
    expect(failed?.event.data).toMatchObject({ refused: true, error: expect.stringContaining('no longer active') });
    expect(failed?.event.cause).toBe(entries.filter((e) => e.event.type === 'tool.requested')[1]!.event.id);
  });

  it.skipIf(backend.skip)('under a race of decisions on every node: no call is allowed whose decision is after the revocation in the log', async () => {
    let allowed = 0;
    let refusedAfter = 0;
    for (const pause of [0, 1, 2, 3, 5, 8, 12, 20]) {
      const s = await open();
      const inflight = Promise.all(Array.from({ length: 24 }, (_, i) => decide(nodes[i % nodes.length]!, s.access_token, i)));
      await new Promise((r) => setTimeout(r, pause));
      const revoked = await fetch(`${nodes.at(-1)!.url}/v1/sessions/${s.session_id}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: '{}' });
      expect(revoked.status).toBe(200);
      const answers = await inflight;
      // Sent after the revocation answered: every one refused.
      for (const a of await Promise.all(nodes.map((n, i) => decide(n, s.access_token, 100 + i)))) expect(a.status).toBe(401);
      const entries = await log(s.session_id);
      const end = entries.find((e) => e.event.type === 'session.revoked')!;
      expect(end).toBeDefined();
      const byId = new Map(entries.map((e) => [e.event.id, e]));
      for (const a of answers) {
        if (a.status === 200) {
          expect(a.body.decision?.effect).toBe('allow');
          allowed++;
          expect(byId.get(a.body.call!)!.index, 'an allowed call was recorded after the revocation').toBeLessThan(end.index);
        } else {
          expect(a.status).toBe(401);
        }
      }
      // Every call recorded after the revocation was refused, and says so.
      const failedCauses = new Set(entries.filter((e) => e.event.type === 'tool.failed').map((e) => e.event.cause));
      for (const e of entries.filter((x) => x.index > end.index && x.event.type === 'tool.requested')) {
        refusedAfter++;
        expect(failedCauses.has(e.event.id), `call ${e.event.id} recorded after the revocation has no tool.failed`).toBe(true);
      }
    }
    console.log(`decisions racing the kill switch (${backend.name}, ${backend.nodes} node(s)): ${allowed} allowed before it, ${refusedAfter} recorded after it and refused, of 192`);
  });
});
