/**
 * The client: `new Custody({ url, apiKey })`. Opens sessions by RFC 8693 token
 * exchange and delivers their events through an outbox and a spool.
 */
import { scopeExcess } from '@custody/core';

import { credentialFacts } from './credential-claims.js';
import { ConfigError, RequestError, RevokedError, SdkError } from './errors.js';
import { parseHandoff } from './handoff.js';
import { type FetchLike, Http, refused } from './http.js';
import { type DeliveryOptions, Outbox } from './outbox.js';
import { Session, type UnavailableMode } from './session.js';
import { MemorySpool, type SpoolStore } from './spool-store.js';
import { activeOtelContext, loadOtel, newTraceId, type OtelApi } from './trace-context.js';
import { optionalBoolean, optionalFunction, optionalMode, optionalMs, optionalPositiveInteger, optionalString, optionsObject, requiredString, tokenList } from './validate.js';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';

/** Options of the client. */
export interface CustodyOptions {
  /** The Custody server, e.g. `http://127.0.0.1:8470`. */
  url: string;
  /** An `ingest` (or `admin`) API key of the tenant: appends events and waits for approvals. */
  apiKey: string;
  /**
   * Where events wait while the ledger is away. Default: in memory (survives an
   * outage, not a crash). For no loss across crashes: `new FileSpool({ dir })`
   * from `@custody/sdk/spool` (Node).
   */
  spool?: SpoolStore;
  /**
   * A tool call when the decision point or the ledger cannot be reached:
   * `fail-closed` (default: the call does not run, `LedgerUnavailableError`) or
   * `proceed` (it runs, recorded as undecided in the spool).
   */
  toolsWhenUnavailable?: UnavailableMode;
  /** Longest wait for a human's approval, ms (default 300,000). */
  approvalTimeoutMs?: number;
  /** Timeout of one request, ms (default 10,000). */
  requestTimeoutMs?: number;
  /** The server part of tool names that have none (default `app`). */
  toolServer?: string;
  /** Delivery tuning (batch size, backoff, error callback). */
  delivery?: DeliveryOptions;
  /** `@opentelemetry/api`, or false to ignore it (default: loaded if installed). */
  otel?: OtelApi | false;
  /** A fetch implementation (default: the global fetch). */
  fetch?: FetchLike;
}

/** Options of `openSession`. */
export interface OpenSessionOptions {
  /** The human's token (OIDC ID or access token): the initiator. */
  subjectToken: string;
  /** The agent's own token (OIDC JWT or SPIFFE JWT-SVID). */
  actorToken: string;
  /** What the session may do: space-delimited scope tokens or a list. */
  scope: string | string[];
  /** The task, in words. */
  objective: string;
  audience?: string | string[];
  lifetimeSeconds?: number;
  /** Token type of `subjectToken` (default `urn:ietf:params:oauth:token-type:jwt`). */
  subjectTokenType?: string;
}

/** What sessions share. @internal */
export interface CustodyCore {
  readonly http: Http;
  readonly outbox: Outbox;
  readonly apiKey: string;
  readonly otel: OtelApi | undefined;
  readonly options: { toolsWhenUnavailable: UnavailableMode; approvalTimeoutMs: number; requestTimeoutMs: number; toolServer: string };
  exchange(form: Record<string, string>, cause: string | undefined, parent: string | undefined, traceId?: string): Promise<Session>;
}

/** Options of `continueHandoff`. */
export interface ContinueHandoffOptions {
  /**
   * The consuming agent's own token (OIDC JWT or SPIFFE JWT-SVID): continue in a
   * delegated child session (token exchange). Without it, continue in the
   * producer's session — only for another process of the same agent, and only
   * when the handoff narrowed nothing.
   */
  actorToken?: string;
  /** Narrower still than the handoff's scope (default: the handoff's). */
  scope?: string | string[];
  /** The child session's objective (default: the handoff's, else the producer's). */
  objective?: string;
  audience?: string | string[];
  /** The child's lifetime in seconds (default and at most: until the handoff expires). */
  lifetimeSeconds?: number;
}

