/**
 * bench/query: session timeline and identity queries on a large log, on SQLite
 * and PostgreSQL, against a primary-key point read of the same store in the same
 * run. p50/p99 per query and the ratio of its p99 to the point read's p99.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { inclusionProofNodes } from '@custody/core';
import { createHash } from 'node:crypto';
import { audit, complianceReport, type EntryFilter, Ledger, type LedgerStore, PostgresStore, SqliteStore, type StoredEntry } from '@custody/ledger';
import { bulkDrafts, FIXTURE_SEED, FixtureLog, mulberry32, postgresTestEnv } from '@custody/ledger/testing';
import pg from 'pg';

import { fmt, machine, peakRssMiB, percentile, writeSection } from '../lib.js';

const quick = process.env['BENCH_QUICK'] === '1';
const N = Number(process.env['BENCH_QUERY_ENTRIES'] ?? (quick ? 100_000 : 1_000_000));
const BATCH = 500;
const CHUNK = 20; // batches built and appended at a time, to keep memory bounded
const ROUNDS = quick ? 200 : 300;
const SAMPLE = 2_000;
const LIMIT = 50;
/** Time budget per query and store, in ms: a slow query stops early and says how many rounds it ran. */
const BUDGET_MS = Number(process.env['BENCH_QUERY_BUDGET_MS'] ?? 8_000);
const TENANT = 'bench';

interface Target {
  name: string;
  store: LedgerStore;
  appendMs: number;
  cleanup: () => Promise<void>;
}

// 1. The dataset: one fixture log, built in chunks and appended to every store.
const sqliteDir = mkdtempSync(join(tmpdir(), 'custody-bench-query-'));
const targets: Target[] = [];
const sqlite = new SqliteStore({ path: join(sqliteDir, 'ledger.db') });
await sqlite.migrate();
targets.push({ name: 'sqlite', store: sqlite, appendMs: 0, cleanup: async () => rmSync(sqliteDir, { recursive: true, force: true }) });
const pgEnv = await postgresTestEnv();
let pgSchema: string | undefined;
if (pgEnv.skip === false) {
  const schema = await pgEnv.freshSchema();
  pgSchema = schema;
  const pgStore = new PostgresStore({ connectionString: pgEnv.url, schema });
  await pgStore.migrate();
  targets.push({ name: 'postgres', store: pgStore, appendMs: 0, cleanup: () => pgEnv.dropSchema(schema) });
}

const log = new FixtureLog({ tenant: TENANT });
const batches = Math.ceil(N / BATCH);
let buildMs = 0;
let entryBytes = 0;
const tAll = performance.now();
for (let c = 0; c < batches; c += CHUNK) {
  const tb = performance.now();
  const chunk = [];
  for (let i = c; i < Math.min(batches, c + CHUNK); i++) {
    chunk.push(log.append(bulkDrafts(BATCH, { seed: i + 1, crowd: 1000, start: new Date(Date.UTC(2026, 0, 1) + i * 60_000) })));
  }
  buildMs += performance.now() - tb;
  for (const b of chunk) for (const e of b.entries) entryBytes += e.entry.length;
  for (const t of targets) {
    const ta = performance.now();
    for (const b of chunk) await t.store.append(b, b.head.size - b.entries.length);
    t.appendMs += performance.now() - ta;
  }
  if ((c / CHUNK) % 20 === 0) process.stdout.write(`  built and appended ${fmt(log.size)} entries (${fmt((performance.now() - tAll) / 1000)} s)\n`);
}
const size = log.size;
const totalMs = performance.now() - tAll;

// 1a. PostgreSQL as autovacuum keeps a table in steady state: visibility map set (so the
// identity and time indexes answer index-only) and planner statistics current. Right
// after a bulk load neither holds yet, and which queries race autovacuum is luck.
let vacuumMs = 0;
if (pgEnv.skip === false && pgSchema !== undefined) {
  const client = new pg.Client({ connectionString: pgEnv.url });
  await client.connect();
  const tv = performance.now();
  await client.query(`VACUUM (ANALYZE) "${pgSchema}".entries, "${pgSchema}".principals, "${pgSchema}".sessions, "${pgSchema}".nodes`);
  vacuumMs = performance.now() - tv;
  await client.end();
  process.stdout.write(`  postgres: VACUUM (ANALYZE) ${fmt(vacuumMs / 1000, 1)} s\n`);
}

