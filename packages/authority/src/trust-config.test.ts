/** The trust configuration names every mistake, and never admits `none` or HMAC. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { parseScope, scopeExcess } from './scope.js';
import { loadTrustConfig, parseTrustConfig } from './trust-config.js';

const jwks = { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'AAAA' }] };

describe('parseTrustConfig', () => {
  it('fills the defaults', () => {
    const c = parseTrustConfig({ humans: [{ issuer: 'https://idp', audience: 'custody', jwks }] });
    expect(c.sessions).toEqual({ defaultLifetimeSeconds: 900, maxLifetimeSeconds: 3600, maxDepth: 8 });
    expect(c.humans[0]).toMatchObject({ type: 'oidc', tenant: 'default', clockToleranceSeconds: 30, audience: ['custody'] });
    expect(c.humans[0]!.algorithms).not.toContain('HS256');
  });

  it.each([
    [{ humans: [{ issuer: 'https://idp', audience: 'c', jwks, algorithms: ['HS256'] }] }, /HS256 is not allowed/],
    [{ humans: [{ issuer: 'https://idp', audience: 'c', jwks, algorithms: ['none'] }] }, /none is not allowed/],
    [{ humans: [{ issuer: 'https://idp', audience: 'c' }] }, /exactly one of jwksUri, jwksFile, jwks/],
    [{ humans: [{ issuer: 'https://idp', audience: 'c', jwksUri: 'http://idp.example/jwks' }] }, /https/],
    [{ humans: [{ type: 'spiffe', trustDomain: 'x', audience: 'c', jwks }] }, /humans\[0\]\.type must be oidc/],
    [{ agents: [{ type: 'spiffe', trustDomain: 'Bad Domain', audience: 'c', jwks }] }, /trustDomain/],
    [{ humans: [{ issuer: 'https://idp', audience: 'c', jwks }], agents: [{ issuer: 'https://idp', audience: 'c', jwks }] }, /repeats the issuer/],
    [{ humans: [{ issuer: 'https://idp', audience: 'c', jwks, extra: 1 }] }, /extra is not a known field/],
    [{ sessions: { maxDepth: 1000 } }, /maxDepth/],
    [{ bogus: true }, /bogus is not a known field/],
    [{ humans: [{ issuer: 'https://idp', audience: ['custody', 'approvals'], approverAudience: 'approvals', jwks }] }, /approverAudience must not overlap humans\[0\]\.audience \(approvals\)/],
    [{ humans: [{ issuer: 'https://idp', audience: 'custody', approverAudience: [], jwks }] }, /approverAudience must be a string or a list/],
    [{ agents: [{ issuer: 'https://agents', audience: 'custody', approverAudience: 'approvals', jwks }] }, /approverAudience is only for humans entries/],
  ])('refuses %j', (raw, message) => {
    expect(() => parseTrustConfig(raw)).toThrow(message);
  });

  it('takes an approverAudience for a humans entry (a string or a list)', () => {
    expect(parseTrustConfig({ humans: [{ issuer: 'https://idp', audience: 'custody', approverAudience: 'custody-approvals', jwks }] }).humans[0]!.approverAudience).toEqual(['custody-approvals']);
    expect(parseTrustConfig({ humans: [{ issuer: 'https://idp', audience: 'custody', jwks }] }).humans[0]!.approverAudience).toBeUndefined();
  });

  it('reads a file and resolves jwksFile against it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'custody-trust-'));
    try {
      writeFileSync(join(dir, 'trust.json'), JSON.stringify({ agents: [{ type: 'spiffe', trustDomain: 'example.org', audience: 'custody', jwksFile: 'bundle.json' }] }));
      expect(loadTrustConfig(join(dir, 'trust.json')).agents[0]!.jwksFile).toBe(join(dir, 'bundle.json'));
      writeFileSync(join(dir, 'bad.json'), '{');
      expect(() => loadTrustConfig(join(dir, 'bad.json'))).toThrow(/not JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('scopes', () => {
  it('parse as sorted sets and name what a request adds', () => {
    expect(parseScope('b a  b')).toEqual(['a', 'b']);
    expect(scopeExcess(['a', 'c'], ['a', 'b'])).toEqual(['c']);
    expect(() => parseScope('')).toThrow(/empty/);
    expect(() => parseScope('a\\b')).toThrow(/printable/);
    expect(() => parseScope(Array.from({ length: 65 }, (_, i) => `s${i}`).join(' '))).toThrow(/64/);
  });
});

describe('SPIFFE JWT-SVIDs', () => {
  it('verifies a JWT-SVID of the trust domain from its bundle, and refuses another domain', async () => {
    const { createTestIssuer } = await import('./testing/test-issuer.js');
    const { TokenVerifier } = await import('./token-verifier.js');
    const spire = await createTestIssuer('unused', 'custody', 'ES256');
    const cfg = parseTrustConfig({ agents: [{ type: 'spiffe', trustDomain: 'example.org', audience: 'custody', jwks: { keys: spire.jwks.keys.map((k) => ({ ...k, use: 'jwt-svid' })) } }] });
    const verifier = new TokenVerifier(cfg.agents, 'agents');
    const svid = await spire.sign({ sub: 'spiffe://example.org/ns/prod/sa/refunds', iss: undefined });
    expect(await verifier.verify(svid, 'actor_token')).toMatchObject({ method: 'jwt-svid', issuer: 'spiffe://example.org', subject: 'spiffe://example.org/ns/prod/sa/refunds' });
    const other = await spire.sign({ sub: 'spiffe://evil.org/ns/x', iss: undefined });
    await expect(verifier.verify(other, 'actor_token')).rejects.toMatchObject({ code: 'TOKEN_ISSUER_UNTRUSTED' });
  });
});

describe('the development issuer', () => {
  it("mints an approver token that answers approvals, while its subject token never does", async () => {
    const { devIssuerTrust, DEV_APPROVER_AUDIENCE, mintDevTokens } = await import('./dev-issuer.js');
    const { signingKeyFromSeed } = await import('./signing-key.js');
    const { TokenVerifier } = await import('./token-verifier.js');
    const key = signingKeyFromSeed(new Uint8Array(32).fill(1));
    const trust = devIssuerTrust(key);
    expect(trust.humans.approverAudience).toEqual([DEV_APPROVER_AUDIENCE]);
    expect(trust.humans.audience).not.toContain(DEV_APPROVER_AUDIENCE);
    const t = await mintDevTokens(key, { human: 'alice@example.com', agent: 'agent:x', approver: 'bob@example.com' });
    const humans = new TokenVerifier([trust.humans], 'humans');
    const approverAudience = (x: typeof trust.humans) => x.approverAudience!;
    expect(await humans.verify(t.approver_token!, 'token', approverAudience)).toMatchObject({ subject: 'bob@example.com' });
    await expect(humans.verify(t.subject_token, 'token', approverAudience)).rejects.toMatchObject({ code: 'TOKEN_AUDIENCE_INVALID' });
    // And the approver token opens no session.
    await expect(humans.verify(t.approver_token!, 'subject_token')).rejects.toMatchObject({ code: 'TOKEN_AUDIENCE_INVALID' });
    expect((await mintDevTokens(key, { human: 'alice@example.com', agent: 'agent:x' })).approver_token).toBeUndefined();
  });
});
