/**
 * The outbox against a real Custody server (SQLite; PostgreSQL when reachable):
 * only events the server acknowledged by id leave the spool (H1), and one event
 * the server refuses for good is set aside without blocking what follows (H2).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { backends, type Fault, faultyFetch, startCustody, type TestCustody } from '../test-support/custody-server.js';
import { Custody } from './client.js';
import { LedgerUnavailableError, RequestError, type SdkError, UndeliveredError } from './errors.js';
import { FileSpool } from './spool/file-spool.js';
import type { OutgoingEvent } from './spool-store.js';
import { MemorySpool } from './spool-store.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const stores = await backends();

describe.each(stores)('outbox on $name', ({ name, skip }) => {
  let server: TestCustody;
  beforeAll(async () => {
    if (skip === false) server = await startCustody(name);
  });
  afterAll(async () => {
    await server?.close();
  });

  /** A client whose POST /v1/events answers follow `events()`. */
  const client = (events: () => Fault, extra: { onError?: (e: Error) => void; onDropped?: (event: OutgoingEvent, error: SdkError) => void; toolsWhenUnavailable?: 'proceed' | 'fail-closed'; spool?: MemorySpool } = {}) =>
    new Custody({
      url: server.url,
      apiKey: server.ingest,
      otel: false,
      ...(extra.spool !== undefined ? { spool: extra.spool } : {}),
      ...(extra.toolsWhenUnavailable !== undefined ? { toolsWhenUnavailable: extra.toolsWhenUnavailable } : {}),
      fetch: faultyFetch((url, init) => (url.endsWith('/v1/events') && init?.method === 'POST' ? events() : 'forward')),
      delivery: { initialBackoffMs: 10, maxBackoffMs: 20, ...(extra.onError !== undefined ? { onError: extra.onError } : {}), ...(extra.onDropped !== undefined ? { onDropped: extra.onDropped } : {}) },
    });

  it.skipIf(skip)('H1: keeps spooled events that a 200 answer without matching results did not acknowledge, and delivers them later', async () => {
    let fault: Fault = 'forward';
    const errors: Error[] = [];
    const custody = client(() => fault, { onError: (e) => errors.push(e) });
    const session = await custody.openSession({ ...(await server.tokens()), scope: 'files.read_file', objective: 'H1' });
    expect((await session.prompt('hello')).spooled).toBe(false);

    fault = 'unavailable';
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await session.modelOutput(`during outage ${i}`);
      expect(r.spooled).toBe(true);
      ids.push(r.id);
    }
    for (const f of ['html200', 'empty200'] as const) {
      fault = f;
      errors.length = 0;
      await expect(custody.flush(0)).rejects.toBeInstanceOf(LedgerUnavailableError);
      expect(custody.pending(), f).toBe(3);
      expect(errors.at(-1), f).toMatchObject({ code: 'SDK_DELIVERY_UNACKNOWLEDGED' });
    }
    // A direct record answered 200 without results is spooled, not reported delivered.
    const direct = await session.modelOutput('direct, answered by a maintenance page');
    expect(direct.spooled).toBe(true);
    ids.push(direct.id);
    expect(custody.pending()).toBe(4);

    // Results for fewer events than sent: only the acknowledged prefix leaves the spool.
    fault = 'short200';
    await expect(custody.flush(0)).rejects.toMatchObject({ code: 'SDK_LEDGER_UNAVAILABLE', cause: { code: 'SDK_DELIVERY_UNACKNOWLEDGED' } });
    expect(custody.pending()).toBe(1);

    fault = 'forward';
    await custody.flush(5_000);
    expect(custody.pending()).toBe(0);
    const recorded = (await server.events(session.id)).map((e) => e.event.id);
    for (const id of ids) expect(recorded.filter((x) => x === id), id).toHaveLength(1);
    await session.close();
    await custody.close();
  });

  it.skipIf(skip)('H2: refuses reserved event types locally, before spooling, with SDK_EVENT_TYPE_RESERVED', async () => {
    const custody = client(() => 'forward');
    const session = await custody.openSession({ ...(await server.tokens()), scope: 'files.read_file', objective: 'H2 local' });
    for (const type of ['approval.granted', 'session.revoked', 'credential.issued', 'admin.key.created']) {
      await expect(session.record({ type, data: {} }), type).rejects.toMatchObject({ code: 'SDK_EVENT_TYPE_RESERVED' });
    }
    expect(custody.pending()).toBe(0);
    await session.close();
    await custody.close();
  });

  it.skipIf(skip)('H2: an event the server refuses is rejected to the caller when direct, and set aside (onDropped) when spooled; later tool calls are decided (fail-closed and proceed)', async () => {
    let fault: Fault = 'forward';
    const dropped: { event: OutgoingEvent; error: SdkError }[] = [];
    const errors: Error[] = [];
    for (const mode of ['fail-closed', 'proceed'] as const) {
      dropped.length = 0;
      const spool = new MemorySpool();
      const custody = client(() => fault, { toolsWhenUnavailable: mode, spool, onError: (e) => errors.push(e), onDropped: (event, error) => dropped.push({ event, error }) });
      const session = await custody.openSession({ ...(await server.tokens()), scope: 'files.read_file payments.transfer', objective: `H2 ${mode}` });
      // An event the server refuses with 403 naming it (the SDK's local check bypassed: an older SDK, another writer of the spool).
      const poison = { id: '01900000-0000-7000-8000-000000000001', type: 'approval.granted', time: new Date().toISOString(), session: { id: session.id } } as OutgoingEvent;
      fault = 'unavailable';
      expect((await session.modelOutput('before')).spooled).toBe(true);
      await spool.append([poison]);
      expect((await session.modelOutput('after')).spooled).toBe(true);
      fault = 'forward';
      await custody.flush(5_000);
      expect(custody.pending()).toBe(0);
      expect(dropped.map((d) => d.event.id)).toEqual([poison.id]);
      expect(dropped[0]!.error).toMatchObject({ code: 'SDK_EVENT_DROPPED', apiCode: 'FORBIDDEN' });
      expect(spool.rejected.map((r) => r.event.id)).toEqual([poison.id]);
      const types = (await server.events(session.id)).map((e) => e.event.type);
      expect(types.filter((t) => t === 'model.output')).toHaveLength(2);

      // A later tool call is decided by policy, whatever the fail mode: a transfer policy denies is refused, not run.
      let ran = false;
      await expect(session.tool('payments.transfer', () => (ran = true))({ amount: 99_999_999, currency: 'USD', to: 'DE89370400440532013000' })).rejects.toMatchObject({ code: 'SDK_DENIED' });
      expect(ran).toBe(false);
      expect(await session.tool('files.read_file', () => 'read')({ path: 'invoices/a.txt' })).toBe('read');
      await session.close();
      await custody.close();
    }
  });

  it.skipIf(skip)('H2: a refused direct event rejects record() with RequestError, is never spooled, and blocks nothing', async () => {
    const custody = client(() => 'forward');
    const session = await custody.openSession({ ...(await server.tokens()), scope: 'files.read_file', objective: 'H2 direct' });
    // The server refuses an external.* event without the x- prefix rules, or any event it finds invalid: here, a bad cause.
    await expect(session.record({ type: 'model.output', cause: 'not-a-uuid', data: {} })).rejects.toBeInstanceOf(RequestError);
    expect(custody.pending()).toBe(0);
    expect((await session.modelOutput('next')).spooled).toBe(false);
    // A reserved type that reaches the outbox (the local check bypassed) is refused by the server (403 naming the event): rejected, not spooled.
    const poison = { id: '01900000-0000-7000-8000-000000000002', type: 'approval.granted', time: new Date().toISOString(), session: { id: session.id } } as OutgoingEvent;
    await expect(custody.outbox.submit(poison)).rejects.toMatchObject({ code: 'SDK_REQUEST_FAILED', status: 403, apiCode: 'FORBIDDEN' });
    expect(custody.pending()).toBe(0);
    expect((await session.modelOutput('still direct')).spooled).toBe(false);
    await session.close();
    await custody.close();
  });

  it.skipIf(skip)('H2: a key the server refuses as a whole (401) keeps the events and retries them', async () => {
    const custody = new Custody({ url: server.url, apiKey: 'cust_not-a-key', otel: false, delivery: { initialBackoffMs: 10, maxBackoffMs: 20 } });
    const opener = client(() => 'forward');
    const session = await opener.openSession({ ...(await server.tokens()), scope: 'files.read_file', objective: 'H2 key' });
    const resumed = await custody.resume(session.credential);
    expect((await resumed.modelOutput('kept')).spooled).toBe(true);
    await expect(custody.flush(0)).rejects.toBeInstanceOf(LedgerUnavailableError);
    expect(custody.pending()).toBe(1);
    await expect(custody.close({ flushTimeoutMs: 0 })).rejects.toMatchObject({ code: 'SDK_EVENTS_UNDELIVERED', undelivered: 1 });
    await session.close();
    await opener.close();
  });

  it.skipIf(skip)('L3: close() delivers what waits in the in-memory spool (bounded), and rejects naming how many events are lost instead of dropping them silently; a FileSpool keeps them', async () => {
    let fault: Fault = 'unavailable';
    const custody = client(() => fault);
    const session = await custody.openSession({ ...(await server.tokens()), scope: 'files.read_file', objective: 'L3 close' });
    const a = await session.modelOutput('spooled 1');
    const b = await session.modelOutput('spooled 2');
    expect([a.spooled, b.spooled]).toEqual([true, true]);
    // The ledger comes back while close() flushes: nothing is lost.
    setTimeout(() => (fault = 'forward'), 200);
    await custody.close();
    const recorded = (await server.events(session.id)).map((e) => e.event.id);
    expect(recorded).toEqual(expect.arrayContaining([a.id, b.id]));

    fault = 'unavailable';
    const again = client(() => fault);
    const resumed = await again.resume(session.credential);
    await resumed.modelOutput('lost 1');
    await resumed.modelOutput('lost 2');
    await resumed.modelOutput('lost 3');
    const started = Date.now();
    const err = await again.close({ flushTimeoutMs: 300 }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(UndeliveredError);
    expect(err).toMatchObject({ code: 'SDK_EVENTS_UNDELIVERED', undelivered: 3, message: expect.stringContaining('3 event(s)') });
    expect(Date.now() - started).toBeLessThan(5_000);

    // A durable spool keeps them for the next process: close() neither waits nor throws.
    const dir = mkdtempSync(join(tmpdir(), 'custody-l3-'));
    try {
      const durable = new Custody({ url: server.url, apiKey: server.ingest, otel: false, spool: new FileSpool({ dir }), fetch: faultyFetch(() => 'unavailable') });
      const kept = await durable.resume(session.credential);
      await kept.modelOutput('kept on disk');
      await durable.close();
      const reopened = new FileSpool({ dir });
      expect(reopened.pending()).toBe(1);
      await reopened.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    fault = 'forward';
    await session.close();
  });
  it.skipIf(skip)('gzips large batches, falls back to plain JSON for good when something on the way answers 415, and can be told not to', async () => {
    const run = async (opts: { refuseGzip: boolean; gzip?: boolean }) => {
      const encodings: (string | null)[] = [];
      let down = true;
      const fetchFn = async (url: string, init?: RequestInit): Promise<Response> => {
        if (url.endsWith('/v1/events') && init?.method === 'POST') {
          const enc = new Headers(init.headers).get('content-encoding');
          if (down) return Response.json({ error: { code: 'STORE_UNAVAILABLE', message: 'down' } }, { status: 503, headers: { 'retry-after': '1' } });
          encodings.push(enc);
          // A proxy that refuses compressed bodies, as a server without gzip on the route does.
          if (opts.refuseGzip && enc === 'gzip') return Response.json({ error: { code: 'MEDIA_TYPE_UNSUPPORTED', message: 'no gzip here' } }, { status: 415 });
        }
        return fetch(url, init);
      };
      const custody = new Custody({ url: server.url, apiKey: server.ingest, otel: false, fetch: fetchFn, delivery: { initialBackoffMs: 10, maxBackoffMs: 20, onError: () => undefined, ...(opts.gzip !== undefined ? { gzip: opts.gzip } : {}) } });
      const session = await custody.openSession({ ...(await server.tokens()), scope: 'files.read_file', objective: 'gzip' });
      const ids: string[] = [];
      const spoolSome = async () => {
        down = true;
        for (let i = 0; i < 40; i++) ids.push((await session.modelOutput(`a model output long enough to make a batch worth compressing: ${'lorem ipsum '.repeat(40)} ${i}`)).id);
        down = false;
        await custody.flush(5_000);
      };
      await spoolSome();
      await spoolSome();
      const recorded = (await server.events(session.id)).map((e) => e.event.id);
      for (const id of ids) expect(recorded.filter((x) => x === id), id).toHaveLength(1);
      await session.close();
      await custody.close();
      return encodings;
    };
    expect(await run({ refuseGzip: false })).toEqual(['gzip', 'gzip']);
    expect(await run({ refuseGzip: true })).toEqual(['gzip', null, null]);
    expect(await run({ refuseGzip: false, gzip: false })).toEqual([null, null]);
    expect(() => new Custody({ url: server.url, apiKey: server.ingest, otel: false, delivery: { gzip: 'yes' as unknown as boolean } })).toThrow(/delivery.gzip: expected true or false/);
  });
});
