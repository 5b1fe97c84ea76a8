/**
 * The gateway's client of the Custody server: introspection (RFC 7662), the
 * decision point (POST /v1/decisions), approval status (long poll) and event
 * appends. Every request has its own abort signal and timeout.
 */
import type { DecisionPart, DelegationLink, EventDraft, Principal } from '@custody/core';
import { Agent, request } from 'undici';

/** An active session as introspection describes it. */
export interface ActiveSession {
  sid: string;
  tenant: string;
  scope: string[];
  /** The initiator (`sub`). */
  initiator: string;
  /** The acting agent (the outermost `act.sub`). */
  agent: string;
  depth: number;
  /** RFC 3339. */
  expiresAt: string;
  jti: string;
  /** The credential's audiences (`aud`). */
  audience: string[];
}

/** The answer of POST /v1/decisions. */
export interface DecisionAnswer {
  decision: DecisionPart;
  call: string;
  decisionEvent: string;
  session: { id: string; agent: Principal; initiator: Principal; chain: DelegationLink[] };
  approval?: { id: string; status: string; expiresAt: string };
}

/** An HTTP answer of the server that is not 2xx. */
export class CustodyHttpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'CustodyHttpError';
    this.status = status;
    this.code = code;
  }
}

/** True when the session behind a refused request is inactive (revoked, closed, expired). */
export function isSessionInactive(err: unknown): boolean {
  return err instanceof CustodyHttpError && (err.code === 'CREDENTIAL_INVALID' || err.code.startsWith('TOKEN_'));
}

/** The client. @internal */
export class CustodyClient {
  readonly #url: string;
  readonly #key: string;
  readonly #timeoutMs: number;
  readonly #pool: Agent;

  constructor(url: string, apiKey: string, timeoutMs: number) {
    this.#url = url.replace(/\/+$/, '');
    this.#key = apiKey;
    this.#timeoutMs = timeoutMs;
    // Long polls for approvals hold a connection each; decisions and appends reuse the rest.
    this.#pool = new Agent({ keepAliveTimeout: 30_000, connections: 64 });
  }

  /**
   * One request to the server, on a keep-alive connection pool (undici; cheaper per call
   * than fetch, and this client is on the path of every tool call). A fresh abort signal
   * per request: nothing accumulates on a shared one over days of uptime.
   * @throws CustodyHttpError for an answer that is not 2xx; the transport's error when the server cannot be reached
   */
  async #request(path: string, init: { method?: 'GET' | 'POST'; body?: string; contentType?: string; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<unknown> {
    const timeout = AbortSignal.timeout(init.timeoutMs ?? this.#timeoutMs);
    const res = await request(`${this.#url}${path}`, {
      method: init.method ?? 'GET',
      dispatcher: this.#pool,
      headers: { authorization: `Bearer ${this.#key}`, ...(init.body !== undefined ? { 'content-type': init.contentType ?? 'application/json' } : {}) },
      ...(init.body !== undefined ? { body: init.body } : {}),
      signal: init.signal === undefined ? timeout : AbortSignal.any([init.signal, timeout]),
    });
    const text = await res.body.text();
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (res.statusCode < 200 || res.statusCode > 299) {
      const e = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new CustodyHttpError(res.statusCode, e?.code ?? `HTTP_${res.statusCode}`, e?.message ?? `HTTP ${res.statusCode} from ${path}`);
    }
    return body;
  }

  /** RFC 7662 introspection: the active session, or undefined when the credential is not active. */
  async introspect(token: string): Promise<ActiveSession | undefined> {
    const r = (await this.#request('/oauth/introspect', {
      method: 'POST',
      contentType: 'application/x-www-form-urlencoded',
      body: new URLSearchParams({ token }).toString(),
    })) as Record<string, unknown>;
    if (r['active'] !== true) return undefined;
    // The outermost act is the current actor (RFC 8693 §4.1).
    const act = r['act'] as { sub: string } | undefined;
    const agent = act?.sub ?? String(r['client_id']);
    return {
      sid: String(r['sid']),
      tenant: String(r['tenant']),
      scope: String(r['scope'] ?? '').split(' ').filter((s) => s !== ''),
      initiator: String(r['sub']),
      agent,
      depth: Number(r['depth'] ?? 0),
      expiresAt: new Date(Number(r['exp']) * 1000).toISOString(),
      jti: String(r['jti']),
      audience: (Array.isArray(r['aud']) ? r['aud'] : [r['aud']]).filter((a): a is string => typeof a === 'string'),
    };
  }

  /** The server's issuer URL, from its RFC 8414 metadata: the default audience of the credentials it issues. */
  async issuer(): Promise<string> {
    const r = (await this.#request('/.well-known/oauth-authorization-server')) as { issuer?: unknown };
    if (typeof r.issuer !== 'string') throw new CustodyHttpError(502, 'METADATA_INVALID', 'the server metadata names no issuer');
    return r.issuer;
  }

  /** POST /v1/decisions. */
  async decide(body: Record<string, unknown>): Promise<DecisionAnswer> {
    return (await this.#request('/v1/decisions', { method: 'POST', body: JSON.stringify(body) })) as DecisionAnswer;
  }

  /** GET /v1/approvals/:id/status?wait=…: the approval's state once answered, or still pending after `waitSeconds`. */
  async approvalStatus(id: string, waitSeconds: number, signal?: AbortSignal): Promise<{ status: string; reason?: string; approver?: Principal }> {
    return (await this.#request(`/v1/approvals/${encodeURIComponent(id)}/status?wait=${waitSeconds}`, { timeoutMs: (waitSeconds + 10) * 1000, ...(signal !== undefined ? { signal } : {}) })) as {
      status: string;
      reason?: string;
      approver?: Principal;
    };
  }

  /** POST /v1/events: appends events durably. */
  async append(events: EventDraft[]): Promise<void> {
    await this.#request('/v1/events', { method: 'POST', body: JSON.stringify(events) });
  }

  /** Closes the connection pool. */
  async close(): Promise<void> {
    await this.#pool.close();
  }
}