/**
 * The Custody client for agents and tools.
 * @example
 * const custody = new Custody({ url: process.env.CUSTODY_URL!, apiKey: process.env.CUSTODY_API_KEY! });
 * const session = await custody.openSession({ subjectToken, actorToken, scope: 'refunds:create', objective: 'refund order 1234' });
 * await session.prompt('refund order 1234');
 * const refund = session.tool('payments.refund', (a: { order: string }) => payments.refund(a.order));
 * await refund({ order: '1234' });
 * await session.close();
 */
export class Custody implements CustodyCore {
  readonly http: Http;
  readonly outbox: Outbox;
  readonly apiKey: string;
  readonly options: CustodyCore['options'];
  otel: OtelApi | undefined;
  readonly #otelSetting: OtelApi | false | undefined;

  /** @throws ConfigError (`SDK_CONFIG_INVALID`, `option` names the option) for a missing or wrong option */
  constructor(opts: CustodyOptions) {
    const o = optionsObject('Custody options', opts, false);
    const url = o['url'];
    let parsed: URL | undefined;
    try {
      parsed = typeof url === 'string' ? new URL(url) : undefined;
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.hostname === '') throw new ConfigError('url', 'must be an http(s) URL of the Custody server, e.g. http://127.0.0.1:8470');
    if (typeof o['apiKey'] !== 'string' || o['apiKey'].trim() === '') throw new ConfigError('apiKey', 'is required (an ingest API key of the tenant)');
    const mode = optionalMode('toolsWhenUnavailable', o['toolsWhenUnavailable']);
    const approvalTimeoutMs = optionalMs('approvalTimeoutMs', o['approvalTimeoutMs']);
    const requestTimeoutMs = optionalMs('requestTimeoutMs', o['requestTimeoutMs']);
    const toolServer = o['toolServer'];
    if (toolServer !== undefined && (typeof toolServer !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(toolServer))) throw new ConfigError('toolServer', 'must be 1-64 characters of A-Z a-z 0-9 _ -');
    const delivery = optionsObject('delivery', o['delivery'], true);
    optionalPositiveInteger('delivery.batchSize', delivery['batchSize'], 1000);
    const initial = optionalMs('delivery.initialBackoffMs', delivery['initialBackoffMs']);
    const max = optionalMs('delivery.maxBackoffMs', delivery['maxBackoffMs']);
    if (initial !== undefined && max !== undefined && max < initial) throw new ConfigError('delivery.maxBackoffMs', 'must be at least delivery.initialBackoffMs');
    optionalBoolean('delivery.gzip', delivery['gzip']);
    optionalFunction('delivery.onError', delivery['onError']);
    optionalFunction('delivery.onDropped', delivery['onDropped']);
    const spool = o['spool'];
    if (spool !== undefined) {
      const missing = ['pending', 'append', 'peek', 'ack', 'reject', 'close'].filter((m) => spool === null || typeof spool !== 'object' || typeof (spool as Record<string, unknown>)[m] !== 'function');
      if (missing.length > 0) throw new ConfigError('spool', `expected a SpoolStore (new FileSpool({ dir }) or new MemorySpool()); missing ${missing.join(', ')}`);
    }
    optionalFunction('fetch', o['fetch']);
    const otel = o['otel'];
    if (otel !== undefined && otel !== false && (otel === null || typeof otel !== 'object')) throw new ConfigError('otel', 'expected the @opentelemetry/api module, or false');
    this.http = new Http(opts.url, opts.fetch);
    this.apiKey = opts.apiKey;
    this.options = {
      toolsWhenUnavailable: mode ?? 'fail-closed',
      approvalTimeoutMs: approvalTimeoutMs ?? 300_000,
      requestTimeoutMs: requestTimeoutMs ?? 10_000,
      toolServer: opts.toolServer ?? 'app',
    };
    this.#otelSetting = opts.otel;
    this.otel = opts.otel === false ? undefined : opts.otel;
    this.outbox = new Outbox(this.http, opts.apiKey, opts.spool ?? new MemorySpool(), this.options.requestTimeoutMs, opts.delivery);
  }

