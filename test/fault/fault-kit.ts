/**
 * Shared pieces of the crash and fault tests (issue 9): the short/long (soak)
 * switch, waiting on conditions, an ingest load whose every acknowledgement is
 * recorded, the check that every acknowledged entry is in the log at its index,
 * and a private PostgreSQL instance that a test may stop and start at will.
 *
 * `SOAK=1` (`npm run soak`) raises the counts; the short form runs in `npm test`.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { api } from '../e2e/custody-process.js';

/** True in the long form (`npm run soak`, or `SOAK=1`). */
export const SOAK = ['1', 'true', 'yes'].includes((process.env['SOAK'] ?? '').toLowerCase());

/** `short` in the CI form, `long` with SOAK=1. */
export const soak = <T>(short: T, long: T): T => (SOAK ? long : short);

/** Waits until `check()` is truthy (polling every `everyMs`), or throws naming `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 30_000, everyMs = 10): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A free TCP port on 127.0.0.1 (for a server that must come back on the same address). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** One ingest event with a client-chosen id (so a retry is recognised as one). */
export function faultEvent(session: string, i: number): Record<string, unknown> {
  return {
    id: crypto.randomUUID(),
    type: 'tool.requested',
    session: { id: session },
    initiator: { type: 'human', id: `user${i % 3}@example.com` },
    actor: { type: 'agent', id: `agent-${i % 4}` },
    tool: { name: ['orders.lookup', 'refunds.create'][i % 2] },
    data: { arguments: { i, pad: 'x'.repeat(64) } },
  };
}

/** What an ingest load saw. */
export interface IngestStats {
  /** Acknowledged id → index (every 2xx result, first and duplicate answers alike). */
  acked: Map<string, number>;
  /** Requests answered 2xx. */
  ok: number;
  /** Answers by status other than 2xx (e.g. 503, 507). */
  statuses: Map<number, number>;
  /** Error codes of non-2xx answers. */
  codes: Map<string, number>;
  /** 503 answers without a Retry-After header. */
  missingRetryAfter: number;
  /** Requests that got no HTTP answer (server gone). */
  connectionErrors: number;
  /** The same, by the server URL each was sent to (a test that moves the server can tell the old one's from the new one's). */
  connectionErrorsByUrl: Map<string, number>;
  /** Anything a correct server never does (a changed index for a known id, an unexpected status). */
  violations: string[];
}

export interface IngestOptions {
  /** The server's URL, read afresh for each request (it may move). */
  url: () => string;
  key: string;
  clients?: number;
  batch?: number;
  /** Session ids are `<prefix>-<client>-<n>`. */
  prefix: string;
  /** Statuses a client accepts as "not acknowledged, retry" (default 503). */
  retryStatuses?: readonly number[];
}

/**
 * Starts `clients` loops, each appending batches with ids and re-sending a batch
 * until it is acknowledged (connection errors and `retryStatuses` are retried,
 * after Retry-After for a 503). `stop()` lets each loop finish (acknowledge) its
 * batch in flight, then resolves.
 */
