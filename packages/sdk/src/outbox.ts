/**
 * Delivers events to `POST /v1/events` in order, through a spool when the
 * ledger is away: directly while nothing waits, otherwise appended behind what
 * waits (so per-session order holds) and delivered in batches with exponential
 * backoff and jitter. Every event carries its id, and the ledger returns the
 * original result for an id it already holds, so re-sending after a crash or a
 * lost answer never writes an entry twice.
 * @internal
 */
import { LedgerUnavailableError, type SdkError } from './errors.js';
import { apiErrorOf, type Http, refused } from './http.js';
import type { OutgoingEvent, SpoolStore } from './spool-store.js';

/** Where a recorded event went. */
export interface RecordResult {
  /** The event id (UUIDv7, chosen by the SDK). */
  id: string;
  /** True when the event waits in the spool (delivered later); false when the ledger holds it. */
  spooled: boolean;
  /** The leaf index in the tenant's log (delivered events). */
  index?: number;
  /** Position in its session (delivered events). */
  seq?: number;
  /** True when the ledger already held this id. */
  duplicate?: boolean;
}

/** Delivery tuning. */
export interface DeliveryOptions {
  /** Events per request (default 100; the server takes at most 1,000). */
  batchSize?: number;
  /** First retry delay in ms (default 250). */
  initialBackoffMs?: number;
  /** Longest retry delay in ms (default 30,000). */
  maxBackoffMs?: number;
  /** Called when a delivery attempt fails (the events stay spooled). */
  onError?: (err: SdkError | Error) => void;
}

interface AppendItem {
  id: string;
  index?: number;
  seq?: number;
  duplicate?: boolean;
  error?: { code: string; message: string };
}

/** @internal */
export class Outbox {
  readonly #http: Http;
  readonly #apiKey: string;
  readonly #store: SpoolStore;
  readonly #timeoutMs: number;
  readonly #batch: number;
  readonly #initial: number;
  readonly #max: number;
  readonly #onError: ((err: Error) => void) | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  #attempt = 0;
  #nextAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #lastError: Error | undefined;

  constructor(http: Http, apiKey: string, store: SpoolStore, timeoutMs: number, opts: DeliveryOptions = {}) {
    this.#http = http;
    this.#apiKey = apiKey;
    this.#store = store;
    this.#timeoutMs = timeoutMs;
    this.#batch = Math.min(Math.max(opts.batchSize ?? 100, 1), 1000);
    this.#initial = opts.initialBackoffMs ?? 250;
    this.#max = opts.maxBackoffMs ?? 30_000;
    this.#onError = opts.onError;
    // Events left by an earlier process (or before a restart) are delivered at once.
    if (store.pending() > 0) this.#schedule(0);
  }

  /** Events waiting for delivery. */
  pending(): number {
    return this.#store.pending();
  }

  /** The last delivery failure, if the last attempt failed. */
  lastError(): Error | undefined {
    return this.#lastError;
  }

