/**
 * `custody redact`: drops disclosures of committed fields after sealing, for one
 * event (`--field`) or for every event of a data subject (`--subject`, erasure,
 * page by page with progress). Each redacted event gets an `admin.redacted` entry.
 */
import { apiJson, type ConnectionOptions, resolveConnection } from '../connection.js';
import { CliError, type Output, safeData, safeJson } from '../output.js';

/** Options of `custody redact`. */
export interface RedactOptions extends ConnectionOptions {
  field?: string[];
  subject?: string;
  reason?: string;
  json?: boolean;
}

interface RedactResult {
  event: string;
  redacted: string[];
  alreadyRedacted: string[];
  entry?: string;
}

interface ErasureResult {
  scanned: number;
  events: number;
  fields: number;
  nextCursor?: string;
}

/** `custody redact <event-id> --field P… --reason R` or `custody redact --subject ID --reason R`. */
export async function runRedact(eventId: string | undefined, opts: RedactOptions, io: Output): Promise<number> {
  if (opts.reason === undefined || opts.reason.trim() === '') throw new CliError('REASON_REQUIRED', 'say why with --reason <text> (it is recorded; name no sensitive value in it)');
  const conn = resolveConnection(opts);
  if (opts.subject !== undefined) {
    if (eventId !== undefined || (opts.field?.length ?? 0) > 0) throw new CliError('REDACT_TARGET', 'give either <event-id> with --field, or --subject, not both');
    const total = { scanned: 0, events: 0, fields: 0 };
    let cursor: string | undefined;
    do {
      const r = await apiJson<ErasureResult>(conn, '/v1/records/erasures', {
        method: 'POST',
        body: JSON.stringify({ subject: opts.subject, reason: opts.reason, ...(cursor !== undefined ? { cursor } : {}) }),
      });
      total.scanned += r.scanned;
      total.events += r.events;
      total.fields += r.fields;
      cursor = r.nextCursor;
      if (!opts.json) io.err(`erasing ${opts.subject}: ${total.scanned} events examined, ${total.events} redacted (${total.fields} fields)${cursor ? ' …' : ''}`);
    } while (cursor !== undefined);
    if (opts.json) io.out(safeJson({ subject: opts.subject, ...total }));
    else io.out(`erased ${opts.subject}: ${total.events} events redacted, ${total.fields} fields; each is recorded as admin.redacted`);
    return 0;
  }
  if (eventId === undefined) throw new CliError('REDACT_TARGET', 'name the event (custody redact <event-id> --field /data/arguments) or the data subject (--subject <principal-id>)');
  if ((opts.field?.length ?? 0) === 0) throw new CliError('FIELD_REQUIRED', 'name the fields to redact with --field <JSON Pointer>, e.g. --field /data/arguments');
  const raw = await apiJson<RedactResult>(conn, `/v1/events/${encodeURIComponent(eventId)}/redact`, {
    method: 'POST',
    body: JSON.stringify({ fields: opts.field, reason: opts.reason }),
  });
  if (opts.json) {
    io.out(safeJson(raw));
    return 0;
  }
  const r = safeData(raw);
  if (r.redacted.length > 0) io.out(`redacted ${r.redacted.join(', ')} of event ${r.event} (recorded as admin.redacted ${r.entry ?? ''})`.trim());
  if (r.alreadyRedacted.length > 0) io.out(`already redacted: ${r.alreadyRedacted.join(', ')}`);
  return 0;
}
