/**
 * `custody demo --live`: a local Custody server and the MCP gateway in front of the
 * example MCP server (examples/gateway), driven by a scripted agent on the official
 * MCP SDK: an allowed call, a denied one, one a human approves, a sub-agent that
 * cannot widen its scope, and a revocation mid-task. Then each session's evidence is
 * exported and verified offline.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Authority, type AuthorityError, devIssuerTrust, emptyTrustConfig, loadDevIssuerKey, mintDevTokens, SqliteAuthorityStore, signingKeyFromSeed, TOKEN_EXCHANGE_GRANT } from '@custody/authority';
import { verifyBundle } from '@custody/core';
import { Gateway, parseGatewayConfig } from '@custody/gateway';
import { Ledger, SqliteStore } from '@custody/ledger';
import { Approvals, createApiKey, createServer, SqliteApprovalStore } from '@custody/server';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';

import { type Output, paint, safeJson } from '../output.js';
import { bundleSummary, type DemoBundleSummary } from './demo.js';

const EXAMPLES = fileURLToPath(new URL('../../../../examples/', import.meta.url));

/** One step of the live demo's script, as `custody demo --live --json` reports it. */
export interface LiveScenario {
  /** A stable name: tools-listed, allowed, denied, held, self-approval, approved, scope-widening, sub-agent-tools, sub-agent-denied, held-again, revoked, refused-after-revoke. */
  name: string;
  /** The step went as it should (a call that must be denied was denied, …). */
  ok: boolean;
  /** The line the walkthrough prints. */
  detail: string;
  /** What came back: the tool names, the result text, the refusal or error code, the approval id. */
  result: unknown;
}