// 1b. Full-log verification: `audit` (what `custody audit` runs) over each store, against
// bare SHA-256 of the same entry bytes read back from the same store (the baseline).
const audits = new Map<string, { auditMs: number; hashMs: number }>();
const AUDIT = process.env['BENCH_AUDIT'] !== '0';
for (const t of AUDIT ? targets : []) {
  const th = performance.now();
  for (let from = 0; from < size; from += 2_000) {
    const rows = await t.store.getEntries(TENANT, Array.from({ length: Math.min(2_000, size - from) }, (_, k) => from + k));
    for (const r of rows) createHash('sha256').update(r.entry).digest();
  }
  const hashMs = performance.now() - th;
  const ta = performance.now();
  const report = await audit(t.store, { tenants: [TENANT], verifierKey: () => log.signer.verifierText });
  const auditMs = performance.now() - ta;
  if (!report.ok) throw new Error(`audit failed on ${t.name}: ${JSON.stringify(report.first)}`);
  audits.set(t.name, { auditMs, hashMs });
  process.stdout.write(`  ${t.name} audit: ${fmt(auditMs / 1000, 1)} s (${fmt(size / (auditMs / 1000))} entries/s); read + bare hash ${fmt(hashMs / 1000, 1)} s\n`);
}

// 2. Parameters drawn from values that exist: a random sample of entries read back.
const rnd = mulberry32(42);
const randIndex = () => Math.floor(rnd() * size);
const sample: StoredEntry[] = await sqlite.getEntries(TENANT, Array.from({ length: SAMPLE }, randIndex));
const uniq = <T>(xs: (T | undefined)[]) => [...new Set(xs.filter((x): x is T => x !== undefined))];
const pool = {
  initiator: uniq(sample.map((e) => e.initiatorId)),
  agent: uniq(sample.filter((e) => e.actorId.startsWith('agent:')).map((e) => e.actorId)),
  approver: uniq(sample.flatMap((e) => e.principals.filter((p) => p.role === 'approver').map((p) => p.id))),
  workload: uniq(sample.flatMap((e) => e.principals.filter((p) => p.role === 'workload').map((p) => p.id))),
  tool: uniq(sample.map((e) => e.toolName)),
  decision: uniq(sample.map((e) => e.decision)),
  session: uniq(sample.map((e) => e.sessionId)),
  agentTool: sample.filter((e) => e.toolName !== undefined && e.actorId.startsWith('agent:')).map((e) => [e.actorId, e.toolName!] as const),
  time: sample.map((e) => new Date(e.time).getTime()),
};
for (const [k, v] of Object.entries(pool)) if (v.length === 0) throw new Error(`no ${k} values in the sample`);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

