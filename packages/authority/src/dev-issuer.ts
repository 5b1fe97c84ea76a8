/**
 * The development issuer: a local OIDC-style issuer that mints human and agent
 * test tokens (`custody dev-tokens`), so a new user can try the whole flow in
 * minutes. DEVELOPMENT ONLY: the server trusts it only when started with
 * `custody up --dev-issuer`, and every session it backs says so.
 */
import { join } from 'node:path';

import { SignJWT } from 'jose';
import { v7 as uuidv7 } from 'uuid';

import { loadSigningKey, type SigningKey } from './signing-key.js';
import { parseTrustConfig, type IssuerTrust } from './trust-config.js';

/** The issuer of development human tokens. */
export const DEV_HUMAN_ISSUER = 'urn:custody:dev-issuer:development-only:humans';
/** The issuer of development agent tokens. */
export const DEV_AGENT_ISSUER = 'urn:custody:dev-issuer:development-only:agents';
/** The audience of development tokens for token exchange (`subject_token`, `actor_token`). */
export const DEV_AUDIENCE = 'custody';
/** The audience of development approver tokens (POST /v1/approvals/:id): never the token-exchange one. */
export const DEV_APPROVER_AUDIENCE = 'custody-approvals';
/** The dev issuer's key file in the data folder. */
export const DEV_ISSUER_KEY_FILE = 'dev-issuer.key';

/** Loads (or creates, mode 0600) the dev issuer's Ed25519 key in `dataDir`. */
export function loadDevIssuerKey(dataDir: string): SigningKey {
  return loadSigningKey(join(dataDir, DEV_ISSUER_KEY_FILE), { create: true }).key;
}

/** The trust entries that make a server trust the dev issuer (humans and agents, separately). */
export function devIssuerTrust(key: SigningKey): { humans: IssuerTrust; agents: IssuerTrust } {
  const entry = (issuer: string, name: string) => ({ issuer, audience: DEV_AUDIENCE, algorithms: ['EdDSA'], jwks: { keys: [{ ...key.publicJwk }] }, name, development: true });
  const cfg = parseTrustConfig({
    humans: [{ ...entry(DEV_HUMAN_ISSUER, 'dev issuer for humans (DEVELOPMENT ONLY)'), approverAudience: DEV_APPROVER_AUDIENCE }],
    agents: [entry(DEV_AGENT_ISSUER, 'dev issuer for agents (DEVELOPMENT ONLY)')],
  });
  return { humans: cfg.humans[0]!, agents: cfg.agents[0]! };
}

/** What to mint. */
export interface DevTokenOptions {
  /** The human's subject, e.g. `alice@example.com`. */
  human: string;
  /** The agent's subject, e.g. `agent:refunds`. */
  agent: string;
  /** Also mint an approver token (audience {@link DEV_APPROVER_AUDIENCE}) for this human, e.g. `bob@example.com`. */
  approver?: string;
  /** Token lifetime in seconds. Default 3600. */
  ttlSeconds?: number;
  now?: Date;
}

/** Development tokens, ready for POST /oauth/token. */
export interface DevTokens {
  subject_token: string;
  subject_token_type: 'urn:ietf:params:oauth:token-type:jwt';
  actor_token: string;
  actor_token_type: 'urn:ietf:params:oauth:token-type:jwt';
  /** With `approver`: a human token for POST /v1/approvals/:id (bearer), not for token exchange. */
  approver_token?: string;
  expires_at: string;
  issuer: { humans: string; agents: string };
  warning: string;
}

/**
 * Mints a human token and an agent token from the dev issuer.
 * @example
 * const t = await mintDevTokens(loadDevIssuerKey('.custody'), { human: 'alice@example.com', agent: 'agent:refunds' });
 */
export async function mintDevTokens(key: SigningKey, opts: DevTokenOptions): Promise<DevTokens> {
  const now = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  const exp = now + (opts.ttlSeconds ?? 3600);
  const sign = (iss: string, sub: string, extra: Record<string, unknown>, aud = DEV_AUDIENCE) =>
    new SignJWT({ ...extra, custody_dev: 'development only' })
      .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT' })
      .setIssuer(iss)
      .setSubject(sub)
      .setAudience(aud)
      .setIssuedAt(now)
      .setExpirationTime(exp)
      .setJti(uuidv7())
      .sign(key.privateKey);
  const jwtType = 'urn:ietf:params:oauth:token-type:jwt' as const;
  return {
    subject_token: await sign(DEV_HUMAN_ISSUER, opts.human, opts.human.includes('@') ? { email: opts.human } : {}),
    subject_token_type: jwtType,
    actor_token: await sign(DEV_AGENT_ISSUER, opts.agent, {}),
    actor_token_type: jwtType,
    ...(opts.approver !== undefined ? { approver_token: await sign(DEV_HUMAN_ISSUER, opts.approver, opts.approver.includes('@') ? { email: opts.approver } : {}, DEV_APPROVER_AUDIENCE) } : {}),
    expires_at: new Date(exp * 1000).toISOString(),
    issuer: { humans: DEV_HUMAN_ISSUER, agents: DEV_AGENT_ISSUER },
    warning: 'DEVELOPMENT ONLY: these tokens come from the local dev issuer; a server trusts them only with custody up --dev-issuer',
  };
}
