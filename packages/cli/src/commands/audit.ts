import { audit, Ledger } from '@custody/ledger';
import { SingleBar } from 'cli-progress';

import { dataDir, loadLogSeed, openStore } from '../local-config.js';
import { jsonFailures, type Output, paint, safeData, safeJson, safeText } from '../output.js';

export interface AuditCommandOptions {
  data?: string;
  postgres?: string;
  tenant?: string[];
  logKey?: string;
  json?: boolean;
}

/**
 * `custody audit`: rebuilds every tenant's tree from the stored entries and checks
 * it against every stored node, checkpoint and session chain, and every index row,
 * postings bucket, session row, disclosure and the head against the entries. Exit 1
 * naming the first bad index. When it cannot run (the store out of reach, a bad
 * --log-key, no log key at all: audit never creates one), the error and its exit
 * code as `main` gives them; with --json, also `{ ok: false, error: { code, message } }`
 * on standard output.
 */
export function runAudit(opts: AuditCommandOptions, io: Output): Promise<number> {
  return jsonFailures(io, opts.json, () => auditStore(opts, io));
}

async function auditStore(opts: AuditCommandOptions, io: Output): Promise<number> {
  const dir = dataDir(opts.data);
  // The key that signed the stored checkpoints, read before the store is opened and never
  // created: a new key could verify no checkpoint, and a failed audit leaves no key behind.
  const { seed } = loadLogSeed(dir, opts.logKey, { create: false });
  const store = await openStore(dir, opts.postgres);
  const ledger = await Ledger.open({ store, logSeed: seed });
  const tty = process.stderr.isTTY === true && !opts.json;
  const bar = tty ? new SingleBar({ format: ' {tenant} [{bar}] {percentage}% {value}/{total} entries', hideCursor: true, clearOnComplete: true }) : undefined;
  let current = '';
  let lastLine = 0;
  try {
    const report = await audit(store, {
      ...(opts.tenant ? { tenants: opts.tenant } : {}),
      verifierKey: (t) => ledger.verifierKey(t),
      onProgress: (p) => {
        if (bar) {
          if (p.tenant !== current) {
            if (current) bar.stop();
            current = p.tenant;
            bar.start(p.total, 0, { tenant: p.tenant });
          }
          bar.update(p.done, { tenant: p.tenant });
        } else if (!opts.json && (Date.now() - lastLine > 2000 || p.done === p.total)) {
          lastLine = Date.now();
          io.err(`audit ${p.tenant}: ${p.done}/${p.total} entries`);
        }
      },
    });
    bar?.stop();
    if (opts.json) {
      io.out(safeJson(report, 2));
    } else {
      for (const t of safeData(report.tenants)) {
        const mark = t.ok ? paint(io.color, 'green', '✔') : paint(io.color, 'red', '✘');
        io.out(`${mark} ${t.tenant}: ${plural(t.entries, 'entry', 'entries')}, ${plural(t.checkpoints, 'checkpoint')}, ${plural(t.sessions, 'session')}${t.ok ? ' — every entry, index row, node, checkpoint, session and chain holds' : ''}`);
        for (const p of t.problems) io.out(`  ${p.index !== undefined ? `index ${p.index}: ` : ''}${paint(io.color, 'bold', p.code)} ${p.message}`);
      }
      if (report.tenants.length === 0) io.out('no logs to audit');
      if (!report.ok && report.first) io.out(`FAILED: first bad index ${report.first.index ?? '-'} in tenant ${safeText(report.first.tenant)}`);
    }
    return report.ok ? 0 : 1;
  } finally {
    bar?.stop();
    await ledger.close();
  }
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