/** One query: makes the parameters (untimed), then returns the timed call; `targetMs` is its p99 target (default 50). */
type Query = { name: string; prepare: (store: LedgerStore) => Promise<() => Promise<unknown>>; targetMs?: number };
/** The Ledger facade over each store, for the reports (they build rows from the stores' selections). */
const ledgers = new Map<LedgerStore, Ledger>();
const ledgerOf = async (store: LedgerStore): Promise<Ledger> => {
  let l = ledgers.get(store);
  if (l === undefined) {
    // The log key and origin the fixture log signed its checkpoints with: the store pins them.
    l = await Ledger.open({ store, logSeed: FIXTURE_SEED, originHost: 'test.custody' });
    ledgers.set(store, l);
  }
  return l;
};
/** A report, timed through the Ledger facade (selection, entries read back, rows built). */
const reportQuery = (name: string, call: (l: Ledger) => () => Promise<unknown>): Query => ({
  name: `report: ${name}`,
  targetMs: 1000,
  prepare: async (store) => call(await ledgerOf(store)),
});
const hourWindow = () => {
  const t = pick(pool.time) - 30 * 60_000;
  return { since: new Date(t).toISOString(), until: new Date(t + 3_600_000).toISOString() };
};
const filterQuery = (name: string, f: () => EntryFilter): Query => ({
  name,
  prepare: async (store) => {
    const filter = f();
    return () => store.queryEntries(TENANT, filter, { limit: LIMIT });
  },
});
const queries: Query[] = [
  { name: 'point read by index (baseline): `getEntries(tenant, [i])`', prepare: async (store) => { const i = randIndex(); return () => store.getEntries(TENANT, [i]); } },
  filterQuery('entries by initiator', () => ({ initiator: pick(pool.initiator) })),
  filterQuery('entries by agent', () => ({ agent: pick(pool.agent) })),
  filterQuery('entries by approver', () => ({ approver: pick(pool.approver) })),
  filterQuery('entries by workload', () => ({ workload: pick(pool.workload) })),
  filterQuery('entries by tool', () => ({ tool: pick(pool.tool) })),
  filterQuery('entries by decision', () => ({ decision: pick(pool.decision) })),
  filterQuery('entries by type family `tool.*`', () => ({ type: 'tool.*' })),
  filterQuery('entries in a 1-hour time range', () => {
    const t = pick(pool.time) - 30 * 60_000;
    return { since: new Date(t).toISOString(), until: new Date(t + 3_600_000).toISOString() };
  }),
  filterQuery('entries by agent + tool', () => {
    const [agent, tool] = pick(pool.agentTool);
    return { agent, tool };
  }),
  {
    name: 'entries by agent, page 3 via cursor',
    prepare: async (store) => {
      const filter = { agent: pick(pool.agent) };
      let cursor: string | undefined;
      for (let p = 0; p < 2; p++) cursor = (await store.queryEntries(TENANT, filter, { limit: LIMIT, ...(cursor ? { cursor } : {}) })).nextCursor;
      return () => store.queryEntries(TENANT, filter, { limit: LIMIT, ...(cursor ? { cursor } : {}) });
    },
  },
  { name: 'session timeline: `sessionEntries`', prepare: async (store) => { const s = pick(pool.session); return () => store.sessionEntries(TENANT, s); } },
  {
    name: 'sessions by initiator: `listSessions`',
    prepare: async (store) => {
      const initiator = pick(pool.initiator);
      return () => store.listSessions(TENANT, { initiator }, { limit: LIMIT });
    },
  },
  {
    name: 'inclusion proof node set: `getNodes`',
    prepare: async (store) => {
      const ids = inclusionProofNodes(randIndex(), size);
      return () => store.getNodes(TENANT, ids);
    },
  },
  reportQuery('`unapproved-calls`, newest page', (l) => () => l.unapprovedCalls(TENANT, { limit: LIMIT })),
  reportQuery('`unapproved-calls` in a 1-hour window', (l) => {
    const w = hourWindow();
    return () => l.unapprovedCalls(TENANT, { ...w, limit: LIMIT });
  }),
  reportQuery('`denied-calls` (deny decisions + out-of-scope calls)', (l) => () => l.deniedCalls(TENANT, { limit: LIMIT })),
  reportQuery('`acted-after-end` (none: walks every session end)', (l) => () => l.actedAfterEnd(TENANT, { limit: LIMIT })),
  reportQuery('`deep-delegation` depth 2 (none)', (l) => () => l.deepDelegation(TENANT, { depth: 2, limit: LIMIT })),
  reportQuery('`deep-delegation` depth 1 (dense)', (l) => () => l.deepDelegation(TENANT, { depth: 1, limit: LIMIT })),
  reportQuery('`principal-activity` of an agent', (l) => {
    const principal = pick(pool.agent);
    return () => l.principalActivity(TENANT, { principal });
  }),
  reportQuery('`principal-activity` of an initiator, 1-hour window', (l) => {
    const principal = pick(pool.initiator);
    const w = hourWindow();
    return () => l.principalActivity(TENANT, { principal, ...w });
  }),
  reportQuery('`top-principals` over the whole log', (l) => () => l.topPrincipals(TENANT, { limit: 20 })),
  reportQuery('`compliance` (owasp-agentic) over the whole log: every measure and gap, bundle hashes of the examples', (l) => () => complianceReport(l, TENANT, { framework: 'owasp-agentic' })),
];

type Result = { p50: number; p99: number; rounds: number };
async function measure(store: LedgerStore, q: Query): Promise<Result> {
  for (let w = 0; w < 3; w++) await (await q.prepare(store))();
  const lat: number[] = [];
  const start = performance.now();
  for (let r = 0; r < ROUNDS && performance.now() - start < BUDGET_MS; r++) {
    const run = await q.prepare(store);
    const t = performance.now();
    await run();
    lat.push(performance.now() - t);
  }
  return { p50: percentile(lat, 50), p99: percentile(lat, 99), rounds: lat.length };
}

// 3. Every query on every store; the point read first, as the baseline.
const results = new Map<string, Result[]>();
for (const t of targets) {
  const rs: Result[] = [];
  for (const q of queries) {
    const r = await measure(t.store, q);
    rs.push(r);
    process.stdout.write(`  ${t.name} ${q.name}: p50 ${fmt(r.p50, 2)} ms, p99 ${fmt(r.p99, 2)} ms (${r.rounds} rounds)\n`);
  }
  results.set(t.name, rs);
}
for (const t of targets) {
  await (ledgers.get(t.store)?.close() ?? t.store.close());
  await t.cleanup();
}

