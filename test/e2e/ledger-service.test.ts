/**
 * The ledger service end to end, as shipped: `custody up` from a fresh data
 * folder takes thousands of events across sessions and tenants; every exported
 * bundle, receipt and consistency proof verifies with the independent Go
 * verifier; steady single-event writes let the WAL start over; SIGKILL during
 * ingest loses no acknowledged event; one changed
 * stored byte makes `custody audit` fail at that index; two servers on one
 * PostgreSQL produce one consistent log.
 */
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { postgresTestEnv } from '../../packages/ledger/src/testing/postgres-test-env.js';
import { walRestarts } from '../../packages/ledger/src/testing/sqlite-test-env.js';
import { api, custody, goVerify, hasGo, type Server, startServer } from './custody-process.js';

const needGo = () => {
  if (!hasGo && process.env['CI'] === 'true') throw new Error('Go is required in CI: apt-get install golang-go golang-golang-x-mod-dev');
  return hasGo;
};

function event(session: string, type: string, i: number, extra: Record<string, unknown> = {}) {
  return {
    type,
    session: { id: session, ...(type === 'session.opened' ? { objective: `task ${session}` } : {}) },
    initiator: { type: 'human', id: `user${i % 3}@example.com` },
    actor: { type: 'agent', id: `agent-${i % 4}` },
    ...(type.startsWith('tool.') || type === 'policy.decided' ? { tool: { name: ['orders.lookup', 'refunds.create'][i % 2] } } : {}),
    ...(type === 'policy.decided' ? { decision: { effect: 'allow', policyVersion: 'v1', policies: ['p1'], reasons: ['ok'] } } : {}),
    ...extra,
  };
}

/** Events for `sessions` sessions of `steps` steps each, closed, interleaved. */
function workload(prefix: string, sessions: number, steps: number) {
  const out: Record<string, unknown>[] = [];
  for (let s = 0; s < sessions; s++) out.push(event(`${prefix}-${s}`, 'session.opened', s));
  for (let k = 0; k < steps; k++) {
    for (let s = 0; s < sessions; s++) {
      const type = ['tool.requested', 'policy.decided', 'tool.completed'][k % 3]!;
      out.push(event(`${prefix}-${s}`, type, s + k, type === 'tool.completed' ? { data: { result: { ok: true, k } } } : { data: { arguments: { k } } }));
    }
  }
  for (let s = 0; s < sessions; s++) out.push(event(`${prefix}-${s}`, 'session.closed', s));
  return out;
}

async function post(url: string, key: string, events: unknown[]) {
  const res = await api(url, key, '/v1/events', { method: 'POST', body: JSON.stringify(events) });
  const body = (await res.json()) as { results?: { id: string; index: number }[]; error?: unknown };
  if (!res.ok && res.status !== 207) throw new Error(`append failed: ${res.status} ${JSON.stringify(body)}`);
  return body.results!;
}

