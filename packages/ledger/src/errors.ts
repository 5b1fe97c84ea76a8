import { CustodyError } from '@custody/core';

/** Operational store errors. `STORE_BUSY` and `STORE_UNAVAILABLE` map to 503 with Retry-After. */
export type StoreErrorCode =
  | 'STORE_HEAD_CONFLICT'
  | 'STORE_BUSY'
  | 'STORE_UNAVAILABLE'
  | 'STORE_FULL'
  | 'STORE_CORRUPT'
  | 'STORE_MIGRATION_FAILED';

/** An operational error of a store: retry the busy/unavailable ones, never lose the write. */
export class StoreError extends CustodyError<StoreErrorCode> {}

/** Errors the ledger raises about a request: each maps to a 4xx. */
export type LedgerErrorCode =
  | 'EVENT_INVALID'
  | 'EVENT_ID_CONFLICT'
  | 'SESSION_SEALED'
  | 'SESSION_NOT_FOUND'
  | 'EVENT_NOT_FOUND'
  | 'TENANT_NOT_FOUND'
  | 'RANGE_INVALID'
  | 'CURSOR_INVALID'
  | 'BATCH_TOO_LARGE'
  | 'CONFIG_INVALID';

/** A request the ledger refuses; the message says why. */
export class LedgerError extends CustodyError<LedgerErrorCode> {
  /** The field at fault, when one can be named. */
  readonly field: string | undefined;
  constructor(code: LedgerErrorCode, message: string, options?: { cause?: unknown; field?: string }) {
    super(code, message, options);
    this.field = options?.field;
  }
}
