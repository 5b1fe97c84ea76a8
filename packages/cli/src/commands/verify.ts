import { readFileSync } from 'node:fs';

import { type BundleReport, verifyBundle } from '@custody/core';

import { CliError, type Output, paint, safeData, safeJson } from '../output.js';
import { resolveVerifierKey } from '../verifier-key.js';

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
 * `custody verify <bundle.json>`: exit 0 with a one-line verdict when everything
 * holds; exit 1 naming each failing record and reason otherwise; exit 2 (a CliError)
 * when the bundle or the key cannot be read.
 */
export function runVerify(path: string, opts: VerifyOptions, io: Output): number {
  // The flag first: a usage error is named before the input is read (standard input, too).
  // --key, else $CUSTODY_VERIFIER_KEY: the key or a file holding it (verifier-key.ts).
  const key = resolveVerifierKey(opts.key, { env: 'CUSTODY_VERIFIER_KEY' });
  const bundle = readBundle(path);
  const report = verifyBundle(bundle, key === undefined ? {} : { verifierKey: key });
  if (opts.json) {
    io.out(safeJson(report, 2));
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
