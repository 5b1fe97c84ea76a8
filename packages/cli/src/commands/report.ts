import { writeFileSync } from 'node:fs';

import {
  type ActedAfterEndRow,
  COMPLIANCE_FRAMEWORKS,
  complianceHtml,
  type ComplianceReport,
  type DeepDelegationRow,
  type DeniedCallRow,
  type PrincipalActivity,
  type ReportPage,
  type TopPrincipal,
  type UnapprovedCallRow,
} from '@custody/ledger';

import { apiJson, type ConnectionOptions, queryString, resolveConnection } from '../connection.js';
import { CliError, type Output, paint, safeData, safeJson, safeText } from '../output.js';
import { collectPages, effectStyle, parseIntFlag, parseTimeFlag, printTable, shortTime, tint } from '../render.js';

/** Reports the CLI knows (GET /v1/reports/<name>). */
export const CLI_REPORTS = ['unapproved-calls', 'denied-calls', 'acted-after-end', 'deep-delegation', 'principal-activity', 'top-principals'] as const;

/** Options of `custody report`. */
export interface ReportOptions extends ConnectionOptions {
  framework?: string;
  format?: string;
  out?: string;
  since?: string;
  until?: string;
  limit?: string;
  cursor?: string;
  all?: boolean;
  depth?: string;
  principal?: string;
  json?: boolean;
}

type AnyRow = UnapprovedCallRow | DeniedCallRow | ActedAfterEndRow | DeepDelegationRow | TopPrincipal;

/** The API path and query of a report request (user input is checked here: exit 2 naming the flag). */
export function reportRequest(name: string, opts: ReportOptions, now = Date.now()): { name: (typeof CLI_REPORTS)[number]; query: Record<string, string | number | undefined> } {
  // `principal-activity` without --principal is the top principals.
  const resolved = name === 'principal-activity' && opts.principal === undefined ? 'top-principals' : name;
  if (!(CLI_REPORTS as readonly string[]).includes(resolved)) {
    throw new CliError('REPORT_UNKNOWN', `no report ${JSON.stringify(name)}; the reports are ${CLI_REPORTS.join(', ')}`);
  }
  const n = resolved as (typeof CLI_REPORTS)[number];
  if (opts.depth !== undefined && n !== 'deep-delegation') throw new CliError('OPTION_INVALID', '--depth applies to the deep-delegation report only');
  if (opts.principal !== undefined && n !== 'principal-activity') throw new CliError('OPTION_INVALID', '--principal applies to the principal-activity report only');
  if ((opts.cursor !== undefined || opts.all) && (n === 'principal-activity' || n === 'top-principals')) throw new CliError('OPTION_INVALID', `${n} has a single page: --cursor and --all do not apply`);
  return {
    name: n,
    query: {
      since: parseTimeFlag(opts.since, '--since', now),
      until: parseTimeFlag(opts.until, '--until', now),
      limit: parseIntFlag(opts.limit, '--limit', 1, 1000),
      depth: parseIntFlag(opts.depth, '--depth', 0, 64),
      principal: opts.principal,
    },
  };
}

/** `custody report <name>`: a compliance report (GET /v1/reports/<name>); every row names its session. */
export async function runReport(name: string, opts: ReportOptions, io: Output): Promise<number> {
  if (name === 'compliance') return runCompliance(opts, io);
  if (opts.framework !== undefined || opts.format !== undefined || opts.out !== undefined) {
    throw new CliError('OPTION_INVALID', '--framework, --format and --out apply to the compliance report only');
  }
  const req = reportRequest(name, opts);
  const conn = resolveConnection(opts);
  const path = `/v1/reports/${req.name}`;
  if (req.name === 'principal-activity') {
    const a = await apiJson<PrincipalActivity>(conn, `${path}${queryString(req.query)}`);
    if (opts.json) io.out(safeJson(a, 2));
    else printActivity(io, a);
    return 0;
  }
  const res = await collectPages<AnyRow>(io, opts, `${req.name} rows`, async (cursor) => {
    const page = await apiJson<ReportPage<AnyRow>>(conn, `${path}${queryString({ ...req.query, cursor })}`);
    return { items: page.rows, ...(page.nextCursor !== undefined ? { nextCursor: page.nextCursor } : {}) };
  });
  if (opts.json) {
    io.out(safeJson({ report: req.name, rows: res.items, ...(res.nextCursor !== undefined ? { nextCursor: res.nextCursor } : {}) }, 2));
    return 0;
  }
  printRows(io, req.name, res.items);
  if (res.nextCursor !== undefined) io.err(`more rows follow: add --cursor ${safeText(res.nextCursor)} (or --all)`);
  return 0;
}

