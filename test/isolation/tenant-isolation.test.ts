/**
 * Tenant isolation (issue 9, adversarial input): two tenants, each with keys of
 * every role, a session opened by token exchange, a pending approval, a legal
 * hold, a stream, a retention rule and events. No key of tenant A (nor A's
 * session credential) reads, writes, approves, revokes, redacts, holds or lifts
 * anything of tenant B, and B's data never appears in A's answers.
 *
 * Driven by the OpenAPI document: every operation with a path parameter is
 * called by every principal of A with B's ids, and every read is called by every
 * principal of A with each query filter aimed at B's data, so a new route is
 * covered as soon as it is documented.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type FullServer, JWT_TYPE, rawRequest, type RawResponse, ROLES, type Seeded, seedTenant, startFullServer, TOKEN_EXCHANGE } from '../fuzz/full-server.js';

interface Operation {
  method: string;
  path: string;
  parameters?: { in: string; name: string }[];
}

let server: FullServer;
let a: Seeded;
let b: Seeded;
let operations: Operation[];
/** B's log size, and what B sees of its own state, before A's attempts. */
let before: { size: number; state: Record<string, string> };

/** Strings that only B's data holds. */
function markers(s: Seeded): string[] {
  return [s.session, s.principal, `${s.tenant}-agent`, s.approval, s.hold, s.stream, s.spareKey, s.authoritySession, s.spareSession, s.trace, `${s.tenant}-iban`, `secret objective of ${s.tenant}`, `${s.tenant}-1234`, `custody.test/${s.tenant}`, ...s.events];
}

/** A's principals: its keys of every role and its session credential. */
function principalsOf(s: Seeded): [string, string][] {
  return [...ROLES.map((role): [string, string] => [`${s.tenant} ${role} key`, server.tenants[s.tenant]!.keys[role]]), [`${s.tenant} session credential`, s.credential]];
}

/** B's id for each path parameter of `path`. */
function idsOf(path: string, s: Seeded): string[] {
  if (path.startsWith('/v1/events/')) return [s.committedEvent];
  if (path.startsWith('/v1/sessions/') && /revoke|close/.test(path)) return [s.spareSession, s.authoritySession];
  if (path.startsWith('/v1/sessions/')) return [s.session];
  if (path.startsWith('/v1/authority/sessions/')) return [s.authoritySession];
  if (path.startsWith('/v1/principals/')) return [s.principal];
  if (path.startsWith('/v1/approvals/')) return [s.approval];
  if (path.startsWith('/v1/records/holds/')) return [s.hold];
  if (path.startsWith('/v1/streams/')) return [s.stream];
  if (path.startsWith('/v1/keys/')) return [s.spareKey];
  if (path.startsWith('/v1/import/')) return [s.tenant];
  return [s.tenant];
}

/** Query filters aimed at B's data, by parameter name. */
function filtersOf(s: Seeded): Record<string, string> {
  return {
    session: s.session,
    initiator: s.principal,
    principal: s.principal,
    approver: `approver@${s.tenant}.test`,
    agent: `${s.tenant}-agent`,
    trace: s.trace,
    objective: `secret objective of ${s.tenant}`,
    root: s.authoritySession,
    path: '/data/arguments/orderId',
    value: `${s.tenant}-1234`,
    from: '1',
    index: '0',
    size: '1',
  };
}

/** A body for a write: one the route accepts when aimed at the caller's own data. */
function bodyOf(op: Operation): unknown {
  switch (`${op.method} ${op.path}`) {
    case 'POST /v1/events/{id}/redact':
      return { fields: ['/data/arguments'], reason: 'isolation' };
    case 'POST /v1/approvals/{id}':
      return { decision: 'approve', reason: 'isolation' };
    case 'POST /v1/sessions/{id}/revoke':
    case 'POST /v1/sessions/{id}/close':
    case 'POST /v1/records/holds/{id}/lift':
      return { reason: 'isolation' };
    case 'POST /v1/import/{source}':
      return [];
    default:
      return op.method === 'GET' || op.method === 'DELETE' ? undefined : {};
  }
}

async function call(method: string, path: string, bearer: string | undefined, body?: unknown, type = 'application/json'): Promise<RawResponse> {
  const headers: Record<string, string> = {};
  if (bearer !== undefined) headers['authorization'] = `Bearer ${bearer}`;
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  if (payload !== undefined) headers['content-type'] = type;
  return rawRequest(server.url, { method, path, headers, ...(payload !== undefined ? { body: payload } : {}) });
}