describe('custody up on SQLite', () => {
  const data = mkdtempSync(join(tmpdir(), 'custody-e2e-'));
  let server: Server;
  let admin: string;
  let acme: string;

  beforeAll(async () => {
    const created = custody(['keys', 'create', '--direct', '--data', data, '--origin-host', 'custody.e2e', '--tenant', 'acme', '--role', 'admin', '--json']);
    expect(created.code, created.stderr).toBe(0);
    acme = (JSON.parse(created.stdout) as { key: string }).key;
    server = await startServer(['--data', data, '--origin-host', 'custody.e2e']);
    admin = readFileSync(join(data, 'admin.key'), 'utf8').trim();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('creates its secrets with mode 0600 on first start', () => {
    expect(statSync(join(data, 'admin.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(data, 'log.key')).mode & 0o777).toBe(0o600);
    expect(server.output()).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/);
  });

  it('takes thousands of events across sessions and tenants; bundles, receipts and proofs verify independently', async () => {
    const go = needGo();
    const before = await (await api(server.url, admin, '/v1/log/checkpoint')).text();
    const defaults = workload('d', 40, 30);
    const acmes = workload('a', 25, 30);
    for (let i = 0; i < defaults.length; i += 500) await post(server.url, admin, defaults.slice(i, i + 500));
    for (let i = 0; i < acmes.length; i += 250) await post(server.url, acme, acmes.slice(i, i + 250));
    const total = defaults.length + acmes.length;
    expect(total).toBeGreaterThan(2000);

    const keyD = await (await api(server.url, admin, '/v1/log/key')).text();
    const keyA = await (await api(server.url, acme, '/v1/log/key')).text();
    expect(keyD).not.toBe(keyA);
    const dir = mkdtempSync(join(tmpdir(), 'custody-e2e-out-'));
    for (const [session, key, vkey] of [['d-7', admin, keyD], ['a-3', acme, keyA]] as const) {
      const file = join(dir, `${session}.json`);
      const ex = custody(['export', '--session', session, '-o', file, '--url', server.url, '--api-key', key]);
      expect(ex.code, ex.stderr).toBe(0);
      const v = custody(['verify', file, '--key', vkey]);
      expect(v.code, v.stdout).toBe(0);
      expect(v.stdout).toMatch(/^✔ OK: 32 records/);
      if (go) {
        const g = goVerify(['bundle', file, vkey.trim()]);
        expect(g.code, g.output).toBe(0);
        // Every receipt of the bundle, fetched on its own.
        const bundle = JSON.parse(readFileSync(file, 'utf8')) as { records: { entry: string; proof: string }[] };
        for (const rec of bundle.records.slice(0, 5)) {
          const index = /^index (\d+)$/m.exec(rec.proof)![1]!;
          const receipt = await (await api(server.url, key, `/v1/log/proof/inclusion?index=${index}`)).text();
          writeFileSync(join(dir, 'entry'), rec.entry);
          writeFileSync(join(dir, 'proof'), receipt);
          const r = goVerify(['receipt', join(dir, 'entry'), join(dir, 'proof'), vkey.trim()]);
          expect(r.code, r.output).toBe(0);
        }
      }
    }
    // Consistency between the checkpoint before ingest and now, and between two earlier sizes.
    if (go) {
      const beforeSize = Number(before.split('\n')[1]);
      for (const [from, to] of [[beforeSize, undefined], [100, 1200]] as const) {
        const old = await (await api(server.url, admin, `/v1/log/checkpoint?size=${from}`)).text();
        const neu = await (await api(server.url, admin, `/v1/log/checkpoint${to ? `?size=${to}` : ''}`)).text();
        const proof = await (await api(server.url, admin, `/v1/log/proof/consistency?from=${from}${to ? `&to=${to}` : ''}`)).text();
        writeFileSync(join(dir, 'old'), old);
        writeFileSync(join(dir, 'new'), neu);
        writeFileSync(join(dir, 'proof.json'), proof);
        const r = goVerify(['consistency', keyD.trim(), join(dir, 'old'), join(dir, 'new'), join(dir, 'proof.json')]);
        expect(r.code, r.output).toBe(0);
      }
    }
  });

  it('keeps its WAL starting over while single events keep coming', async () => {
    // The WAL header's checkpoint sequence number goes up by one each time the WAL starts
    // over. Before the store finished the checkpointer's passes, steady writes never let
    // it: 10 s at 1,000 events/s left a 643 MiB WAL (now 64 MiB, 30 restarts).
    const restarts = () => walRestarts(join(data, 'ledger.db'));
    const first = restarts();
    const until = performance.now() + 2_000;
    let n = 0;
    // Eight clients, each sending its next event as soon as the last is acknowledged.
    const client = async (c: number) => {
      while (performance.now() < until) {
        const [r] = await post(server.url, admin, [event(`wal-${c}`, 'tool.requested', n, { data: { arguments: { n } } })]);
        expect(r!.index).toBeGreaterThan(0);
        n++;
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, c) => client(c)));
    expect(n).toBeGreaterThan(100);
    expect(restarts()).toBeGreaterThanOrEqual(first + 3);
  });

  it('loses no acknowledged event when killed with SIGKILL during ingest, and audits clean after', async () => {
    const dataK = mkdtempSync(join(tmpdir(), 'custody-e2e-kill-'));
    let s = await startServer(['--data', dataK, '--origin-host', 'custody.e2e']);
    const key = readFileSync(join(dataK, 'admin.key'), 'utf8').trim();
    const acked: string[] = [];
    for (let round = 0; round < 3; round++) {
      const stop = Date.now() + 400 + round * 200;
      const clients = Array.from({ length: 4 }, async (_, c) => {
        for (let i = 0; Date.now() < stop; i++) {
          const batch = Array.from({ length: 20 }, (_, j) => ({ id: crypto.randomUUID(), ...event(`k${round}-${c}-${i % 5}`, 'tool.requested', j) }));
          try {
            const res = await api(s.url, key, '/v1/events', { method: 'POST', body: JSON.stringify(batch) });
            if (res.ok) acked.push(...batch.map((e) => e.id));
          } catch {
            return; // the server is gone
          }
        }
      });
      setTimeout(() => void s.kill(), 300 + round * 150);
      await Promise.all(clients);
      await s.kill();
      s = await startServer(['--data', dataK, '--origin-host', 'custody.e2e']);
    }
    expect(acked.length).toBeGreaterThan(100);
    const db = new Database(join(dataK, 'ledger.db'), { readonly: true });
    const rows = db.prepare('SELECT id FROM entries').all() as { id: string }[];
    db.close();
    const stored = new Set(rows.map((r) => r.id));
    expect(acked.filter((id) => !stored.has(id))).toEqual([]);
    await s.stop();
    const a = custody(['audit', '--data', dataK]);
    expect(a.code, a.stdout + a.stderr).toBe(0);
  });

  it('fails custody audit at the index of one changed stored byte', async () => {
    const dataT = mkdtempSync(join(tmpdir(), 'custody-e2e-tamper-'));
    const s = await startServer(['--data', dataT, '--origin-host', 'custody.e2e']);
    const key = readFileSync(join(dataT, 'admin.key'), 'utf8').trim();
    await post(s.url, key, workload('t', 5, 20));
    await s.stop();
    expect(custody(['audit', '--data', dataT]).code).toBe(0);
    const db = new Database(join(dataT, 'ledger.db'));
    const row = db.prepare("SELECT entry FROM entries WHERE tenant = 'default' AND idx = 57").get() as { entry: Buffer };
    const bytes = Buffer.from(row.entry);
    bytes[40] = bytes[40]! ^ 0x01;
    db.prepare("UPDATE entries SET entry = ? WHERE tenant = 'default' AND idx = 57").run(bytes);
    db.close();
    const a = custody(['audit', '--data', dataT]);
    expect(a.code).toBe(1);
    expect(a.stdout).toContain('index 57');
  });
});

describe('custody up and custody gateway that cannot start', () => {
  it('exit at once with a code naming the problem, whatever step failed, and leave nothing running', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'custody-e2e-badstart-'));
    const busy = await startServer(['--data', join(dir, 'busy')]);
    const port = new URL(busy.url).port;
    try {
      const cases: [string[], RegExp][] = [
        [['--port', port], /already in use.*\[PORT_IN_USE\]/],
        [['--policies', join(dir, 'no-such-folder')], /\[POLICY_DIR_UNREADABLE\]/],
        [['--approval-ttl', '0'], /\[FLAG_INVALID\]/],
        [['--import-mapping', join(dir, 'no-such-mapping.yaml')], /\[IMPORT_MAPPING_INVALID\]/],
        [['--postgres', 'postgres://nobody@127.0.0.1:1/none'], /unreachable.*\[STORE_UNAVAILABLE\]/],
      ];
      for (const [args, message] of cases) {
        const t = performance.now();
        const r = custody(['up', '--data', join(dir, 'data'), ...(args[0] === '--port' ? [] : ['--port', '0']), ...args]);
        expect(r.stderr, args.join(' ')).toMatch(message);
        expect(r.code, args.join(' ')).toBeGreaterThan(0);
        expect(r.code, args.join(' ')).toBeLessThan(70);
        // It exits by itself: nothing it opened keeps it alive (the limit is far above a normal exit).
        expect(performance.now() - t, args.join(' ')).toBeLessThan(15_000);
      }
      const config = join(dir, 'gateway.json');
      writeFileSync(
        config,
        JSON.stringify({
          ledger: { url: busy.url, apiKey: 'x' },
          listen: { host: '127.0.0.1', port: Number(port) },
          policies: fileURLToPath(new URL('../../examples/policies', import.meta.url)),
          upstreams: { files: { command: process.execPath, args: [fileURLToPath(new URL('../../examples/gateway/upstream-server.mjs', import.meta.url)), 'files'] } },
        }),
      );
      const g = custody(['gateway', '--config', config]);
      expect(g.stderr).toMatch(/already in use.*\[PORT_IN_USE\]/);
      expect(g.code).toBe(2);
    } finally {
      await busy.stop();
    }
  });
});

