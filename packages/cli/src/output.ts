/**
 * Terminal output: colour only on a TTY and never when NO_COLOR is set
 * (https://no-color.org), and errors that name the problem.
 */
import { LedgerError, StoreError } from '@custody/ledger';

export interface Output {
  out(line?: string): void;
  err(line?: string): void;
  readonly color: boolean;
}

const codes = { red: 31, green: 32, yellow: 33, dim: 2, bold: 1 } as const;
export type Style = keyof typeof codes;

/** Output to the process streams. */
export function processOutput(): Output {
  const noColor = process.env['NO_COLOR'] !== undefined && process.env['NO_COLOR'] !== '';
  const color = !noColor && process.stdout.isTTY === true && process.env['TERM'] !== 'dumb';
  return {
    color,
    out: (line = '') => process.stdout.write(line + '\n'),
    err: (line = '') => process.stderr.write(line + '\n'),
  };
}

/** Wraps `text` in an ANSI style when `on`. Style values only after `safeText` (paint does not neutralise them). */
export function paint(on: boolean, style: Style, text: string): string {
  return on ? `\u001b[${codes[style]}m${text}\u001b[0m` : text;
}

/**
 * What a terminal may act on instead of showing, or shows misleadingly: C0 controls (the
 * escape that starts cursor moves and erases, CR, backspace, newline and tab inside a value
 * too), DEL, C1 controls (U+0080–U+009F, 8-bit CSI and OSC among them), the Unicode bidi
 * controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), the line and paragraph
 * separators, and invisible characters that make two ids look alike (U+200B, U+2060, U+FEFF).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069\ufeff]/g;

const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(c: string): string {
  return SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * A value from the server, a store or a file (agent-controlled text: objectives, tool
 * names, principal ids, reasons, approver names, messages) made safe to print on a
 * terminal: every character of UNSAFE is shown as an escape (`\u001b`, `\n`, `\r`,
 * `\t`, `\u202e`), so that no value can move the cursor, erase or rewrite a line, start a
 * new one, or reorder what is shown. Human output; --json output is `safeJson`'s.
 */
export function safeText(value: unknown): string {
  return (typeof value === 'string' ? value : String(value)).replace(UNSAFE, escapeChar);
}

/** UNSAFE but the C0 controls: JSON.stringify escapes those inside strings, and only indents with newlines outside them. */
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069\ufeff]/g;

/**
 * JSON of a value, safe to print: JSON.stringify escapes the C0 controls but leaves DEL,
 * the C1 controls, the bidi controls, U+2028/U+2029 and the invisible U+200B, U+2060 and
 * U+FEFF raw; here each of them is written `\uXXXX` too. Such characters only occur inside
 * strings (keys too), where `\uXXXX` stands for the same character: JSON.parse of the text
 * gives exactly the value JSON.stringify's would. `space` indents as JSON.stringify's does.
 * Every `--json` output of the CLI goes through here (a byte-exact data export, the
 * bundle of `custody export`, does not: see docs/cli.md).
 */
export function safeJson(value: unknown, space?: number): string {
  const text = JSON.stringify(value, null, space) as string | undefined;
  return text === undefined ? String(value) : text.replace(JSON_UNSAFE, escapeChar);
}

/**
 * A copy of data from the server or a store with every string in it (object keys too)
 * passed through `safeText`: give it to a human renderer, so that whatever field the
 * renderer prints, and however it styles it, the value is safe.
 */
