import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { apiFetch, resolveConnection } from '../connection.js';
import { CliError, type Output, safeJson } from '../output.js';

export interface ExportOptions {
  session?: string;
  out?: string;
  url?: string;
  apiKey?: string;
  data?: string;
  profile?: string;
  redacted?: boolean;
  /** Print a JSON summary on stdout; the export goes to `out` (required). */
  json?: boolean;
}

/**
 * With --json standard output carries the summary, so the export needs a file.
 * @throws CliError `OUT_REQUIRED` (exit 2)
 */
export function requireOutFile(opts: { out?: string; json?: boolean }): void {
  if (opts.json === true && (opts.out === undefined || opts.out === '-')) {
    throw new CliError('OUT_REQUIRED', 'with --json, standard output carries the JSON summary: write the export to a file with -o <file>');
  }
}

/** `custody export --session ID -o FILE`: writes the session's evidence bundle. */
export async function runExport(opts: ExportOptions, io: Output): Promise<number> {
  if (opts.session === undefined) throw new CliError('SESSION_REQUIRED', 'name the session to export with --session <id>');
  requireOutFile(opts);
  const conn = resolveConnection(opts);
  const query = opts.redacted ? '?disclosures=false' : '';
  const res = await apiFetch(conn, `/v1/sessions/${encodeURIComponent(opts.session)}/bundle${query}`);
  const bundle = (await res.json()) as { records: unknown[] };
  const text = JSON.stringify(bundle, null, 2) + '\n';
  if (opts.out === undefined || opts.out === '-') {
    io.out(text.trimEnd());
  } else {
    writeFileSync(opts.out, text);
    if (opts.json) {
      const bytes = Buffer.from(text, 'utf8');
      const summary = { session: opts.session, out: resolve(opts.out), records: bundle.records.length, redacted: opts.redacted === true, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
      io.out(safeJson(summary, 2));
    } else {
      io.err(`wrote ${opts.out}: session ${opts.session}, ${bundle.records.length} records. Check it with: custody verify ${opts.out} --key <log key>`);
    }
  }
  return 0;
}
