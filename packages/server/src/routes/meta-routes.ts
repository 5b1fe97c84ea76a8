/**
 * Public routes: health, the API root and the OpenAPI document.
 * @internal
 */
import { PUBLIC, type RouteContext, errorResponses } from '../route-kit.js';

/** Registers the public routes. */
export function metaRoutes(ctx: RouteContext): void {
  const { app, ledger } = ctx;

  app.get(
    '/v1/health',
    {
      schema: {
        tags: ['meta'],
        summary: 'Health',
        description: 'ok when the store answers. No API key needed.',
        security: [],
        response: {
          200: {
            type: 'object',
            required: ['status', 'store'],
            additionalProperties: false,
            properties: { status: { type: 'string', const: 'ok' }, store: { type: 'string', enum: ['sqlite', 'postgres'] } },
          },
          ...errorResponses(PUBLIC),
        },
      },
    },
    async () => {
      // A read that reaches the store: a down store answers 503, not ok.
      await ledger.store.getMeta('originHost');
      return { status: 'ok', store: ledger.store.kind };
    },
  );

  app.get(
    '/',
    {
      schema: {
        tags: ['meta'],
        summary: 'API root',
        description: 'Where things are. No API key needed.',
        security: [],
        response: {
          200: {
            type: 'object',
            required: ['name', 'api', 'openapi', 'health'],
            additionalProperties: false,
            properties: { name: { type: 'string' }, api: { type: 'string' }, openapi: { type: 'string' }, health: { type: 'string' } },
          },
          ...errorResponses(PUBLIC),
        },
      },
    },
    async () => ({ name: 'Custody', api: '/v1', openapi: '/v1/openapi.json', health: '/v1/health' }),
  );

  app.get(
    '/v1/openapi.json',
    {
      schema: {
        tags: ['meta'],
        summary: 'OpenAPI document',
        description: 'This API as OpenAPI 3.1, generated from the route schemas the server validates with. No API key needed.',
        security: [],
        response: { 200: { description: 'The OpenAPI 3.1 document.', type: 'object', additionalProperties: true }, ...errorResponses(PUBLIC) },
      },
    },
    async () => app.swagger(),
  );
}
