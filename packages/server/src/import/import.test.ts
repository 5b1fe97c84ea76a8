/**
 * The import mapping engine (pure: loading, checking and applying mappings) and
 * POST /v1/import/:source over a real SQLite ledger: all or nothing, stable ids,
 * clear 4xx codes. The worked examples run against `custody up` in
 * test/e2e/import.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Ledger, SqliteStore } from '@custody/ledger';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createApiKey } from '../api-keys.js';
import { createServer } from '../server.js';
import { RecordInvalid, derivedId, evaluate, eventOfRecord, recordsOf, snakeCase, timeOf } from './apply.js';
import { ImportMappingError, compileMapping, loadMappingFile, mappingsBySource } from './mapping.js';

const examples = fileURLToPath(new URL('../../../../examples/', import.meta.url));
const base = { format: 'custody.import-mapping/v1', source: 'pam', time: '$.ts', type: '$.action', actor: { id: '$.user' } };

describe('compileMapping', () => {
  it('accepts a minimal mapping and digests it', () => {
    const m = compileMapping(base);
    expect(m.source).toBe('pam');
    expect(m.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(compileMapping({ ...base }).digest).toBe(m.digest);
    expect(compileMapping({ ...base, data: { host: '$.host' } }).digest).not.toBe(m.digest);
  });

  it.each([
    [{ ...base, format: 'v0' }, /format must be/],
    [{ ...base, source: 'Bad-Name' }, /source must be/],
    [{ ...base, time: undefined }, /time is required/],
    [{ ...base, actor: undefined }, /actor is required/],
    [{ ...base, actor: { name: '$.n' } }, /actor.id is required/],
    [{ ...base, type: 'action' }, /type: a selector is a JSONPath starting with "\$"/],
    [{ ...base, type: '$[?(@.a==))]' }, /not a valid JSONPath/],
    [{ ...base, extra: 1 }, /unknown key extra/],
    [{ ...base, data: { assurance: { const: 'high' } } }, /data.assurance: reserved/],
    [{ ...base, data: { 'a-b': '$.x' } }, /data.a-b: keys are/],
    [{ ...base, data: { x: { path: '$.x', const: 1 } } }, /give one of path, const and first/],
    [{ ...base, data: { x: { as: 'date' , path: '$.x' } } }, /x.as: one of/],
    [{ ...base, data: { x: { path: '$.x', match: '(' } } }, /not a valid regular expression/],
    [{ ...base, data: { x: { path: '$.x', when: { path: 'y' } } } }, /when.path: a selector/],
    [{ ...base, tool: { name: '$.t', when: { path: '$.k', in: 'x' } } }, /tool.when.in: expected a list/],
    [{ ...base, data: { x: [] } }, /empty list of alternatives/],
  ])('refuses a bad mapping (%#)', (doc, message) => {
    expect(() => compileMapping(doc)).toThrow(ImportMappingError);
    expect(() => compileMapping(doc)).toThrow(message);
  });

  it('loads both worked examples, and SOURCE=FILE renames', () => {
    expect(loadMappingFile(join(examples, 'import-langfuse/mapping.yaml')).source).toBe('langfuse');
    expect(loadMappingFile(join(examples, 'import-cloudtrail/mapping.yaml')).source).toBe('cloudtrail');
    expect(loadMappingFile(`aws=${join(examples, 'import-cloudtrail/mapping.yaml')}`).source).toBe('aws');
  });

  it('refuses unreadable files, bad YAML and a source mapped twice', () => {
    const dir = mkdtempSync(join(tmpdir(), 'custody-mapping-'));
    try {
      writeFileSync(join(dir, 'bad.yaml'), 'format: [\n');
      writeFileSync(join(dir, 'bad.json'), '{');
      expect(() => loadMappingFile(join(dir, 'nope.yaml'))).toThrow(/cannot read import mapping/);
      expect(() => loadMappingFile(join(dir, 'bad.yaml'))).toThrow(/not valid YAML/);
      expect(() => loadMappingFile(join(dir, 'bad.json'))).toThrow(/not valid JSON/);
      const m = compileMapping(base);
      expect(() => mappingsBySource([m, m])).toThrow(/mapped twice/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('evaluate', () => {
  const r = { a: { b: 'x', n: '42', list: [{ k: 1 }, { k: 2 }] }, t: 'TOOL', nul: null, arn: 'AROA1:ses-0194c7e2-5b1a-7c3d-9e4f-a1b2c3d4e5f6' };
  it('selects, falls back, maps, converts and matches', () => {
    expect(evaluate('$.a.b', r, 'f')).toBe('x');
    expect(evaluate('$.missing', r, 'f')).toBeUndefined();
    expect(evaluate('$.nul', r, 'f')).toBeUndefined();
    expect(evaluate(['$.missing', '$.nul', '$.a.b'], r, 'f')).toBe('x');
    expect(evaluate({ const: 7 }, r, 'f')).toBe(7);
    expect(evaluate({ path: '$.a.list[*].k', all: true }, r, 'f')).toEqual([1, 2]);
    expect(evaluate({ path: '$.t', map: { TOOL: 'tool_executed' } }, r, 'f')).toBe('tool_executed');
    expect(evaluate({ path: '$.t', map: { SPAN: 'span' } }, r, 'f')).toBe('TOOL');
    expect(evaluate({ path: '$.t', map: { SPAN: 'span' }, default: 'other' }, r, 'f')).toBe('other');
    expect(evaluate({ path: '$.missing', default: 'd' }, r, 'f')).toBe('d');
    expect(evaluate({ path: '$.a.n', as: 'integer' }, r, 'f')).toBe(42);
    expect(evaluate({ path: '$.arn', match: ':(ses-[0-9a-f-]{36})$' }, r, 'f')).toBe('ses-0194c7e2-5b1a-7c3d-9e4f-a1b2c3d4e5f6');
    expect(evaluate({ path: '$.a.b', match: '^y' }, r, 'f')).toBeUndefined();
    expect(evaluate({ when: { path: '$.t', equals: 'TOOL' }, path: '$.a.b' }, r, 'f')).toBe('x');
    expect(evaluate({ when: { path: '$.t', in: ['SPAN'] }, path: '$.a.b' }, r, 'f')).toBeUndefined();
    expect(evaluate({ when: { path: '$.nul', exists: false }, const: 1 }, r, 'f')).toBe(1);
    expect(() => evaluate({ path: '$.a.b', as: 'number' }, r, 'data.f')).toThrow(RecordInvalid);
  });

  it('reads times as UTC with milliseconds', () => {
    expect(timeOf('2026-11-22T09:14:02Z')).toBe('2026-11-22T09:14:02.000Z');
    expect(timeOf('2026-11-22T10:14:02+01:00')).toBe('2026-11-22T09:14:02.000Z');
    expect(timeOf('2026-11-22T09:14:02.123456')).toBe('2026-11-22T09:14:02.123Z');
    const s = Date.UTC(2026, 10, 22, 9, 14, 2) / 1000;
    expect(timeOf(s)).toBe('2026-11-22T09:14:02.000Z');
    expect(timeOf(s * 1000 + 123)).toBe('2026-11-22T09:14:02.123Z');
    expect(timeOf(String(s))).toBe('2026-11-22T09:14:02.000Z');
    expect(timeOf('yesterday')).toBeUndefined();
    expect(timeOf('2026-13-45T00:00:00Z')).toBeUndefined();
  });

  it('names types in snake_case and ids stably', () => {
    expect(snakeCase('GetObject')).toBe('get_object');
    expect(snakeCase('Tool Call-2')).toBe('tool_call_2');
    expect(derivedId('a')).toBe(derivedId('a'));
    expect(derivedId('a')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('eventOfRecord with the worked examples', () => {
  it('maps Langfuse observations to external.langfuse.* with their trace and span ids', () => {
    const m = loadMappingFile(join(examples, 'import-langfuse/mapping.yaml'));
    const body = JSON.parse(readFileSync(join(examples, 'import-langfuse/observations.json'), 'utf8')) as unknown;
    const records = recordsOf(body, m, false);
    expect(records).toHaveLength(4);
    const events = records.map((r) => eventOfRecord(r, m));
    expect(events.map((e) => e['type'])).toEqual(['external.langfuse.agent_invoked', 'external.langfuse.model_called', 'external.langfuse.tool_executed', 'external.langfuse.model_called']);
    const tool = events[2]!;
    expect(tool).toMatchObject({
      time: '2026-11-22T09:14:02.500Z',
      actor: { type: 'agent', id: 'agent:refunds', verified: false },
      trace: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: 'c92e1f304b5d6e7f' },
      tool: { name: 'payments.refund', callId: 'call_7Qx2' },
      data: { source: 'langfuse', assurance: 'imported', mapping: m.digest, recordId: 'c92e1f304b5d6e7f', parentSpanId: 'a3f1c2d4e5b60718', arguments: { order: '1234', amount: 42 }, result: { refund: 're_3Pq9', status: 'succeeded' } },
    });
    expect(tool['data']).not.toHaveProperty('prompt');
    expect(events[1]!['data']).toMatchObject({ model: 'gpt-4o-mini', usage: { input: 412, output: 38, total: 450 }, costUsd: 0.0000846 });
    expect(events[1]!['data']).toHaveProperty('prompt');
    expect(events[1]).not.toHaveProperty('tool');
    expect(events[0]!['data']).toMatchObject({ session: 'ses-example' });
    expect(new Set(events.map((e) => e['id'])).size).toBe(4);
    expect(eventOfRecord(records[0], m)['id']).toBe(events[0]!['id']);
  });

  it('maps CloudTrail records with initiator, claimed session and failures', () => {
    const m = loadMappingFile(join(examples, 'import-cloudtrail/mapping.yaml'));
    const body = JSON.parse(readFileSync(join(examples, 'import-cloudtrail/cloudtrail.json'), 'utf8')) as unknown;
    const events = recordsOf(body, m, false).map((r) => eventOfRecord(r, m));
    expect(events.map((e) => e['type'])).toEqual(['external.cloudtrail.api_call', 'external.cloudtrail.api_call', 'external.cloudtrail.api_call_failed']);
    const session = 'ses-0194c7e2-5b1a-7c3d-9e4f-a1b2c3d4e5f6';
    expect(events[0]).toMatchObject({ actor: { type: 'service', id: 'arn:aws:iam::123456789012:user/refunds-runner', name: 'refunds-runner', verified: false }, initiator: { type: 'human', id: 'alice@example.com', verified: false }, tool: { name: 'AssumeRole', server: 'sts.amazonaws.com' }, data: { session } });
    expect(events[2]).toMatchObject({
      time: '2026-11-22T09:14:05.000Z',
      actor: { type: 'workload', id: `arn:aws:sts::123456789012:assumed-role/refunds-agent/${session}`, name: 'refunds-agent' },
      initiator: { id: 'alice@example.com' },
      data: { session, errorCode: 'AccessDenied', readOnly: false, resources: ['arn:aws:s3:::acme-invoices/2026/03/invoice-1234.pdf', 'arn:aws:s3:::acme-invoices'], recordId: 'b2d4f6a8-0c1e-4a3b-8d5f-7a9c1e3b5d7f' },
    });
    expect(events[2]).not.toHaveProperty('trace');
  });

  it('refuses records it cannot map, naming the field', () => {
    const m = compileMapping({ ...base, trace: { traceId: '$.trace' } });
    const ok = { ts: '2026-11-22T09:00:00Z', action: 'Login', user: 'bob' };
    expect(eventOfRecord(ok, m)['type']).toBe('external.pam.login');
    const field = (r: unknown) => {
      try {
        eventOfRecord(r, m);
      } catch (err) {
        return (err as RecordInvalid).field;
      }
      return 'none';
    };
    expect(field([1])).toBe('');
    expect(field({ ...ok, user: undefined })).toBe('actor.id');
    expect(field({ ...ok, user: { id: 1 } })).toBe('actor.id');
    expect(field({ ...ok, ts: 'soon' })).toBe('time');
    expect(field({ ...ok, action: undefined })).toBe('type');
    expect(field({ ...ok, action: '***' })).toBe('type');
    expect(field({ ...ok, trace: 'xyz' })).toBe('trace.traceId');
    expect(eventOfRecord({ ...ok, trace: '4BF92F35-77B3-4DA6-A3CE-929D0E0E4736' }, m)['trace']).toMatchObject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736' });
    expect(field({ ...ok, user: 'bob' })).toBe('none');
    expect(() => eventOfRecord(ok, compileMapping({ ...base, actor: { id: '$.user', type: { const: 'robot' } } }))).toThrow(/actor.type: "robot" is not one of/);
  });
});

describe('POST /v1/import/:source', () => {
  let dir: string;
  let ledger: Ledger;
  let app: FastifyInstance;
  let ingest: string;
  let read: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'custody-import-'));
    ledger = await Ledger.open({ store: new SqliteStore({ path: join(dir, 'ledger.db') }), logSeed: new Uint8Array(32).fill(3), originHost: 'custody.test' });
    app = await createServer({ ledger, maxBatch: 5, importMappings: [compileMapping({ ...base, id: '$.id', data: { host: '$.host', arguments: '$.cmd' } })] });
    ingest = (await createApiKey(ledger, { tenant: 'acme', role: 'ingest', name: 'i' })).key;
    read = (await createApiKey(ledger, { tenant: 'acme', role: 'read', name: 'r' })).key;
  });
  afterAll(async () => {
    await app.close();
    await ledger.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (source: string, payload: string, type = 'application/json', key = ingest) =>
    app.inject({ method: 'POST', url: `/v1/import/${source}`, headers: { authorization: `Bearer ${key}`, 'content-type': type }, payload });
  const rec = (i: number, extra: Record<string, unknown> = {}) => ({ id: `r-${i}`, ts: '2026-11-22T09:00:00Z', action: 'SessionStart', user: 'bob', host: 'db-1', cmd: 'psql prod', ...extra });
  const count = async () => (await ledger.query('acme', { type: 'external.*' }, { limit: 100, order: 'asc' })).items.length;

  it('imports, then answers a re-import as duplicates', async () => {
    const first = await post('pam', JSON.stringify([rec(1), rec(2)]));
    expect(first.statusCode, first.body).toBe(201);
    expect(first.json()).toMatchObject({ source: 'pam', imported: 2, duplicates: 0, results: [{ type: 'external.pam.session_start', recordId: 'r-1', duplicate: false }, { recordId: 'r-2' }] });
    const again = await post('pam', [rec(2), rec(3)].map((r) => JSON.stringify(r)).join('\n'), 'application/x-ndjson');
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json()).toMatchObject({ imported: 1, duplicates: 1, results: [{ recordId: 'r-2', duplicate: true, id: first.json().results[1].id }, { recordId: 'r-3', duplicate: false }] });
    const view = (await app.inject({ url: `/v1/events/${first.json().results[0].id}`, headers: { authorization: `Bearer ${read}` } })).json();
    expect(view.event.actor.verified).not.toBe(true);
    expect(view.event).toMatchObject({ type: 'external.pam.session_start', actor: { id: 'bob', type: 'service' }, data: { source: 'pam', assurance: 'imported', recordId: 'r-1', host: 'db-1', arguments: 'psql prod' } });
    expect(view.event).not.toHaveProperty('session');
    expect(await count()).toBe(3);
  });

  it('refuses bad input with a code and writes nothing', async () => {
    const before = await count();
    const cases: [string, string, string, number, string, string?][] = [
      ['nope', JSON.stringify(rec(9)), 'application/json', 404, 'IMPORT_SOURCE_UNKNOWN'],
      ['pam', JSON.stringify([rec(10), rec(11, { ts: 'never' })]), 'application/json', 400, 'IMPORT_RECORD_INVALID', 'records[1].time'],
      ['pam', JSON.stringify([rec(12), rec(13, { user: 'x'.repeat(600) })]), 'application/json', 400, 'IMPORT_RECORD_INVALID', 'records[1].actor.id'],
      ['pam', JSON.stringify([rec(14), 'text']), 'application/json', 400, 'IMPORT_RECORD_INVALID', 'records[1]'],
      ['pam', '[]', 'application/json', 400, 'IMPORT_INVALID'],
      ['pam', '"str"', 'application/json', 400, 'IMPORT_INVALID'],
      ['pam', '{"a":', 'application/json', 400, 'JSON_INVALID'],
      ['pam', `${JSON.stringify(rec(15))}\n{bad`, 'application/x-ndjson', 400, 'IMPORT_INVALID', 'records[1]'],
      ['pam', JSON.stringify(Array.from({ length: 6 }, (_, i) => rec(20 + i))), 'application/json', 413, 'BATCH_TOO_LARGE'],
      ['pam', 'a,b', 'text/csv', 415, 'MEDIA_TYPE_UNSUPPORTED'],
    ];
    for (const [source, payload, type, status, code, field] of cases) {
      const res = await post(source, payload, type);
      expect(res.statusCode, `${code}: ${res.body}`).toBe(status);
      expect(res.json().error.code).toBe(code);
      if (field !== undefined) expect(res.json().error.field).toBe(field);
    }
    expect((await post('pam', JSON.stringify(rec(30)), 'application/json', read)).statusCode).toBe(403);
    expect(await count()).toBe(before);
  });

  it('lists the configured sources', async () => {
    const res = await app.inject({ url: '/v1/import', headers: { authorization: `Bearer ${read}` } });
    expect(res.json()).toEqual({ sources: [{ source: 'pam', mapping: expect.stringMatching(/^sha256:/) }] });
  });
});