export function safeData<T>(value: T): T {
  if (typeof value === 'string') return safeText(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => safeData(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[safeText(k)] = safeData(v);
    return out as T;
  }
  return value;
}

/** The exact style sequences `paint` writes. */
const PAINTED = new RegExp(`\u001b\\[(?:${[0, ...Object.values(codes)].join('|')})m`, 'g');

/**
 * Text built by the CLI that may carry `paint` styles (a table cell, a field): every
 * UNSAFE character is escaped as by `safeText`, except the exact style sequences `paint`
 * writes. The net under values a renderer forgot to pass through `safeText`; it cannot
 * tell a style a value smuggled in from the CLI's own, so values still go through `safeText`.
 */
export function safeStyled(text: string): string {
  let out = '';
  let last = 0;
  for (const m of text.matchAll(PAINTED)) {
    out += safeText(text.slice(last, m.index)) + m[0];
    last = m.index + m[0].length;
  }
  return out + safeText(text.slice(last));
}

/** A listen() failure as a CliError naming the address (a port in use, an address not on this machine), else undefined. */
export function listenFailure(err: unknown, host: string, port: number | string): CliError | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') return new CliError('PORT_IN_USE', `${host}:${port} is already in use: stop what listens there, or choose another --port`);
  if (code === 'EACCES' || code === 'EADDRNOTAVAIL') return new CliError('LISTEN_FAILED', `cannot listen on ${host}:${port} (${code}): choose another --host or --port`);
  return undefined;
}

/** A usage or input error: printed as `custody: <message> [<code>]`, exit code 2 unless given. */
export class CliError extends Error {
  readonly code: string;
  readonly exitCode: number;
  constructor(code: string, message: string, exitCode = 2) {
    super(message);
    this.code = code;
    this.exitCode = exitCode;
    this.name = 'CliError';
  }
}

/** How a command failed: its error code, message and the exit code `main` gives it. */
export interface Failure {
  code: string;
  message: string;
  exitCode: number;
}

/**
 * What `main` makes of a thrown error: a CliError as it says (2 for usage and input
 * errors); a StoreError or LedgerError, the store refusing or out of reach (PostgreSQL
 * down, disk full), an operational failure with its code, exit 1; anything else a bug,
 * `INTERNAL`, exit 70.
 */
export function failureOf(err: unknown): Failure {
  if (err instanceof CliError) return { code: err.code, message: err.message, exitCode: err.exitCode };
  if (err instanceof StoreError || err instanceof LedgerError) return { code: err.code, message: err.message, exitCode: 1 };
  return { code: 'INTERNAL', message: `unexpected error: ${err instanceof Error ? err.message : String(err)}`, exitCode: 70 };
}

/**
 * Runs a command whose --json result is one object on standard output, so that a failure
 * prints one too: `{ "ok": false, "error": { "code", "message" } }` (the API's error shape,
 * with the `ok` of the result), then rethrows, for `main` to print the error on standard
 * error and exit with the code it always gives.
 */
export async function jsonFailures(io: Output, json: boolean | undefined, run: () => Promise<number>): Promise<number> {
  if (json !== true) return run();
  try {
    return await run();
  } catch (err) {
    const { code, message } = failureOf(err);
    io.out(safeJson({ ok: false, error: { code, message } }, 2));
    throw err;
  }
}

/** The level of a log line of a long-running command (`custody up`, `custody gateway`). */
export type LogLevel = 'info' | 'warn' | 'error';

/** Writes one log line to standard error. */
export type Log = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void;

/**
 * The log of a long-running command, on standard error: `<prefix><message>` as text,
 * or with --json one JSON object a line, `{ "time", "level", "message", ...fields }`.
 */
export function stderrLog(io: Output, json: boolean, prefix: string): Log {
  return (level, message, fields) => io.err(json ? safeJson({ time: new Date().toISOString(), level, message, ...fields }) : `${prefix}${safeText(message)}`);
}

/**
 * With --json, a long-running command reports a failure as a last JSON log line
 * (`level: "error"`, with the error's `code`) and the exit code `main` would give.
 */
export async function logFailures(log: Log, run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof CliError) {
      log('error', err.message, { code: err.code });
      return err.exitCode;
    }
    log('error', `unexpected error: ${err instanceof Error ? err.message : String(err)}`);
    return 70;
  }
}

/**
 * The first SIGINT or SIGTERM, listened for from now on: call it before announcing that a
 * server listens, so that a signal sent as soon as the announcement is read stops it cleanly.
 */
export function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (sig: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(sig);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
