/**
 * The records routes over HTTP (inject, real SQLite): redaction after sealing with
 * bundles before and after verified by @custody/core and, when Go is installed,
 * by the independent Go verifier; roles; holds blocking a purge; value search.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { type Bundle, verifyBundle } from '@custody/core';
import { Ledger, SqliteStore } from '@custody/ledger';
import type { FastifyInstance } from 'fastify';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createApiKey } from '../api-keys.js';
import { createServer } from '../server.js';

const repoRoot = fileURLToPath(new URL('../../../..', import.meta.url));
const goEnv = { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode' };
const hasGo = spawnSync('go', ['version'], { env: goEnv, encoding: 'utf8' }).status === 0;

let dir: string;
let ledger: Ledger;
let app: FastifyInstance;
const keys: Record<string, string> = {};
let redactedBundles: { before: Bundle; after: Bundle; vkey: string } | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-records-routes-'));
  ledger = await Ledger.open({ store: new SqliteStore({ path: join(dir, 'ledger.db') }), logSeed: new Uint8Array(32).fill(3), originHost: 'custody.test' });
  app = await createServer({ ledger });
  for (const role of ['ingest', 'read', 'admin'] as const) keys[role] = (await createApiKey(ledger, { tenant: 'acme', role, name: role })).key;
});
afterAll(async () => {
  await app.close();
  await ledger.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = async (method: string, url: string, key: string | undefined, body?: unknown) => {
  const res = await app.inject({
    method: method as 'GET',
    url,
    headers: { ...(key ? { authorization: `Bearer ${keys[key]}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
  return { status: res.statusCode, body: res.body === '' ? undefined : res.json() };
};

function events(session: string, initiator: string, customer: string) {
  const who = { initiator: { type: 'human', id: initiator }, actor: { type: 'agent', id: 'agent:refunds' } };
  const t = new Date().toISOString();
  return [
    { id: uuidv7(), type: 'session.opened', time: t, session: { id: session }, ...who },
    { id: uuidv7(), type: 'tool.requested', time: t, session: { id: session }, ...who, tool: { name: 'refund' }, data: { arguments: { customerId: customer }, prompt: `refund ${customer}` } },
    { id: uuidv7(), type: 'session.closed', time: t, session: { id: session }, ...who },
  ];
}

function goVerify(bundle: Bundle, key: string): { status: number | null; output: string } {
  const file = join(dir, `${uuidv7()}.json`);
  writeFileSync(file, JSON.stringify(bundle));
  const r = spawnSync('go', ['run', './test/interop/go', 'bundle', file, key], { cwd: repoRoot, env: goEnv, encoding: 'utf8', timeout: 180_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe('records routes', () => {
  it('redacts a field of a sealed session: before and after bundles verify, the later reports it redacted', async () => {
    const evs = events('s-1', 'ann@example.com', 'c-1042');
    expect((await call('POST', '/v1/events', 'ingest', evs)).status).toBe(201);
    const before = (await call('GET', '/v1/sessions/s-1/bundle', 'read')).body as Bundle;
    const vkey = ledger.verifierKey('acme');

    expect((await call('POST', `/v1/events/${evs[1]!.id}/redact`, 'read', { fields: ['/data/arguments'], reason: 'x' })).status).toBe(403);
    expect((await call('POST', `/v1/events/${evs[1]!.id}/redact`, 'admin', { fields: ['/data/arguments/customerId'], reason: 'x' })).body).toMatchObject({
      error: { code: 'FIELD_NOT_COMMITTED' },
    });
    expect((await call('POST', `/v1/events/${evs[1]!.id}/redact`, 'admin', { fields: ['/data/arguments'] })).body).toMatchObject({ error: { code: 'REQUEST_INVALID', field: 'reason' } });
    expect((await call('POST', `/v1/events/${uuidv7()}/redact`, 'admin', { fields: ['/data/arguments'], reason: 'x' })).status).toBe(404);
    const r = await call('POST', `/v1/events/${evs[1]!.id}/redact`, 'admin', { fields: ['/data/arguments'], reason: 'erasure request 5' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ event: evs[1]!.id, redacted: ['/data/arguments'], alreadyRedacted: [] });

    const after = (await call('GET', '/v1/sessions/s-1/bundle', 'read')).body as Bundle;
    expect(verifyBundle(before, { verifierKey: vkey }).verdict).toBe('complete');
    const rep = verifyBundle(after, { verifierKey: vkey });
    expect(rep.verdict).toBe('complete');
    expect(rep.records[1]!.redacted).toEqual(['/data/arguments']);
    const view = (await call('GET', `/v1/events/${evs[1]!.id}`, 'read')).body as { redacted: string[]; event: { data: Record<string, unknown> } };
    expect(view.redacted).toEqual(['/data/arguments']);
    expect(view.event.data['prompt']).toBe('refund c-1042');
    const logged = (await call('GET', '/v1/events?type=admin.redacted', 'read')).body as { events: { event: { data: unknown; actor: { id: string } } }[] };
    expect(logged.events[0]!.event.data).toMatchObject({ event: evs[1]!.id, fields: ['/data/arguments'], reason: 'erasure request 5' });
    expect(logged.events[0]!.event.actor.id).toMatch(/^key:/);

    redactedBundles = { before, after, vkey };
  });

  it('the independent Go verifier accepts both bundles and reports the field redacted in the later one', (ctx) => {
    if (!hasGo) {
      if (process.env['CI'] === 'true') throw new Error('Go is required in CI for the interop verifier');
      ctx.skip('Go is not on PATH (apt-get install golang-go golang-golang-x-mod-dev)');
    }
    const { before, after, vkey } = redactedBundles!;
    const g0 = goVerify(before, vkey);
    expect(g0.status, g0.output).toBe(0);
    expect(g0.output).not.toContain('redacted record 1: /data/arguments');
    const g1 = goVerify(after, vkey);
    expect(g1.status, g1.output).toBe(0);
    expect(g1.output).toContain('redacted record 1: /data/arguments');
  }, 180_000);

  it('places a hold that blocks a purge, lifts it, and records every act', async () => {
    expect((await call('POST', '/v1/events', 'ingest', events('s-2', 'bob@example.com', 'c-7'))).status).toBe(201);
    expect((await call('PUT', '/v1/records/retention', 'admin', { type: 'tool.*', days: 0 })).status).toBe(200);
    expect((await call('PUT', '/v1/records/retention', 'admin', { type: 'Nope', days: 0 })).body).toMatchObject({ error: { code: 'RETENTION_INVALID' } });
    expect((await call('GET', '/v1/records/retention', 'read')).body).toMatchObject({ rules: [{ type: 'tool.*', field: '', days: 0 }] });
    const hold = await call('POST', '/v1/records/holds', 'admin', { kind: 'principal', principal: 'bob@example.com', reason: 'case 3' });
    expect(hold.status).toBe(201);
    expect((await call('POST', '/v1/records/holds', 'admin', { kind: 'range', since: 'x', until: 'y', reason: 'r' })).body).toMatchObject({ error: { code: 'HOLD_INVALID' } });
    const run = await call('POST', '/v1/records/purge', 'admin', {});
    // s-1's call (its prompt is left) is purged; s-2's is held.
    expect(run.body).toMatchObject({ events: 1, held: 1, holds: [(hold.body as { id: string }).id] });
    const s2 = verifyBundle((await call('GET', '/v1/sessions/s-2/bundle', 'read')).body, { verifierKey: ledger.verifierKey('acme') });
    expect(s2.records[1]!.redacted).toEqual([]);
    expect((await call('POST', `/v1/records/holds/${(hold.body as { id: string }).id}/lift`, 'admin', { reason: 'closed' })).status).toBe(200);
    expect((await call('POST', `/v1/records/holds/${(hold.body as { id: string }).id}/lift`, 'admin', {})).status).toBe(404);
    expect((await call('POST', '/v1/records/purge', 'admin', {})).body).toMatchObject({ events: 1, held: 0 });
    const s2after = verifyBundle((await call('GET', '/v1/sessions/s-2/bundle', 'read')).body, { verifierKey: ledger.verifierKey('acme') });
    expect(s2after.verdict).toBe('complete');
    expect(s2after.records[1]!.redacted.sort()).toEqual(['/data/arguments', '/data/prompt']);
    for (const type of ['admin.retention_set', 'admin.hold_placed', 'admin.hold_lifted', 'admin.purged']) {
      expect(((await call('GET', `/v1/events?type=${type}`, 'read')).body as { events: unknown[] }).events.length, type).toBeGreaterThan(0);
    }
    expect((await call('DELETE', '/v1/records/retention?type=tool.*', 'admin')).status).toBe(204);
    expect((await call('DELETE', '/v1/records/retention?type=tool.*', 'admin')).status).toBe(404);
  });

  it('finds events by a value through keyed digests', async () => {
    const evs = events('s-3', 'cy@example.com', 'c-99');
    await call('POST', '/v1/events', 'ingest', evs);
    expect((await call('GET', '/v1/records/find?path=/data/arguments/customerId&value=c-99', 'read')).body).toMatchObject({ error: { code: 'DIGEST_PATH_NOT_INDEXED' } });
    expect((await call('PUT', '/v1/records/digest-paths', 'read', { paths: ['/data/arguments/customerId'] })).status).toBe(403);
    expect((await call('PUT', '/v1/records/digest-paths', 'admin', { paths: ['/data/arguments/customerId'] })).body).toEqual({ paths: ['/data/arguments/customerId'] });
    const found = await call('GET', '/v1/records/find?path=/data/arguments/customerId&value=c-99', 'read');
    expect((found.body as { events: { event: { id: string } }[] }).events.map((e) => e.event.id)).toEqual([evs[1]!.id]);
    expect((await call('GET', '/v1/records/find?path=nope&value=c-99', 'read')).body).toMatchObject({ error: { code: 'POINTER_INVALID' } });
  });

  it('erases a data subject over several calls', async () => {
    await call('POST', '/v1/events', 'ingest', events('s-4', 'dee@example.com', 'c-1'));
    await call('POST', '/v1/events', 'ingest', events('s-5', 'dee@example.com', 'c-2'));
    let cursor: string | undefined;
    let n = 0;
    do {
      const r = await call('POST', '/v1/records/erasures', 'admin', { subject: 'dee@example.com', reason: 'art. 17', limit: 2, ...(cursor ? { cursor } : {}) });
      expect(r.status).toBe(200);
      n += (r.body as { events: number }).events;
      cursor = (r.body as { nextCursor?: string }).nextCursor;
    } while (cursor !== undefined);
    expect(n).toBe(2);
  });
});
