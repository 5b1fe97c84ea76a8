/**
 * Line formats for `custody export --format ndjson|csv|ocsf`: one record per
 * event. NDJSON carries the envelope view as the API gives it; CSV a fixed set of
 * columns (RFC 4180); OCSF the mapping of ocsf.ts. See docs/records.md.
 */
import type { Envelope } from '@custody/core';

import { toOcsf } from './ocsf.js';

/** The export formats. */
export const EXPORT_FORMATS = ['ndjson', 'csv', 'ocsf'] as const;
/** An export format. */
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** One event to export: the envelope (committed fields revealed or not), with where it stands in the log. */
export interface ExportItem {
  index: number;
  event: Envelope;
  redacted: string[];
  digest: string;
}

/** The CSV columns, in order. */
export const CSV_COLUMNS = [
  'index',
  'id',
  'type',
  'time',
  'recordedAt',
  'tenant',
  'session',
  'seq',
  'initiator',
  'actor',
  'actorType',
  'tool',
  'decision',
  'cause',
  'digest',
  'redacted',
] as const;

/**
 * One CSV cell (RFC 4180): quoted when it holds a comma, quote or line break; a
 * cell starting with = + - @ (or a tab or CR) gets a leading ' so spreadsheets do
 * not run it as a formula (CSV injection).
 */
export function csvCell(value: unknown): string {
  let s = value === undefined || value === null ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The CSV header line. */
export function csvHeader(): string {
  return CSV_COLUMNS.join(',');
}

/** One CSV line for an event. */
export function csvLine(item: ExportItem): string {
  const e = item.event;
  const row: Record<(typeof CSV_COLUMNS)[number], unknown> = {
    index: item.index,
    id: e.id,
    type: e.type,
    time: e.time,
    recordedAt: e.recordedAt,
    tenant: e.tenant,
    session: e.session?.id,
    seq: e.session?.seq,
    initiator: e.initiator?.id,
    actor: e.actor.id,
    actorType: e.actor.type,
    tool: e.tool?.name,
    decision: e.decision?.effect,
    cause: e.cause,
    digest: item.digest,
    redacted: item.redacted.join(' '),
  };
  return CSV_COLUMNS.map((c) => csvCell(row[c])).join(',');
}

/**
 * Formats one event, or undefined when the format has no record for it (OCSF
 * maps tool calls, decisions and credentials only).
 */
export function formatExportLine(format: ExportFormat, item: ExportItem, opts: { origin?: string } = {}): string | undefined {
  switch (format) {
    case 'ndjson':
      return JSON.stringify(item);
    case 'csv':
      return csvLine(item);
    case 'ocsf': {
      const o = toOcsf(item.event, { index: item.index, digest: item.digest, redacted: item.redacted, ...(opts.origin !== undefined ? { origin: opts.origin } : {}) });
      return o === undefined ? undefined : JSON.stringify(o);
    }
  }
}
