/**
 * Agent-controlled text cannot rewrite what the CLI shows: a session objective, a tool
 * name and an approval reason carrying escape sequences (cursor up, erase line, OSC), CR,
 * a newline, C1 controls, DEL and a bidi override are printed escaped (`\u001b`, `\r`,
 * `\n`, `\u202e`) by `custody approvals`, `timeline`, `sessions`, `search`, `show` and
 * `report`, against a real server (token exchange, POST /v1/decisions, POST /v1/approvals)
 * and the custody process run from the sources; --json still gives the values as they are.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { Authority, parseTrustConfig, signingKeyFromSeed, SqliteAuthorityStore } from '@custody/authority';
import { createTestIssuer, exchangeToken } from '@custody/authority/testing';
import { Ledger, SqliteStore } from '@custody/ledger';
import { loadPolicySet, PolicyEngine } from '@custody/policy';
import { Approvals, createApiKey, createServer, SqliteApprovalStore } from '@custody/server';
import type { FastifyInstance } from 'fastify';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { main } from './main.js';
import { type Output, safeStyled, safeText } from './output.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const bin = fileURLToPath(new URL('./bin.ts', import.meta.url));
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const dir = mkdtempSync(join(tmpdir(), 'custody-terminal-safety-'));

/** What the agent's side writes: moves up, erases the arguments line and writes its own, then a newline, C1 CSI, DEL and a bidi override. */
const OBJECTIVE = 'refund order 1234\u001b[1A\r\u001b[2K  arguments  {"amount":1500,"to":"DE89 (customer refund)"}\u001b[1B\r\u001b[2K\nforged line\u009b2J\u007f \u202egnp.exe';
/**
 * The authority refuses control and bidi characters in an objective at token exchange, but
 * takes tabs and line breaks: enough for a forged line of its own, and the CLI must keep it
 * inside the objective. (OBJECTIVE still reaches the log through ingested events.)
 */
const EXCHANGE_OBJECTIVE = 'refund order 1234\n  arguments  {"amount":1500,"to":"DE89 (customer refund)"}\tbefore Friday';
const REASON = 'looks fine\u001b]0;owned\u0007\r\u001b[2Kgranted by the CFO\u2066';
const TOOL = 'stripe.refund\u001b[8m hidden';

/** Any character a terminal acts on (C0 but newline and tab, DEL, C1) or that reorders text (bidi controls). */
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

let app: FastifyInstance;
let ledger: Ledger;
let authority: Authority;
let approvals: Approvals;
let url: string;
let admin: string;
let approver: string;
let session: string;
let approvalId: string;
let ingested: string;
let ingestedEvent: string;

