/**
 * Human output of the investigation commands: aligned tables, colour (only when
 * the Output allows it), times given as flags, and progress on standard error.
 */
import { CliError, type Output, paint, safeStyled, type Style } from './output.js';

const ANSI = /\u001b\[[0-9;]*m/g;

/** The visible width of a string (ANSI styles excluded). */
export function visibleWidth(s: string): number {
  return [...s.replace(ANSI, '')].length;
}

/**
 * Prints an aligned table: a bold header, then the rows; cells may carry colour. Every
 * cell is one line: a control character in it (a newline too) is shown escaped, as
 * `safeStyled` does; values from the server should still be passed through `safeText`
 * (or `safeData`) before they are styled or put in a cell.
 */
export function printTable(io: Output, heading: readonly string[], cellRows: readonly (readonly string[])[]): void {
  const header = heading.map(safeStyled);
  const rows = cellRows.map((r) => r.map(safeStyled));
  const widths = header.map((h, i) => Math.max(visibleWidth(h), ...rows.map((r) => visibleWidth(r[i] ?? ''))));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(Math.max(0, widths[i]! - visibleWidth(c)))))
      .join('  ')
      .trimEnd();
  io.out(paint(io.color, 'bold', line(header)));
  for (const r of rows) io.out(line(r));
}

/** Colour of a decision effect or approval status. */
export function effectStyle(effect: string | undefined): Style | undefined {
  switch (effect) {
    case 'allow':
    case 'granted':
      return 'green';
    case 'deny':
    case 'denied':
    case 'expired':
      return 'red';
    case 'approval_required':
    case 'pending':
      return 'yellow';
    default:
      return undefined;
  }
}

/** `text` painted in `style` when there is one. */
export function tint(io: Output, style: Style | undefined, text: string): string {
  return style === undefined ? text : paint(io.color, style, text);
}

/** An RFC 3339 time as `2026-11-22 06:00:00.123Z` (shorter, still exact to the millisecond shown). */
export function shortTime(t: string | undefined): string {
  return t === undefined ? '' : t.replace('T', ' ');
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * A `--since` / `--until` value (user input): an ISO 8601 / RFC 3339 time, or a
 * relative one (`90s`, `30m`, `24h`, `7d`, `2w`: that long before `now`), as UTC RFC 3339.
 * @throws CliError `TIME_INVALID` naming the flag (exit 2)
 */
export function parseTimeFlag(value: string | undefined, flag: string, now = Date.now()): string | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  const rel = /^(\d{1,9})\s*([smhdw])$/.exec(v);
  if (rel !== null) return new Date(now - Number(rel[1]) * UNITS[rel[2]!]!).toISOString();
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const ms = Date.parse(v);
    if (!Number.isNaN(ms)) return new Date(ms).toISOString();
  }
  throw new CliError('TIME_INVALID', `${flag} must be a time such as 2026-11-22T06:00:00Z or 2026-11-22, or a relative one such as 30m, 24h, 7d; got ${JSON.stringify(value)}`);
}

/**
 * An integer flag (user input) within [min, max].
 * @throws CliError `<NAME>_INVALID` naming the flag (exit 2)
 */
export function parseIntFlag(value: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new CliError(`${flag.replace(/^--/, '').replace(/-/g, '_').toUpperCase()}_INVALID`, `${flag} must be an integer from ${min} to ${max}; got ${JSON.stringify(value)}`);
  }
  return n;
}

/** Reports progress on standard error: a rewritten line on a terminal, a line every 2 s otherwise; nothing with --json on a pipe. */
export function progress(io: Output, quiet: boolean): { update(text: string): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  let shown = false;
  return {
    update(text: string) {
      if (quiet && !tty) return;
      if (tty) {
        process.stderr.write(`\r\u001b[2K${text}`);
        shown = true;
      } else if (Date.now() - last > 2000) {
        last = Date.now();
        io.err(text);
      }
    },
    done() {
      if (tty && shown) process.stderr.write('\r\u001b[2K');
    },
  };
}

/**
 * Fetches every page of a cursor-paged listing (with `all`), or one page, reporting progress.
 * @param fetchPage fetches one page given a cursor
 */
export async function collectPages<T>(
  io: Output,
  opts: { all?: boolean; json?: boolean; cursor?: string },
  what: string,
  fetchPage: (cursor: string | undefined) => Promise<{ items: T[]; nextCursor?: string }>,
): Promise<{ items: T[]; nextCursor?: string }> {
  const items: T[] = [];
  let cursor = opts.cursor;
  const p = progress(io, opts.json === true);
  try {
    for (let page = 1; ; page++) {
      const res = await fetchPage(cursor);
      items.push(...res.items);
      if (!opts.all || res.nextCursor === undefined) return { items, ...(res.nextCursor !== undefined ? { nextCursor: res.nextCursor } : {}) };
      cursor = res.nextCursor;
      p.update(`fetching ${what}: ${items.length} so far (page ${page})…`);
    }
  } finally {
    p.done();
  }
}
