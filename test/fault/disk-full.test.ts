/**
 * Issue 9, fault test: the SQLite store's disk fills up under `custody up`
 * mid-ingest. Writes are refused cleanly — 507 STORE_FULL, never another status,
 * a dropped connection or a crash, and never a half-written record — while
 * everything acknowledged before stays readable (queries, a bundle that verifies
 * against the pinned log key) and `custody audit` passes, on the full disk too.
 * Once space is freed the same process takes writes again by itself.
 *
 * Two ways to fill the disk:
 * - a small tmpfs mounted for the data folder (needs CAP_SYS_ADMIN; skipped, with
 *   the reason, where `mount` is refused), filled with a filler file;
 * - a file-size quota: RLIMIT_FSIZE set on the running server with `prlimit`
 *   (works in any container; a write past the limit fails with EFBIG, as on a
 *   full disk), lifted to free the space.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { api, custody, type Server, startServer } from '../e2e/custody-process.js';
import { listLog, missingAcked, soak, startIngest, summarize, waitFor } from './fault-kit.js';

const cleanups: (() => void)[] = [];
afterAll(() => {
  for (const c of cleanups.reverse()) {
    try {
      c();
    } catch {
      // Best effort.
    }
  }
});

interface Fill {
  /** The data folder. */
  data: string;
  /** Makes the disk full for the running server. */
  fill(server: Server): void;
  /** Frees the space again. */
  free(server: Server): void;
}

/** Ingest → fill → 507 while reads, a bundle and the audit still work → free → ingest again → everything holds. */
async function diskFull(name: string, setup: Fill) {
  const started = Date.now();
  const { data } = setup;
  const args = ['--data', data, '--origin-host', 'custody.fault', '--quiet'];
  let server = await startServer(args);
  cleanups.push(() => server.child.kill('SIGKILL'));
  const key = readFileSync(join(data, 'admin.key'), 'utf8').trim();
  // 503 SERVER_CLOSING is allowed only while the server is being restarted.
  const load = startIngest({ url: () => server.url, key, prefix: `disk-${name}`, clients: 4, batch: 20, retryStatuses: [507, 503] });
  let restartDropped: () => number = () => 0;
  const refusedFor = async (what: string) => {
    const before = load.stats.statuses.get(507) ?? 0;
    await waitFor(`507 answers ${what}`, () => (load.stats.statuses.get(507) ?? 0) >= before + 12, soak(60_000, 180_000));
  };
  try {
    await waitFor('acknowledged batches before the disk fills', () => load.stats.ok >= 20, 60_000);
    setup.fill(server);
    // Full: writes are refused with 507 STORE_FULL.
    await refusedFor('once the disk is full');
    load.paused.value = true;
    expect(server.child.exitCode, server.output()).toBeNull();

    // Everything acknowledged is readable and verifiable while the disk is full.
    expect(await missingAcked(server.url, key, load.stats.acked)).toEqual([]);
    const vkey = await (await api(server.url, key, '/v1/log/key')).text();
    const session = `disk-${name}-0-0`;
    const bundle = await api(server.url, key, `/v1/sessions/${session}/bundle`);
    expect(bundle.status).toBe(200);
    const out = mkdtempSync(join(tmpdir(), 'custody-fault-bundle-'));
    cleanups.push(() => rmSync(out, { recursive: true, force: true }));
    writeFileSync(join(out, 'bundle.json'), await bundle.text());
    const verify = custody(['verify', join(out, 'bundle.json'), '--key', vkey.trim()]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/OK/);
    const auditFull = custody(['audit', '--data', data]);
    expect(auditFull.code, auditFull.stdout + auditFull.stderr).toBe(0);

    // An operator restarts the server on the full disk: it stops cleanly and comes back for reads.
    // Requests sent to the stopped server fail, even ones whose failure lands after the new one is up: counted by URL.
    const before = load.stats.connectionErrorsByUrl.get(server.url) ?? 0;
    const stopped = server.url;
    expect(await server.stop(), server.output()).toBe(0);
    server = await startServer(args);
    restartDropped = () => (load.stats.connectionErrorsByUrl.get(stopped) ?? 0) - before;
    setup.fill(server);
    expect(await missingAcked(server.url, key, load.stats.acked)).toEqual([]);
    load.paused.value = false;
    await refusedFor('after the restart on the full disk');

    // Space comes back: the same process takes writes again.
    setup.free(server);
    const ok = load.stats.ok;
    await waitFor('acknowledgements after space was freed', () => load.stats.ok >= ok + 12, 60_000);
  } catch (err) {
    await load.stop(5_000).catch(() => undefined);
    throw new Error(`${String(err)}\nclients saw: ${summarize(load.stats)}\nserver output:\n${server.output().slice(-3000)}`, { cause: err });
  }
  await load.stop();
  const { stats } = load;
  expect(stats.violations).toEqual([]);
  expect(stats.connectionErrors, 'the server never dropped a request (but while restarted)').toBe(restartDropped());
  expect([...stats.statuses.keys()].filter((s) => s !== 503)).toEqual([507]);
  expect([...stats.codes.keys()].filter((c) => c !== 'SERVER_CLOSING')).toEqual(['STORE_FULL']);
  expect(await missingAcked(server.url, key, stats.acked)).toEqual([]);
  // No half-written record: the log is exactly the entries listed, indexes 0..size-1.
  const log = await listLog(server.url, key);
  const size = Number((await (await api(server.url, key, '/v1/log/checkpoint')).text()).split('\n')[1]);
  expect(log.size).toBe(size);
  expect([...log.values()].sort((a, b) => a - b)).toEqual(Array.from({ length: size }, (_, i) => i));
  expect(await server.stop(), server.output()).toBe(0);
  const audit = custody(['audit', '--data', data]);
  expect(audit.code, audit.stdout + audit.stderr).toBe(0);
  return { acked: stats.acked.size, refused: stats.statuses.get(507) ?? 0, ms: Date.now() - started };
}

