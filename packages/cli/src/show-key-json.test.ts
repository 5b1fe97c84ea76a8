/**
 * The `custody` process, run from the TypeScript sources (tsx) against a real server
 * (a SQLite ledger served by createServer on a port of this process):
 * - `custody show --key` takes the key or a file holding it, as `custody verify --key`
 *   does, and a key that cannot be used is a usage error (exit 2: FILE_UNREADABLE or
 *   KEY_MALFORMED), named before anything is sent, never a failed receipt (exit 1);
 * - every `--json` output writes DEL, the C1 controls, the bidi controls, U+2028/U+2029
 *   and the invisible U+200B, U+2060, U+FEFF as `\uXXXX`, and parses to the same value.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { signerFromSeed } from '@custody/core';
import { Ledger, SqliteStore } from '@custody/ledger';
import { createApiKey, createServer } from '@custody/server';
import type { FastifyInstance } from 'fastify';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { safeJson } from './output.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const bin = fileURLToPath(new URL('./bin.ts', import.meta.url));
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const dir = mkdtempSync(join(tmpdir(), 'custody-show-key-json-'));

/** What JSON.stringify leaves raw that a terminal acts on or shows misleadingly: DEL, C1, bidi controls, separators, invisibles. */
const RISKY = 'a\u007fb\u0080c\u009b2Jd\u061ce\u200bf\u200eg\u200fh\u2028i\u2029j\u202ak\u202egnp.exe\u2060l\u2066m\u2069n\ufeffo';
const RAW = /[\u007f-\u009f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069\ufeff]/;

let ledger: Ledger;
let app: FastifyInstance;
let url: string;
let key: string;
let verifierKey: string;
const session = `risky-${uuidv7()}`;
const ids: Record<'opened' | 'request' | 'loose', string> = { opened: uuidv7(), request: uuidv7(), loose: uuidv7() };

beforeAll(async () => {
  ledger = await Ledger.open({ store: new SqliteStore({ path: join(dir, 'ledger.db') }), logSeed: new Uint8Array(32).fill(7), originHost: 'custody.test' });
  key = (await createApiKey(ledger, { tenant: 'default', role: 'read', name: 'investigator' })).key;
  verifierKey = ledger.verifierKey('default');
  const who = { initiator: { type: 'human' as const, id: 'ivy@example.com' }, actor: { type: 'agent' as const, id: `agent:${RISKY}` } };
  const time = new Date().toISOString();
  const settled = await ledger.append('default', [
    { id: ids.opened, type: 'session.opened', time, ...who, session: { id: session, objective: RISKY } },
    { id: ids.request, type: 'tool.requested', time, ...who, session: { id: session }, tool: { name: `files.${RISKY}` }, data: { arguments: { note: RISKY, [RISKY]: 1 } } },
    { id: ids.loose, type: 'external.span', time, actor: { type: 'service' as const, id: 'otel:collector' }, data: { name: 'GET /report' } },
  ]);
  expect(settled.map((s) => (s.status === 'fulfilled' ? s.status : String(s.reason)))).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
  app = await createServer({ ledger });
  url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
});

