/**
 * Log streams: configuration (every change an `admin.*` entry) and the delivery
 * loop. A stream delivers its tenant's entries in index order, at least once:
 * it reads the entries after its durable cursor, delivers a batch, and moves the
 * cursor only after the target acknowledged. Failures back off exponentially
 * with full jitter; after `maxFailures` consecutive ones the stream is
 * `dead_letter` (with the last error) until retried. One deliverer per stream at
 * a time, across processes and nodes, by a lease row in the store; every cursor
 * move is fenced by that lease. See docs/records.md, "Streaming".
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';

import type { EventDraft } from '@custody/core';
import { type EventView, type Ledger, type StreamRow, viewOf } from '@custody/ledger';
import { v7 as uuidv7 } from 'uuid';

import { RecordsError } from '../errors.js';
import { checkStreamInput, configOf, secretFingerprint, type StreamInput, streamView, type StreamView, targetOf } from './stream-config.js';
import { deliver } from './stream-targets.js';

/** A stream just added: its view and, for a webhook whose secret Custody generated, that secret (shown once). */
export interface AddedStream {
  stream: StreamView;
  secret?: string;
  /** Id of the `admin.stream_added` entry. */
  entry: string;
}

/** Stream configuration for every tenant of a ledger. */
export class Streams {
  readonly ledger: Ledger;
  readonly #now: () => Date;

  constructor(ledger: Ledger, opts: { now?: () => Date } = {}) {
    this.ledger = ledger;
    this.#now = opts.now ?? (() => new Date());
  }

  async #record(tenant: string, by: string, type: `admin.${string}`, data: Record<string, unknown>): Promise<string> {
    const draft: EventDraft = { id: uuidv7(), type, time: this.#now().toISOString(), actor: { type: 'service', id: by }, data };
    const [r] = await this.ledger.append(tenant, [draft]);
    if (r!.status === 'rejected') throw r!.reason;
    return draft.id!;
  }

  async #head(tenant: string): Promise<number> {
    return (await this.ledger.store.head(tenant))?.size ?? 0;
  }

  async #row(tenant: string, id: string): Promise<StreamRow> {
    const row = typeof id === 'string' && id.length <= 128 ? await this.ledger.store.streams.getStream(tenant, id) : undefined;
    if (row === undefined) throw new RecordsError('STREAM_NOT_FOUND', `no stream ${String(id).slice(0, 128)}`, { field: 'id' });
    return row;
  }

  /** The tenant's streams, with their lag behind the log's head. */
  async list(tenant: string): Promise<StreamView[]> {
    const head = await this.#head(tenant);
    return (await this.ledger.store.streams.listStreams(tenant)).map((r) => streamView(r, head));
  }

  /** One stream, with its lag. @throws RecordsError `STREAM_NOT_FOUND` */
  async get(tenant: string, id: string): Promise<StreamView> {
    return streamView(await this.#row(tenant, id), await this.#head(tenant));
  }

  /**
   * Adds a stream: records `admin.stream_added` (target and secret fingerprint,
   * never the secret), then stores it.
   * @throws RecordsError `STREAM_INVALID`, `STREAM_EXISTS`
   */
  async add(tenant: string, input: StreamInput & { by: string }): Promise<AddedStream> {
    const checked = checkStreamInput(input);
    const existing = await this.ledger.store.streams.listStreams(tenant);
    if (existing.some((s) => s.name === checked.name)) throw new RecordsError('STREAM_EXISTS', `the tenant already has a stream named ${checked.name}`, { field: 'name' });
    const from = input.from ?? 'now';
    if (from !== 'now' && from !== 'start' && !(typeof from === 'number' && Number.isSafeInteger(from) && from >= 0)) {
      throw new RecordsError('STREAM_INVALID', 'from must be "now", "start" or an entry index', { field: 'from' });
    }
    const id = uuidv7();
    const secret = checked.config.secret ?? checked.config.token;
    const entry = await this.#record(tenant, input.by, 'admin.stream_added', {
      stream: id,
      name: checked.name,
      kind: checked.kind,
      target: targetOf(checked.kind, checked.config),
      ...(secret !== undefined ? { secretFingerprint: secretFingerprint(secret) } : {}),
    });
    // "now": after the admin entry, which is the first entry the stream does not carry.
    const cursor = from === 'start' ? 0 : from === 'now' ? await this.#head(tenant) : from;
    const at = this.#now().toISOString();
    const row: StreamRow = { tenant, id, name: checked.name, kind: checked.kind, config: JSON.stringify(checked.config), status: 'active', cursor, failures: 0, createdAt: at, updatedAt: at };
    if (!(await this.ledger.store.streams.insertStream(row))) throw new RecordsError('STREAM_EXISTS', `the tenant already has a stream named ${checked.name}`, { field: 'name' });
    return { stream: streamView(row, await this.#head(tenant)), entry, ...(checked.generatedSecret !== undefined ? { secret: checked.generatedSecret } : {}) };
  }

  /** Removes a stream: records `admin.stream_removed` (with its cursor), then deletes it. @throws RecordsError `STREAM_NOT_FOUND` */
  async remove(tenant: string, id: string, by: string): Promise<{ id: string; entry: string }> {
    const row = await this.#row(tenant, id);
    const entry = await this.#record(tenant, by, 'admin.stream_removed', { stream: row.id, name: row.name, kind: row.kind, cursor: row.cursor });
    await this.ledger.store.streams.deleteStream(tenant, row.id);
    return { id: row.id, entry };
  }

  /** Makes a (dead-lettered) stream active again: records `admin.stream_retried`. @throws RecordsError `STREAM_NOT_FOUND` */
  async retry(tenant: string, id: string, by: string): Promise<StreamView & { entry: string }> {
    const row = await this.#row(tenant, id);
    const entry = await this.#record(tenant, by, 'admin.stream_retried', {
      stream: row.id,
      name: row.name,
      previousStatus: row.status,
      cursor: row.cursor,
      ...(row.lastError !== undefined ? { lastError: row.lastError } : {}),
    });
    await this.ledger.store.streams.retryStream(tenant, row.id, this.#now().toISOString());
    return { ...(await this.get(tenant, row.id)), entry };
  }
}

