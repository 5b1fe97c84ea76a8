/**
 * The investigation commands (search, timeline, show, report) and the connection
 * module against a real server: a SQLite ledger served by createServer on a port
 * of this process. Commands run in-process through main() (with a capturing
 * Output, coloured or not) and, for exit codes and NO_COLOR, as the built bin.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { type EventDraft, signerFromSeed } from '@custody/core';
import { Ledger, SqliteStore } from '@custody/ledger';
import { scenarioDrafts } from '@custody/ledger/testing';
import { createApiKey, createServer } from '@custody/server';
import type { FastifyInstance } from 'fastify';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { resolveConnection } from './connection.js';
import { main } from './main.js';
import type { Output } from './output.js';
import { parseTimeFlag } from './render.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'custody-investigate-'));
let ledger: Ledger;
let app: FastifyInstance;
let url: string;
let key: string;
let adminKey: string;
const ids: Record<string, string> = {};

/** Runs `custody …` in-process. */
async function run(args: string[], opts: { color?: boolean; env?: Record<string, string | undefined> } = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: Output = { color: opts.color ?? false, out: (l = '') => out.push(l), err: (l = '') => err.push(l) };
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    const code = await main(['node', 'custody', ...args], io);
    return { code, stdout: out.join('\n'), stderr: err.join('\n') };
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** Runs the built bin as a child (asynchronously: the server answers from this process). */
function spawnBin(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, CUSTODY_URL: '', CUSTODY_API_KEY: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const conn = () => ['--url', url, '--api-key', key];

beforeAll(async () => {
  ledger = await Ledger.open({ store: new SqliteStore({ path: join(dir, 'ledger.db') }), logSeed: new Uint8Array(32).fill(5), originHost: 'custody.test' });
  key = (await createApiKey(ledger, { tenant: 'default', role: 'read', name: 'investigator' })).key;
  adminKey = (await createApiKey(ledger, { tenant: 'default', role: 'admin', name: 'admin' })).key;
  const now = Date.now();
  const drafts = scenarioDrafts({ sessions: 12, toolCalls: 3, seed: 3, prefix: 'sc', start: new Date(now - 3_600_000) });
  // A session revoked that acts afterwards, with a scoped chain and an out-of-scope call.
  const t = (k: number) => new Date(now - 60_000 + k * 1000).toISOString();
  const who = {
    initiator: { type: 'human' as const, id: 'zoe@example.com', verified: true },
    actor: { type: 'agent' as const, id: 'agent:rogue' },
    chain: [{ principal: { type: 'human' as const, id: 'zoe@example.com' } }, { principal: { type: 'agent' as const, id: 'agent:rogue' }, scope: ['github.*'] }],
  };
  const rogue = (type: EventDraft['type'], k: number, extra: Partial<EventDraft> = {}): EventDraft => ({ id: uuidv7(), type, time: t(k), session: { id: 'rogue-1' }, ...who, ...extra });
  const opened = rogue('session.opened', 0, { session: { id: 'rogue-1', objective: 'fix the build' } });
  const req = rogue('tool.requested', 1, { tool: { name: 'stripe.refund' }, data: { arguments: { amount: 5 } } });
  ids['request'] = req.id;
  const dec = rogue('policy.decided', 2, { tool: { name: 'stripe.refund' }, cause: req.id, decision: { effect: 'approval_required', policyVersion: 'v1', policies: ['refunds-need-approval'], reasons: ['refund over 0'] } });
  ids['decision'] = dec.id;
  const revoked = rogue('session.revoked', 3);
  const late = rogue('tool.completed', 4, { tool: { name: 'stripe.refund' }, cause: req.id, data: { result: { ok: true } } });
  const settled = await ledger.append('default', [...drafts, opened, req, dec, revoked, late]);
  expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
  ids['sealed'] = 'sc-0';
  app = await createServer({ ledger });
  url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace('[::1]', 'localhost');
});

afterAll(async () => {
  await app?.close();
  await ledger?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('custody search', () => {
  it('maps the flags onto GET /v1/events and prints a table, or JSON', async () => {
    const json = await run(['search', ...conn(), '--user', 'zoe@example.com', '--json']);
    expect(json.code).toBe(0);
    const events = (JSON.parse(json.stdout) as { events: { event: { initiator: { id: string }; type: string } }[] }).events;
    expect(events).toHaveLength(5);
    expect(events.every((e) => e.event.initiator.id === 'zoe@example.com')).toBe(true);
    const table = await run(['search', ...conn(), '--agent', 'agent:rogue', '--decision', 'approval_required', '--since', '2h']);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^INDEX\s+TIME\s+TYPE\s+SESSION\s+ACTOR\s+DETAIL$/);
    expect(table.stdout).toContain('policy.decided');
    expect(table.stdout).toContain('approval_required [refunds-need-approval]');
    expect(table.stdout).not.toContain('\u001b[');
  });

  it('follows every page with --all, and names the next cursor otherwise', async () => {
    const all = JSON.parse((await run(['search', ...conn(), '--type', 'tool.*', '--all', '--limit', '7', '--json'])).stdout) as { events: unknown[]; nextCursor?: string };
    const big = JSON.parse((await run(['search', ...conn(), '--type', 'tool.*', '--limit', '1000', '--json'])).stdout) as { events: unknown[] };
    expect(all.events).toEqual(big.events);
    expect(all.nextCursor).toBeUndefined();
    const one = await run(['search', ...conn(), '--type', 'tool.*', '--limit', '2']);
    expect(one.stderr).toMatch(/more events follow: add --cursor \S+/);
  });

  it('refuses bad input with exit 2, naming the flag', async () => {
    for (const [args, code] of [
      [['--since', 'yesterday'], 'TIME_INVALID'],
      [['--decision', 'maybe'], 'DECISION_INVALID'],
      [['--limit', '0'], 'LIMIT_INVALID'],
      [['--type', 'Tool!'], 'TYPE_INVALID'],
    ] as const) {
      const r = await run(['search', ...conn(), ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(`[${code}]`);
      expect(r.stderr).toContain(args[0]);
    }
  });
});

describe('custody timeline', () => {
  it('shows the causal tree with decisions, approvals and the seal', async () => {
    const r = await run(['timeline', ...conn(), 'sc-0']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Session sc-0 {2}sealed/);
    expect(r.stdout).toContain('initiator  human ');
    expect(r.stdout).toMatch(/└─|├─/);
    expect(r.stdout).toContain('policy.decided');
    expect(r.stdout).toContain('policies: policy-');
    expect(r.stdout).toContain('✔ sealed: the seal commits to');
    // A policy decision hangs under its tool request (cause).
    const lines = r.stdout.split('\n');
    const reqLine = lines.findIndex((l) => l.includes('tool.requested'));
    expect(lines[reqLine + 1]).toMatch(/^\s*[│ ]\s*[└├]─ .*policy\.decided/);
  });

  it('shows a revocation and the delegation chain with scope; --json has the tree', async () => {
    const r = await run(['timeline', ...conn(), 'rogue-1'], { color: true });
    expect(r.stdout).toContain('\u001b[31mrevoked\u001b[0m');
    expect(r.stdout).toContain('zoe@example.com → agent:rogue [github.*]');
    expect(r.stdout).toMatch(/revoked at .* by agent:rogue/);
    const json = JSON.parse((await run(['timeline', ...conn(), 'rogue-1', '--json'])).stdout) as { tree: { type: string; children: { type: string }[] }[] };
    expect(json.tree.find((n) => n.type === 'tool.requested')!.children.map((c) => c.type)).toEqual(['policy.decided', 'tool.completed']);
  });

  it('exit 2 for a malformed session id, 1 with the API code for an unknown one', async () => {
    expect((await run(['timeline', ...conn(), 'bad id!'])).code).toBe(2);
    const missing = await run(['timeline', ...conn(), 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('[SESSION_NOT_FOUND]');
  });
});

describe('custody show', () => {
  it('shows an event with its verified receipt and its disclosed fields', async () => {
    const r = await run(['show', ...conn(), ids['request']!]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('tool.requested');
    expect(r.stdout).toMatch(/receipt {4}✔ included at index \d+ in custody.test\/default/);
    expect(r.stdout).toContain('disclosed  /data/arguments');
    expect(r.stderr).toContain('pin the key with --key');
    const json = JSON.parse((await run(['show', ...conn(), ids['request']!, '--json'])).stdout) as { receipt: { ok: boolean }; disclosed: string[]; redacted: string[] };
    expect(json.receipt.ok).toBe(true);
    expect(json.disclosed).toEqual(['/data/arguments']);
    expect(json.redacted).toEqual([]);
  });

  it('fails (exit 1) against a key that is not the log key, and refuses a malformed key or id (exit 2)', async () => {
    const other = signerFromSeed('other.log/x', new Uint8Array(32).fill(3)).verifierText;
    const r = await run(['show', ...conn(), ids['decision']!, '--key', other, '--json']);
    const json = JSON.parse(r.stdout) as { receipt: { ok: boolean; error: { code: string } } };
    expect(r.code).toBe(1);
    expect(json.receipt.ok).toBe(false);
    expect(json.receipt.error.code).toMatch(/KEY_/);
    // A key that is no verifier key (its key ID does not match) is a usage error, not a failed receipt.
    const malformed = await run(['show', ...conn(), ids['decision']!, '--key', 'other.log/x+5f1a6fdf+AQ3mDn7DU+x2iGjTWOzF7uHQ7ulkTJQGwZrJy6AZLwHL', '--json']);
    expect(malformed).toMatchObject({ code: 2, stdout: '', stderr: expect.stringMatching(/^custody: --key is not a verifier key: .+ \[KEY_MALFORMED\]$/) });
    expect((await run(['show', ...conn(), 'not-a-uuid'])).code).toBe(2);
  });
});

describe('custody report', () => {
  it('unapproved-calls: rows link to their sessions; the JSON is the API answer', async () => {
    const json = JSON.parse((await run(['report', 'unapproved-calls', ...conn(), '--all', '--limit', '2', '--json'])).stdout) as {
      rows: { session: string; sessionPath: string; tool: string; ran: boolean; approval: string }[];
    };
    const rogue = json.rows.find((x) => x.session === 'rogue-1')!;
    expect(rogue).toMatchObject({ sessionPath: '/v1/sessions/rogue-1', tool: 'stripe.refund', ran: true, approval: 'none' });
    const human = await run(['report', 'unapproved-calls', ...conn(), '--limit', '1000']);
    expect(human.stdout.split('\n')[0]).toMatch(/^TIME\s+SESSION\s+TOOL\s+APPROVAL\s+RAN\s+ACTOR\s+POLICIES$/);
    expect(human.stdout).toContain('open a session with: custody timeline');
    expect(human.stdout.split('\n').length).toBe(json.rows.length + 2);
  });

  it('acted-after-end, denied-calls, deep-delegation and principal activity', async () => {
    const after = await run(['report', 'acted-after-end', ...conn()]);
    expect(after.stdout).toMatch(/rogue-1\s+session\.revoked\s+.*\s1\s+tool\.completed by agent:rogue/);
    const denied = JSON.parse((await run(['report', 'denied-calls', ...conn(), '--since', '10m', '--json'])).stdout) as { rows: { kind: string; tool: string; scope?: string[] }[] };
    expect(denied.rows).toEqual([expect.objectContaining({ kind: 'out-of-scope', tool: 'stripe.refund', scope: ['github.*'] })]);
    const deep = JSON.parse((await run(['report', 'deep-delegation', ...conn(), '--depth', '1', '--json'])).stdout) as { rows: { depth: number }[] };
    expect(deep.rows.length).toBeGreaterThan(0);
    expect(deep.rows.every((r) => r.depth === 2)).toBe(true);
    const activity = await run(['report', 'principal-activity', ...conn(), '--principal', 'zoe@example.com']);
    expect(activity.stdout).toMatch(/^zoe@example.com: 5 entries/);
    expect(activity.stdout).toMatch(/initiator\s+5/);
    const top = JSON.parse((await run(['report', 'principal-activity', ...conn(), '--json'])).stdout) as { report: string; rows: { lastSessionPath: string }[] };
    expect(top.report).toBe('top-principals');
    expect(top.rows[0]!.lastSessionPath).toMatch(/^\/v1\/sessions\//);
  });

  it('compliance: text, JSON that matches the other reports, and an HTML file with session links', async () => {
    const json = JSON.parse((await run(['report', 'compliance', ...conn(), '--framework', 'owasp-agentic', '--format', 'json'])).stdout) as {
      controls: { id: string; status: string; gaps: { measure: string; count: number; examples: { session: string; bundleSha256?: string }[] }[] }[];
      measures: { gaps: { actedAfterEnd: { count: number } } };
    };
    expect(json.controls.map((c) => c.id)).toEqual(['ASI01', 'ASI02', 'ASI03', 'ASI04', 'ASI05', 'ASI06', 'ASI07', 'ASI08', 'ASI09', 'ASI10']);
    const after = JSON.parse((await run(['report', 'acted-after-end', ...conn(), '--all', '--json'])).stdout) as { rows: unknown[] };
    expect(json.measures.gaps.actedAfterEnd.count).toBe(after.rows.length);
    const asi10 = json.controls.find((c) => c.id === 'ASI10')!;
    expect(asi10.status).toBe('gap');
    expect(asi10.gaps.flatMap((g) => g.examples.map((x) => x.session))).toContain('rogue-1');
    const text = await run(['report', 'compliance', ...conn(), '--framework', 'csf']);
    expect(text.stdout).toMatch(/PR\.AA-05/);
    const file = join(dir, 'asi.html');
    expect((await run(['report', 'compliance', ...conn(), '--framework', 'owasp-agentic', '--format', 'html', '-o', file])).code).toBe(0);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(file, 'utf8')).toMatch(/<a href="http:\/\/127\.0\.0\.1:\d+\/v1\/sessions\/rogue-1">rogue-1<\/a>/);
    expect((await run(['report', 'compliance', ...conn(), '--framework', 'iso'])).code).toBe(2);
    expect((await run(['report', 'denied-calls', ...conn(), '--framework', 'csf'])).code).toBe(2);
  });

  it('refuses unknown reports and misplaced flags with exit 2', async () => {
    const r = await run(['report', 'everything', ...conn()]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('[REPORT_UNKNOWN]');
    expect(r.stderr).toContain('unapproved-calls');
    expect((await run(['report', 'denied-calls', ...conn(), '--depth', '2'])).code).toBe(2);
    expect((await run(['report', 'deep-delegation', ...conn(), '--depth', '-3'])).code).toBe(2);
    expect((await run(['report', 'deep-delegation', ...conn(), '--until', 'soon'])).code).toBe(2);
  });
});

describe('connection', () => {
  const profiles = join(dir, 'profiles.json');
  writeFileSync(profiles, JSON.stringify({ default: { url: 'http://127.0.0.1:1' }, work: { url: 'http://placeholder', apiKeyFile: 'investigator.key' } }));

  it('resolves flags, then a named profile, then the environment, then the default profile, then the data folder', () => {
    writeFileSync(join(dir, 'investigator.key'), 'cust_from_file\n');
    const env = { CUSTODY_CONFIG: profiles, CUSTODY_URL: 'http://env:1', CUSTODY_API_KEY: 'cust_env' };
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      expect(resolveConnection({ url: 'http://flag:2', apiKey: 'cust_flag', profile: 'work' })).toMatchObject({ url: 'http://flag:2', apiKey: 'cust_flag' });
      expect(resolveConnection({ profile: 'work' })).toMatchObject({ url: 'http://placeholder', apiKey: 'cust_from_file', profile: 'work' });
      expect(resolveConnection({})).toMatchObject({ url: 'http://env:1', apiKey: 'cust_env', from: { url: 'CUSTODY_URL' } });
      delete process.env['CUSTODY_URL'];
      expect(resolveConnection({})).toMatchObject({ url: 'http://127.0.0.1:1', apiKey: 'cust_env', profile: 'default' });
      delete process.env['CUSTODY_API_KEY'];
      writeFileSync(join(dir, 'admin.key'), 'cust_local\n');
      expect(resolveConnection({ data: dir })).toMatchObject({ apiKey: 'cust_local' });
      expect(() => resolveConnection({ profile: 'nope' })).toThrow(/no profile nope .*it has default, work/);
      expect(() => resolveConnection({ url: 'ftp://x', apiKey: 'k' })).toThrow(/http/);
    } finally {
      process.env = saved;
    }
  });

  it('the built command reaches the server through a profile (search, export, keys), exit 2 on a missing profile, no colour on a pipe', async () => {
    const file = join(dir, 'live.json');
    writeFileSync(file, JSON.stringify({ default: { url, apiKey: key }, admin: { url, apiKey: adminKey } }));
    const search = await spawnBin(['search', '--session', 'rogue-1'], { CUSTODY_CONFIG: file });
    expect(search.code).toBe(0);
    expect(search.stdout).toContain('session.revoked');
    expect(search.stdout).not.toContain('\u001b[');
    const exported = await spawnBin(['export', '--session', 'rogue-1'], { CUSTODY_CONFIG: file });
    expect(exported.code).toBe(0);
    expect((JSON.parse(exported.stdout) as { records: unknown[] }).records).toHaveLength(5);
    const keys = await spawnBin(['keys', 'list', '--profile', 'admin', '--json'], { CUSTODY_CONFIG: file });
    expect(keys.code).toBe(0);
    expect((JSON.parse(keys.stdout) as { keys: unknown[] }).keys.length).toBeGreaterThanOrEqual(2);
    const missing = await spawnBin(['report', 'acted-after-end', '--profile', 'prod'], { CUSTODY_CONFIG: file });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('[PROFILE_NOT_FOUND]');
    const help = await spawnBin(['report', '--help']);
    expect(help.stdout).toContain('Examples:');
    expect(help.stdout).toContain('--profile');
  });

  it('relative times count back from now', () => {
    const now = Date.parse('2026-11-22T06:00:00Z');
    expect(parseTimeFlag('24h', '--since', now)).toBe('2026-11-21T06:00:00.000Z');
    expect(parseTimeFlag('7d', '--since', now)).toBe('2026-11-15T06:00:00.000Z');
    expect(parseTimeFlag('2026-11-01', '--since', now)).toBe('2026-11-01T00:00:00.000Z');
    expect(parseTimeFlag('2026-11-01T08:00:00+02:00', '--since', now)).toBe('2026-11-01T06:00:00.000Z');
    expect(() => parseTimeFlag('soon', '--until', now)).toThrow(/--until/);
  });
});