  /**
   * Opens a session by token exchange: the human's token as the subject, the
   * agent's as the actor. The authority records `session.opened` and
   * `credential.issued` before it answers.
   * @throws RequestError `SDK_EXCHANGE_FAILED` (refused: its `apiCode` is the authority's `custody_code`), LedgerUnavailableError
   */
  async openSession(opts: OpenSessionOptions): Promise<Session> {
    const o = optionsObject('openSession', opts, false);
    const subjectToken = requiredString('openSession.subjectToken', o['subjectToken']);
    const actorToken = requiredString('openSession.actorToken', o['actorToken']);
    const scope = tokenList('openSession.scope', o['scope']);
    const objective = requiredString('openSession.objective', o['objective']);
    const audience = o['audience'] === undefined ? undefined : tokenList('openSession.audience', o['audience']);
    const lifetime = optionalPositiveInteger('openSession.lifetimeSeconds', o['lifetimeSeconds']);
    const subjectTokenType = optionalString('openSession.subjectTokenType', o['subjectTokenType']);
    return this.exchange(
      {
        subject_token: subjectToken,
        subject_token_type: subjectTokenType ?? JWT,
        actor_token: actorToken,
        actor_token_type: JWT,
        scope: scope.join(' '),
        objective,
        ...(audience !== undefined ? { audience: audience.join(' ') } : {}),
        ...(lifetime !== undefined ? { requested_lifetime: String(lifetime) } : {}),
      },
      undefined,
      undefined,
    );
  }

  /**
   * A session object for a credential obtained elsewhere (another process of the
   * same agent): records into the same session.
   * @throws ConfigError `SDK_CONFIG_INVALID` (`option: 'resume.credential'`) for a credential that is not a session credential
   */
  async resume(credential: string, opts: { cause?: string; traceId?: string } = {}): Promise<Session> {
    requiredString('resume.credential', credential);
    const o = optionsObject('resume.options', opts, true);
    optionalString('resume.cause', o['cause']);
    optionalString('resume.traceId', o['traceId']);
    let facts;
    try {
      facts = credentialFacts(credential);
    } catch (cause) {
      throw new ConfigError('resume.credential', `not a Custody session credential: ${(cause as Error).message}`);
    }
    await this.#ensureOtel();
    return new Session(this, credential, facts, { traceId: opts.traceId ?? activeOtelContext(this.otel)?.traceId ?? newTraceId(), ...(opts.cause !== undefined ? { cause: opts.cause } : {}) });
  }

  /**
   * Continues work handed off with `session.handoff()` (the context from a queue
   * message). With `actorToken`: a delegated child session of the producer's
   * (RFC 8693 exchange with the context's credential as the subject, so the
   * authority verifies it and records `session.delegated` in both sessions),
   * narrowed to the handoff's scope. Without: the producer's own session. Either
   * way the session continues the handoff's trace, its first event is a
   * `session.delegated` with `data.handoff.stage: "accepted"` whose `cause` is
   * the producer's handoff event, and later events chain from it.
   * @example
   * const session = await custody.continueHandoff(message.headers['custody-handoff'], { actorToken: process.env.ACTOR_TOKEN });
   * @throws SdkError `SDK_HANDOFF_INVALID` (malformed, expired, wider than handed off, or same-session continuation of a narrowed handoff), RevokedError (the producer's session has ended), RequestError `SDK_EXCHANGE_FAILED`
   */
  async continueHandoff(context: string, opts: ContinueHandoffOptions = {}): Promise<Session> {
    const h = parseHandoff(context);
    const asked = opts.scope === undefined ? undefined : [...new Set((Array.isArray(opts.scope) ? opts.scope : opts.scope.split(' ')).filter((t) => t !== ''))];
    if (asked !== undefined && h.scope !== undefined) {
      const wider = scopeExcess(asked, h.scope);
      if (wider.length > 0) throw new SdkError('SDK_HANDOFF_INVALID', `the handoff ${h.id} offers ${h.scope.join(' ')}, not ${wider.join(' ')}`);
    }
    let session: Session;
    let mode: 'delegated' | 'same-session';
    if (opts.actorToken !== undefined) {
      const left = Math.floor((Date.parse(h.expiresAt) - Date.now()) / 1000);
      const credentialLeft = Math.floor((Date.parse(credentialFacts(h.credential).expiresAt) - Date.now()) / 1000);
      const lifetime = opts.lifetimeSeconds ?? (left < credentialLeft ? left : undefined);
      if (lifetime !== undefined && lifetime < 1) throw new SdkError('SDK_HANDOFF_INVALID', `the handoff ${h.id} expires at ${h.expiresAt}`);
      const scope = asked ?? h.scope;
      session = await this.exchange(
        {
          subject_token: h.credential,
          subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
          actor_token: opts.actorToken,
          actor_token_type: JWT,
          ...(scope !== undefined ? { scope: scope.join(' ') } : {}),
          ...((opts.objective ?? h.objective) !== undefined ? { objective: (opts.objective ?? h.objective)! } : {}),
          ...(opts.audience !== undefined ? { audience: Array.isArray(opts.audience) ? opts.audience.join(' ') : opts.audience } : {}),
          ...(lifetime !== undefined ? { requested_lifetime: String(lifetime) } : {}),
        },
        h.id,
        h.session,
        h.trace.traceId,
      );
      mode = 'delegated';
    } else {
      if (h.scope !== undefined || asked !== undefined || opts.objective !== undefined) {
        throw new SdkError('SDK_HANDOFF_INVALID', `the handoff ${h.id} narrows the producer's grant: continue it in a delegated child session (give actorToken)`);
      }
      session = await this.resume(h.credential, { cause: h.id, traceId: h.trace.traceId });
      mode = 'same-session';
    }
    await session.acceptHandoff(h, mode);
    return session;
  }

