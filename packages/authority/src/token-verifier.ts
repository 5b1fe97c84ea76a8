/**
 * Verifies inbound tokens (humans' OIDC tokens, agents' OIDC tokens and SPIFFE
 * JWT-SVIDs) against the trust configuration, with `jose`. Every refusal is an
 * AuthorityError whose code names the reason: `none`, HMAC (the key-confusion
 * attack), a disallowed algorithm, an untrusted issuer, an unknown `kid`, a bad
 * signature, expiry, not-yet-valid, the wrong audience.
 */
import { statSync, readFileSync } from 'node:fs';

import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
  type ProtectedHeaderParameters,
} from 'jose';

import { AuthorityError } from './errors.js';
import { tokenFingerprint } from './fingerprint.js';
import type { IssuerTrust } from './trust-config.js';

/** Longest token considered (attacker-controlled input). */
export const MAX_TOKEN_LENGTH = 16 * 1024;

/** What a verified token says, and only what was verified. */
export interface VerifiedToken {
  /** How it was verified. */
  method: 'oidc' | 'jwt-svid';
  /** The trusted issuer: `iss` for OIDC, `spiffe://<trust domain>` for a JWT-SVID. */
  issuer: string;
  /** `sub`: the principal (a SPIFFE ID for a JWT-SVID). */
  subject: string;
  /** base64url SHA-256 of the token text; the token itself is never kept. */
  fingerprint: string;
  jti?: string;
  /** `exp` in seconds since the epoch. */
  expiresAt: number;
  alg: string;
  kid?: string;
  claims: JWTPayload;
  trust: IssuerTrust;
}

/** What an unverified token claims, for the record of a refused attempt (never trusted). */
export interface PresentedToken {
  fingerprint: string;
  alg?: string;
  kid?: string;
  claimedIssuer?: string;
  claimedSubject?: string;
}

const TRUNCATE = (s: unknown, n = 256): string | undefined => (typeof s === 'string' ? s.slice(0, n) : undefined);

/** The unverified header and claims of a token, for refusal records. Never throws. */
export function presentedToken(token: string): PresentedToken {
  const out: PresentedToken = { fingerprint: tokenFingerprint(token) };
  try {
    const h = decodeProtectedHeader(token);
    if (typeof h.alg === 'string') out.alg = h.alg.slice(0, 32);
    if (typeof h.kid === 'string') out.kid = h.kid.slice(0, 256);
  } catch {
    // not a JWS
  }
  try {
    const c = decodeJwt(token);
    const iss = TRUNCATE(c.iss);
    const sub = TRUNCATE(c.sub);
    if (iss !== undefined) out.claimedIssuer = iss;
    if (sub !== undefined) out.claimedSubject = sub;
  } catch {
    // not a JWT
  }
  return out;
}

/** Whether `part` (already known to be of the base64url alphabet) is the one unpadded base64url text of the bytes it decodes to. */
function isCanonicalBase64url(part: string): boolean {
  return Buffer.from(part, 'base64url').toString('base64url') === part;
}

/** The header and unverified claims of a compact JWS, or TOKEN_MALFORMED. */
export function decodeUnverified(token: string, field: string): { header: ProtectedHeaderParameters; claims: JWTPayload } {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(token)) {
    throw new AuthorityError('TOKEN_MALFORMED', `${field} is not a compact JWT (three base64url parts, at most ${MAX_TOKEN_LENGTH} characters)`, { field });
  }
  if (!token.split('.').every(isCanonicalBase64url)) {
    // A part whose last character sets unused bits decodes to the same bytes as the
    // canonical text: the same signed token under another text, and so another
    // fingerprint. Refused, so that one token has one fingerprint in the evidence.
    throw new AuthorityError('TOKEN_MALFORMED', `${field} is not canonical base64url (a part has unused bits set or an impossible length)`, { field });
  }
  try {
    return { header: decodeProtectedHeader(token), claims: decodeJwt(token) };
  } catch (err) {
    throw new AuthorityError('TOKEN_MALFORMED', `${field} is not a JWT: ${(err as Error).message}`, { field, cause: err });
  }
}

/**
 * Refuses algorithms that must never verify a token: `none` (unsigned) and HMAC,
 * which with an asymmetric issuer is the key-confusion attack (the public key
 * used as an HMAC secret).
 */
export function checkAlgorithm(alg: unknown, allowed: readonly string[], field: string): string {
  if (typeof alg !== 'string' || alg === '') throw new AuthorityError('TOKEN_MALFORMED', `${field} has no alg header`, { field });
  if (alg.toLowerCase() === 'none') throw new AuthorityError('TOKEN_ALG_NONE', `${field} is unsigned (alg none): refused`, { field });
  if (/^HS\d+$/i.test(alg)) {
    throw new AuthorityError('TOKEN_ALG_SYMMETRIC', `${field} uses the symmetric algorithm ${alg}: refused (an HMAC over a public key is the key-confusion attack)`, { field });
  }
  if (!allowed.includes(alg)) throw new AuthorityError('TOKEN_ALG_NOT_ALLOWED', `${field} uses ${alg}; this issuer's tokens must use ${allowed.join(', ')}`, { field });
  return alg;
}

