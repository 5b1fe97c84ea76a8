/**
 * Where events wait while the ledger is away. The contract is in log terms: what
 * `append` resolves is durable (for a durable store) and comes back from `peek`
 * in append order until it is acknowledged. The durable, fsync'd implementation
 * is Node-only: `FileSpool` from `@custody/sdk/spool`.
 */

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

/** A spool in memory: survives a ledger outage, not a crash of this process. The default. */
export class MemorySpool implements SpoolStore {
  readonly durable = false;
  readonly #events: OutgoingEvent[] = [];
  /** Events the ledger refused for good, with why. */
  readonly rejected: { event: OutgoingEvent; error: { code: string; message: string } }[] = [];

  pending(): number {
    return this.#events.length;
  }

  append(events: readonly OutgoingEvent[]): Promise<void> {
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
    this.rejected.push({ event, error });
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
