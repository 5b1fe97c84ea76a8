/**
 * Property-based tests of the parsers of tokens (issue 9, adversarial input):
 * the authority's verification of Custody session credentials and of inbound
 * human/agent tokens (TokenVerifier), and the SDK's reading of its own
 * credential's claims. Arbitrary and mutated tokens only ever raise the
 * documented error (AuthorityError `TOKEN_*`; TypeError for the SDK reader), and
 * any single-byte mutation of a valid token is refused.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Authority, AuthorityError, parseTrustConfig, signingKeyFromSeed, SqliteAuthorityStore, TOKEN_EXCHANGE_GRANT, TokenVerifier } from '@custody/authority';
import { createTestIssuer, type TestIssuer } from '@custody/authority/testing';
import { Ledger, SqliteStore } from '@custody/ledger';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { credentialFacts } from '../../packages/sdk/src/credential-claims.js';

const RUNS = Number(process.env['PROPERTY_RUNS'] ?? (process.env['SOAK'] === '1' ? 3000 : 200));
const JWT = 'urn:ietf:params:oauth:token-type:jwt';

let dir: string;
let ledger: Ledger;
let authority: Authority;
let humans: TestIssuer;
let agents: TestIssuer;
let credential: string;
let humanToken: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-token-props-'));
  const path = join(dir, 'ledger.db');
  ledger = await Ledger.open({ store: new SqliteStore({ path }), logSeed: new Uint8Array(32).fill(21), originHost: 'custody.test' });
  humans = await createTestIssuer('https://idp.test', 'custody');
  agents = await createTestIssuer('https://agents.test', 'custody', 'EdDSA');
  const trust = parseTrustConfig({
    humans: [{ issuer: humans.issuer, audience: 'custody', jwks: humans.jwks }],
    agents: [{ issuer: agents.issuer, audience: 'custody', jwks: agents.jwks }],
  });
  authority = await Authority.open({ store: new SqliteAuthorityStore({ path }), ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(22)), sweepIntervalMs: 0 });
  authority.setIssuer('https://custody.test');
  humanToken = await humans.sign({ sub: 'alice@example.com' });
  const res = await authority.exchange({
    grant_type: TOKEN_EXCHANGE_GRANT,
    subject_token: humanToken,
    subject_token_type: JWT,
    actor_token: await agents.sign({ sub: 'agent:refunds' }),
    actor_token_type: JWT,
    scope: 'refunds:read',
    objective: 'property tests',
  });
  credential = res.access_token;
});

afterAll(async () => {
  await authority?.close();
  await ledger?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `token` with the byte at `pos` XORed with `x`, kept as text (invalid UTF-8 becomes U+FFFD). */
function mutateByte(token: string, pos: number, x: number): string {
  const bytes = new TextEncoder().encode(token);
  bytes[pos % bytes.length]! ^= x;
  return new TextDecoder().decode(bytes);
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v) ?? 'null').toString('base64url');

/** Strings that look more or less like JWTs. */
const tokenish = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.tuple(fc.jsonValue({ maxDepth: 3 }), fc.jsonValue({ maxDepth: 3 }), fc.string({ maxLength: 40 })).map(([h, p, s]) => `${b64(h)}.${b64(p)}.${Buffer.from(s).toString('base64url')}`),
  fc.record({ alg: fc.constantFrom('none', 'HS256', 'EdDSA', 'RS256', 'ES256', ''), kid: fc.string({ maxLength: 10 }) }).map((h) => `${b64(h)}.${b64({ iss: 'https://custody.test', sub: 'x', exp: 1 })}.`),
  fc.constantFrom('', '.', '..', 'a.b.c', 'a.b', 'a.b.c.d', 'x'.repeat(20_000), 'eyJ.eyJ.'),
);