/** Why a tmpfs cannot be mounted here, or undefined when it can. */
function tmpfsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not root';
  const probe = mkdtempSync(join(tmpdir(), 'custody-fault-mnt-'));
  try {
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { encoding: 'utf8' });
    if (m.status !== 0) return `mount -t tmpfs is refused (${(m.stderr || String(m.error)).trim()}): no CAP_SYS_ADMIN`;
    spawnSync('umount', [probe]);
    return undefined;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

const noTmpfs = tmpfsUnavailable();
const noPrlimit = spawnSync('prlimit', ['--version']).status === 0 ? undefined : 'prlimit (util-linux) is not installed';
if (noPrlimit !== undefined && process.env['CI'] === 'true') throw new Error(`the disk-full test needs ${noPrlimit}`);

describe('the SQLite store runs out of disk', () => {
  it.skipIf(noTmpfs !== undefined)(
    `on a full tmpfs, writes are refused with 507 and everything before stays readable and verifiable${noTmpfs ? ` (skipped: ${noTmpfs})` : ''}`,
    async () => {
      const mnt = mkdtempSync(join(tmpdir(), 'custody-fault-tmpfs-'));
      const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0700', 'tmpfs', mnt], { encoding: 'utf8' });
      expect(m.status, m.stderr).toBe(0);
      cleanups.push(() => {
        spawnSync('umount', ['-l', mnt]);
        rmSync(mnt, { recursive: true, force: true });
      });
      const data = join(mnt, 'data');
      const filler = join(mnt, 'filler');
      const r = await diskFull('tmpfs', {
        data,
        fill: () => {
          // Leave ~256 KiB free: a few batches fit, then the disk is full. (Again after a
          // restart: closing the store checkpoints and deletes the WAL, which frees space.)
          const { bavail, bsize } = statfsSync(mnt);
          const fd = openSync(filler, 'a');
          const chunk = Buffer.alloc(1 << 20);
          let left = bavail * bsize - (256 << 10);
          try {
            while (left > 0) left -= writeSync(fd, chunk, 0, Math.min(chunk.length, left));
          } catch (err) {
            // The server's writes meanwhile took the rest: the disk is full all the same.
            if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
          } finally {
            closeSync(fd);
          }
        },
        free: () => rmSync(filler),
      });
      console.log(`disk-full/tmpfs: ${r.acked} acknowledged entries, ${r.refused} answers 507, ${r.ms} ms`);
    },
    soak(90_000, 300_000),
  );

  it.skipIf(noPrlimit !== undefined)(
    'past a file-size quota (RLIMIT_FSIZE), writes are refused with 507 and everything before stays readable and verifiable',
    async () => {
      const data = mkdtempSync(join(tmpdir(), 'custody-fault-quota-'));
      cleanups.push(() => rmSync(data, { recursive: true, force: true }));
      const size = (f: string) => (existsSync(join(data, f)) ? statSync(join(data, f)).size : 0);
      const prlimit = (pid: number, limit: string) => {
        // The soft limit only: raising it again needs no privilege (a hard limit would need CAP_SYS_RESOURCE).
        const p = spawnSync('prlimit', ['--pid', String(pid), `--fsize=${limit}:`], { encoding: 'utf8' });
        expect(p.status, p.stderr).toBe(0);
      };
      const r = await diskFull('quota', {
        data,
        // No file of the server may grow past its current largest + 256 KiB.
        fill: (server) => prlimit(server.child.pid!, String(Math.max(size('ledger.db'), size('ledger.db-wal')) + (256 << 10))),
        free: (server) => prlimit(server.child.pid!, 'unlimited'),
      });
      console.log(`disk-full/quota: ${r.acked} acknowledged entries, ${r.refused} answers 507, ${r.ms} ms`);
    },
    soak(90_000, 300_000),
  );
});
