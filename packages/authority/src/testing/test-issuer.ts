/**
 * A real token issuer for tests (an "identity provider" with its own RSA or EC
 * key, real `jose` JWTs) and forgers of the attacks the authority must refuse:
 * unsigned (`alg: none`), HMAC over the public key, foreign keys.
 */
import { createHmac } from 'node:crypto';

import { exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import { v7 as uuidv7 } from 'uuid';

/** A test issuer: one key pair, a JWKS, and a signer. */
export interface TestIssuer {
  issuer: string;
  kid: string;
  alg: string;
  jwks: { keys: JWK[] };
  /** The public key as PEM (what a key-confusion attacker uses as an HMAC secret). */
  publicPem: string;
  /** Signs a JWT with the issuer's key; claims override the defaults (iss, sub, aud, iat, exp, jti). */
  sign(claims: JWTPayload & { sub: string }, opts?: { header?: Record<string, unknown>; lifetime?: number; now?: number }): Promise<string>;
}

/**
 * Creates a test issuer with a fresh key.
 * @example
 * const idp = await createTestIssuer('https://idp.test', 'custody');
 * const token = await idp.sign({ sub: 'alice@example.com' });
 */
export async function createTestIssuer(issuer: string, audience: string | string[], alg: 'RS256' | 'ES256' | 'EdDSA' = 'RS256'): Promise<TestIssuer> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `${alg.toLowerCase()}-${uuidv7().slice(-12)}`;
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return {
    issuer,
    kid,
    alg,
    jwks: { keys: [jwk] },
    publicPem: await exportSPKI(publicKey),
    async sign(claims, opts = {}) {
      const now = opts.now ?? Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: issuer, aud: audience, iat: now, exp: now + (opts.lifetime ?? 600), jti: uuidv7(), ...claims })
        .setProtectedHeader({ alg, kid, typ: 'JWT', ...opts.header })
        .sign(privateKey);
    },
  };
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** An unsigned token (`alg: none`). */
export function unsignedToken(claims: JWTPayload, header: Record<string, unknown> = {}): string {
  return `${b64({ alg: 'none', typ: 'JWT', ...header })}.${b64(claims)}.`;
}

/** A token "signed" with HMAC-SHA256 using `secret` (the key-confusion attack uses the issuer's public key PEM). */
export function hmacToken(claims: JWTPayload, secret: string, header: Record<string, unknown> = {}): string {
  const input = `${b64({ alg: 'HS256', typ: 'JWT', ...header })}.${b64(claims)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** Replaces a token's payload, keeping its header and (now invalid) signature. */
export function tamperedToken(token: string, change: (claims: Record<string, unknown>) => Record<string, unknown>): string {
  const [h, p, s] = token.split('.');
  const claims = JSON.parse(Buffer.from(p!, 'base64url').toString('utf8')) as Record<string, unknown>;
  return `${h}.${b64(change(claims))}.${s}`;
}
