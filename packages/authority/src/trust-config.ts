/**
 * The trust configuration: which issuers Custody believes about humans (OIDC) and
 * about agents and workloads (SPIFFE JWT-SVID trust bundles, or OIDC), and the
 * limits of the sessions it opens. A JSON file (`custody up --trust FILE`); see
 * docs/authority.md, "Trust configuration".
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

import { AuthorityError } from './errors.js';

/** Asymmetric JWS algorithms Custody accepts on inbound tokens. `none` and HMAC never. */
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

/** Where an issuer's verification keys come from: exactly one of these. */
export interface KeySource {
  /** A JWKS URL (fetched, cached, refetched on an unknown `kid`). */
  jwksUri?: string;
  /** A JWKS file (for SPIFFE: the trust bundle, a JWKS with `use: jwt-svid` keys); re-read when it changes. */
  jwksFile?: string;
  /** An inline JWKS. */
  jwks?: { keys: Record<string, unknown>[] };
}

/** One trusted issuer. */
export interface IssuerTrust extends KeySource {
  /** `oidc`: a JWT issuer identified by `iss`; `spiffe`: JWT-SVIDs of one trust domain. */
  type: 'oidc' | 'spiffe';
  /** OIDC issuer identifier (`iss`, exact match). */
  issuer?: string;
  /** SPIFFE trust domain (`example.org`): accepts `sub` = `spiffe://example.org/…`. */
  trustDomain?: string;
  /** The audience the token must carry (any of these). */
  audience: string[];
  /**
   * Humans only: the audience of tokens a human presents to answer approvals
   * (POST /v1/approvals/:id), any of these. Never one of `audience`: a token meant for
   * token exchange, which the agent's side holds, is never an approver credential.
   * Unset: this issuer's tokens never answer approvals (approve API keys still do).
   */
  approverAudience?: string[];
  /** Accepted algorithms (default: every asymmetric one). */
  algorithms: string[];
  /** The tenant whose log records sessions of this issuer's principals. Default `default`. */
  tenant: string;
  /** Leeway for exp/nbf/iat in seconds. Default 30, at most 300. */
  clockToleranceSeconds: number;
  /** Scope tokens a session opened with this issuer's token may hold at most; unset: any. */
  maxScope?: string[];
  /** A label for messages and listings. */
  name: string;
  /** True for the development issuer of `custody up --dev-issuer`. */
  development?: boolean;
}

/** Limits of sessions. */
export interface SessionLimits {
  /** Lifetime when the request names none, in seconds. Default 900. */
  defaultLifetimeSeconds: number;
  /** Longest lifetime; longer requests are capped to it. Default 3600. */
  maxLifetimeSeconds: number;
  /** Deepest delegation (a root session is depth 0). Default 8. */
  maxDepth: number;
}

/** The whole trust configuration. */
export interface TrustConfig {
  /** Custody's own issuer identifier (the `iss` of session credentials); default: the server's URL. */
  issuer?: string;
  humans: IssuerTrust[];
  agents: IssuerTrust[];
  sessions: SessionLimits;
  /** Audiences (resource identifiers) a session credential may name; unset: any. */
  audiences?: string[];
  /** The audience of a credential whose request names none; default: Custody's issuer. */
  defaultAudience?: string;
}

const TENANT = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;

