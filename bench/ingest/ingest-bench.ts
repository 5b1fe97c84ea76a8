/**
 * bench/ingest: the ledger against a plain insert of the same rows (the store's
 * own entries table and indexes, same durability, no tamper evidence), on SQLite
 * and PostgreSQL, in-process and over HTTP with batches of 1 and 500. Throughput,
 * p50/p99 commit latency and peak memory, as ratios to the baseline of this run.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { EventDraft } from '@custody/core';
import { Ledger, type LedgerStore, PostgresStore, SqliteStore } from '@custody/ledger';
import { buildBatches, bulkDrafts, measureIngest, postgresTestEnv } from '@custody/ledger/testing';
import { defaultPrepareWorkers } from '@custody/server';

import { fmt, machine, peakRssMiB, percentile, writeSection } from '../lib.js';

const quick = process.env['BENCH_QUICK'] === '1';
const loadBefore = loadavg().map((l) => l.toFixed(2)).join(', ');
const N = quick ? 20_000 : 100_000;
const BATCH = 500;
const seed = new Uint8Array(32).fill(9);

/** Realistic drafts, from the generator the baseline's rows come from. */
function events(n: number, from = 1): EventDraft[] {
  return bulkDrafts(n, { seed: from, crowd: 1000 });
}

async function ledgerInProcess(store: LedgerStore, drafts: EventDraft[]): Promise<{ rate: number; p50: number; p99: number }> {
  const ledger = await Ledger.open({ store, logSeed: seed, originHost: 'custody.bench' });
  const lat: number[] = [];
  const t = performance.now();
  for (let i = 0; i < drafts.length; i += BATCH) {
    const s = performance.now();
    const res = await ledger.append('bench', drafts.slice(i, i + BATCH));
    lat.push(performance.now() - s);
    const bad = res.find((r) => r.status === 'rejected');
    if (bad) throw new Error(`append failed: ${String(bad.reason)}`);
  }
  const rate = drafts.length / ((performance.now() - t) / 1000);
  await ledger.close();
  return { rate, p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

/** Starts `custody up` on a fresh SQLite data folder in its own process. */
async function startServer(flags: string[] = []) {
  const data = mkdtempSync(join(tmpdir(), 'custody-bench-http-'));
  const bin = fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));
  const child = spawn(process.execPath, [bin, 'up', '--data', data, '--port', '0', '--origin-host', 'custody.bench', '--quiet', ...flags], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', () => reject(new Error(`custody up exited: ${out}`)));
  });
  const key = readFileSync(join(data, 'admin.key'), 'utf8').trim();
  const peakMiB = () => {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  };
  return { url, key, peakMiB, stop: () => child.kill('SIGTERM') };
}

/** Requests refused with 503 (the server shedding load) and retried after Retry-After, since the last `takeShed()`. */
let shed = 0;
const takeShed = (): number => {
  const n = shed;
  shed = 0;
  return n;
};

/**
 * The load generator's HTTP client: node:http on a keep-alive pool. (fetch costs
 * several times more CPU per request; at 1,000 requests/s it took 60% of a core,
 * on the same 2 cores as the server, and its own event loop delays showed up as
 * server latency.)
 */
const agent = new Agent({ keepAlive: true, maxSockets: 256 });

function post(url: string, key: string, body: string): Promise<{ status: number; retryAfter: string | undefined }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.resume();
        res.once('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] }));
        res.once('error', reject);
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}

/** Sends one batch, as a client should: a 503 is retried after its Retry-After, and its wait counts in the latency. */
async function postBatch(url: string, key: string, events: unknown[]): Promise<number> {
  const s = performance.now();
  const body = JSON.stringify(events);
  for (;;) {
    const res = await post(`${url}/v1/events`, key, body);
    if (res.status === 503) {
      shed++;
      await new Promise((r) => setTimeout(r, Number(res.retryAfter ?? '1') * 1000));
      continue;
    }
    if (res.status >= 300) throw new Error(`HTTP ${res.status}`);
    return performance.now() - s;
  }
}

/** A draft as a client sends it: the server assigns id and time. */
const wire = (d: EventDraft) => {
  const { id: _id, time: _time, ...rest } = d;
  return rest;
};

