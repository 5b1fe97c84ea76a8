/**
 * The log-stream part of the `LedgerStore` contract: stream configurations, their
 * durable cursor, their delivery state and the lease that lets one deliverer at
 * a time run a stream when several Custody nodes share one store. Like the rest
 * of the contract it keeps rows and decides nothing: delivery, backoff and the
 * dead-letter policy are `@custody/records`' business (docs/records.md, "Streaming").
 */

/** Delivery state of a stream. */
export type StreamStatus = 'active' | 'dead_letter';

/** One stream as stored. */
export interface StreamRow {
  tenant: string;
  id: string;
  /** Unique per tenant. */
  name: string;
  /** Target kind: `webhook`, `splunk_hec` or `syslog`. */
  kind: string;
  /** The target's settings as JSON, secrets included: never echo it back as is. */
  config: string;
  status: StreamStatus;
  /** Index of the next entry to deliver: every entry before it was acknowledged by the target. */
  cursor: number;
  /** Consecutive failed deliveries since the last success. */
  failures: number;
  lastError?: string;
  lastErrorAt?: string;
  lastDeliveredAt?: string;
  createdAt: string;
  updatedAt: string;
  /** The deliverer holding the lease, and until when (epoch ms). */
  leaseHolder?: string;
  leaseUntil?: number;
}

/**
 * Stream rows of a store. Every write is one atomic statement, durable before it
 * resolves; writes of a deliverer are fenced by its lease, so a deliverer that
 * lost the lease (paused, partitioned) can never move a cursor.
 */
export interface StoreStreams {
  /** Every stream of `tenant`, or of every tenant, ordered by tenant then name. */
  listStreams(tenant?: string): Promise<StreamRow[]>;
  getStream(tenant: string, id: string): Promise<StreamRow | undefined>;
  /** Inserts a stream; resolves to false, writing nothing, when the tenant has one with its id or name. */
  insertStream(row: StreamRow): Promise<boolean>;
  /** Deletes a stream; resolves to false when there was none. */
  deleteStream(tenant: string, id: string): Promise<boolean>;
  /**
   * Takes or renews the lease of an active stream for `holder` until `now + ttl`
   * (epoch ms) when it is free, expired or already `holder`'s. Resolves to true when held.
   */
  acquireStreamLease(tenant: string, id: string, holder: string, now: number, ttl: number): Promise<boolean>;
  /** Gives the lease up if `holder` holds it. */
  releaseStreamLease(tenant: string, id: string, holder: string): Promise<void>;
  /**
   * Moves the cursor from `from` to `to` and clears the failure count, only if
   * `holder` holds the lease and the cursor is still `from`. Resolves to whether it moved.
   */
  advanceStream(tenant: string, id: string, holder: string, from: number, to: number, at: string): Promise<boolean>;
  /**
   * Records a failed delivery (if `holder` holds the lease): one more failure, the
   * error, and `dead_letter` (lease released) once failures reach `deadAfter`.
   * Resolves to the row after the change, or undefined when not held.
   */
  failStream(tenant: string, id: string, holder: string, error: string, at: string, deadAfter: number): Promise<StreamRow | undefined>;
  /** Makes a stream active again with no failures (after a dead letter); resolves to false when there is no such stream. */
  retryStream(tenant: string, id: string, at: string): Promise<boolean>;
}
