/**
 * Log streams end to end, as shipped: a real `custody up` delivers to a webhook
 * receiver this test runs (a local HTTP server that verifies the HMAC signature
 * and sometimes fails), across a restart of `custody up` on the same data folder
 * in the middle of the stream. Deduplicated by event id, the receiver has every
 * entry exactly once, in index order, with no gap. A receiver that always fails
 * puts its stream in dead letter, visible in the API and the CLI.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { verifyWebhook } from '../../packages/records/src/streams/stream-formats.js';
import { api, custody, type Server, startServer } from './custody-process.js';

const servers: Server[] = [];
const closers: (() => void)[] = [];
afterAll(async () => {
  for (const s of servers) if (s.child.exitCode === null) await s.kill();
  for (const c of closers) c();
});

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

async function until(check: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function events(session: string, n: number, open: boolean) {
  const who = { initiator: { type: 'human', id: 'ivy@example.com' }, actor: { type: 'agent', id: 'agent-1' } };
  return Array.from({ length: n }, (_, i) =>
    open && i === 0
      ? { type: 'session.opened', session: { id: session, objective: 'stream me' }, ...who }
      : { type: 'tool.requested', session: { id: session }, tool: { name: 'orders.lookup' }, data: { arguments: { n: i } }, ...who },
  );
}

describe('log streams across a custody restart', () => {
  it('a webhook receiver gets every entry exactly once (after dedupe), in order, with no gap', { timeout: 180_000 }, async () => {
    const data = mkdtempSync(join(tmpdir(), 'custody-streams-e2e-'));
    let secret = '';
    let requests = 0;
    let failed = 0;
    let badSignatures = 0;
    const seen = new Set<string>();
    const unique: { id: string; index: number }[] = [];
    let duplicates = 0;
    const receiver = createServer((req, res) => {
      void body(req).then(async (raw) => {
        requests++;
        await new Promise((r) => setTimeout(r, 3)); // a slow receiver, so the restart lands mid-stream
        if (requests % 5 === 0) {
          failed++;
          res.writeHead(503).end();
          return;
        }
        if (!verifyWebhook(secret, raw, req.headers['custody-signature'] as string)) {
          badSignatures++;
          res.writeHead(401).end();
          return;
        }
        const ce = JSON.parse(raw) as { id: string; custodyindex: number; data: { index: number; event: { id: string } } };
        expect(ce.data.event.id).toBe(ce.id);
        expect(ce.data.index).toBe(ce.custodyindex);
        if (seen.has(ce.id)) duplicates++;
        else {
          seen.add(ce.id);
          unique.push({ id: ce.id, index: ce.custodyindex });
        }
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    closers.push(() => receiver.close());
    const hook = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/custody`;

    let server = await startServer(['--data', data, '--quiet']);
    servers.push(server);
    const key = readFileSync(join(data, 'admin.key'), 'utf8').trim();

    const add = await api(server.url, key, '/v1/streams', {
      method: 'POST',
      body: JSON.stringify({ name: 'siem', kind: 'webhook', url: hook, from: 'start', batchSize: 10, backoffMs: 20, maxBackoffMs: 100 }),
    });
    expect(add.status).toBe(201);
    const added = (await add.json()) as { stream: { id: string }; secret: string };
    secret = added.secret;
    const id = added.stream.id;

    const post = async (url: string, list: unknown[]) => {
      const r = await api(url, key, '/v1/events', { method: 'POST', body: JSON.stringify(list) });
      expect(r.status).toBe(201);
    };
    for (let s = 0; s < 6; s++) await post(server.url, events(`s-${s}`, 25, true));
    // Stop mid-stream: some entries delivered, not all.
    await until(() => unique.length >= 20);
    const before = unique.length;
    expect(await server.stop()).toBe(0);
    const status = (await api(server.url, key, `/v1/streams/${id}`).catch(() => undefined)) ?? undefined;
    expect(status).toBeUndefined(); // the server is down

    server = await startServer(['--data', data, '--quiet']);
    servers.push(server);
    for (let s = 6; s < 10; s++) await post(server.url, events(`s-${s}`, 25, true));
    let cursor = 0;
    await until(async () => {
      const v = (await (await api(server.url, key, `/v1/streams/${id}`)).json()) as { lag: number; cursor: number };
      cursor = v.cursor;
      return v.lag === 0 && unique.length === v.cursor;
    });
    expect(before).toBeLessThan(cursor);
    expect(unique.map((u) => u.index)).toEqual(Array.from({ length: cursor }, (_, i) => i));
    expect(cursor).toBeGreaterThanOrEqual(250);
    expect(failed).toBeGreaterThan(0);
    expect(badSignatures).toBe(0);
    expect(requests).toBe(unique.length + duplicates + failed);

    // The stream is listed without its secret; the CLI shows it.
    const listed = await (await api(server.url, key, '/v1/streams')).text();
    expect(listed).not.toContain(secret);
    const cli = custody(['streams', 'list', '--url', server.url, '--api-key', key]);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain('siem');

    // A receiver that always fails: dead letter, visible in the API and the CLI.
    const dead = createServer((req, res) => void body(req).then(() => res.writeHead(500).end()));
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    closers.push(() => dead.close());
    const deadAdd = await api(server.url, key, '/v1/streams', {
      method: 'POST',
      body: JSON.stringify({ name: 'broken', kind: 'webhook', url: `http://127.0.0.1:${(dead.address() as { port: number }).port}/`, from: 'start', maxFailures: 3, backoffMs: 10, maxBackoffMs: 20 }),
    });
    const deadId = ((await deadAdd.json()) as { stream: { id: string } }).stream.id;
    await until(async () => ((await (await api(server.url, key, `/v1/streams/${deadId}`)).json()) as { status: string }).status === 'dead_letter');
    const deadView = (await (await api(server.url, key, `/v1/streams/${deadId}`)).json()) as Record<string, unknown>;
    expect(deadView).toMatchObject({ status: 'dead_letter', failures: 3, cursor: 0, lastError: 'HTTP 500 Internal Server Error' });
    const st = custody(['streams', 'status', 'broken', '--url', server.url, '--api-key', key]);
    expect(st.code).toBe(2);
    expect(st.stdout).toContain('DEAD LETTER');
    expect(st.stdout).toContain('HTTP 500');
    const retried = custody(['streams', 'retry', 'broken', '--url', server.url, '--api-key', key]);
    expect(retried.code).toBe(0);
    const removed = custody(['streams', 'remove', 'broken', '--url', server.url, '--api-key', key]);
    expect(removed.code).toBe(0);

    // Configuration changes are admin entries.
    const admin = (await (await api(server.url, key, '/v1/events?type=admin.*&limit=20')).json()) as { items?: { event: { type: string } }[]; events?: { event: { type: string } }[] };
    const types = (admin.items ?? admin.events ?? []).map((v) => v.event.type).filter((t) => t.startsWith('admin.stream_')).sort();
    expect(types).toEqual(['admin.stream_added', 'admin.stream_added', 'admin.stream_removed', 'admin.stream_retried']);

    // Bad input: a clear 4xx with a code.
    const bad = await api(server.url, key, '/v1/streams', { method: 'POST', body: JSON.stringify({ name: 'x', kind: 'webhook', url: 'http://siem.example.com/' }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('STREAM_INVALID');
    const missing = await api(server.url, key, '/v1/streams/nope');
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('STREAM_NOT_FOUND');
    expect(await server.stop()).toBe(0);
  });
});
