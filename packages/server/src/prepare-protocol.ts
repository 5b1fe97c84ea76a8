/**
 * Messages between the request thread and a preparation worker (prepare-pool.ts,
 * prepare-worker.ts), and the errors they carry: a refusal prepared in a worker is
 * answered exactly as the same refusal prepared on the request thread.
 * @internal
 */
import { FormatError, type FormatErrorCode, type PreparedEvent } from '@custody/core';
import { LedgerError, type LedgerErrorCode } from '@custody/ledger';

import { ApiError, type ApiErrorCode } from './errors.js';

/** One body to prepare. */
export interface PrepareTask {
  id: number;
  body: string;
  tenant: string;
  ndjson: boolean;
  admin: boolean;
  maxBatch: number;
  /** ISO time that fills a missing `time`: the request's arrival. */
  now: string;
}

/** An error as it crosses threads. */
export type SerializedError =
  | { kind: 'api'; code: string; status: number; message: string; field?: string; headers: Record<string, string> }
  | { kind: 'ledger' | 'format'; code: string; message: string; field?: string }
  | { kind: 'other'; name: string; message: string };

/** A worker's answer to one task. */
export type WorkerAnswer = { id: number; events: PreparedEvent[] } | { id: number; error: SerializedError };

/** By name, not instanceof: in a worker, the error classes may come from another copy of the module. */
export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') {
    const field = 'field' in err && typeof err.field === 'string' ? { field: err.field } : {};
    if (err.name === 'ApiError' && 'status' in err && typeof err.status === 'number') {
      const headers = 'headers' in err && err.headers !== null && typeof err.headers === 'object' ? { ...(err.headers as Record<string, string>) } : {};
      return { kind: 'api', code: err.code, status: err.status, message: err.message, ...field, headers };
    }
    if (err.name === 'LedgerError') return { kind: 'ledger', code: err.code, message: err.message, ...field };
    if (err.name === 'FormatError') return { kind: 'format', code: err.code, message: err.message, ...field };
  }
  return { kind: 'other', name: err instanceof Error ? err.name : 'Error', message: err instanceof Error ? err.message : String(err) };
}

/** The error to throw on the request thread. */
export function deserializeError(e: SerializedError): Error {
  const field = 'field' in e && e.field !== undefined ? { field: e.field } : {};
  switch (e.kind) {
    case 'api':
      return new ApiError(e.code as ApiErrorCode, e.status, e.message, { ...field, headers: e.headers });
    case 'ledger':
      return new LedgerError(e.code as LedgerErrorCode, e.message, field);
    case 'format':
      return new FormatError(e.code as FormatErrorCode, e.message, field);
    default: {
      const err = new Error(`preparing the events failed: ${e.message}`);
      err.name = e.name;
      return err;
    }
  }
}