/** Closed loop: `clients` concurrent senders of `batch`-sized requests. */
async function httpClosedLoop(url: string, key: string, drafts: EventDraft[], batch: number, clients: number) {
  let next = 0;
  const lat: number[] = [];
  const t = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (;;) {
        const i = next;
        next += batch;
        if (i >= drafts.length) return;
        lat.push(await postBatch(url, key, drafts.slice(i, i + batch).map(wire)));
      }
    }),
  );
  return { rate: drafts.length / ((performance.now() - t) / 1000), p50: percentile(lat, 50), p99: percentile(lat, 99), shed: takeShed() };
}

/** Open loop: `batch`-sized requests at `eventsPerSecond` for about `seconds`. */
async function httpOpenLoop(url: string, key: string, drafts: EventDraft[], batch: number, eventsPerSecond: number, seconds: number) {
  const perSecond = eventsPerSecond / batch;
  const total = Math.min(Math.floor(perSecond * seconds), Math.floor(drafts.length / batch));
  const lat: number[] = [];
  const start = performance.now();
  const inflight: Promise<void>[] = [];
  for (let k = 0; k < total; k++) {
    const wait = start + (k / perSecond) * 1000 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    inflight.push(postBatch(url, key, drafts.slice(k * batch, (k + 1) * batch).map(wire)).then((ms) => void lat.push(ms)));
  }
  await Promise.all(inflight);
  return { achieved: (total * batch) / ((performance.now() - start) / 1000), p50: percentile(lat, 50), p99: percentile(lat, 99), shed: takeShed() };
}

// 1. The store alone against a plain insert of the same rows (same table, same indexes).
const batches = buildBatches(N / BATCH, BATCH);
const avgEntry = batches.flatMap((b) => b.entries).reduce((n, e) => n + e.entry.length, 0) / N;
const stores = await measureIngest(batches, quick ? 1 : 3);
const storeRow = (name: string) => stores.find((r) => r.store === name);
const sqlitePlain = storeRow('sqlite')!.plainPerSecond;
const pgPlain = storeRow('postgres')?.plainPerSecond;

// 2. The whole ledger in-process: sealing, commitments, hashing, signing, and the store.
const sqliteLedger = await ledgerInProcess(new SqliteStore({ path: join(mkdtempSync(join(tmpdir(), 'custody-bench-')), 'ledger.db') }), events(N, 7));
const pgEnv = await postgresTestEnv();
let pgLedger: { rate: number; p50: number; p99: number } | undefined;
if (pgEnv.skip === false) {
  const schema = await pgEnv.freshSchema();
  pgLedger = await ledgerInProcess(new PostgresStore({ connectionString: pgEnv.url, schema }), events(N, 7));
  await pgEnv.dropSchema(schema);
}

// 3. Over HTTP, against `custody up` in its own process.
const server = await startServer();
// Each server first takes 5,000 uncounted events the same way (JIT, its workers' too, the page cache).
const warmUp = (s: { url: string; key: string }) => httpClosedLoop(s.url, s.key, events(5_000, 29), 500, 4);
await warmUp(server);
const http500 = await httpClosedLoop(server.url, server.key, events(N, 11), 500, 4);
const half = await httpOpenLoop(server.url, server.key, events(N, 13), 500, http500.rate / 2, quick ? 3 : 8);
// Single events: one second at the same rate first (JIT, connection pool, SQLite page cache), not counted.
await httpOpenLoop(server.url, server.key, events(1_000, 19), 1, 1000, 1);
const single = await httpOpenLoop(server.url, server.key, events(quick ? 3_000 : 10_000, 17), 1, 1000, quick ? 3 : 8);
const serverPeak = server.peakMiB();
server.stop();
// The same closed loop against a server that prepares every body on its request thread.
const inlineServer = await startServer(['--prepare-workers', '0']);
await warmUp(inlineServer);
const inline500 = await httpClosedLoop(inlineServer.url, inlineServer.key, events(N, 23), 500, 4);
inlineServer.stop();
agent.destroy();

