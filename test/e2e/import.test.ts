/**
 * Generic import end to end: `custody up --import-mapping` with the two worked
 * examples (examples/import-langfuse, examples/import-cloudtrail), an agent
 * recording its session with @custody/sdk, and the foreign records posted to
 * POST /v1/import/:source exactly as the examples' READMEs show. The imported
 * entries are lower assurance, correlated with the session by trace id
 * (timeline) and by principal and claimed session id (queries); bad input is a
 * 4xx with a code that writes nothing; a bad mapping stops `custody up`.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Custody, type Session } from '@custody/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { api, custody as cli, type Server, startServer } from './custody-process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const example = (p: string) => join(root, 'examples', p);

interface View {
  index: number;
  event: { id: string; type: string; time: string; session?: unknown; initiator?: { id: string; verified?: boolean }; trace?: { traceId: string; spanId: string }; actor: { type: string; id: string; verified?: boolean }; tool?: { name: string; server?: string }; data?: Record<string, unknown> };
  redacted: string[];
}

let dir: string;
let server: Server;
let key: string;
let custody: Custody;

function tokens(human: string, agent: string) {
  return JSON.parse(cli(['dev-tokens', '--data', dir, '--human', human, '--agent', agent, '--json']).stdout) as { subject_token: string; actor_token: string };
}

async function open(objective: string): Promise<Session> {
  const t = tokens('alice@example.com', 'agent:refunds');
  return custody.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'payments.refund files.read_file', objective });
}

const post = (path: string, body: string, type = 'application/json') => api(server.url, key, path, { method: 'POST', body, headers: { 'content-type': type } });
const count = async () => ((await (await api(server.url, key, '/v1/events?type=external.*&limit=1000')).json()) as { events: View[] }).events.length;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-e2e-import-'));
  server = await startServer(['--data', dir, '--dev-issuer', '--import-mapping', example('import-langfuse/mapping.yaml'), '--import-mapping', `cloudtrail=${example('import-cloudtrail/mapping.yaml')}`]);
  key = readFileSync(join(dir, 'admin.key'), 'utf8').trim();
  custody = new Custody({ url: server.url, apiKey: key, otel: false });
});
afterAll(async () => {
  await custody?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('POST /v1/import/:source with the worked examples', () => {
  it('announces and lists the configured sources', async () => {
    expect(server.output()).toMatch(/import: POST \/v1\/import\/\{langfuse,cloudtrail\}/);
    const res = (await (await api(server.url, key, '/v1/import')).json()) as { sources: { source: string; mapping: string }[] };
    expect(res.sources.map((s) => s.source)).toEqual(['langfuse', 'cloudtrail']);
  });

  it('langfuse: observations of the agent\'s trace appear in its session timeline, marked imported', async () => {
    const session = await open('refund order 1234');
    await session.prompt('Refund order 1234: the parcel never arrived.');
    await session.modelOutput({ text: 'refunding' }, { model: 'gpt-4o-mini' });
    // The agent's Langfuse (OpenTelemetry) trace is the trace its Custody events carry.
    const body = readFileSync(example('import-langfuse/observations.json'), 'utf8').replaceAll('4bf92f3577b34da6a3ce929d0e0e4736', session.traceId).replaceAll('ses-example', session.id);
    const res = await post('/v1/import/langfuse', body);
    expect(res.status).toBe(201);
    const answer = (await res.json()) as { imported: number; duplicates: number; results: { id: string; type: string; recordId: string }[] };
    expect(answer).toMatchObject({ imported: 4, duplicates: 0 });
    expect(answer.results.map((r) => r.type)).toEqual(['external.langfuse.agent_invoked', 'external.langfuse.model_called', 'external.langfuse.tool_executed', 'external.langfuse.model_called']);

    const timeline = (await (await api(server.url, key, `/v1/sessions/${session.id}/timeline`)).json()) as { events: View[]; external?: View[] };
    expect(timeline.events.map((e) => e.event.type)).toEqual(['session.opened', 'credential.issued', 'prompt.received', 'model.output']);
    const external = timeline.external ?? [];
    expect(external.map((e) => e.event.id).sort()).toEqual(answer.results.map((r) => r.id).sort());
    for (const e of external) {
      expect(e.event.session).toBeUndefined();
      expect(e.event.trace?.traceId).toBe(session.traceId);
      expect(e.event.actor).toMatchObject({ type: 'agent', id: 'agent:refunds' });
      expect(e.event.actor.verified).not.toBe(true);
      expect(e.event.data).toMatchObject({ source: 'langfuse', assurance: 'imported', mapping: expect.stringMatching(/^sha256:/) });
    }
    expect(external.find((e) => e.event.type === 'external.langfuse.agent_invoked')!.event.data).toMatchObject({ session: session.id });
    const tool = external.find((e) => e.event.type === 'external.langfuse.tool_executed')!;
    expect(tool.event).toMatchObject({ tool: { name: 'payments.refund' }, trace: { spanId: 'c92e1f304b5d6e7f' }, data: { arguments: { order: '1234', amount: 42 }, result: { refund: 're_3Pq9', status: 'succeeded' } } });

    // custody timeline shows them after the causal tree, marked as lower assurance.
    const shown = cli(['timeline', '--url', server.url, '--api-key', key, session.id]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/Imported \(4\)\s+lower assurance/);
    expect(shown.stdout).toMatch(/external\.langfuse\.tool_executed\s+payments\.refund\s+by agent agent:refunds \(claimed\)\s+\[imported from langfuse\]/);

    // A re-import (an export that overlaps the last one) adds nothing.
    const again = await post('/v1/import/langfuse', body);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ imported: 0, duplicates: 4 });
    await session.close();
  });

  it('cloudtrail: records of the role session name the Custody session and its initiator', async () => {
    const session = await open('refund order 1234 (AWS)');
    await session.prompt('refund order 1234 and archive the invoice');
    // The agent assumed its role with RoleSessionName = the session id, SourceIdentity = alice.
    const body = readFileSync(example('import-cloudtrail/cloudtrail.json'), 'utf8').replaceAll('ses-0194c7e2-5b1a-7c3d-9e4f-a1b2c3d4e5f6', session.id);
    const res = await post('/v1/import/cloudtrail', body);
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ source: 'cloudtrail', imported: 3, results: [{ recordId: '3f7a9c1e-5b2d-4e8f-a0c6-1d3e5f7a9b2c' }, {}, {}] });

    const found = (await (await api(server.url, key, '/v1/events?initiator=alice%40example.com&type=external.cloudtrail.*&order=asc')).json()) as { events: View[] };
    expect(found.events.map((e) => `${e.event.type} ${e.event.tool?.server}/${e.event.tool?.name}`)).toEqual([
      'external.cloudtrail.api_call sts.amazonaws.com/AssumeRole',
      'external.cloudtrail.api_call s3.amazonaws.com/GetObject',
      'external.cloudtrail.api_call_failed s3.amazonaws.com/DeleteObject',
    ]);
    for (const e of found.events) {
      expect(e.event.initiator).toMatchObject({ type: 'human', id: 'alice@example.com' });
      expect(e.event.initiator?.verified).not.toBe(true);
      expect(e.event.actor.verified).not.toBe(true);
      expect(e.event.data).toMatchObject({ source: 'cloudtrail', assurance: 'imported', session: session.id });
    }
    expect(found.events[2]!.event).toMatchObject({ time: '2026-11-22T09:14:05.000Z', actor: { type: 'workload', id: `arn:aws:sts::123456789012:assumed-role/refunds-agent/${session.id}` }, data: { errorCode: 'AccessDenied' } });
    const byRole = (await (await api(server.url, key, `/v1/principals/${encodeURIComponent(`arn:aws:sts::123456789012:assumed-role/refunds-agent/${session.id}`)}/events`)).json()) as { events: View[] };
    expect(byRole.events).toHaveLength(2);

    // NDJSON (one record per line, as EventBridge delivers them): the same records are duplicates.
    const records = (JSON.parse(body) as { Records: unknown[] }).Records;
    const nd = await post('/v1/import/cloudtrail', records.map((r) => JSON.stringify(r)).join('\n'), 'application/x-ndjson');
    expect(await nd.json()).toMatchObject({ imported: 0, duplicates: 3 });
    await session.close();
  });

  it('refuses bad input with a 4xx and a code, and writes nothing', async () => {
    const before = await count();
    const trail = JSON.parse(readFileSync(example('import-cloudtrail/cloudtrail.json'), 'utf8')) as { Records: Record<string, unknown>[] };
    const fresh = trail.Records.map((r, i) => ({ ...r, eventID: `fresh-${i}` }));
    const cases: [string, string, string, number, string, string?][] = [
      ['/v1/import/splunk', '{}', 'application/json', 404, 'IMPORT_SOURCE_UNKNOWN'],
      ['/v1/import/cloudtrail', JSON.stringify({ Records: [fresh[0], { ...fresh[1], eventTime: 'last Tuesday' }] }), 'application/json', 400, 'IMPORT_RECORD_INVALID', 'records[1].time'],
      ['/v1/import/cloudtrail', JSON.stringify({ Records: [fresh[0], { ...fresh[1], userIdentity: {} }] }), 'application/json', 400, 'IMPORT_RECORD_INVALID', 'records[1].actor.id'],
      ['/v1/import/cloudtrail', JSON.stringify({ records: fresh }), 'application/json', 400, 'IMPORT_INVALID'],
      ['/v1/import/langfuse', JSON.stringify({ data: [{ id: 'x', traceId: 'not-a-trace', type: 'SPAN', startTime: '2026-11-22T09:00:00Z' }] }), 'application/json', 400, 'IMPORT_RECORD_INVALID', 'records[0].trace.traceId'],
      ['/v1/import/cloudtrail', '{"Records": [', 'application/json', 400, 'JSON_INVALID'],
      ['/v1/import/cloudtrail', 'eventID,eventTime', 'text/csv', 415, 'MEDIA_TYPE_UNSUPPORTED'],
    ];
    for (const [path, body, type, status, code, field] of cases) {
      const res = await post(path, body, type);
      const json = (await res.json()) as { error: { code: string; field?: string } };
      expect(res.status, `${code}: ${JSON.stringify(json)}`).toBe(status);
      expect(json.error.code).toBe(code);
      if (field !== undefined) expect(json.error.field).toBe(field);
    }
    const anon = await fetch(`${server.url}/v1/import/cloudtrail`, { method: 'POST', body: JSON.stringify(trail), headers: { 'content-type': 'application/json' } });
    expect(anon.status).toBe(401);
    expect(await count()).toBe(before);
  });

  it('a bad mapping stops custody up with IMPORT_MAPPING_INVALID', async () => {
    const bad = join(dir, 'bad-mapping.yaml');
    writeFileSync(bad, 'format: custody.import-mapping/v1\nsource: pam\ntime: $.ts\ntype: action\nactor: { id: $.user }\n');
    const data = mkdtempSync(join(tmpdir(), 'custody-e2e-import-bad-'));
    try {
      await expect(startServer(['--data', data, '--import-mapping', bad])).rejects.toThrow(/type: a selector is a JSONPath starting with "\$"/);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  });
});
