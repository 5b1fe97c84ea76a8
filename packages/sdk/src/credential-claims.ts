/**
 * What the SDK reads from its own session credential (a JWT Custody issued and
 * handed to it directly): the session, the initiator and the acting agent. The
 * SDK does not verify the signature — the server does, on every decision — so
 * principals it writes carry no `verified` flag.
 * @internal
 */
import { fromBase64url, sha256, toBase64url } from '@custody/core';

/** A principal as the envelope writes it. */
export interface Principal {
  type: 'human' | 'agent' | 'workload' | 'service';
  id: string;
  issuer?: string;
  name?: string;
  verified?: boolean;
}

/** One link of a delegation chain, root first. */
export interface DelegationLink {
  principal: Principal;
  scope?: string[];
  session?: string;
}

interface ActClaim {
  sub: string;
  iss?: string;
  act?: ActClaim;
}

/** The session facts in a credential. */
export interface CredentialFacts {
  sessionId: string;
  jti: string;
  fingerprint: string;
  initiator: Principal;
  actor: Principal;
  chain: DelegationLink[];
  scope: string[];
  expiresAt: string;
  tenant?: string;
  depth: number;
  parent?: string;
}

const utf8 = new TextEncoder();

/** SHA-256 fingerprint of a token, as the ledger knows credentials (base64url). */
export function fingerprintOf(token: string): string {
  return toBase64url(sha256(utf8.encode(token)));
}

/** Most agents in a credential's `act` chain (the authority's maxDepth is far lower). */
const MAX_ACT_DEPTH = 64;

/** The claims object of a JWT, or TypeError. */
function claimsOf(token: string): Record<string, unknown> {
  const part = typeof token === 'string' ? token.split('.')[1] : undefined;
  if (part === undefined) throw new TypeError('the session credential is not a JWT');
  let c: unknown;
  try {
    c = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(fromBase64url(part)));
  } catch (cause) {
    throw new TypeError('the session credential is not a JWT: its claims are not base64url JSON', { cause });
  }
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new TypeError('the session credential is not a JWT: its claims are not an object');
  return c as Record<string, unknown>;
}

/**
 * Reads a session credential's claims (not verified: see the top of this file).
 * @throws TypeError for a token that is not a JWT or lacks `sid`, `sub`, `act` (with a `sub` at every level) or a valid `exp`
 */
export function credentialFacts(token: string): CredentialFacts {
  const c = claimsOf(token);
  const sid = c['sid'];
  const sub = c['sub'];
  const act = c['act'] as ActClaim | undefined;
  if (typeof sid !== 'string' || typeof sub !== 'string' || act === undefined) throw new TypeError('the session credential lacks sid, sub or act');
  // act nests the current agent outermost (RFC 8693 §4.1); the chain is root first.
  const agents: ActClaim[] = [];
  for (let a: unknown = act; a !== undefined; a = (a as ActClaim).act) {
    if (a === null || typeof a !== 'object' || typeof (a as ActClaim).sub !== 'string') throw new TypeError('the session credential has an act claim without a sub');
    if (agents.length >= MAX_ACT_DEPTH) throw new TypeError(`the session credential's act chain is deeper than ${MAX_ACT_DEPTH}`);
    agents.unshift(a as ActClaim);
  }
  const exp = c['exp'];
  const expiresAt = typeof exp === 'number' ? new Date(exp * 1000) : undefined;
  if (expiresAt === undefined || Number.isNaN(expiresAt.getTime())) throw new TypeError('the session credential has no valid exp');
  const scope = typeof c['scope'] === 'string' ? c['scope'].split(' ').filter((s) => s !== '') : [];
  const initiator: Principal = { type: 'human', id: sub };
  const links: DelegationLink[] = agents.map((a) => ({ principal: { type: 'agent', id: a.sub, ...(typeof a.iss === 'string' ? { issuer: a.iss } : {}) } }));
  const last = links[links.length - 1]!;
  last.scope = scope;
  last.session = sid;
  const raw = c['custody'];
  const custody = (raw !== null && typeof raw === 'object' ? raw : {}) as { tenant?: unknown; depth?: unknown; parent?: unknown };
  return {
    sessionId: sid,
    jti: String(c['jti']),
    fingerprint: fingerprintOf(token),
    initiator,
    actor: last.principal,
    chain: [{ principal: initiator }, ...links],
    scope,
    expiresAt: expiresAt.toISOString(),
    ...(typeof custody.tenant === 'string' ? { tenant: custody.tenant } : {}),
    depth: typeof custody.depth === 'number' ? custody.depth : agents.length - 1,
    ...(typeof custody.parent === 'string' ? { parent: custody.parent } : {}),
  };
}
