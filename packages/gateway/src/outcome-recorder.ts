/**
 * Records `tool.completed` / `tool.failed` after the agent has its result, off
 * the call's critical path. The decision (`tool.requested` + `policy.decided`) is
 * always durable before the call runs; the outcome follows in batches, retried
 * with backoff while the ledger is away. Every event carries its id and the
 * ledger answers a repeated id with the original result, so a retry after a lost
 * answer never writes an entry twice.
 * @internal
 */
import type { EventDraft } from '@custody/core';

import { CustodyHttpError } from './custody-client.js';

/** Tuning. */
export interface OutcomeRecorderOptions {
  /** Events per append (default 200). */
  maxBatch?: number;
  /** Events held while the ledger is away before the oldest are dropped, with a log line (default 100,000). */
  maxQueued?: number;
  /** First retry delay in ms (default 100). */
  initialBackoffMs?: number;
  /** Longest retry delay in ms (default 10,000). */
  maxBackoffMs?: number;
}

/** @internal */
export class OutcomeRecorder {
  readonly #append: (events: EventDraft[]) => Promise<void>;
  readonly #log: (message: string) => void;
  readonly #opts: Required<OutcomeRecorderOptions>;
  #queue: EventDraft[] = [];
  #running: Promise<void> | undefined;
  #backoff = 0;
  #timer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(append: (events: EventDraft[]) => Promise<void>, log: (message: string) => void, opts: OutcomeRecorderOptions = {}) {
    this.#append = append;
    this.#log = log;
    this.#opts = { maxBatch: 200, maxQueued: 100_000, initialBackoffMs: 100, maxBackoffMs: 10_000, ...opts };
  }

  /** Events waiting to be recorded. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Queues an outcome; it is appended in the background. */
  record(event: EventDraft): void {
    if (this.#queue.length >= this.#opts.maxQueued) {
      const dropped = this.#queue.shift()!;
      this.#log(`outcome queue full (${this.#opts.maxQueued}; the ledger has been unreachable): dropped ${dropped.type} ${dropped.id} of call ${dropped.cause ?? '?'}`);
    }
    this.#queue.push(event);
    this.#running ??= this.#run().finally(() => {
      this.#running = undefined;
    });
  }

  async #run(): Promise<void> {
    // Let the calls finishing in this turn join the batch.
    await new Promise((r) => setImmediate(r));
    while (this.#queue.length > 0) {
      const batch = this.#queue.slice(0, this.#opts.maxBatch);
      try {
        await this.#append(batch);
        this.#queue.splice(0, batch.length);
        this.#backoff = 0;
      } catch (err) {
        if (err instanceof CustodyHttpError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) {
          // The ledger refused the events themselves: retrying cannot help.
          this.#queue.splice(0, batch.length);
          this.#log(`the ledger refused ${batch.length} outcome event(s) (${err.code}: ${err.message}); not retried`);
          continue;
        }
        if (this.#closed) return;
        this.#backoff = Math.min(this.#opts.maxBackoffMs, this.#backoff === 0 ? this.#opts.initialBackoffMs : this.#backoff * 2);
        this.#log(`could not record ${batch.length} outcome event(s) (${err instanceof Error ? err.message : String(err)}); retrying in ${this.#backoff} ms`);
        await new Promise<void>((r) => {
          this.#wake = r;
          this.#timer = setTimeout(r, this.#backoff);
        });
        this.#wake = undefined;
      }
    }
  }

  /**
   * Waits until every queued outcome is recorded, or `timeoutMs` passes.
   * @returns how many events are still unrecorded
   */
  async drain(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.#running !== undefined && Date.now() < deadline) {
      // Retry at once rather than at the end of a backoff.
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#wake?.();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#running, new Promise((r) => (timer = setTimeout(r, Math.max(0, Math.min(250, deadline - Date.now())))))]);
      clearTimeout(timer);
    }
    return this.#queue.length;
  }

  /** Stops retrying; what is still queued is reported by the return value. */
  async close(timeoutMs: number): Promise<number> {
    const left = await this.drain(timeoutMs);
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#wake?.();
    return left;
  }
}
