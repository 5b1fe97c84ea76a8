/**
 * An agent that uses an MCP server through the official MCP TypeScript SDK
 * client, with Custody deciding every `tools/call` first (client side). The MCP
 * server runs in-process over the SDK's in-memory transport; no network model.
 *
 *   custody up --dev-issuer --policies examples/policies &
 *   eval "$(custody dev-tokens --human alice@example.com --agent agent:refunds)"
 *   CUSTODY_URL=http://127.0.0.1:8470 CUSTODY_API_KEY=$(cat .custody/admin.key) npx tsx examples/sdk-mcp/agent.ts
 */
import { pathToFileURL } from 'node:url';

import { Custody, DeniedError } from '@custody/sdk';
import { custodyMcpClient } from '@custody/sdk/mcp';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';

/** Credentials and server for one run. */
export interface RunOptions {
  url: string;
  apiKey: string;
  subjectToken: string;
  actorToken: string;
}

/** A tiny files MCP server. */
function filesServer(): McpServer {
  const server = new McpServer({ name: 'files', version: '1.0.0' });
  server.registerTool('read_file', { description: 'Read a file', inputSchema: { path: z.string() } }, ({ path }) => ({ content: [{ type: 'text', text: `${path}: hello` }] }));
  return server;
}

/** Runs the agent once: one allowed call, one the policy denies. */
export async function run(opts: RunOptions): Promise<{ sessionId: string; read: string; denied: boolean }> {
  const custody = new Custody({ url: opts.url, apiKey: opts.apiKey });
  const session = await custody.openSession({ subjectToken: opts.subjectToken, actorToken: opts.actorToken, scope: 'files.*', objective: 'read the notes' });
  await session.prompt('read notes.txt, then prod.env');

  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await filesServer().connect(serverSide);
  const client = custodyMcpClient(new Client({ name: 'notes-agent', version: '1.0.0' }), session, { server: 'files' });
  await client.connect(clientSide);

  const ok = (await client.callTool({ name: 'read_file', arguments: { path: 'notes.txt' } })) as { content: { text: string }[] };
  let denied = false;
  try {
    await client.callTool({ name: 'read_file', arguments: { path: 'prod.env' } });
  } catch (err) {
    if (!(err instanceof DeniedError)) throw err;
    denied = true; // policy files-no-secrets: the call never reached the MCP server
  }
  await session.modelOutput(`notes: ${ok.content[0]!.text}`);
  await client.close();
  await session.close();
  await custody.close();
  return { sessionId: session.id, read: ok.content[0]!.text, denied };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = (name: string) => process.env[name] ?? (() => { throw new Error(`set ${name}`); })();
  const out = await run({ url: env('CUSTODY_URL'), apiKey: env('CUSTODY_API_KEY'), subjectToken: env('SUBJECT_TOKEN'), actorToken: env('ACTOR_TOKEN') });
  console.log(`session ${out.sessionId}: read "${out.read}", secret read denied: ${out.denied}`);
}
