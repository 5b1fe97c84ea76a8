#!/usr/bin/env node
// An upstream MCP server for the gateway example, written with the official MCP SDK
// and nothing of Custody's. `node upstream-server.mjs files` serves a harmless tool
// (read_file, inside this example's data folder); `node upstream-server.mjs payments`
// serves a sensitive one (transfer, which needs PAYMENTS_API_KEY: the upstream's own
// credential, which the gateway injects and the agent never sees).
import { readFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const kind = process.argv[2];
const root = join(dirname(fileURLToPath(import.meta.url)), 'data');
const server = new McpServer({ name: `example-${kind}`, version: '1.0.0' });

if (kind === 'files') {
  server.registerTool(
    'read_file',
    { description: 'Read a text file of the example data folder.', inputSchema: { path: z.string() } },
    async ({ path }) => {
      const full = normalize(join(root, path));
      if (!full.startsWith(root)) return { isError: true, content: [{ type: 'text', text: 'outside the data folder' }] };
      try {
        return { content: [{ type: 'text', text: await readFile(full, 'utf8') }] };
      } catch {
        return { isError: true, content: [{ type: 'text', text: `no such file: ${path}` }] };
      }
    },
  );
} else if (kind === 'payments') {
  let next = 1;
  server.registerTool(
    'transfer',
    {
      description: 'Transfer money (amount in cents).',
      inputSchema: { amount: z.number().int(), currency: z.string(), to: z.string(), memo: z.string().optional(), delayMs: z.number().int().optional() },
    },
    async ({ amount, currency, to, delayMs }) => {
      if (!process.env.PAYMENTS_API_KEY) return { isError: true, content: [{ type: 'text', text: 'the payments API key is not configured' }] };
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      const id = `tx-${String(next++).padStart(4, '0')}`;
      return { content: [{ type: 'text', text: `transferred ${(amount / 100).toFixed(2)} ${currency} to ${to} (${id})` }], structuredContent: { id, amount, currency, to } };
    },
  );
} else {
  process.stderr.write('usage: upstream-server.mjs files|payments\n');
  process.exit(2);
}

await server.connect(new StdioServerTransport());