afterAll(async () => {
  await app?.close();
  await ledger?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `custody ARGS` from the sources as a child, without the caller's CUSTODY_* settings (asynchronously: the server answers from this process). */
function custody(args: string[], server = url): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { NO_COLOR: '1', TSX_TSCONFIG_PATH: join(root, 'tsconfig.spec.json') };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CUSTODY_') && !(k in env)) env[k] = v;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', tsx, bin, ...args, '--url', server, '--api-key', key], { cwd: root, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The JSON body of GET `path`, as the server sends it. */
async function api(path: string): Promise<unknown> {
  const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${key}` } });
  expect(res.status).toBe(200);
  return res.json();
}

type Shown = { receipt: { ok: boolean; keySource: string; error?: { code: string } } };

describe('custody show --key, as custody verify --key', { timeout: 120_000 }, () => {
  it('takes the key as text or as a file holding it; a genuine key of another log is a failed receipt (exit 1)', async () => {
    const file = join(dir, 'log.vkey');
    writeFileSync(file, `${verifierKey}\n`);
    for (const id of [ids.request, ids.loose]) {
      for (const k of [verifierKey, file]) {
        const r = await custody(['show', id, '--key', k, '--json']);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toBe('');
        expect((JSON.parse(r.stdout) as Shown).receipt).toMatchObject({ ok: true, keySource: 'flag' });
      }
    }
    const other = signerFromSeed('custody.test/default', new Uint8Array(32).fill(3)).verifierText;
    const r = await custody(['show', ids.request, '--key', other, '--json']);
    expect(r.code).toBe(1);
    expect((JSON.parse(r.stdout) as Shown).receipt).toMatchObject({ ok: false, keySource: 'flag' });
  });

  it('a missing or unreadable --key file: FILE_UNREADABLE, exit 2, nothing on standard output', async () => {
    const folder = join(dir, 'a-folder');
    mkdirSync(folder);
    for (const json of [[], ['--json']]) {
      const missing = await custody(['show', ids.request, '--key', '/missing/file', ...json]);
      expect(missing).toEqual({ code: 2, stdout: '', stderr: 'custody: cannot read the key file /missing/file (--key): no such file [FILE_UNREADABLE]\n' });
      const isDir = await custody(['show', ids.request, '--key', folder, ...json]);
      expect(isDir).toEqual({ code: 2, stdout: '', stderr: `custody: cannot read the key file ${folder} (--key): EISDIR [FILE_UNREADABLE]\n` });
    }
  });

  it('a --key that is no verifier key (file or text, or empty): KEY_MALFORMED, exit 2, never the server\'s key', async () => {
    const seedFile = join(dir, 'seed.key');
    writeFileSync(seedFile, 'custody-log-seed-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n');
    const emptyFile = join(dir, 'empty.vkey');
    writeFileSync(emptyFile, '\n');
    const cases: [string, RegExp][] = [
      [seedFile, new RegExp(`^custody: the key file ${seedFile} \\(--key\\) does not hold a verifier key: .+ \\[KEY_MALFORMED\\]$`)],
      [emptyFile, new RegExp(`^custody: the key file ${emptyFile} \\(--key\\) is empty; it should hold the log's verifier key \\[KEY_MALFORMED\\]$`)],
      [verifierKey.slice(0, -4), /^custody: --key is not a verifier key: .+ \[KEY_MALFORMED\]$/],
      [verifierKey.replace(/\+[0-9a-f]{8}\+/, '+00000000+'), /^custody: --key is not a verifier key: verifier key ID does not match its key \[KEY_MALFORMED\]$/],
      ['', /^custody: --key is empty: .+ \[KEY_MALFORMED\]$/],
    ];
    for (const [k, message] of cases) {
      const r = await custody(['show', ids.request, '--key', k, '--json']);
      expect(r.code, k).toBe(2);
      expect(r.stdout, k).toBe('');
      expect(r.stderr.trim(), k).toMatch(message);
    }
  });

  it('the key is checked before anything is sent: a bad --key against a server out of reach is still KEY_MALFORMED', async () => {
    const r = await custody(['show', ids.request, '--key', 'not-a-key+1234'], 'http://127.0.0.1:1');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\[KEY_MALFORMED\]\n$/);
    // A good key still gets as far as the server.
    expect((await custody(['show', ids.request, '--key', verifierKey], 'http://127.0.0.1:1')).stderr).toMatch(/\[SERVER_UNREACHABLE\]\n$/);
  });
});

describe('--json escapes DEL, C1, bidi and invisible characters', { timeout: 120_000 }, () => {
  it('safeJson: no raw risky character, the same value parsed, and JSON.stringify\'s text when there is none', () => {
    const value = { [RISKY]: [RISKY, { nested: `x${RISKY}` }], plain: 'tab\there, newline\nthere, é ü 日本 😀', n: 1, nil: null };
    for (const space of [undefined, 2]) {
      const text = safeJson(value, space);
      expect(text).not.toMatch(RAW);
      expect(text).toContain('\\u202e');
      expect(JSON.parse(text)).toEqual(value);
      expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value, null, space)));
      const plain = { plain: value.plain, n: 1 };
      expect(safeJson(plain, space)).toBe(JSON.stringify(plain, null, space));
    }
  });

  it('custody show, search and timeline --json: escaped on standard output, the server\'s values once parsed', async () => {
    const show = await custody(['show', ids.request, '--json']);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).not.toMatch(RAW);
    expect(show.stdout).toContain('\\u202egnp.exe');
    const shown = JSON.parse(show.stdout) as { event: unknown; receipt: { ok: boolean } };
    expect(shown.receipt.ok).toBe(true);
    expect(shown.event).toEqual(await api(`/v1/events/${ids.request}`));

    const search = await custody(['search', '--session', session, '--json']);
    expect(search.code, search.stderr).toBe(0);
    expect(search.stdout).not.toMatch(RAW);
    expect(search.stdout).toContain('\\u009b2J');
    expect((JSON.parse(search.stdout) as { events: unknown[] }).events).toEqual(((await api(`/v1/events?session=${session}`)) as { events: unknown[] }).events);

    const timeline = await custody(['timeline', session, '--json']);
    expect(timeline.code, timeline.stderr).toBe(0);
    expect(timeline.stdout).not.toMatch(RAW);
    expect(timeline.stdout).toContain('\\u2066');
    const events = (JSON.parse(timeline.stdout) as { events: { event: { session?: { objective?: string }; data?: { arguments: Record<string, unknown> } } }[] }).events;
    expect(events.map((e) => e.event.session?.objective ?? e.event.data?.arguments['note'])).toEqual([RISKY, RISKY]);
    expect(events[1]?.event.data?.arguments[RISKY]).toBe(1);
  });
});