/** What B itself sees of the things A must not touch. */
async function stateOf(s: Seeded): Promise<Record<string, string>> {
  const k = server.tenants[s.tenant]!.keys;
  const get = async (path: string, key = k.admin) => {
    const r = await call('GET', path, key);
    return `${r.status} ${r.body}`;
  };
  const event = JSON.parse((await call('GET', `/v1/events/${s.committedEvent}`, k.read)).body) as { redacted: string[] };
  return {
    approval: (await get(`/v1/approvals/${s.approval}/status`)).replace(/"expiresAt":"[^"]*"/, ''),
    holds: await get('/v1/records/holds'),
    stream: (await get(`/v1/streams/${s.stream}`)).replace(/"lag":\d+/, ''),
    keys: await get('/v1/keys'),
    session: (await get(`/v1/authority/sessions/${s.authoritySession}`)).slice(0, 400),
    spare: (await get(`/v1/authority/sessions/${s.spareSession}`)).slice(0, 400),
    ledgerSession: await get(`/v1/sessions/${s.session}`),
    redacted: JSON.stringify(event.redacted),
    retention: await get('/v1/records/retention'),
    digestPaths: await get('/v1/records/digest-paths'),
    introspect: String((JSON.parse((await call('POST', '/oauth/introspect', k.read, `token=${s.credential}`, 'application/x-www-form-urlencoded')).body) as { active: boolean }).active),
  };
}

