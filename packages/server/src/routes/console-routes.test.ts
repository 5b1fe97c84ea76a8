/**
 * Serving the web console: browsers get its page at `/` and at any console path,
 * its assets with long caching; API clients and API paths are unaffected.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Ledger, SqliteStore } from '@custody/ledger';
import { afterAll, describe, expect, it } from 'vitest';

import { createServer } from '../server.js';

const dir = mkdtempSync(join(tmpdir(), 'custody-console-'));
const site = join(dir, 'site');
mkdirSync(join(site, 'assets'), { recursive: true });
writeFileSync(join(site, 'index.html'), '<!doctype html><title>Custody</title><div id="root"></div>');
writeFileSync(join(site, 'assets', 'index-abc123.js'), 'console.log(1)');
const ledger = await Ledger.open({ store: new SqliteStore({ path: join(dir, 'ledger.db') }), logSeed: new Uint8Array(32).fill(3), originHost: 'custody.test' });
const app = await createServer({ ledger, consoleDir: site });
const bare = await createServer({ ledger });
afterAll(async () => {
  await app.close();
  await bare.close();
  await ledger.close();
  rmSync(dir, { recursive: true, force: true });
});

const html = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };

describe('the console, served by the API server', () => {
  it('answers a browser at / and at console paths with the page, under a strict CSP', async () => {
    for (const url of ['/', '/sessions/ses-1', '/approvals', '/reports/denied-calls?since=2026-01-01']) {
      const res = await app.inject({ url, headers: html });
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-type']).toContain('text/html');
      expect(res.body).toContain('<div id="root">');
      expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
      expect(res.headers['x-content-type-options']).toBe('nosniff');
    }
  });

  it('serves assets with long-lived caching, and 404s unknown ones in the API error shape', async () => {
    const res = await app.inject({ url: '/assets/index-abc123.js' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['cache-control']).toContain('immutable');
    const missing = await app.inject({ url: '/assets/nope.js' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.code).toBe('NOT_FOUND');
  });

  it('leaves API clients and API paths alone', async () => {
    const root = await app.inject({ url: '/' });
    expect(root.json()).toMatchObject({ name: 'Custody', api: '/v1', console: '/' });
    for (const url of ['/v1/nope', '/oauth/nope', '/.well-known/nope']) {
      const res = await app.inject({ url, headers: html });
      expect(res.statusCode, url).toBe(404);
      expect(res.json().error.code).toBe('NOT_FOUND');
    }
    expect((await app.inject({ method: 'POST', url: '/sessions/x', headers: html })).statusCode).toBe(404);
  });

  it('without a console folder, / is JSON for everyone', async () => {
    const res = await bare.inject({ url: '/', headers: html });
    expect(res.json()).toEqual({ name: 'Custody', api: '/v1', openapi: '/v1/openapi.json', health: '/v1/health' });
    expect((await bare.inject({ url: '/sessions/x', headers: html })).statusCode).toBe(404);
  });
});
