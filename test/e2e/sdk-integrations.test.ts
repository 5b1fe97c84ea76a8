/**
 * The framework examples (examples/sdk-*) run against a real `custody up
 * --dev-issuer --policies`, each with its framework's own mock model or
 * in-process server, and each leaves a full session whose bundle verifies offline.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { verifyBundle } from '@custody/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { run as runAi } from '../../examples/sdk-ai/agent.js';
import { run as runMcp } from '../../examples/sdk-mcp/agent.js';
import { run as runAgents } from '../../examples/sdk-openai-agents/agent.js';
import { api, custody as cli, type Server, startServer } from './custody-process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
let dir: string;
let server: Server;
let key: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-e2e-sdk-int-'));
  server = await startServer(['--data', dir, '--dev-issuer', '--policies', join(root, 'examples/policies')]);
  key = readFileSync(join(dir, 'admin.key'), 'utf8').trim();
});
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function tokens() {
  const r = cli(['dev-tokens', '--data', dir, '--human', 'alice@example.com', '--agent', 'agent:refunds', '--json']);
  const t = JSON.parse(r.stdout) as { subject_token: string; actor_token: string };
  return { url: server.url, apiKey: key, subjectToken: t.subject_token, actorToken: t.actor_token };
}

async function verified(sessionId: string): Promise<string[]> {
  const bundle = (await (await api(server.url, key, `/v1/sessions/${sessionId}/bundle`)).json()) as unknown;
  const report = verifyBundle(bundle);
  expect(report.ok, JSON.stringify(report.failures)).toBe(true);
  const tl = (await (await api(server.url, key, `/v1/sessions/${sessionId}/timeline`)).json()) as { events: { event: { type: string; tool?: { name: string; callId?: string } } }[] };
  return tl.events.map((e) => `${e.event.type}${e.event.tool ? ` ${e.event.tool.name}` : ''}`);
}

describe('framework examples', () => {
  it('Vercel AI SDK (MockLanguageModelV3): the tool call is decided and recorded, the session verifies', async () => {
    const out = await runAi(tokens());
    expect(out.text).toBe('The March invoice is 2,500.00 EUR.');
    const types = await verified(out.sessionId);
    expect(types).toEqual(expect.arrayContaining(['session.opened', 'prompt.received', 'tool.requested files.read_file', 'policy.decided files.read_file', 'tool.completed files.read_file', 'model.output', 'session.closed']));
  });

  it('OpenAI Agents SDK (fake model): allowed call runs, denied call is told to the model, output recorded, the session verifies', async () => {
    const out = await runAgents(tokens());
    expect(out.output).toBe('notes.txt says hello; prod.env is off limits.');
    expect(out.toolResults[0]).toBe('notes.txt: hello');
    expect(out.toolResults[1]).toMatch(/^Custody denied this call \(SDK_DENIED\)/);
    const types = await verified(out.sessionId);
    expect(types.filter((t) => t === 'policy.decided files.read_file')).toHaveLength(2);
    expect(types.filter((t) => t === 'tool.completed files.read_file')).toHaveLength(1);
    expect(types).toEqual(expect.arrayContaining(['prompt.received', 'model.output', 'session.closed']));
  });

  it('MCP client (official SDK, in-memory transport): allowed and denied calls, the session verifies', async () => {
    const out = await runMcp(tokens());
    expect(out).toMatchObject({ read: 'notes.txt: hello', denied: true });
    const types = await verified(out.sessionId);
    expect(types.filter((t) => t === 'policy.decided files.read_file')).toHaveLength(2);
    expect(types.filter((t) => t === 'tool.completed files.read_file')).toHaveLength(1);
    expect(types).toContain('session.closed');
  });
});
