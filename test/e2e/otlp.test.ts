/**
 * OTLP/HTTP import end to end: an agent instrumented with the real OpenTelemetry
 * SDK exports GenAI spans (invoke_agent, chat, execute_tool) with the real OTLP
 * exporters (JSON and protobuf) to `custody up`, while @custody/sdk records the
 * same work with the active span's trace context. The spans appear in the
 * session's timeline beside the verified entries, marked as imported.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPTraceExporter as HttpExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { Custody } from '@custody/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { api, custody as cli, type Server, startServer } from './custody-process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

interface View {
  event: { id: string; type: string; trace?: { traceId: string; spanId: string }; actor: { id: string; verified?: boolean }; tool?: { name: string }; data?: Record<string, unknown> };
}

let dir: string;
let server: Server;
let key: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-e2e-otlp-'));
  server = await startServer(['--data', dir, '--dev-issuer', '--policies', join(root, 'examples/policies')]);
  key = readFileSync(join(dir, 'admin.key'), 'utf8').trim();
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
});
afterAll(async () => {
  context.disable();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function agentRun(exporter: SpanExporter, objective: string) {
  const provider = new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'refunds-agent' }), spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer('e2e-agent', '1.0.0');
  const t = JSON.parse(cli(['dev-tokens', '--data', dir, '--human', 'alice@example.com', '--agent', 'agent:refunds', '--json']).stdout) as { subject_token: string; actor_token: string };
  const custody = new Custody({ url: server.url, apiKey: key });
  const { session, traceId } = await tracer.startActiveSpan('invoke_agent refunds', { attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'refunds', 'gen_ai.provider.name': 'openai' } }, async (agentSpan) => {
    const s = await custody.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.*', objective });
    await s.prompt('what does the invoice say?');
    await tracer.startActiveSpan('chat test-model', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'test-model', 'gen_ai.input.messages': '[{"role":"user","parts":[{"type":"text","content":"what does the invoice say?"}]}]', 'gen_ai.usage.input_tokens': 12, 'gen_ai.usage.output_tokens': 7 } }, async (span) => {
      await s.modelOutput('call files.read_file');
      span.end();
    });
    await tracer.startActiveSpan('execute_tool files.read_file', { attributes: { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'files.read_file', 'gen_ai.tool.call.id': 'call-1', 'gen_ai.tool.call.arguments': '{"path":"invoice.txt"}' } }, async (span) => {
      await s.tool('files.read_file', () => '2500.00 EUR', { capture: 'full' })({ path: 'invoice.txt' });
      span.end();
    });
    tracer.startSpan('GET /not-genai').end(); // an ordinary span: skipped
    agentSpan.end();
    return { session: s, traceId: agentSpan.spanContext().traceId };
  });
  await provider.forceFlush();
  await session.close();
  await provider.shutdown();
  await custody.close();
  return { session, traceId };
}

async function timeline(id: string) {
  return (await (await api(server.url, key, `/v1/sessions/${id}/timeline`)).json()) as { events: View[]; external?: View[] };
}

describe('POST /v1/traces', () => {
  it.each([
    ['OTLP/HTTP JSON', (url: string) => new HttpExporter({ url, headers: { authorization: `Bearer ${key}` } })],
    ['OTLP/HTTP protobuf', (url: string) => new ProtoExporter({ url, headers: { authorization: `Bearer ${key}` } })],
    ['OTLP/HTTP protobuf, gzip', (url: string) => new ProtoExporter({ url, headers: { authorization: `Bearer ${key}` }, compression: 'gzip' as never })],
  ])('puts GenAI spans from the real %s exporter in the session timeline, as imported evidence', async (_name, make) => {
    const { session, traceId } = await agentRun(make(`${server.url}/v1/traces`), `otlp ${_name}`);
    const tl = await timeline(session.id);
    // The SDK's events carry the active span's trace: the same trace as the exported spans.
    const sdkEvents = tl.events.filter((e) => e.event.type === 'prompt.received' || e.event.type === 'model.output' || e.event.type === 'tool.completed');
    expect(sdkEvents.length).toBe(3);
    for (const e of sdkEvents) expect(e.event.trace?.traceId).toBe(traceId);
    const external = tl.external ?? [];
    expect(external.map((e) => e.event.type).sort()).toEqual(['external.otel.agent_invoked', 'external.otel.model_called', 'external.otel.tool_executed']);
    for (const e of external) {
      expect(e.event.trace?.traceId).toBe(traceId);
      expect(e.event.data).toMatchObject({ source: 'otlp', assurance: 'imported' });
      expect(e.event.actor.verified).toBe(false);
    }
    const chat = external.find((e) => e.event.type === 'external.otel.model_called')!;
    expect(chat.event.data).toMatchObject({ operation: 'chat', model: 'test-model', usage: { inputTokens: 12, outputTokens: 7 }, resource: { 'service.name': 'refunds-agent' } });
    expect(String(chat.event.data!['prompt'])).toContain('invoice');
    const tool = external.find((e) => e.event.type === 'external.otel.tool_executed')!;
    expect(tool.event.tool).toMatchObject({ name: 'files.read_file', callId: 'call-1' });
    // The span's own ids are kept: the chat span's span id is the model.output event's span id.
    expect(chat.event.trace?.spanId).toBe(tl.events.find((e) => e.event.type === 'model.output')!.event.trace?.spanId);
  });

  it('treats a retried export as duplicates, refuses garbage with OTLP_INVALID, and needs an ingest key', async () => {
    const span = { traceId: '5b8efff798038103d269b633813fc60c', spanId: 'eee19b7ec3c1b174', name: 'chat m', kind: 3, startTimeUnixNano: '1763800000000000000', endTimeUnixNano: '1763800001000000000', attributes: [{ key: 'gen_ai.operation.name', value: { stringValue: 'chat' } }] };
    const body = JSON.stringify({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'svc' } }] }, scopeSpans: [{ scope: { name: 's' }, spans: [span, { ...span, spanId: '0000000000000000' }] }] }] });
    const first = await api(server.url, key, '/v1/traces', { method: 'POST', body });
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ partialSuccess: { rejectedSpans: 1 } });
    const count = async () => ((await (await api(server.url, key, '/v1/events?trace=5b8efff798038103d269b633813fc60c')).json()) as { events: unknown[] }).events.length;
    expect(await count()).toBe(1);
    expect((await api(server.url, key, '/v1/traces', { method: 'POST', body })).status).toBe(200);
    expect(await count()).toBe(1);
    const garbage = await api(server.url, key, '/v1/traces', { method: 'POST', body: new Uint8Array([0xff, 0xff, 0xff, 0x0f]), headers: { 'content-type': 'application/x-protobuf' } });
    expect(garbage.status).toBe(400);
    expect(await garbage.json()).toMatchObject({ error: { code: 'OTLP_INVALID' } });
    expect((await fetch(`${server.url}/v1/traces`, { method: 'POST', body, headers: { 'content-type': 'application/json' } })).status).toBe(401);
  });

  it('takes Content-Encoding: gzip, and refuses broken gzip (400) and other encodings (415)', async () => {
    const span = { traceId: '6c8efff798038103d269b633813fc60d', spanId: 'fee19b7ec3c1b175', name: 'chat m', kind: 3, startTimeUnixNano: '1763800000000000000', endTimeUnixNano: '1763800001000000000', attributes: [{ key: 'gen_ai.operation.name', value: { stringValue: 'chat' } }] };
    const body = JSON.stringify({ resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ scope: { name: 's' }, spans: [span] }] }] });
    const gz = await api(server.url, key, '/v1/traces', { method: 'POST', body: gzipSync(body), headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    expect(gz.status).toBe(200);
    expect(((await (await api(server.url, key, '/v1/events?trace=6c8efff798038103d269b633813fc60d')).json()) as { events: unknown[] }).events).toHaveLength(1);
    const broken = await api(server.url, key, '/v1/traces', { method: 'POST', body: gzipSync(body).subarray(0, 20), headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    expect(broken.status).toBe(400);
    expect(await broken.json()).toMatchObject({ error: { code: 'OTLP_INVALID' } });
    const br = await api(server.url, key, '/v1/traces', { method: 'POST', body, headers: { 'content-type': 'application/json', 'content-encoding': 'br' } });
    expect(br.status).toBe(415);
    expect(await br.json()).toMatchObject({ error: { code: 'MEDIA_TYPE_UNSUPPORTED' } });
  });
});
