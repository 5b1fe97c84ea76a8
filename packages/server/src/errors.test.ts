/**
 * docs/errors.md lists every code the HTTP API can answer, with the
 * status errorResponse gives it.
 */
import { readFileSync } from 'node:fs';

import { FormatError } from '@custody/core';
import { LedgerError, type LedgerErrorCode, StoreError, type StoreErrorCode } from '@custody/ledger';
import { RECORDS_STATUS, RecordsError, type RecordsErrorCode } from '@custody/records';
import { describe, expect, it } from 'vitest';

import { API_ERROR_CODES, ApiError, LEDGER_STATUS, errorResponse } from './errors.js';

const page = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
/** code → the status cell of its first table row. */
const rows = new Map<string, string>();
for (const line of page.split('\n')) {
  const m = /^\| ((?:`[A-Z_]+`(?:, )?)+) \| ([^|]+) \|/.exec(line);
  if (m === null) continue;
  for (const code of m[1]!.match(/[A-Z_]+/g)!) if (!rows.has(code)) rows.set(code, m[2]!.trim());
}

describe('docs/errors.md', () => {
  it('lists every ApiError code with its status', () => {
    for (const code of API_ERROR_CODES) {
      expect(rows.has(code), code).toBe(true);
      const status = errorResponse(new ApiError(code, Number.parseInt(rows.get(code)!, 10), 'm')).status;
      expect(rows.get(code)!.startsWith(String(status)), code).toBe(true);
    }
  });

  it('lists every LedgerError code with the status the server gives it', () => {
    for (const code of Object.keys(LEDGER_STATUS) as LedgerErrorCode[]) {
      expect(rows.has(code), code).toBe(true);
      const { status } = errorResponse(new LedgerError(code, 'm'));
      expect(rows.get(code)!.startsWith(String(status)), `${code} ${status}`).toBe(true);
    }
  });

  it('lists every StoreError code with the status the server gives it', () => {
    const codes: StoreErrorCode[] = ['STORE_BUSY', 'STORE_UNAVAILABLE', 'STORE_HEAD_CONFLICT', 'STORE_FULL', 'STORE_CORRUPT', 'STORE_MIGRATION_FAILED'];
    for (const code of codes) {
      expect(rows.has(code), code).toBe(true);
      const r = errorResponse(new StoreError(code, 'm'));
      expect(rows.get(code)!.startsWith(String(r.status)), `${code} ${r.status}`).toBe(true);
      if (r.status === 503) expect(r.headers['retry-after']).toBe('1');
    }
  });

  it('lists every RecordsError code with the status the server gives it', () => {
    for (const code of Object.keys(RECORDS_STATUS) as RecordsErrorCode[]) {
      expect(rows.has(code), code).toBe(true);
      const { status } = errorResponse(new RecordsError(code, 'm'));
      expect(status).toBe(RECORDS_STATUS[code]);
      expect(rows.get(code)!.startsWith(String(status)), `${code} ${status}`).toBe(true);
    }
  });

  it('never shows the message of an unexpected error', () => {
    const r = errorResponse(new TypeError('secret detail'));
    expect(r).toMatchObject({ status: 500, internal: true, body: { error: { code: 'INTERNAL' } } });
    expect(JSON.stringify(r.body)).not.toContain('secret');
    expect(errorResponse('a string').status).toBe(500);
    expect(errorResponse(new FormatError('JSON_INVALID', 'bad', { field: 'x' })).body).toEqual({ error: { code: 'JSON_INVALID', message: 'bad', field: 'x' } });
  });
});