  /** @internal */
  async exchange(form: Record<string, string>, cause: string | undefined, parent: string | undefined, traceId?: string): Promise<Session> {
    await this.#ensureOtel();
    const answer = await this.http.send<{ access_token?: string; session_id?: string }>({
      method: 'POST',
      path: '/oauth/token',
      form: { grant_type: EXCHANGE, ...form },
      timeoutMs: this.options.requestTimeoutMs,
    });
    if (answer.status !== 200 || typeof answer.body.access_token !== 'string') {
      const err = refused(answer, parent === undefined ? 'token exchange' : `delegating session ${parent}`, 'SDK_EXCHANGE_FAILED');
      if (parent !== undefined && (err.apiCode === 'TOKEN_INACTIVE' || err.apiCode === 'TOKEN_EXPIRED')) throw new RevokedError(parent, err.message, { cause: err });
      throw err;
    }
    const credential = answer.body.access_token;
    let facts;
    try {
      facts = credentialFacts(credential);
    } catch (cause) {
      throw new RequestError('SDK_EXCHANGE_FAILED', answer.status, 'CREDENTIAL_UNREADABLE', `the issued credential could not be read: ${(cause as Error).message}`);
    }
    return new Session(this, credential, facts, { traceId: traceId ?? activeOtelContext(this.otel)?.traceId ?? newTraceId(), ...(cause !== undefined ? { cause } : {}) });
  }

  /** Events waiting in the spool. */
  pending(): number {
    return this.outbox.pending();
  }

  /**
   * Delivers what waits in the spool, retrying with backoff for up to `timeoutMs`.
   * @throws LedgerUnavailableError when events still wait
   */
  flush(timeoutMs = 30_000): Promise<void> {
    return this.outbox.flush(timeoutMs);
  }

  /**
   * Stops delivery and releases the spool. A spool that does not survive the process (the
   * in-memory default) is first flushed for up to `flushTimeoutMs` (default 10 s); a durable
   * spool keeps what waits for the next process (no flush unless `flushTimeoutMs` is given).
   * @throws UndeliveredError (`SDK_EVENTS_UNDELIVERED`, `undelivered` = how many) when events of an in-memory spool were never delivered (the client is closed anyway; they are lost)
   */
  close(opts: { flushTimeoutMs?: number } = {}): Promise<void> {
    const o = optionsObject('close', opts, true);
    const wait = o['flushTimeoutMs'];
    if (wait !== undefined && (typeof wait !== 'number' || !Number.isFinite(wait) || wait < 0)) return Promise.reject(new ConfigError('close.flushTimeoutMs', 'expected a number of milliseconds, 0 or more'));
    return this.outbox.close(wait as number | undefined);
  }

  async #ensureOtel(): Promise<void> {
    if (this.#otelSetting === undefined && this.otel === undefined) this.otel = await loadOtel();
  }
}
