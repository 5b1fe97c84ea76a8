/**
 * A complete Custody server in-process, listening on a real port: SQLite ledger,
 * the identity authority (two tenants, each with its own human and agent issuer),
 * approvals and a server-side policy set, i.e. every route of the OpenAPI
 * document. Shared by the HTTP fuzz run and the tenant-isolation tests.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Authority, parseTrustConfig, signingKeyFromSeed, SqliteAuthorityStore } from '@custody/authority';
import { createTestIssuer, type TestIssuer } from '@custody/authority/testing';
import { audit, Ledger, SqliteStore } from '@custody/ledger';
import { loadPolicySet, PolicyEngine } from '@custody/policy';
import { Approvals, createApiKey, createServer, SqliteApprovalStore } from '@custody/server';
import type { FastifyInstance } from 'fastify';

export const ROLES = ['ingest', 'read', 'approve', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/** One tenant's principals: API keys of every role and its own token issuers. */
export interface TenantFixture {
  name: string;
  keys: Record<Role, string>;
  humans: TestIssuer;
  agents: TestIssuer;
}

export interface FullServer {
  url: string;
  app: FastifyInstance;
  ledger: Ledger;
  authority: Authority;
  approvals: Approvals;
  tenants: Record<string, TenantFixture>;
  /** Opens a session by token exchange in `tenant`; the credential and session id. */
  openSession(tenant: string, opts?: { human?: string; agent?: string; scope?: string }): Promise<{ token: string; session: string }>;
  /** `custody audit` of every tenant: every entry, node, checkpoint and chain. */
  audit(): Promise<{ ok: boolean; problems: string[] }>;
  /** The tenant's log size. */
  size(tenant: string): Promise<number>;
  close(): Promise<void>;
}

const root = fileURLToPath(new URL('../../', import.meta.url));