const pg = await postgresTestEnv();

describe('two custody up on one PostgreSQL', () => {
  it.skipIf(pg.skip)('produce one consistent log', async () => {
    const schema = await pg.freshSchema();
    const seedDir = mkdtempSync(join(tmpdir(), 'custody-e2e-pg-'));
    const env = { CUSTODY_POSTGRES_URL: pg.url, CUSTODY_POSTGRES_SCHEMA: schema };
    const a = await startServer(['--data', seedDir, '--origin-host', 'custody.e2e'], env);
    const key = readFileSync(join(seedDir, 'admin.key'), 'utf8').trim();
    const b = await startServer(['--data', mkdtempSync(join(tmpdir(), 'custody-e2e-pg-')), '--origin-host', 'custody.e2e', '--log-key', join(seedDir, 'log.key')], env);
    try {
      const w = workload('pg', 10, 12);
      const closes = w.slice(-10);
      const body = w.slice(0, -10);
      // Sessions' events may interleave across the two servers; the seals go last.
      await Promise.all(
        Array.from({ length: 8 }, async (_, c) => {
          for (let i = c * 20; i < body.length; i += 160) await post(c % 2 ? a.url : b.url, key, body.slice(i, i + 20));
        }),
      );
      await Promise.all([post(a.url, key, closes.slice(0, 5)), post(b.url, key, closes.slice(5))]);
      const ca = await (await api(a.url, key, '/v1/log/checkpoint')).text();
      const cb = await (await api(b.url, key, '/v1/log/checkpoint')).text();
      expect(ca).toBe(cb);
      expect(Number(ca.split('\n')[1])).toBe(w.length + 1);
    } finally {
      await a.stop();
      await b.stop();
    }
    const audit = custody(['audit', '--data', seedDir], env);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    await pg.dropSchema(schema);
  });
});
