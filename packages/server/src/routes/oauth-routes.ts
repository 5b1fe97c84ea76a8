/**
 * The authority's standard endpoints: RFC 8693 token exchange (POST /oauth/token),
 * RFC 7662 introspection (POST /oauth/introspect), RFC 8414 metadata and the
 * JWKS. The OAuth endpoints take form bodies and answer errors as RFC 6749 §5.2
 * `{ "error", "error_description" }` (plus Custody's `custody_code`), never in
 * the `/v1` shape.
 * @internal
 */
import { type Authority, AuthorityError, type TokenExchangeRequest } from '@custody/authority';
import { StoreError } from '@custody/ledger';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { authenticate } from '../api-keys.js';
import { PUBLIC, type RouteContext, errorResponses } from '../route-kit.js';
import { ref } from '../schemas.js';

const FORM = 'application/x-www-form-urlencoded';
/** Parameters that may repeat (RFC 8693 §2.1); every other one must appear at most once (RFC 6749 §3.2). */
const MULTI = new Set(['audience', 'resource']);
const TOKEN_PARAMS = new Set([
  'grant_type',
  'subject_token',
  'subject_token_type',
  'actor_token',
  'actor_token_type',
  'scope',
  'audience',
  'resource',
  'requested_token_type',
  'objective',
  'requested_lifetime',
  'client_id',
]);
const INTROSPECT_PARAMS = new Set(['token', 'token_type_hint', 'client_id']);
/** Largest form body (tokens are at most 16 KiB each). */
const FORM_LIMIT = 64 * 1024;

/** The RFC 6749 §5.2 error body. */
export const OAUTH_ERROR_SCHEMA = {
  $id: 'OAuthError',
  type: 'object',
  description: 'RFC 6749 §5.2 error: `error` is the OAuth code, `custody_code` the Custody code (docs/errors.md).',
  required: ['error', 'error_description'],
  additionalProperties: false,
  properties: {
    error: { type: 'string', enum: ['invalid_request', 'invalid_client', 'invalid_grant', 'unsupported_grant_type', 'invalid_scope', 'invalid_target', 'temporarily_unavailable', 'server_error'] },
    error_description: { type: 'string' },
    custody_code: { type: 'string' },
  },
} as const;

class OAuthFailure extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    description: string,
    readonly code: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description);
  }
}

/** Parses a form body (attacker-controlled) into the known parameters only; unknown ones are ignored (RFC 6749 §3.2). */
function parseForm(body: string, known: ReadonlySet<string>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (const [k, v] of new URLSearchParams(body)) {
    if (!known.has(k)) continue;
    if (MULTI.has(k)) {
      const list = (out[k] as string[] | undefined) ?? [];
      list.push(v);
      out[k] = list;
    } else if (k in out) {
      throw new OAuthFailure(400, 'invalid_request', `parameter ${k} is given more than once`, 'EXCHANGE_INVALID');
    } else out[k] = v;
  }
  return { ...out };
}

function oauthBody(err: unknown): { status: number; body: Record<string, string>; headers: Record<string, string>; internal: boolean } {
  if (err instanceof AuthorityError) {
    return { status: err.status, body: { error: err.oauth, error_description: err.message, custody_code: err.code }, headers: err.status === 503 ? { 'retry-after': '1' } : {}, internal: false };
  }
  if (err instanceof OAuthFailure) return { status: err.status, body: { error: err.error, error_description: err.message, custody_code: err.code }, headers: err.headers, internal: false };
  if (err instanceof StoreError && ['STORE_BUSY', 'STORE_UNAVAILABLE', 'STORE_HEAD_CONFLICT'].includes(err.code)) {
    return { status: 503, body: { error: 'temporarily_unavailable', error_description: 'the ledger could not record this now: nothing was issued; retry', custody_code: err.code }, headers: { 'retry-after': '1' }, internal: false };
  }
  const fe = err as Partial<FastifyError>;
  if (typeof fe.code === 'string' && fe.code.startsWith('FST_') && fe.statusCode !== undefined && fe.statusCode < 500) {
    const description =
      fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? `send the parameters as ${FORM}` : fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? `the body is larger than ${FORM_LIMIT} bytes` : (fe.message ?? 'bad request');
    return { status: 400, body: { error: 'invalid_request', error_description: description, custody_code: 'REQUEST_INVALID' }, headers: {}, internal: false };
  }
  return { status: 500, body: { error: 'server_error', error_description: 'internal error: the request was not completed; the server logged the cause', custody_code: 'INTERNAL' }, headers: {}, internal: true };
}

