/**
 * Public routes: health, the API root and the OpenAPI document.
 * @internal
 */
import { PUBLIC, type RouteContext, errorResponses } from '../route-kit.js';
import { CONSOLE_HEADERS, wantsConsole } from './console-routes.js';

/** Registers the public routes. */
export function metaRoutes(ctx: RouteContext, consoleHtml?: string): void {
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
        description: 'Where things are. No API key needed. A browser (Accept: text/html) gets the web console instead, when the server has it.',
        security: [],
        response: {
          200: {
            type: 'object',
            required: ['name', 'api', 'openapi', 'health'],
            additionalProperties: false,
            properties: { name: { type: 'string' }, api: { type: 'string' }, openapi: { type: 'string' }, health: { type: 'string' }, console: { type: 'string', description: 'Present when this server serves the web console (to requests that accept text/html).' } },
          },
          ...errorResponses(PUBLIC),
        },
      },
    },
    async (request, reply) => {
      // A browser gets the web console (when this server has it); API clients get where things are.
      if (consoleHtml !== undefined && wantsConsole(request)) return reply.headers(CONSOLE_HEADERS).type('text/html; charset=utf-8').send(consoleHtml);
      return { name: 'Custody', api: '/v1', openapi: '/v1/openapi.json', health: '/v1/health', ...(consoleHtml !== undefined ? { console: '/' } : {}) };
    },
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