function printRows(io: Output, name: string, rawRows: AnyRow[]): void {
  // Tool names, ids, reasons and chains are agent- or server-supplied: made safe before styling.
  const rows = safeData(rawRows);
  const c = io.color;
  if (rows.length === 0) {
    io.out(name === 'acted-after-end' ? `${paint(c, 'green', '✔')} no session acted after its revocation, expiry or seal` : 'no rows');
    return;
  }
  switch (name) {
    case 'unapproved-calls':
      printTable(
        io,
        ['TIME', 'SESSION', 'TOOL', 'APPROVAL', 'RAN', 'ACTOR', 'POLICIES'],
        (rows as UnapprovedCallRow[]).map((r) => [
          shortTime(r.time),
          r.session,
          r.tool,
          tint(io, r.approval === 'none' ? 'yellow' : effectStyle(r.approval) ?? 'yellow', r.approval),
          r.ran ? paint(c, 'red', 'yes') : 'no',
          r.actor,
          r.policies.join(', '),
        ]),
      );
      break;
    case 'denied-calls':
      printTable(
        io,
        ['TIME', 'KIND', 'SESSION', 'TOOL', 'ACTOR', 'WHY'],
        (rows as DeniedCallRow[]).map((r) => [
          shortTime(r.time),
          tint(io, r.kind === 'denied' ? 'red' : 'yellow', r.kind),
          r.session,
          r.tool,
          r.actor,
          r.kind === 'denied' ? [r.policies?.join(', '), ...(r.reasons ?? [])].filter(Boolean).join('; ') : `scope: ${r.scope?.join(' ') ?? ''}`,
        ]),
      );
      break;
    case 'acted-after-end':
      printTable(
        io,
        ['SESSION', 'ENDED', 'AT', 'AFTER', 'FIRST AFTER'],
        (rows as ActedAfterEndRow[]).map((r) => [r.session, paint(c, 'red', r.type), shortTime(r.recordedAt), String(r.after), `${r.first.type} by ${r.first.actor} at ${shortTime(r.first.recordedAt)}`]),
      );
      break;
    case 'deep-delegation':
      printTable(
        io,
        ['TIME', 'SESSION', 'DEPTH', 'CHAIN', 'PARENT'],
        (rows as DeepDelegationRow[]).map((r) => [shortTime(r.time), r.session, String(r.depth), r.chain.join(' → '), r.parent ?? '']),
      );
      break;
    default:
      printTable(
        io,
        ['PRINCIPAL', 'ROLE', 'SESSIONS', 'ENTRIES', 'LAST SESSION'],
        (rows as TopPrincipal[]).map((r) => [r.principal, r.role, String(r.sessions), String(r.entries), r.lastSession]),
      );
  }
  const first = rows[0]!;
  const session = 'lastSession' in first ? first.lastSession : first.session;
  io.out(paint(c, 'dim', `${rows.length} row${rows.length === 1 ? '' : 's'}; open a session with: custody timeline ${session}`));
}

function printActivity(io: Output, raw: PrincipalActivity): void {
  const a = safeData(raw);
  io.out(`${paint(io.color, 'bold', a.principal)}: ${a.entries} entries`);
  const counts = (title: string, m: Record<string, number>) => {
    const rows = Object.entries(m).sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1));
    if (rows.length === 0) return;
    io.out('');
    printTable(io, [title, 'ENTRIES'], rows.map(([k, v]) => [k, String(v)]));
  };
  counts('ROLE', a.byRole);
  counts('TYPE', a.byType);
  counts('TOOL', a.byTool);
  counts('DECISION', a.byDecision);
  if (a.rows.length > 0) {
    io.out('');
    printTable(io, ['SESSION', 'ENTRIES', 'LAST INDEX'], a.rows.map((r) => [r.session, String(r.entries), String(r.lastIndex)]));
  }
}

/** `custody report compliance`: evidence and gaps per control of a framework, as JSON or HTML. */
async function runCompliance(opts: ReportOptions, io: Output): Promise<number> {
  const framework = opts.framework;
  if (framework === undefined || !(COMPLIANCE_FRAMEWORKS as readonly string[]).includes(framework)) {
    throw new CliError('OPTION_INVALID', `--framework must be one of ${COMPLIANCE_FRAMEWORKS.join(', ')}`);
  }
  const format = opts.format ?? (opts.json ? 'json' : 'text');
  if (!['json', 'html', 'text'].includes(format)) throw new CliError('OPTION_INVALID', '--format must be json, html or text');
  const now = Date.now();
  const query = { framework, since: parseTimeFlag(opts.since, '--since', now), until: parseTimeFlag(opts.until, '--until', now) };
  const conn = resolveConnection(opts);
  io.err('measuring the log (counts, gap selections, example bundles)…');
  const report = await apiJson<ComplianceReport>(conn, `/v1/reports/compliance${queryString(query)}`);
  const text = format === 'json' ? safeJson(report, 2) : format === 'html' ? complianceHtml(report, conn.url) : complianceText(io, report);
  if (opts.out !== undefined) {
    writeFileSync(opts.out, text.endsWith('\n') ? text : `${text}\n`);
    io.err(`wrote ${opts.out}`);
  } else io.out(text.trimEnd());
  return 0;
}

function complianceText(io: Output, raw: ComplianceReport): string {
  const r = safeData(raw);
  const c = io.color;
  const lines = [
    paint(c, 'bold', r.frameworkTitle),
    `tenant ${r.tenant}, checkpoint size ${r.checkpoint.size}; ${r.measures.entries} entries, ${r.measures.sessions.sessions} sessions (${r.measures.sessions.sealed} sealed, ${r.measures.sessions.open} open)`,
    '',
  ];
  for (const ctl of r.controls) {
    const mark = ctl.status === 'gap' ? paint(c, 'red', 'GAP     ') : ctl.status === 'evidence' ? paint(c, 'green', 'EVIDENCE') : paint(c, 'dim', 'NO DATA ');
    lines.push(`${mark} ${ctl.id} ${ctl.title}`);
    for (const e of ctl.evidence) lines.push(`           ${String(e.value).padStart(8)}  ${e.measure}`);
    for (const g of ctl.gaps) {
      if (g.count === 0) continue;
      lines.push(paint(c, 'red', `           ${`${g.capped ? '≥' : ''}${g.count}`.padStart(8)}  ${g.measure}`) + (g.examples.length > 0 ? `  e.g. ${g.examples.map((x) => x.session).join(', ')}` : ''));
    }
  }
  lines.push('', paint(c, 'dim', 'HTML with links and bundle hashes: --format html -o report.html; every number: --json'));
  return lines.join('\n');
}
