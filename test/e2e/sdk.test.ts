/**
 * @custody/sdk end to end against a real `custody up --dev-issuer --policies`
 * process: a session by token exchange, prompts and outputs, tool calls allowed,
 * denied and approved by a human, a failing tool, delegation, the seal, an
 * exported bundle that verifies offline, and revocation. Then the spool: the
 * ledger SIGKILLed mid-run and restarted delivers every spooled event exactly
 * once; an agent SIGKILLed mid-spool loses nothing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { verifyBundle } from '@custody/core';
import { Custody, DeniedError, LedgerUnavailableError, RevokedError } from '@custody/sdk';
import { FileSpool } from '@custody/sdk/spool';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { api, custody as cli, type Server, startServer } from './custody-process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const policies = join(root, 'examples/policies');

interface View {
  index: number;
  event: { id: string; type: string; cause?: string; session?: { seq: number }; tool?: { name: string }; trace?: { traceId: string }; data?: Record<string, unknown> };
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function devTokens(dir: string, human: string, agent: string) {
  const r = cli(['dev-tokens', '--data', dir, '--human', human, '--agent', agent, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { subject_token: string; actor_token: string };
}

async function timeline(url: string, key: string, id: string): Promise<View[]> {
  const res = await api(url, key, `/v1/sessions/${id}/timeline`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { events: View[] }).events;
}

async function bundleOk(url: string, key: string, id: string) {
  const bundle = (await (await api(url, key, `/v1/sessions/${id}/bundle`)).json()) as unknown;
  const report = verifyBundle(bundle);
  expect(report.ok, JSON.stringify(report.failures)).toBe(true);
  return report;
}

describe('@custody/sdk against custody up', () => {
  let dir: string;
  let server: Server;
  let key: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'custody-e2e-sdk-'));
    server = await startServer(['--data', dir, '--dev-issuer', '--policies', policies]);
    key = readFileSync(join(dir, 'admin.key'), 'utf8').trim();
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('records a full session (prompt, output, allowed, denied, approved and failing calls, delegation, seal) that verifies offline', async () => {
    const custody = new Custody({ url: server.url, apiKey: key, approvalTimeoutMs: 20_000 });
    const t = devTokens(dir, 'alice@example.com', 'agent:refunds');
    const session = await custody.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.* payments.*', objective: 'pay the March invoice' });
    expect(session.id).toMatch(/^ses-/);
    expect(session.actor).toMatchObject({ type: 'agent', id: 'agent:refunds' });

    const prompt = await session.prompt('pay invoice 2026-03 from the files, key sk-live-0123456789abcdef0123456789');
    expect(prompt).toMatchObject({ spooled: false, duplicate: false });
    await session.modelOutput({ text: 'I will read the invoice, then transfer.' }, { model: 'test-model' });

    const read = session.tool('files.read_file', ({ path }: { path: string }) => `invoice at ${path}: 2500.00 EUR`);
    expect(await read({ path: 'invoices/2026-03.txt' })).toBe('invoice at invoices/2026-03.txt: 2500.00 EUR');
    await expect(read({ path: 'prod.env' })).rejects.toMatchObject({ code: 'SDK_DENIED', tool: 'files.read_file' });
    await expect(read({ path: 'prod.env' })).rejects.toBeInstanceOf(DeniedError);

    // A transfer above 1,000.00 waits for a human; an approver answers from another "terminal".
    const transfer = session.tool('payments.transfer', (a: { amount: number; currency: string }) => ({ ok: true, amount: a.amount }));
    const approver = (async () => {
      for (let i = 0; i < 100; i++) {
        const list = (await (await api(server.url, key, `/v1/approvals?status=pending&session=${session.id}`)).json()) as { approvals: { id: string }[] };
        if (list.approvals.length > 0) {
          const res = await api(server.url, key, `/v1/approvals/${list.approvals[0]!.id}`, { method: 'POST', body: JSON.stringify({ decision: 'approve', reason: 'invoice checked' }) });
          expect(res.status, await res.clone().text()).toBe(200);
          return;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('no approval appeared');
    })();
    expect(await transfer({ amount: 250_000, currency: 'EUR' })).toEqual({ ok: true, amount: 250_000 });
    await approver;

    const broken = session.tool('files.read_file', () => {
      throw new Error('disk on fire');
    });
    await expect(broken({ path: 'a.txt' })).rejects.toThrow('disk on fire');

    const sub = devTokens(dir, 'alice@example.com', 'agent:lookup');
    const child = await session.delegate({ actorToken: sub.actor_token, scope: 'files.*', objective: 'look up the invoice' });
    expect(child.parent).toBe(session.id);
    const childRead = child.tool('files.read_file', () => 'ok');
    expect(await childRead({ path: 'x.txt' })).toBe('ok');
    await expect(child.tool('payments.transfer', () => 'no')({ amount: 1, currency: 'EUR' })).rejects.toMatchObject({ code: 'SDK_DENIED' });
    expect(await child.close()).toMatchObject({ sealed: true });
    expect(await session.close({ reason: 'done' })).toMatchObject({ sealed: true });

    const events = await timeline(server.url, key, session.id);
    const types = events.map((e) => e.event.type);
    for (const type of ['session.opened', 'prompt.received', 'model.output', 'tool.requested', 'policy.decided', 'approval.requested', 'approval.granted', 'tool.completed', 'tool.failed', 'session.delegated', 'session.closed']) {
      expect(types, type).toContain(type);
    }
    // tool.completed / tool.failed name their call (tool.requested) as cause; SDK events carry the session's trace.
    const byId = new Map(events.map((e) => [e.event.id, e.event]));
    for (const e of events.filter((x) => x.event.type === 'tool.completed' || x.event.type === 'tool.failed')) {
      expect(byId.get(e.event.cause!)?.type).toBe('tool.requested');
      expect(e.event.trace?.traceId).toBe(session.traceId);
    }
    // The server-written decision entries join the session's trace (traceparent) and name what led to the call.
    for (const e of events.filter((x) => x.event.type === 'tool.requested' || x.event.type === 'policy.decided')) {
      expect(e.event.trace?.traceId, e.event.type).toBe(session.traceId);
      expect(byId.has(e.event.cause!), `${e.event.type} names an earlier event as cause`).toBe(true);
    }
    // Secrets in the prompt were redacted before they left the agent.
    expect(JSON.stringify(events.find((e) => e.event.type === 'prompt.received')!.event.data)).not.toContain('sk-live-0123456789abcdef0123456789');
    const report = await bundleOk(server.url, key, session.id);
    expect(report.verdict).toMatch(/complete|verified/);
    await bundleOk(server.url, key, child.id);
    await custody.close();
  });

  it('raises RevokedError once the session is revoked', async () => {
    const custody = new Custody({ url: server.url, apiKey: key });
    const t = devTokens(dir, 'alice@example.com', 'agent:refunds');
    const session = await custody.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.*', objective: 'to be revoked' });
    const read = session.tool('files.read_file', () => 'ok');
    expect(await read({ path: 'a' })).toBe('ok');
    expect((await api(server.url, key, `/v1/sessions/${session.id}/revoke`, { method: 'POST', body: JSON.stringify({ reason: 'kill switch' }) })).status).toBe(200);
    await expect(read({ path: 'a' })).rejects.toBeInstanceOf(RevokedError);
    await expect(session.delegate({ actorToken: t.actor_token })).rejects.toMatchObject({ code: 'SDK_REVOKED' });
    await custody.close();
  });
});

describe('the spool', () => {
  let dir: string;
  let key: string;
  let port: number;
  let server: Server | undefined;
  const start = async () => {
    server = await startServer(['--data', dir, '--dev-issuer', '--policies', policies, '--port', String(port)]);
    return server;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'custody-e2e-spool-'));
    port = await freePort();
    await start();
    key = readFileSync(join(dir, 'admin.key'), 'utf8').trim();
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('delivers every event spooled while the ledger was killed, exactly once and in order, after it restarts', async () => {
    const spoolDir = join(dir, 'spool-a');
    const url = server!.url;
    const custody = new Custody({ url, apiKey: key, spool: new FileSpool({ dir: spoolDir }), requestTimeoutMs: 2000, delivery: { initialBackoffMs: 50, maxBackoffMs: 500 } });
    const t = devTokens(dir, 'alice@example.com', 'agent:refunds');
    const session = await custody.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.*', objective: 'survive an outage' });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await session.record({ type: 'model.output', data: { output: `before ${i}` } });
      expect(r.spooled).toBe(false);
      ids.push(r.id);
    }

    await server!.kill(); // SIGKILL: the ledger dies mid-run
    for (let i = 0; i < 20; i++) {
      const r = await session.record({ type: 'model.output', data: { output: `during ${i}` } });
      expect(r.spooled).toBe(true);
      ids.push(r.id);
    }
    expect(custody.pending()).toBe(20);
    // Tool calls fail closed by default while the ledger is away: the function never runs.
    let ran = false;
    await expect(session.tool('files.read_file', () => (ran = true))({ path: 'a' })).rejects.toBeInstanceOf(LedgerUnavailableError);
    expect(ran).toBe(false);
    // …unless the deployment chose to proceed: then it runs and both steps are spooled.
    expect(await session.tool('files.read_file', () => 'ran anyway', { whenUnavailable: 'proceed' })({ path: 'b' })).toBe('ran anyway');
    expect(custody.pending()).toBe(22);

    await start();
    expect(server!.url).toBe(url);
    await custody.flush(30_000);
    expect(custody.pending()).toBe(0);
    // Delivering again (as after a crash before the cursor moved) changes nothing: ids are idempotent.
    const events = await timeline(url, key, session.id);
    const recorded = events.map((e) => e.event.id);
    for (const id of ids) expect(recorded.filter((x) => x === id), id).toHaveLength(1);
    const positions = ids.map((id) => recorded.indexOf(id));
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    const proceeded = events.filter((e) => e.event.type === 'tool.requested' && e.event.data?.['decision'] === 'unavailable');
    expect(proceeded).toHaveLength(1);
    expect(events.some((e) => e.event.type === 'tool.completed' && e.event.cause === proceeded[0]!.event.id)).toBe(true);
    await session.close();
    await bundleOk(url, key, session.id);
    await custody.close();
  });

  it('loses nothing when the agent process is SIGKILLed mid-spool; the next process delivers each event once', async () => {
    const spoolDir = join(dir, 'spool-b');
    const opener = new Custody({ url: server!.url, apiKey: key });
    const t = devTokens(dir, 'alice@example.com', 'agent:refunds');
    const session = await opener.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.*', objective: 'crash mid-spool' });
    await opener.close();

    // The child writes to a ledger that is not there (a closed port), so everything goes to the spool.
    const dead = `http://127.0.0.1:${await freePort()}`;
    const writer = join(root, 'test/e2e/fixtures/sdk-spool-writer.ts');
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', writer, dead, key, spoolDir, session.credential], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise((r) => child.once('exit', r));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`writer too slow:\n${out}\n${err}`)), 45_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.split('\n').length > 40) {
          clearTimeout(timer);
          resolve();
        }
      });
      void exited.then(() => reject(new Error(`writer exited:\n${err}`)));
    });
    child.kill('SIGKILL');
    await exited;
    const acknowledged = out
      .split('\n')
      .filter((l) => l.endsWith(' spooled'))
      .map((l) => l.split(' ')[0]!);
    expect(acknowledged.length).toBeGreaterThanOrEqual(40);

    // A new process (here: this one) opens the spool — the dead owner's lock is taken over — and delivers.
    const spool = new FileSpool({ dir: spoolDir });
    expect(spool.pending()).toBeGreaterThanOrEqual(acknowledged.length);
    const custody = new Custody({ url: server!.url, apiKey: key, spool });
    await custody.flush(30_000);
    const recorded = (await timeline(server!.url, key, session.id)).map((e) => e.event.id);
    for (const id of acknowledged) expect(recorded.filter((x) => x === id), id).toHaveLength(1);
    expect(new Set(recorded).size).toBe(recorded.length);
    await custody.close();
  });
});