/** Starts the server with tenants `names` (default `acme` and `globex`). */
export async function startFullServer(names: readonly string[] = ['acme', 'globex'], opts: { bodyLimit?: number; maxBatch?: number } = {}): Promise<FullServer> {
  const dir = mkdtempSync(join(tmpdir(), 'custody-full-'));
  const path = join(dir, 'ledger.db');
  const ledger = await Ledger.open({ store: new SqliteStore({ path }), logSeed: new Uint8Array(32).fill(11), originHost: 'custody.test' });
  const issuers: Record<string, { humans: TestIssuer; agents: TestIssuer }> = {};
  for (const name of names) {
    issuers[name] = { humans: await createTestIssuer(`https://idp.${name}.test`, 'custody'), agents: await createTestIssuer(`https://agents.${name}.test`, 'custody', 'ES256') };
  }
  const trust = parseTrustConfig({
    humans: names.map((t) => ({ issuer: issuers[t]!.humans.issuer, audience: 'custody', jwks: issuers[t]!.humans.jwks, tenant: t })),
    agents: names.map((t) => ({ issuer: issuers[t]!.agents.issuer, audience: 'custody', jwks: issuers[t]!.agents.jwks, tenant: t })),
  });
  const authority = await Authority.open({ store: new SqliteAuthorityStore({ path }), ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(12)), sweepIntervalMs: 0 });
  const approvalStore = new SqliteApprovalStore({ path });
  await approvalStore.migrate();
  const approvals = new Approvals({ store: approvalStore, ttlSeconds: 120, sweepIntervalMs: 0 }, ledger);
  const policy = new PolicyEngine(loadPolicySet(join(root, 'examples/policies')));
  const app = await createServer({ ledger, authority, approvals, policy, ...(opts.bodyLimit ? { bodyLimit: opts.bodyLimit } : {}), ...(opts.maxBatch ? { maxBatch: opts.maxBatch } : {}) });
  const url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
  authority.setIssuer(url);

  const tenants: Record<string, TenantFixture> = {};
  for (const name of names) {
    const keys = {} as Record<Role, string>;
    // Approve keys are named after the one person who holds them (docs/api.md, "Approvals").
    for (const role of ROLES) keys[role] = (await createApiKey(ledger, { tenant: name, role, name: role === 'approve' ? `approver@${name}.test` : `${role} key` })).key;
    tenants[name] = { name, keys, ...issuers[name]! };
  }

  const server: FullServer = {
    url,
    app,
    ledger,
    authority,
    approvals,
    tenants,
    async openSession(tenant, o = {}) {
      const t = tenants[tenant]!;
      const res = await fetch(`${url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: TOKEN_EXCHANGE,
          subject_token: await t.humans.sign({ sub: o.human ?? `alice@${tenant}.test` }),
          subject_token_type: JWT_TYPE,
          actor_token: await t.agents.sign({ sub: o.agent ?? `agent:${tenant}-bot` }),
          actor_token_type: JWT_TYPE,
          scope: o.scope ?? 'files.read_file payments.transfer',
          objective: `work in ${tenant}`,
        }),
      });
      const body = (await res.json()) as { access_token: string; session_id: string };
      if (res.status !== 200) throw new Error(`token exchange in ${tenant} failed: ${res.status} ${JSON.stringify(body)}`);
      return { token: body.access_token, session: body.session_id };
    },
    async audit() {
      const report = await audit(ledger.store, { verifierKey: (t) => ledger.verifierKey(t) });
      return { ok: report.ok, problems: report.tenants.flatMap((t) => t.problems.map((p) => `${t.tenant}${p.index !== undefined ? `#${p.index}` : ''}: ${p.code} ${p.message}`)) };
    },
    async size(tenant) {
      return (await ledger.store.head(tenant))?.size ?? 0;
    },
    async close() {
      await app.close();
      await approvals.close();
      await authority.close();
      await ledger.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

/** A raw HTTP answer. */
export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * Sends one request with node:http, so that anything can be sent: any method,
 * header, Content-Type and body bytes (fetch normalises too much).
 */
export function rawRequest(url: string, req: { method: string; path: string; headers?: Record<string, string>; body?: string | Uint8Array }, timeoutMs = 30_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const body = req.body === undefined ? undefined : typeof req.body === 'string' ? Buffer.from(req.body, 'utf8') : Buffer.from(req.body);
    const r = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.path,
        headers: { ...(body !== undefined ? { 'content-length': String(body.length) } : {}), ...req.headers },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(new Error(`${req.method} ${req.path.slice(0, 200)}: no answer in ${timeoutMs} ms`)));
    r.on('error', reject);
    r.end(body);
  });
}

/** Identifiers of one tenant's seeded data: something for every kind of path parameter. */
export interface Seeded {
  tenant: string;
  /** A ledger session (events, timeline, bundle) and its events, one with a committed field. */
  session: string;
  events: string[];
  /** An event carrying a committed `data.arguments` (redactable). */
  committedEvent: string;
  /** A principal that appears only in this tenant. */
  principal: string;
  /** A session opened by token exchange, its credential, and a second one to revoke. */
  authoritySession: string;
  credential: string;
  spareSession: string;
  spareCredential: string;
  /** A pending approval (from POST /v1/decisions, policy `transfer-needs-approval`). */
  approval: string;
  hold: string;
  stream: string;
  /** A key that may be revoked (not one of the fixture's keys). */
  spareKey: string;
  /** A trace id imported over OTLP. */
  trace: string;
}

const json = (key: string, body: unknown, method = 'POST'): RequestInit => ({ method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function ok<T>(res: Promise<Response>, what: string): Promise<T> {
  const r = await res;
  const text = await r.text();
  if (r.status >= 300) throw new Error(`seeding ${what}: ${r.status} ${text}`);
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

/** Seeds `tenant` with one of everything, through the API. */
export async function seedTenant(s: FullServer, tenant: string): Promise<Seeded> {
  const { keys } = s.tenants[tenant]!;
  const session = `${tenant}-s1`;
  const principal = `only-in-${tenant}@example.com`;
  const initiator = { type: 'human', id: principal };
  const actor = { type: 'agent', id: `${tenant}-agent` };
  const trace = tenant === 'acme' ? 'a'.repeat(31) + '1' : 'b'.repeat(31) + '2';
  const appended = await ok<{ results: { id: string }[] }>(
    fetch(
      `${s.url}/v1/events`,
      json(keys.ingest, [
        { type: 'session.opened', session: { id: session, objective: `secret objective of ${tenant}` }, initiator, actor, trace: { traceId: trace, spanId: '1'.repeat(16) } },
        { type: 'tool.requested', session: { id: session }, initiator, actor, tool: { name: 'refunds.create' }, data: { arguments: { orderId: `${tenant}-1234` } } },
        { type: 'model.output', session: { id: session }, initiator, actor, data: { output: `${tenant} says hi` } },
      ]),
    ),
    'events',
  );
  const events = appended.results.map((r) => r.id);
  const a = await s.openSession(tenant, { human: principal });
  const b = await s.openSession(tenant);
  const decision = await ok<{ approval?: { id: string } }>(
    fetch(`${s.url}/v1/decisions`, json(a.token, { tool: { server: 'payments', name: 'transfer' }, arguments: { amount: 250000, currency: 'EUR', to: `${tenant}-iban` }, callId: '1' })),
    'decision',
  );
  if (decision.approval === undefined) throw new Error(`seeding ${tenant}: the decision opened no approval: ${JSON.stringify(decision)}`);
  const hold = await ok<{ id: string }>(fetch(`${s.url}/v1/records/holds`, json(keys.admin, { kind: 'session', session, reason: `matter of ${tenant}` })), 'hold');
  const stream = await ok<{ stream: { id: string } }>(fetch(`${s.url}/v1/streams`, json(keys.admin, { name: `${tenant}-siem`, kind: 'webhook', url: 'http://127.0.0.1:9/never', from: 'now' })), 'stream');
  await ok(fetch(`${s.url}/v1/records/retention`, json(keys.admin, { type: 'model.output', days: 3650 }, 'PUT')), 'retention');
  const spare = await ok<{ id: string }>(fetch(`${s.url}/v1/keys`, json(keys.admin, { role: 'read', name: 'spare' })), 'key');
  return {
    tenant,
    session,
    events,
    committedEvent: events[1]!,
    principal,
    authoritySession: a.session,
    credential: a.token,
    spareSession: b.session,
    spareCredential: b.token,
    approval: decision.approval.id,
    hold: hold.id,
    stream: stream.stream.id,
    spareKey: spare.id,
    trace,
  };
}
