/**
 * `session.handoff()` end to end against `custody up`: a producer agent hands a
 * narrowed task through a "queue" (a JSON message) to a consumer agent of
 * another identity, which continues in a delegated child session by token
 * exchange at the real authority; both sides of the handoff and the authority's
 * delegation are in the ledger, linked by cause and trace, and visible in the
 * timelines. Also: same-session continuation, refusals, and the OpenAI Agents
 * SDK integration recording an in-run handoff.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Custody, DeniedError, handoffFingerprint, parseHandoff, RevokedError, SdkError } from '@custody/sdk';
import { recordRun } from '@custody/sdk/openai-agents';
import { Agent, type Model, type ModelRequest, type ModelResponse, Runner, Usage } from '@openai/agents';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { api, custody as cli, type Server, startServer } from './custody-process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

interface View {
  event: { id: string; type: string; cause?: string; session?: { id: string; parent?: string }; actor: { id: string }; trace?: { traceId: string }; data?: Record<string, unknown> };
}

let dir: string;
let server: Server;
let key: string;

function tokens(agent: string) {
  return JSON.parse(cli(['dev-tokens', '--data', dir, '--human', 'alice@example.com', '--agent', agent, '--json']).stdout) as { subject_token: string; actor_token: string };
}
async function timeline(id: string) {
  return (await (await api(server.url, key, `/v1/sessions/${id}/timeline`)).json()) as { events: View[] };
}
const handoffOf = (v: View) => v.event.data?.['handoff'] as Record<string, unknown> | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-e2e-handoff-'));
  server = await startServer(['--data', dir, '--dev-issuer', '--policies', join(root, 'examples/policies')]);
  key = readFileSync(join(dir, 'admin.key'), 'utf8').trim();
});
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('session.handoff() across a queue', () => {
  it('hands a narrowed task to another agent, which continues in a delegated child session', async () => {
    const producerClient = new Custody({ url: server.url, apiKey: key, otel: false });
    const p = tokens('agent:planner');
    const producer = await producerClient.openSession({ subjectToken: p.subject_token, actorToken: p.actor_token, scope: 'files.read_file payments.transfer', objective: 'close the March books' });
    await producer.prompt('close the March books');
    const h = await producer.handoff({ scope: 'files.read_file', objective: 'summarise invoice 1234', to: 'agent:summariser', data: { queue: 'summaries' } });
    expect(h.context).toMatch(/^chf1\.[A-Za-z0-9_-]+$/);
    expect(h.traceparent).toMatch(new RegExp(`^00-${producer.traceId}-[0-9a-f]{16}-01$`));
    const message = JSON.stringify({ body: { invoice: 1234 }, headers: { 'custody-handoff': h.context, traceparent: h.traceparent } });

    // The consumer: another process, another agent identity, the same tenant.
    const consumerClient = new Custody({ url: server.url, apiKey: key, otel: false });
    const c = tokens('agent:summariser');
    const received = JSON.parse(message) as { headers: Record<string, string> };
    const child = await consumerClient.continueHandoff(received.headers['custody-handoff']!, { actorToken: c.actor_token });
    expect(child.parent).toBe(producer.id);
    expect(child.scope).toEqual(['files.read_file']);
    expect(child.actor.id).toBe('agent:summariser');
    expect(child.initiator.id).toBe('alice@example.com');
    expect(child.traceId).toBe(producer.traceId);
    expect(child.chain.map((l) => l.principal.id)).toEqual(['alice@example.com', 'agent:planner', 'agent:summariser']);
    expect(await child.tool('files.read_file', () => 'invoice 1234: 2500.00 EUR')({ path: 'invoice-1234.txt' })).toBe('invoice 1234: 2500.00 EUR');
    await expect(child.tool('payments.transfer', () => 'sent')({ amount: 1, currency: 'EUR' })).rejects.toBeInstanceOf(DeniedError);

    // The producer's chain: the offer, then the authority's delegation to the child.
    const pt = await timeline(producer.id);
    const offered = pt.events.find((e) => handoffOf(e)?.['stage'] === 'offered')!;
    expect(offered.event).toMatchObject({ id: h.id, type: 'session.delegated', trace: { traceId: producer.traceId } });
    expect(handoffOf(offered)).toEqual({ stage: 'offered', id: h.id, scope: ['files.read_file'], objective: 'summarise invoice 1234', to: 'agent:summariser', expiresAt: h.expiresAt, context: handoffFingerprint(h.context), queue: 'summaries' });
    const delegated = pt.events.find((e) => e.event.type === 'session.delegated' && e.event.data?.['child'] === child.id);
    expect(delegated, JSON.stringify(pt.events.map((e) => e.event.type))).toBeDefined();

    // The child's chain: the authority's opening, then the acceptance caused by the offer.
    const ct = await timeline(child.id);
    expect(ct.events.map((e) => e.event.type)).toEqual(['session.delegated', 'credential.issued', 'session.delegated', 'tool.requested', 'policy.decided', 'tool.completed', 'tool.requested', 'policy.decided']);
    expect(ct.events[0]!.event.session).toMatchObject({ id: child.id, parent: producer.id });
    const accepted = ct.events[2]!;
    expect(accepted.event).toMatchObject({ cause: h.id, actor: { id: 'agent:summariser' }, trace: { traceId: producer.traceId } });
    expect(handoffOf(accepted)).toEqual({ stage: 'accepted', id: h.id, from: producer.id, mode: 'delegated', scope: ['files.read_file'], to: 'agent:summariser' });

    const shown = cli(['timeline', '--url', server.url, '--api-key', key, child.id]);
    expect(shown.stdout).toContain(`handoff ${h.id} accepted from ${producer.id} (delegated)`);
    expect(cli(['timeline', '--url', server.url, '--api-key', key, producer.id]).stdout).toContain(`handoff ${h.id} offered to agent:summariser`);

    await child.close();
    await producer.close();
    // After the producer's session ended, its handoff contexts are dead.
    await expect(consumerClient.continueHandoff(h.context, { actorToken: c.actor_token })).rejects.toBeInstanceOf(RevokedError);
    await producerClient.close();
    await consumerClient.close();
  });

  it('continues in the same session when nothing was narrowed and no actor token is given', async () => {
    const client = new Custody({ url: server.url, apiKey: key, otel: false });
    const t = tokens('agent:planner');
    const s = await client.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.read_file files.write_file', objective: 'index the archive' });
    const h = await s.handoff({ data: { queue: 'index-shards' } });
    const worker = new Custody({ url: server.url, apiKey: key, otel: false });
    const same = await worker.continueHandoff(h.context);
    expect(same.id).toBe(s.id);
    await same.record({ type: 'model.output', data: { output: 'shard 1 indexed' } });
    const events = (await timeline(s.id)).events;
    const accepted = events.find((e) => handoffOf(e)?.['stage'] === 'accepted')!;
    expect(handoffOf(accepted)).toMatchObject({ id: h.id, from: s.id, mode: 'same-session' });
    expect(accepted.event.cause).toBe(h.id);
    expect(events[events.length - 1]!.event.cause).toBe(accepted.event.id);
    // A narrowed handoff cannot be continued in the same session.
    const narrowed = await s.handoff({ scope: 'files.read_file', objective: 'narrower task' });
    await expect(worker.continueHandoff(narrowed.context)).rejects.toMatchObject({ code: 'SDK_HANDOFF_INVALID' });
    await s.close();
    await client.close();
    await worker.close();
  });

  it('narrows a server wildcard to one of its tools in a handoff, which the consumer continues delegated', async () => {
    const client = new Custody({ url: server.url, apiKey: key, otel: false });
    const t = tokens('agent:planner');
    const s = await client.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.*', objective: 'read one file' });
    const h = await s.handoff({ scope: 'files.read_file' });
    const worker = new Custody({ url: server.url, apiKey: key, otel: false });
    // One token for one: still narrower, so not the same session.
    await expect(worker.continueHandoff(h.context)).rejects.toMatchObject({ code: 'SDK_HANDOFF_INVALID' });
    const child = await worker.continueHandoff(h.context, { actorToken: tokens('agent:reader').actor_token });
    expect(child.scope).toEqual(['files.read_file']);
    await expect(s.handoff({ scope: 'payments.transfer' })).rejects.toMatchObject({ code: 'SDK_HANDOFF_INVALID' });
    await child.close();
    await s.close();
    await client.close();
    await worker.close();
  });

  it('refuses malformed, tampered, widened and expired handoffs', async () => {
    const client = new Custody({ url: server.url, apiKey: key, otel: false });
    const t = tokens('agent:planner');
    const s = await client.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.read_file payments.transfer', objective: 'refusals' });
    await expect(s.handoff({ scope: 'admin.everything' })).rejects.toMatchObject({ code: 'SDK_HANDOFF_INVALID' });
    const h = await s.handoff({ scope: 'files.read_file' });
    const c = tokens('agent:summariser');
    for (const bad of ['nope', 'chf1.!!!', `chf1.${Buffer.from('{"id":1}').toString('base64url')}`]) {
      await expect(client.continueHandoff(bad, { actorToken: c.actor_token })).rejects.toMatchObject({ code: 'SDK_HANDOFF_INVALID' });
    }
    // A context whose session does not match its credential.
    const forged = `chf1.${Buffer.from(JSON.stringify({ ...parseHandoff(h.context), session: 'ses-other', trace: undefined })).toString('base64url')}`;
    await expect(client.continueHandoff(forged, { actorToken: c.actor_token })).rejects.toThrow(/credential is for/);
    // Asking more than was handed off.
    await expect(client.continueHandoff(h.context, { actorToken: c.actor_token, scope: 'payments.transfer' })).rejects.toMatchObject({ code: 'SDK_HANDOFF_INVALID' });
    const short = await s.handoff({ scope: 'files.read_file', lifetimeSeconds: 1 });
    await new Promise((r) => setTimeout(r, 1100));
    const expired = client.continueHandoff(short.context, { actorToken: c.actor_token });
    await expect(expired).rejects.toBeInstanceOf(SdkError);
    await expect(expired).rejects.toThrow(/expired/);
    await s.close();
    await client.close();
  });
});

/** A scripted model: the triage agent hands off to the clerk, which answers. */
class HandoffModel implements Model {
  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    const usage = new Usage({ requests: 1, inputTokens: 5, outputTokens: 5, totalTokens: 10 });
    if (request.handoffs.length > 0) return { usage, output: [{ type: 'function_call', callId: 'call-h1', name: 'transfer_to_clerk', arguments: '{}', status: 'completed' }] };
    return { usage, output: [{ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'filed.' }] }] };
  }
  // eslint-disable-next-line require-yield
  async *getStreamedResponse(): AsyncIterable<never> {
    throw new Error('the scripted model does not stream');
  }
}

describe('the OpenAI Agents SDK integration', () => {
  it('records an in-run handoff between agents with session.handoff()', async () => {
    const client = new Custody({ url: server.url, apiKey: key, otel: false });
    const t = tokens('agent:triage');
    const session = await client.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.read_file', objective: 'file the request' });
    const clerk = new Agent({ name: 'clerk', instructions: 'File requests.', model: new HandoffModel() });
    const triage = new Agent({ name: 'triage', instructions: 'Route requests.', model: new HandoffModel(), handoffs: [clerk] });
    const runner = new Runner({ tracingDisabled: true });
    const stop = recordRun(session, runner);
    const result = await runner.run(triage, 'please file this');
    stop();
    expect(String(result.finalOutput)).toBe('filed.');
    await client.flush();
    await new Promise((r) => setTimeout(r, 200));
    const events = (await timeline(session.id)).events;
    const offered = events.find((e) => handoffOf(e)?.['stage'] === 'offered');
    expect(offered && handoffOf(offered)).toMatchObject({ to: 'clerk', from: 'triage', framework: 'openai-agents', inProcess: true });
    expect(events.some((e) => e.event.type === 'model.output' && e.event.data?.['agent'] === 'clerk')).toBe(true);
    await session.close();
    await client.close();
  });
});
