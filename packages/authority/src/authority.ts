/**
 * The identity authority: opens sessions by RFC 8693 token exchange (a human's
 * token plus an agent's workload token), delegates them with attenuation (scope
 * and lifetime only narrow), revokes a session and every descendant, closes a
 * session with the ledger's seal, expires sessions with a sweeper, and answers
 * RFC 7662 introspection. Every state change is kept in the AuthorityStore and
 * recorded in the tenant's ledger; every refused exchange is recorded too.
 */
import { canonicalJson, type DelegationLink, type EventDraft, type Principal, type Workload } from '@custody/core';
import { createLocalJWKSet, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import { v7 as uuidv7 } from 'uuid';

import type { AuthorityStore, CredentialRecord, Ended, EndChange, SessionListFilter, SessionRecord } from './authority-store.js';
import { AuthorityError } from './errors.js';
import { tokenFingerprint } from './fingerprint.js';
import { parseScope, scopeExcess, scopeText } from './scope.js';
import type { SigningKey } from './signing-key.js';
import { checkAlgorithm, decodeUnverified, joseFailure, presentedToken, type PresentedToken, TokenVerifier, type VerifiedToken } from './token-verifier.js';
import type { TrustConfig } from './trust-config.js';

/** RFC 8693 grant type. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** RFC 8693 token type identifiers. */
export const TOKEN_TYPES = {
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
} as const;
const ACCEPTED_TOKEN_TYPES: readonly string[] = Object.values(TOKEN_TYPES);

/** The principal id of the authority's own steps in the ledger. */
export const AUTHORITY_ACTOR: Principal = { type: 'service', id: 'custody-authority' };

/** Where the authority records events: the ledger (structurally `Ledger.append`). */
export interface EventSink {
  append(tenant: string, drafts: readonly EventDraft[]): Promise<PromiseSettledResult<{ id: string; index: number; seq?: number; duplicate: boolean }>[]>;
}

/** Settings of an authority. */
export interface AuthorityOptions {
  store: AuthorityStore;
  ledger: EventSink;
  trust: TrustConfig;
  signingKey: SigningKey;
  /** Custody's issuer identifier; else `trust.issuer`; else set later with setIssuer (the server's URL). */
  issuer?: string;
  now?: () => Date;
  /** How often the sweeper records expiries and retries queued ledger events, in ms. 0: never (call sweep()). Default 1000. */
  sweepIntervalMs?: number;
  /** Where operational problems go (a failed ledger append is retried, never lost). */
  log?: (message: string, err?: unknown) => void;
}

/** A token request (RFC 8693 §2.1), as form parameters. Every value is attacker-controlled. */
export interface TokenExchangeRequest {
  grant_type?: string;
  subject_token?: string;
  subject_token_type?: string;
  actor_token?: string;
  actor_token_type?: string;
  scope?: string;
  audience?: string[];
  resource?: string[];
  requested_token_type?: string;
  /** Custody extension: the task the session is for (required to open a session). */
  objective?: string;
  /** Custody extension: the lifetime asked for, in seconds. */
  requested_lifetime?: string;
  client_id?: string;
}

/** A successful token response (RFC 8693 §2.2.1), with Custody's session id. */
export interface TokenExchangeResponse {
  access_token: string;
  issued_token_type: typeof TOKEN_TYPES.accessToken;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
  session_id: string;
}

/** The RFC 8693 `act` claim: the current actor, with prior actors nested. */
export interface ActClaim {
  sub: string;
  iss?: string;
  act?: ActClaim;
}

/** An RFC 7662 introspection response. */
export type IntrospectionResponse =
  | { active: false }
  | {
      active: true;
      scope: string;
      client_id: string;
      sub: string;
      aud: string | string[];
      iss: string;
      exp: number;
      iat: number;
      nbf: number;
      jti: string;
      token_type: 'Bearer';
      sid: string;
      act: ActClaim;
      depth: number;
      tenant: string;
    };

/** Who performs a revoke or close. */
export interface Requester {
  principal: Principal;
  /** Why, recorded in the ledger. */
  reason?: string;
}

/** A session with its credentials, as the API shows it. */
export interface SessionView extends SessionRecord {
  credentials: CredentialRecord[];
}

/** What a credential verified by the authority says. */
export interface VerifiedCredential {
  claims: JWTPayload;
  session: SessionRecord;
  credential: CredentialRecord;
}

const MAX_OBJECTIVE = 4096;
/** C0 controls but tab and line feed, DEL, C1 controls, and the bidi embedding, override and isolate characters. */
const UNSHOWABLE = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]/;
const MAX_AUDIENCES = 16;
const OUTBOX_LEASE_MS = 30_000;
/** Most session credentials whose verified signature is remembered (oldest dropped first). */
const SIGNATURE_CACHE_SIZE = 10_000;

function bad(code: ConstructorParameters<typeof AuthorityError>[0], message: string, field?: string): AuthorityError {
  return new AuthorityError(code, message, field !== undefined ? { field } : undefined);
}

/** The `act` claim of a delegation chain: the last agent outermost (RFC 8693 §4.1). */
export function actOf(chain: readonly DelegationLink[]): ActClaim {
  let act: ActClaim | undefined;
  for (const link of chain.slice(1)) {
    act = { sub: link.principal.id, ...(link.principal.issuer !== undefined ? { iss: link.principal.issuer } : {}), ...(act !== undefined ? { act } : {}) };
  }
  if (act === undefined) throw new Error('a chain has an initiator and at least one agent');
  return act;
}

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

/** The identity authority. Create with `Authority.open`. */
export class Authority {
  readonly store: AuthorityStore;
  readonly trust: TrustConfig;
  readonly #ledger: EventSink;
  readonly #key: SigningKey;
  readonly #humans: TokenVerifier;
  readonly #agents: TokenVerifier;
  readonly #now: () => Date;
  readonly #log: (message: string, err?: unknown) => void;
  readonly #sweepMs: number;
  #issuer: string | undefined;
  #keys: { set: ReturnType<typeof createLocalJWKSet>; kids: Set<string>; at: number } | undefined;
  /**
   * Session credentials whose signature was verified, by their exact text, with the
   * verified claims: a credential is presented on every tool call, and its signature
   * cannot change. Only the signature check is skipped on a hit; `exp` and every live
   * check (issued here, fingerprint, active credential and session) run each time.
   */
  readonly #signatureChecked = new Map<string, JWTPayload>();
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<unknown> | undefined;
  #closed = false;
  readonly #beforeClose = new Set<(tenant: string, sessionId: string) => Promise<void>>();

