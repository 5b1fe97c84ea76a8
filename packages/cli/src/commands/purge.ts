/**
 * `custody purge`, `custody retention …` and `custody hold …`: retention rules,
 * legal holds and purge runs through the API. Every change is an `admin.*` entry.
 */
import { apiFetch, apiJson, type ConnectionOptions, queryString, resolveConnection } from '../connection.js';
import { CliError, type Output, safeData, safeJson } from '../output.js';

/** Options of `custody purge`. */
export interface PurgeOptions extends ConnectionOptions {
  dryRun?: boolean;
  json?: boolean;
}

interface PurgeResult {
  run: string;
  dryRun: boolean;
  scanned: number;
  events: number;
  fields: number;
  held: number;
  holds: string[];
  entries: string[];
}

/** `custody purge [--dry-run]`: drops disclosures past retention, except under a legal hold. */
export async function runPurge(opts: PurgeOptions, io: Output): Promise<number> {
  const conn = resolveConnection(opts);
  const r = await apiJson<PurgeResult>(conn, '/v1/records/purge', { method: 'POST', body: JSON.stringify({ dryRun: opts.dryRun === true }) });
  if (opts.json) {
    io.out(safeJson(r));
    return 0;
  }
  const verb = r.dryRun ? 'would purge' : 'purged';
  io.out(`${verb} ${r.fields} fields of ${r.events} events (of ${r.scanned} still holding disclosures); ${r.held} kept by legal hold${r.holds.length > 0 ? ` (${r.holds.join(', ')})` : ''}`);
  if (!r.dryRun) io.out(`run ${r.run}, recorded as ${r.entries.length} admin.purged entr${r.entries.length === 1 ? 'y' : 'ies'}`);
  return 0;
}

/** Options of `custody retention …`. */
export interface RetentionOptions extends ConnectionOptions {
  type?: string;
  field?: string;
  days?: string;
  json?: boolean;
}

interface Rule {
  type: string;
  field: string;
  days: number;
  updatedAt: string;
}

/** `custody retention list|set|delete`. */
export async function runRetention(action: 'list' | 'set' | 'delete', opts: RetentionOptions, io: Output): Promise<number> {
  const conn = resolveConnection(opts);
  if (action === 'list') {
    const { rules } = await apiJson<{ rules: Rule[] }>(conn, '/v1/records/retention');
    if (opts.json) io.out(safeJson(rules));
    else if (rules.length === 0) io.out('no retention rules: every disclosure is kept');
    else for (const r of rules) io.out(`${r.type.padEnd(24)} ${(r.field === '' ? '(every field)' : r.field).padEnd(28)} ${r.days} days`);
    return 0;
  }
  if (opts.type === undefined) throw new CliError('TYPE_REQUIRED', 'name the event type with --type (an event type, a family such as tool.*, or *)');
  if (action === 'set') {
    const days = Number(opts.days);
    if (opts.days === undefined || !/^\d+$/.test(opts.days) || !Number.isSafeInteger(days)) throw new CliError('DAYS_INVALID', '--days must be a whole number of days');
    const rule = await apiJson<Rule>(conn, '/v1/records/retention', {
      method: 'PUT',
      body: JSON.stringify({ type: opts.type, days, ...(opts.field !== undefined ? { field: opts.field } : {}) }),
    });
    io.out(opts.json ? safeJson(rule) : `kept ${rule.days} days: ${rule.type} ${rule.field === '' ? '(every committed field)' : rule.field}`);
    return 0;
  }
  await apiFetch(conn, `/v1/records/retention${queryString({ type: opts.type, field: opts.field })}`, { method: 'DELETE' });
  if (!opts.json) io.out(`deleted the retention rule for ${opts.type}${opts.field ? ` ${opts.field}` : ''}`);
  return 0;
}

/** Options of `custody hold …`. */
export interface HoldOptions extends ConnectionOptions {
  session?: string;
  principal?: string;
  since?: string;
  until?: string;
  reason?: string;
  json?: boolean;
}

interface Hold {
  id: string;
  kind: string;
  target?: string;
  since?: string;
  until?: string;
  reason: string;
  createdAt: string;
  createdBy: string;
  liftedAt?: string;
}

function describeHold(hold: Hold): string {
  const h = safeData(hold);
  const what = h.kind === 'range' ? `recorded ${h.since} .. ${h.until}` : `${h.kind} ${h.target}`;
  return `${h.id}  ${h.liftedAt ? 'lifted ' : 'IN FORCE'}  ${what}  (${h.reason}; by ${h.createdBy} at ${h.createdAt})`;
}

/** `custody hold list|place|lift`. */
export async function runHold(action: 'list' | 'place' | 'lift', id: string | undefined, opts: HoldOptions, io: Output): Promise<number> {
  const conn = resolveConnection(opts);
  if (action === 'list') {
    const { holds } = await apiJson<{ holds: Hold[] }>(conn, '/v1/records/holds');
    if (opts.json) io.out(safeJson(holds));
    else if (holds.length === 0) io.out('no legal holds');
    else for (const h of holds) io.out(describeHold(h));
    return 0;
  }
  if (action === 'lift') {
    if (id === undefined) throw new CliError('HOLD_ID_REQUIRED', 'name the hold to lift: custody hold lift <id>');
    const h = await apiJson<Hold>(conn, `/v1/records/holds/${encodeURIComponent(id)}/lift`, {
      method: 'POST',
      body: JSON.stringify(opts.reason !== undefined ? { reason: opts.reason } : {}),
    });
    io.out(opts.json ? safeJson(h) : `lifted ${describeHold(h)}`);
    return 0;
  }
  if (opts.reason === undefined) throw new CliError('REASON_REQUIRED', 'say why with --reason <text>');
  const targets = [opts.session !== undefined, opts.principal !== undefined, opts.since !== undefined || opts.until !== undefined].filter(Boolean).length;
  if (targets !== 1) throw new CliError('HOLD_TARGET', 'hold exactly one of: --session <id>, --principal <id>, or --since <time> --until <time>');
  const body =
    opts.session !== undefined
      ? { kind: 'session', session: opts.session }
      : opts.principal !== undefined
        ? { kind: 'principal', principal: opts.principal }
        : { kind: 'range', since: opts.since, until: opts.until };
  const h = await apiJson<Hold>(conn, '/v1/records/holds', { method: 'POST', body: JSON.stringify({ ...body, reason: opts.reason }) });
  io.out(opts.json ? safeJson(h) : `placed ${describeHold(h)}`);
  return 0;
}
