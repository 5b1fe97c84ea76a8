/**
 * The records commands (redact, purge, retention, hold, digests, find-value)
 * in-process through main(), against a real server on a port of this process
 * over a SQLite ledger; each result is checked with the offline verifier.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { type EventDraft, verifyBundle } from '@custody/core';
import { Ledger, SqliteStore } from '@custody/ledger';
import { validateOcsf } from '@custody/records';
import { createApiKey, createServer } from '@custody/server';
import type { FastifyInstance } from 'fastify';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { main } from './main.js';
import type { Output } from './output.js';

const dir = mkdtempSync(join(tmpdir(), 'custody-records-cli-'));
let ledger: Ledger;
let app: FastifyInstance;
let url: string;
let admin: string;
let reader: string;
const calls: EventDraft[] = [];

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: Output = { color: false, out: (l = '') => out.push(l), err: (l = '') => err.push(l) };
  const code = await main(['node', 'custody', ...args], io);
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}
const as = (key: string) => ['--url', url, '--api-key', key];

function session(id: string, initiator: string, customer: string): EventDraft[] {
  const who = { initiator: { type: 'human' as const, id: initiator }, actor: { type: 'agent' as const, id: 'agent:refunds' } };
  const t = new Date().toISOString();
  const call: EventDraft = { id: uuidv7(), type: 'tool.requested', time: t, session: { id }, ...who, tool: { name: 'refund' }, data: { arguments: { customerId: customer } } };
  calls.push(call);
  return [
    { id: uuidv7(), type: 'session.opened', time: t, session: { id }, ...who },
    call,
    { id: uuidv7(), type: 'session.closed', time: t, session: { id }, ...who },
  ];
}

const bundleReport = async (id: string) => verifyBundle(await ledger.bundle('default', id), { verifierKey: ledger.verifierKey('default') });

beforeAll(async () => {
  ledger = await Ledger.open({ store: new SqliteStore({ path: join(dir, 'ledger.db') }), logSeed: new Uint8Array(32).fill(6), originHost: 'custody.test' });
  admin = (await createApiKey(ledger, { tenant: 'default', role: 'admin', name: 'admin' })).key;
  reader = (await createApiKey(ledger, { tenant: 'default', role: 'read', name: 'reader' })).key;
  const settled = await ledger.append('default', [...session('s-1', 'ann@example.com', 'c-1'), ...session('s-2', 'bob@example.com', 'c-2'), ...session('s-3', 'bob@example.com', 'c-2')]);
  expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
  app = await createServer({ ledger });
  url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace('[::1]', 'localhost');
});

afterAll(async () => {
  await app?.close();
  await ledger?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('records commands', () => {
  it('custody digests set + find-value find the calls that used a value', async () => {
    expect((await run(['digests', 'set', '/data/arguments/customerId', ...as(admin)])).code).toBe(0);
    const r = await run(['find-value', '/data/arguments/customerId=c-2', ...as(reader), '--json']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').map((l) => (JSON.parse(l) as { event: { id: string } }).event.id)).toEqual([calls[1]!.id, calls[2]!.id]);
    const bad = await run(['find-value', 'customerId', ...as(reader)]);
    expect(bad).toMatchObject({ code: 2 });
    expect(bad.stderr).toContain('MATCH_INVALID');
  });

  it('custody redact drops a field; the bundle still verifies and reports it redacted', async () => {
    const r = await run(['redact', calls[0]!.id!, '--field', '/data/arguments', '--reason', 'GDPR 88', ...as(admin)]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('redacted /data/arguments');
    const rep = await bundleReport('s-1');
    expect(rep.verdict).toBe('complete');
    expect(rep.records[1]!.redacted).toEqual(['/data/arguments']);
    const denied = await run(['redact', calls[0]!.id!, '--field', '/data/arguments', '--reason', 'x', ...as(reader)]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('FORBIDDEN');
    expect((await run(['redact', calls[0]!.id!, '--field', '/data/arguments', ...as(admin)])).stderr).toContain('REASON_REQUIRED');
  });

  it('custody hold blocks custody purge until lifted; custody retention manages the rules', async () => {
    expect((await run(['retention', 'set', '--type', 'tool.*', '--days', '0', ...as(admin)])).code).toBe(0);
    expect((await run(['retention', 'list', ...as(admin)])).stdout).toContain('tool.*');
    const placed = await run(['hold', 'place', '--session', 's-3', '--reason', 'matter 14', '--json', ...as(admin)]);
    expect(placed.code).toBe(0);
    const holdId = (JSON.parse(placed.stdout) as { id: string }).id;
    const dry = await run(['purge', '--dry-run', '--json', ...as(admin)]);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, events: 1, held: 1 });
    expect((await run(['purge', ...as(admin)])).stdout).toContain('purged 1 fields of 1 events');
    expect((await bundleReport('s-2')).records[1]!.redacted).toEqual(['/data/arguments']);
    expect((await bundleReport('s-3')).records[1]!.redacted).toEqual([]);
    expect((await run(['hold', 'list', ...as(admin)])).stdout).toContain('IN FORCE');
    expect((await run(['hold', 'lift', holdId, '--reason', 'closed', ...as(admin)])).code).toBe(0);
    expect((await run(['purge', '--json', ...as(admin)])).stdout).toContain('"events":1');
    const s3 = await bundleReport('s-3');
    expect(s3.verdict).toBe('complete');
    expect(s3.records[1]!.redacted).toEqual(['/data/arguments']);
    expect((await run(['retention', 'delete', '--type', 'tool.*', ...as(admin)])).code).toBe(0);
    expect((await run(['hold', 'place', '--reason', 'x', ...as(admin)])).stderr).toContain('HOLD_TARGET');
  });

  it('custody redact --subject erases every event of a data subject with progress', async () => {
    const r = await run(['redact', '--subject', 'bob@example.com', '--reason', 'erasure 91', ...as(admin)]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('erasing bob@example.com');
    expect(r.stdout).toContain('erased bob@example.com');
  });

  it('custody export --format ocsf|csv|ndjson writes events that validate, and --session still writes a bundle', async () => {
    const ocsf = await run(['export', '--format', 'ocsf', ...as(reader)]);
    expect(ocsf.code).toBe(0);
    const lines = ocsf.stdout.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.length).toBe(3);
    for (const l of lines) expect(validateOcsf(l)).toEqual([]);
    expect(lines[0]).toMatchObject({ class_uid: 6003, actor: { user: { uid: 'ann@example.com' }, app_uid: 'agent:refunds', session: { uid: 's-1' } } });
    expect(ocsf.stderr).toMatch(/exported 3 events as ocsf \(\d+ of types OCSF does not map here left out\)/);
    const csv = await run(['export', '--format', 'csv', '--session', 's-2', ...as(reader)]);
    expect(csv.stdout.split('\n')).toHaveLength(4);
    expect(csv.stdout.split('\n')[0]).toMatch(/^index,id,type/);
    const nd = await run(['export', '--format', 'ndjson', '--type', 'admin.*', '--omit-data', ...as(reader)]);
    const admins = nd.stdout.split('\n').map((l) => JSON.parse(l) as { event: { type: string; data?: unknown } });
    expect(admins.length).toBeGreaterThan(3);
    expect(admins.every((a) => a.event.type.startsWith('admin.') && a.event.data === undefined)).toBe(true);
    const bad = await run(['export', '--format', 'xml', ...as(reader)]);
    expect(bad.stderr).toContain('FORMAT_INVALID');
    const bundle = await run(['export', '--session', 's-1', ...as(reader)]);
    expect(verifyBundle(JSON.parse(bundle.stdout), { verifierKey: ledger.verifierKey('default') }).verdict).toBe('complete');
    expect((await run(['export', ...as(reader)])).stderr).toContain('SESSION_REQUIRED');
  });

  it('custody export --json writes the export to -o and prints a JSON summary; without -o it refuses', async () => {
    const out = join(dir, 's-1.bundle.json');
    const r = await run(['export', '--session', 's-1', '-o', out, '--json', ...as(reader)]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const text = readFileSync(out);
    expect(JSON.parse(r.stdout)).toEqual({ session: 's-1', out, records: 3, redacted: false, bytes: text.length, sha256: createHash('sha256').update(text).digest('hex') });
    expect(verifyBundle(JSON.parse(text.toString('utf8')), { verifierKey: ledger.verifierKey('default') }).verdict).toBe('complete');

    const events = join(dir, 'events.ocsf.ndjson');
    const f = await run(['export', '--format', 'ocsf', '-o', events, '--json', ...as(reader)]);
    expect(f.code).toBe(0);
    expect(f.stderr).toBe('');
    const written = readFileSync(events);
    const summary = JSON.parse(f.stdout) as { format: string; out: string; events: number; skipped: number; bytes: number; sha256: string };
    expect(summary).toMatchObject({ format: 'ocsf', events: written.toString('utf8').trimEnd().split('\n').length, bytes: written.length });
    expect(summary.out).toBe(events);
    expect(summary.sha256).toBe(createHash('sha256').update(written).digest('hex'));

    for (const args of [['--session', 's-1'], ['--session', 's-1', '-o', '-'], ['--format', 'csv']]) {
      const bad = await run(['export', ...args, '--json', ...as(reader)]);
      expect(bad.code).toBe(2);
      expect(bad.stdout).toBe('');
      expect(bad.stderr).toMatch(/-o <file>.*\[OUT_REQUIRED\]$/);
    }
  });
});
