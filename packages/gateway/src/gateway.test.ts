/**
 * The gateway end to end, with real components only: the official MCP SDK client
 * talks Streamable HTTP to the gateway, which fronts a real MCP server (written with
 * the SDK, spawned over stdio), decides with real Cedar policies, and records to a
 * real Custody server (Fastify, SQLite ledger, authority, approvals). Each call's
 * trail is exported as a bundle and verified offline.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect as connectTcp, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Authority, parseTrustConfig, signingKeyFromSeed, SqliteAuthorityStore } from '@custody/authority';
import { createTestIssuer, type TestIssuer } from '@custody/authority/testing';
import { decodeEntryBase64, decodeEntry, verifyBundle } from '@custody/core';
import { Ledger, SqliteStore } from '@custody/ledger';
import { Approvals, createApiKey, createServer, SqliteApprovalStore } from '@custody/server';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MCP_ERRORS } from './errors.js';
import { Gateway } from './gateway.js';
import { parseGatewayConfig } from './gateway-config.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const upstream = join(root, 'examples/gateway/upstream-server.mjs');

let dir: string;
let ledger: Ledger;
let authority: Authority;
let approvals: Approvals;
let app: FastifyInstance;
let url: string;
let idp: TestIssuer;
let agents: TestIssuer;
let gateway: Gateway;
let gatewayUrl: string;
const keys: Record<string, string> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-gateway-'));
  const path = join(dir, 'ledger.db');
  ledger = await Ledger.open({ store: new SqliteStore({ path }), logSeed: new Uint8Array(32).fill(3), originHost: 'custody.test' });
  idp = await createTestIssuer('https://idp.test', 'custody');
  agents = await createTestIssuer('https://agents.test', 'custody', 'ES256');
  const trust = parseTrustConfig({
    humans: [{ issuer: idp.issuer, audience: 'custody', jwks: idp.jwks }],
    agents: [{ issuer: agents.issuer, audience: 'custody', jwks: agents.jwks }],
  });
  authority = await Authority.open({ store: new SqliteAuthorityStore({ path }), ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(4)), sweepIntervalMs: 0 });
  const store = new SqliteApprovalStore({ path });
  await store.migrate();
  approvals = new Approvals({ store, ttlSeconds: 60, sweepIntervalMs: 0 }, ledger);
  app = await createServer({ ledger, authority, approvals });
  url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
  authority.setIssuer(url);
  keys['gateway'] = (await createApiKey(ledger, { tenant: 'default', role: 'ingest', name: 'gateway' })).key;
  keys['bob'] = (await createApiKey(ledger, { tenant: 'default', role: 'approve', name: 'bob@example.com' })).key;
  keys['alice'] = (await createApiKey(ledger, { tenant: 'default', role: 'approve', name: 'alice@example.com' })).key;
  keys['admin'] = (await createApiKey(ledger, { tenant: 'default', role: 'admin', name: 'admin' })).key;
  keys['read'] = (await createApiKey(ledger, { tenant: 'default', role: 'read', name: 'reader' })).key;
  gateway = await Gateway.start(
    parseGatewayConfig({
      ledger: { url, apiKey: keys['gateway'] },
      listen: { host: '127.0.0.1', port: 0 },
      policies: join(root, 'examples/policies'),
      upstreams: {
        files: { command: process.execPath, args: [upstream, 'files'] },
        payments: { command: process.execPath, args: [upstream, 'payments'], env: { PAYMENTS_API_KEY: 'sk_test_0123456789abcdefghij' } },
      },
      tools: { 'files.read_file': { capture: 'full' }, 'payments.transfer': { capture: 'full' } },
      approvals: { timeoutSeconds: 30 },
      revocationPollMs: 50,
    }),
  );
  gatewayUrl = await gateway.listen();
});

afterAll(async () => {
  await gateway?.close();
  await app?.close();
  await approvals?.close();
  await authority?.close();
  await ledger?.close();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

async function openSession(scope: string, human = 'alice@example.com', agent = 'agent:refunds', resource?: string): Promise<{ token: string; session: string }> {
  const r = await authority.exchange({
    ...(resource !== undefined ? { resource: [resource] } : {}),
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: await idp.sign({ sub: human }),
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    actor_token: await agents.sign({ sub: agent }),
    actor_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    scope,
    objective: 'refund order 1234',
  });
  return { token: r.access_token, session: r.session_id };
}

async function agentClient(token: string, at = gatewayUrl): Promise<Client> {
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${at}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
  return client;
}

const api = (path: string, key: string, init: RequestInit = {}) =>
  fetch(`${url}${path}`, { ...init, headers: { authorization: `Bearer ${key}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) } });

async function pendingFor(session: string): Promise<{ id: string; context: Record<string, unknown> }> {
  for (let i = 0; i < 100; i++) {
    const r = (await (await api(`/v1/approvals?status=pending&session=${session}`, keys['read']!)).json()) as { approvals: { id: string; context: Record<string, unknown> }[] };
    if (r.approvals.length > 0) return r.approvals[0]!;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error('no pending approval');
}

async function trail(session: string, through = gateway): Promise<string[]> {
  // Outcomes (tool.completed / tool.failed) are recorded once the agent has the result.
  expect(await through.flushOutcomes()).toBe(0);
  const bundle = (await (await api(`/v1/sessions/${session}/bundle`, keys['read']!)).json()) as { records: { entry: string }[] };
  const report = verifyBundle(bundle, { verifierKey: ledger.verifierKey('default') });
  expect(report.ok, JSON.stringify(report)).toBe(true);
  return bundle.records.map((r) => decodeEntry(decodeEntryBase64(r.entry)).type);
}

async function mcpCode(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    if (err instanceof McpError) return (err.data as { code?: string } | undefined)?.code ?? err.code;
    throw err;
  }
  return 'no error';
}

/** What an agent sees of a refused call: the SDK client's McpError. */
async function refusal(p: Promise<unknown>): Promise<{ code: number; message: string; data: Record<string, unknown> }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof McpError) return { code: err.code, message: err.message, data: (err.data ?? {}) as Record<string, unknown> };
    throw err;
  }
  throw new Error('the call was not refused');
}