/** The API key an introspection caller presents: `Bearer <key>`, or HTTP Basic with the key as client secret. */
async function introspectionCaller(ctx: RouteContext, request: FastifyRequest): Promise<string> {
  const header = request.headers.authorization ?? '';
  const challenge = { 'www-authenticate': 'Basic realm="custody", Bearer realm="custody"' };
  let key: string | undefined;
  const bearer = header.length <= 512 ? /^Bearer +(\S+) *$/i.exec(header) : null;
  const basic = header.length <= 1024 ? /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(header) : null;
  if (bearer !== null) key = bearer[1];
  else if (basic !== null) {
    const text = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    // RFC 6749 §2.3.1: client_id and secret are form-urlencoded before Basic encoding.
    if (colon >= 0) {
      try {
        key = decodeURIComponent(text.slice(colon + 1).replace(/\+/g, ' '));
      } catch {
        key = undefined;
      }
    }
  }
  if (key === undefined) throw new OAuthFailure(401, 'invalid_client', 'introspection needs an API key: Authorization: Bearer <key>, or HTTP Basic with the key as client secret', 'UNAUTHENTICATED', challenge);
  const caller = await authenticate(ctx.ledger, key);
  if (caller === undefined) throw new OAuthFailure(401, 'invalid_client', 'unknown or revoked API key', 'UNAUTHENTICATED', challenge);
  return caller.tenant;
}

const formBody = (description: string, required: string[], properties: Record<string, object>) => ({
  type: 'object',
  description,
  required,
  additionalProperties: false,
  properties,
});

