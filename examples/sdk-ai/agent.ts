/**
 * A Vercel AI SDK agent under Custody, with the AI SDK's own mock model (no
 * network model): the prompt and the model's answer are recorded, and the tool
 * the model calls is decided by Custody's policy before it runs.
 *
 *   custody up --dev-issuer --policies examples/policies &
 *   eval "$(custody dev-tokens --human alice@example.com --agent agent:refunds)"
 *   CUSTODY_URL=http://127.0.0.1:8470 CUSTODY_API_KEY=$(cat .custody/admin.key) npx tsx examples/sdk-ai/agent.ts
 */
import { pathToFileURL } from 'node:url';

import { Custody } from '@custody/sdk';
import { custodyTools } from '@custody/sdk/ai';
import { generateText, stepCountIs, tool } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';
import { z } from 'zod';

/** Credentials and server for one run. */
export interface RunOptions {
  url: string;
  apiKey: string;
  subjectToken: string;
  actorToken: string;
}

const usage = { inputTokens: { total: 10, noCache: 10, cacheRead: undefined, cacheWrite: undefined }, outputTokens: { total: 5, text: 5, reasoning: undefined } };

/** A model that first asks for `read_file`, then answers with what it read. */
function mockModel(): MockLanguageModelV3 {
  let step = 0;
  return new MockLanguageModelV3({
    doGenerate: async () => {
      step += 1;
      if (step === 1) {
        return { content: [{ type: 'tool-call', toolCallId: 'call-1', toolName: 'read_file', input: JSON.stringify({ path: 'invoices/2026-03.txt' }) }], finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage, warnings: [] };
      }
      return { content: [{ type: 'text', text: 'The March invoice is 2,500.00 EUR.' }], finishReason: { unified: 'stop', raw: 'stop' }, usage, warnings: [] };
    },
  });
}

/** Runs the agent once; returns the session id and the model's answer. */
export async function run(opts: RunOptions): Promise<{ sessionId: string; text: string }> {
  const custody = new Custody({ url: opts.url, apiKey: opts.apiKey });
  const session = await custody.openSession({ subjectToken: opts.subjectToken, actorToken: opts.actorToken, scope: 'files.*', objective: 'summarise the March invoice' });
  const prompt = 'How much is the March invoice?';
  await session.prompt(prompt);

  const tools = custodyTools(
    session,
    {
      read_file: tool({
        description: 'Read a file',
        inputSchema: z.object({ path: z.string() }),
        execute: async ({ path }) => `${path}: total 2500.00 EUR`,
      }),
    },
    { server: 'files' },
  );
  const result = await generateText({ model: mockModel(), tools, prompt, stopWhen: stepCountIs(3) });
  await session.modelOutput(result.text, { model: 'mock-model', usage: { inputTokens: result.totalUsage.inputTokens ?? 0, outputTokens: result.totalUsage.outputTokens ?? 0 } });
  await session.close();
  await custody.close();
  return { sessionId: session.id, text: result.text };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = (name: string) => process.env[name] ?? (() => { throw new Error(`set ${name}`); })();
  const out = await run({ url: env('CUSTODY_URL'), apiKey: env('CUSTODY_API_KEY'), subjectToken: env('SUBJECT_TOKEN'), actorToken: env('ACTOR_TOKEN') });
  console.log(`session ${out.sessionId}: ${out.text}`);
}
