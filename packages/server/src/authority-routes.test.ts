/**
 * The authority over HTTP: a standard OAuth client library (openid-client, not
 * ours) performs token exchange and introspection against a listening server;
 * an independent JWT library (fast-jwt, not jose) verifies session credentials
 * against /.well-known/jwks.json; the OpenAPI document covers every authority
 * route, and no garbage makes an OAuth endpoint answer 5xx or another shape.
 */
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Authority, parseTrustConfig, signingKeyFromSeed, SqliteAuthorityStore } from '@custody/authority';
import { createTestIssuer, type TestIssuer } from '@custody/authority/testing';
import { Ledger, SqliteStore } from '@custody/ledger';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { createVerifier } from 'fast-jwt';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createApiKey } from './api-keys.js';
import { createServer, routesOf } from './server.js';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

let dir: string;
let ledger: Ledger;
let authority: Authority;
let app: FastifyInstance;
let url: string;
let idp: TestIssuer;
let agents: TestIssuer;
let admin: string;
let reader: string;
let config: client.Configuration;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-authority-http-'));
  const path = join(dir, 'ledger.db');
  ledger = await Ledger.open({ store: new SqliteStore({ path }), logSeed: new Uint8Array(32).fill(5), originHost: 'custody.test' });
  idp = await createTestIssuer('https://idp.test', 'custody');
  agents = await createTestIssuer('https://agents.test', 'custody', 'ES256');
  const trust = parseTrustConfig({
    humans: [{ issuer: idp.issuer, audience: 'custody', jwks: idp.jwks }],
    agents: [{ issuer: agents.issuer, audience: 'custody', jwks: agents.jwks }],
  });
  authority = await Authority.open({ store: new SqliteAuthorityStore({ path }), ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(8)), sweepIntervalMs: 0 });
  app = await createServer({ ledger, authority });
  url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
  authority.setIssuer(url);
  admin = (await createApiKey(ledger, { tenant: 'default', role: 'admin', name: 'admin' })).key;
  reader = (await createApiKey(ledger, { tenant: 'default', role: 'read', name: 'reader' })).key;
  config = await client.discovery(new URL(url), 'custody-test-client', undefined, client.ClientSecretBasic(reader), { algorithm: 'oauth2', execute: [client.allowInsecureRequests] });
});
afterAll(async () => {
  await app.close();
  await authority.close();
  await ledger.close();
  rmSync(dir, { recursive: true, force: true });
});

const exchange = async (params: Record<string, string>) =>
  client.genericGrantRequest(config, EXCHANGE, {
    subject_token_type: JWT_TYPE,
    actor_token_type: JWT_TYPE,
    scope: 'refunds:read refunds:create',
    objective: 'refund order 1234',
    ...params,
  });

describe('a standard OAuth client (openid-client)', () => {
  it('discovers the server, exchanges tokens, delegates and introspects', async () => {
    expect(config.serverMetadata()).toMatchObject({ issuer: url, token_endpoint: `${url}/oauth/token`, jwks_uri: `${url}/.well-known/jwks.json` });
    const res = await exchange({ subject_token: await idp.sign({ sub: 'alice@example.com' }), actor_token: await agents.sign({ sub: 'agent:refunds' }), audience: 'payments' });
    expect(res.token_type).toBe('bearer');
    expect(res.expires_in).toBeGreaterThan(0);
    const info = await client.tokenIntrospection(config, res.access_token);
    expect(info).toMatchObject({ active: true, sub: 'alice@example.com', scope: 'refunds:create refunds:read', aud: 'payments', iss: url, act: { sub: 'agent:refunds' } });

    const child = await exchange({ subject_token: res.access_token, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', actor_token: await agents.sign({ sub: 'agent:sub' }), scope: 'refunds:read' });
    expect(await client.tokenIntrospection(config, child.access_token)).toMatchObject({ active: true, act: { sub: 'agent:sub', act: { sub: 'agent:refunds' } }, depth: 1 });

    // The initiator revokes with their own token; both are inactive at once.
    const sid = String(info['sid']);
    const revoke = await fetch(`${url}/v1/sessions/${sid}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${await idp.sign({ sub: 'alice@example.com' })}` } });
    expect(revoke.status).toBe(200);
    expect((await revoke.json()) as unknown).toMatchObject({ session: sid, recorded: true });
    expect(await client.tokenIntrospection(config, res.access_token)).toEqual({ active: false });
    expect(await client.tokenIntrospection(config, child.access_token)).toEqual({ active: false });
  });

  it('surfaces the OAuth error codes of refused exchanges', async () => {
    const subject = await idp.sign({ sub: 'alice@example.com' });
    await expect(exchange({ subject_token: subject, actor_token: await agents.sign({ sub: 'agent:x' }), scope: 'bad"scope' })).rejects.toMatchObject({ error: 'invalid_scope' });
    await expect(exchange({ subject_token: await idp.sign({ sub: 'alice@example.com', aud: 'other' }), actor_token: await agents.sign({ sub: 'agent:x' }) })).rejects.toMatchObject({ error: 'invalid_request' });
    const parent = await exchange({ subject_token: subject, actor_token: await agents.sign({ sub: 'agent:x' }), scope: 'refunds:read' });
    await expect(exchange({ subject_token: parent.access_token, actor_token: await agents.sign({ sub: 'agent:y' }), scope: 'refunds:read refunds:create' })).rejects.toMatchObject({ error: 'invalid_scope' });
  });
});