/** Expects `p` to reject with an AuthorityError (a TOKEN_* code) and nothing else. */
async function refusedWithAuthorityError(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof AuthorityError)) throw new Error(`threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, { cause: err });
    expect(err.code).toMatch(/^TOKEN_/);
    return;
  }
  throw new Error('accepted');
}

describe('session credentials (Authority.verifyCredential)', () => {
  it('verifies the credential it issued', async () => {
    const v = await authority.verifyCredential(credential);
    expect(v.session.initiator.id).toBe('alice@example.com');
  });

  it('raises only AuthorityError TOKEN_* on arbitrary tokens', async () => {
    await fc.assert(
      fc.asyncProperty(tokenish, async (t) => refusedWithAuthorityError(authority.verifyCredential(t))),
      { numRuns: RUNS },
    );
  });

  it('refuses any single-byte mutation of a credential', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.integer({ min: 1, max: 255 }), async (pos, x) => refusedWithAuthorityError(authority.verifyCredential(mutateByte(credential, pos, x)))),
      { numRuns: RUNS },
    );
  });
});

describe('inbound tokens (TokenVerifier)', () => {
  const verifier = () => new TokenVerifier([parseTrustConfig({ humans: [{ issuer: humans.issuer, audience: 'custody', jwks: humans.jwks }] }).humans[0]!], 'humans');

  it('raises only AuthorityError TOKEN_* on arbitrary tokens, and refuses any single-byte mutation of a valid one', async () => {
    const v = verifier();
    expect((await v.verify(humanToken, 'subject_token')).subject).toBe('alice@example.com');
    await fc.assert(
      fc.asyncProperty(tokenish, async (t) => refusedWithAuthorityError(v.verify(t, 'subject_token'))),
      { numRuns: RUNS },
    );
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.integer({ min: 1, max: 255 }), async (pos, x) => {
        const mutated = mutateByte(humanToken, pos, x);
        // The last character of a base64url part can carry unused bits: a flip there
        // decodes to the same bytes. jose decodes leniently, so decodeUnverified refuses
        // any part that is not canonical base64url (one token, one fingerprint).
        await refusedWithAuthorityError(v.verify(mutated, 'subject_token'));
      }),
      { numRuns: RUNS },
    );
  });
});

describe('non-canonical base64url (the same signature under another text)', () => {
  /** `token` with the last character of its signature replaced by one that decodes to the same bytes. */
  function sameBytesOtherText(token: string): string {
    const [h, p, s] = token.split('.') as [string, string, string];
    const bytes = Buffer.from(s, 'base64url');
    const unusedBits = (s.length * 6) % 8;
    expect(unusedBits).toBeGreaterThan(0);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(s.at(-1)!);
    const other = `${s.slice(0, -1)}${alphabet[last ^ 1]!}`;
    expect(Buffer.from(other, 'base64url').equals(bytes)).toBe(true);
    return `${h}.${p}.${other}`;
  }

  it('an inbound token whose signature decodes to the same bytes is refused as TOKEN_MALFORMED', async () => {
    const v = new TokenVerifier([parseTrustConfig({ humans: [{ issuer: humans.issuer, audience: 'custody', jwks: humans.jwks }] }).humans[0]!], 'humans');
    await expect(v.verify(sameBytesOtherText(humanToken), 'subject_token')).rejects.toMatchObject({ code: 'TOKEN_MALFORMED' });
  });

  it('a session credential whose signature decodes to the same bytes is refused', async () => {
    await expect(authority.verifyCredential(sameBytesOtherText(credential))).rejects.toMatchObject({ code: 'TOKEN_MALFORMED' });
  });
});

describe("the SDK's credential reader (credentialFacts)", () => {
  it('reads the facts of a real credential', () => {
    const facts = credentialFacts(credential);
    expect(facts).toMatchObject({ initiator: { type: 'human', id: 'alice@example.com' }, actor: { type: 'agent', id: 'agent:refunds' }, scope: ['refunds:read'] });
    expect(Date.parse(facts.expiresAt)).toBeGreaterThan(Date.now());
  });

  it('throws only TypeError on arbitrary and mutated tokens, and never returns principals without ids', () => {
    const claims = fc.record(
      {
        sid: fc.oneof(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 1 })),
        sub: fc.oneof(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 1 })),
        act: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.record({ sub: fc.string({ maxLength: 8 }), act: fc.jsonValue({ maxDepth: 2 }) })),
        exp: fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 5 }), fc.constant(8.64e15 + 1)),
        scope: fc.jsonValue({ maxDepth: 1 }),
        jti: fc.jsonValue({ maxDepth: 1 }),
        custody: fc.jsonValue({ maxDepth: 2 }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(
        fc.oneof(
          tokenish,
          claims.map((c) => `${b64({ alg: 'EdDSA' })}.${b64(c)}.sig`),
          fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([p, x]) => mutateByte(credential, p, x)),
        ),
        (t) => {
          let facts: ReturnType<typeof credentialFacts>;
          try {
            facts = credentialFacts(t);
          } catch (err) {
            if (!(err instanceof TypeError)) throw new Error(`threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, { cause: err });
            return;
          }
          for (const link of facts.chain) expect(typeof link.principal.id).toBe('string');
          expect(Number.isNaN(Date.parse(facts.expiresAt))).toBe(false);
        },
      ),
      { numRuns: RUNS * 5 },
    );
  });
});