/** p50 / p99, and how many requests the server refused with 503 (each retried after Retry-After; the wait is in the latency). */
const latency = (r: { p50: number; p99: number; shed: number }) => `${fmt(r.p50, 1)} / ${fmt(r.p99, 1)} ms${r.shed > 0 ? ` (${fmt(r.shed)} refused with 503, retried)` : ''}`;
const pct = (a: number, b: number) => `${fmt((a / b) * 100)}%`;
const rows: string[][] = [
  ['SQLite: plain batched insert of the same entry rows, same table and indexes (baseline)', `${fmt(sqlitePlain)}/s`, '100%', '', ''],
  ['SQLite: the store alone (entries, principals index, tree nodes, sessions, head, checkpoint)', `${fmt(storeRow('sqlite')!.entriesPerSecond)}/s`, pct(storeRow('sqlite')!.entriesPerSecond, sqlitePlain), '', ''],
  ['SQLite: the whole ledger in-process, batches of 500', `${fmt(sqliteLedger.rate)}/s`, pct(sqliteLedger.rate, sqlitePlain), `${fmt(sqliteLedger.p50, 1)} / ${fmt(sqliteLedger.p99, 1)} ms per batch`, '≥ 70%'],
];
if (pgPlain !== undefined && pgLedger !== undefined) {
  rows.push(
    ['PostgreSQL: plain multi-row insert of the same entry rows, same table and indexes (baseline)', `${fmt(pgPlain)}/s`, '100%', '', ''],
    ['PostgreSQL: the store alone', `${fmt(storeRow('postgres')!.entriesPerSecond)}/s`, pct(storeRow('postgres')!.entriesPerSecond, pgPlain), '', ''],
    ['PostgreSQL: the whole ledger in-process, batches of 500', `${fmt(pgLedger.rate)}/s`, pct(pgLedger.rate, pgPlain), `${fmt(pgLedger.p50, 1)} / ${fmt(pgLedger.p99, 1)} ms per batch`, '≥ 70%'],
  );
} else {
  rows.push(['PostgreSQL', `not measured: ${String(pgEnv.skip)}`, '', '', '']);
}
rows.push(
  ['HTTP (SQLite), batches of 500, 4 clients, closed loop', `${fmt(http500.rate)}/s`, pct(http500.rate, sqlitePlain), latency(http500), '≥ 20k/s'],
  ['the same, `--prepare-workers 0` (every body prepared on the request thread)', `${fmt(inline500.rate)}/s`, pct(inline500.rate, sqlitePlain), latency(inline500), ''],
  ['HTTP (SQLite), batches of 500 at half that load', `${fmt(half.achieved)}/s`, pct(half.achieved, sqlitePlain), latency(half), 'p99 ≤ 50 ms'],
  ['HTTP (SQLite), single events at 1,000/s', `${fmt(single.achieved)}/s`, '', latency(single), 'p99 ≤ 10 ms'],
);

const body = `## Ingest: the ledger against plain inserts (\`bench/ingest\`)

Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}${quick ? ' — QUICK run (BENCH_QUICK=1), smaller sizes' : ''}.
Settings: ${fmt(N)} events of ${fmt(avgEntry)} bytes on average (entry bytes), from the fixture generator of \`@custody/ledger/testing\` (1,000 people, realistic sessions, identities, trace context, committed arguments); batches of ${BATCH}; SQLite in WAL mode with \`synchronous=FULL\` for baseline and ledger alike; PostgreSQL 15 on loopback with default durability.
The baseline inserts the very entry rows the store writes into the store's own \`entries\` table DDL, with the same indexes, and nothing else: no sealing, hashing, tree nodes, principals index, sessions, heads or checkpoints (median of ${quick ? 1 : 3} alternating runs). The whole-ledger rows use fresh events from the same generator.
HTTP runs against \`custody up\` on SQLite in a separate process, with the clients in this process (node:http on a keep-alive pool; fetch cost several times the CPU per request): both share the machine's 2 cores. The server runs its default preparation workers (${fmt(defaultPrepareWorkers())} here: bodies of 32 KiB or more are parsed and prepared off the request thread), and once more with none for comparison. Each server first takes 5,000 uncounted events in batches of 500; the single-event run follows one uncounted second at the same rate.
Load average before this run: ${loadBefore}.
Peak RSS: this process ${fmt(peakRssMiB())} MiB; the server ${fmt(serverPeak)} MiB.

| what | throughput | vs baseline | latency p50 / p99 | target |
| --- | --- | --- | --- | --- |
${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}
`;
writeSection('ingest', body);
process.stdout.write(body + '\n');