export function startIngest(opts: IngestOptions): { stats: IngestStats; stop: (timeoutMs?: number) => Promise<void>; paused: { value: boolean } } {
  const stats: IngestStats = { acked: new Map(), ok: 0, statuses: new Map(), codes: new Map(), missingRetryAfter: 0, connectionErrors: 0, connectionErrorsByUrl: new Map(), violations: [] };
  const retry = new Set(opts.retryStatuses ?? [503]);
  const paused = { value: false };
  let stopping = false;
  let deadline = Infinity;
  const loops = Array.from({ length: opts.clients ?? 4 }, async (_, c) => {
    for (let n = 0; !stopping; n++) {
      if (paused.value) {
        await sleep(5);
        continue;
      }
      const batch = Array.from({ length: opts.batch ?? 10 }, (_, j) => faultEvent(`${opts.prefix}-${c}-${n % 7}`, n + j));
      const body = JSON.stringify(batch);
      // Re-send the same batch (same ids) until it is acknowledged.
      const dropped = (url: string) => {
        stats.connectionErrors++;
        stats.connectionErrorsByUrl.set(url, (stats.connectionErrorsByUrl.get(url) ?? 0) + 1);
      };
      for (let attempt = 0; ; attempt++) {
        if (Date.now() > deadline) throw new Error(`client ${c}: batch ${n} not acknowledged before the deadline`);
        let res: Response;
        const url = opts.url();
        try {
          res = await api(url, opts.key, '/v1/events', { method: 'POST', body, signal: AbortSignal.timeout(15_000) });
        } catch {
          // The server is gone (or restarting): back off 10 ms doubling to 100 ms.
          dropped(url);
          await sleep(Math.min(100, 10 * 2 ** Math.min(attempt, 4)));
          continue;
        }
        const text = await res.text().catch(() => undefined);
        if (text === undefined) {
          dropped(url);
          await sleep(Math.min(100, 10 * 2 ** Math.min(attempt, 4)));
          continue;
        }
        if (res.status === 200 || res.status === 201) {
          const results = (JSON.parse(text) as { results: { id: string; index: number }[] }).results;
          for (const r of results) {
            const prior = stats.acked.get(r.id);
            if (prior !== undefined && prior !== r.index) stats.violations.push(`id ${r.id} acknowledged at index ${prior}, then at ${r.index}`);
            stats.acked.set(r.id, r.index);
          }
          if (results.length !== batch.length) stats.violations.push(`a batch of ${batch.length} got ${results.length} results`);
          stats.ok++;
          break;
        }
        stats.statuses.set(res.status, (stats.statuses.get(res.status) ?? 0) + 1);
        const code = (() => {
          try {
            return (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '?';
          } catch {
            return '?';
          }
        })();
        stats.codes.set(code, (stats.codes.get(code) ?? 0) + 1);
        if (res.status === 503 && res.headers.get('retry-after') === null) stats.missingRetryAfter++;
        if (!retry.has(res.status)) {
          stats.violations.push(`unexpected ${res.status} ${code}: ${text.slice(0, 300)}`);
          await sleep(50);
          continue;
        }
        // Retry-After is in seconds; the tests honour it scaled down so that they stay short.
        const after = Number(res.headers.get('retry-after') ?? '1');
        await sleep(Math.min(100, Math.max(10, after * 20)));
      }
    }
  });
  const all = Promise.all(loops);
  all.catch(() => undefined);
  return {
    stats,
    paused,
    stop: async (timeoutMs = 60_000) => {
      stopping = true;
      deadline = Date.now() + timeoutMs;
      await all;
    },
  };
}

/** One line of what clients saw, for failure messages and logs. */
export function summarize(stats: IngestStats): string {
  const by = (m: Map<number | string, number>) => [...m].map(([k, n]) => `${k}×${n}`).join(' ') || 'none';
  return `${stats.ok} batches acknowledged (${stats.acked.size} ids); refusals ${by(stats.statuses)} (${by(stats.codes)}); ${stats.connectionErrors} connection errors; violations: ${stats.violations.slice(0, 5).join(' | ') || 'none'}`;
}

interface EventView {
  index: number;
  event: { id: string };
}

/** Every entry of the tenant's log as id → index, read through the API (`GET /v1/events`, paged). */
export async function listLog(url: string, key: string, query = ''): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let cursor: string | undefined;
  do {
    const res = await api(url, key, `/v1/events?order=asc&limit=1000${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    if (res.status !== 200) throw new Error(`GET /v1/events: ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { events: EventView[]; nextCursor?: string };
    for (const e of page.events) {
      if (out.has(e.event.id)) throw new Error(`id ${e.event.id} is in the log twice (indexes ${out.get(e.event.id)} and ${e.index})`);
      out.set(e.event.id, e.index);
    }
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return out;
}

/**
 * Checks every acknowledged id is in the log at its acknowledged index (through
 * the list), and `sample` of them one by one (`GET /v1/events/:id`). Returns the
 * ids missing or misplaced (empty when all hold).
 */
export async function missingAcked(url: string, key: string, acked: Map<string, number>, sample = 25): Promise<string[]> {
  const log = await listLog(url, key);
  const bad: string[] = [];
  for (const [id, index] of acked) {
    const at = log.get(id);
    if (at !== index) bad.push(`${id}: acknowledged at ${index}, ${at === undefined ? 'absent' : `found at ${at}`}`);
  }
  const ids = [...acked.keys()];
  for (let i = 0; i < Math.min(sample, ids.length); i++) {
    const id = ids[Math.floor((i * ids.length) / Math.min(sample, ids.length))]!;
    const res = await api(url, key, `/v1/events/${id}`);
    const view = res.status === 200 ? ((await res.json()) as EventView) : undefined;
    if (view?.index !== acked.get(id)) bad.push(`${id}: GET /v1/events/:id answered ${res.status} index ${String(view?.index)}`);
  }
  return bad;
}

// ---------------------------------------------------------------------------
// A private PostgreSQL instance
// ---------------------------------------------------------------------------

/** A PostgreSQL server of this test alone: stop it, start it, crash it. */
export interface PrivatePostgres {
  url: string;
  port: number;
  /** `pg_ctl stop` with `mode` (fast: disconnects clients; immediate: like a crash). */
  stop(mode?: 'fast' | 'immediate'): void;
  start(): void;
  /** Stops it (if running) and deletes its folder. */
  destroy(): void;
  log(): string;
}

/** The newest PostgreSQL server binaries on this machine, if any. */
export function postgresBinDir(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, 'bin', 'pg_ctl')) && existsSync(join(base, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(base, versions[0], 'bin');
}

/** Why a private PostgreSQL cannot run here, or undefined when it can. */
export function privatePostgresUnavailable(): string | undefined {
  if (postgresBinDir() === undefined) return 'no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)';
  if (process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).status !== 0) return 'running as root and there is no postgres user to run the server as';
  return undefined;
}

/**
 * initdb + pg_ctl start of a throwaway cluster in a temp folder on a free port
 * (trust authentication, listening on 127.0.0.1 and a socket in its own folder).
 * As root the binaries run as the `postgres` user, since PostgreSQL refuses root.
 * Never touches the machine's shared server.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error(privatePostgresUnavailable());
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'custody-fault-pg-'));
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  if (asRoot) {
    const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    chownSync(dir, uid, gid);
  }
  const run = (cmd: string, args: string[], timeout = 60_000) => {
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]] : [join(bin, cmd), args];
    const r = spawnSync(file, argv, { encoding: 'utf8', timeout, cwd: dir, env: { ...process.env, LC_ALL: 'C', LANG: 'C' } });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${String(r.status ?? r.signal)}): ${r.stdout}${r.stderr}${readLog()}`);
    return r;
  };
  const readLog = () => {
    const r = spawnSync('cat', [logFile], { encoding: 'utf8' });
    return r.status === 0 ? `\n--- server.log ---\n${r.stdout.slice(-4000)}` : '';
  };
  const port = await freePort();
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
  const options = [`-p ${port}`, `-k ${dir}`, "-c listen_addresses='127.0.0.1'", '-c max_connections=60', '-c shared_buffers=16MB', '-c log_min_messages=warning'].join(' ');
  let running = false;
  const pg: PrivatePostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start: () => {
      run('pg_ctl', ['start', '-D', data, '-l', logFile, '-w', '-t', '60', '-o', options]);
      running = true;
    },
    stop: (mode = 'fast') => {
      run('pg_ctl', ['stop', '-D', data, '-m', mode, '-w', '-t', '60']);
      running = false;
    },
    destroy: () => {
      try {
        if (running || existsSync(join(data, 'postmaster.pid'))) run('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-w', '-t', '30']);
      } catch {
        // Already stopped.
      } finally {
        running = false;
        rmSync(dir, { recursive: true, force: true });
      }
    },
    log: readLog,
  };
  try {
    pg.start();
  } catch (err) {
    pg.destroy();
    throw err;
  }
  return pg;
}
