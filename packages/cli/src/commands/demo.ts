import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

import { type BundleReport, generateSigner, verifyBundle } from '@custody/core';

import { buildDemo } from '../demo-session.js';
import { type Output, paint, safeJson } from '../output.js';

export interface DemoCommandOptions {
  out: string;
  /** Print one JSON summary on stdout instead of the walkthrough. */
  json?: boolean;
}

/** A bundle the demo wrote and verified, as `custody demo --json` (and `--live --json`) report it. */
export interface DemoBundleSummary {
  file: string;
  session: string | null;
  records: number;
  ok: boolean;
  verdict: BundleReport['verdict'];
  failures: { record: number | null; code: string; message: string }[];
}

/** The summary of one written bundle and its verification report. */
export function bundleSummary(file: string, bundle: { session?: string; records: readonly unknown[] }, report: BundleReport): DemoBundleSummary {
  return {
    file: resolve(file),
    session: bundle.session ?? report.sessions[0]?.id ?? null,
    records: bundle.records.length,
    ok: report.ok,
    verdict: report.verdict,
    failures: report.failures.map((f) => ({ record: f.record ?? null, code: f.code, message: f.message })),
  };
}

/**
 * `custody demo`: builds a demo session in memory, exports its evidence bundle,
 * verifies it, tampers with a copy, and shows how to check both by hand.
 */
export function runDemo(opts: DemoCommandOptions, io: Output): number {
  const dir = opts.out;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const signer = generateSigner('custody.demo/default');
  const demo = buildDemo({ signer });
  const bundle = demo.log.bundle(demo.session);
  const child = demo.log.bundle(demo.child);
  const open = demo.log.bundle(demo.open);

  // A tampered copy: an insider rewrites who approved the refund, keeping valid JSON.
  const tampered = structuredClone(child);
  for (const rec of tampered.records) {
    const text = Buffer.from(rec.entry, 'base64').toString('utf8');
    if (text.includes('"approval.granted"')) {
      rec.entry = Buffer.from(text.replaceAll('bob@example.com', 'eve@example.com'), 'utf8').toString('base64');
    }
  }

  const write = (name: string, value: unknown) => {
    const path = join(dir, name);
    writeFileSync(path, typeof value === 'string' ? value : JSON.stringify(value, null, 2) + '\n');
    return relative(process.cwd(), path) || path;
  };
  const keyPath = write('log.vkey', signer.verifierText + '\n');
  const signerPath = write('log.key', signer.signerText + '\n');
  chmodSync(join(dir, 'log.key'), 0o600);
  const files = {
    parent: write(`${demo.session}.bundle.json`, bundle),
    child: write(`${demo.child}.bundle.json`, child),
    open: write(`${demo.open}.bundle.json`, open),
    tampered: write('tampered.bundle.json', tampered),
  };

  const rows = [
    ['refund session', files.parent, bundle],
    ['payments sub-session', files.child, child],
    ['open session', files.open, open],
    ['tampered copy', files.tampered, tampered],
  ] as const;
  const reports = rows.map(([, , value]) => verifyBundle(value, { verifierKey: signer.verifierText }));

  if (opts.json) {
    const [parentReport, childReport, openReport, tamperedReport] = reports as [BundleReport, BundleReport, BundleReport, BundleReport];
    io.out(
      safeJson(
        {
          out: resolve(dir),
          log: signer.name,
          entries: demo.log.size,
          keyFile: resolve(keyPath),
          verifierKey: signer.verifierText,
          signerKeyFile: resolve(signerPath),
          bundles: [bundleSummary(files.parent, bundle, parentReport), bundleSummary(files.child, child, childReport), bundleSummary(files.open, open, openReport)],
          tampered: bundleSummary(files.tampered, tampered, tamperedReport),
        },
        2,
      ),
    );
    return 0;
  }

  const c = io.color;
  io.out(paint(c, 'bold', 'Custody demo: evidence for one agent task, verified offline'));
  io.out();
  io.out(`Alice asked refund-agent to refund order 1234. It delegated the refund to payments-agent;`);
  io.out(`policy required approval; Bob approved; the refund ran; both sessions were sealed.`);
  io.out(`${demo.log.size} entries were appended to the log ${signer.name}, signed by a fresh Ed25519 key.`);
  io.out();
  for (const [i, [label, path]] of rows.entries()) {
    const report = reports[i]!;
    const verdict = report.ok ? (report.verdict === 'complete' ? 'complete' : 'intact, not sealed') : 'FAILED';
    const mark = paint(c, report.ok ? 'green' : 'red', verdict.padEnd(18));
    io.out(`  ${label.padEnd(22)} ${mark} ${path}`);
    if (!report.ok) for (const f of report.failures) io.out(`      record ${f.record ?? '-'}: ${f.code} ${f.message}`);
  }
  io.out();
  io.out(paint(c, 'bold', 'Next:'));
  io.out(`  verify a bundle yourself:   npx custody verify ${files.parent} --key "$(cat ${keyPath})"`);
  io.out(`  see a tampered one fail:    npx custody verify ${files.tampered} --key "$(cat ${keyPath})"`);
  io.out(`  the format, documented:     docs/format.md`);
  io.out(`  (the demo signer key is in ${signerPath}, mode 0600; it is a throwaway)`);
  return 0;
}
