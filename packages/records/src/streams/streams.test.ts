/**
 * Log streams on real stores (SQLite, and PostgreSQL when reachable) with real
 * receivers on local sockets: a webhook that checks signatures and sometimes
 * fails, a Splunk HEC endpoint that parses the batch, a syslog server that
 * parses octet-counted RFC 5424 frames, a receiver that always fails (dead
 * letter), and two deliverers on one PostgreSQL (one lease at a time).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { EventDraft } from '@custody/core';
import { type EventView, Ledger, type LedgerStore, PostgresStore, SqliteStore } from '@custody/ledger';
import { postgresTestEnv } from '@custody/ledger/testing';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, describe, expect, it } from 'vitest';

import { RecordsError } from '../errors.js';
import { octetFrame, SIGNATURE_HEADER, toSyslogMessage, verifyWebhook } from './stream-formats.js';
import { backoffDelay, StreamRunner, Streams } from './streams.js';

const pg = await postgresTestEnv();
const dir = mkdtempSync(join(tmpdir(), 'custody-streams-'));
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
  rmSync(dir, { recursive: true, force: true });
});

const SEED = new Uint8Array(32).fill(9);
const BY = 'key:test-admin';

async function open(kind: 'sqlite' | 'postgres', schema?: string): Promise<Ledger> {
  let store: LedgerStore;
  if (kind === 'sqlite') store = new SqliteStore({ path: join(dir, `${uuidv7()}.db`) });
  else store = new PostgresStore({ connectionString: pg.url, schema: schema!, pool: { max: 4 } });
  const ledger = await Ledger.open({ store, logSeed: SEED, originHost: 'streams.test', maxWaitMs: 1 });
  cleanups.unshift(() => ledger.close());
  return ledger;
}

function drafts(n: number, session = `s-${uuidv7()}`): EventDraft[] {
  const who = { initiator: { type: 'human' as const, id: 'ivy@example.com' }, actor: { type: 'agent' as const, id: 'agent:1' } };
  const t = new Date().toISOString();
  return Array.from({ length: n }, (_, i) =>
    i === 0
      ? { id: uuidv7(), type: 'session.opened', time: t, session: { id: session, objective: 'o' }, ...who }
      : { id: uuidv7(), type: i % 2 ? 'tool.requested' : 'tool.completed', time: t, session: { id: session }, ...who, tool: { name: 'refund' }, data: { arguments: { n: i } } },
  );
}

async function append(ledger: Ledger, tenant: string, list: EventDraft[]): Promise<void> {
  for (const r of await ledger.append(tenant, list)) if (r.status === 'rejected') throw r.reason;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function listen(server: Server | TcpServer): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as { port: number }).port;
}

async function until(check: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A webhook receiver: verifies each signature, fails `failEvery`-th requests, records CloudEvents. */
async function webhookReceiver(secret: () => string, failEvery = 0) {
  const got: { id: string; index: number; type: string; source: string; data: EventView }[] = [];
  let requests = 0;
  let badSignatures = 0;
  const server = createServer((req, res) => {
    void readBody(req).then((body) => {
      requests++;
      if (failEvery > 0 && requests % failEvery === 0) {
        res.writeHead(503).end();
        return;
      }
      if (!verifyWebhook(secret(), body, req.headers[SIGNATURE_HEADER] as string | undefined)) {
        badSignatures++;
        res.writeHead(401).end();
        return;
      }
      expect(req.headers['content-type']).toMatch(/^application\/cloudevents\+json/);
      const ce = JSON.parse(body) as { specversion: string; id: string; custodyindex: number; type: string; source: string; data: EventView };
      expect(ce.specversion).toBe('1.0');
      got.push({ id: ce.id, index: ce.custodyindex, type: ce.type, source: ce.source, data: ce.data });
      res.writeHead(204).end();
    });
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}/hook`, got, requests: () => requests, badSignatures: () => badSignatures };
}

describe('stream formats', () => {
  it('frames RFC 5424 with octet counting and escapes structured data', () => {
    const view = { index: 3, digest: 'abc]"\\', redacted: [], event: { id: 'e-1', type: 'policy.decided', tenant: 't"1', recordedAt: '2026-01-01T00:00:00.000Z', decision: { effect: 'deny' } } } as unknown as EventView;
    const msg = toSyslogMessage(view, { hostname: 'h', facility: 13 });
    expect(msg.startsWith('<108>1 2026-01-01T00:00:00.000Z h custody - policy.decided [custody@32473 tenant="t\\"1" index="3" id="e-1" digest="abc\\]\\"\\\\"] \ufeff{')).toBe(true);
    const frame = octetFrame(msg);
    const sp = frame.indexOf(0x20);
    expect(Number(frame.subarray(0, sp).toString())).toBe(frame.length - sp - 1);
  });

  it('backs off exponentially with jitter, capped', () => {
    expect(backoffDelay(1, 100, 1000, () => 0)).toBe(50);
    expect(backoffDelay(1, 100, 1000, () => 1)).toBe(100);
    expect(backoffDelay(4, 100, 1000, () => 1)).toBe(800);
    expect(backoffDelay(20, 100, 1000, () => 1)).toBe(1000);
  });
});

describe.each(['sqlite', 'postgres'] as const)('streams on %s', (kind) => {
  const skip = kind === 'postgres' ? pg.skip : false;
  const openLedger = async () => {
    if (kind === 'sqlite') return open('sqlite');
    const schema = await pg.freshSchema();
    cleanups.push(() => pg.dropSchema(schema));
    return open('postgres', schema);
  };

  it.skipIf(skip)('validates configuration, never echoes secrets, records admin entries', async () => {
    const ledger = await openLedger();
    const streams = new Streams(ledger);
    const tenant = `t-${uuidv7()}`;
    await expect(streams.add(tenant, { name: 'x', kind: 'webhook', url: 'http://example.com/h', by: BY })).rejects.toMatchObject({ code: 'STREAM_INVALID', field: 'url' });
    await expect(streams.add(tenant, { name: 'x', kind: 'splunk_hec', url: 'https://splunk.example.com', by: BY })).rejects.toMatchObject({ code: 'STREAM_INVALID', field: 'token' });
    await expect(streams.add(tenant, { name: 'x', kind: 'syslog', host: 'logs', url: 'https://a', by: BY } as never)).rejects.toMatchObject({ code: 'STREAM_INVALID', field: 'url' });
    await expect(streams.add(tenant, { name: 'bad name', kind: 'syslog', host: 'logs', by: BY })).rejects.toBeInstanceOf(RecordsError);
    const added = await streams.add(tenant, { name: 'hec', kind: 'splunk_hec', url: 'https://splunk.example.com:8088', token: 'hec-token-secret-value', by: BY });
    expect(added.secret).toBeUndefined();
    expect(JSON.stringify(added)).not.toContain('hec-token-secret-value');
    await expect(streams.add(tenant, { name: 'hec', kind: 'syslog', host: 'logs', by: BY })).rejects.toMatchObject({ code: 'STREAM_EXISTS' });
    const hook = await streams.add(tenant, { name: 'hook', kind: 'webhook', url: 'https://siem.example.com/h', by: BY });
    expect(hook.secret).toMatch(/^whsec_/);
    const listed = JSON.stringify(await streams.list(tenant));
    expect(listed).not.toContain(hook.secret!);
    expect(listed).not.toContain('hec-token-secret-value');
    await streams.retry(tenant, hook.stream.id, BY);
    await streams.remove(tenant, hook.stream.id, BY);
    await expect(streams.get(tenant, hook.stream.id)).rejects.toMatchObject({ code: 'STREAM_NOT_FOUND' });
    const page = await ledger.query(tenant, { type: 'admin.*' }, { limit: 10, order: 'asc' } as never);
    expect(page.items.map((v) => v.event.type)).toEqual(['admin.stream_added', 'admin.stream_added', 'admin.stream_retried', 'admin.stream_removed']);
    expect(JSON.stringify(page.items)).not.toContain(hook.secret!);
    expect(JSON.stringify(page.items)).not.toContain('hec-token-secret-value');
  });

  it.skipIf(skip)('a webhook gets every entry once, in order, through failures and retries', async () => {
    const ledger = await openLedger();
    const streams = new Streams(ledger);
    const tenant = `t-${uuidv7()}`;
    await append(ledger, tenant, drafts(5));
    let secret = '';
    const rx = await webhookReceiver(() => secret, 3);
    const added = await streams.add(tenant, { name: 'hook', kind: 'webhook', url: rx.url, from: 'start', backoffMs: 10, maxBackoffMs: 40, batchSize: 4, by: BY });
    secret = added.secret!;
    const runner = new StreamRunner(ledger, { pollMs: 20 });
    runner.start();
    await append(ledger, tenant, drafts(20));
    const size = async () => (await ledger.store.head(tenant))!.size;
    // Delivered, and the cursor moved past it: the runner advances the cursor just after the
    // receiver acknowledges, so waiting for the receiver alone races the last batch's cursor.
    await until(async () => rx.got.length >= (await size()) && (await streams.get(tenant, added.stream.id)).cursor >= (await size()));
    await runner.stop();
    const total = await size();
    const ids = rx.got.map((g) => g.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(rx.got.map((g) => g.index)).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(rx.badSignatures()).toBe(0);
    expect(rx.got[0]!.source).toBe(`streams.test/${tenant}`);
    expect(rx.got[1]!.data.digest).toBe((await ledger.store.getEntries(tenant, [1]))[0]!.digest);
    const view = await streams.get(tenant, added.stream.id);
    expect(view).toMatchObject({ status: 'active', cursor: total, lag: 0, failures: 0 });
    expect(view.lastError).toBe('HTTP 503 Service Unavailable');
  });

  it.skipIf(skip)('a receiver that always fails puts the stream in dead letter, and retry resumes at the cursor', async () => {
    const ledger = await openLedger();
    const streams = new Streams(ledger);
    const tenant = `t-${uuidv7()}`;
    let failing = true;
    const got: number[] = [];
    const server = createServer((req, res) => {
      void readBody(req).then((b) => {
        if (failing) {
          res.writeHead(500).end();
          return;
        }
        got.push((JSON.parse(b) as { custodyindex: number }).custodyindex);
        res.writeHead(200).end();
      });
    });
    const port = await listen(server);
    await append(ledger, tenant, drafts(3));
    const added = await streams.add(tenant, { name: 'dead', kind: 'webhook', url: `http://127.0.0.1:${port}/`, from: 'start', maxFailures: 3, backoffMs: 10, maxBackoffMs: 20, by: BY });
    const runner = new StreamRunner(ledger, { pollMs: 20 });
    runner.start();
    await until(async () => (await streams.get(tenant, added.stream.id)).status === 'dead_letter');
    const dead = await streams.get(tenant, added.stream.id);
    expect(dead).toMatchObject({ status: 'dead_letter', failures: 3, cursor: 0, lastError: 'HTTP 500 Internal Server Error' });
    failing = false;
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual([]); // stopped until retried
    await streams.retry(tenant, added.stream.id, BY);
    const size = (await ledger.store.head(tenant))!.size;
    await until(() => got.length >= size);
    await runner.stop();
    expect(got).toEqual(Array.from({ length: size }, (_, i) => i));
  });

  it.skipIf(skip)('Splunk HEC gets batches of JSON events with the Splunk token', async () => {
    const ledger = await openLedger();
    const streams = new Streams(ledger);
    const tenant = `t-${uuidv7()}`;
    const events: { time: number; sourcetype: string; index?: string; event: EventView }[] = [];
    let auth: string | undefined;
    let path: string | undefined;
    let batches = 0;
    const server = createServer((req, res) => {
      void readBody(req).then((body) => {
        auth = req.headers.authorization;
        path = req.url;
        batches++;
        // HEC's batch format: JSON objects one after another.
        for (const line of body.split('\n')) events.push(JSON.parse(line) as (typeof events)[number]);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"text":"Success","code":0}');
      });
    });
    const port = await listen(server);
    await append(ledger, tenant, drafts(7));
    await streams.add(tenant, { name: 'hec', kind: 'splunk_hec', url: `http://127.0.0.1:${port}`, token: 'tok-123', index: 'agents', batchSize: 5, from: 'start', by: BY });
    const runner = new StreamRunner(ledger, { pollMs: 20 });
    runner.start();
    const size = (await ledger.store.head(tenant))!.size;
    await until(() => events.length >= size);
    await runner.stop();
    expect(auth).toBe('Splunk tok-123');
    expect(path).toBe('/services/collector/event');
    expect(batches).toBe(2);
    expect(events.map((e) => e.event.index)).toEqual(Array.from({ length: size }, (_, i) => i));
    expect(events[0]).toMatchObject({ sourcetype: 'custody:entry', index: 'agents' });
    expect(typeof events[0]!.time).toBe('number');
  });

  it.skipIf(skip)('syslog gets RFC 5424 messages in octet-counted frames over TCP', async () => {
    const ledger = await openLedger();
    const streams = new Streams(ledger);
    const tenant = `t-${uuidv7()}`;
    const messages: string[] = [];
    const server = createTcpServer((socket) => {
      let buf = Buffer.alloc(0);
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const sp = buf.indexOf(0x20);
          if (sp < 0) break;
          const len = buf.subarray(0, sp).toString('ascii');
          expect(len).toMatch(/^[1-9]\d*$/);
          if (buf.length < sp + 1 + Number(len)) break;
          messages.push(buf.subarray(sp + 1, sp + 1 + Number(len)).toString('utf8'));
          buf = buf.subarray(sp + 1 + Number(len));
        }
      });
      socket.on('end', () => {
        expect(buf.length).toBe(0);
        socket.end();
      });
    });
    const port = await listen(server);
    await append(ledger, tenant, drafts(6));
    await streams.add(tenant, { name: 'syslog', kind: 'syslog', host: '127.0.0.1', port, from: 'start', by: BY });
    const runner = new StreamRunner(ledger, { pollMs: 20 });
    runner.start();
    const size = (await ledger.store.head(tenant))!.size;
    await until(() => messages.length >= size);
    await runner.stop();
    // RFC 5424 §6: HEADER SP STRUCTURED-DATA SP MSG, with a BOM before UTF-8 MSG.
    const SYNTAX =
      /^<(\d{1,3})>1 (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})) ([\x21-\x7e]{1,255}) ([\x21-\x7e]{1,48}) ([\x21-\x7e]{1,128}) ([\x21-\x7e]{1,32}) (-|(?:\[[^ =\]"]{1,32}(?: [^ =\]"]{1,32}="(?:[^"\\\]]|\\["\\\]])*")*\])+) \ufeff(.*)$/s;
    const parsed = messages.map((m) => {
      const r = SYNTAX.exec(m);
      expect(r, m.slice(0, 200)).not.toBeNull();
      return { pri: Number(r![1]), host: r![3], app: r![4], msgid: r![6], sd: r![7]!, msg: JSON.parse(r![8]!) as EventView };
    });
    expect(parsed.map((p) => p.msg.index)).toEqual(Array.from({ length: size }, (_, i) => i));
    expect(parsed[0]).toMatchObject({ pri: 13 * 8 + 6, host: 'streams.test', app: 'custody', msgid: 'session.opened' });
    expect(parsed[1]!.sd).toContain(`index="1" id="${parsed[1]!.msg.event.id}"`);
  });
});

describe('two deliverers on one PostgreSQL', () => {
  it.skipIf(pg.skip)('hold the lease one at a time: every entry once, in order', async () => {
    const schema = await pg.freshSchema();
    cleanups.push(() => pg.dropSchema(schema));
    const a = await open('postgres', schema);
    const b = await open('postgres', schema);
    const tenant = `t-${uuidv7()}`;
    const streams = new Streams(a);
    let secret = '';
    const rx = await webhookReceiver(() => secret);
    secret = (await streams.add(tenant, { name: 'hook', kind: 'webhook', url: rx.url, from: 'start', batchSize: 3, by: BY })).secret!;
    const r1 = new StreamRunner(a, { pollMs: 10, holder: 'node-a' });
    const r2 = new StreamRunner(b, { pollMs: 10, holder: 'node-b' });
    r1.start();
    r2.start();
    for (let i = 0; i < 5; i++) await append(i % 2 ? a : b, tenant, drafts(6));
    const size = async () => (await a.store.head(tenant))!.size;
    await until(async () => rx.got.length >= (await size()));
    await r1.stop();
    await r2.stop();
    expect(rx.got.map((g) => g.index)).toEqual(Array.from({ length: await size() }, (_, i) => i));
  });
});