const cell = (store: string, i: number): [string, string] => {
  const rs = results.get(store);
  if (rs === undefined) return ['—', ''];
  const r = rs[i]!;
  return [`${fmt(r.p50, 2)} / ${fmt(r.p99, 2)} ms${r.rounds < ROUNDS ? ` (only ${r.rounds} rounds: time budget)` : ''}`, i === 0 ? '1×' : `${fmt(r.p99 / rs[0]!.p99, 1)}×`];
};
const verdict = (i: number) => {
  if (i === 0) return '';
  const target = queries[i]!.targetMs ?? 50;
  const label = target >= 1000 ? `< ${target / 1000} s p99` : `≤ ${target} ms p99`;
  const p99s = [...results.values()].map((rs) => rs[i]!.p99);
  return p99s.every((p) => p <= target) ? `${label}: met` : `${label}: **missed**`;
};
const rows = queries.map((q, i) => [q.name, ...cell('sqlite', i), ...cell('postgres', i), verdict(i)]);
const appendLine = targets
  .map((t) => `${t.name === 'sqlite' ? 'SQLite' : 'PostgreSQL'} ${fmt(t.appendMs / 1000, 1)} s (${fmt(size / (t.appendMs / 1000))} entries/s)`)
  .join('; ');

const auditLines = targets
  .filter((t) => audits.has(t.name))
  .map((t) => {
    const a = audits.get(t.name)!;
    return `| ${t.name === 'sqlite' ? 'SQLite' : 'PostgreSQL'} | ${fmt(a.auditMs / 1000, 1)} s | ${fmt(size / (a.auditMs / 1000))} entries/s | ${fmt(size / (a.hashMs / 1000))} entries/s | ${fmt(a.auditMs / a.hashMs, 1)}× |`;
  })
  .join('\n');
const section = N === 1_000_000 ? 'query' : `query-${N >= 1_000_000 ? `${N / 1_000_000}m` : `${N / 1_000}k`}`;
const body = `## Queries: session timeline and identity queries on ${fmt(size)} entries (\`bench/query\`${N === 1_000_000 ? '' : `, BENCH_QUERY_ENTRIES=${N}`})

Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}${quick ? ' — QUICK run (BENCH_QUICK=1), smaller log' : ''}.
Settings: **${fmt(size)} entries** (${fmt(entryBytes / size)} bytes on average) in one tenant log, from the fixture generator of \`@custody/ledger/testing\` (1,000 people, 200 agents, 50 tools, 50 approvers; ${fmt(batches)} sealed batches of ${BATCH}, built ${CHUNK} batches at a time and appended to each store through \`LedgerStore.append\`); a fresh SQLite file (WAL, \`synchronous=FULL\`) and a fresh PostgreSQL 15 schema on loopback${pgEnv.skip === false ? `, vacuumed and analysed after the load as autovacuum keeps a table in steady state (\`VACUUM (ANALYZE)\`, ${fmt(vacuumMs / 1000, 1)} s)` : ` — PostgreSQL not measured: ${String(pgEnv.skip)}`}.
Building the dataset: ${fmt(totalMs / 1000, 1)} s in all; sealing ${fmt(buildMs / 1000, 1)} s; appending ${appendLine}.
Each query runs ${ROUNDS} times after 3 warm-up calls (or fewer when it exhausts a budget of ${fmt(BUDGET_MS / 1000)} s per query and store; the table says so), each time with fresh random parameters drawn from values that exist (a random sample of ${fmt(SAMPLE)} entries read back), one call at a time; \`queryEntries\` and \`listSessions\` ask for a page of ${LIMIT}, newest first; page 3 times only the third call (pages 1 and 2 fetched untimed). Reports run through the \`Ledger\` facade (the store's selection, the selected entries read back and decoded, rows built; a page of ${LIMIT} rows) on the same data: the fixture has no scoped chains, no activity after a session's end and no chain deeper than 2 hops: acted-after-end walks every session end, its worst case, while out-of-scope calls and deep delegation, decided when each entry is written, walk only their matches. The baseline is a primary-key point read of one random entry on the same store in the same run; "vs point read" is the query's p99 over the point read's p99. Peak RSS ${fmt(peakRssMiB())} MiB.

| query | SQLite p50 / p99 | vs point read | PostgreSQL p50 / p99 | vs point read | ${N === 1_000_000 ? 'target' : 'target (set for 1M entries)'} |
| --- | --- | --- | --- | --- | --- |
${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}

${AUDIT ? '' : '<!-- '}Full-log verification (\`custody audit\`: every entry re-hashed and re-decoded, the tree rebuilt and checked against every stored node, every checkpoint's signature and every session chain), against the baseline of reading the same entries back and hashing each once with bare SHA-256:

| store | audit | rate | baseline (read + bare hash) | audit vs baseline |
| --- | --- | --- | --- | --- |
${auditLines}${AUDIT ? '' : ' -->\nFull-log verification is measured in the 1,000,000-entry section (BENCH_AUDIT=0 here: it is linear in the log size).'}
`;
writeSection(section, body);
process.stdout.write(body + '\n');
