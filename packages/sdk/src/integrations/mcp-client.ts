/**
 * `@custody/sdk/mcp`: Custody for a client of the official MCP TypeScript SDK
 * (`@modelcontextprotocol/sdk`, an optional peer dependency). Every
 * `tools/call` the wrapped client makes is decided by policy first, and its
 * result recorded, whatever transport the client uses. (For servers you do not
 * control, put the Custody gateway in front of them instead: docs/gateway.md.)
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';

import type { Capture, Session, UnavailableMode } from '../session.js';

/** Options of `custodyMcpClient`. */
export interface CustodyMcpOptions {
  /** The server part of Custody tool names, `<server>.<tool>` (e.g. the MCP server's name). */
  server: string;
  capture?: Capture | { arguments?: Capture; result?: Capture };
  whenUnavailable?: UnavailableMode;
}

/**
 * Makes `client.callTool` go through Custody's decision point for `session`;
 * returns the same client. A denied call rejects with `DeniedError` and never
 * reaches the MCP server. A result with `isError: true` is recorded as
 * `tool.completed` carrying it (the server answered).
 * @example
 * const client = custodyMcpClient(new Client({ name: 'agent', version: '1.0.0' }), session, { server: 'files' });
 * await client.connect(transport);
 * await client.callTool({ name: 'read_file', arguments: { path: 'a.txt' } });
 */
export function custodyMcpClient<C extends Client>(client: C, session: Session, opts: CustodyMcpOptions): C {
  const original = client.callTool.bind(client);
  let calls = 0;
  const wrapped: typeof client.callTool = (params, resultSchema, options) =>
    session.callTool(params.name, params.arguments ?? {}, () => original(params, resultSchema, options), {
      server: opts.server,
      callId: `mcp-${++calls}`,
      // The request's signal also ends the decision and an approval wait.
      ...(options?.signal !== undefined ? { signal: options.signal } : {}),
      ...(opts.capture !== undefined ? { capture: opts.capture } : {}),
      ...(opts.whenUnavailable !== undefined ? { whenUnavailable: opts.whenUnavailable } : {}),
    });
  client.callTool = wrapped;
  return client;
}
