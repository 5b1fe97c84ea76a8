/**
 * Tool calls against a real Custody server (SQLite; PostgreSQL when reachable)
 * and its example policies: `proceed` never bypasses an approval (H3), options are
 * checked (M1, L1), a tool that ran keeps its own result or error (M5), and an
 * approval wait ends on abort and on revocation (M7), and a streaming AI SDK tool
 * stays a stream under the real `generateText` (M6).
 */
import { generateText, stepCountIs, tool } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';

import { backends, faultyFetch, startCustody, type TestCustody } from '../test-support/custody-server.js';
import { Custody, type CustodyOptions } from './client.js';
import { AbortedError, ApprovalTimeoutError, ConfigError, LedgerUnavailableError, RevokedError } from './errors.js';
import { custodyTools } from './integrations/ai-sdk.js';
import { recordRun } from './integrations/openai-agents.js';
import { Runner } from '@openai/agents';
import { MemorySpool } from './spool-store.js';

const stores = await backends();
const TRANSFER = { amount: 250_000, currency: 'EUR', to: 'DE89370400440532013000' }; // needs a human (transfer-needs-approval)

/** Answers the session's first pending approval once it appears. */
async function answerWhenPending(server: TestCustody, session: string, decision: 'approve' | 'deny'): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const [id] = await server.pendingApprovals(session);
    if (id !== undefined) {
      expect(await server.answer(id, decision)).toBe(200);
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no approval appeared');
}

