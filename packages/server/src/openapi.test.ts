/**
 * The OpenAPI document matches the server: every registered route is in it and
 * vice versa, every response the server gives (to good requests and to garbage)
 * has a documented status and a body that validates against the documented
 * schema, and no input makes the server answer 5xx.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Ledger, SqliteStore } from '@custody/ledger';
import fc from 'fast-check';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createApiKey } from './api-keys.js';
import { createServer, routesOf } from './server.js';

type Schema = Record<string, unknown>;
interface Doc {
  openapi: string;
  paths: Record<string, Record<string, { security?: unknown[]; responses: Record<string, { content?: Record<string, { schema: Schema }> }> }>>;
  components: { schemas: Record<string, Schema>; securitySchemes: Record<string, Schema> };
}

let app: FastifyInstance;
let ledger: Ledger;
let doc: Doc;
let dir: string;
const keys: Record<string, string> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-openapi-'));
  ledger = await Ledger.open({ store: new SqliteStore({ path: join(dir, 'ledger.db') }), logSeed: new Uint8Array(32).fill(9), originHost: 'custody.test' });
  app = await createServer({ ledger, maxBatch: 50, bodyLimit: 64 * 1024 });
  for (const role of ['ingest', 'read', 'approve', 'admin'] as const) keys[role] = (await createApiKey(ledger, { tenant: 'acme', role, name: role })).key;
  doc = (await app.inject('/v1/openapi.json')).json();
});
afterAll(async () => {
  await app.close();
  await ledger.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `/v1/sessions/:id` → `/v1/sessions/{id}`. */
const openapiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

/** A small JSON Schema checker for the keywords the API's schemas use; returns the first problem. */
function check(value: unknown, schema: Schema, at = '$'): string | undefined {
  if (typeof schema['$ref'] === 'string') {
    const name = schema['$ref'].replace('#/components/schemas/', '');
    const target = doc.components.schemas[name];
    if (target === undefined) return `${at}: unresolved $ref ${schema['$ref']}`;
    return check(value, target, at);
  }
  if (Array.isArray(schema['oneOf'])) {
    const ok = (schema['oneOf'] as Schema[]).filter((s) => check(value, s, at) === undefined).length;
    if (ok !== 1) return `${at}: matches ${ok} of oneOf`;
  }
  if (Array.isArray(schema['anyOf']) && !(schema['anyOf'] as Schema[]).some((s) => check(value, s, at) === undefined)) return `${at}: matches no anyOf`;
  if (schema['type'] !== undefined) {
    const types = ([] as unknown[]).concat(schema['type']);
    const actual = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
    const fits = types.some((t) => t === actual || (t === 'integer' && Number.isInteger(value)) || (t === 'number' && typeof value === 'number'));
    if (!fits) return `${at}: ${JSON.stringify(value)?.slice(0, 80)} is not ${types.join('|')}`;
  }
  if (Array.isArray(schema['enum']) && !schema['enum'].includes(value)) return `${at}: ${String(value)} not in enum`;
  if ('const' in schema && schema['const'] !== value) return `${at}: not ${String(schema['const'])}`;
  if (typeof schema['minimum'] === 'number' && typeof value === 'number' && value < schema['minimum']) return `${at}: below minimum`;
  if (schema['format'] === 'date-time' && typeof value === 'string' && Number.isNaN(Date.parse(value))) return `${at}: not a date-time`;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    const props = (schema['properties'] ?? {}) as Record<string, Schema>;
    for (const r of (schema['required'] ?? []) as string[]) if (!(r in obj)) return `${at}.${r}: required`;
    for (const [k, v] of Object.entries(obj)) {
      const sub = props[k] ?? (typeof schema['additionalProperties'] === 'object' ? (schema['additionalProperties'] as Schema) : undefined);
      if (sub === undefined && schema['additionalProperties'] === false) return `${at}.${k}: not in the schema`;
      if (sub !== undefined) {
        const problem = check(v, sub, `${at}.${k}`);
        if (problem !== undefined) return problem;
      }
    }
  }
  if (Array.isArray(value) && schema['items'] !== undefined) {
    for (let i = 0; i < value.length; i++) {
      const problem = check(value[i], schema['items'] as Schema, `${at}[${i}]`);
      if (problem !== undefined) return problem;
    }
  }
  return undefined;
}