  /**
   * Records one event: delivered now when nothing waits and the ledger answers,
   * otherwise spooled (durably, with a durable store) behind what waits.
   * @throws RequestError when the ledger refuses the event itself (a bug in the caller, never spooled)
   */
  submit(event: OutgoingEvent): Promise<RecordResult> {
    return this.#serial(async () => {
      if (this.#store.pending() === 0 && Date.now() >= this.#nextAt) {
        try {
          return await this.#sendOne(event);
        } catch (err) {
          if (!(err instanceof LedgerUnavailableError)) throw err;
          this.#failed(err);
        }
      }
      await this.#store.append([event]);
      this.#schedule(Math.max(0, this.#nextAt - Date.now()));
      return { id: event.id, spooled: true };
    });
  }

  /**
   * Tries to deliver everything that waits, now (ignoring backoff), for at most
   * `timeoutMs` (default: one attempt).
   * @throws LedgerUnavailableError when events still wait
   */
  async flush(timeoutMs = 0): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await this.#serial(() => this.#round())) return;
      const wait = Math.min(Math.max(0, this.#nextAt - Date.now()), deadline - Date.now());
      if (wait <= 0 && Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, Math.max(wait, 10)));
    }
    throw new LedgerUnavailableError(
      'SDK_LEDGER_UNAVAILABLE',
      `${this.#store.pending()} event(s) wait in the spool: the ledger has not taken them${this.#lastError !== undefined ? ` (${this.#lastError.message})` : ''}`,
      { cause: this.#lastError },
    );
  }

  /** Stops delivery and releases the store; pending events stay in a durable store. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#chain;
    await this.#store.close();
  }

  async #sendOne(event: OutgoingEvent): Promise<RecordResult> {
    const answer = await this.#http.send<{ results?: AppendItem[] }>({ method: 'POST', path: '/v1/events', bearer: this.#apiKey, json: [event], timeoutMs: this.#timeoutMs });
    const item = answer.body.results?.[0];
    if ((answer.status === 200 || answer.status === 201 || answer.status === 207) && item !== undefined) {
      if (item.error !== undefined) throw refused({ ...answer, body: { error: item.error } }, `the ledger refused event ${event.id} (${event.type})`);
      this.#attempt = 0;
      this.#lastError = undefined;
      return { id: item.id, spooled: false, ...(item.index !== undefined ? { index: item.index } : {}), ...(item.seq !== undefined ? { seq: item.seq } : {}), duplicate: item.duplicate === true };
    }
    if (answer.status === 401 || answer.status === 403) {
      // A key problem is not the event's fault: keep it (spooled) until an operator fixes the key.
      throw new LedgerUnavailableError('SDK_LEDGER_UNAVAILABLE', `the ledger refused the API key: ${apiErrorOf(answer).message}`);
    }
    throw refused(answer, `the ledger refused event ${event.id} (${event.type})`);
  }

  /** One delivery round; true when nothing waits any more. */
  async #round(): Promise<boolean> {
    let size = this.#batch;
    while (this.#store.pending() > 0) {
      if (this.#closed) return false;
      const batch = this.#store.peek(size);
      let answer;
      try {
        answer = await this.#http.send<{ results?: AppendItem[] }>({ method: 'POST', path: '/v1/events', bearer: this.#apiKey, json: batch, timeoutMs: this.#timeoutMs });
      } catch (err) {
        if (!(err instanceof LedgerUnavailableError)) throw err;
        this.#failed(err);
        return false;
      }
      if (answer.status === 200 || answer.status === 201 || answer.status === 207) {
        const results = answer.body.results ?? [];
        for (let i = 0; i < batch.length; i++) {
          const error = results[i]?.error;
          if (error !== undefined) await this.#store.reject(batch[i]!, error);
        }
        await this.#store.ack(batch.length);
        this.#attempt = 0;
        this.#nextAt = 0;
        this.#lastError = undefined;
        continue;
      }
      if ((answer.status === 400 || answer.status === 413) && batch.length > 1) {
        // One event spoils the whole request (validation is all or nothing): find it one by one.
        size = 1;
        continue;
      }
      if (answer.status === 400 || answer.status === 413) {
        await this.#store.reject(batch[0]!, apiErrorOf(answer));
        await this.#store.ack(1);
        continue;
      }
      // 401/403/404/415…: nothing was appended and nothing is wrong with the events: keep them, retry later.
      this.#failed(refused(answer, 'delivering spooled events'));
      return false;
    }
    return true;
  }

  #failed(err: Error): void {
    this.#lastError = err;
    this.#attempt += 1;
    const base = Math.min(this.#max, this.#initial * 2 ** Math.min(this.#attempt - 1, 30));
    this.#nextAt = Date.now() + Math.round(base * (0.5 + Math.random() * 0.5));
    this.#onError?.(err);
  }

  #schedule(delayMs: number): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#serial(() => this.#round()).then(
        (done) => {
          if (!done && this.#store.pending() > 0) this.#schedule(Math.max(0, this.#nextAt - Date.now()));
        },
        (err: unknown) => {
          this.#failed(err instanceof Error ? err : new Error(String(err)));
          this.#schedule(Math.max(0, this.#nextAt - Date.now()));
        },
      );
    }, delayMs);
    // Delivery never keeps a process alive on its own: call flush() or close() before exiting.
    (this.#timer as { unref?: () => void }).unref?.();
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn, fn);
    this.#chain = run.catch(() => undefined);
    return run;
  }
}