  private constructor(opts: AuthorityOptions) {
    this.store = opts.store;
    this.trust = opts.trust;
    this.#ledger = opts.ledger;
    this.#key = opts.signingKey;
    this.#now = opts.now ?? (() => new Date());
    this.#humans = new TokenVerifier(opts.trust.humans, 'humans', this.#now);
    this.#agents = new TokenVerifier(opts.trust.agents, 'agents and workloads', this.#now);
    this.#log = opts.log ?? (() => undefined);
    this.#sweepMs = opts.sweepIntervalMs ?? 1000;
    this.#issuer = opts.issuer ?? opts.trust.issuer;
  }

  /**
   * Migrates the store, publishes the signing key and starts the sweeper.
   * @example
   * const authority = await Authority.open({ store, ledger, trust: loadTrustConfig('trust.json'), signingKey, issuer: 'https://custody.example' });
   */
  static async open(opts: AuthorityOptions): Promise<Authority> {
    const a = new Authority(opts);
    await a.store.migrate();
    await a.store.putSigningKey(a.#key.kid, { ...a.#key.publicJwk }, a.#now().toISOString());
    if (a.#sweepMs > 0) a.#schedule();
    return a;
  }

  /** Custody's issuer identifier (`iss` of every session credential). */
  get issuer(): string {
    if (this.#issuer === undefined) throw new AuthorityError('AUTHORITY_CONFIG_INVALID', 'the authority has no issuer yet: set one in the trust configuration or call setIssuer');
    return this.#issuer;
  }

  /** Sets the issuer when none was configured (the server's URL, known once it listens). */
  setIssuer(issuer: string): void {
    this.#issuer ??= issuer.replace(/\/+$/, '');
  }

  /** The current signing key's id. */
  get kid(): string {
    return this.#key.kid;
  }

  /** True when a development issuer is trusted. */
  get devIssuer(): boolean {
    return [...this.trust.humans, ...this.trust.agents].some((t) => t.development === true);
  }

  // ---- token exchange ---------------------------------------------------------

  /**
   * RFC 8693 token exchange. A human's token as `subject_token` opens a session;
   * a Custody session credential as `subject_token` delegates a child session.
   * `actor_token` is the (sub-)agent's workload token in both. A refusal is
   * recorded in the ledger before it is thrown.
   * @throws AuthorityError with the OAuth error code in `oauth`
   */
  async exchange(req: TokenExchangeRequest): Promise<TokenExchangeResponse> {
    const ctx: RefusalContext = { request: req };
    try {
      return await this.#exchange(req, ctx);
    } catch (err) {
      if (err instanceof AuthorityError && err.code !== 'TOKEN_ISSUER_UNAVAILABLE') await this.#recordRefusal(ctx, err);
      throw err;
    }
  }

  async #exchange(req: TokenExchangeRequest, ctx: RefusalContext): Promise<TokenExchangeResponse> {
    if (req.grant_type !== TOKEN_EXCHANGE_GRANT) {
      throw bad('GRANT_TYPE_UNSUPPORTED', `grant_type must be ${TOKEN_EXCHANGE_GRANT}`, 'grant_type');
    }
    for (const [name, value] of [
      ['subject_token', req.subject_token],
      ['actor_token', req.actor_token],
    ] as const) {
      if (value === undefined || value === '') {
        throw bad('EXCHANGE_INVALID', name === 'actor_token' ? "actor_token is required: the acting agent's workload token" : "subject_token is required: the human's token, or a Custody session credential to delegate", name);
      }
    }
    for (const [name, value] of [
      ['subject_token_type', req.subject_token_type],
      ['actor_token_type', req.actor_token_type],
    ] as const) {
      if (value === undefined || value === '') throw bad('EXCHANGE_INVALID', `${name} is required`, name);
      if (!ACCEPTED_TOKEN_TYPES.includes(value)) throw bad('TOKEN_TYPE_UNSUPPORTED', `${name} must be one of ${ACCEPTED_TOKEN_TYPES.join(', ')}`, name);
    }
    if (req.requested_token_type !== undefined && req.requested_token_type !== TOKEN_TYPES.accessToken && req.requested_token_type !== TOKEN_TYPES.jwt) {
      throw bad('TOKEN_TYPE_UNSUPPORTED', `requested_token_type must be ${TOKEN_TYPES.accessToken} or ${TOKEN_TYPES.jwt}`, 'requested_token_type');
    }
    if (req.client_id !== undefined && (req.client_id.length === 0 || req.client_id.length > 256)) throw bad('EXCHANGE_INVALID', 'client_id must be 1-256 characters', 'client_id');
    const subjectToken = req.subject_token!;
    const actorToken = req.actor_token!;
    ctx.subject = presentedToken(subjectToken);
    ctx.actor = presentedToken(actorToken);

    const { claims } = decodeUnverified(subjectToken, 'subject_token');
    if (this.#issuer !== undefined && claims.iss === this.#issuer) return this.#delegate(req, subjectToken, actorToken, ctx);
    return this.#open(req, subjectToken, actorToken, ctx);
  }

  async #open(req: TokenExchangeRequest, subjectToken: string, actorToken: string, ctx: RefusalContext): Promise<TokenExchangeResponse> {
    const human = await this.#humans.verify(subjectToken, 'subject_token');
    ctx.human = human;
    ctx.tenant = human.trust.tenant;
    if (human.claims['act'] !== undefined) {
      throw bad('TOKEN_ACT_UNEXPECTED', 'subject_token carries an act claim: Custody builds delegation chains itself; to delegate, present a Custody session credential as subject_token', 'subject_token');
    }
    const agent = await this.#agents.verify(actorToken, 'actor_token');
    ctx.agent = agent;
    if (agent.claims['act'] !== undefined) throw bad('TOKEN_ACT_UNEXPECTED', 'actor_token carries an act claim: a workload token names one actor', 'actor_token');
    if (agent.trust.tenant !== human.trust.tenant) {
      throw bad('TENANT_MISMATCH', `the agent's issuer serves tenant ${agent.trust.tenant}, the human's ${human.trust.tenant}`, 'actor_token');
    }
    if (req.scope === undefined) throw bad('SCOPE_INVALID', 'scope is required: name what the session may do (space-delimited), e.g. "refunds:read refunds:create"', 'scope');
    const scope = parseScope(req.scope);
    for (const trust of [human.trust, agent.trust]) {
      if (trust.maxScope === undefined) continue;
      const excess = scopeExcess(scope, trust.maxScope);
      if (excess.length > 0) throw bad('SCOPE_INVALID', `scope ${excess.join(' ')} is beyond what ${trust.name} may grant`, 'scope');
    }
    const audience = this.#audience(req);
    const objective = this.#objective(req.objective, true)!;
    const now = this.#now();
    const nowS = Math.floor(now.getTime() / 1000);
    const limits = this.trust.sessions;
    const asked = this.#lifetime(req.requested_lifetime);
    // Opening: a longer request is capped to the configured maximum.
    const lifetime = Math.min(asked ?? limits.defaultLifetimeSeconds, limits.maxLifetimeSeconds);
    const exp = nowS + lifetime;

    const id = `ses-${uuidv7()}`;
    const initiator = principalOf('human', human);
    const actor = principalOf('agent', agent);
    const session: SessionRecord = {
      tenant: human.trust.tenant,
      id,
      root: id,
      depth: 0,
      initiator,
      agent: actor,
      chain: [{ principal: initiator }, { principal: actor, scope, session: id }],
      workload: workloadOf(agent),
      scope,
      audience,
      objective,
      ...(req.client_id !== undefined ? { clientId: req.client_id } : {}),
      createdAt: iso(nowS),
      expiresAt: iso(exp),
      status: 'active',
    };
    const { token, credential } = await this.#sign(session, nowS, exp);
    const opened = uuidv7();
    const drafts: EventDraft[] = [
      {
        id: opened,
        type: 'session.opened',
        time: now.toISOString(),
        session: { id, objective },
        initiator,
        actor,
        chain: session.chain,
        workload: session.workload!,
        data: {
          scope,
          audience,
          expiresAt: session.expiresAt,
          depth: 0,
          subjectToken: tokenRecord(human),
          actorToken: tokenRecord(agent),
          ...(req.client_id !== undefined ? { clientId: req.client_id } : {}),
          ...(human.trust.development === true || agent.trust.development === true ? { development: 'a development-only issuer vouched for this session' } : {}),
        },
      },
      this.#issuedDraft(session, credential, opened, now),
    ];
    await this.#commitSession(session, credential, drafts);
    return this.#response(token, session, exp - nowS);
  }

  async #delegate(req: TokenExchangeRequest, subjectToken: string, actorToken: string, ctx: RefusalContext): Promise<TokenExchangeResponse> {
    const parent = await this.verifyCredential(subjectToken, 'subject_token', ctx);
    const p = parent.session;
    const sub = await this.#agents.verify(actorToken, 'actor_token');
    ctx.agent = sub;
    if (sub.claims['act'] !== undefined) throw bad('TOKEN_ACT_UNEXPECTED', 'actor_token carries an act claim: a workload token names one actor', 'actor_token');
    if (sub.trust.tenant !== p.tenant) throw bad('TENANT_MISMATCH', `the sub-agent's issuer serves tenant ${sub.trust.tenant}, the session's ${p.tenant}`, 'actor_token');
    if (p.depth + 1 > this.trust.sessions.maxDepth) throw bad('DELEGATION_TOO_DEEP', `delegation deeper than ${this.trust.sessions.maxDepth} is refused`, 'subject_token');
    // Attenuation: the child's scope, audience and lifetime only narrow. A wider
    // request is refused whole, never trimmed into a smaller grant.
    const scope = req.scope === undefined ? p.scope : parseScope(req.scope);
    const wider = scopeExcess(scope, p.scope);
    if (wider.length > 0) throw bad('SCOPE_WIDENED', `delegation cannot widen scope: the parent session does not hold ${wider.join(' ')}`, 'scope');
    const asked = this.#audience(req, p.audience);
    const widerAud = asked.filter((a) => !p.audience.includes(a));
    if (widerAud.length > 0) throw bad('AUDIENCE_WIDENED', `delegation cannot widen the audience: the parent session is not for ${widerAud.join(' ')}`, 'audience');
    const now = this.#now();
    const nowS = Math.floor(now.getTime() / 1000);
    const parentExp = Math.floor(Date.parse(p.expiresAt) / 1000);
    const lifetime = this.#lifetime(req.requested_lifetime);
    if (lifetime !== undefined && nowS + lifetime > parentExp) {
      throw bad('LIFETIME_EXTENDED', `delegation cannot outlive its parent: the parent session expires at ${p.expiresAt}, ${parentExp - nowS} s from now; asked ${lifetime} s`, 'requested_lifetime');
    }
    const exp = Math.min(nowS + (lifetime ?? this.trust.sessions.defaultLifetimeSeconds), parentExp);
    const objective = this.#objective(req.objective, false) ?? p.objective;

    const id = `ses-${uuidv7()}`;
    const actor = principalOf('agent', sub);
    const session: SessionRecord = {
      tenant: p.tenant,
      id,
      parent: p.id,
      root: p.root,
      depth: p.depth + 1,
      initiator: p.initiator,
      agent: actor,
      chain: [...p.chain, { principal: actor, scope, session: id }],
      workload: workloadOf(sub),
      scope,
      audience: asked,
      objective,
      ...(req.client_id !== undefined ? { clientId: req.client_id } : {}),
      createdAt: iso(nowS),
      expiresAt: iso(exp),
      status: 'active',
    };
    const { token, credential } = await this.#sign(session, nowS, exp);
    const inParent = uuidv7();
    const inChild = uuidv7();
    const common = { scope, audience: asked, expiresAt: session.expiresAt, depth: session.depth };
    const drafts: EventDraft[] = [
      {
        id: inParent,
        type: 'session.delegated',
        time: now.toISOString(),
        session: { id: p.id },
        initiator: p.initiator,
        actor: p.agent,
        chain: p.chain,
        data: { ...common, child: id, childAgent: actor, parentCredential: { jti: parent.credential.jti, fingerprint: parent.credential.fingerprint }, actorToken: tokenRecord(sub) },
      },
      {
        id: inChild,
        type: 'session.delegated',
        time: now.toISOString(),
        session: { id, parent: p.id, objective },
        initiator: p.initiator,
        actor,
        chain: session.chain,
        workload: session.workload!,
        cause: inParent,
        data: {
          ...common,
          parent: p.id,
          parentScope: p.scope,
          parentExpiresAt: p.expiresAt,
          subjectToken: { issuer: this.issuer, subject: p.initiator.id, fingerprint: parent.credential.fingerprint, jti: parent.credential.jti, method: 'custody-session' },
          actorToken: tokenRecord(sub),
          ...(req.client_id !== undefined ? { clientId: req.client_id } : {}),
        },
      },
      this.#issuedDraft(session, credential, inChild, now),
    ];
    await this.#commitSession(session, credential, drafts);
    return this.#response(token, session, exp - nowS);
  }

  #audience(req: TokenExchangeRequest, fallback?: string[]): string[] {
    const asked = [...(req.audience ?? []), ...(req.resource ?? [])];
    if (asked.length === 0) return fallback ?? [this.trust.defaultAudience ?? this.issuer];
    if (asked.length > MAX_AUDIENCES || asked.some((a) => typeof a !== 'string' || a.length === 0 || a.length > 512)) {
      throw bad('AUDIENCE_INVALID', `audience and resource: at most ${MAX_AUDIENCES} values of 1-512 characters`, 'audience');
    }
    for (const r of req.resource ?? []) {
      if (!/^[a-z][a-z0-9+.-]*:[^\s#]+$/i.test(r)) throw bad('AUDIENCE_INVALID', 'resource must be an absolute URI without a fragment (RFC 8707)', 'resource');
    }
    const allowed = this.trust.audiences;
    const unknown = allowed === undefined ? [] : asked.filter((a) => !allowed.includes(a));
    if (unknown.length > 0) throw bad('AUDIENCE_INVALID', `Custody does not issue credentials for ${unknown.join(' ')}`, 'audience');
    return [...new Set(asked)];
  }

  #objective(text: string | undefined, required: boolean): string | undefined {
    if (text === undefined || text.trim() === '') {
      if (required) throw bad('EXCHANGE_INVALID', 'objective is required: state the task this session is for', 'objective');
      return undefined;
    }
    if (text.length > MAX_OBJECTIVE) throw bad('EXCHANGE_INVALID', `objective must be at most ${MAX_OBJECTIVE} characters`, 'objective');
    // The objective is the agent side's text, shown to approvers and investigators: no
    // control or bidi characters that could rewrite what a terminal or a page shows.
    const at = text.search(UNSHOWABLE);
    if (at >= 0) {
      const code = text.codePointAt(at)!.toString(16).toUpperCase().padStart(4, '0');
      throw bad('EXCHANGE_INVALID', `objective must not contain control or bidi characters (U+${code} at position ${at}); tabs and line breaks are allowed`, 'objective');
    }
    return text;
  }

  #lifetime(text: string | undefined): number | undefined {
    if (text === undefined || text === '') return undefined;
    if (!/^\d{1,9}$/.test(text) || Number(text) < 1) throw bad('LIFETIME_INVALID', 'requested_lifetime must be a whole number of seconds, at least 1', 'requested_lifetime');
    return Number(text);
  }

