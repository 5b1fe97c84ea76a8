/**
 * The web console (packages/console), when the server is given its built folder:
 * `/assets/*` from the folder, and the console's index.html for any page a browser
 * navigates to outside the API (`/`, `/sessions/…`, `/approvals` …), so links into
 * the console work. API clients are unaffected: `/` still answers JSON to anyone
 * who does not ask for HTML, and unknown API paths still answer 404 JSON.
 * @internal
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/** Security headers of the console's pages: same-origin scripts and API only, never framed. */
export const CONSOLE_HEADERS = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
} as const;

/** True for a browser navigation: a GET that asks for HTML, outside the API's own paths. */
export function wantsConsole(request: FastifyRequest): boolean {
  if (request.method !== 'GET' && request.method !== 'HEAD') return false;
  const path = request.url.split('?')[0] ?? '';
  if (path.startsWith('/v1/') || path === '/v1' || path.startsWith('/oauth/') || path.startsWith('/.well-known/')) return false;
  return (request.headers.accept ?? '').includes('text/html');
}

/**
 * Serves the built console from `dir` (index.html and assets/).
 * @returns the index page, or undefined when `dir` holds no built console
 */
export async function consoleRoutes(app: FastifyInstance, dir: string): Promise<string | undefined> {
  const index = join(dir, 'index.html');
  if (!existsSync(index)) return undefined;
  const html = readFileSync(index, 'utf8');
  if (existsSync(join(dir, 'assets'))) {
    await app.register(fastifyStatic, {
      root: join(dir, 'assets'),
      prefix: '/assets/',
      index: false,
      wildcard: false,
      // File names carry a content hash: cache them for good.
      immutable: true,
      maxAge: '365d',
      setHeaders: (res) => res.header('x-content-type-options', 'nosniff'),
    });
  }
  return html;
}