/** Registers the OAuth endpoints and the well-known documents. */
export async function oauthRoutes(ctx: RouteContext, authority: Authority): Promise<void> {
  const { app } = ctx;
  app.addSchema(OAUTH_ERROR_SCHEMA);
  const oauthErrors = (statuses: number[]) =>
    Object.fromEntries(statuses.map((s) => [s, { description: s === 401 ? 'invalid_client: no or a bad API key.' : s === 503 ? 'temporarily_unavailable: retry.' : s === 500 ? 'server_error.' : 'An RFC 6749 §5.2 error.', ...ref('OAuthError') }]));

  app.get(
    '/.well-known/oauth-authorization-server',
    {
      schema: {
        tags: ['authority'],
        summary: 'Authorization server metadata',
        description: 'RFC 8414 metadata of the Custody authority: issuer, token and introspection endpoints, JWKS URI. No API key needed.',
        security: [],
        response: { 200: { description: 'RFC 8414 metadata.', type: 'object', additionalProperties: true, required: ['issuer', 'token_endpoint', 'jwks_uri'], properties: { issuer: { type: 'string' }, token_endpoint: { type: 'string' }, jwks_uri: { type: 'string' } } }, ...errorResponses(PUBLIC) },
      },
    },
    async () => authority.metadata(),
  );

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['authority'],
        summary: 'Session credential keys (JWKS)',
        description: 'The Ed25519 public keys (RFC 7517 JWK Set, kty OKP, alg EdDSA) that verify Custody session credentials offline. No API key needed.',
        security: [],
        response: {
          200: {
            description: 'JWK Set.',
            type: 'object',
            required: ['keys'],
            additionalProperties: false,
            properties: {
              keys: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['kty', 'crv', 'x', 'kid'],
                  additionalProperties: false,
                  properties: { kty: { type: 'string' }, crv: { type: 'string' }, x: { type: 'string' }, kid: { type: 'string' }, alg: { type: 'string' }, use: { type: 'string' } },
                },
              },
            },
          },
          ...errorResponses(PUBLIC),
        },
      },
    },
    async (_request, reply) => reply.header('cache-control', 'public, max-age=60').send(await authority.jwks()),
  );

  await app.register(async (scope: FastifyInstance) => {
    scope.addContentTypeParser(FORM, { parseAs: 'string', bodyLimit: FORM_LIMIT }, (request, body, done) => {
      try {
        done(null, parseForm(body as string, request.url.startsWith('/oauth/introspect') ? INTROSPECT_PARAMS : TOKEN_PARAMS));
      } catch (err) {
        done(err as Error, undefined);
      }
    });
    scope.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
      const r = oauthBody(err);
      if (r.internal) request.log.error({ err }, 'internal error');
      return reply.code(r.status).headers({ ...r.headers, 'cache-control': 'no-store' }).send(r.body);
    });

    const str = (description: string) => ({ type: 'string', maxLength: 20_000, description });
    scope.post<{ Body: TokenExchangeRequest }>(
      '/oauth/token',
      {
        schema: {
          tags: ['authority'],
          summary: 'Token exchange: open or delegate a session',
          description:
            "RFC 8693 token exchange. subject_token = a human's token (from a trusted issuer) and actor_token = the agent's workload token open a session; " +
            "subject_token = a Custody session credential and actor_token = a sub-agent's token delegate a child session whose scope, audience and lifetime only narrow. " +
            'Answers a session credential (JWT, EdDSA) with sub (the human), act (the agent chain), sid, scope, exp, jti. Records session.opened / session.delegated and credential.issued; every refusal is recorded too. ' +
            'No API key: the tokens authenticate the request (token_endpoint_auth_method none). Errors are RFC 6749 §5.2 bodies.',
          security: [],
          consumes: [FORM],
          body: formBody('Form parameters (application/x-www-form-urlencoded).', ['grant_type'], {
            grant_type: str('urn:ietf:params:oauth:grant-type:token-exchange (anything else: unsupported_grant_type).'),
            subject_token: str("The human's token, or a Custody session credential to delegate."),
            subject_token_type: str('urn:ietf:params:oauth:token-type:jwt, :access_token or :id_token.'),
            actor_token: str("The (sub-)agent's workload token (OIDC JWT or SPIFFE JWT-SVID)."),
            actor_token_type: str('As subject_token_type.'),
            scope: str('Space-delimited scope tokens. Required to open; when delegating, defaults to the parent scope and may only narrow it.'),
            audience: { type: 'array', items: str('A logical name of the target service.'), description: 'May repeat.' },
            resource: { type: 'array', items: str('An absolute URI of the target service (RFC 8707).'), description: 'May repeat.' },
            requested_token_type: str('urn:ietf:params:oauth:token-type:access_token (default) or :jwt.'),
            objective: str('Custody extension: the task the session is for. Required to open a session.'),
            requested_lifetime: str('Custody extension: seconds. Opening: capped by configuration. Delegating: beyond the parent expiry is refused.'),
            client_id: str('Optional client identifier, recorded.'),
          }),
          response: {
            200: {
              description: 'The session credential (RFC 8693 §2.2.1).',
              type: 'object',
              required: ['access_token', 'issued_token_type', 'token_type', 'expires_in', 'scope', 'session_id'],
              additionalProperties: false,
              properties: {
                access_token: { type: 'string', description: 'The session credential (JWT, EdDSA).' },
                issued_token_type: { type: 'string' },
                token_type: { type: 'string', const: 'Bearer' },
                expires_in: { type: 'integer' },
                scope: { type: 'string' },
                session_id: { type: 'string' },
              },
            },
            ...oauthErrors([400, 500, 503]),
          },
        },
      },
      async (request, reply) => reply.header('cache-control', 'no-store').send(await authority.exchange(request.body)),
    );

    scope.post<{ Body: { token?: string } }>(
      '/oauth/introspect',
      {
        schema: {
          tags: ['authority'],
          summary: 'Introspect a session credential',
          description:
            'RFC 7662 introspection. A revoked, closed or expired credential, or another tenant’s, is { "active": false } at once, on every node. ' +
            'Authenticate with an API key of the tenant (any role): Authorization: Bearer <key>, or HTTP Basic with the key as client secret.',
          security: [{ bearerAuth: [] }],
          consumes: [FORM],
          body: formBody('Form parameters (application/x-www-form-urlencoded).', ['token'], {
            token: str('The session credential.'),
            token_type_hint: str('Ignored.'),
            client_id: str('Ignored.'),
          }),
          response: {
            200: {
              description: 'RFC 7662 response; only `active` when inactive.',
              type: 'object',
              required: ['active'],
              additionalProperties: false,
              properties: {
                active: { type: 'boolean' },
                scope: { type: 'string' },
                client_id: { type: 'string' },
                sub: { type: 'string' },
                aud: { type: ['string', 'array'], items: { type: 'string' } },
                iss: { type: 'string' },
                exp: { type: 'integer' },
                iat: { type: 'integer' },
                nbf: { type: 'integer' },
                jti: { type: 'string' },
                token_type: { type: 'string' },
                sid: { type: 'string' },
                act: { type: 'object', additionalProperties: true },
                depth: { type: 'integer' },
                tenant: { type: 'string' },
              },
            },
            ...oauthErrors([400, 401, 500, 503]),
          },
        },
      },
      async (request, reply) => {
        const tenant = await introspectionCaller(ctx, request);
        const token = request.body.token;
        if (typeof token !== 'string' || token === '') throw new OAuthFailure(400, 'invalid_request', 'token is required', 'EXCHANGE_INVALID');
        return reply.header('cache-control', 'no-store').send(await authority.introspect(token, tenant));
      },
    );
  });
}