/** Options of the delivery loop. */
export interface StreamRunnerOptions {
  /** How often to look for new streams and new entries, ms. Default 1,000. */
  pollMs?: number;
  /** Lease length, ms (renewed every round). Default 15,000. */
  leaseMs?: number;
  /** Per request or connection, ms. Default 10,000. */
  timeoutMs?: number;
  /** This deliverer's name in lease rows. Default `<hostname>:<pid>:<random>`. */
  holder?: string;
  /** Logs a problem (never a secret). */
  log?: (message: string) => void;
}

/** The delay before retry number `failures` (1 = first): full jitter over min(max, base * 2^(failures-1)). */
export function backoffDelay(failures: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(30, Math.max(0, failures - 1)));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * The delivery loop of every stream of every tenant, run inside `custody up`.
 * @example
 * const runner = new StreamRunner(ledger); runner.start(); … await runner.stop();
 */
export class StreamRunner {
  readonly ledger: Ledger;
  readonly holder: string;
  readonly #pollMs: number;
  readonly #leaseMs: number;
  readonly #timeoutMs: number;
  readonly #log: (message: string) => void;
  readonly #workers = new Map<string, Promise<void>>();
  readonly #stop = new AbortController();
  #scan: Promise<void> | undefined;

  constructor(ledger: Ledger, opts: StreamRunnerOptions = {}) {
    this.ledger = ledger;
    this.holder = opts.holder ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.#pollMs = Math.max(10, opts.pollMs ?? 1000);
    this.#leaseMs = Math.max(1000, opts.leaseMs ?? 15_000);
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#log = opts.log ?? (() => undefined);
  }

  /** Starts looking for streams to deliver. */
  start(): void {
    if (this.#scan !== undefined) return;
    this.#scan = this.#scanLoop();
  }

  /** Stops every worker (an in-flight delivery is aborted and not acknowledged) and gives the leases up. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#scan;
    await Promise.allSettled([...this.#workers.values()]);
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#stop.signal.aborted) return;
    const signal = this.#stop.signal;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }

  async #scanLoop(): Promise<void> {
    while (!this.#stop.signal.aborted) {
      try {
        for (const row of await this.ledger.store.streams.listStreams()) {
          const key = `${row.tenant}\u0000${row.id}`;
          if (row.status !== 'active' || this.#workers.has(key)) continue;
          if (row.leaseHolder !== undefined && row.leaseHolder !== this.holder && (row.leaseUntil ?? 0) >= Date.now()) continue;
          const w = this.#work(row.tenant, row.id).finally(() => this.#workers.delete(key));
          this.#workers.set(key, w);
        }
      } catch (err) {
        this.#log(`streams: cannot list streams: ${err instanceof Error ? err.message : String(err)}`);
      }
      await this.#sleep(this.#pollMs);
    }
  }

  /** One stream's worker: runs while it holds the lease and the stream is active. */
  async #work(tenant: string, id: string): Promise<void> {
    const store = this.ledger.store.streams;
    try {
      while (!this.#stop.signal.aborted) {
        if (!(await store.acquireStreamLease(tenant, id, this.holder, Date.now(), this.#leaseMs))) return;
        const row = await store.getStream(tenant, id);
        if (row === undefined || row.status !== 'active' || row.leaseHolder !== this.holder) return;
        const config = configOf(row);
        const head = (await this.ledger.store.head(tenant))?.size ?? 0;
        if (row.cursor >= head) {
          await this.#sleep(this.#pollMs);
          continue;
        }
        const views: EventView[] = [];
        for await (const e of this.ledger.store.readEntries(tenant, row.cursor, Math.min(head, row.cursor + config.batchSize))) views.push(viewOf(e));
        // Index order without gaps: stop at the first hole (there should be none below the head).
        let n = 0;
        while (n < views.length && views[n]!.index === row.cursor + n) n++;
        const batch = views.slice(0, n);
        if (batch.length === 0) {
          await this.#sleep(this.#pollMs);
          continue;
        }
        const result = await deliver(row.kind, config, batch, { origin: this.ledger.origin(tenant), signal: this.#stop.signal, timeoutMs: this.#timeoutMs });
        if (result.acked > 0) {
          const at = new Date().toISOString();
          if (!(await store.advanceStream(tenant, id, this.holder, row.cursor, row.cursor + result.acked, at))) return; // lease lost or moved: stop
        }
        if (result.error === undefined) continue;
        if (this.#stop.signal.aborted) return;
        const failed = await store.failStream(tenant, id, this.holder, result.error, new Date().toISOString(), config.maxFailures);
        if (failed === undefined) return;
        if (failed.status === 'dead_letter') {
          this.#log(`streams: ${tenant}/${row.name} is dead-lettered after ${failed.failures} failures: ${result.error}`);
          return;
        }
        await this.#sleep(backoffDelay(failed.failures, config.backoffMs, config.maxBackoffMs));
      }
    } catch (err) {
      this.#log(`streams: ${tenant}/${id}: ${err instanceof Error ? err.message : String(err)}`);
      await this.#sleep(this.#pollMs);
    } finally {
      await store.releaseStreamLease(tenant, id, this.holder).catch(() => undefined);
    }
  }
}