/** Runs the live demo into `opts.out` (a fresh data folder inside it); with `json`, one JSON summary on stdout. */
export async function runLiveDemo(opts: { out: string; json?: boolean }, io: Output): Promise<number> {
  const dir = join(opts.out, `live-${Date.now()}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const c = io.color;
  const json = opts.json === true;
  const say = (line?: string) => {
    if (!json) io.out(line);
  };
  const scenarios: LiveScenario[] = [];
  const step = (name: string, mark: 'ok' | 'no' | '..', text: string, result: unknown = null) => {
    scenarios.push({ name, ok: mark !== 'no', detail: text, result: result ?? null });
    say(`  ${mark === 'ok' ? paint(c, 'green', '✓') : mark === 'no' ? paint(c, 'red', '✗') : paint(c, 'yellow', '…')} ${text}`);
  };
  const path = join(dir, 'ledger.db');
  const ledger = await Ledger.open({ store: new SqliteStore({ path }), logSeed: crypto.getRandomValues(new Uint8Array(32)), originHost: 'custody.demo' });
  const devKey = loadDevIssuerKey(dir);
  const trust = emptyTrustConfig();
  const dev = devIssuerTrust(devKey);
  trust.humans.push(dev.humans);
  trust.agents.push(dev.agents);
  const authority = await Authority.open({ store: new SqliteAuthorityStore({ path, checkpoints: 'off' }), ledger, trust, signingKey: signingKeyFromSeed(crypto.getRandomValues(new Uint8Array(32))) });
  const approvalStore = new SqliteApprovalStore({ path, checkpoints: 'off' });
  await approvalStore.migrate();
  const approvals = new Approvals({ store: approvalStore, ttlSeconds: 120 }, ledger);
  const app = await createServer({ ledger, authority, approvals });
  const url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
  authority.setIssuer(url);
  const key = async (role: 'ingest' | 'approve' | 'admin' | 'read', name: string) => (await createApiKey(ledger, { tenant: 'default', role, name })).key;
  const keys = { gateway: await key('ingest', 'demo gateway'), bob: await key('approve', 'bob@example.com'), admin: await key('admin', 'demo admin'), read: await key('read', 'demo reader') };
  const gateway = await Gateway.start(
    parseGatewayConfig(
      {
        ledger: { url, apiKey: keys.gateway },
        listen: { host: '127.0.0.1', port: 0 },
        policies: join(EXAMPLES, 'policies'),
        upstreams: {
          files: { command: process.execPath, args: [join(EXAMPLES, 'gateway/upstream-server.mjs'), 'files'] },
          payments: { command: process.execPath, args: [join(EXAMPLES, 'gateway/upstream-server.mjs'), 'payments'], env: { PAYMENTS_API_KEY: 'sk_test_demo_payments_key_0001' } },
        },
        revocationPollMs: 100,
        approvals: { timeoutSeconds: 60 },
      },
      EXAMPLES,
    ),
  );
  const gatewayUrl = await gateway.listen();
  const api = async (p: string, k: string, init: RequestInit = {}) =>
    (await fetch(`${url}${p}`, { ...init, headers: { authorization: `Bearer ${k}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) } })).json() as Promise<Record<string, unknown>>;
  const exchange = async (subject: string, agent: string, scope: string, subjectIsSession = false) => {
    const t = await mintDevTokens(devKey, { human: 'alice@example.com', agent });
    return authority.exchange({
      grant_type: TOKEN_EXCHANGE_GRANT,
      subject_token: subjectIsSession ? subject : t.subject_token,
      subject_token_type: subjectIsSession ? 'urn:ietf:params:oauth:token-type:access_token' : t.subject_token_type,
      actor_token: t.actor_token,
      actor_token_type: t.actor_token_type,
      scope,
      objective: 'refund order 1234 and file the report',
    });
  };
  const connect = async (token: string) => {
    const client = new Client({ name: 'demo-agent', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gatewayUrl}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    return client;
  };
  const refusal = async (p: Promise<unknown>) => {
    try {
      await p;
      return undefined;
    } catch (err) {
      if (err instanceof McpError) return `${(err.data as { code?: string } | undefined)?.code ?? err.code}: ${err.message.replace(/MCP error -?\d+: /g, '')}`;
      return err instanceof Error ? err.message.replace(/^.*?(\{.*\})$/, '$1') : String(err);
    }
  };
  const pending = async (session: string) => {
    for (let i = 0; i < 200; i++) {
      const r = (await api(`/v1/approvals?status=pending&session=${session}`, keys.read)) as { approvals: { id: string }[] };
      if (r.approvals.length > 0) return r.approvals[0]!.id;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error('no approval appeared');
  };

  let failures = 0;
  const sessions: string[] = [];
  const evidence: DemoBundleSummary[] = [];
  try {
    say(paint(c, 'bold', 'Custody demo, live: an agent behind the MCP gateway'));
    say(`  server ${url}; gateway ${gatewayUrl}/mcp; policies examples/policies (${gateway.engine.version.slice(0, 19)}…)`);
    say();
    const root = await exchange('', 'agent:refunds', 'files.read_file payments.transfer');
    sessions.push(root.session_id);
    say(`alice@example.com asked agent:refunds to refund order 1234 (session ${root.session_id}, scope files.read_file payments.transfer)`);
    const agent = await connect(root.access_token);
    const rootTools = (await agent.listTools()).tools.map((t) => t.name);
    step('tools-listed', 'ok', `tools/list shows ${rootTools.join(', ')}`, rootTools);
    const read = await agent.callTool({ name: 'files.read_file', arguments: { path: 'report.txt' } });
    const readText = (read.content as { text: string }[])[0]?.text.trim();
    step('allowed', 'ok', `allowed: files.read_file report.txt → ${JSON.stringify(readText)}`, readText);
    const denied = await refusal(agent.callTool({ name: 'files.read_file', arguments: { path: 'prod.env' } }));
    step('denied', denied !== undefined ? 'ok' : 'no', `denied: files.read_file prod.env → ${denied ?? 'NOT DENIED'}`, denied);
    if (denied === undefined) failures++;
    const held = agent.callTool({ name: 'payments.transfer', arguments: { amount: 250_000, currency: 'EUR', to: 'DE89370400440532013000' } });
    const approvalId = await pending(root.session_id);
    step('held', '..', `held: payments.transfer 2,500.00 EUR needs a human (approval ${approvalId})`, approvalId);
    const self = (await api(`/v1/approvals/${approvalId}`, root.access_token, { method: 'POST', body: JSON.stringify({ decision: 'approve' }) })) as { error?: { code: string } };
    step('self-approval', self.error?.code === 'APPROVAL_SELF' ? 'ok' : 'no', `the agent tries to approve its own call → ${self.error?.code ?? 'ACCEPTED (wrong)'}`, self.error?.code);
    await api(`/v1/approvals/${approvalId}`, keys.bob, { method: 'POST', body: JSON.stringify({ decision: 'approve', reason: 'confirmed with the customer' }) });
    const moved = await held;
    const movedText = (moved.content as { text: string }[])[0]?.text;
    step('approved', 'ok', `bob@example.com approved → ${movedText}`, movedText);

    const t = await mintDevTokens(devKey, { human: 'alice@example.com', agent: 'agent:reports' });
    let widened = 'ALLOWED (wrong)';
    try {
      await authority.exchange({ grant_type: TOKEN_EXCHANGE_GRANT, subject_token: root.access_token, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', actor_token: t.actor_token, actor_token_type: t.actor_token_type, scope: 'files.read_file admin.*' });
    } catch (err) {
      widened = (err as AuthorityError).code;
    }
    step('scope-widening', widened === 'SCOPE_WIDENED' ? 'ok' : 'no', `agent:refunds delegates to agent:reports asking for admin.* too → ${widened}`, widened);
    const child = await exchange(root.access_token, 'agent:reports', 'files.read_file', true);
    sessions.push(child.session_id);
    const sub = await connect(child.access_token);
    const subTools = (await sub.listTools()).tools.map((x) => x.name);
    step('sub-agent-tools', 'ok', `sub-agent (session ${child.session_id}) sees only ${subTools.join(', ')}`, subTools);
    const subDenied = await refusal(sub.callTool({ name: 'payments.transfer', arguments: { amount: 100, currency: 'EUR', to: 'DE02' } }));
    step('sub-agent-denied', subDenied !== undefined ? 'ok' : 'no', `sub-agent tries payments.transfer → ${subDenied ?? 'NOT DENIED'}`, subDenied);
    await sub.close();

    const inflight = refusal(agent.callTool({ name: 'payments.transfer', arguments: { amount: 900_000, currency: 'EUR', to: 'DE44500105175407324931' } }));
    const secondApproval = await pending(root.session_id);
    step('held-again', '..', 'agent:refunds starts another large transfer; it waits for approval…', secondApproval);
    await api(`/v1/sessions/${root.session_id}/revoke`, keys.admin, { method: 'POST', body: JSON.stringify({ reason: 'suspicious transfers' }) });
    const killed = await inflight;
    step('revoked', killed?.startsWith('SESSION_INACTIVE') === true ? 'ok' : 'no', `an admin revokes the session → the held call ends: ${killed ?? 'NOT CANCELLED'}`, killed);
    const later = await refusal(agent.listTools());
    step('refused-after-revoke', later !== undefined ? 'ok' : 'no', `later requests are refused → ${later ?? 'NOT REFUSED'}`, later);
    if (later === undefined) failures++;
    await agent.close().catch(() => undefined);

    // The gateway records outcomes (tool.completed) once the agent has the result.
    await gateway.flushOutcomes();
    say();
    say(paint(c, 'bold', 'Evidence, exported and verified offline'));
    for (const s of sessions) {
      const bundle = await api(`/v1/sessions/${s}/bundle`, keys.read);
      const file = join(dir, `${s}.bundle.json`);
      writeFileSync(file, JSON.stringify(bundle, null, 2) + '\n');
      const report = verifyBundle(bundle, { verifierKey: ledger.verifierKey('default') });
      if (!report.ok) failures++;
      evidence.push(bundleSummary(file, bundle as { session?: string; records: unknown[] }, report));
      const verdict = report.ok ? (report.verdict === 'complete' ? 'complete' : 'intact, not sealed') : 'FAILED';
      say(`  ${paint(c, report.ok ? 'green' : 'red', verdict.padEnd(18))} ${relative(process.cwd(), file) || file} (${(bundle['records'] as unknown[]).length} entries)`);
    }
    writeFileSync(join(dir, 'log.vkey'), ledger.verifierKey('default') + '\n');
    if (json) {
      io.out(
        safeJson(
          {
            ok: failures === 0,
            out: resolve(dir),
            server: url,
            gateway: `${gatewayUrl}/mcp`,
            policyVersion: gateway.engine.version,
            keyFile: resolve(join(dir, 'log.vkey')),
            verifierKey: ledger.verifierKey('default'),
            scenarios,
            sessions: evidence,
          },
          2,
        ),
      );
    }
    say();
    say(paint(c, 'bold', 'Next:'));
    say(`  npx custody verify ${relative(process.cwd(), join(dir, `${sessions[0]}.bundle.json`))} --key "$(cat ${relative(process.cwd(), join(dir, 'log.vkey'))})"`);
    say('  run it yourself: docs/gateway.md and examples/gateway/gateway.json');
  } finally {
    await gateway.close();
    await app.close();
    await approvals.close();
    await authority.close();
    await ledger.close();
  }
  return failures === 0 ? 0 : 1;
}