// The same checks in front of an MCP server Custody did not write: the MCP project's own
// reference filesystem server (@modelcontextprotocol/server-filesystem, from npm), with
// a policy set of its own.
describe('the MCP gateway in front of the reference filesystem server', () => {
  it('lists in-scope tools only, allows, denies and holds a write for approval, and leaves a verifiable trail', async () => {
    const data = mkdtempSync(join(dir, 'fs-data-'));
    writeFileSync(join(data, 'notes.txt'), 'hello from the reference server\n');
    writeFileSync(join(data, 'prod.env'), 'DB_PASSWORD=hunter2\n');
    const policies = mkdtempSync(join(dir, 'fs-policies-'));
    for (const f of ['00-baseline.cedar', 'arguments.cedarschema']) copyFileSync(join(root, 'examples/policies', f), join(policies, f));
    writeFileSync(
      join(policies, '10-fs.cedar'),
      [
        '@id("fs-read")',
        '@reason("agents may read text files")',
        'permit (principal is Agent, action == Action::"tools/call", resource == Tool::"fs.read_text_file");',
        '',
        '@id("fs-no-secrets")',
        '@reason("secrets (.env) are never read")',
        'forbid (principal, action == Action::"tools/call", resource == Tool::"fs.read_text_file")',
        'when { context.arguments has path && context.arguments.path like "*.env" };',
        '',
        '@id("fs-write")',
        '@reason("agents may write files")',
        'permit (principal is Agent, action == Action::"tools/call", resource == Tool::"fs.write_file");',
        '',
        '@id("fs-write-needs-approval")',
        '@approval("required")',
        '@reason("writing a file needs a human\'s approval")',
        'forbid (principal, action == Action::"tools/call", resource == Tool::"fs.write_file");',
        '',
      ].join('\n'),
    );
    const reference = join(root, 'node_modules/@modelcontextprotocol/server-filesystem/dist/index.js');
    const fsGateway = await Gateway.start(
      parseGatewayConfig({
        ledger: { url, apiKey: keys['gateway'] },
        listen: { host: '127.0.0.1', port: 0 },
        policies,
        upstreams: { fs: { command: process.execPath, args: [reference, data] } },
        approvals: { timeoutSeconds: 30 },
      }),
    );
    try {
      const { token, session } = await openSession('fs.read_text_file fs.write_file');
      const client = await agentClient(token, await fsGateway.listen());
      // The reference server offers a dozen tools; the session sees the two in its scope.
      expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(['fs.read_text_file', 'fs.write_file']);

      const read = await client.callTool({ name: 'fs.read_text_file', arguments: { path: join(data, 'notes.txt') } });
      expect(JSON.stringify(read.content)).toContain('hello from the reference server');
      expect(await mcpCode(client.callTool({ name: 'fs.read_text_file', arguments: { path: join(data, 'prod.env') } }))).toBe('POLICY_DENIED');
      // A tool the upstream has but the session's scope does not name.
      expect(await mcpCode(client.callTool({ name: 'fs.list_directory', arguments: { path: data } }))).toBe('POLICY_DENIED');

      const held = client.callTool({ name: 'fs.write_file', arguments: { path: join(data, 'out.txt'), content: 'approved write' } });
      const pending = await pendingFor(session);
      expect(pending.context).toMatchObject({ policies: ['fs-write-needs-approval'], arguments: { content: 'approved write' } });
      expect(existsSync(join(data, 'out.txt'))).toBe(false);
      const granted = await api(`/v1/approvals/${pending.id}`, keys['bob']!, { method: 'POST', body: JSON.stringify({ decision: 'approve' }) });
      expect(granted.status).toBe(200);
      await held;
      expect(readFileSync(join(data, 'out.txt'), 'utf8')).toBe('approved write');
      await client.close();

      const types = await trail(session, fsGateway);
      // Four calls, the approved one decided twice (held, then granted).
      expect(types.filter((t) => t === 'tool.requested')).toHaveLength(5);
      expect(types.filter((t) => t === 'policy.decided')).toHaveLength(5);
      expect(types.filter((t) => t === 'tool.completed')).toHaveLength(2);
      for (const t of ['approval.requested', 'approval.granted']) expect(types).toContain(t);
      const decided = (await (await api(`/v1/events?session=${session}&type=policy.decided&order=asc`, keys['read']!)).json()) as { events: { event: { tool: { name: string }; decision: { effect: string; policies: string[] } } }[] };
      expect(decided.events.map((e) => [e.event.tool.name, e.event.decision.effect])).toEqual([
        ['fs.read_text_file', 'allow'],
        ['fs.read_text_file', 'deny'],
        ['fs.list_directory', 'deny'],
        ['fs.write_file', 'approval_required'],
        ['fs.write_file', 'allow'],
      ]);
      expect(decided.events[1]!.event.decision.policies).toEqual(['fs-no-secrets']);
    } finally {
      await fsGateway.close();
    }
  });
});