function fail(message: string): never {
  throw new AuthorityError('AUTHORITY_CONFIG_INVALID', `trust configuration: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function strings(v: unknown, where: string, opts: { min?: number } = {}): string[] {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length < (opts.min ?? 0) || list.some((s) => typeof s !== 'string' || s.length === 0 || s.length > 512)) {
    fail(`${where} must be a string or a list of 1-512 character strings`);
  }
  return list as string[];
}

function positiveInt(v: unknown, where: string, fallback: number, max: number): number {
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) > max) fail(`${where} must be an integer from 0 to ${max}`);
  return v as number;
}

const ISSUER_KEYS = new Set(['type', 'issuer', 'trustDomain', 'audience', 'approverAudience', 'algorithms', 'tenant', 'clockToleranceSeconds', 'maxScope', 'name', 'jwksUri', 'jwksFile', 'jwks', 'development']);

function parseIssuer(raw: unknown, where: string, baseDir: string, kinds: readonly ('oidc' | 'spiffe')[]): IssuerTrust {
  if (!isObject(raw)) fail(`${where} must be an object`);
  for (const k of Object.keys(raw)) if (!ISSUER_KEYS.has(k)) fail(`${where}.${k} is not a known field`);
  const type = raw['type'] ?? 'oidc';
  if (!kinds.includes(type as 'oidc')) fail(`${where}.type must be ${kinds.join(' or ')}`);
  const out: IssuerTrust = {
    type: type as 'oidc' | 'spiffe',
    audience: strings(raw['audience'], `${where}.audience`, { min: 1 }),
    algorithms: raw['algorithms'] === undefined ? [...ASYMMETRIC_ALGORITHMS] : strings(raw['algorithms'], `${where}.algorithms`, { min: 1 }),
    tenant: (raw['tenant'] as string | undefined) ?? 'default',
    clockToleranceSeconds: positiveInt(raw['clockToleranceSeconds'], `${where}.clockToleranceSeconds`, 30, 300),
    name: '',
  };
  for (const alg of out.algorithms) {
    if (!(ASYMMETRIC_ALGORITHMS as readonly string[]).includes(alg)) fail(`${where}.algorithms: ${alg} is not allowed; only asymmetric algorithms (${ASYMMETRIC_ALGORITHMS.join(', ')})`);
  }
  if (typeof out.tenant !== 'string' || !TENANT.test(out.tenant)) fail(`${where}.tenant must be 1-63 characters of a-z 0-9 . _ -`);
  if (out.type === 'oidc') {
    if (typeof raw['issuer'] !== 'string' || raw['issuer'] === '') fail(`${where}.issuer is required for an OIDC issuer`);
    out.issuer = raw['issuer'];
  } else {
    if (typeof raw['trustDomain'] !== 'string' || !TRUST_DOMAIN.test(raw['trustDomain'])) fail(`${where}.trustDomain must be a SPIFFE trust domain such as example.org`);
    out.trustDomain = raw['trustDomain'];
  }
  const sources = ['jwksUri', 'jwksFile', 'jwks'].filter((k) => raw[k] !== undefined);
  if (sources.length !== 1) fail(`${where} needs exactly one of jwksUri, jwksFile, jwks`);
  if (raw['jwksUri'] !== undefined) {
    let url: URL;
    try {
      url = new URL(String(raw['jwksUri']));
    } catch {
      fail(`${where}.jwksUri is not a URL`);
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname))) {
      fail(`${where}.jwksUri must be https (http only on loopback)`);
    }
    out.jwksUri = url.href;
  }
  if (raw['jwksFile'] !== undefined) {
    if (typeof raw['jwksFile'] !== 'string' || raw['jwksFile'] === '') fail(`${where}.jwksFile must be a path`);
    out.jwksFile = resolve(baseDir, raw['jwksFile']);
  }
  if (raw['jwks'] !== undefined) {
    const jwks = raw['jwks'];
    if (!isObject(jwks) || !Array.isArray(jwks['keys']) || !jwks['keys'].every(isObject)) fail(`${where}.jwks must be a JWKS: { "keys": [ … ] }`);
    out.jwks = { keys: jwks['keys'] as Record<string, unknown>[] };
  }
  if (raw['maxScope'] !== undefined) out.maxScope = strings(raw['maxScope'], `${where}.maxScope`, { min: 1 });
  if (raw['approverAudience'] !== undefined) {
    if (!where.startsWith('humans')) fail(`${where}.approverAudience is only for humans entries: approvers are humans`);
    const approver = strings(raw['approverAudience'], `${where}.approverAudience`, { min: 1 });
    const shared = approver.filter((a) => out.audience.includes(a));
    if (shared.length > 0) {
      fail(`${where}.approverAudience must not overlap ${where}.audience (${shared.join(', ')}): a token for token exchange, which the agent's side holds, must never answer approvals`);
    }
    out.approverAudience = approver;
  }
  if (raw['development'] === true) out.development = true;
  out.name = typeof raw['name'] === 'string' && raw['name'] !== '' ? raw['name'] : (out.issuer ?? `spiffe://${out.trustDomain ?? ''}`);
  return out;
}