/** Maps a jose error to an AuthorityError naming the reason. */
export function joseFailure(err: unknown, field: string, who: string): AuthorityError {
  const opts = { field, cause: err };
  if (err instanceof AuthorityError) return err;
  if (err instanceof errors.JWTExpired) return new AuthorityError('TOKEN_EXPIRED', `${field} has expired`, opts);
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
      case 'iat':
        return new AuthorityError('TOKEN_NOT_YET_VALID', `${field} is not valid yet (${err.claim} is in the future)`, opts);
      case 'aud':
        return new AuthorityError('TOKEN_AUDIENCE_INVALID', `${field} is not meant for Custody: its aud is not the audience configured for ${who}`, opts);
      case 'iss':
        return new AuthorityError('TOKEN_ISSUER_INVALID', `${field} does not come from ${who}`, opts);
      default:
        return new AuthorityError('TOKEN_CLAIMS_INVALID', `${field}: ${err.message}`, opts);
    }
  }
  if (err instanceof errors.JWKSNoMatchingKey) return new AuthorityError('TOKEN_KID_UNKNOWN', `${field} is signed with a key (kid) that ${who} does not publish`, opts);
  if (err instanceof errors.JWSSignatureVerificationFailed) return new AuthorityError('TOKEN_SIGNATURE_INVALID', `${field} has an invalid signature`, opts);
  if (err instanceof errors.JOSEAlgNotAllowed) return new AuthorityError('TOKEN_ALG_NOT_ALLOWED', `${field}: ${err.message}`, opts);
  if (err instanceof errors.JWKSTimeout || (err instanceof Error && !(err instanceof errors.JOSEError) && /fetch|ECONN|network/i.test(err.message))) {
    return new AuthorityError('TOKEN_ISSUER_UNAVAILABLE', `the keys of ${who} cannot be fetched now: retry`, opts);
  }
  if (err instanceof errors.JOSEError) return new AuthorityError('TOKEN_MALFORMED', `${field}: ${err.message}`, opts);
  return new AuthorityError('TOKEN_ISSUER_UNAVAILABLE', `${field} could not be verified: ${(err as Error)?.message ?? String(err)}`, opts);
}

type Jwks = Parameters<typeof createLocalJWKSet>[0];

/**
 * The verification keys of a JWKS. A SPIFFE trust bundle marks JWT-SVID keys
 * `use: "jwt-svid"` (and X.509 ones `x509-svid`); jose only takes `sig` keys, so
 * the JWT-SVID keys are handed over as signing keys and the rest dropped.
 */
function verificationKeys(raw: unknown, spiffe: boolean): Jwks {
  const keys = (raw as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) throw new AuthorityError('TOKEN_ISSUER_UNAVAILABLE', 'the issuer key set is not a JWKS');
  if (!spiffe) return { keys } as Jwks;
  return {
    keys: keys
      .filter((k: Record<string, unknown>) => k['use'] === undefined || k['use'] === 'jwt-svid' || k['use'] === 'sig')
      .map((k: Record<string, unknown>) => {
        const { use: _use, ...rest } = k;
        return rest;
      }),
  } as Jwks;
}

/** A key resolver for one issuer: inline, file (re-read when it changes) or URL. */
function keyResolver(trust: IssuerTrust): JWTVerifyGetKey {
  const spiffe = trust.type === 'spiffe';
  if (trust.jwksUri !== undefined && !spiffe) {
    return createRemoteJWKSet(new URL(trust.jwksUri), { timeoutDuration: 5000, cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 });
  }
  if (trust.jwks !== undefined) return createLocalJWKSet(verificationKeys(trust.jwks, spiffe));
  let stamp = '';
  let fetchedAt = 0;
  let set: JWTVerifyGetKey | undefined;
  if (trust.jwksUri !== undefined) {
    // A SPIFFE bundle endpoint: fetched, cached 5 minutes, re-fetched (at most every 30 s) for an unknown kid.
    const url = trust.jwksUri;
    const load = async () => {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      if (!res.ok) throw new AuthorityError('TOKEN_ISSUER_UNAVAILABLE', `the trust bundle of ${trust.name} answered HTTP ${res.status}`);
      set = createLocalJWKSet(verificationKeys(await res.json(), true));
      fetchedAt = Date.now();
    };
    return async (header, token) => {
      if (set === undefined || Date.now() - fetchedAt > 5 * 60_000) await load();
      try {
        return await set!(header, token);
      } catch (err) {
        if (!(err instanceof errors.JWKSNoMatchingKey) || Date.now() - fetchedAt < 30_000) throw err;
        await load();
        return set!(header, token);
      }
    };
  }
  const path = trust.jwksFile!;
  return (header, token) => {
    let now = '';
    try {
      const st = statSync(path);
      now = `${st.mtimeMs}:${st.size}`;
    } catch (err) {
      throw new AuthorityError('TOKEN_ISSUER_UNAVAILABLE', `the key file of ${trust.name} cannot be read`, { cause: err });
    }
    if (set === undefined || now !== stamp) {
      set = createLocalJWKSet(verificationKeys(JSON.parse(readFileSync(path, 'utf8')), spiffe));
      stamp = now;
    }
    return set(header, token);
  };
}

