import { readFileSync } from 'node:fs';

import { type BundleReport, FormatError, parseVerifierKey, verifyBundle } from '@custody/core';

import { CliError, type Output, paint, safeData } from '../output.js';

export interface VerifyOptions {
  key?: string;
  json?: boolean;
}

/** Reads a bundle file (or `-` for standard input) as JSON. */
function readBundle(path: string): unknown {
  let text: string;
  try {
    text = path === '-' ? readFileSync(0, 'utf8') : readFileSync(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new CliError('FILE_UNREADABLE', `cannot read bundle ${path}: ${reason}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CliError('BUNDLE_MALFORMED', `${path} is not JSON; expected a custody.bundle/v1 file`);
  }
}

/**
 * The pinned key: --key, else $CUSTODY_VERIFIER_KEY, as the key itself or as the path of
 * a file that holds it. A value that is neither (a file that is missing or unreadable, or
 * text that is not a verifier key) is a usage error, exit 2, like any unusable flag: it
 * says nothing about the bundle, and it never falls back to trusting the bundle's own key.
 */
function resolveKey(flag: string | undefined): string | undefined {
  const from = flag !== undefined ? '--key' : '$CUSTODY_VERIFIER_KEY';
  const value = flag ?? process.env['CUSTODY_VERIFIER_KEY'];
  // An empty variable is an unset one; an empty --key (say, `--key "$(cat missing.vkey)"`) is a mistake.
  if (value === undefined || (value === '' && flag === undefined)) return undefined;
  const text = value.trim();
  if (text === '') throw new CliError('KEY_MALFORMED', `${from} is empty: give the log's verifier key (<name>+<key ID>+<base64>) or a file holding it`);
  const notKey = whyNotKey(text);
  if (notKey === undefined) return text;
  let file: string;
  try {
    file = readFileSync(value, 'utf8').trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Text shaped like a key (name+id+key) that is no file is a mistyped key, not a missing file.
    if ((code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG') && text.includes('+')) throw new CliError('KEY_MALFORMED', `${from} is not a verifier key: ${notKey}`);
    throw new CliError('FILE_UNREADABLE', `cannot read the key file ${value} (${from}): ${code === 'ENOENT' ? 'no such file' : (code ?? (err as Error).message)}`);
  }
  if (file === '') throw new CliError('KEY_MALFORMED', `the key file ${value} (${from}) is empty; it should hold the log's verifier key`);
  const problem = whyNotKey(file);
  if (problem !== undefined) throw new CliError('KEY_MALFORMED', `the key file ${value} (${from}) does not hold a verifier key: ${problem}`);
  return file;
}

/** Undefined when `text` is a verifier key, else why it is not. */
function whyNotKey(text: string): string | undefined {
  try {
    parseVerifierKey(text);
    return undefined;
  } catch (err) {
    if (err instanceof FormatError) return err.message;
    throw err;
  }
}

/**
 * `custody verify <bundle.json>`: exit 0 with a one-line verdict when everything
 * holds; exit 1 naming each failing record and reason otherwise; exit 2 (a CliError)
 * when the bundle or the key cannot be read.
 */
export function runVerify(path: string, opts: VerifyOptions, io: Output): number {
  // The flag first: a usage error is named before the input is read (standard input, too).
  const key = resolveKey(opts.key);
  const bundle = readBundle(path);
  const report = verifyBundle(bundle, key === undefined ? {} : { verifierKey: key });
  if (opts.json) {
    io.out(JSON.stringify(report, null, 2));
    return report.ok ? 0 : 1;
  }
  printReport(report, io);
  return report.ok ? 0 : 1;
}

function describeRecord(report: BundleReport, record: number | undefined): string {
  if (record === undefined) return 'bundle';
  const r = report.records[record];
  const bits = [r?.seq !== undefined ? `seq ${r.seq}` : undefined, r?.type, r?.index !== undefined ? `index ${r.index}` : undefined]
    .filter(Boolean)
    .join(', ');
  return `record ${record}${bits ? ` (${bits})` : ''}`;
}

function printReport(raw: BundleReport, io: Output): void {
  // The bundle is untrusted input: what its records say (types, messages) is shown escaped.
  const report = safeData(raw);
  if (report.ok) {
    io.out(`${paint(io.color, 'green', report.verdict === 'complete' ? '✔' : '●')} ${report.summary}`);
    if (report.key.source === 'bundle') {
      io.err(paint(io.color, 'yellow', 'note: no --key given; the key inside the bundle was trusted. Pin the log key with --key <verifierKey>.'));
    }
    return;
  }
  const n = report.failures.length;
  io.out(`${paint(io.color, 'red', '✘ FAILED')}: ${n} problem${n === 1 ? '' : 's'} in this bundle`);
  for (const f of report.failures) {
    io.out(`  ${describeRecord(report, f.record)}: ${paint(io.color, 'bold', f.code)} ${f.message}`);
  }
}
