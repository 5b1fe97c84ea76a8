/**
 * Errors of records management. Each code maps to one HTTP status
 * (`RECORDS_STATUS`) and is listed in docs/errors.md.
 */
import { CustodyError } from '@custody/core';

/** Codes for requests records management refuses. */
export type RecordsErrorCode =
  | 'POINTER_INVALID'
  | 'FIELD_NOT_COMMITTED'
  | 'RETENTION_INVALID'
  | 'RETENTION_NOT_FOUND'
  | 'HOLD_INVALID'
  | 'HOLD_NOT_FOUND'
  | 'DIGEST_PATH_NOT_INDEXED'
  | 'RECORDS_REQUEST_INVALID'
  | 'STREAM_INVALID'
  | 'STREAM_NOT_FOUND'
  | 'STREAM_EXISTS';

/** HTTP status of each records code. */
export const RECORDS_STATUS: Readonly<Record<RecordsErrorCode, number>> = {
  POINTER_INVALID: 400,
  FIELD_NOT_COMMITTED: 400,
  RETENTION_INVALID: 400,
  RETENTION_NOT_FOUND: 404,
  HOLD_INVALID: 400,
  HOLD_NOT_FOUND: 404,
  DIGEST_PATH_NOT_INDEXED: 400,
  RECORDS_REQUEST_INVALID: 400,
  STREAM_INVALID: 400,
  STREAM_NOT_FOUND: 404,
  STREAM_EXISTS: 409,
};

/** A records-management request that is refused; the message says why. */
export class RecordsError extends CustodyError<RecordsErrorCode> {
  /** The field at fault, when one can be named. */
  readonly field: string | undefined;
  constructor(code: RecordsErrorCode, message: string, options?: { cause?: unknown; field?: string }) {
    super(code, message, options);
    this.field = options?.field;
  }
}