/**
 * Validates a parsed trust configuration (attacker-free, but operator-written:
 * every mistake is named). Relative `jwksFile` paths resolve against `baseDir`.
 * @throws AuthorityError `AUTHORITY_CONFIG_INVALID` naming the field
 */
export function parseTrustConfig(raw: unknown, baseDir = process.cwd()): TrustConfig {
  if (!isObject(raw)) fail('must be a JSON object');
  const known = new Set(['issuer', 'humans', 'agents', 'sessions', 'audiences', 'defaultAudience', '$schema', 'description']);
  for (const k of Object.keys(raw)) if (!known.has(k)) fail(`${k} is not a known field`);
  const list = (k: string) => {
    const v = raw[k] ?? [];
    if (!Array.isArray(v)) fail(`${k} must be a list`);
    return v as unknown[];
  };
  const humans = list('humans').map((h, i) => parseIssuer(h, `humans[${i}]`, baseDir, ['oidc']));
  const agents = list('agents').map((a, i) => parseIssuer(a, `agents[${i}]`, baseDir, ['oidc', 'spiffe']));
  // One issuer is trusted for one kind of principal: a human's token must never pass as an agent's.
  const seen = new Map<string, string>();
  for (const [where, t] of [...humans.map((h, i) => [`humans[${i}]`, h] as const), ...agents.map((a, i) => [`agents[${i}]`, a] as const)]) {
    const id = t.issuer ?? `spiffe://${t.trustDomain ?? ''}`;
    const before = seen.get(id);
    if (before !== undefined) fail(`${where} repeats the issuer ${id} of ${before}: trust each issuer for one kind of principal`);
    seen.set(id, where);
  }
  const s = raw['sessions'] ?? {};
  if (!isObject(s)) fail('sessions must be an object');
  for (const k of Object.keys(s)) if (!['defaultLifetimeSeconds', 'maxLifetimeSeconds', 'maxDepth'].includes(k)) fail(`sessions.${k} is not a known field`);
  const sessions: SessionLimits = {
    maxLifetimeSeconds: positiveInt(s['maxLifetimeSeconds'], 'sessions.maxLifetimeSeconds', 3600, 7 * 24 * 3600),
    defaultLifetimeSeconds: positiveInt(s['defaultLifetimeSeconds'], 'sessions.defaultLifetimeSeconds', 900, 7 * 24 * 3600),
    maxDepth: positiveInt(s['maxDepth'], 'sessions.maxDepth', 8, 64),
  };
  if (sessions.maxLifetimeSeconds < 1) fail('sessions.maxLifetimeSeconds must be at least 1');
  sessions.defaultLifetimeSeconds = Math.max(1, Math.min(sessions.defaultLifetimeSeconds, sessions.maxLifetimeSeconds));
  const out: TrustConfig = { humans, agents, sessions };
  if (raw['issuer'] !== undefined) {
    if (typeof raw['issuer'] !== 'string' || !/^https?:\/\/[^\s]+$/.test(raw['issuer'])) fail('issuer must be an http(s) URL');
    out.issuer = raw['issuer'].replace(/\/+$/, '');
  }
  if (raw['audiences'] !== undefined) out.audiences = strings(raw['audiences'], 'audiences', { min: 1 });
  if (raw['defaultAudience'] !== undefined) out.defaultAudience = strings(raw['defaultAudience'], 'defaultAudience', { min: 1 })[0]!;
  return out;
}

/**
 * Reads and validates a trust configuration file (JSON).
 * @throws AuthorityError `AUTHORITY_CONFIG_INVALID` naming the file and field
 */
export function loadTrustConfig(path: string): TrustConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new AuthorityError('AUTHORITY_CONFIG_INVALID', `cannot read the trust configuration ${path}: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new AuthorityError('AUTHORITY_CONFIG_INVALID', `the trust configuration ${path} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  return parseTrustConfig(raw, dirname(resolve(path)));
}

/** An empty configuration (no trusted issuer) with the default limits. */
export function emptyTrustConfig(): TrustConfig {
  return parseTrustConfig({});
}