  async #sign(session: SessionRecord, iat: number, exp: number): Promise<{ token: string; credential: CredentialRecord }> {
    const jti = uuidv7();
    const token = await new SignJWT({
      sid: session.id,
      scope: scopeText(session.scope),
      client_id: session.clientId ?? session.agent.id,
      act: actOf(session.chain),
      custody: { tenant: session.tenant, depth: session.depth, root: session.root, ...(session.parent !== undefined ? { parent: session.parent } : {}) },
    })
      .setProtectedHeader({ alg: 'EdDSA', kid: this.#key.kid, typ: 'at+jwt' })
      .setIssuer(this.issuer)
      .setSubject(session.initiator.id)
      .setAudience(session.audience.length === 1 ? session.audience[0]! : session.audience)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(exp)
      .setJti(jti)
      .sign(this.#key.privateKey);
    const credential: CredentialRecord = {
      jti,
      tenant: session.tenant,
      sessionId: session.id,
      fingerprint: tokenFingerprint(token),
      issuedAt: iso(iat),
      expiresAt: iso(exp),
      status: 'active',
    };
    return { token, credential };
  }

  #issuedDraft(session: SessionRecord, c: CredentialRecord, cause: string, now: Date): EventDraft {
    return {
      id: uuidv7(),
      type: 'credential.issued',
      time: now.toISOString(),
      session: { id: session.id },
      initiator: session.initiator,
      actor: AUTHORITY_ACTOR,
      chain: session.chain,
      cause,
      credential: { jti: c.jti, fingerprint: c.fingerprint, scope: session.scope, audience: session.audience, issuedAt: c.issuedAt, expiresAt: c.expiresAt, depth: session.depth },
      data: { issuer: this.issuer, kid: this.#key.kid, subject: session.initiator.id, actor: session.agent.id },
    };
  }

  /**
   * Stores the session, then records it; the token is handed out only after both.
   * If the ledger refuses, the session is revoked at once (nobody holds its token).
   */
  async #commitSession(session: SessionRecord, credential: CredentialRecord, drafts: EventDraft[]): Promise<void> {
    if (!(await this.store.createSession(session, credential))) {
      // The parent was revoked, closed or expired while this delegation was being
      // issued: nothing was stored, and the token is never handed out.
      throw bad('TOKEN_INACTIVE', `subject_token is no longer active: its session ${session.parent} ended while this delegation was issued`, 'subject_token');
    }
    let results: PromiseSettledResult<unknown>[];
    try {
      results = await this.#ledger.append(session.tenant, drafts);
    } catch (err) {
      results = drafts.map(() => ({ status: 'rejected', reason: err }) as const);
    }
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed === undefined) return;
    const openedRecorded = results.some((r, i) => r.status === 'fulfilled' && drafts[i]!.session?.id === session.id);
    await this.store.endSessions(session.tenant, [session.id], { status: 'revoked', at: this.#now().toISOString(), by: AUTHORITY_ACTOR.id, reason: 'issuance not recorded' }, (ended) =>
      openedRecorded ? this.#endDrafts(ended, { principal: AUTHORITY_ACTOR, reason: 'issuance could not be recorded' }, 'revoked', session.id) : [],
    );
    await this.flush().catch(() => undefined);
    throw failed.reason;
  }

  #response(token: string, session: SessionRecord, expiresIn: number): TokenExchangeResponse {
    return { access_token: token, issued_token_type: TOKEN_TYPES.accessToken, token_type: 'Bearer', expires_in: expiresIn, scope: scopeText(session.scope), session_id: session.id };
  }

