import { writeFileSync } from 'node:fs';

import { apiFetch, resolveConnection } from '../connection.js';
import { CliError, type Output } from '../output.js';

export interface ExportOptions {
  session?: string;
  out?: string;
  url?: string;
  apiKey?: string;
  data?: string;
  profile?: string;
  redacted?: boolean;
}

/** `custody export --session ID -o FILE`: writes the session's evidence bundle. */
export async function runExport(opts: ExportOptions, io: Output): Promise<number> {
  if (opts.session === undefined) throw new CliError('SESSION_REQUIRED', 'name the session to export with --session <id>');
  const conn = resolveConnection(opts);
  const query = opts.redacted ? '?disclosures=false' : '';
  const res = await apiFetch(conn, `/v1/sessions/${encodeURIComponent(opts.session)}/bundle${query}`);
  const bundle = (await res.json()) as { records: unknown[] };
  const text = JSON.stringify(bundle, null, 2) + '\n';
  if (opts.out === undefined || opts.out === '-') {
    io.out(text.trimEnd());
  } else {
    writeFileSync(opts.out, text);
    io.err(`wrote ${opts.out}: session ${opts.session}, ${bundle.records.length} records. Check it with: custody verify ${opts.out} --key <log key>`);
  }
  return 0;
}
