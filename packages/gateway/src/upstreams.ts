/**
 * Connections to the upstream MCP servers, with the official SDK's client: stdio
 * children or Streamable HTTP. The upstream's own credentials (env, headers) are
 * injected here and never reach the agent; the ledger knows them by reference.
 */
import { createHash } from 'node:crypto';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

import { GatewayError } from './errors.js';
import type { GatewayConfig, HttpUpstream, StdioUpstream } from './gateway-config.js';

/** A configured credential, by reference: where it is set and the SHA-256 of its value. */
export interface CredentialRef {
  upstream: string;
  source: 'env' | 'header';
  name: string;
  fingerprint: string;
}

/** One connected upstream. */
export interface Upstream {
  name: string;
  client: Client;
  tools: Tool[];
  credentials: CredentialRef[];
}

const fingerprint = (value: string) => createHash('sha256').update(value, 'utf8').digest('base64url');

/**
 * A `fetch` that gives every request its own abort signal. The SDK's Streamable HTTP
 * client passes one long-lived signal to every fetch; listeners added to it for each
 * request would pile up over days. Each request here listens to it only while its
 * response is being read.
 */
export const perRequestSignalFetch: typeof fetch = async (input, init) => {
  const shared = init?.signal ?? undefined;
  const own = new AbortController();
  const onAbort = () => own.abort(shared?.reason);
  if (shared?.aborted) own.abort(shared.reason);
  shared?.addEventListener('abort', onAbort, { once: true });
  const release = () => shared?.removeEventListener('abort', onAbort);
  try {
    const res = await fetch(input, { ...init, signal: own.signal });
    if (res.body === null) {
      release();
      return res;
    }
    const body = res.body.pipeThrough(new TransformStream({ flush: release }));
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  } catch (err) {
    release();
    throw err;
  }
};

async function connect(name: string, spec: StdioUpstream | HttpUpstream): Promise<Upstream> {
  const client = new Client({ name: 'custody-gateway', version: '0.1.0' });
  let credentials: CredentialRef[];
  try {
    if ('command' in spec) {
      await client.connect(
        new StdioClientTransport({
          command: spec.command,
          ...(spec.args !== undefined ? { args: spec.args } : {}),
          env: { ...getDefaultEnvironment(), ...spec.env },
          ...(spec.cwd !== undefined ? { cwd: spec.cwd } : {}),
          stderr: 'inherit',
        }),
      );
      credentials = Object.entries(spec.env ?? {}).map(([k, v]) => ({ upstream: name, source: 'env', name: k, fingerprint: fingerprint(v) }));
    } else {
      await client.connect(new StreamableHTTPClientTransport(new URL(spec.url), { requestInit: { headers: spec.headers ?? {} }, fetch: perRequestSignalFetch }));
      credentials = Object.entries(spec.headers ?? {}).map(([k, v]) => ({ upstream: name, source: 'header', name: k.toLowerCase(), fingerprint: fingerprint(v) }));
    }
  } catch (err) {
    throw new GatewayError('GATEWAY_UPSTREAM_UNAVAILABLE', `cannot connect to upstream ${name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const up: Upstream = { name, client, tools: [], credentials };
  await refresh(up);
  client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    await refresh(up).catch(() => undefined);
  });
  return up;
}

async function refresh(up: Upstream): Promise<void> {
  const tools: Tool[] = [];
  let cursor: string | undefined;
  do {
    const page = await up.client.listTools(cursor !== undefined ? { cursor } : {});
    tools.push(...page.tools);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  up.tools = tools;
}

/** Connects every configured upstream. @throws GatewayError `GATEWAY_UPSTREAM_UNAVAILABLE` */
export async function connectUpstreams(config: GatewayConfig): Promise<Map<string, Upstream>> {
  const out = new Map<string, Upstream>();
  try {
    for (const [name, spec] of Object.entries(config.upstreams)) out.set(name, await connect(name, spec));
  } catch (err) {
    await Promise.all([...out.values()].map((u) => u.client.close().catch(() => undefined)));
    throw err;
  }
  return out;
}