/** Asserts that a response is documented for the route it hit: status, media type and body. */
function conforms(method: string, url: string, res: LightMyRequestResponse): void {
  const where = `${method} ${url} → ${res.statusCode} ${res.body.slice(0, 300)}`;
  expect(res.statusCode, where).toBeLessThan(500);
  const type = String(res.headers['content-type'] ?? '').split(';')[0]!;
  if (res.statusCode >= 400) {
    expect(type, where).toBe('application/json');
    const shapes = ['Error', 'AppendFailure'].map((name) => check(res.json(), { $ref: `#/components/schemas/${name}` }));
    expect(shapes.some((problem) => problem === undefined), `${where}: ${shapes.join('; ')}`).toBe(true);
  }
  // Unknown routes (a path parameter that routes nowhere) answer the global 404.
  if (res.statusCode === 404 && res.json().error.code === 'NOT_FOUND') return;
  const op = doc.paths[openapiPath(url)]?.[method.toLowerCase()];
  expect(op, where).toBeDefined();
  const documented = op!.responses[String(res.statusCode)];
  expect(documented, `${where}: status not documented`).toBeDefined();
  if (res.statusCode === 204) {
    expect(res.body).toBe('');
    return;
  }
  const media = documented!.content?.[type];
  expect(media, `${where}: media type ${type} not documented`).toBeDefined();
  const body: unknown = type === 'application/json' ? res.json() : res.body;
  expect(check(body, media!.schema), where).toBeUndefined();
}

describe('the OpenAPI document', () => {
  it('is checked by a checker that catches mismatches', () => {
    expect(check({ error: { code: 'X', message: 'm' } }, { $ref: '#/components/schemas/Error' })).toBeUndefined();
    expect(check({ error: { code: 'X' } }, { $ref: '#/components/schemas/Error' })).toMatch(/message: required/);
    expect(check({ error: { code: 'X', message: 'm' }, extra: 1 }, { $ref: '#/components/schemas/Error' })).toMatch(/extra: not in the schema/);
    expect(check({ id: 'a', index: 1.5, duplicate: false }, { $ref: '#/components/schemas/AppendResult' })).toMatch(/oneOf/);
    expect(check([1], { type: 'array', items: { type: 'string' } })).toMatch(/not string/);
  });

  it('is OpenAPI 3.1 with the bearer scheme', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.components.securitySchemes['bearerAuth']).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('lists every registered route, and every route it lists is registered', () => {
    const routes = routesOf(app);
    expect(routes.length).toBeGreaterThanOrEqual(17);
    for (const r of routes) expect(doc.paths[openapiPath(r.url)]?.[r.method.toLowerCase()], `${r.method} ${r.url}`).toBeDefined();
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(documented.sort()).toEqual(routes.map((r) => `${r.method} ${openapiPath(r.url)}`).sort());
    for (const { method, url } of routes) expect(app.hasRoute({ method: method as 'GET', url }), `${method} ${url}`).toBe(true);
  });

  it('names the security of every route and documents its error responses', () => {
    const open = new Set(['GET /', 'GET /v1/health', 'GET /v1/openapi.json']);
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const name = `${method.toUpperCase()} ${path}`;
        if (open.has(name)) {
          expect(op.security, name).toEqual([]);
        } else {
          expect(op.security, name).toEqual([{ bearerAuth: [] }]);
          for (const status of ['400', '401', '403', '500', '503']) expect(op.responses[status], `${name} ${status}`).toBeDefined();
        }
        for (const [status, res] of Object.entries(op.responses)) {
          if (Number(status) < 400) continue;
          const ref = res.content?.['application/json']?.schema['$ref'];
          expect(['#/components/schemas/Error', '#/components/schemas/AppendFailure'], `${name} ${status}`).toContain(ref);
        }
      }
    }
  });
});

