/**
 * `custody find-value` and `custody digests …`: keyed-digest search. The server
 * compares HMAC digests under a per-tenant key; it does not store the value.
 */
import { apiJson, type ConnectionOptions, queryString, resolveConnection } from '../connection.js';
import { CliError, type Output, safeData, safeJson, safeText } from '../output.js';

/** Options of `custody find-value`. */
export interface FindValueOptions extends ConnectionOptions {
  limit?: string;
  all?: boolean;
  json?: boolean;
}

interface EventView {
  index: number;
  event: { id: string; type: string; time: string; session?: { id: string; seq: number }; initiator?: { id: string }; actor: { id: string }; tool?: { name: string } };
  redacted: string[];
}

/** `custody find-value <pointer>=<value>`: every event whose value at the pointer is the value. */
export async function runFindValue(match: string, opts: FindValueOptions, io: Output): Promise<number> {
  const eq = match.indexOf('=');
  if (!match.startsWith('/') || eq < 0) throw new CliError('MATCH_INVALID', 'give <JSON Pointer>=<value>, e.g. /data/arguments/customerId=c-1042');
  const path = match.slice(0, eq);
  const value = match.slice(eq + 1);
  const conn = resolveConnection(opts);
  let cursor: string | undefined;
  let n = 0;
  do {
    const page = await apiJson<{ events: EventView[]; nextCursor?: string }>(
      conn,
      `/v1/records/find${queryString({ path, value, limit: opts.limit, cursor })}`,
    );
    for (const v of page.events) {
      n++;
      if (opts.json) io.out(safeJson(v));
      else {
        const e = safeData(v.event);
        io.out(`${e.time}  ${e.type.padEnd(16)} ${e.tool?.name ?? ''}  session ${e.session ? `${e.session.id}#${e.session.seq}` : '-'}  by ${e.actor.id}${e.initiator ? ` for ${e.initiator.id}` : ''}  (${e.id})`);
      }
    }
    cursor = page.nextCursor;
  } while (cursor !== undefined && opts.all === true);
  if (!opts.json) io.err(`${n} event${n === 1 ? '' : 's'} with ${path} = ${JSON.stringify(value)}${cursor !== undefined ? ' (more: --all)' : ''}`);
  return 0;
}

/** Options of `custody digests …`. */
export interface DigestsOptions extends ConnectionOptions {
  json?: boolean;
}

/** `custody digests list|set <pointer…>`. */
export async function runDigests(action: 'list' | 'set', paths: string[], opts: DigestsOptions, io: Output): Promise<number> {
  const conn = resolveConnection(opts);
  const r =
    action === 'list'
      ? await apiJson<{ paths: string[] }>(conn, '/v1/records/digest-paths')
      : await apiJson<{ paths: string[] }>(conn, '/v1/records/digest-paths', { method: 'PUT', body: JSON.stringify({ paths }) });
  if (opts.json) io.out(safeJson(r.paths));
  else if (r.paths.length === 0) io.out('no values are indexed');
  else for (const p of r.paths) io.out(safeText(p));
  return 0;
}
