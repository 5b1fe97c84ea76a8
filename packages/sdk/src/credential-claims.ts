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

/** Reads a session credential's claims. Throws on a token that is not a JWT. */
export function credentialFacts(token: string): CredentialFacts {
  const part = token.split('.')[1];
  if (part === undefined) throw new TypeError('the session credential is not a JWT');
  const c = JSON.parse(new TextDecoder().decode(fromBase64url(part))) as Record<string, unknown>;
  const sid = c['sid'];
  const sub = c['sub'];
  const act = c['act'] as ActClaim | undefined;
  if (typeof sid !== 'string' || typeof sub !== 'string' || act === undefined || typeof act.sub !== 'string') throw new TypeError('the session credential lacks sid, sub or act');
  // act nests the current agent outermost (RFC 8693 §4.1); the chain is root first.
  const agents: ActClaim[] = [];
  for (let a: ActClaim | undefined = act; a !== undefined; a = a.act) agents.unshift(a);
  const scope = typeof c['scope'] === 'string' ? c['scope'].split(' ').filter((s) => s !== '') : [];
  const initiator: Principal = { type: 'human', id: sub };
  const links: DelegationLink[] = agents.map((a) => ({ principal: { type: 'agent', id: a.sub, ...(a.iss !== undefined ? { issuer: a.iss } : {}) } }));
  const last = links[links.length - 1]!;
  last.scope = scope;
  last.session = sid;
  const custody = (c['custody'] ?? {}) as { tenant?: string; depth?: number; parent?: string };
  return {
    sessionId: sid,
    jti: String(c['jti']),
    fingerprint: fingerprintOf(token),
    initiator,
    actor: last.principal,
    chain: [{ principal: initiator }, ...links],
    scope,
    expiresAt: new Date(Number(c['exp']) * 1000).toISOString(),
    ...(typeof custody.tenant === 'string' ? { tenant: custody.tenant } : {}),
    depth: typeof custody.depth === 'number' ? custody.depth : agents.length - 1,
    ...(typeof custody.parent === 'string' ? { parent: custody.parent } : {}),
  };
}