describe('an independent JWT library (fast-jwt)', () => {
  it('verifies session credentials against /.well-known/jwks.json', async () => {
    const res = await exchange({ subject_token: await idp.sign({ sub: 'bob@example.com' }), actor_token: await agents.sign({ sub: 'agent:refunds' }) });
    const jwks = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    const header = JSON.parse(Buffer.from(res.access_token.split('.')[0]!, 'base64url').toString()) as { kid: string; alg: string };
    expect(header.alg).toBe('EdDSA');
    const jwk = jwks.keys.find((k) => k.kid === header.kid)!;
    const pem = createPublicKey({ key: jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
    const verify = createVerifier({ key: pem, algorithms: ['EdDSA'], allowedIss: url });
    const claims = verify(res.access_token) as Record<string, unknown>;
    expect(claims).toMatchObject({ sub: 'bob@example.com', sid: res['session_id'], act: { sub: 'agent:refunds' } });
    expect(typeof claims['jti']).toBe('string');
    const tampered = res.access_token.slice(0, -4) + (res.access_token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    expect(() => verify(tampered)).toThrow();
  });
});

describe('the /v1 session routes', () => {
  it('list, show, close (seal) and refuse the wrong callers', async () => {
    const res = await exchange({ subject_token: await idp.sign({ sub: 'carol@example.com' }), actor_token: await agents.sign({ sub: 'agent:close' }) });
    const sid = String(res['session_id']);
    const list = await app.inject({ url: '/v1/authority/sessions?initiator=carol@example.com', headers: { authorization: `Bearer ${reader}` } });
    expect(list.json().sessions.map((s: { id: string }) => s.id)).toEqual([sid]);
    const show = await app.inject({ url: `/v1/authority/sessions/${sid}`, headers: { authorization: `Bearer ${reader}` } });
    expect(show.json()).toMatchObject({ session: { id: sid, status: 'active', credentials: [{ status: 'active' }] }, descendants: [] });
    // Another human may not revoke; a read key may not revoke; a bad token is 401.
    const mallory = await app.inject({ method: 'POST', url: `/v1/sessions/${sid}/revoke`, headers: { authorization: `Bearer ${await idp.sign({ sub: 'mallory@example.com' })}` } });
    expect(mallory.statusCode).toBe(403);
    expect((await app.inject({ method: 'POST', url: `/v1/sessions/${sid}/revoke`, headers: { authorization: `Bearer ${reader}` } })).statusCode).toBe(403);
    expect((await app.inject({ method: 'POST', url: `/v1/sessions/${sid}/revoke`, headers: { authorization: 'Bearer x.y.z' } })).json().error.code).toBe('UNAUTHENTICATED');
    // The agent closes its own session: the seal is written.
    const closed = await app.inject({ method: 'POST', url: `/v1/sessions/${sid}/close`, headers: { authorization: `Bearer ${res.access_token}` } });
    expect(closed.json()).toEqual({ session: sid, sealed: true, revoked: [] });
    expect((await ledger.session('default', sid)).sealed).toBe(true);
    const again = await app.inject({ method: 'POST', url: `/v1/sessions/${sid}/close`, headers: { authorization: `Bearer ${admin}` }, payload: { reason: 'again' } });
    expect(again.statusCode).toBe(409);
    expect(again.json().error.code).toBe('AUTHORITY_SESSION_INACTIVE');
    expect((await app.inject({ url: '/v1/authority/sessions/nope', headers: { authorization: `Bearer ${reader}` } })).json().error.code).toBe('AUTHORITY_SESSION_NOT_FOUND');
  });

  it('introspection needs an API key', async () => {
    const r = await app.inject({ method: 'POST', url: '/oauth/introspect', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'token=abc' });
    expect(r.statusCode).toBe(401);
    expect(r.json()).toMatchObject({ error: 'invalid_client' });
  });
});

describe('the OpenAPI document and garbage', () => {
  it('documents every authority route', async () => {
    const doc = (await app.inject('/v1/openapi.json')).json() as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    const ours = routesOf(app).filter((r) => /oauth|well-known|authority|revoke|close/.test(r.url));
    expect(ours.length).toBe(8);
    for (const r of ours) expect(doc.paths[r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')]?.[r.method.toLowerCase()], `${r.method} ${r.url}`).toBeDefined();
    expect(doc.paths['/oauth/token']?.['post']?.responses['400']).toMatchObject({ content: { 'application/json': { schema: { $ref: '#/components/schemas/OAuthError' } } } });
  });

  it('never answers 5xx, and OAuth endpoints always answer RFC 6749 error bodies', async () => {
    const params = ['grant_type', 'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'scope', 'audience', 'resource', 'requested_lifetime', 'objective', 'token', '__proto__', 'constructor'];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/oauth/token', '/oauth/introspect'),
        fc.array(fc.tuple(fc.constantFrom(...params), fc.oneof(fc.string(), fc.constant(EXCHANGE), fc.constant(JWT_TYPE), fc.constant('a.b.c'))), { maxLength: 8 }),
        fc.constantFrom('application/x-www-form-urlencoded', 'application/json', 'text/plain', undefined),
        fc.constantFrom(undefined, `Bearer ${reader}`, 'Basic !!!', 'Bearer junk'),
        async (path, pairs, type, auth) => {
          const form = new URLSearchParams(pairs).toString();
          const payload = type === 'application/json' ? JSON.stringify(Object.fromEntries(pairs)) : form;
          const headers: Record<string, string> = {};
          if (type !== undefined) headers['content-type'] = type;
          if (auth !== undefined) headers['authorization'] = auth;
          const r = await app.inject({ method: 'POST', url: path, headers, payload });
          expect(r.statusCode, r.body).toBeLessThan(500);
          if (r.statusCode >= 400) {
            const body = r.json() as Record<string, unknown>;
            expect(typeof body['error'], r.body).toBe('string');
            expect(typeof body['error_description'], r.body).toBe('string');
          }
        },
      ),
      { numRuns: 300, seed: 4 },
    );
  });
});