beforeAll(async () => {
  const path = join(dir, 'ledger.db');
  const idp = await createTestIssuer('https://idp.test', 'custody');
  const agents = await createTestIssuer('https://agents.test', 'custody');
  const trust = parseTrustConfig({ humans: [{ issuer: idp.issuer, audience: 'custody', jwks: idp.jwks }], agents: [{ issuer: agents.issuer, audience: 'custody', jwks: agents.jwks }] });
  ledger = await Ledger.open({ store: new SqliteStore({ path }), logSeed: new Uint8Array(32).fill(5), originHost: 'custody.test' });
  authority = await Authority.open({ store: new SqliteAuthorityStore({ path }), ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(6)), issuer: 'https://custody.test', sweepIntervalMs: 0 });
  const approvalStore = new SqliteApprovalStore({ path });
  await approvalStore.migrate();
  approvals = new Approvals({ store: approvalStore, sweepIntervalMs: 0 }, ledger);
  app = await createServer({ ledger, authority, approvals, policy: new PolicyEngine(loadPolicySet(join(root, 'examples/policies'))) });
  url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
  admin = (await createApiKey(ledger, { tenant: 'default', role: 'admin', name: 'admin' })).key;
  approver = (await createApiKey(ledger, { tenant: 'default', role: 'approve', name: 'bob@example.com' })).key;

  // The agent's side opens a session with its objective, and asks for a transfer held for approval.
  const open = async (objective: string) => exchangeToken(url, { subjectToken: await idp.sign({ sub: 'alice@example.com' }), actorToken: await agents.sign({ sub: 'agent:refunds' }), scope: 'payments.transfer', objective });
  await expect(open(OBJECTIVE)).rejects.toThrow(/answered 400: .*U\+001B at position 17.*EXCHANGE_INVALID/);
  const s = await open(EXCHANGE_OBJECTIVE);
  session = s.session_id;
  const held = await fetch(`${url}/v1/decisions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.access_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tool: { server: 'payments', name: 'transfer' }, arguments: { amount: 4_900_000, currency: 'EUR', to: 'LT12 ATTACKER' } }),
  });
  expect(held.status).toBe(200);
  approvalId = ((await held.json()) as { approval: { id: string } }).approval.id;

  // A log with a tool name of the agent's choosing (as ingested events may carry).
  ingested = `ingested-${uuidv7()}`;
  const call = uuidv7();
  ingestedEvent = uuidv7();
  const who = { session: { id: ingested }, initiator: { type: 'human' as const, id: 'ivy@example.com' }, actor: { type: 'agent' as const, id: 'agent:ingest\u202e' } };
  await ledger.append('default', [
    { id: uuidv7(), type: 'session.opened', time: new Date().toISOString(), ...who, session: { id: ingested, objective: OBJECTIVE } },
    { id: call, type: 'tool.requested', time: new Date().toISOString(), ...who, tool: { name: TOOL }, data: { arguments: { note: OBJECTIVE } } },
    { id: ingestedEvent, type: 'policy.decided', time: new Date().toISOString(), ...who, tool: { name: TOOL }, cause: call, decision: { effect: 'approval_required', policyVersion: 'v1', policies: ['p'], reasons: [REASON] } },
  ]);
});

afterAll(async () => {
  await app?.close();
  await approvals?.close();
  await authority?.close();
  await ledger?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `custody ARGS` from the sources as a child (asynchronously: the server answers from this process). */
function custody(args: string[], key = admin): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { TSX_TSCONFIG_PATH: join(root, 'tsconfig.spec.json') };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CUSTODY_') && k !== 'NO_COLOR' && !(k in env)) env[k] = v;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', tsx, bin, ...args, '--url', url, '--api-key', key], { cwd: root, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs `custody ARGS` in-process with colour on (a terminal's output). */
async function coloured(args: string[]): Promise<string> {
  const out: string[] = [];
  const io: Output = { color: true, out: (l = '') => out.push(l), err: (l = '') => out.push(l) };
  expect(await main(['node', 'custody', ...args, '--url', url, '--api-key', admin], io)).toBe(0);
  return out.join('\n');
}

/** The output holds no raw control or bidi character, and shows the escapes. */
function expectEscaped(text: string, ...shown: string[]): void {
  expect(text).not.toMatch(RAW);
  for (const s of shown) expect(text).toContain(s);
}

describe('agent-controlled text is shown escaped', () => {
  it('approvals show: the forged arguments line stays inside the objective; the real arguments are shown once', { timeout: 60_000 }, async () => {
    const r = await custody(['approvals', 'show', approvalId]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expectEscaped(r.stdout, '\\n  arguments', '\\t');
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines.filter((l) => l.includes('arguments'))).toHaveLength(2);
    expect(lines.find((l) => l.startsWith('  arguments'))).toBe('  arguments  {"amount":4900000,"currency":"EUR","to":"LT12 ATTACKER"}');
    expect(lines.find((l) => l.startsWith('  session'))).toBe(`  session    ${session}: ${safeText(EXCHANGE_OBJECTIVE)}`);
    expect(lines).toHaveLength(7);
    // --json: the values as they are (JSON escapes the C0 controls).
    const json = await custody(['approvals', 'show', approvalId, '--json']);
    expect((JSON.parse(json.stdout) as { context: { session: { objective: string } } }).context.session.objective).toBe(EXCHANGE_OBJECTIVE);
  });

  it('approvals deny with a reason, then list, timeline and sessions show it escaped', { timeout: 60_000 }, async () => {
    const denied = await custody(['approvals', 'deny', approvalId, '--reason', REASON], approver);
    expect(denied).toMatchObject({ code: 0, stderr: '' });
    const list = await custody(['approvals', 'list', '--status', 'all']);
    expect(list.code).toBe(0);
    expectEscaped(list.stdout, approvalId);
    const timeline = await custody(['timeline', session]);
    expect(timeline).toMatchObject({ code: 0, stderr: '' });
    expectEscaped(timeline.stdout, `  objective  ${safeText(EXCHANGE_OBJECTIVE)}`, `reason: ${safeText(REASON)}`, '\\u001b]0;owned\\u0007\\r', '\\u2066');
    const shown = await custody(['sessions', 'show', session]);
    expect(shown.code).toBe(0);
    expectEscaped(shown.stdout, `  objective  ${safeText(EXCHANGE_OBJECTIVE)}`);
    const sessions = await custody(['sessions', 'list']);
    expect(sessions.code).toBe(0);
    expect(sessions.stdout).not.toMatch(RAW);
  });

  it('search, show and report: tool names, actors, reasons and arguments from the log', { timeout: 60_000 }, async () => {
    const search = await custody(['search', '--session', ingested]);
    expect(search).toMatchObject({ code: 0, stderr: '' });
    expectEscaped(search.stdout, 'stripe.refund\\u001b[8m hidden', 'agent:ingest\\u202e', safeText(JSON.stringify(OBJECTIVE)));
    // One line per event, plus the header: the newline in the objective starts none.
    expect(search.stdout.trimEnd().split('\n')).toHaveLength(4);
    const show = await custody(['show', ingestedEvent]);
    expect(show.code).toBe(0);
    expectEscaped(show.stdout, `  reason     ${safeText(REASON)}`, 'stripe.refund\\u001b[8m hidden');
    const call = (await ledger.timeline('default', ingested)).events.find((e) => e.event.type === 'tool.requested')!;
    const showCall = await custody(['show', call.event.id]);
    expectEscaped(showCall.stdout, '\\u202egnp.exe', '\\u009b2J');
    const report = await custody(['report', 'unapproved-calls']);
    expect(report.code).toBe(0);
    expectEscaped(report.stdout, 'stripe.refund\\u001b[8m hidden', 'agent:ingest\\u202e');
  });

  it('with colour on, the CLI styles the escaped values: its own styles are the only escape sequences', { timeout: 60_000 }, async () => {
    for (const args of [['approvals', 'show', approvalId], ['timeline', session], ['search', '--session', ingested], ['report', 'unapproved-calls']]) {
      const text = await coloured(args);
      expect(text).toContain('\u001b[1m');
      // Strip the CLI's own styles: nothing raw is left.
      expect(text.replace(/\u001b\[(?:0|1|2|31|32|33)m/g, '')).not.toMatch(RAW);
      // Keeping them, the net under the renderers finds nothing to escape either.
      for (const line of text.split('\n')) expect(safeStyled(line)).toBe(line);
    }
  });
});