describe('every response matches the document', () => {
  const send = async (method: string, url: string, route: string, opts: { key?: string; body?: unknown; raw?: string; type?: string } = {}) => {
    const headers: Record<string, string> = {};
    if (opts.key !== undefined) headers['authorization'] = `Bearer ${opts.key}`;
    const payload = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    if (payload !== undefined) headers['content-type'] = opts.type ?? 'application/json';
    const res = await app.inject({ method: method as 'GET', url, headers, ...(payload !== undefined ? { payload } : {}) });
    conforms(method, route, res);
    return res;
  };

  it('for good requests and the usual errors on every route', async () => {
    const s = 'doc-1';
    const actor = { type: 'agent', id: 'bot' };
    const initiator = { type: 'human', id: 'ann' };
    const events = [
      { id: '0193a0c2-0000-7000-8000-000000000001', type: 'session.opened', session: { id: s, objective: 'x' }, initiator, actor },
      { type: 'tool.requested', session: { id: s }, initiator, actor, tool: { name: 't' }, data: { arguments: { a: 1 } }, cause: '0193a0c2-0000-7000-8000-000000000001' },
      { type: 'session.closed', session: { id: s }, initiator, actor },
    ];
    await send('POST', '/v1/events', '/v1/events', { key: keys['ingest'], body: events });
    await send('POST', '/v1/events', '/v1/events', { key: keys['ingest'], body: events[0] });
    await send('POST', '/v1/events', '/v1/events', { key: keys['ingest'], body: [{ ...events[1], id: undefined }] });
    await send('POST', '/v1/events', '/v1/events', { key: keys['ingest'], raw: '{', type: 'application/json' });
    await send('POST', '/v1/events', '/v1/events', { key: keys['ingest'], raw: 'x', type: 'text/csv' });
    await send('POST', '/v1/events', '/v1/events', { key: keys['ingest'], body: Array.from({ length: 51 }, () => events[0]) });
    await send('POST', '/v1/events', '/v1/events', { key: keys['read'], body: events[0] });
    await send('POST', '/v1/events', '/v1/events', { body: events[0] });
    const reads: [string, string][] = [
      ['/v1/events?limit=1', '/v1/events'],
      ['/v1/events?limit=0', '/v1/events'],
      [`/v1/events/${events[0]!.id}`, '/v1/events/:id'],
      ['/v1/events/nope', '/v1/events/:id'],
      ['/v1/sessions', '/v1/sessions'],
      [`/v1/sessions/${s}`, '/v1/sessions/:id'],
      ['/v1/sessions/nope', '/v1/sessions/:id'],
      [`/v1/sessions/${s}/timeline`, '/v1/sessions/:id/timeline'],
      [`/v1/sessions/${s}/bundle`, '/v1/sessions/:id/bundle'],
      [`/v1/sessions/${s}/bundle?disclosures=false`, '/v1/sessions/:id/bundle'],
      ['/v1/principals/ann/events', '/v1/principals/:id/events'],
      ['/v1/log/checkpoint', '/v1/log/checkpoint'],
      ['/v1/log/checkpoint?size=1', '/v1/log/checkpoint'],
      ['/v1/log/checkpoint?size=999', '/v1/log/checkpoint'],
      ['/v1/log/key', '/v1/log/key'],
      ['/v1/log/proof/inclusion?index=0', '/v1/log/proof/inclusion'],
      ['/v1/log/proof/inclusion?index=999', '/v1/log/proof/inclusion'],
      ['/v1/log/proof/consistency?from=1', '/v1/log/proof/consistency'],
      ['/v1/log/proof/consistency?from=2&to=1', '/v1/log/proof/consistency'],
      ['/v1/keys', '/v1/keys'],
      ['/v1/reports/unapproved-calls?limit=2', '/v1/reports/unapproved-calls'],
      ['/v1/reports/denied-calls?since=2026-01-01T00:00:00Z', '/v1/reports/denied-calls'],
      ['/v1/reports/acted-after-end?cursor=nope', '/v1/reports/acted-after-end'],
      ['/v1/reports/deep-delegation?depth=0', '/v1/reports/deep-delegation'],
      ['/v1/reports/deep-delegation?depth=-1', '/v1/reports/deep-delegation'],
      ['/v1/reports/principal-activity?principal=ann', '/v1/reports/principal-activity'],
      ['/v1/reports/principal-activity', '/v1/reports/principal-activity'],
      ['/v1/reports/top-principals', '/v1/reports/top-principals'],
      ['/v1/reports/compliance?framework=owasp-agentic', '/v1/reports/compliance'],
      ['/v1/reports/compliance?framework=csf&since=2026-01-01T00:00:00Z', '/v1/reports/compliance'],
      ['/v1/reports/compliance?framework=iso', '/v1/reports/compliance'],
      ['/v1/reports/compliance', '/v1/reports/compliance'],
    ];
    for (const [url, route] of reads) {
      await send('GET', url, route, { key: keys['admin'] });
      await send('GET', url, route, { key: keys['ingest'] });
      await send('GET', url, route);
    }
    const created = await send('POST', '/v1/keys', '/v1/keys', { key: keys['admin'], body: { role: 'read', name: 'doc' } });
    await send('POST', '/v1/keys', '/v1/keys', { key: keys['admin'], body: { role: 'god', name: 'doc' } });
    await send('DELETE', `/v1/keys/${created.json().id}`, '/v1/keys/:id', { key: keys['admin'] });
    await send('DELETE', `/v1/keys/${created.json().id}`, '/v1/keys/:id', { key: keys['admin'] });
    await send('DELETE', '/v1/keys/x', '/v1/keys/:id', { key: keys['read'] });
    for (const url of ['/', '/v1/health', '/v1/openapi.json']) await send('GET', url, url);
  });
});