const SPIFFE_ID = /^spiffe:\/\/([a-z0-9._-]{1,255})(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$/;

/** Verifies tokens of one kind of principal against its trusted issuers. */
export class TokenVerifier {
  readonly #entries: { trust: IssuerTrust; keys: JWTVerifyGetKey }[];
  readonly #kind: string;
  readonly #now: () => Date;

  /**
   * @param entries the trusted issuers
   * @param kind what they vouch for, for messages (`humans`, `agents`)
   */
  constructor(entries: readonly IssuerTrust[], kind: string, now: () => Date = () => new Date()) {
    this.#entries = entries.map((trust) => ({ trust, keys: keyResolver(trust) }));
    this.#kind = kind;
    this.#now = now;
  }

  /** True when some trusted issuer would consider this (unverified) `iss`/`sub`. */
  claims(iss: unknown, sub: unknown): IssuerTrust | undefined {
    return this.#find(iss, sub)?.trust;
  }

  #find(iss: unknown, sub: unknown): { trust: IssuerTrust; keys: JWTVerifyGetKey } | undefined {
    return this.#entries.find(({ trust }) =>
      trust.type === 'oidc' ? trust.issuer === iss : typeof sub === 'string' && SPIFFE_ID.exec(sub)?.[1] === trust.trustDomain,
    );
  }

  /**
   * Verifies `token` (attacker-controlled): structure, algorithm, issuer, key,
   * signature, `exp`/`nbf`/`iat` and audience.
   * @param field the request parameter, for messages (`subject_token`)
   * @param audienceOf the audience to require of the matching issuer's tokens (default: its `audience`)
   * @throws AuthorityError naming the reason
   */
  async verify(token: string, field: string, audienceOf: (trust: IssuerTrust) => string[] = (t) => t.audience): Promise<VerifiedToken> {
    const { header, claims } = decodeUnverified(token, field);
    if (header.alg === 'none' || typeof header.alg !== 'string') checkAlgorithm(header.alg, [], field);
    if (/^HS\d+$/i.test(String(header.alg))) checkAlgorithm(header.alg, [], field);
    const entry = this.#find(claims.iss, claims.sub);
    if (entry === undefined) {
      const who = typeof claims.iss === 'string' ? `issuer ${JSON.stringify(claims.iss.slice(0, 200))}` : typeof claims.sub === 'string' && claims.sub.startsWith('spiffe://') ? 'this SPIFFE trust domain' : 'an unnamed issuer';
      throw new AuthorityError('TOKEN_ISSUER_UNTRUSTED', `${field} comes from ${who}, which is not trusted for ${this.#kind}`, { field });
    }
    const { trust, keys } = entry;
    const alg = checkAlgorithm(header.alg, trust.algorithms, field);
    let payload: JWTPayload;
    try {
      const res = await jwtVerify(token, keys, {
        algorithms: trust.algorithms,
        audience: audienceOf(trust),
        clockTolerance: trust.clockToleranceSeconds,
        currentDate: this.#now(),
        requiredClaims: trust.type === 'oidc' ? ['iss', 'sub', 'exp'] : ['sub', 'exp', 'aud'],
        ...(trust.type === 'oidc' ? { issuer: trust.issuer! } : {}),
      });
      payload = res.payload;
    } catch (err) {
      throw joseFailure(err, field, trust.name);
    }
    const sub = payload.sub!;
    if (typeof sub !== 'string' || sub.length === 0 || sub.length > 512) throw new AuthorityError('TOKEN_CLAIMS_INVALID', `${field}: sub must be 1-512 characters`, { field });
    if (trust.type === 'spiffe' && SPIFFE_ID.exec(sub)?.[1] !== trust.trustDomain) {
      throw new AuthorityError('TOKEN_CLAIMS_INVALID', `${field}: sub is not a SPIFFE ID of ${trust.trustDomain}`, { field });
    }
    const out: VerifiedToken = {
      method: trust.type === 'oidc' ? 'oidc' : 'jwt-svid',
      issuer: trust.type === 'oidc' ? trust.issuer! : `spiffe://${trust.trustDomain!}`,
      subject: sub,
      fingerprint: tokenFingerprint(token),
      expiresAt: payload.exp!,
      alg,
      claims: payload,
      trust,
    };
    if (typeof header.kid === 'string') out.kid = header.kid;
    if (typeof payload.jti === 'string') out.jti = payload.jti.slice(0, 256);
    return out;
  }
}
