/**
 * The identity authority end to end, against a real `custody up --dev-issuer`
 * process: `custody dev-tokens` mints the tokens a new user starts with, a token
 * exchange opens a session, delegation narrows it, `custody sessions revoke`
 * kills the whole tree within a second, and the timelines show every step.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { api, custody, type Server, startServer } from './custody-process.js';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';

let dir: string;
let server: Server;
let key: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-e2e-authority-'));
  server = await startServer(['--data', dir, '--dev-issuer']);
  key = readFileSync(join(dir, 'admin.key'), 'utf8').trim();
});
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const token = async (form: Record<string, string>) => {
  const res = await fetch(`${server.url}/oauth/token`, { method: 'POST', body: new URLSearchParams(form) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};
const introspect = async (t: string) =>
  (await (await fetch(`${server.url}/oauth/introspect`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: new URLSearchParams({ token: t }) })).json()) as { active: boolean };
const devTokens = (human: string, agent: string) => {
  const r = custody(['dev-tokens', '--data', dir, '--human', human, '--agent', agent, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { subject_token: string; actor_token: string };
};

describe('custody up --dev-issuer', () => {
  it('marks the dev issuer as development-only and keeps its keys 0600', () => {
    expect(server.output()).toMatch(/DEVELOPMENT ONLY/);
    expect(statSync(join(dir, 'session.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'dev-issuer.key')).mode & 0o777).toBe(0o600);
  });

  it('opens, delegates, revokes the whole tree within a second, and the timeline shows every step', async () => {
    const t = devTokens('alice@example.com', 'agent:refunds');
    const opened = await token({ grant_type: EXCHANGE, subject_token: t.subject_token, subject_token_type: JWT, actor_token: t.actor_token, actor_token_type: JWT, scope: 'refunds:read refunds:create', objective: 'refund order 1234' });
    expect(opened.status, JSON.stringify(opened.body)).toBe(200);
    const root = opened.body as { access_token: string; session_id: string };

    const sub = devTokens('alice@example.com', 'agent:lookup').actor_token;
    const child = await token({ grant_type: EXCHANGE, subject_token: root.access_token, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', actor_token: sub, actor_token_type: JWT, scope: 'refunds:read' });
    expect(child.status, JSON.stringify(child.body)).toBe(200);
    const grandchild = await token({ grant_type: EXCHANGE, subject_token: String(child.body['access_token']), subject_token_type: JWT, actor_token: sub, actor_token_type: JWT, scope: 'refunds:read', requested_lifetime: '60' });
    expect(grandchild.status, JSON.stringify(grandchild.body)).toBe(200);
    const widened = await token({ grant_type: EXCHANGE, subject_token: String(child.body['access_token']), subject_token_type: JWT, actor_token: sub, actor_token_type: JWT, scope: 'refunds:read refunds:create' });
    expect(widened).toMatchObject({ status: 400, body: { error: 'invalid_scope', custody_code: 'SCOPE_WIDENED' } });

    const all = [root.access_token, String(child.body['access_token']), String(grandchild.body['access_token'])];
    for (const a of all) expect((await introspect(a)).active).toBe(true);

    const started = performance.now();
    const revoked = await api(server.url, key, `/v1/sessions/${root.session_id}/revoke`, { method: 'POST', body: JSON.stringify({ reason: 'e2e kill switch' }) });
    expect(revoked.status).toBe(200);
    const body = (await revoked.json()) as { revoked: string[]; recorded: boolean };
    expect(body).toMatchObject({ recorded: true });
    expect(body.revoked).toHaveLength(3);
    for (const a of all) expect((await introspect(a)).active).toBe(false);
    expect(performance.now() - started).toBeLessThan(1000);

    // Replay after revocation is refused and recorded in the session's timeline.
    const replay = await token({ grant_type: EXCHANGE, subject_token: root.access_token, subject_token_type: JWT, actor_token: sub, actor_token_type: JWT, scope: 'refunds:read' });
    expect(replay).toMatchObject({ status: 400, body: { error: 'invalid_request', custody_code: 'TOKEN_INACTIVE' } });

    const timeline = async (id: string) =>
      ((await (await api(server.url, key, `/v1/sessions/${id}/timeline`)).json()) as { events: { event: { type: string } }[] }).events.map((e) => e.event.type);
    expect(await timeline(root.session_id)).toEqual([
      'session.opened',
      'credential.issued',
      'session.delegated',
      'session.revoked',
      'credential.revoked',
      'admin.token_refused',
    ]);
    expect(await timeline(String(child.body['session_id']))).toEqual(['session.delegated', 'credential.issued', 'session.delegated', 'admin.token_refused', 'session.revoked', 'credential.revoked']);
    expect(await timeline(String(grandchild.body['session_id']))).toEqual(['session.delegated', 'credential.issued', 'session.revoked', 'credential.revoked']);

    // The CLI's kill switch on a fresh session.
    const t2 = devTokens('alice@example.com', 'agent:other');
    const other = await token({ grant_type: EXCHANGE, subject_token: t2.subject_token, subject_token_type: JWT, actor_token: t2.actor_token, actor_token_type: JWT, scope: 'x', objective: 'cli revoke' });
    const cli = custody(['sessions', 'revoke', String(other.body['session_id']), '--url', server.url, '--api-key', key, '--reason', 'cli', '--json']);
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ session: other.body['session_id'], revoked: [other.body['session_id']], recorded: true });
    expect((await introspect(String(other.body['access_token']))).active).toBe(false);

    const list = custody(['sessions', 'list', '--url', server.url, '--api-key', key, '--root', root.session_id, '--json']);
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { sessions: { status: string }[] }).sessions.map((s) => s.status)).toEqual(['revoked', 'revoked', 'revoked']);
    const show = custody(['sessions', 'show', root.session_id, '--url', server.url, '--api-key', key]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/revoked/);
    expect(show.stdout).toMatch(/Delegated sessions/);
  });

  it('refuses a token the dev issuer did not sign, and the verifier can export and verify the session', async () => {
    const t = devTokens('bob@example.com', 'agent:x');
    const [h, p] = t.subject_token.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), sub: 'root@example.com' })).toString('base64url')}.${t.subject_token.split('.')[2]}`;
    const r = await token({ grant_type: EXCHANGE, subject_token: forged, subject_token_type: JWT, actor_token: t.actor_token, actor_token_type: JWT, scope: 'x', objective: 'forged' });
    expect(r).toMatchObject({ status: 400, body: { error: 'invalid_request', custody_code: 'TOKEN_SIGNATURE_INVALID' } });

    const ok = await token({ grant_type: EXCHANGE, subject_token: t.subject_token, subject_token_type: JWT, actor_token: t.actor_token, actor_token_type: JWT, scope: 'x', objective: 'seal me' });
    const sid = String(ok.body['session_id']);
    const closed = await fetch(`${server.url}/v1/sessions/${sid}/close`, { method: 'POST', headers: { authorization: `Bearer ${String(ok.body['access_token'])}` } });
    expect(await closed.json()).toMatchObject({ sealed: true });
    const out = join(dir, 'closed.bundle.json');
    expect(custody(['export', '--session', sid, '-o', out, '--url', server.url, '--api-key', key]).code).toBe(0);
    const verified = custody(['verify', out, '--json']);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/complete/);
  });
});
