/**
 * The gateway's configuration file (JSON). See docs/gateway.md.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';

import { GatewayError } from './errors.js';

/** An upstream MCP server started as a child process (stdio). */
export interface StdioUpstream {
  command: string;
  args?: string[];
  /** Environment of the child: the upstream's own credentials go here; the agent never sees them. */
  env?: Record<string, string>;
  cwd?: string;
}

/** An upstream MCP server reached over Streamable HTTP. */
export interface HttpUpstream {
  url: string;
  /** Headers sent upstream (e.g. its own `authorization`); the agent never sees them. */
  headers?: Record<string, string>;
}

/** Per-tool settings. */
export interface ToolSettings {
  /** How arguments and results are kept: `full` (disclosures kept), `digest` (commitment only), `none`. Default `full`. */
  capture: 'full' | 'digest' | 'none';
}

/** The gateway's configuration. */
export interface GatewayConfig {
  ledger: {
    /** The Custody server. */
    url: string;
    /** An API key with the ingest (or admin) role of the tenant (`env:NAME` reads it from the environment). */
    apiKey: string;
    /** `closed` (default): refuse a call whose decision the ledger cannot record. `open`: make allowed calls anyway. */
    failMode: 'closed' | 'open';
    /** How long a positive introspection answer is reused, in ms (0: never). Default 1000. Calls are always re-verified by the decision. */
    introspectionCacheMs: number;
    /** Timeout of each request to the server, in ms. Default 10000. */
    timeoutMs: number;
    /**
     * When `tool.completed` / `tool.failed` is recorded: `after-result` (default) records it in the
     * background once the agent has the result (retried while the ledger is away); `before-result`
     * waits for it to be durable first. The decision is durable before the call runs either way.
     */
    recordOutcomes: 'after-result' | 'before-result';
  };
  listen: { host: string; port: number; /** The URL agents use (default http://host:port). */ publicUrl?: string };
  /** Folder of `.cedar` (and `.cedarschema`) files. */
  policies: string;
  upstreams: Record<string, StdioUpstream | HttpUpstream>;
  tools: Record<string, ToolSettings>;
  approvals: {
    /** How long a call waits for a human, in seconds. Default 300. */
    timeoutSeconds: number;
  };
  /** How often sessions with calls in flight are re-checked for revocation, in ms. Default 250. */
  revocationPollMs: number;
  /**
   * With `ledger.failMode` closed: how long a call in flight may go on while the server
   * cannot confirm its session is still active (unreachable), in ms, before it is
   * cancelled (fail closed: a revocation might be what the gateway cannot see). Default 2000.
   */
  revocationGraceMs: number;
  /** Timeout of an upstream call, in ms. Default 60000. */
  callTimeoutMs: number;
  /**
   * The audiences a session credential must name one of (RFC 8707 resource indicators). Default:
   * the gateway's own resource (`<publicUrl>/mcp`) and public URL, and the Custody server's issuer
   * URL (the audience of credentials asked for without `resource`).
   */
  audiences?: string[];
}

const UPSTREAM_NAME = /^[A-Za-z0-9_-]{1,64}$/;

function fail(message: string): never {
  throw new GatewayError('GATEWAY_CONFIG_INVALID', message);
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** A secret value: literal, or `env:NAME` to read it from the gateway's environment. */
function secret(v: string, what: string): string {
  if (!v.startsWith('env:')) return v;
  const value = process.env[v.slice(4)];
  if (value === undefined || value === '') fail(`${what} names the environment variable ${v.slice(4)}, which is not set`);
  return value;
}

function strings(v: unknown, what: string): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v) || !Object.values(v).every((x) => typeof x === 'string')) fail(`${what} must be an object of strings`);
  return Object.fromEntries(Object.entries(v as Record<string, string>).map(([k, x]) => [k, secret(x, `${what}.${k}`)]));
}

function int(v: unknown, what: string, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(`${what} must be an integer ${min}-${max}`);
  return v;
}

/**
 * Checks a parsed configuration (client-controlled) and fills defaults;
 * relative paths are relative to `baseDir`.
 * @throws GatewayError `GATEWAY_CONFIG_INVALID` naming the key
 */
