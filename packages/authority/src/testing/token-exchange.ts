/**
 * Token exchange over HTTP for tests: the RFC 8693 form an agent's side posts to
 * POST /oauth/token, for a session opened for a human (a subject token from a
 * trusted issuer) or delegated from a parent session (its access token).
 */

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

/** What a token exchange asks for. */
export interface ExchangeRequest {
  /** The human's token, or with `delegate`, the parent session's access token. */
  subjectToken: string;
  /** The acting agent's token. */
  actorToken: string;
  scope: string;
  objective?: string;
  /** The subject token is a Custody access token: delegation from that session. */
  delegate?: boolean;
}

/** The form body of POST /oauth/token for `req`. */
export function tokenExchangeForm(req: ExchangeRequest): URLSearchParams {
  return new URLSearchParams({
    grant_type: GRANT,
    subject_token: req.subjectToken,
    subject_token_type: req.delegate === true ? ACCESS_TOKEN : JWT,
    actor_token: req.actorToken,
    actor_token_type: JWT,
    scope: req.scope,
    ...(req.objective !== undefined ? { objective: req.objective } : {}),
  });
}

/**
 * Posts a token exchange to `${url}/oauth/token`.
 * @throws Error naming the status and body when the answer is not 200
 */
export async function exchangeToken(url: string, req: ExchangeRequest): Promise<{ access_token: string; session_id: string; expires_in: number; scope: string }> {
  const res = await fetch(`${url.replace(/\/+$/, '')}/oauth/token`, { method: 'POST', body: tokenExchangeForm(req) });
  if (res.status !== 200) throw new Error(`token exchange answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as { access_token: string; session_id: string; expires_in: number; scope: string };
}