describe('the MCP gateway', () => {
  it('publishes Protected Resource Metadata and answers 401 with WWW-Authenticate', async () => {
    const meta = (await (await fetch(`${gatewayUrl}/.well-known/oauth-protected-resource`)).json()) as Record<string, unknown>;
    expect(meta).toMatchObject({ resource: `${gatewayUrl}/mcp`, authorization_servers: [url] });
    const res = await fetch(`${gatewayUrl}/mcp`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('resource_metadata=');
    const bad = await fetch(`${gatewayUrl}/mcp`, { method: 'POST', body: '{}', headers: { authorization: 'Bearer nope' } });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toContain('error="invalid_token"');
  });

  it('lists only in-scope tools, allows, denies and holds for approval as the policy says, leaving a verifiable trail', async () => {
    const { token, session } = await openSession('files.read_file payments.transfer');
    const client = await agentClient(token);
    const names = (await client.listTools()).tools.map((t) => t.name).sort();
    expect(names).toEqual(['files.read_file', 'payments.transfer']);

    const ok = await client.callTool({ name: 'files.read_file', arguments: { path: 'report.txt' } });
    expect(JSON.stringify(ok.content)).toContain('Quarterly refunds');

    expect(await mcpCode(client.callTool({ name: 'files.read_file', arguments: { path: 'prod.env' } }))).toBe('POLICY_DENIED');
    expect(await mcpCode(client.callTool({ name: 'payments.transfer', arguments: { amount: 100, currency: 'USD', to: 'DE02' } }))).toBe('POLICY_DENIED');

    // Above 1,000.00: held until a human answers.
    const held = client.callTool({ name: 'payments.transfer', arguments: { amount: 250_000, currency: 'EUR', to: 'DE89370400440532013000', memo: 'token sk-abcdefghijklmnopqrstuvwxyz' } });
    const pending = await pendingFor(session);
    expect(pending.context).toMatchObject({ initiator: { id: 'alice@example.com' }, agent: { id: 'agent:refunds' }, policies: ['transfer-needs-approval'], arguments: { amount: 250_000, memo: 'token [REDACTED:api-key]' } });

    // Self-approval is refused: the session's credential (the agent), and the initiator.
    const self = await fetch(`${url}/v1/approvals/${pending.id}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ decision: 'approve' }) });
    expect(self.status).toBe(403);
    expect(((await self.json()) as { error: { code: string } }).error.code).toBe('APPROVAL_SELF');
    const initiator = await api(`/v1/approvals/${pending.id}`, keys['alice']!, { method: 'POST', body: JSON.stringify({ decision: 'approve' }) });
    expect(((await initiator.json()) as { error: { code: string } }).error.code).toBe('APPROVAL_SELF');

    const granted = await api(`/v1/approvals/${pending.id}`, keys['bob']!, { method: 'POST', body: JSON.stringify({ decision: 'approve', reason: 'refund confirmed by phone' }) });
    expect(granted.status).toBe(200);
    expect(await granted.json()).toMatchObject({ status: 'granted', approver: { id: 'bob@example.com' } });
    const done = await held;
    expect(JSON.stringify(done.content)).toContain('transferred 2500.00 EUR');
    // One decision: bob repeating his answer gets it back (nothing new recorded); another answer is refused, naming it.
    const again = await api(`/v1/approvals/${pending.id}`, keys['bob']!, { method: 'POST', body: JSON.stringify({ decision: 'approve' }) });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ status: 'granted', approver: { id: 'bob@example.com' }, consumedAt: expect.any(String) });
    const other = await api(`/v1/approvals/${pending.id}`, keys['bob']!, { method: 'POST', body: JSON.stringify({ decision: 'deny' }) });
    expect(other.status).toBe(409);
    expect(((await other.json()) as { error: { message: string } }).error.message).toContain('already granted by bob@example.com');

    // A denied approval: the call fails with APPROVAL_DENIED.
    const denied = client.callTool({ name: 'payments.transfer', arguments: { amount: 300_000, currency: 'EUR', to: 'DE02' } });
    const p2 = await pendingFor(session);
    await api(`/v1/approvals/${p2.id}`, keys['bob']!, { method: 'POST', body: JSON.stringify({ decision: 'deny', reason: 'not this one' }) });
    expect(await mcpCode(denied)).toBe('APPROVAL_DENIED');
    await client.close();

    const types = await trail(session);
    expect(types.filter((t) => t === 'tool.requested')).toHaveLength(6);
    expect(types.filter((t) => t === 'policy.decided')).toHaveLength(6);
    for (const t of ['approval.requested', 'approval.granted', 'approval.denied', 'tool.completed']) expect(types).toContain(t);
    expect(types.filter((t) => t === 'tool.completed')).toHaveLength(2);
    // The upstream's credential is known by reference only, never by value.
    const events = (await (await api(`/v1/events?session=${session}&type=tool.completed`, keys['read']!)).json()) as { events: { event: { data: Record<string, unknown> } }[] };
    expect(JSON.stringify(events)).not.toContain('sk_test_0123456789abcdefghij');
    expect(JSON.stringify(events)).toContain('PAYMENTS_API_KEY');
  });

  it('records a call of a tool that does not exist as a denied call, and answers InvalidParams', async () => {
    const { token, session } = await openSession('files.read_file');
    const client = await agentClient(token);
    const secretName = 'files.sk_live_51HxAbCdEfGhIjKlMnOp';
    for (const name of ['files.delete_everything', 'shell.exec', 'no-dot-at-all', secretName]) {
      expect(await mcpCode(client.callTool({ name, arguments: { path: '/' } }))).toBe(ErrorCode.InvalidParams);
    }
    await client.close();
    expect(await gateway.flushOutcomes()).toBe(0);
    const res = (await (await api(`/v1/events?session=${session}&type=policy.decided`, keys['read']!)).json()) as { events: { event: { tool: { name: string }; decision: { effect: string; reasons: string[] } } }[] };
    const denied = res.events.map((e) => [e.event.tool.name, e.event.decision.effect]).sort();
    expect(denied).toEqual([
      ['files.[REDACTED:stripe-key]', 'deny'],
      ['files.delete_everything', 'deny'],
      ['shell.exec', 'deny'],
      ['unknown.no-dot-at-all', 'deny'],
    ]);
    expect(res.events[0]!.event.decision.reasons[0]).toMatch(/^no tool .+ behind this gateway$/);
    // An agent-chosen name is the agent's text: a secret in it is not stored.
    expect(JSON.stringify(res.events)).not.toContain('sk_live_51HxAbCdEfGhIjKlMnOp');
  });

  it('answers each refusal with the "MCP error <code>:" prefix once and a data.code', async () => {
    const { token, session } = await openSession('files.read_file payments.transfer');
    const client = await agentClient(token);
    const denied = await refusal(client.callTool({ name: 'files.read_file', arguments: { path: 'prod.env' } }));
    expect(denied).toMatchObject({ code: MCP_ERRORS.POLICY_DENIED, data: { code: 'POLICY_DENIED', policies: ['files-no-secrets'] } });
    expect(denied.message).toBe('MCP error -32001: denied by policy: reading secrets (.env, keys) is never allowed');
    const unknown = await refusal(client.callTool({ name: 'files.nope', arguments: {} }));
    expect(unknown.code).toBe(ErrorCode.InvalidParams);
    expect(unknown.message).toBe('MCP error -32602: unknown tool files.nope: call tools/list for the tools this session may use');
    const held = refusal(client.callTool({ name: 'payments.transfer', arguments: { amount: 300_000, currency: 'EUR', to: 'DE02' } }));
    const pending = await pendingFor(session);
    await api(`/v1/approvals/${pending.id}`, keys['bob']!, { method: 'POST', body: JSON.stringify({ decision: 'deny', reason: 'not this one' }) });
    const notApproved = await held;
    expect(notApproved).toMatchObject({ code: MCP_ERRORS.APPROVAL_DENIED, data: { code: 'APPROVAL_DENIED', approval: pending.id, status: 'denied' } });
    expect(notApproved.message).toBe('MCP error -32002: a human denied this call: not this one');
    await client.close();
  });

  it('refuses reading any path with a .ssh segment (examples/policies), and not a near miss', async () => {
    const { token } = await openSession('files.read_file');
    const client = await agentClient(token);
    for (const path of ['.ssh/id_rsa', '/home/a/.ssh/id_rsa', '~/.ssh/config', './.ssh/id_ed25519', 'keys/.ssh']) {
      const r = await refusal(client.callTool({ name: 'files.read_file', arguments: { path } }));
      expect(r, path).toMatchObject({ code: MCP_ERRORS.POLICY_DENIED, data: { code: 'POLICY_DENIED', policies: ['files-no-secrets'] } });
    }
    // Allowed, so it reaches the upstream, which has no such file.
    const near = await client.callTool({ name: 'files.read_file', arguments: { path: 'notes/ssh.txt' } });
    expect(near).toMatchObject({ isError: true, content: [{ type: 'text', text: 'no such file: notes/ssh.txt' }] });
    await client.close();
  });

  it('answers a call cancelled by the gateway shutting down with -32001 CALL_CANCELLED', async () => {
    const closing = await Gateway.start(
      parseGatewayConfig({
        ledger: { url, apiKey: keys['gateway'] },
        listen: { host: '127.0.0.1', port: 0 },
        policies: join(root, 'examples/policies'),
        upstreams: { payments: { command: process.execPath, args: [upstream, 'payments'] } },
        approvals: { timeoutSeconds: 30 },
      }),
    );
    const { token, session } = await openSession('payments.transfer');
    const client = await agentClient(token, await closing.listen());
    try {
      // Without its answer, the SDK client would give up after `timeout` with its own -32001 (no data.code).
      const held = refusal(client.callTool({ name: 'payments.transfer', arguments: { amount: 200_000, currency: 'EUR', to: 'DE02' } }, undefined, { timeout: 10_000 }));
      await pendingFor(session);
      await closing.close();
      const cancelled = await held;
      expect(cancelled).toMatchObject({ code: ErrorCode.RequestTimeout, data: { code: 'CALL_CANCELLED', cancelled: true, reason: 'the gateway is shutting down' } });
      expect(cancelled.message).toBe('MCP error -32001: the call was cancelled: the gateway is shutting down');
      const failed = (await ledger.timeline('default', session)).events.find((e) => e.event.type === 'tool.failed');
      expect(failed?.event.data).toMatchObject({ cancelled: true, error: 'the gateway is shutting down' });
    } finally {
      await client.close().catch(() => undefined);
      await closing.close().catch(() => undefined);
    }
  });

  it('accepts a credential meant for it (resource=<gateway>/mcp) and refuses one meant for another resource server', async () => {
    const mine = await openSession('files.read_file', 'alice@example.com', 'agent:refunds', `${gatewayUrl}/mcp`);
    const client = await agentClient(mine.token);
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['files.read_file']);
    await client.close();
    const other = await openSession('files.read_file', 'alice@example.com', 'agent:refunds', 'https://payments.example/api');
    const res = await fetch(`${gatewayUrl}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${other.token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
  });

  it('a delegated sub-agent cannot widen its scope, and sees only what it was given', async () => {
    const { token } = await openSession('files.read_file payments.transfer');
    await expect(
      authority.exchange({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        actor_token: await agents.sign({ sub: 'agent:sub' }),
        actor_token_type: 'urn:ietf:params:oauth:token-type:jwt',
        scope: 'files.read_file admin.*',
      }),
    ).rejects.toMatchObject({ code: 'SCOPE_WIDENED' });
    const child = await authority.exchange({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      actor_token: await agents.sign({ sub: 'agent:sub' }),
      actor_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      scope: 'files.read_file',
    });
    const client = await agentClient(child.access_token);
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['files.read_file']);
    expect(await mcpCode(client.callTool({ name: 'payments.transfer', arguments: { amount: 100, currency: 'EUR', to: 'DE02' } }))).toBe('POLICY_DENIED');
    await client.close();
  });

  it('revoking the session cancels a held call at once and refuses later ones', async () => {
    const { token, session } = await openSession('files.read_file payments.transfer');
    const client = await agentClient(token);
    const held = refusal(client.callTool({ name: 'payments.transfer', arguments: { amount: 200_000, currency: 'EUR', to: 'DE02' } }));
    await pendingFor(session);
    const started = Date.now();
    const r = await api(`/v1/sessions/${session}/revoke`, keys['admin']!, { method: 'POST', body: JSON.stringify({ reason: 'kill switch test' }) });
    expect(r.status).toBe(200);
    const killed = await held;
    expect(killed).toMatchObject({ code: MCP_ERRORS.SESSION_INACTIVE, data: { code: 'SESSION_INACTIVE', cancelled: true } });
    expect(killed.message).toBe(`MCP error -32003: the call was cancelled: session ${session} was revoked`);
    expect(Date.now() - started).toBeLessThan(2000);
    await expect(client.listTools()).rejects.toThrow();
    const after = await fetch(`${gatewayUrl}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) });
    expect(after.status).toBe(401);
    await client.close().catch(() => undefined);
    // The held approval is expired because its session ended (as the sweeper does every second).
    await approvals.sweep();
    const types = await trail(session);
    expect(types).toContain('session.revoked');
    // After the end: the gateway's cancellation of the held call and the approval's expiry,
    // Custody's bookkeeping, which acted-after-end does not count as the agent acting.
    expect(types.slice(types.indexOf('session.revoked'))).toEqual(expect.arrayContaining(['tool.failed', 'approval.expired']));
    const report = (await (await api('/v1/reports/acted-after-end?limit=1000', keys['read']!)).json()) as { rows: { session: string }[] };
    expect(report.rows.filter((row) => row.session === session)).toEqual([]);
  });

  it('cancels a call in flight once the ledger has been unreachable for revocationGraceMs (fail closed), and records it when the ledger is back', async () => {
    // The gateway reaches the server through a TCP relay that this test cuts.
    const port = Number(new URL(url).port);
    const sockets = new Set<Socket>();
    let relay: NetServer = createNetServer();
    const startRelay = async (at = 0) => {
      relay = createNetServer((c) => {
        const up = connectTcp(port, '127.0.0.1');
        sockets.add(c).add(up);
        c.pipe(up).pipe(c);
        const drop = () => {
          c.destroy();
          up.destroy();
        };
        c.on('error', drop).on('close', drop);
        up.on('error', drop).on('close', drop);
      });
      await new Promise<void>((r) => relay.listen(at, '127.0.0.1', () => r()));
      return (relay.address() as AddressInfo).port;
    };
    const relayPort = await startRelay();
    const cut = async () => {
      await new Promise<void>((r) => {
        relay.close(() => r());
        for (const s of sockets) s.destroy();
        sockets.clear();
      });
    };
    const watched = await Gateway.start(
      parseGatewayConfig({
        ledger: { url: `http://127.0.0.1:${relayPort}`, apiKey: keys['gateway'], timeoutMs: 1000, introspectionCacheMs: 60_000 },
        listen: { host: '127.0.0.1', port: 0 },
        policies: join(root, 'examples/policies'),
        upstreams: { payments: { command: process.execPath, args: [upstream, 'payments'] } },
        approvals: { timeoutSeconds: 30 },
        revocationPollMs: 50,
        revocationGraceMs: 300,
      }),
    );
    const { token, session } = await openSession('payments.transfer');
    const client = await agentClient(token, await watched.listen());
    try {
      const held = refusal(client.callTool({ name: 'payments.transfer', arguments: { amount: 200_000, currency: 'EUR', to: 'DE02' } }));
      await pendingFor(session);
      const started = Date.now();
      await cut();
      const cancelled = await held;
      expect(cancelled).toMatchObject({ code: MCP_ERRORS.LEDGER_UNAVAILABLE, data: { code: 'LEDGER_UNAVAILABLE', cancelled: true } });
      expect(cancelled.message).toMatch(new RegExp(`^MCP error -32004: the call was cancelled: the ledger is unreachable: session ${session} could not be confirmed active`));
      expect(cancelled.message.match(/MCP error/g)).toHaveLength(1);
      expect(Date.now() - started).toBeLessThan(5000);
      // Back: the cancellation's tool.failed is delivered.
      await startRelay(relayPort);
      expect(await watched.flushOutcomes(10_000)).toBe(0);
      const failed = (await ledger.timeline('default', session)).events.find((e) => e.event.type === 'tool.failed');
      expect(failed?.event.data).toMatchObject({ cancelled: true, error: expect.stringContaining('the ledger is unreachable') });
    } finally {
      await client.close().catch(() => undefined);
      await watched.close();
      await cut();
    }
  });

  it('refuses every call when the ledger cannot record the decision (fail closed)', async () => {
    const { token } = await openSession('files.read_file');
    const cached = await Gateway.start(
      parseGatewayConfig({
        ledger: { url, apiKey: keys['gateway'], introspectionCacheMs: 60_000 },
        listen: { host: '127.0.0.1', port: 0 },
        policies: join(root, 'examples/policies'),
        upstreams: { files: { command: process.execPath, args: [upstream, 'files'] } },
      }),
    );
    const base = await cached.listen();
    const client = new Client({ name: 'test-agent', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['files.read_file']);
    // Every earlier call's outcome (recorded in the background) is in before the
    // storage goes away, so that closing the main gateway has nothing left to retry.
    expect(await gateway.flushOutcomes()).toBe(0);
    // The ledger's storage goes away: the decision cannot be made durable.
    await ledger.store.close();
    try {
      expect(await mcpCode(client.callTool({ name: 'files.read_file', arguments: { path: 'report.txt' } }))).toBe('LEDGER_UNAVAILABLE');
    } finally {
      await client.close();
      await cached.close();
    }
    expect(MCP_ERRORS.LEDGER_UNAVAILABLE).toBe(-32004);
  });
});