export function parseGatewayConfig(raw: unknown, baseDir = process.cwd()): GatewayConfig {
  if (!isObject(raw)) fail('the configuration must be a JSON object');
  const known = ['ledger', 'listen', 'policies', 'upstreams', 'tools', 'approvals', 'revocationPollMs', 'revocationGraceMs', 'callTimeoutMs', 'audiences', '$comment'];
  for (const k of Object.keys(raw)) if (!known.includes(k)) fail(`unknown key ${k} (expected ${known.join(', ')})`);
  const l = raw['ledger'];
  if (!isObject(l) || typeof l['url'] !== 'string' || typeof l['apiKey'] !== 'string' || l['apiKey'] === '') fail('ledger must be { "url", "apiKey" }');
  try {
    const u = new URL(l['url']);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
  } catch {
    fail(`ledger.url must be an http(s) URL, got ${JSON.stringify(l['url'])}`);
  }
  if (l['failMode'] !== undefined && l['failMode'] !== 'closed' && l['failMode'] !== 'open') fail('ledger.failMode must be "closed" or "open"');
  if (l['recordOutcomes'] !== undefined && l['recordOutcomes'] !== 'after-result' && l['recordOutcomes'] !== 'before-result') fail('ledger.recordOutcomes must be "after-result" or "before-result"');
  const listen = raw['listen'] ?? {};
  if (!isObject(listen)) fail('listen must be { "host", "port" }');
  if (listen['host'] !== undefined && typeof listen['host'] !== 'string') fail('listen.host must be a string');
  if (listen['publicUrl'] !== undefined && typeof listen['publicUrl'] !== 'string') fail('listen.publicUrl must be a URL');
  if (typeof raw['policies'] !== 'string' || raw['policies'] === '') fail('policies must name a folder of .cedar files');
  const ups = raw['upstreams'];
  if (!isObject(ups) || Object.keys(ups).length === 0) fail('upstreams must name at least one MCP server');
  const upstreams: GatewayConfig['upstreams'] = {};
  for (const [name, u] of Object.entries(ups)) {
    if (!UPSTREAM_NAME.test(name)) fail(`upstream name ${JSON.stringify(name)} must be 1-64 characters of A-Z a-z 0-9 _ - (no dots: tools are exposed as <upstream>.<tool>)`);
    if (!isObject(u)) fail(`upstreams.${name} must be { "command", "args", "env" } or { "url", "headers" }`);
    if (typeof u['command'] === 'string') {
      if (u['args'] !== undefined && (!Array.isArray(u['args']) || !u['args'].every((a) => typeof a === 'string'))) fail(`upstreams.${name}.args must be an array of strings`);
      const env = strings(u['env'], `upstreams.${name}.env`);
      upstreams[name] = {
        command: u['command'],
        ...(u['args'] !== undefined ? { args: u['args'] as string[] } : {}),
        ...(env !== undefined ? { env } : {}),
        ...(typeof u['cwd'] === 'string' ? { cwd: resolve(baseDir, u['cwd']) } : {}),
      };
    } else if (typeof u['url'] === 'string') {
      const headers = strings(u['headers'], `upstreams.${name}.headers`);
      upstreams[name] = { url: u['url'], ...(headers !== undefined ? { headers } : {}) };
    } else fail(`upstreams.${name} needs "command" (stdio) or "url" (Streamable HTTP)`);
  }
  const tools: Record<string, ToolSettings> = {};
  const t = raw['tools'] ?? {};
  if (!isObject(t)) fail('tools must be an object keyed by <upstream>.<tool>');
  for (const [key, s] of Object.entries(t)) {
    const up = key.slice(0, key.indexOf('.'));
    if (!key.includes('.') || upstreams[up] === undefined) fail(`tools.${key}: expected <upstream>.<tool> with a configured upstream`);
    if (!isObject(s) || (s['capture'] !== 'full' && s['capture'] !== 'digest' && s['capture'] !== 'none')) fail(`tools.${key}.capture must be "full", "digest" or "none"`);
    tools[key] = { capture: s['capture'] };
  }
  const ap = raw['approvals'] ?? {};
  if (!isObject(ap)) fail('approvals must be { "timeoutSeconds" }');
  const aud = raw['audiences'];
  if (aud !== undefined && (!Array.isArray(aud) || aud.length === 0 || aud.length > 32 || !aud.every((a) => typeof a === 'string' && a.length > 0 && a.length <= 512))) {
    fail('audiences must be a list of 1-32 URLs (the audiences a session credential must name one of)');
  }
  return {
    ledger: {
      url: l['url'].replace(/\/+$/, ''),
      apiKey: secret(l['apiKey'], 'ledger.apiKey'),
      failMode: (l['failMode'] as 'closed' | 'open' | undefined) ?? 'closed',
      introspectionCacheMs: int(l['introspectionCacheMs'], 'ledger.introspectionCacheMs', 1000, 0, 60_000),
      timeoutMs: int(l['timeoutMs'], 'ledger.timeoutMs', 10_000, 100, 120_000),
      recordOutcomes: (l['recordOutcomes'] as 'after-result' | 'before-result' | undefined) ?? 'after-result',
    },
    listen: {
      host: (listen['host'] as string | undefined) ?? '127.0.0.1',
      port: int(listen['port'], 'listen.port', 8471, 0, 65535),
      ...(listen['publicUrl'] !== undefined ? { publicUrl: (listen['publicUrl'] as string).replace(/\/+$/, '') } : {}),
    },
    policies: isAbsolute(raw['policies']) ? raw['policies'] : resolve(baseDir, raw['policies']),
    upstreams,
    tools,
    approvals: { timeoutSeconds: int(ap['timeoutSeconds'], 'approvals.timeoutSeconds', 300, 1, 86_400) },
    revocationPollMs: int(raw['revocationPollMs'], 'revocationPollMs', 250, 10, 60_000),
    revocationGraceMs: int(raw['revocationGraceMs'], 'revocationGraceMs', 2000, 0, 3_600_000),
    callTimeoutMs: int(raw['callTimeoutMs'], 'callTimeoutMs', 60_000, 100, 3_600_000),
    ...(aud !== undefined ? { audiences: (aud as string[]).map((a) => a.replace(/\/+$/, '')) } : {}),
  };
}

/**
 * Reads and checks a configuration file; relative paths in it are relative to the file.
 * @throws GatewayError `GATEWAY_CONFIG_UNREADABLE`, `GATEWAY_CONFIG_INVALID`
 */
export function loadGatewayConfig(path: string): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new GatewayError('GATEWAY_CONFIG_UNREADABLE', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new GatewayError('GATEWAY_CONFIG_INVALID', `${path} is not JSON: ${(err as Error).message}`);
  }
  return parseGatewayConfig(raw, dirname(resolve(path)));
}
