/**
 * An OpenAI Agents SDK agent under Custody, with a fake model (no network
 * model): its function tool is decided by Custody's policy before it runs, a
 * denied call is told to the model, and the agent's output is recorded.
 *
 *   custody up --dev-issuer --policies examples/policies &
 *   eval "$(custody dev-tokens --human alice@example.com --agent agent:refunds)"
 *   CUSTODY_URL=http://127.0.0.1:8470 CUSTODY_API_KEY=$(cat .custody/admin.key) npx tsx examples/sdk-openai-agents/agent.ts
 */
import { pathToFileURL } from 'node:url';

import { Custody } from '@custody/sdk';
import { custodyAgentTools, recordRun } from '@custody/sdk/openai-agents';
import { Agent, type Model, type ModelRequest, type ModelResponse, Runner, tool, Usage } from '@openai/agents';
import { z } from 'zod';

/** Credentials and server for one run. */
export interface RunOptions {
  url: string;
  apiKey: string;
  subjectToken: string;
  actorToken: string;
}

/** A scripted model: reads notes.txt, then prod.env (denied by policy), then answers. */
class FakeModel implements Model {
  #turn = 0;
  async getResponse(_request: ModelRequest): Promise<ModelResponse> {
    this.#turn += 1;
    const usage = new Usage({ requests: 1, inputTokens: 10, outputTokens: 5, totalTokens: 15 });
    if (this.#turn <= 2) {
      const path = this.#turn === 1 ? 'notes.txt' : 'prod.env';
      return { usage, output: [{ type: 'function_call', callId: `call-${this.#turn}`, name: 'read_file', arguments: JSON.stringify({ path }), status: 'completed' }] };
    }
    return { usage, output: [{ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'notes.txt says hello; prod.env is off limits.' }] }] };
  }
  // eslint-disable-next-line require-yield
  async *getStreamedResponse(): AsyncIterable<never> {
    throw new Error('the fake model does not stream');
  }
}

/** Runs the agent once; returns the session id, the final output, and what the tool saw. */
export async function run(opts: RunOptions): Promise<{ sessionId: string; output: string; toolResults: string[] }> {
  const custody = new Custody({ url: opts.url, apiKey: opts.apiKey });
  const session = await custody.openSession({ subjectToken: opts.subjectToken, actorToken: opts.actorToken, scope: 'files.*', objective: 'read the notes' });
  const input = 'Read my notes and the production env file.';
  await session.prompt(input);

  const readFile = tool({ name: 'read_file', description: 'Read a file', parameters: z.object({ path: z.string() }), execute: ({ path }) => `${path}: hello` });
  const agent = new Agent({ name: 'clerk', instructions: 'Read files when asked.', model: new FakeModel(), tools: custodyAgentTools(session, [readFile], { server: 'files' }) });
  const runner = new Runner({ tracingDisabled: true });
  const stop = recordRun(session, runner);
  const result = await runner.run(agent, input);
  stop();
  const toolResults = result.newItems.filter((i) => i.type === 'tool_call_output_item').map((i) => String((i as { output: unknown }).output));
  await session.close();
  await custody.close();
  return { sessionId: session.id, output: String(result.finalOutput), toolResults };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = (name: string) => process.env[name] ?? (() => { throw new Error(`set ${name}`); })();
  const out = await run({ url: env('CUSTODY_URL'), apiKey: env('CUSTODY_API_KEY'), subjectToken: env('SUBJECT_TOKEN'), actorToken: env('ACTOR_TOKEN') });
  console.log(`session ${out.sessionId}: ${out.output}`);
}
