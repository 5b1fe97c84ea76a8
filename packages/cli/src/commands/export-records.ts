/**
 * `custody export --format ndjson|csv|ocsf [filters]`: every matching event, oldest
 * first, one line each, from GET /v1/events pages. OCSF writes tool calls (API
 * Activity) and decisions and credentials (Authorize Session) and counts the rest.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';

import type { Envelope } from '@custody/core';
import { EXPORT_FORMATS, type ExportFormat, type ExportItem, csvHeader, formatExportLine } from '@custody/records';

import { apiJson, type ConnectionOptions, queryString, resolveConnection } from '../connection.js';
import { CliError, type Output, safeJson } from '../output.js';
import { requireOutFile } from './export.js';

/** Options of `custody export --format`. */
export interface RecordsExportOptions extends ConnectionOptions {
  format: string;
  out?: string;
  session?: string;
  user?: string;
  agent?: string;
  tool?: string;
  type?: string;
  decision?: string;
  since?: string;
  until?: string;
  omitData?: boolean;
  /** Print a JSON summary on stdout; the events go to `out` (required). */
  json?: boolean;
}

/** Writes the export; resolves to the exit code. */
export async function runRecordsExport(opts: RecordsExportOptions, io: Output): Promise<number> {
  const format = opts.format as ExportFormat;
  if (!EXPORT_FORMATS.includes(format)) throw new CliError('FORMAT_INVALID', `--format must be one of ${EXPORT_FORMATS.join(', ')}`);
  requireOutFile(opts);
  const conn = resolveConnection(opts);
  const fd = opts.out === undefined || opts.out === '-' ? undefined : openSync(opts.out, 'w');
  const hash = createHash('sha256');
  let bytes = 0;
  const write = (line: string) => {
    if (fd === undefined) return io.out(line);
    const data = Buffer.from(line + '\n', 'utf8');
    writeSync(fd, data);
    hash.update(data);
    bytes += data.length;
  };
  let written = 0;
  let skipped = 0;
  try {
    if (format === 'csv') write(csvHeader());
    let cursor: string | undefined;
    do {
      const page = await apiJson<{ events: ExportItem[]; nextCursor?: string }>(
        conn,
        `/v1/events${queryString({
          session: opts.session,
          initiator: opts.user,
          agent: opts.agent,
          tool: opts.tool,
          type: opts.type,
          decision: opts.decision,
          since: opts.since,
          until: opts.until,
          order: 'asc',
          limit: 1000,
          cursor,
        })}`,
      );
      for (const item of page.events) {
        if (opts.omitData === true) {
          const { data: _data, ...rest } = item.event;
          item.event = rest as Envelope;
        }
        const line = formatExportLine(format, item);
        if (line === undefined) skipped++;
        else {
          write(line);
          written++;
        }
      }
      cursor = page.nextCursor;
    } while (cursor !== undefined);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (opts.json) {
    io.out(safeJson({ format, out: resolve(opts.out!), events: written, skipped, bytes, sha256: hash.digest('hex') }, 2));
    return 0;
  }
  io.err(`exported ${written} event${written === 1 ? '' : 's'} as ${format}${skipped > 0 ? ` (${skipped} of types OCSF does not map here left out)` : ''}${fd !== undefined ? ` to ${opts.out}` : ''}`);
  return 0;
}