describe('garbage', () => {
  const routes = () => routesOf(app);
  const junk = fc.oneof(
    fc.string(),
    fc.string({ unit: 'grapheme' }),
    fc.constantFrom('', '-1', '0', '1e400', '9007199254740993', 'NaN', 'null', '%', '%00', '..', 'a/b', '\u0000', 'x'.repeat(5000), 'true', '[]', '{}'),
    fc.integer().map(String),
  );
  const bodies = fc.oneof(
    fc.jsonValue().map((v) => ({ raw: JSON.stringify(v) ?? 'null', type: 'application/json' })),
    fc.array(fc.jsonValue(), { maxLength: 4 }).map((vs) => ({ raw: vs.map((v) => JSON.stringify(v)).join('\n'), type: 'application/x-ndjson' })),
    fc.record({ raw: fc.string(), type: fc.constantFrom('application/json', 'application/x-ndjson', 'text/plain', 'application/octet-stream', 'multipart/form-data', 'garbage', 'application/json; charset=latin1') }),
    fc.constant({ raw: JSON.stringify({ type: 'session.opened', session: { id: 'fz' }, initiator: { type: 'human', id: 'h' }, actor: { type: 'agent', id: 'a' } }), type: 'application/json' }),
  );

  it('never makes the server answer 5xx, and every answer is documented', async () => {
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.nat(),
        fc.constantFrom<string | undefined>(undefined, 'ingest', 'read', 'approve', 'admin', 'junk'),
        fc.array(fc.tuple(fc.oneof(fc.constantFrom('limit', 'cursor', 'order', 'size', 'index', 'from', 'to', 'since', 'until', 'type', 'trace', 'session', 'sealed', 'disclosures', 'decision'), fc.string()), junk), { maxLength: 4 }),
        junk,
        fc.option(bodies, { nil: undefined }),
        async (pick, who, query, param, body) => {
          const all = routes();
          const route = all[pick % all.length]!;
          const path = route.url.replace(/:[A-Za-z0-9_]+/g, () => encodeURIComponent(param));
          const qs = query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
          const url = qs === '' ? path : `${path}?${qs}`;
          const headers: Record<string, string> = {};
          if (who !== undefined) headers['authorization'] = `Bearer ${keys[who] ?? 'cust_junk'}`;
          if (body !== undefined) headers['content-type'] = body.type;
          const res = await app.inject({ method: route.method as 'GET', url, headers, ...(body !== undefined ? { payload: body.raw } : {}) });
          seen.set(res.statusCode, (seen.get(res.statusCode) ?? 0) + 1);
          conforms(route.method, route.url, res);
        },
      ),
      { numRuns: 600, seed: 20261122 },
    );
    // The garbage reached past auth and validation into the handlers.
    for (const status of [200, 400, 401, 403, 404]) expect(seen.get(status) ?? 0, `status ${status} in ${JSON.stringify([...seen])}`).toBeGreaterThan(0);
  });

  it('never answers 5xx to garbage bodies from keys that may send them', async () => {
    const seen = new Map<number, number>();
    const targets = [
      { method: 'POST', url: '/v1/events', route: '/v1/events', key: 'ingest' },
      { method: 'POST', url: '/v1/keys', route: '/v1/keys', key: 'admin' },
      { method: 'DELETE', url: '/v1/keys/abc', route: '/v1/keys/:id', key: 'admin' },
    ];
    const events = fc.array(
      fc.record(
        {
          id: fc.oneof(fc.uuid({ version: 7 }), fc.string()),
          type: fc.constantFrom('session.opened', 'model.output', 'session.closed', 'tool.requested', 'admin.x', 'external.y', 'bogus'),
          session: fc.oneof(fc.record({ id: fc.constantFrom('fz-1', 'fz-2', 'bad id') }), fc.jsonValue()),
          initiator: fc.oneof(fc.constant({ type: 'human', id: 'h' }), fc.jsonValue()),
          actor: fc.oneof(fc.constant({ type: 'agent', id: 'a' }), fc.jsonValue()),
          tenant: fc.constantFrom('acme', 'globex'),
          time: fc.oneof(fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), fc.string()),
          data: fc.dictionary(fc.string(), fc.jsonValue()),
        },
        { requiredKeys: ['type'] },
      ),
      { minLength: 0, maxLength: 5 },
    );
    const payloads = fc.oneof(
      bodies,
      events.map((es) => ({ raw: JSON.stringify(es), type: 'application/json' })),
      events.map((es) => ({ raw: es.map((e) => JSON.stringify(e)).join('\n'), type: 'application/x-ndjson' })),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...targets), payloads, async (t, body) => {
        const res = await app.inject({
          method: t.method as 'POST',
          url: t.url,
          headers: { authorization: `Bearer ${keys[t.key]}`, 'content-type': body.type },
          payload: body.raw,
        });
        seen.set(res.statusCode, (seen.get(res.statusCode) ?? 0) + 1);
        conforms(t.method, t.route, res);
      }),
      { numRuns: 600, seed: 20261123 },
    );
    for (const status of [201, 400, 404, 415]) expect(seen.get(status) ?? 0, `status ${status} in ${JSON.stringify([...seen])}`).toBeGreaterThan(0);
  });

  it('survives hostile URLs and headers', async () => {
    const cases: [string, string, Record<string, string>][] = [
      ['GET', '/v1/events/%E0%A4%A', { authorization: `Bearer ${keys['read']}` }],
      ['GET', `/v1/sessions/${'a'.repeat(5000)}`, { authorization: `Bearer ${keys['read']}` }],
      ['GET', '/v1/events?limit=1&limit=2', { authorization: `Bearer ${keys['read']}` }],
      ['GET', '/v1/log/proof/inclusion?index=1e400', { authorization: `Bearer ${keys['read']}` }],
      ['GET', '/v1/log/proof/consistency?from=-1', { authorization: `Bearer ${keys['read']}` }],
      ['GET', '/v1/events', { authorization: `Bearer ${keys['read']}\u0000` }],
      ['POST', '/v1/events', { authorization: `Bearer ${keys['ingest']}`, 'content-type': 'application/json', 'content-length': '5' }],
      ['GET', '/v1/events?cursor=' + encodeURIComponent('ZTk5OTk5OTk5OTk5OTk5OTk5OTk5'), { authorization: `Bearer ${keys['read']}` }],
    ];
    for (const [method, url, headers] of cases) {
      const res = await app.inject({ method: method as 'GET', url, headers });
      expect(res.statusCode, `${method} ${url}`).toBeLessThan(500);
      expect(res.json().error.code, `${method} ${url}`).toMatch(/^[A-Z_]+$/);
    }
  });
});
