/**
 * Delivers events to `POST /v1/events` in order, through a spool when the
 * ledger is away: directly while nothing waits, otherwise appended behind what
 * waits (so per-session order holds) and delivered in batches with exponential
 * backoff and jitter. Every event carries its id, and the ledger returns the
 * original result for an id it already holds, so re-sending after a crash or a
 * lost answer never writes an entry twice.
 * @internal
 */
import { LedgerUnavailableError, RequestError, type SdkError, UndeliveredError } from './errors.js';
import { apiErrorOf, type Http, type HttpAnswer, refused } from './http.js';
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
  /**
   * Gzip batches of 16 KiB or more (default true; JSON events shrink several times). If
   * the server, or a proxy before it, answers 415 to a gzipped batch, the batch is sent
   * again uncompressed and so is every later one.
   */
  gzip?: boolean;
  /**
   * Called when a delivery attempt fails (the events stay spooled: `SDK_LEDGER_UNAVAILABLE`,
   * `SDK_DELIVERY_UNACKNOWLEDGED`), when a spooled event is set aside (`SDK_EVENT_DROPPED`,
   * also given to `onDropped`), and when a tool's outcome could not be recorded
   * (`SDK_OUTCOME_UNRECORDED`). Without it, the SDK emits a process warning where
   * there is one (Node), else stays silent.
   */
  onError?: (err: SdkError | Error) => void;
  /**
   * Called once for each spooled event the ledger refused for good (400, or a 403
   * naming the event, or a per-event error of a 207): the event left the spool for
   * the store's dead letters (`FileSpool.deadLetters()`, `MemorySpool.rejected`)
   * and is never retried. `error` is a RequestError `SDK_EVENT_DROPPED` with the server's `apiCode`.
   */
  onDropped?: (event: OutgoingEvent, error: RequestError) => void;
}

/** The index `i` of an error's `field` that names one event of the request (`events[i]…`). */
function eventIndexOf(answer: HttpAnswer): number | undefined {
  const body = answer.body as { error?: { field?: unknown } } | undefined;
  const field = body !== null && typeof body === 'object' ? body.error?.field : undefined;
  const m = typeof field === 'string' ? /^events\[(\d+)\]/.exec(field) : null;
  return m === null ? undefined : Number(m[1]);
}

/** True when `item` acknowledges `event`: its id, and where it landed (index) or why it was refused (error). */
function acknowledges(item: unknown, event: OutgoingEvent): item is AppendItem {
  if (item === null || typeof item !== 'object') return false;
  const i = item as Record<string, unknown>;
  if (i['id'] !== event.id) return false;
  if (i['error'] !== undefined) return i['error'] !== null && typeof i['error'] === 'object' && typeof (i['error'] as { code?: unknown }).code === 'string';
  return typeof i['index'] === 'number' && Number.isSafeInteger(i['index']);
}

