/**
 * The authority against a real ledger on each real store (SQLite file, the
 * machine's PostgreSQL): opening, delegation that only narrows, the attack
 * suite (each forged or misused token refused and recorded), cascading
 * revocation, the seal on close, expiry by the sweeper, and several nodes on one
 * PostgreSQL.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Ledger, PostgresStore, SqliteStore } from '@custody/ledger';
import { postgresTestEnv, storeExcluded } from '@custody/ledger/testing';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Authority, TOKEN_EXCHANGE_GRANT, TOKEN_TYPES, type TokenExchangeRequest } from './authority.js';
import type { AuthorityStore, SessionRecord } from './authority-store.js';
import { AuthorityError } from './errors.js';
import { PostgresAuthorityStore } from './postgres/postgres-authority-store.js';
import { signingKeyFromSeed } from './signing-key.js';
import { SqliteAuthorityStore } from './sqlite/sqlite-authority-store.js';
import { createTestIssuer, hmacToken, tamperedToken, type TestIssuer, unsignedToken } from './testing/test-issuer.js';
import { parseTrustConfig } from './trust-config.js';

const ISSUER = 'https://custody.test';
const pg = await postgresTestEnv();

interface Backend {
  name: string;
  skip: string | false;
  open(): Promise<{ ledger: Ledger; store: () => AuthorityStore; teardown: () => Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'sqlite',
    skip: storeExcluded('sqlite') ?? false,
    async open() {
      const dir = mkdtempSync(join(tmpdir(), 'custody-authority-'));
      const path = join(dir, 'ledger.db');
      const ledger = await Ledger.open({ store: new SqliteStore({ path }), logSeed: new Uint8Array(32).fill(3), originHost: 'custody.test' });
      return { ledger, store: () => new SqliteAuthorityStore({ path }), teardown: async () => rmSync(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: 'postgres',
    skip: pg.skip,
    async open() {
      const schema = await pg.freshSchema();
      const ledger = await Ledger.open({ store: new PostgresStore({ connectionString: pg.url, schema }), logSeed: new Uint8Array(32).fill(3), originHost: 'custody.test' });
      return { ledger, store: () => new PostgresAuthorityStore({ connectionString: pg.url, schema }), teardown: () => pg.dropSchema(schema) };
    },
  },
];

describe.each(backends)('the authority on $name', (backend) => {
  let env: Awaited<ReturnType<Backend['open']>>;
  let authority: Authority;
  let idp: TestIssuer;
  let agents: TestIssuer;
  let now = Date.now();
  const clock = () => new Date(now);

  beforeAll(async () => {
    if (backend.skip !== false) return;
    env = await backend.open();
    idp = await createTestIssuer('https://idp.test', 'custody', 'RS256');
    agents = await createTestIssuer('https://agents.test', 'custody', 'ES256');
    const trust = parseTrustConfig({
      humans: [{ issuer: idp.issuer, audience: 'custody', jwks: idp.jwks, algorithms: ['RS256'] }],
      agents: [{ issuer: agents.issuer, audience: 'custody', jwks: agents.jwks }],
      sessions: { defaultLifetimeSeconds: 600, maxLifetimeSeconds: 1800, maxDepth: 3 },
    });
    authority = await Authority.open({ store: env.store(), ledger: env.ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(7)), issuer: ISSUER, now: clock, sweepIntervalMs: 0 });
  });
  afterAll(async () => {
    if (backend.skip !== false) return;
    await authority.close();
    await env.ledger.close();
    await env.teardown();
  });

  const human = (claims: Record<string, unknown> = {}, opts?: Parameters<TestIssuer['sign']>[1]) => idp.sign({ sub: 'alice@example.com', email: 'alice@example.com', ...claims }, opts);
  const agent = (sub = 'agent:refunds', claims: Record<string, unknown> = {}) => agents.sign({ sub, ...claims });
  const request = (subject: string, actor: string, extra: Partial<TokenExchangeRequest> = {}): TokenExchangeRequest => ({
    grant_type: TOKEN_EXCHANGE_GRANT,
    subject_token: subject,
    subject_token_type: TOKEN_TYPES.jwt,
    actor_token: actor,
    actor_token_type: TOKEN_TYPES.jwt,
    scope: 'refunds:read refunds:create',
    objective: 'refund order 1234',
    ...extra,
  });
  const open = async (extra: Partial<TokenExchangeRequest> = {}) => authority.exchange(request(await human(), await agent(), extra));
  const refused = async (p: Promise<unknown>, code: string, oauth: string) => {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, `expected ${code}`).toBeInstanceOf(AuthorityError);
    expect((err as AuthorityError).code).toBe(code);
    expect((err as AuthorityError).oauth).toBe(oauth);
    // Recorded: the newest refusal in the tenant's log names the code.
    const page = await env.ledger.query('default', { type: 'admin.token_refused' }, { limit: 1 });
    expect(page.items[0]?.event.data?.['code']).toBe(code);
    return page.items[0]!.event;
  };

  it.skipIf(backend.skip)('opens a session: an EdDSA credential with sub, act, sid, scope, exp, jti, and records it', async () => {
    const res = await open();
    expect(res).toMatchObject({ token_type: 'Bearer', issued_token_type: TOKEN_TYPES.accessToken, scope: 'refunds:create refunds:read', expires_in: 600 });
    const v = await authority.verifyCredential(res.access_token);
    expect(v.claims).toMatchObject({ iss: ISSUER, sub: 'alice@example.com', sid: res.session_id, act: { sub: 'agent:refunds', iss: agents.issuer }, scope: 'refunds:create refunds:read' });
    expect(typeof v.claims.jti).toBe('string');
    const t = await env.ledger.timeline('default', res.session_id);
    expect(t.events.map((e) => e.event.type)).toEqual(['session.opened', 'credential.issued']);
    const opened = t.events[0]!.event;
    expect(opened.initiator).toMatchObject({ type: 'human', id: 'alice@example.com', issuer: idp.issuer, verified: true });
    expect(opened.actor).toMatchObject({ type: 'agent', id: 'agent:refunds', verified: true });
    expect(opened.session?.objective).toBe('refund order 1234');
    expect(opened.data?.['subjectToken']).toMatchObject({ issuer: idp.issuer, subject: 'alice@example.com' });
    const issued = t.events[1]!.event;
    expect(issued.credential).toMatchObject({ jti: v.claims.jti, scope: ['refunds:create', 'refunds:read'], depth: 0 });
    // Never a token in the ledger: only fingerprints.
    const text = JSON.stringify(t.events);
    expect(text).not.toContain(res.access_token.split('.')[2]);
    expect(await authority.introspect(res.access_token, 'default')).toMatchObject({ active: true, sid: res.session_id });
    expect(await authority.introspect(res.access_token, 'other-tenant')).toEqual({ active: false });
  });

  it.skipIf(backend.skip)('refuses a credential once it expires, though its signature was verified before', async () => {
    const res = await open({ requested_lifetime: '60' });
    await authority.verifyCredential(res.access_token);
    await authority.verifyCredential(res.access_token);
    const saved = now;
    now += 61_000;
    try {
      await expect(authority.verifyCredential(res.access_token)).rejects.toMatchObject({ code: 'TOKEN_EXPIRED' });
      await expect(authority.verifyCredential(res.access_token)).rejects.toMatchObject({ code: 'TOKEN_EXPIRED' });
    } finally {
      now = saved;
    }
    // Revoked after it was verified: refused at once.
    await authority.verifyCredential(res.access_token);
    await authority.revokeSession('default', res.session_id, { principal: { type: 'human', id: 'admin@example.com' }, reason: 'test' });
    await expect(authority.verifyCredential(res.access_token)).rejects.toMatchObject({ code: 'TOKEN_INACTIVE' });
  });

  it.skipIf(backend.skip)('caps an opening lifetime to the configured maximum', async () => {
    const res = await open({ requested_lifetime: '999999' });
    expect(res.expires_in).toBe(1800);
  });

  it.skipIf(backend.skip)('delegates: a narrower scope, an earlier expiry, depth + 1, a nested act chain', async () => {
    const parent = await open();
    const child = await authority.exchange(request(parent.access_token, await agent('agent:sub'), { subject_token_type: TOKEN_TYPES.accessToken, scope: 'refunds:read', requested_lifetime: '60', objective: undefined }));
    const v = await authority.verifyCredential(child.access_token);
    expect(v.claims['act']).toEqual({ sub: 'agent:sub', iss: agents.issuer, act: { sub: 'agent:refunds', iss: agents.issuer } });
    expect(v.claims.sub).toBe('alice@example.com');
    expect(v.session).toMatchObject({ parent: parent.session_id, depth: 1, scope: ['refunds:read'], objective: 'refund order 1234' });
    expect(v.claims.exp! - v.claims.iat!).toBe(60);
    const t = await env.ledger.timeline('default', child.session_id);
    expect(t.events.map((e) => e.event.type)).toEqual(['session.delegated', 'credential.issued']);
    expect(t.session.parent).toBe(parent.session_id);
    const pt = await env.ledger.timeline('default', parent.session_id);
    expect(pt.events.at(-1)?.event).toMatchObject({ type: 'session.delegated', data: { child: child.session_id } });
  });

  describe('the attack suite: each is refused and recorded', () => {
    it.skipIf(backend.skip)('alg none', async () => {
      const forged = unsignedToken({ iss: idp.issuer, sub: 'alice@example.com', aud: 'custody', exp: Math.floor(now / 1000) + 600 });
      const rec = await refused(authority.exchange(request(forged, await agent())), 'TOKEN_ALG_NONE', 'invalid_request');
      expect(rec.data?.['subjectToken']).toMatchObject({ verified: false, claimedIssuer: idp.issuer, alg: 'none' });
    });

    it.skipIf(backend.skip)('HMAC with the public key (key confusion)', async () => {
      const forged = hmacToken({ iss: idp.issuer, sub: 'alice@example.com', aud: 'custody', exp: Math.floor(now / 1000) + 600 }, idp.publicPem, { kid: idp.kid });
      await refused(authority.exchange(request(forged, await agent())), 'TOKEN_ALG_SYMMETRIC', 'invalid_request');
    });

    it.skipIf(backend.skip)('an algorithm the issuer is not configured for', async () => {
      const other = await createTestIssuer(idp.issuer, 'custody', 'ES256');
      await refused(authority.exchange(request(await other.sign({ sub: 'alice@example.com' }), await agent())), 'TOKEN_ALG_NOT_ALLOWED', 'invalid_request');
    });

    it.skipIf(backend.skip)('expired', async () => {
      const old = await human({}, { now: Math.floor(now / 1000) - 7200, lifetime: 600 });
      await refused(authority.exchange(request(old, await agent())), 'TOKEN_EXPIRED', 'invalid_request');
    });

    it.skipIf(backend.skip)('not yet valid', async () => {
      const later = await human({ nbf: Math.floor(now / 1000) + 3600 });
      await refused(authority.exchange(request(later, await agent())), 'TOKEN_NOT_YET_VALID', 'invalid_request');
    });

    it.skipIf(backend.skip)('wrong audience', async () => {
      await refused(authority.exchange(request(await human({ aud: 'someone-else' }), await agent())), 'TOKEN_AUDIENCE_INVALID', 'invalid_request');
    });

    it.skipIf(backend.skip)('wrong (untrusted) issuer, and a human issuer presented as an agent', async () => {
      const rogue = await createTestIssuer('https://rogue.test', 'custody');
      await refused(authority.exchange(request(await rogue.sign({ sub: 'alice@example.com' }), await agent())), 'TOKEN_ISSUER_UNTRUSTED', 'invalid_request');
      await refused(authority.exchange(request(await human(), await human({ sub: 'agent:refunds' }))), 'TOKEN_ISSUER_UNTRUSTED', 'invalid_request');
    });

    it.skipIf(backend.skip)('unknown kid, and a foreign key under a known kid', async () => {
      const other = await createTestIssuer(idp.issuer, 'custody', 'RS256');
      await refused(authority.exchange(request(await other.sign({ sub: 'alice@example.com' }), await agent())), 'TOKEN_KID_UNKNOWN', 'invalid_request');
      await refused(authority.exchange(request(await other.sign({ sub: 'alice@example.com' }, { header: { kid: idp.kid } }), await agent())), 'TOKEN_SIGNATURE_INVALID', 'invalid_request');
    });

    it.skipIf(backend.skip)('replay of a credential after revocation', async () => {
      const res = await open();
      await authority.revokeSession('default', res.session_id, { principal: { type: 'service', id: 'key:test' } });
      const rec = await refused(authority.exchange(request(res.access_token, await agent('agent:sub'), { scope: 'refunds:read' })), 'TOKEN_INACTIVE', 'invalid_request');
      // Recorded in the revoked session's own timeline.
      expect(rec.session?.id).toBe(res.session_id);
      expect(await authority.introspect(res.access_token, 'default')).toEqual({ active: false });
    });

    it.skipIf(backend.skip)('scope widening on delegation: refused whole, never trimmed', async () => {
      const parent = await open({ scope: 'refunds:read' });
      const before = await authority.listSessions('default', { root: parent.session_id }, 100);
      const rec = await refused(authority.exchange(request(parent.access_token, await agent('agent:sub'), { scope: 'refunds:read refunds:create' })), 'SCOPE_WIDENED', 'invalid_scope');
      expect(rec.session?.id).toBe(parent.session_id);
      expect(rec.data?.['requested']).toMatchObject({ scope: 'refunds:read refunds:create' });
      expect((await authority.listSessions('default', { root: parent.session_id }, 100)).sessions).toHaveLength(before.sessions.length);
    });

    it.skipIf(backend.skip)('a server wildcard narrows to its tools on delegation, and not the other way', async () => {
      const parent = await open({ scope: 'files.* refunds:read' });
      const child = await authority.exchange(request(parent.access_token, await agent('agent:sub'), { scope: 'files.read_file files.list_directory' }));
      expect(child.scope).toBe('files.list_directory files.read_file');
      // The child holds only its tools now: asking for the wildcard back, or another server's tool, widens.
      await refused(authority.exchange(request(child.access_token, await agent('agent:leaf'), { scope: 'files.*' })), 'SCOPE_WIDENED', 'invalid_scope');
      await refused(authority.exchange(request(parent.access_token, await agent('agent:sub'), { scope: 'filesystem.read' })), 'SCOPE_WIDENED', 'invalid_scope');
    });

    it.skipIf(backend.skip)('lifetime extension on delegation', async () => {
      const parent = await open({ requested_lifetime: '120' });
      await refused(authority.exchange(request(parent.access_token, await agent('agent:sub'), { requested_lifetime: '3600' })), 'LIFETIME_EXTENDED', 'invalid_request');
    });

    it.skipIf(backend.skip)('a forged act chain: re-signed, tampered, or smuggled in a human token', async () => {
      const parent = await open();
      // Tampered: the signature no longer matches.
      const tampered = tamperedToken(parent.access_token, (c) => ({ ...c, act: { sub: 'agent:root-of-all', act: c['act'] } }));
      await refused(authority.exchange(request(tampered, await agent('agent:sub'))), 'TOKEN_SIGNATURE_INVALID', 'invalid_request');
      // Re-signed with another Ed25519 key under Custody's kid.
      const forger = signingKeyFromSeed(new Uint8Array(32).fill(99));
      const claims = (await authority.verifyCredential(parent.access_token)).claims;
      const resigned = await new SignJWT({ ...claims, act: { sub: 'agent:evil' } }).setProtectedHeader({ alg: 'EdDSA', kid: authority.kid }).sign(forger.privateKey);
      await refused(authority.exchange(request(resigned, await agent('agent:sub'))), 'TOKEN_SIGNATURE_INVALID', 'invalid_request');
      // A human token that claims a delegation chain of its own.
      await refused(authority.exchange(request(await human({ act: { sub: 'agent:evil' } }), await agent())), 'TOKEN_ACT_UNEXPECTED', 'invalid_request');
    });

    it.skipIf(backend.skip)('delegation deeper than configured', async () => {
      let cur = await open();
      for (let i = 0; i < 3; i++) cur = await authority.exchange(request(cur.access_token, await agent(`agent:d${i}`), { scope: 'refunds:read' }));
      await refused(authority.exchange(request(cur.access_token, await agent('agent:d4'), { scope: 'refunds:read' })), 'DELEGATION_TOO_DEEP', 'invalid_request');
    });

    it.skipIf(backend.skip)('bad requests name the parameter', async () => {
      await refused(authority.exchange({ ...request(await human(), await agent()), grant_type: 'password' }), 'GRANT_TYPE_UNSUPPORTED', 'unsupported_grant_type');
      await refused(authority.exchange({ ...request(await human(), await agent()), actor_token: undefined }), 'EXCHANGE_INVALID', 'invalid_request');
      await refused(authority.exchange(request(await human(), await agent(), { scope: 'bad"scope' })), 'SCOPE_INVALID', 'invalid_scope');
      await refused(authority.exchange(request(await human(), await agent(), { objective: '' })), 'EXCHANGE_INVALID', 'invalid_request');
      await refused(authority.exchange(request('not-a-jwt', await agent())), 'TOKEN_MALFORMED', 'invalid_request');
      // Control and bidi characters in the objective (shown to approvers) are refused; tabs and line breaks are not.
      for (const objective of ['refund\u001b[1A\r\u001b[2Kforged', 'refund\rforged', 'pay \u202egnp.exe', 'x\u0085y', 'x\u007f', 'x\u2066y']) {
        await refused(authority.exchange(request(await human(), await agent(), { objective })), 'EXCHANGE_INVALID', 'invalid_request');
      }
      const ok = await authority.exchange(request(await human(), await agent(), { objective: 'refund order 1234\n\tby Friday' }));
      expect(ok.access_token).toBeTruthy();
    });
  });

  it.skipIf(backend.skip)('revoking a parent makes every descendant inactive at once, and records each step', async () => {
    const root = await open();
    const a = await authority.exchange(request(root.access_token, await agent('agent:a'), { scope: 'refunds:read' }));
    const b = await authority.exchange(request(a.access_token, await agent('agent:b'), { scope: 'refunds:read' }));
    const c = await authority.exchange(request(root.access_token, await agent('agent:c'), { scope: 'refunds:create' }));
    const res = await authority.revokeSession('default', root.session_id, { principal: { type: 'human', id: 'alice@example.com', issuer: idp.issuer, verified: true }, reason: 'stop' });
    expect(res.recorded).toBe(true);
    expect(res.revoked.sort()).toEqual([root, a, b, c].map((s) => s.session_id).sort());
    for (const s of [root, a, b, c]) {
      expect(await authority.introspect(s.access_token, 'default')).toEqual({ active: false });
      const t = await env.ledger.timeline('default', s.session_id);
      const types = t.events.map((e) => e.event.type);
      expect(types.slice(-2)).toEqual(['session.revoked', 'credential.revoked']);
      const revoked = t.events.at(-2)!.event;
      expect(revoked.actor).toMatchObject({ type: 'human', id: 'alice@example.com' });
      if (s !== root) expect(revoked.data?.['cascadeFrom']).toBe(root.session_id);
    }
    // Revoking again changes nothing.
    expect((await authority.revokeSession('default', root.session_id, { principal: { type: 'service', id: 'key:x' } })).revoked).toEqual([]);
  });

  it.skipIf(backend.skip)('the kill switch wins against delegations in flight: no session delegated from the tree stays active', async () => {
    const admin = { principal: { type: 'human' as const, id: 'admin@example.com' }, reason: 'kill switch under load' };
    const outcomes: number[] = [];
    for (const pause of [0, 2, 5, 10, 20]) {
      const root = await open();
      const first = await authority.exchange(request(root.access_token, await agent('agent:first'), { scope: 'refunds:read' }));
      const actors = await Promise.all(Array.from({ length: 16 }, (_, i) => agent(`agent:racer-${i}`)));
      // Delegations from the root and from its first child, all in flight when the revocation starts.
      const racing = Promise.allSettled(actors.map((a, i) => authority.exchange(request(i % 2 === 0 ? root.access_token : first.access_token, a, { scope: 'refunds:read' }))));
      await new Promise((r) => setTimeout(r, pause));
      const revoked = await authority.revokeSession('default', root.session_id, admin);
      const settled = await racing;
      outcomes.push(settled.filter((r) => r.status === 'fulfilled').length);
      for (const r of settled) {
        if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'TOKEN_INACTIVE' });
        else {
          expect(revoked.revoked).toContain(r.value.session_id);
          expect(await authority.introspect(r.value.access_token, 'default')).toEqual({ active: false });
        }
      }
      const stillActive = (await authority.tree('default', root.session_id)).filter((s) => s.status === 'active').map((s) => s.id);
      expect(stillActive).toEqual([]);
    }
    console.log(`kill switch race (${backend.name}): delegations that landed before the revocation, of 16, after a pause of 0, 2, 5, 10, 20 ms: ${outcomes.join(', ')}`);
  });

  it.skipIf(backend.skip)('a delegation whose parent ended before it was stored is refused, and nothing of it is kept', async () => {
    const root = await open();
    const parent = (await authority.session('default', root.session_id)) as SessionRecord;
    await authority.revokeSession('default', root.session_id, { principal: { type: 'service', id: 'key:ops' } });
    const store = env.store();
    try {
      const child: SessionRecord = { ...parent, id: `ses-late-${backend.name}`, parent: parent.id, depth: 1, status: 'active' };
      const credential = { jti: `jti-late-${backend.name}`, tenant: 'default', sessionId: child.id, fingerprint: 'f', issuedAt: child.createdAt, expiresAt: child.expiresAt, status: 'active' as const };
      expect(await store.createSession(child, credential)).toBe(false);
      expect(await store.getSession('default', child.id)).toBeUndefined();
      expect(await store.getCredential(credential.jti)).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it.skipIf(backend.skip)('closing writes the seal and revokes descendants', async () => {
    const root = await open();
    const child = await authority.exchange(request(root.access_token, await agent('agent:a'), { scope: 'refunds:read' }));
    const v = await authority.verifyCredential(root.access_token);
    const res = await authority.closeSession('default', root.session_id, { principal: v.session.agent });
    expect(res).toEqual({ session: root.session_id, sealed: true, revoked: [child.session_id] });
    const t = await env.ledger.timeline('default', root.session_id);
    expect(t.session.sealed).toBe(true);
    expect(t.events.at(-1)?.event.type).toBe('session.closed');
    expect(t.events.at(-2)?.event.type).toBe('credential.revoked');
    expect(await authority.introspect(root.access_token, 'default')).toEqual({ active: false });
    await expect(authority.closeSession('default', root.session_id, { principal: v.session.agent })).rejects.toMatchObject({ code: 'AUTHORITY_SESSION_INACTIVE' });
  });

  it.skipIf(backend.skip)('the sweeper records expiry: the boundary that made earlier access legitimate', async () => {
    const res = await open({ requested_lifetime: '30' });
    now += 31_000;
    expect(await authority.introspect(res.access_token, 'default')).toEqual({ active: false });
    const swept = await authority.sweep();
    expect(swept.expired).toContain(res.session_id);
    const t = await env.ledger.timeline('default', res.session_id);
    const expired = t.events.find((e) => e.event.type === 'session.expired')!.event;
    expect(t.events.map((e) => e.event.type).slice(-2)).toEqual(['session.expired', 'credential.expired']);
    expect(Date.parse(expired.time)).toBe(Date.parse((await authority.session('default', res.session_id)).expiresAt));
    expect((await authority.sweep()).expired).not.toContain(res.session_id);
  });

  it.skipIf(backend.skip)('publishes its key as a JWKS with a kid', async () => {
    const jwks = await authority.jwks();
    expect(jwks.keys).toContainEqual(expect.objectContaining({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', kid: authority.kid }));
  });
});

describe.skipIf(pg.skip)('several nodes on one PostgreSQL', () => {
  it('a revocation on one node is inactive to introspection on every node at once', async () => {
    const schema = await pg.freshSchema();
    const ledgers = await Promise.all([0, 1].map(() => Ledger.open({ store: new PostgresStore({ connectionString: pg.url, schema }), logSeed: new Uint8Array(32).fill(3), originHost: 'custody.test' })));
    const idp = await createTestIssuer('https://idp.test', 'custody');
    const trust = parseTrustConfig({ humans: [{ issuer: idp.issuer, audience: 'custody', jwks: idp.jwks }], agents: [{ issuer: 'https://agents.test', audience: 'custody', jwks: idp.jwks }] });
    // Each node has its own signing key; both keys are published by every node.
    const nodes = await Promise.all(
      ledgers.map((ledger, i) =>
        Authority.open({ store: new PostgresAuthorityStore({ connectionString: pg.url, schema }), ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(20 + i)), issuer: ISSUER, sweepIntervalMs: 0 }),
      ),
    );
    try {
      const res = await nodes[0]!.exchange({
        grant_type: TOKEN_EXCHANGE_GRANT,
        subject_token: await idp.sign({ sub: 'alice@example.com' }),
        subject_token_type: TOKEN_TYPES.jwt,
        actor_token: await idp.sign({ sub: 'agent:x', iss: 'https://agents.test' }),
        actor_token_type: TOKEN_TYPES.jwt,
        scope: 'a b',
        objective: 'multi-node',
      });
      expect((await nodes[1]!.jwks()).keys.map((k) => k['kid']).sort()).toEqual([nodes[0]!.kid, nodes[1]!.kid].sort());
      expect(await nodes[1]!.introspect(res.access_token, 'default')).toMatchObject({ active: true });
      const child = await nodes[1]!.exchange({
        grant_type: TOKEN_EXCHANGE_GRANT,
        subject_token: res.access_token,
        subject_token_type: TOKEN_TYPES.accessToken,
        actor_token: await idp.sign({ sub: 'agent:y', iss: 'https://agents.test' }),
        actor_token_type: TOKEN_TYPES.jwt,
        scope: 'a',
      });
      await nodes[1]!.revokeSession('default', res.session_id, { principal: { type: 'service', id: 'key:ops' } });
      for (const node of nodes) {
        expect(await node.introspect(res.access_token, 'default')).toEqual({ active: false });
        expect(await node.introspect(child.access_token, 'default')).toEqual({ active: false });
      }
      // Recorded once, whichever node acted.
      const types = (await ledgers[0]!.timeline('default', child.session_id)).events.map((e) => e.event.type);
      expect(types.filter((t) => t === 'session.revoked')).toHaveLength(1);
    } finally {
      for (const n of nodes) await n.close();
      for (const l of ledgers) await l.close();
      await pg.dropSchema(schema);
    }
  });
});
