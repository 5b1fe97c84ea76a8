/**
 * Where events wait while the ledger is away. The contract is in log terms: what
 * `append` resolves is durable (for a durable store) and comes back from `peek`
 * in append order until it is acknowledged. The durable, fsync'd implementation
 * is Node-only: `FileSpool` from `@custody/sdk/spool`.
 */
import { SdkError } from './errors.js';

/** An event as it is sent to `POST /v1/events`: always with its `id`, so delivery is idempotent. */
export type OutgoingEvent = Record<string, unknown> & { id: string; type: string };

/** Stores events that could not be delivered yet. */
export interface SpoolStore {
  /** True when what `append` resolved survives a crash of this process. */
  readonly durable: boolean;
  /** Number of events not yet acknowledged. */
  pending(): number;
  /** Appends events after every pending one. MUST NOT resolve before they are durable (for a durable store). */
  append(events: readonly OutgoingEvent[]): Promise<void>;
  /** Up to `max` of the oldest pending events, in append order. Does not remove them. */
  peek(max: number): readonly OutgoingEvent[];
  /** Acknowledges the `count` oldest pending events (delivered, or set aside). MUST be durable before resolving. */
  ack(count: number): Promise<void>;
  /** Keeps an event the ledger refused for good (a dead letter), with why. Called before its `ack`. */
  reject(event: OutgoingEvent, error: { code: string; message: string }): Promise<void>;
  /** Releases the store (files, locks). */
  close(): Promise<void>;
}

/**
 * A spool in memory: survives a ledger outage, not a crash of this process. The default.
 * It holds at most `maxEvents` (default 100,000): past that, recording fails with
 * `SDK_SPOOL_FULL` rather than lose an event or grow without bound.
 */
export class MemorySpool implements SpoolStore {
  readonly durable = false;
  readonly maxEvents: number;
  readonly #events: OutgoingEvent[] = [];
  /** Events the ledger refused for good, with why (the newest 1,000). */
  readonly rejected: { event: OutgoingEvent; error: { code: string; message: string } }[] = [];

  constructor(opts: { maxEvents?: number } = {}) {
    this.maxEvents = opts.maxEvents ?? 100_000;
    if (!Number.isSafeInteger(this.maxEvents) || this.maxEvents < 1) throw new SdkError('SDK_CONFIG_INVALID', 'MemorySpool maxEvents must be a positive integer');
  }

  pending(): number {
    return this.#events.length;
  }

  append(events: readonly OutgoingEvent[]): Promise<void> {
    if (this.#events.length + events.length > this.maxEvents) {
      return Promise.reject(
        new SdkError('SDK_SPOOL_FULL', `the in-memory spool holds ${this.#events.length} events waiting for the ledger (at most ${this.maxEvents}); the event was not recorded. Use a FileSpool to ride out longer outages.`),
      );
    }
    this.#events.push(...events);
    return Promise.resolve();
  }

  peek(max: number): readonly OutgoingEvent[] {
    return this.#events.slice(0, max);
  }

  ack(count: number): Promise<void> {
    this.#events.splice(0, count);
    return Promise.resolve();
  }

  reject(event: OutgoingEvent, error: { code: string; message: string }): Promise<void> {
    if (this.rejected.length >= 1_000) this.rejected.shift();
    this.rejected.push({ event, error });
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