beforeAll(async () => {
  server = await startFullServer(['acme', 'globex']);
  a = await seedTenant(server, 'acme');
  b = await seedTenant(server, 'globex');
  const doc = (await (await fetch(`${server.url}/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, Omit<Operation, 'method' | 'path'>>> };
  operations = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ ...op, method: method.toUpperCase(), path })));
  before = { size: await server.size('globex'), state: await stateOf(b) };
}, 120_000);

afterAll(async () => {
  await server?.close();
});

describe('tenant isolation', () => {
  it('B is seeded and visible to B itself', () => {
    expect(before.state['approval']).toMatch(/^200 .*"status":"pending"/);
    expect(before.state['introspect']).toBe('true');
    expect(before.state['redacted']).toBe('[]');
    expect(before.state['holds']).toContain(b.hold);
  });

  it("no principal of A reaches B's ids through any operation with a path parameter", async () => {
    const leaks: string[] = [];
    const withParams = operations.filter((op) => op.path.includes('{'));
    expect(withParams.length).toBeGreaterThanOrEqual(15);
    for (const op of withParams) {
      for (const id of idsOf(op.path, b)) {
        const path = op.path.replace(/\{[A-Za-z0-9_]+\}/g, encodeURIComponent(id));
        for (const [who, bearer] of principalsOf(a)) {
          const res = await call(op.method, path, bearer, bodyOf(op));
          if (res.status >= 500) leaks.push(`${who}: ${op.method} ${path} → ${res.status} ${res.body.slice(0, 200)}`);
          if (res.status >= 200 && res.status < 300) {
            const found = markers(b).filter((m) => res.body.includes(m));
            // A principal id is not secret: A may ask about it, and must get A's (empty) view.
            if (found.length > 0 || op.method !== 'GET') leaks.push(`${who}: ${op.method} ${path} → ${res.status} ${found.length > 0 ? `shows ${found.join(', ')}` : 'succeeded'}: ${res.body.slice(0, 200)}`);
          }
        }
      }
    }
    expect(leaks).toEqual([]);
  });

  it("no read by a principal of A shows B's data, whatever filter names it", async () => {
    const leaks: string[] = [];
    const filters = filtersOf(b);
    const reads = operations.filter((op) => op.method === 'GET' && !op.path.includes('{'));
    expect(reads.length).toBeGreaterThanOrEqual(20);
    for (const op of reads) {
      const names = (op.parameters ?? []).filter((p) => p.in === 'query' && filters[p.name] !== undefined).map((p) => p.name);
      for (const query of ['', ...names.map((n) => `?${n}=${encodeURIComponent(filters[n]!)}`)]) {
        for (const [who, bearer] of principalsOf(a)) {
          const res = await call('GET', `${op.path}${query}`, bearer);
          if (res.status >= 500) leaks.push(`${who}: GET ${op.path}${query} → ${res.status}`);
          if (res.status >= 200 && res.status < 300) {
            // A report may echo the filter it was asked (`"principal":"<id>"`): that is A's own input.
            const name = query.slice(1).split('=')[0]!;
            const body = name === '' ? res.body : res.body.split(`"${name}":${JSON.stringify(filters[name])}`).join('');
            const found = markers(b).filter((m) => body.includes(m));
            if (found.length > 0) leaks.push(`${who}: GET ${op.path}${query} shows ${found.join(', ')}: ${body.slice(0, 300)}`);
          }
        }
      }
    }
    expect(leaks).toEqual([]);
  });

  it('A cannot write into B: events naming B, decisions and introspection with B’s credential, token exchange across tenants, holds on B', async () => {
    const k = server.tenants['acme']!.keys;
    const other = server.tenants['globex']!;
    const human = { type: 'human', id: 'x@acme.test' };
    const agent = { type: 'agent', id: 'acme-bot' };
    // An event that names B's tenant is refused; one naming B's session id lands in A's own log.
    const named = await call('POST', '/v1/events', k.ingest, { type: 'session.opened', tenant: 'globex', session: { id: 'iso-1' }, initiator: human, actor: agent });
    expect(named.status).toBe(400);
    expect(JSON.parse(named.body).error.code).toBe('TENANT_MISMATCH');
    const same = await call('POST', '/v1/events', k.admin, [{ type: 'model.output', session: { id: b.session }, initiator: human, actor: agent }]);
    expect(same.status).toBe(201);
    const ndjson = await call('POST', '/v1/events', k.ingest, `${JSON.stringify({ type: 'session.opened', tenant: 'globex', session: { id: 'iso-2' }, initiator: human, actor: agent })}\n`, 'application/x-ndjson');
    expect(ndjson.status).toBe(400);
    // OTLP spans carrying B's session id are A's entries.
    const traces = await call('POST', '/v1/traces', k.ingest, { resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: b.trace, spanId: '2'.repeat(16), name: 'x', attributes: [{ key: 'gen_ai.operation.name', value: { stringValue: 'chat' } }, { key: 'custody.session.id', value: { stringValue: b.session } }] }] }] }] });
    expect(traces.status).toBe(200);
    // B's session credential is refused to A's enforcement point, and inactive to A's introspection.
    for (const key of [k.ingest, k.admin]) {
      const d = await call('POST', '/v1/decisions', key, { credential: b.credential, tool: { server: 'files', name: 'read_file' }, arguments: {} });
      expect(d.status, d.body).toBe(403);
      expect(JSON.parse(d.body).error.code).toBe('CREDENTIAL_INVALID');
    }
    for (const key of Object.values(k)) {
      const i = await call('POST', '/oauth/introspect', key, `token=${encodeURIComponent(b.credential)}`, 'application/x-www-form-urlencoded');
      expect(JSON.parse(i.body), i.body).toEqual({ active: false });
    }
    // A's credential cannot decide with B's approval, nor approve B's approval.
    const withApproval = await call('POST', '/v1/decisions', a.credential, { tool: { server: 'payments', name: 'transfer' }, arguments: { amount: 250000, currency: 'EUR', to: 'globex-iban' }, approval: b.approval });
    expect(withApproval.status).toBeGreaterThanOrEqual(400);
    // Token exchange: a human of A with an agent of B (and the reverse), and delegation of B's session by A's agent.
    const exchange = async (subject: string, actor: string) =>
      call(
        'POST',
        '/oauth/token',
        undefined,
        new URLSearchParams({ grant_type: TOKEN_EXCHANGE, subject_token: subject, subject_token_type: JWT_TYPE, actor_token: actor, actor_token_type: JWT_TYPE, scope: 'files.read_file', objective: 'cross' }).toString(),
        'application/x-www-form-urlencoded',
      );
    const acmeT = server.tenants['acme']!;
    for (const [subject, actor] of [
      [await acmeT.humans.sign({ sub: 'x@acme.test' }), await other.agents.sign({ sub: 'agent:globex-bot' })],
      [await other.humans.sign({ sub: 'y@globex.test' }), await acmeT.agents.sign({ sub: 'agent:acme-bot' })],
      [b.credential, await acmeT.agents.sign({ sub: 'agent:acme-sub' })],
    ] as const) {
      const r = await exchange(subject, actor);
      expect(r.status, r.body).toBe(400);
      expect(JSON.parse(r.body).custody_code).toBe('TENANT_MISMATCH');
    }
    // A hold, retention rule or digest path set by A is A's own.
    expect((await call('POST', '/v1/records/holds', k.admin, { kind: 'session', session: b.session, reason: 'iso' })).status).toBe(201);
    expect((await call('PUT', '/v1/records/retention', k.admin, { type: 'model.output', days: 1 })).status).toBe(200);
    expect((await call('PUT', '/v1/records/digest-paths', k.admin, { paths: ['/data/arguments/orderId'] })).status).toBe(200);
    expect((await call('POST', '/v1/records/purge', k.admin, {})).status).toBe(200);
    expect((await call('POST', '/v1/records/erasures', k.admin, { subject: b.principal, reason: 'iso' })).status).toBe(200);
    // API keys of B do not authenticate against… anything but B: A's admin cannot list them.
    const keys = await call('GET', '/v1/keys', k.admin);
    expect(keys.body).not.toContain(b.spareKey);
  });

  it("B's state and log are exactly as before A's attempts, and every log verifies", async () => {
    // The only entries B's log gained are the records of the refused token exchanges that
    // presented B's own tokens (docs/errors.md: every refused exchange is recorded).
    const size = await server.size('globex');
    const added = JSON.parse((await call('GET', `/v1/events?order=desc&limit=${Math.max(1, size - before.size)}`, server.tenants['globex']!.keys.read)).body) as { events: { index: number; event: { type: string } }[] };
    const fresh = added.events.filter((e) => e.index >= before.size);
    expect(fresh.length).toBe(size - before.size);
    expect(fresh.map((e) => e.event.type).filter((t) => t !== 'admin.token_refused')).toEqual([]);
    expect(await stateOf(b)).toEqual(before.state);
    const report = await server.audit();
    expect(report.problems).toEqual([]);
  });
});