function unacknowledged(answer: HttpAnswer, acknowledged: number, sent: number): LedgerUnavailableError {
  const what = typeof answer.body === 'string' ? `a body that is not Custody's (${JSON.stringify(answer.body.slice(0, 80))})` : 'results that do not acknowledge every event by id';
  return new LedgerUnavailableError(
    'SDK_DELIVERY_UNACKNOWLEDGED',
    `POST /v1/events answered ${answer.status} with ${what}: ${acknowledged} of ${sent} event(s) acknowledged; the others stay spooled and are sent again (is \`url\` Custody, or is a proxy or maintenance page answering?)`,
  );
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
  readonly #gzip: boolean;
  readonly #onError: ((err: Error) => void) | undefined;
  readonly #onDropped: ((event: OutgoingEvent, error: RequestError) => void) | undefined;
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
    this.#gzip = opts.gzip ?? true;
    this.#onError = opts.onError;
    this.#onDropped = opts.onDropped;
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

  /**
   * Tries to deliver what waits for up to `flushTimeoutMs` (default: 10 s when the store does not
   * survive the process, no attempt for a durable one), then stops delivery and releases the store.
   * Pending events stay in a durable store.
   * @throws UndeliveredError (`SDK_EVENTS_UNDELIVERED`) when events of a non-durable store were still undelivered: they are lost
   */
  async close(flushTimeoutMs?: number): Promise<void> {
    let left: Error | undefined;
    const wait = flushTimeoutMs ?? (this.#store.durable ? undefined : 10_000);
    if (!this.#closed && wait !== undefined && this.#store.pending() > 0) {
      try {
        await this.flush(wait);
      } catch (err) {
        left = err as Error;
      }
    }
    const lost = this.#store.durable ? 0 : this.#store.pending();
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#chain;
    await this.#store.close();
    if (lost > 0) {
      throw new UndeliveredError(lost, `closed with ${lost} event(s) the ledger never took, in a spool that does not survive the process: they are lost${left !== undefined ? ` (${left.message})` : ''}. Use a FileSpool to keep them for the next process.`, { cause: left });
    }
  }

  async #sendOne(event: OutgoingEvent): Promise<RecordResult> {
    const answer = await this.#http.send<{ results?: unknown[] }>({ method: 'POST', path: '/v1/events', bearer: this.#apiKey, json: [event], timeoutMs: this.#timeoutMs });
    if (answer.status === 200 || answer.status === 201 || answer.status === 207) {
      const item = (answer.body as { results?: unknown } | undefined)?.results;
      const first = Array.isArray(item) && item.length === 1 ? item[0] : undefined;
      // Only an answer naming this event is an acknowledgement; anything else (a maintenance page, `{}`) is a failed attempt.
      if (!acknowledges(first, event)) throw unacknowledged(answer, 0, 1);
      if (first.error !== undefined) throw refused({ ...answer, body: { error: first.error } }, `the ledger refused event ${event.id} (${event.type})`);
      this.#attempt = 0;
      this.#lastError = undefined;
      return { id: first.id, spooled: false, ...(first.index !== undefined ? { index: first.index } : {}), ...(first.seq !== undefined ? { seq: first.seq } : {}), duplicate: first.duplicate === true };
    }
    if (answer.status === 401 || (answer.status === 403 && eventIndexOf(answer) === undefined)) {
      // A key problem is not the event's fault: keep it (spooled) until an operator fixes the key.
      throw new LedgerUnavailableError('SDK_LEDGER_UNAVAILABLE', `the ledger refused the API key (${answer.status}): ${apiErrorOf(answer).message}`);
    }
    if (answer.status === 400 || answer.status === 403 || answer.status === 413) throw refused(answer, `the ledger refused event ${event.id} (${event.type})`);
    // 404/405/415…: the request went somewhere that is not Custody's events route, or not as expected: keep the event.
    throw new LedgerUnavailableError('SDK_LEDGER_UNAVAILABLE', `POST /v1/events answered ${answer.status} (${apiErrorOf(answer).code}); the event stays spooled`);
  }

  /** Sets a refused event aside for good (dead letter), says so, and acknowledges it. */
  async #drop(event: OutgoingEvent, error: { code: string; message: string }, status: number): Promise<void> {
    await this.#store.reject(event, error);
    await this.#store.ack(1);
    const err = new RequestError('SDK_EVENT_DROPPED', status, error.code, `the ledger refused spooled event ${event.id} (${event.type}) for good; it was set aside (dead letter) and will not be sent again: ${error.message}`);
    try {
      this.#onDropped?.(event, err);
    } catch {
      // A throwing hook must not stop delivery.
    }
    this.#report(err);
  }

  /** One delivery round; true when nothing waits any more. */
  async #round(): Promise<boolean> {
    let size = this.#batch;
    while (this.#store.pending() > 0) {
      if (this.#closed) return false;
      const batch = this.#store.peek(size);
      let answer;
      try {
        answer = await this.#http.send<{ results?: unknown[] }>({ method: 'POST', path: '/v1/events', bearer: this.#apiKey, json: batch, timeoutMs: this.#timeoutMs, gzip: this.#gzip });
      } catch (err) {
        if (!(err instanceof LedgerUnavailableError)) throw err;
        this.#failed(err);
        return false;
      }
      if (answer.status === 200 || answer.status === 201 || answer.status === 207) {
        const raw = (answer.body as { results?: unknown } | undefined)?.results;
        const results = Array.isArray(raw) ? raw : [];
        // Only the events the answer acknowledges by id, in order, leave the spool.
        let acked = 0;
        while (acked < batch.length && acknowledges(results[acked], batch[acked]!)) acked++;
        await this.#ackResults(batch.slice(0, acked), results.slice(0, acked) as AppendItem[], answer.status);
        if (acked < batch.length) {
          this.#failed(unacknowledged(answer, acked, batch.length));
          return false;
        }
        this.#attempt = 0;
        this.#nextAt = 0;
        this.#lastError = undefined;
        size = this.#batch;
        continue;
      }
      const at = eventIndexOf(answer);
      const eventRefused = answer.status === 400 || answer.status === 413 || (answer.status === 403 && at !== undefined);
      if (eventRefused && batch.length > 1) {
        // One event spoils the whole request (validation is all or nothing): send what precedes the
        // event the answer names, or find the culprit one by one.
        size = at !== undefined && at > 0 && at < batch.length ? at : 1;
        continue;
      }
      if (eventRefused) {
        // 400, or a 403 naming the event (a type only Custody records): this event is refused for good.
        await this.#drop(batch[0]!, apiErrorOf(answer), answer.status);
        size = this.#batch;
        continue;
      }
      // 401, a 403 for the key as a whole, 404/415…: nothing was appended and nothing is wrong with the events: keep them, retry later.
      this.#failed(answer.status === 401 || answer.status === 403 ? new LedgerUnavailableError('SDK_LEDGER_UNAVAILABLE', `delivering spooled events: the ledger refused the API key (${answer.status}): ${apiErrorOf(answer).message}`) : refused(answer, 'delivering spooled events'));
      return false;
    }
    return true;
  }

  /** Acknowledges delivered events, setting aside those with a per-event error. */
  async #ackResults(events: readonly OutgoingEvent[], results: readonly AppendItem[], status: number): Promise<void> {
    let run = 0;
    for (let i = 0; i < events.length; i++) {
      const error = results[i]!.error;
      if (error === undefined) {
        run++;
        continue;
      }
      if (run > 0) await this.#store.ack(run);
      run = 0;
      await this.#drop(events[i]!, error, status);
    }
    if (run > 0) await this.#store.ack(run);
  }

  /** Tells the caller's hook, else the process (a warning), of a problem the caller did not see thrown. */
  #report(err: Error): void {
    reportError(this.#onError, err);
  }

  /** @internal Reports a problem through the delivery hook (what sessions use for unrecorded outcomes). */
  report(err: Error): void {
    this.#report(err);
  }

  #failed(err: Error): void {
    this.#lastError = err;
    this.#attempt += 1;
    const base = Math.min(this.#max, this.#initial * 2 ** Math.min(this.#attempt - 1, 30));
    this.#nextAt = Date.now() + Math.round(base * (0.5 + Math.random() * 0.5));
    // Transient failures go to the hook only; an answer that is not Custody's is worth a warning without one.
    if (this.#onError !== undefined || (err as { code?: string }).code === 'SDK_DELIVERY_UNACKNOWLEDGED') this.#report(err);
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

/** Calls `onError` (a throwing hook is ignored), else emits a process warning where there is one. @internal */
export function reportError(onError: ((err: Error) => void) | undefined, err: Error): void {
  if (onError !== undefined) {
    try {
      onError(err);
    } catch {
      // A throwing hook must not break delivery or a tool call.
    }
    return;
  }
  const proc = (globalThis as { process?: { emitWarning?: (w: Error | string, o?: { code?: string }) => void } }).process;
  proc?.emitWarning?.(err.message, { code: (err as { code?: string }).code ?? 'SDK_ERROR' });
}