describe.each(stores)('tool calls on $name', ({ name, skip }) => {
  let server: TestCustody;
  beforeAll(async () => {
    if (skip === false) server = await startCustody(name);
  });
  afterAll(async () => {
    await server?.close();
  });
  const client = (opts: Partial<CustodyOptions> = {}) => new Custody({ url: server.url, apiKey: server.ingest, otel: false, ...opts });
  const open = async (custody: Custody, scope = 'files.read_file payments.transfer') => custody.openSession({ ...(await server.tokens()), scope, objective: 'pay the invoice' });

  it.skipIf(skip)('H3: under proceed, an outage during the approval wait fails the call (ApprovalTimeoutError); it never runs without the approval', async () => {
    let down = false;
    const custody = client({
      toolsWhenUnavailable: 'proceed',
      approvalTimeoutMs: 2_500,
      requestTimeoutMs: 1_000,
      fetch: faultyFetch((url) => (down && (url.includes('/v1/approvals/') || url.endsWith('/v1/decisions') || url.endsWith('/v1/events')) ? 'unavailable' : 'forward')),
    });
    const session = await open(custody);
    let ran = false;
    const transfer = session.tool('payments.transfer', () => (ran = true));
    const call = transfer(TRANSFER);
    // The decision point answers approval_required; then Custody goes away while a human decides.
    for (let i = 0; i < 100 && (await server.pendingApprovals(session.id)).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    down = true;
    await expect(call).rejects.toBeInstanceOf(ApprovalTimeoutError);
    expect(ran).toBe(false);
    down = false;
    const types = (await server.events(session.id)).map((e) => e.event.type);
    expect(types).not.toContain('tool.completed');
    await custody.flush(5_000);
    expect((await server.events(session.id)).some((e) => e.event.type === 'tool.requested' && e.event.data?.['decision'] === 'unavailable')).toBe(false);
    await session.close();
    await custody.close();
  });

  it.skipIf(skip)('H3: under proceed, an outage of the second decision after a human approved fails the call (LedgerUnavailableError)', async () => {
    let decisions = 0;
    const custody = client({
      toolsWhenUnavailable: 'proceed',
      approvalTimeoutMs: 10_000,
      fetch: faultyFetch((url) => (url.endsWith('/v1/decisions') && ++decisions >= 2 ? 'unavailable' : 'forward')),
    });
    const session = await open(custody);
    let ran = false;
    const approver = answerWhenPending(server, session.id, 'approve');
    await expect(session.tool('payments.transfer', () => (ran = true))(TRANSFER)).rejects.toBeInstanceOf(LedgerUnavailableError);
    await approver;
    expect(ran).toBe(false);
    await session.close();
    await custody.close();
  });

  it.skipIf(skip)('H3: proceed still runs a call when no decision could be obtained at all', async () => {
    const custody = client({ toolsWhenUnavailable: 'proceed', fetch: faultyFetch((url) => (url.endsWith('/v1/decisions') ? 'unavailable' : 'forward')) });
    const session = await open(custody);
    expect(await session.tool('files.read_file', () => 'ran undecided')({ path: 'a.txt' })).toBe('ran undecided');
    await session.close();
    await custody.close();
  });

  it.skipIf(skip)('M1: a wrong option throws ConfigError naming it; an unknown fail mode never proceeds', async () => {
    const base = { url: server.url, apiKey: server.ingest };
    const bad: [Record<string, unknown>, string][] = [
      [{ ...base, toolsWhenUnavailable: 'fail_closed' }, 'toolsWhenUnavailable'],
      [{ ...base, requestTimeoutMs: -1 }, 'requestTimeoutMs'],
      [{ ...base, requestTimeoutMs: Number.NaN }, 'requestTimeoutMs'],
      [{ ...base, approvalTimeoutMs: 'x' }, 'approvalTimeoutMs'],
      [{ ...base, url: 'http://' }, 'url'],
      [{ ...base, toolServer: 'a b' }, 'toolServer'],
      [{ ...base, delivery: { batchSize: Number.NaN } }, 'delivery.batchSize'],
      [{ ...base, delivery: { initialBackoffMs: Infinity } }, 'delivery.initialBackoffMs'],
      [{ ...base, spool: {} }, 'spool'],
      [{ ...base, apiKey: '' }, 'apiKey'],
    ];
    for (const [opts, option] of bad) {
      let err: unknown;
      try {
        new Custody(opts as unknown as CustodyOptions);
      } catch (e) {
        err = e;
      }
      expect(err, option).toBeInstanceOf(ConfigError);
      expect(err, option).toMatchObject({ code: 'SDK_CONFIG_INVALID', option });
    }
    expect(() => new (Custody as unknown as new () => Custody)()).toThrow(expect.objectContaining({ code: 'SDK_CONFIG_INVALID' }));

    const custody = client();
    const session = await open(custody);
    let ran = false;
    await expect(session.callTool('files.read_file', { path: 'a' }, () => (ran = true), { whenUnavailable: 'fail_closed' as never })).rejects.toMatchObject({ code: 'SDK_CONFIG_INVALID', option: 'callTool.whenUnavailable' });
    expect(() => session.tool('files.read_file', () => 1, { approvalTimeoutMs: -5 })).toThrow(expect.objectContaining({ option: 'tool.approvalTimeoutMs' }));
    // A mode that got past the checks (mutated at run time) fails closed: Custody unreachable, the call does not run.
    const dead = new Custody({ url: 'http://127.0.0.1:9', apiKey: server.ingest, otel: false, requestTimeoutMs: 500 });
    (dead.options as { toolsWhenUnavailable: string }).toolsWhenUnavailable = 'fail_closed';
    const resumed = await dead.resume(session.credential);
    await expect(resumed.tool('files.read_file', () => (ran = true))({ path: 'a' })).rejects.toBeInstanceOf(LedgerUnavailableError);
    expect(ran).toBe(false);
    await dead.close();
    await session.close();
    await custody.close();
  });

  it.skipIf(skip)('L1: openSession, delegate and resume refuse wrong types with ConfigError naming the option', async () => {
    const custody = client();
    const t = await server.tokens();
    const cases: [unknown, string][] = [
      [{ ...t, scope: undefined, objective: 'x' }, 'openSession.scope'],
      [{ ...t, scope: 5, objective: 'x' }, 'openSession.scope'],
      [{ ...t, scope: { a: 1 }, objective: 'x' }, 'openSession.scope'],
      [{ ...t, scope: [], objective: 'x' }, 'openSession.scope'],
      [{ ...t, scope: 'files.read_file', objective: undefined }, 'openSession.objective'],
      [{ ...t, scope: 'files.read_file', objective: { text: 'x' } }, 'openSession.objective'],
      [{ ...t, actorToken: undefined, scope: 'files.read_file', objective: 'x' }, 'openSession.actorToken'],
      [{ ...t, scope: 'files.read_file', objective: 'x', lifetimeSeconds: 1.5 }, 'openSession.lifetimeSeconds'],
      [undefined, 'openSession'],
    ];
    for (const [opts, option] of cases) await expect(custody.openSession(opts as never), option).rejects.toMatchObject({ code: 'SDK_CONFIG_INVALID', option });
    const session = await open(custody);
    await expect((session.delegate as (o?: unknown) => Promise<unknown>)()).rejects.toMatchObject({ code: 'SDK_CONFIG_INVALID', option: 'delegate' });
    await expect(session.delegate({ actorToken: t.actorToken, scope: 7 as never })).rejects.toMatchObject({ option: 'delegate.scope' });
    await expect(custody.resume('abc')).rejects.toMatchObject({ code: 'SDK_CONFIG_INVALID', option: 'resume.credential' });
    await expect(session.record({ type: undefined as never })).rejects.toMatchObject({ option: 'record.type' });
    // Nothing was recorded for the refused calls: the authority has only this one session for the subject.
    expect((await server.events(session.id)).map((e) => e.event.type)).toEqual(['session.opened', 'credential.issued']);
    await session.close();
    await custody.close();
  });

  it.skipIf(skip)("M5: a tool's own error and result reach the caller; lone surrogates are recorded as U+FFFD; an outcome that cannot be recorded is reported, not thrown", async () => {
    const errors: Error[] = [];
    let eventsDown = false;
    const custody = client({
      spool: new MemorySpool({ maxEvents: 1 }),
      delivery: { onError: (e) => errors.push(e), initialBackoffMs: 10, maxBackoffMs: 20 },
      fetch: faultyFetch((url, init) => (eventsDown && url.endsWith('/v1/events') && init?.method === 'POST' ? 'unavailable' : 'forward')),
    });
    const session = await open(custody);
    const own = new Error(`${'a'.repeat(3999)}😀 and more`);
    await expect(session.tool('files.read_file', () => Promise.reject(own))({ path: 'a.txt' })).rejects.toBe(own);
    const torn = '😀😀😀'.slice(0, 5);
    expect(await session.tool('files.read_file', () => torn)({ path: 'b.txt' })).toBe(torn);
    const events = await server.events(session.id);
    const failed = events.find((e) => e.event.type === 'tool.failed')!;
    const message = (failed.event.data!['error'] as { message: string }).message;
    expect(message).toHaveLength(3999);
    expect(message.endsWith('a')).toBe(true);
    const completed = events.find((e) => e.event.type === 'tool.completed')!;
    expect(completed.event.data!['result']).toBe('😀😀\uFFFD');

    // The outcome cannot be recorded at all (ledger away, the spool full): the caller still gets the result.
    const result = await session.tool('files.read_file', async () => {
      eventsDown = true;
      expect((await session.modelOutput('fills the one-event spool')).spooled).toBe(true);
      return 'the file';
    })({ path: 'c.txt' });
    expect(result).toBe('the file');
    expect(errors.find((e) => (e as { code?: string }).code === 'SDK_OUTCOME_UNRECORDED')).toMatchObject({ cause: { code: 'SDK_SPOOL_FULL' } });
    eventsDown = false;
    await custody.flush(5_000);
    await session.close();
    await custody.close();
  });

  it.skipIf(skip)("M7: the caller's abort ends an approval wait (AbortedError), also through the AI SDK's abortSignal; the call never runs", async () => {
    const custody = client({ approvalTimeoutMs: 60_000 });
    const session = await open(custody);
    let ran = false;
    const ac = new AbortController();
    const started = Date.now();
    setTimeout(() => ac.abort(), 500);
    await expect(session.callTool('payments.transfer', TRANSFER, () => (ran = true), { signal: ac.signal })).rejects.toBeInstanceOf(AbortedError);
    expect(Date.now() - started).toBeLessThan(5_000);
    // A human approving afterwards runs nothing.
    const [pending] = await server.pendingApprovals(session.id);
    expect(await server.answer(pending!, 'approve')).toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    expect(ran).toBe(false);

    const tools = custodyTools(session, { transfer: { description: 'moves money', inputSchema: {} as never, execute: () => (ran = true) } } as never, { server: 'payments' }) as unknown as {
      transfer: { execute: (input: unknown, options: { toolCallId: string; messages: unknown[]; abortSignal?: AbortSignal }) => Promise<unknown> };
    };
    const ai = new AbortController();
    setTimeout(() => ai.abort(), 300);
    await expect(tools.transfer.execute(TRANSFER, { toolCallId: 'call-1', messages: [], abortSignal: ai.signal })).rejects.toMatchObject({ code: 'SDK_ABORTED' });
    expect(ran).toBe(false);
    await session.close();
    await custody.close();
  });

  it.skipIf(skip)('M7: revoking an ancestor ends a child session’s approval wait with RevokedError, long before approvalTimeoutMs', async () => {
    const custody = client({ approvalTimeoutMs: 120_000 });
    const root = await open(custody);
    const child = await root.delegate({ actorToken: (await server.tokens('alice@example.com', 'agent:helper')).actorToken, scope: 'payments.transfer' });
    let ran = false;
    const started = Date.now();
    const call = child.tool('payments.transfer', () => (ran = true))(TRANSFER);
    for (let i = 0; i < 100 && (await server.pendingApprovals(child.id)).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await server.revoke(root.id)).toBe(200);
    await expect(call).rejects.toBeInstanceOf(RevokedError);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(ran).toBe(false);
    await custody.close();
  });

  it.skipIf(skip)('M6: a streaming AI SDK tool (async *execute) works under the real generateText; tool.completed records its last value when the stream ends, tool.failed its error', async () => {
    const custody = client();
    const session = await open(custody);
    const usage = { inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 }, outputTokens: { total: 1, text: 1, reasoning: 0 } };
    const ran: string[] = [];
    const tools = custodyTools(
      session,
      {
        read_file: tool({
          description: 'reads a file, reporting progress',
          inputSchema: z.object({ path: z.string() }),
          async *execute({ path }) {
            ran.push(`start ${path}`);
            yield { status: 'reading' };
            await new Promise((r) => setTimeout(r, 50));
            if (path === 'broken.txt') throw new Error(`disk error while reading ${path}`);
            ran.push(`end ${path}`);
            yield { status: 'done', content: `hello from ${path}` };
          },
        }),
      },
      { server: 'files' },
    );
    const run = async (path: string) => {
      let step = 0;
      const model = new MockLanguageModelV3({
        doGenerate: async () =>
          ++step === 1
            ? { content: [{ type: 'tool-call', toolCallId: `call-${path}`, toolName: 'read_file', input: JSON.stringify({ path }) }], finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage, warnings: [] }
            : { content: [{ type: 'text', text: 'done' }], finishReason: { unified: 'stop', raw: 'stop' }, usage, warnings: [] },
      });
      return generateText({ model, tools, prompt: 'read', stopWhen: stepCountIs(3) });
    };

    const ok = await run('a.txt');
    const results = ok.steps[0]!.content.filter((c) => c.type === 'tool-result');
    expect(results.map((c) => (c as { output: unknown }).output)).toEqual([{ status: 'done', content: 'hello from a.txt' }]);
    const broken = await run('broken.txt');
    const errors = broken.steps[0]!.content.filter((c) => c.type === 'tool-error');
    expect(errors.map((c) => String((c as { error: unknown }).error))).toEqual(['Error: disk error while reading broken.txt']);
    expect(ran).toEqual(['start a.txt', 'end a.txt', 'start broken.txt']);

    const events = (await server.events(session.id)).filter((e) => e.event.tool !== undefined).map((e) => ({ type: e.event.type, data: e.event.data }));
    expect(events.map((e) => e.type)).toEqual(['tool.requested', 'policy.decided', 'tool.completed', 'tool.requested', 'policy.decided', 'tool.failed']);
    expect(events[2]!.data).toMatchObject({ result: { status: 'done', content: 'hello from a.txt' }, chunks: 2 });
    expect(events[5]!.data).toMatchObject({ error: { message: 'disk error while reading broken.txt' }, chunks: 1 });

    // A reader that stops early: the tool did not finish, and the trail says so.
    const stream = session.callToolStream('files.read_file', { path: 'c.txt' }, async function* () {
      yield 1;
      yield 2;
    });
    for await (const v of stream) if (v === 1) break;
    const last = (await server.events(session.id)).at(-1)!.event;
    expect(last).toMatchObject({ type: 'tool.failed', data: { cancelled: true, chunks: 1 } });
    // Denied: the stream throws DeniedError at its first read, and the tool's code never runs.
    let deniedRan = false;
    const denied = session.callToolStream('files.read_file', { path: '.env' }, async function* () {
      deniedRan = true;
      yield 'secret';
    });
    await expect(denied.next()).rejects.toMatchObject({ code: 'SDK_DENIED' });
    expect(deniedRan).toBe(false);
    // A stream through plain callTool is handed back unread: the record says it was a stream
    // (data.stream: true) and records no result, not the {} a generator's JSON would be.
    const unread = await session.callTool('files.read_file', { path: 'd.txt' }, async function* () {
      yield 'part';
    });
    expect(await unread.next()).toEqual({ value: 'part', done: false });
    const completed = (await server.events(session.id)).at(-1)!.event;
    expect(completed).toMatchObject({ type: 'tool.completed', data: { stream: true } });
    expect(completed.data).not.toHaveProperty('result');
    await session.close();
    await custody.close();
  });

  it.skipIf(skip)('L3: handoff() of a revoked session refuses with RevokedError; recordRun reports what it cannot record to delivery.onError', async () => {
    const errors: Error[] = [];
    const custody = client({ delivery: { onError: (e) => errors.push(e) } });
    const session = await open(custody);
    expect(await server.revoke(session.id)).toBe(200);
    await expect(session.handoff({ to: 'agent:summariser' })).rejects.toBeInstanceOf(RevokedError);
    expect((await server.events(session.id)).some((e) => e.event.type === 'session.delegated')).toBe(false);
    // A real Runner's agent_handoff hook, for the revoked session: the failure is reported, not swallowed.
    const runner = new Runner();
    const stop = recordRun(session, runner);
    runner.emit('agent_handoff', {} as never, { name: 'triage' } as never, { name: 'refunds' } as never);
    for (let i = 0; i < 100 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    stop();
    expect(errors).toEqual([expect.objectContaining({ code: 'SDK_REVOKED' })]);
    await custody.close();
  });
});
