/**
 * API keys of the caller's tenant: list, create, revoke (admin keys only).
 * @internal
 */
import { type ApiKeyRole, createApiKey, revokeApiKey } from '../api-keys.js';
import { ROLES, callerOf } from '../auth.js';
import { ApiError } from '../errors.js';
import { AUTHED, type RouteContext, access, errorResponses, rolesLine } from '../route-kit.js';
import { ref } from '../schemas.js';

/** Registers the key routes. */
export function keyRoutes(ctx: RouteContext): void {
  const { app, ledger } = ctx;
  const admin = access(ctx, ROLES.admin);
  const hook = admin.onRequest ? { onRequest: admin.onRequest } : {};

  app.get(
    '/v1/keys',
    {
      ...hook,
      schema: {
        tags: ['keys'],
        summary: 'List API keys',
        description: `Every API key of the tenant, live and revoked; never a secret. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        response: {
          200: { type: 'object', required: ['keys'], additionalProperties: false, properties: { keys: { type: 'array', items: ref('ApiKey') } } },
          ...errorResponses(AUTHED),
        },
      },
    },
    async (request) => {
      const tenant = callerOf(request).tenant;
      const rows = await ledger.store.listApiKeys(tenant);
      return {
        keys: rows
          .filter((k) => k.tenant === tenant)
          .map((k) => ({ id: k.id, tenant: k.tenant, role: k.role, name: k.name, createdAt: k.createdAt, ...(k.revokedAt !== undefined ? { revokedAt: k.revokedAt } : {}) })),
      };
    },
  );

  app.post<{ Body: { role: ApiKeyRole; name: string } }>(
    '/v1/keys',
    {
      ...hook,
      schema: {
        tags: ['keys'],
        summary: 'Create an API key',
        description:
          "Creates a key for the caller's tenant. The answer holds the key itself: it is shown once (only its SHA-256 is stored). " +
          `Appends admin.key_created (actor: the admin key) to the tenant's log. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        body: {
          type: 'object',
          required: ['role', 'name'],
          additionalProperties: false,
          properties: {
            role: { type: 'string', enum: ['ingest', 'read', 'approve', 'admin'] },
            name: { type: 'string', minLength: 1, maxLength: 256, description: 'What the key is for.' },
          },
        },
        response: {
          201: {
            description: 'Created. `key` is shown only this once.',
            type: 'object',
            required: ['id', 'key', 'tenant', 'role', 'name', 'createdAt'],
            additionalProperties: false,
            properties: {
              id: { type: 'string' },
              key: { type: 'string', description: 'cust_<id>_<secret>: send it as Authorization: Bearer <key>.' },
              tenant: { type: 'string' },
              role: { type: 'string', enum: ['ingest', 'read', 'approve', 'admin'] },
              name: { type: 'string' },
              createdAt: { type: 'string', format: 'date-time' },
            },
          },
          ...errorResponses([...AUTHED, 413, 415]),
        },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const { key, row } = await createApiKey(ledger, { tenant: caller.tenant, role: request.body.role, name: request.body.name, by: `key:${caller.id}` });
      return reply.code(201).send({ id: row.id, key, tenant: row.tenant, role: row.role, name: row.name, createdAt: row.createdAt });
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/keys/:id',
    {
      ...hook,
      schema: {
        tags: ['keys'],
        summary: 'Revoke an API key',
        description: `Revokes a live key of the caller's tenant at once, then appends admin.key_revoked to the tenant's log. ${rolesLine(ROLES.admin)}`,
        security: admin.security,
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64, description: 'Key id.' } } },
        response: { 204: { description: 'Revoked.', type: 'null' }, ...errorResponses([...AUTHED, 404, 413, 415]) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const ok = await revokeApiKey(ledger, { tenant: caller.tenant, id: request.params.id, by: `key:${caller.id}` });
      if (!ok) throw new ApiError('KEY_NOT_FOUND', 404, `this tenant has no live API key ${request.params.id}`);
      return reply.code(204).send();
    },
  );
}