  // ---- credentials ------------------------------------------------------------

  async #keySet(kid: unknown): Promise<ReturnType<typeof createLocalJWKSet>> {
    const stale = this.#keys === undefined || (typeof kid === 'string' && !this.#keys.kids.has(kid) && Date.now() - this.#keys.at > 1000);
    if (stale) {
      const keys = await this.store.signingKeys();
      this.#keys = { set: createLocalJWKSet({ keys: keys as never }), kids: new Set(keys.map((k) => String(k['kid']))), at: Date.now() };
    }
    return this.#keys!.set;
  }

  /**
   * Verifies a Custody session credential (attacker-controlled): signature by a
   * published key, issuer, expiry, and that its credential and session are
   * active in the store, and its claims are what was issued (a forged `act`
   * chain never passes).
   * @throws AuthorityError `TOKEN_*`; `TOKEN_INACTIVE` for a revoked, closed or expired one
   */
  async verifyCredential(token: string, field = 'token', ctx?: RefusalContext): Promise<VerifiedCredential> {
    const { header, claims } = decodeUnverified(token, field);
    checkAlgorithm(header.alg, ['EdDSA'], field);
    if (claims.iss !== this.issuer) throw bad('TOKEN_ISSUER_INVALID', `${field} was not issued by this Custody (${this.issuer})`, field);
    let payload = this.#signatureChecked.get(token);
    if (payload !== undefined && payload.exp! * 1000 <= this.#now().getTime()) {
      this.#signatureChecked.delete(token);
      throw bad('TOKEN_EXPIRED', `${field} has expired`, field);
    }
    if (payload === undefined) {
      try {
        const keys = await this.#keySet(header.kid);
        payload = (await jwtVerify(token, keys, { issuer: this.issuer, algorithms: ['EdDSA'], currentDate: this.#now(), requiredClaims: ['jti', 'sub', 'exp', 'iat'] })).payload;
      } catch (err) {
        throw joseFailure(err, field, 'this Custody');
      }
      if (this.#signatureChecked.size >= SIGNATURE_CACHE_SIZE) this.#signatureChecked.delete(this.#signatureChecked.keys().next().value!);
      this.#signatureChecked.set(token, payload);
    }
    const jti = payload.jti!;
    const credential = await this.store.getCredential(jti);
    const sid = payload['sid'];
    if (credential === undefined || typeof sid !== 'string' || credential.sessionId !== sid || credential.fingerprint !== tokenFingerprint(token)) {
      throw bad('TOKEN_INACTIVE', `${field} is not a credential this Custody issued`, field);
    }
    const session = await this.store.getSession(credential.tenant, sid);
    if (session === undefined) throw bad('TOKEN_INACTIVE', `${field}: its session is unknown`, field);
    if (ctx !== undefined) {
      ctx.tenant = session.tenant;
      ctx.session = session;
    }
    if (canonicalJson(payload['act'] as never) !== canonicalJson(actOf(session.chain) as never) || payload.sub !== session.initiator.id) {
      throw bad('TOKEN_INACTIVE', `${field}: its act chain or subject is not what was issued`, field);
    }
    this.#assertLive(credential, session, field);
    return { claims: payload, session, credential };
  }

  /**
   * Reads a verified credential's status again, from the store every node shares:
   * for a step committed after its credential was verified (a decision), so that a
   * revocation that took effect in between, on any node, still stops it.
   * @throws AuthorityError `TOKEN_INACTIVE`
   */
  async assertActive(v: VerifiedCredential, field = 'token'): Promise<void> {
    const [credential, session] = await Promise.all([this.store.getCredential(v.credential.jti), this.store.getSession(v.session.tenant, v.session.id)]);
    if (credential === undefined || session === undefined) throw bad('TOKEN_INACTIVE', `${field}: its session is unknown`, field);
    this.#assertLive(credential, session, field);
  }

  #assertLive(credential: CredentialRecord, session: SessionRecord, field: string): void {
    const nowMs = this.#now().getTime();
    if (credential.status !== 'active' || session.status !== 'active' || Date.parse(credential.expiresAt) <= nowMs || Date.parse(session.expiresAt) <= nowMs) {
      const why = session.status !== 'active' ? `its session was ${session.status}${session.endedAt !== undefined ? ` at ${session.endedAt}` : ''}` : credential.status !== 'active' ? `it was ${credential.status}` : 'it has expired';
      throw bad('TOKEN_INACTIVE', `${field} is no longer active: ${why}`, field);
    }
  }

  /**
   * RFC 7662 introspection for a caller of `tenant`: inactive at once when the
   * credential is revoked, closed or expired, or is not this tenant's.
   */
  async introspect(token: string, tenant: string): Promise<IntrospectionResponse> {
    let v: VerifiedCredential;
    try {
      v = await this.verifyCredential(token);
    } catch (err) {
      if (err instanceof AuthorityError) return { active: false };
      throw err;
    }
    if (v.session.tenant !== tenant) return { active: false };
    const c = v.claims;
    return {
      active: true,
      scope: String(c['scope']),
      client_id: String(c['client_id']),
      sub: c.sub!,
      aud: c.aud!,
      iss: c.iss!,
      exp: c.exp!,
      iat: c.iat!,
      nbf: c.nbf ?? c.iat!,
      jti: c.jti!,
      token_type: 'Bearer',
      sid: v.session.id,
      act: c['act'] as ActClaim,
      depth: v.session.depth,
      tenant: v.session.tenant,
    };
  }

  /** Verifies a human's token against the trusted human issuers (for revocation by the initiator). */
  verifyHumanToken(token: string): Promise<VerifiedToken> {
    return this.#humans.verify(token, 'token');
  }

  /**
   * Verifies an approver's token: from a trusted human issuer whose entry has an
   * `approverAudience`, with an `aud` of that list and none of the entry's
   * token-exchange `audience`. A token meant for token exchange (the `subject_token`
   * the agent's side holds) never passes.
   * @throws AuthorityError `TOKEN_AUDIENCE_INVALID` for a valid human token not meant for approvals; other `TOKEN_*` codes
   */
  async verifyApproverToken(token: string): Promise<VerifiedToken> {
    const v = await this.#humans.verify(token, 'token', (t) => t.approverAudience ?? t.audience);
    const approver = v.trust.approverAudience;
    if (approver === undefined) {
      throw new AuthorityError('TOKEN_AUDIENCE_INVALID', `human tokens for approvals need the trust entry's approverAudience, and ${v.trust.name} has none: its tokens are for token exchange only`, { field: 'token' });
    }
    const aud = typeof v.claims.aud === 'string' ? [v.claims.aud] : (v.claims.aud ?? []);
    if (aud.some((a) => v.trust.audience.includes(a))) {
      throw new AuthorityError('TOKEN_AUDIENCE_INVALID', `token is also meant for token exchange (its aud includes ${aud.filter((a) => v.trust.audience.includes(a)).join(', ')}): an approver's token must carry only the approverAudience of ${v.trust.name}`, { field: 'token' });
    }
    return v;
  }

  /** The published signing keys (RFC 7517 JWK Set). */
  async jwks(): Promise<{ keys: Record<string, unknown>[] }> {
    return { keys: await this.store.signingKeys() };
  }

  /** RFC 8414 authorization server metadata. */
  metadata(): Record<string, unknown> {
    const iss = this.issuer;
    return {
      issuer: iss,
      token_endpoint: `${iss}/oauth/token`,
      introspection_endpoint: `${iss}/oauth/introspect`,
      jwks_uri: `${iss}/.well-known/jwks.json`,
      grant_types_supported: [TOKEN_EXCHANGE_GRANT],
      response_types_supported: [],
      token_endpoint_auth_methods_supported: ['none'],
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'bearer'],
      token_endpoint_auth_signing_alg_values_supported: ['EdDSA'],
      introspection_endpoint_auth_signing_alg_values_supported: ['EdDSA'],
      service_documentation: `${iss}/v1/openapi.json`,
    };
  }

  // ---- sessions -----------------------------------------------------------------

  /** A session and its credentials. @throws AuthorityError `AUTHORITY_SESSION_NOT_FOUND` */
  async session(tenant: string, id: string): Promise<SessionView> {
    const s = await this.#existing(tenant, id);
    return { ...s, credentials: await this.store.credentialsOf(tenant, id) };
  }

  /** A session and every descendant, parents first. */
  async tree(tenant: string, id: string): Promise<SessionRecord[]> {
    const t = await this.store.subtree(tenant, id);
    if (t.length === 0) throw bad('AUTHORITY_SESSION_NOT_FOUND', `this tenant has no session ${id} opened by token exchange`);
    return t;
  }

  listSessions(tenant: string, filter: SessionListFilter, limit: number, cursor?: string): Promise<{ sessions: SessionRecord[]; nextCursor?: string }> {
    return this.store.listSessions(tenant, filter, Math.min(Math.max(1, limit), 1000), cursor);
  }

  /**
   * Revokes a session and every descendant at once (the kill switch), then
   * records `session.revoked` and `credential.revoked` for each. The change is
   * in force when this resolves; the entries are queued durably with it and
   * appended (retried by the sweeper if the ledger is busy).
   * @returns the sessions revoked now (already inactive ones are skipped), and whether their entries are in the ledger yet
   */
  async revokeSession(tenant: string, id: string, by: Requester): Promise<{ session: string; revoked: string[]; recorded: boolean }> {
    await this.#existing(tenant, id);
    const change: EndChange = { status: 'revoked', at: this.#now().toISOString(), by: by.principal.id, reason: by.reason ?? 'revoked' };
    // The tree is read inside the ending transaction: a delegation racing this
    // one is either ended with it or refused (createSession's contract).
    const ended = await this.store.endTree(tenant, id, { self: change, descendants: change }, (e) => this.#endDrafts(e, by, 'revoked', id));
    const recorded = await this.flush(ended.outbox);
    return { session: id, revoked: ended.sessions.map((s) => s.id), recorded };
  }

  /**
   * Closes a session: the agent ends its task. Revokes any active descendant,
   * ends the session's credentials (`credential.revoked`) and writes the
   * ledger's seal (`session.closed`).
   * @throws AuthorityError `AUTHORITY_SESSION_NOT_FOUND`, `AUTHORITY_SESSION_INACTIVE`
   */
  async closeSession(tenant: string, id: string, by: Requester): Promise<{ session: string; sealed: boolean; revoked: string[] }> {
    const self = await this.#existing(tenant, id);
    if (self.status !== 'active') throw bad('AUTHORITY_SESSION_INACTIVE', `session ${id} is already ${self.status}`);
    for (const hook of this.#beforeClose) {
      try {
        await hook(tenant, id);
      } catch (err) {
        this.#log(`a step before closing session ${id} failed; closing it anyway`, err);
      }
    }
    const at = this.#now().toISOString();
    const ended = await this.store.endTree(
      tenant,
      id,
      { self: { status: 'closed', at, by: by.principal.id, reason: by.reason ?? 'task complete' }, descendants: { status: 'revoked', at, by: by.principal.id, reason: 'parent session closed' } },
      (e) => [
        ...this.#endDrafts(only(e, (s) => s !== id), { principal: by.principal, reason: `parent session ${id} closed` }, 'revoked', id),
        ...this.#endDrafts(only(e, (s) => s === id), by, 'closed', id),
      ],
    );
    const sealed = await this.flush(ended.outbox);
    if (!ended.sessions.some((s) => s.id === id)) throw bad('AUTHORITY_SESSION_INACTIVE', `session ${id} ended meanwhile`);
    return { session: id, sealed, revoked: ended.sessions.filter((s) => s.id !== id).map((s) => s.id) };
  }

  /**
   * Runs `hook` when a session is about to be closed, before its seal is written (so
   * that what it records still enters the session's log): approvals end the session's
   * pending approvals there. A failing hook is logged; the close goes on.
   */
  beforeClose(hook: (tenant: string, sessionId: string) => Promise<void>): void {
    this.#beforeClose.add(hook);
  }

  /** @throws AuthorityError `AUTHORITY_SESSION_NOT_FOUND` */
  async #existing(tenant: string, id: string): Promise<SessionRecord> {
    const s = await this.store.getSession(tenant, id);
    if (s === undefined) throw bad('AUTHORITY_SESSION_NOT_FOUND', `this tenant has no session ${id} opened by token exchange`);
    return s;
  }

  /** The ledger events of sessions ending: per session, its event, then one per credential. */
  #endDrafts(ended: Ended, by: Requester, how: 'revoked' | 'closed' | 'expired', from: string): EventDraft[] {
    const drafts: EventDraft[] = [];
    const now = this.#now().toISOString();
    for (const s of ended.sessions) {
      const creds = ended.credentials.filter((c) => c.sessionId === s.id);
      const base = { session: { id: s.id }, initiator: s.initiator, chain: s.chain };
      const sessionEvent = uuidv7();
      const credType = how === 'expired' ? 'credential.expired' : 'credential.revoked';
      const credDrafts: EventDraft[] = creds.map((c) => ({
        id: uuidv7(),
        type: credType,
        time: how === 'expired' ? c.expiresAt : now,
        ...base,
        actor: AUTHORITY_ACTOR,
        cause: sessionEvent,
        credential: { jti: c.jti, fingerprint: c.fingerprint, scope: s.scope, audience: s.audience, issuedAt: c.issuedAt, expiresAt: c.expiresAt, depth: s.depth },
        data: { reason: how === 'closed' ? 'session closed' : how === 'expired' ? 'expired' : (by.reason ?? 'revoked') },
      }));
      if (how === 'closed') {
        // The seal comes last: the ledger refuses anything after it.
        drafts.push(...credDrafts);
        drafts.push({ id: sessionEvent, type: 'session.closed', time: now, ...base, actor: by.principal, data: { reason: by.reason ?? 'task complete', closedBy: by.principal } });
        continue;
      }
      drafts.push({
        id: sessionEvent,
        type: how === 'expired' ? 'session.expired' : 'session.revoked',
        time: how === 'expired' ? s.expiresAt : now,
        ...base,
        actor: how === 'expired' ? AUTHORITY_ACTOR : by.principal,
        data:
          how === 'expired'
            ? { expiresAt: s.expiresAt, reason: 'expired' }
            : { reason: by.reason ?? 'revoked', revokedBy: by.principal, ...(from !== s.id ? { cascadeFrom: from } : {}) },
      });
      drafts.push(...credDrafts);
    }
    return drafts;
  }

  // ---- the record: refusals, outbox, sweeper ------------------------------------

  async #recordRefusal(ctx: RefusalContext, err: AuthorityError): Promise<void> {
    const tenant = ctx.tenant ?? this.#tenantOfClaims(ctx.subject) ?? this.#tenantOfClaims(ctx.actor) ?? 'default';
    const s = ctx.session;
    const r = ctx.request;
    const draft: EventDraft = {
      id: uuidv7(),
      type: 'admin.token_refused',
      time: this.#now().toISOString(),
      actor: AUTHORITY_ACTOR,
      ...(s !== undefined && s.tenant === tenant ? { session: { id: s.id }, initiator: s.initiator, chain: s.chain } : ctx.human !== undefined ? { initiator: principalOf('human', ctx.human) } : {}),
      ...(ctx.agent !== undefined ? { workload: workloadOf(ctx.agent) } : {}),
      data: {
        endpoint: '/oauth/token',
        code: err.code,
        error: err.oauth,
        reason: err.message.slice(0, 1024),
        ...(err.field !== undefined ? { field: err.field } : {}),
        ...(ctx.subject !== undefined ? { subjectToken: refusalToken(ctx.subject, ctx.human ?? (s !== undefined ? { issuer: this.issuer, subject: s.initiator.id } : undefined)) } : {}),
        ...(ctx.actor !== undefined ? { actorToken: refusalToken(ctx.actor, ctx.agent) } : {}),
        requested: {
          ...(typeof r.scope === 'string' ? { scope: r.scope.slice(0, 2048) } : {}),
          ...(r.audience !== undefined || r.resource !== undefined ? { audience: [...(r.audience ?? []), ...(r.resource ?? [])].slice(0, 16).map((a) => String(a).slice(0, 512)) } : {}),
          ...(typeof r.requested_lifetime === 'string' ? { lifetime: r.requested_lifetime.slice(0, 32) } : {}),
          ...(typeof r.objective === 'string' ? { objective: r.objective.slice(0, 512) } : {}),
          ...(typeof r.client_id === 'string' ? { clientId: r.client_id.slice(0, 256) } : {}),
        },
      },
    };
    try {
      await this.#append(tenant, [draft], true);
    } catch (e) {
      this.#log('could not record a refused token exchange', e);
    }
  }

  #tenantOfClaims(p: PresentedToken | undefined): string | undefined {
    if (p === undefined) return undefined;
    return (this.#humans.claims(p.claimedIssuer, p.claimedSubject) ?? this.#agents.claims(p.claimedIssuer, p.claimedSubject))?.tenant;
  }

  /** Appends now; what the ledger cannot take now goes to the outbox. */
  async #append(tenant: string, drafts: EventDraft[], sessionlessOnSeal: boolean): Promise<void> {
    let results: PromiseSettledResult<unknown>[];
    try {
      results = await this.#ledger.append(tenant, drafts);
    } catch {
      await this.store.enqueue(tenant, drafts);
      return;
    }
    const retry: EventDraft[] = [];
    results.forEach((res, i) => {
      if (res.status === 'fulfilled') return;
      const d = drafts[i]!;
      if (sessionlessOnSeal && errorCode(res.reason) === 'SESSION_SEALED') {
        // The session is sealed: record the refusal outside its chain.
        const { session: _s, chain: _c, ...rest } = d;
        void this.#ledger.append(tenant, [{ ...rest, data: { ...rest.data, session: d.session?.id } }]).catch(() => undefined);
      } else if (isTransient(res.reason)) retry.push(d);
      else this.#log(`the ledger refused an authority event (${d.type})`, res.reason);
    });
    if (retry.length > 0) await this.store.enqueue(tenant, retry);
  }

  /**
   * Appends queued ledger events, oldest first (all, or the given outbox ids).
   * Resolves true when every one is in the ledger; events the ledger could not
   * take now stay queued for the sweeper. Re-appending is safe: the ledger
   * knows each event by its id.
   */
  async flush(ids?: readonly number[]): Promise<boolean> {
    if (ids !== undefined && ids.length === 0) return true;
    const events = await this.store.claimOutbox(ids?.length ?? 500, OUTBOX_LEASE_MS, ids);
    let all = ids === undefined || events.length === ids.length;
    const tenants = [...new Set(events.map((e) => e.tenant))];
    for (const tenant of tenants) {
      const mine = events.filter((e) => e.tenant === tenant);
      let results: PromiseSettledResult<unknown>[];
      try {
        results = await this.#ledger.append(tenant, mine.map((e) => e.draft));
      } catch (err) {
        this.#log('the ledger cannot take authority events now; they stay queued', err);
        all = false;
        continue;
      }
      const done: number[] = [];
      for (const [i, res] of results.entries()) {
        const event = mine[i]!;
        if (res.status === 'fulfilled') done.push(event.id);
        else if (isTransient(res.reason)) all = false;
        else {
          all = false;
          this.#log(`the ledger refused a queued authority event (${event.draft.type}); kept in authority_outbox`, res.reason);
          await this.store.failOutbox([event.id], `${errorCode(res.reason) ?? 'refused'}: ${res.reason instanceof Error ? res.reason.message : String(res.reason)}`);
        }
      }
      await this.store.deleteOutbox(done);
    }
    return all;
  }

  /** Records expiries that are due and retries queued ledger events. The sweeper calls it; tests may too. */
  async sweep(): Promise<{ expired: string[] }> {
    const expired: string[] = [];
    const batches = await this.store.expireDue(this.#now(), 500, (_tenant, ended) => this.#endDrafts(ended, { principal: AUTHORITY_ACTOR, reason: 'expired' }, 'expired', ''));
    for (const b of batches) expired.push(...b.ended.sessions.map((s) => s.id));
    await this.flush();
    return { expired };
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#sweeping = this.sweep()
        .catch((err) => this.#log('authority sweep failed; retrying', err))
        .finally(() => {
          this.#sweeping = undefined;
          this.#schedule();
        });
    }, this.#sweepMs);
    this.#timer.unref();
  }

  /** Stops the sweeper (after its current run) and closes the store. The ledger stays open. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#sweeping;
    await this.store.close();
  }
}

/** What is known about a token request when it is refused. @internal */
export interface RefusalContext {
  request: TokenExchangeRequest;
  tenant?: string;
  subject?: PresentedToken;
  actor?: PresentedToken;
  human?: VerifiedToken;
  agent?: VerifiedToken;
  session?: SessionRecord;
}

/** The part of `ended` whose sessions' ids pass `keep`. */
function only(ended: Ended, keep: (sessionId: string) => boolean): Ended {
  return { sessions: ended.sessions.filter((s) => keep(s.id)), credentials: ended.credentials.filter((c) => keep(c.sessionId)) };
}

function errorCode(err: unknown): string | undefined {
  return err !== null && typeof err === 'object' && typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : undefined;
}

/** Store trouble (busy, unreachable, shutting down): retry later. */
function isTransient(err: unknown): boolean {
  const code = errorCode(err);
  return code === undefined || code.startsWith('STORE_');
}

function principalOf(type: 'human' | 'agent', t: VerifiedToken): Principal {
  const name = t.claims['name'] ?? t.claims['email'];
  return { type, id: t.subject, issuer: t.issuer, verified: true, ...(typeof name === 'string' && name !== '' && name.length <= 256 ? { name } : {}) };
}

function workloadOf(t: VerifiedToken): Workload {
  return t.method === 'jwt-svid' ? { method: 'jwt-svid', verified: true, spiffeId: t.subject } : { method: 'oidc', verified: true, issuer: t.issuer, subject: t.subject };
}

function tokenRecord(t: VerifiedToken): Record<string, unknown> {
  return { issuer: t.issuer, subject: t.subject, fingerprint: t.fingerprint, method: t.method, alg: t.alg, expiresAt: iso(t.expiresAt), ...(t.jti !== undefined ? { jti: t.jti } : {}) };
}

function refusalToken(p: PresentedToken, verified: { issuer: string; subject: string } | undefined): Record<string, unknown> {
  return {
    fingerprint: p.fingerprint,
    ...(p.alg !== undefined ? { alg: p.alg } : {}),
    ...(p.kid !== undefined ? { kid: p.kid } : {}),
    ...(verified !== undefined
      ? { verified: true, issuer: verified.issuer, subject: verified.subject }
      : { verified: false, ...(p.claimedIssuer !== undefined ? { claimedIssuer: p.claimedIssuer } : {}), ...(p.claimedSubject !== undefined ? { claimedSubject: p.claimedSubject } : {}) }),
  };
}
