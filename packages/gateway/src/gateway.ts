/**
 * The MCP gateway: the enforcement point in front of MCP servers. Agents connect
 * over Streamable HTTP (`/mcp`) or stdio with their Custody session credential;
 * `tools/list` shows only what list-time policy permits; every `tools/call` is
 * decided with Cedar and recorded by the Custody server before it runs, held for
 * a human when policy asks for approval, and forwarded with the upstream's own
 * credential. See docs/gateway.md.
 */
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';

import { createDisclosure, type DecisionPart, type EventDraft, redactSecrets } from '@custody/core';
import { formatIssue, loadPolicySet, PolicyEngine, type PolicyRequest } from '@custody/policy';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { CallToolRequestSchema, type CallToolResult, ErrorCode, isInitializeRequest, ListToolsRequestSchema, McpError, type Tool } from '@modelcontextprotocol/sdk/types.js';

import { type ActiveSession, CustodyClient, CustodyHttpError, type DecisionAnswer, isSessionInactive } from './custody-client.js';
import { MCP_ERRORS } from './errors.js';
import type { GatewayConfig } from './gateway-config.js';
import { OutcomeRecorder } from './outcome-recorder.js';
import { connectUpstreams, type Upstream } from './upstreams.js';

/** Options of a gateway beyond its configuration. */
export interface GatewayOptions {
  /** Where operational messages go. Default: nowhere. */
  log?: (message: string) => void;
}

/**
 * An MCP error to send to the agent. The SDK's `McpError` puts "MCP error <code>: " in front
 * of its message, the SDK's server sends that `message` as the JSON-RPC error's, and the
 * agent's SDK puts the prefix in front again ("MCP error -32001: MCP error -32001: …";
 * modelcontextprotocol/typescript-sdk#2786). The wire carries the message alone, as the
 * JSON-RPC error's `code` already says which it is; the agent's SDK adds the prefix once.
 */
function mcpError(code: number, message: string, data?: Record<string, unknown>): McpError {
  const err = new McpError(code, message, data);
  err.message = message;
  return err;
}

/** An MCP error refusing a call, with `data.code` as text. */
function refuse(code: keyof typeof MCP_ERRORS, message: string, data: Record<string, unknown> = {}): McpError {
  return mcpError(MCP_ERRORS[code], message, { code, ...data });
}

/** `data.code` of a call cancelled for neither the session nor the ledger: the agent cancelled it, or the gateway is shutting down. */
const CALL_CANCELLED = 'CALL_CANCELLED';

/** The message of an error without the "MCP error <code>: " prefix of the SDK's `McpError`. */
function bareMessage(err: unknown): string {
  if (err instanceof McpError) return err.message.replace(new RegExp(`^(?:MCP error ${err.code}: )+`), '');
  return err instanceof Error ? err.message : String(err);
}

const MAX_BODY = 4 * 1024 * 1024;

/** How a call cancelled for want of the ledger is told apart (its abort reason starts with this). */
const LEDGER_UNREACHABLE = 'the ledger is unreachable';

/** A call in flight, cancellable by the kill switch. */
interface InFlight {
  token: string;
  abort: AbortController;
}

/**
 * The gateway. Create with {@link Gateway.start}; serve agents with
 * {@link Gateway.listen} (Streamable HTTP), {@link Gateway.serveStdio} or
 * {@link Gateway.connect} (any transport).
 * @example
 * const gateway = await Gateway.start(loadGatewayConfig('gateway.json'));
 * const url = await gateway.listen(); // http://127.0.0.1:8471/mcp
 */
export class Gateway {
  readonly config: GatewayConfig;
  readonly engine: PolicyEngine;
  readonly upstreams: Map<string, Upstream>;
  readonly #custody: CustodyClient;
  readonly #log: (message: string) => void;
  readonly #outcomes: OutcomeRecorder;
  readonly #sessions = new Map<string, { at: number; session: ActiveSession }>();
  readonly #inflight = new Map<string, Set<InFlight>>();
  /** The `tools/call` handlers running, so that close() can let cancelled calls answer. */
  readonly #handlers = new Set<Promise<unknown>>();
  /** The HTTP responses of POST /mcp not yet closed (the answers of those calls go out on them). */
  readonly #posts = new Set<ServerResponse>();
  /** When each session with calls in flight was last confirmed active (performance.now()). */
  readonly #confirmed = new Map<string, number>();
  readonly #transports = new Map<string, { transport: StreamableHTTPServerTransport; sid: string }>();
  readonly #servers = new Set<Server>();
  #watch: NodeJS.Timeout | undefined;
  #http: HttpServer | undefined;
  #url: string | undefined;
  #issuer: string | undefined;

  private constructor(config: GatewayConfig, engine: PolicyEngine, upstreams: Map<string, Upstream>, opts: GatewayOptions) {
    this.config = config;
    this.engine = engine;
    this.upstreams = upstreams;
    this.#custody = new CustodyClient(config.ledger.url, config.ledger.apiKey, config.ledger.timeoutMs);
    this.#log = opts.log ?? (() => undefined);
    this.#outcomes = new OutcomeRecorder((events) => this.#custody.append(events), this.#log);
  }

  /**
   * Loads and validates the policies (refusing to start on an invalid one), and
   * connects every upstream.
   * @throws PolicyError on invalid policies; GatewayError `GATEWAY_UPSTREAM_UNAVAILABLE`
   */
  static async start(config: GatewayConfig, opts: GatewayOptions = {}): Promise<Gateway> {
    const set = loadPolicySet(config.policies);
    for (const w of set.warnings) opts.log?.(`policy warning: ${formatIssue(w)}`);
    const engine = new PolicyEngine(set);
    const upstreams = await connectUpstreams(config);
    return new Gateway(config, engine, upstreams, opts);
  }

  // ---- sessions ------------------------------------------------------------------

  /** The active session of a credential (introspected; reused for introspectionCacheMs). */
  async #session(token: string, fresh = false): Promise<ActiveSession> {
    const hit = this.#sessions.get(token);
    const ttl = this.config.ledger.introspectionCacheMs;
    if (!fresh && hit !== undefined && Date.now() - hit.at < ttl && Date.parse(hit.session.expiresAt) > Date.now()) return hit.session;
    let s: ActiveSession | undefined;
    try {
      s = await this.#custody.introspect(token);
    } catch (err) {
      throw refuse('LEDGER_UNAVAILABLE', `the gateway cannot check the session credential with Custody (${err instanceof Error ? err.message : String(err)}); refused (fail closed)`);
    }
    if (s === undefined) {
      this.#sessions.delete(token);
      throw refuse('SESSION_INACTIVE', 'the session credential is not active (revoked, closed or expired)');
    }
    const accepted = await this.#audiences();
    if (!s.audience.some((a) => accepted.has(a.replace(/\/+$/, '')))) {
      throw refuse('SESSION_INACTIVE', `the session credential is not meant for this gateway: its audience is ${s.audience.join(' ') || '(none)'}; ask for it with resource=${this.#url ?? '<gateway>'}/mcp (RFC 8707)`);
    }
    if (ttl > 0) {
      if (this.#sessions.size > 10_000) this.#sessions.clear();
      this.#sessions.set(token, { at: Date.now(), session: s });
    }
    return s;
  }

  /** The audiences accepted: configured, or the gateway's resource and URL and the server's issuer. */
  async #audiences(): Promise<Set<string>> {
    if (this.config.audiences !== undefined) return new Set(this.config.audiences);
    if (this.#issuer === undefined) {
      try {
        this.#issuer = await this.#custody.issuer();
      } catch (err) {
        throw refuse('LEDGER_UNAVAILABLE', `the gateway cannot read the Custody server's metadata (${err instanceof Error ? err.message : String(err)}); refused (fail closed)`);
      }
    }
    const own = this.#url !== undefined ? [this.#url, `${this.#url}/mcp`] : [];
    return new Set([...own, this.#issuer.replace(/\/+$/, '')]);
  }

  #policyRequest(s: ActiveSession, action: PolicyRequest['action'], server: string, name: string, args?: Record<string, unknown>): PolicyRequest {
    return {
      action,
      principal: { type: 'agent', id: s.agent },
      target: { server, name },
      ...(args !== undefined ? { arguments: args } : {}),
      session: { id: s.sid, scope: s.scope, expiresAt: s.expiresAt, depth: s.depth, initiator: s.initiator },
    };
  }

  // ---- MCP handlers ----------------------------------------------------------------

  /** A fresh MCP server for one agent connection; `bound` is the credential of a non-HTTP transport. */
  #mcpServer(bound?: string): Server {
    const server = new Server({ name: 'custody-gateway', version: '0.1.0' }, { capabilities: { tools: { listChanged: false } } });
    const tokenOf = (authInfo: AuthInfo | undefined): string => {
      const t = authInfo?.token ?? bound;
      if (t === undefined) throw refuse('SESSION_INACTIVE', 'no session credential: send Authorization: Bearer <Custody session credential>');
      return t;
    };
    server.setRequestHandler(ListToolsRequestSchema, async (_req, extra) => {
      const s = await this.#session(tokenOf(extra.authInfo));
      return { tools: this.#listTools(s) };
    });
    server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
      const token = tokenOf(extra.authInfo);
      const call = this.#call(token, req.params.name, req.params.arguments ?? {}, String(extra.requestId), extra.signal);
      this.#handlers.add(call);
      void call.then(
        () => this.#handlers.delete(call),
        () => this.#handlers.delete(call),
      );
      return call;
    });
    this.#servers.add(server);
    server.onclose = () => this.#servers.delete(server);
    return server;
  }

  /** The upstream tools the session may see: namespaced `<upstream>.<tool>`, filtered by list-time policy. */
  #listTools(s: ActiveSession): Tool[] {
    const out: Tool[] = [];
    for (const up of this.upstreams.values()) {
      for (const tool of up.tools) {
        const d = this.engine.decide(this.#policyRequest(s, 'tools/list', up.name, tool.name));
        if (d.effect === 'allow') out.push({ ...tool, name: `${up.name}.${tool.name}` });
      }
    }
    return out;
  }

  async #decide(body: Record<string, unknown>, local: DecisionPart): Promise<DecisionAnswer | undefined> {
    try {
      return await this.#custody.decide(body);
    } catch (err) {
      if (isSessionInactive(err)) throw refuse('SESSION_INACTIVE', `the session is no longer active: ${(err as Error).message}`);
      if (err instanceof CustodyHttpError && err.status < 500) throw refuse('POLICY_DENIED', `Custody refused the call: ${err.message} [${err.code}]`, { reason: err.code });
      if (this.config.ledger.failMode === 'open' && local.effect === 'allow') {
        this.#log(`ledger unavailable; failMode open: making an allowed call unrecorded (${err instanceof Error ? err.message : String(err)})`);
        return undefined;
      }
      throw refuse('LEDGER_UNAVAILABLE', `the ledger could not durably record the decision, so the call was not made (fail closed): ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async #call(token: string, name: string, args: Record<string, unknown>, callId: string, signal: AbortSignal): Promise<CallToolResult> {
    const dot = name.indexOf('.');
    const up = dot > 0 ? this.upstreams.get(name.slice(0, dot)) : undefined;
    const tool = name.slice(dot + 1);
    if (up === undefined || !up.tools.some((t) => t.name === tool)) {
      // Probing for tools is evidence too: record the attempt as a denied call (an inactive credential is refused first).
      await this.#session(token);
      const server = up?.name ?? (dot > 0 && /^[A-Za-z0-9_-]{1,64}$/.test(name.slice(0, dot)) ? name.slice(0, dot) : 'unknown');
      // The name is the agent's own text here, not one of ours: redacted like its arguments.
      const shown = (text: string) => redactSecrets(text.slice(0, 256)).value;
      const decision: DecisionPart = { effect: 'deny', policyVersion: this.engine.version, policies: [], reasons: [`no tool ${shown(name)} behind this gateway`] };
      const body = { credential: token, tool: { server, name: shown(dot > 0 ? tool : name) || '(empty)' }, arguments: args, callId, capture: this.config.tools[name]?.capture ?? 'full', decision };
      await this.#decide(body, decision).catch((err: unknown) => this.#log(`could not record the call of unknown tool ${shown(name)}: ${err instanceof Error ? err.message : String(err)}`));
      throw mcpError(ErrorCode.InvalidParams, `unknown tool ${name}: call tools/list for the tools this session may use`);
    }
    const s = await this.#session(token);
    const capture = this.config.tools[name]?.capture ?? 'full';
    const request = this.#policyRequest(s, 'tools/call', up.name, tool, args);
    let decision: DecisionPart = this.engine.decide(request);
    const base = { credential: token, tool: { server: up.name, name: tool }, arguments: args, callId, capture };

    const flight: InFlight = { token, abort: new AbortController() };
    const onAgentCancel = () => flight.abort.abort(new Error('cancelled by the agent'));
    signal.addEventListener('abort', onAgentCancel, { once: true });
    this.#track(s.sid, flight, true);
    let answer: DecisionAnswer | undefined;
    const started = performance.now();
    try {
      answer = await this.#decide({ ...base, decision, approvalTtlSeconds: this.config.approvals.timeoutSeconds }, decision);
      if (decision.effect === 'deny') {
        throw refuse('POLICY_DENIED', `denied by policy: ${decision.reasons.join('; ')}`, { reasons: decision.reasons, policies: decision.policies, policyVersion: decision.policyVersion, ...(answer ? { call: answer.call } : {}) });
      }
      if (decision.effect === 'approval_required') {
        if (answer?.approval === undefined) throw refuse('LEDGER_UNAVAILABLE', 'this call needs a human approval, which needs the ledger: refused (fail closed)');
        const outcome = await this.#awaitApproval(answer.approval.id, flight.abort.signal);
        if (outcome.status !== 'granted') {
          throw refuse('APPROVAL_DENIED', outcome.status === 'denied' ? `a human denied this call${outcome.reason !== undefined ? `: ${outcome.reason}` : ''}` : `no human approved this call in time (${outcome.status})`, {
            approval: answer.approval.id,
            status: outcome.status,
            call: answer.call,
          });
        }
        decision = this.engine.decide({ ...request, approval: { status: 'granted' } });
        answer = await this.#decide({ ...base, decision, approval: answer.approval.id }, decision);
        if (decision.effect !== 'allow') throw refuse('POLICY_DENIED', `denied by policy: ${decision.reasons.join('; ')}`, { reasons: decision.reasons, policies: decision.policies });
      }
      if (flight.abort.signal.aborted) throw flight.abort.signal.reason;
      let result: CallToolResult;
      try {
        result = (await up.client.callTool({ name: tool, arguments: args }, undefined, { signal: flight.abort.signal, timeout: this.config.callTimeoutMs })) as CallToolResult;
      } catch (err) {
        if (flight.abort.signal.aborted) throw flight.abort.signal.reason;
        await this.#record(answer, 'tool.failed', up, tool, callId, capture, { error: err instanceof Error ? err.message : String(err) }, started);
        // An upstream's own MCP error keeps its code in `data.upstreamCode`, not as a second prefix in the message.
        throw refuse('UPSTREAM_FAILED', `upstream ${up.name} failed: ${bareMessage(err)}`, err instanceof McpError ? { upstreamCode: err.code } : {});
      }
      await this.#record(answer, result.isError === true ? 'tool.failed' : 'tool.completed', up, tool, callId, capture, { result }, started);
      return result;
    } catch (err) {
      if (flight.abort.signal.aborted && !(err instanceof McpError)) {
        const reason = flight.abort.signal.reason instanceof Error ? flight.abort.signal.reason.message : 'cancelled';
        await this.#record(answer, 'tool.failed', up, tool, callId, capture, { error: reason, cancelled: true }, started).catch(() => undefined);
        // Every cancellation says why in `data.code`, and that it was cancelled (`data.cancelled`): the
        // kill switch, the ledger gone for longer than revocationGraceMs, or else the agent (which, as
        // MCP asks, gets no answer) or the gateway shutting down.
        if (reason.startsWith('session')) throw refuse('SESSION_INACTIVE', `the call was cancelled: ${reason}`, { cancelled: true });
        if (reason.startsWith(LEDGER_UNREACHABLE)) throw refuse('LEDGER_UNAVAILABLE', `the call was cancelled: ${reason}`, { cancelled: true });
        throw mcpError(ErrorCode.RequestTimeout, `the call was cancelled: ${reason}`, { code: CALL_CANCELLED, cancelled: true, reason });
      }
      throw err;
    } finally {
      signal.removeEventListener('abort', onAgentCancel);
      this.#track(s.sid, flight, false);
    }
  }

  /** Holds a call until its approval is answered, expires, the gateway's timeout passes, or the session is revoked. */
  async #awaitApproval(id: string, signal: AbortSignal): Promise<{ status: string; reason?: string }> {
    const deadline = Date.now() + this.config.approvals.timeoutSeconds * 1000;
    for (;;) {
      if (signal.aborted) throw signal.reason;
      const left = Math.ceil((deadline - Date.now()) / 1000);
      if (left <= 0) return { status: 'timed out at the gateway' };
      try {
        const r = await this.#custody.approvalStatus(id, Math.min(25, left), signal);
        if (r.status !== 'pending') return r;
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        this.#log(`approval ${id}: status check failed (${err instanceof Error ? err.message : String(err)}); retrying`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /**
   * Records tool.completed / tool.failed: in the background once the agent has the result
   * (`ledger.recordOutcomes: after-result`, the default), or durably before it
   * (`before-result`).
   */
  async #record(answer: DecisionAnswer | undefined, type: 'tool.completed' | 'tool.failed', up: Upstream, tool: string, callId: string, capture: 'full' | 'digest' | 'none', outcome: { result?: unknown; error?: string; cancelled?: boolean }, started: number): Promise<void> {
    if (answer === undefined) return;
    const s = answer.session;
    const data: Record<string, unknown> = { capture, durationMs: Math.round((performance.now() - started) * 1000) / 1000, upstreamCredentials: up.credentials.map(({ source, name, fingerprint }) => ({ source, name, fingerprint })) };
    if (outcome.result !== undefined && capture !== 'none') {
      const { value } = redactSecrets(outcome.result);
      data['result'] = capture === 'full' ? value : { $commitment: createDisclosure('/data/result', value).digest };
    }
    if (outcome.error !== undefined) data['error'] = redactSecrets(outcome.error).value.slice(0, 2048);
    if (outcome.cancelled === true) data['cancelled'] = true;
    const event: EventDraft = {
      id: randomUUID(),
      type,
      time: new Date().toISOString(),
      session: { id: s.id },
      initiator: s.initiator,
      chain: s.chain,
      actor: s.agent,
      cause: answer.call,
      tool: { name: `${up.name}.${tool}`, server: up.name, callId },
      data,
    };
    if (this.config.ledger.recordOutcomes === 'after-result') {
      this.#outcomes.record(event);
      return;
    }
    try {
      await this.#custody.append([event]);
    } catch (err) {
      this.#log(`could not record ${type} for call ${answer.call} before the result (${err instanceof Error ? err.message : String(err)}); recording it in the background`);
      this.#outcomes.record(event);
    }
  }

  // ---- kill switch -----------------------------------------------------------------

  #track(sid: string, f: InFlight, add: boolean): void {
    let set = this.#inflight.get(sid);
    if (add) {
      if (set === undefined) this.#inflight.set(sid, (set = new Set()));
      set.add(f);
      // The call's session was just checked (#session): active as of now.
      this.#confirmed.set(sid, performance.now());
    } else if (set !== undefined) {
      set.delete(f);
      if (set.size === 0) {
        this.#inflight.delete(sid);
        this.#confirmed.delete(sid);
      }
    }
    if (this.#inflight.size > 0 && this.#watch === undefined) {
      this.#watch = setInterval(() => void this.#checkRevoked(), this.config.revocationPollMs);
      this.#watch.unref();
    } else if (this.#inflight.size === 0 && this.#watch !== undefined) {
      clearInterval(this.#watch);
      this.#watch = undefined;
    }
  }

  /** Re-checks every session with calls in flight; cancels the calls of one that is no longer active. */
  async #checkRevoked(): Promise<void> {
    for (const [sid, flights] of [...this.#inflight]) {
      const first = flights.values().next().value;
      if (first === undefined) continue;
      let active: ActiveSession | undefined;
      try {
        active = await this.#custody.introspect(first.token);
      } catch (err) {
        // The server cannot say whether the session still stands. Failing closed, calls
        // do not go on unconfirmed for longer than the grace: a revocation may be what
        // cannot be seen.
        const unconfirmed = performance.now() - (this.#confirmed.get(sid) ?? 0);
        if (this.config.ledger.failMode === 'open' || unconfirmed <= this.config.revocationGraceMs) continue;
        const why = `${LEDGER_UNREACHABLE}: session ${sid} could not be confirmed active for ${Math.round(unconfirmed)} ms (${err instanceof Error ? err.message : String(err)})`;
        for (const f of flights) f.abort.abort(new Error(why));
        this.#log(`${why}: cancelled ${flights.size} call(s) in flight (fail closed)`);
        continue;
      }
      if (active !== undefined) {
        this.#confirmed.set(sid, performance.now());
        continue;
      }
      this.#sessions.delete(first.token);
      for (const f of flights) f.abort.abort(new Error(`session ${sid} was revoked`));
      this.#log(`session ${sid} is no longer active: cancelled ${flights.size} call(s) in flight`);
    }
  }

  // ---- transports --------------------------------------------------------------------

  /** Serves one agent over any MCP transport, with its session credential. */
  async connect(transport: Transport, credential: string): Promise<Server> {
    const server = this.#mcpServer(credential);
    await server.connect(transport);
    return server;
  }

  /** Serves one local agent over stdio (this process's stdin/stdout). */
  async serveStdio(credential: string): Promise<Server> {
    return this.connect(new StdioServerTransport(), credential);
  }

  /** The Protected Resource Metadata (RFC 9728) of `/mcp`. */
  resourceMetadata(): Record<string, unknown> {
    return {
      resource: `${this.#url ?? ''}/mcp`,
      authorization_servers: [this.config.ledger.url],
      bearer_methods_supported: ['header'],
      resource_name: 'Custody MCP gateway',
      resource_documentation: 'https://github.com/custody/custody/blob/main/docs/gateway.md',
    };
  }

  /** Listens for agents over Streamable HTTP at `/mcp`. @returns the base URL */
  async listen(): Promise<string> {
    const http = createHttpServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#log(`request failed: ${err instanceof Error ? err.message : String(err)}`);
        if (!res.headersSent) json(res, 500, { jsonrpc: '2.0', error: { code: ErrorCode.InternalError, message: 'internal error' }, id: null });
      });
    });
    this.#http = http;
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(this.config.listen.port, this.config.listen.host, () => resolve());
    });
    const addr = http.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : this.config.listen.port;
    this.#url = this.config.listen.publicUrl ?? `http://${this.config.listen.host.includes(':') ? `[${this.config.listen.host}]` : this.config.listen.host}:${port}`;
    return this.#url;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path === '/.well-known/oauth-protected-resource' || path === '/.well-known/oauth-protected-resource/mcp') {
      json(res, 200, this.resourceMetadata());
      return;
    }
    if (path !== '/mcp') {
      json(res, 404, { error: 'not_found', error_description: 'the MCP endpoint is /mcp' });
      return;
    }
    if (req.method === 'POST') {
      this.#posts.add(res);
      res.once('close', () => this.#posts.delete(res));
    }
    const metadata = `${this.#url}/.well-known/oauth-protected-resource`;
    const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
    if (m === null) {
      res.setHeader('www-authenticate', `Bearer resource_metadata="${metadata}"`);
      json(res, 401, { error: 'invalid_request', error_description: 'send your Custody session credential: Authorization: Bearer <credential>' });
      return;
    }
    const token = m[1]!;
    let s: ActiveSession;
    try {
      s = await this.#session(token);
    } catch (err) {
      if (err instanceof McpError && err.code === MCP_ERRORS.LEDGER_UNAVAILABLE) {
        // Names the refusal code (docs/gateway.md): "MCP error -32004: …".
        json(res, 503, { error: 'temporarily_unavailable', error_description: `MCP error ${err.code}: ${bareMessage(err)}` });
        return;
      }
      res.setHeader('www-authenticate', `Bearer resource_metadata="${metadata}", error="invalid_token", error_description="the session credential is not active"`);
      json(res, 401, { error: 'invalid_token', error_description: err instanceof McpError ? bareMessage(err) : 'the session credential is not active (revoked, closed or expired)' });
      return;
    }
    (req as IncomingMessage & { auth?: AuthInfo }).auth = { token, clientId: s.agent, scopes: s.scope, expiresAt: Math.floor(Date.parse(s.expiresAt) / 1000), extra: { sid: s.sid } };

    let body: unknown;
    if (req.method === 'POST') {
      try {
        body = JSON.parse(await readBody(req));
      } catch (err) {
        json(res, err instanceof RangeError ? 413 : 400, { jsonrpc: '2.0', error: { code: ErrorCode.ParseError, message: err instanceof RangeError ? 'body too large' : 'the body is not JSON' }, id: null });
        return;
      }
    }
    const sessionHeader = req.headers['mcp-session-id'];
    const mcpSession = typeof sessionHeader === 'string' ? this.#transports.get(sessionHeader) : undefined;
    if (mcpSession !== undefined) {
      if (mcpSession.sid !== s.sid) {
        json(res, 403, { jsonrpc: '2.0', error: { code: ErrorCode.InvalidRequest, message: 'this MCP session belongs to another Custody session' }, id: null });
        return;
      }
      await mcpSession.transport.handleRequest(req, res, body);
      return;
    }
    if (sessionHeader !== undefined || req.method !== 'POST' || !isInitializeRequest(body)) {
      json(res, sessionHeader !== undefined ? 404 : 400, { jsonrpc: '2.0', error: { code: ErrorCode.InvalidRequest, message: sessionHeader !== undefined ? 'unknown MCP session: initialize again' : 'start with an initialize request' }, id: null });
      return;
    }
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        this.#transports.set(id, { transport, sid: s.sid });
      },
    });
    transport.onclose = () => {
      if (transport.sessionId !== undefined) this.#transports.delete(transport.sessionId);
    };
    await this.#mcpServer().connect(transport);
    await transport.handleRequest(req, res, body);
  }

  /**
   * Stops serving, cancels calls in flight (each answered -32001 `CALL_CANCELLED`; up to a
   * second is given for those answers to go out), closes the upstream connections.
   */
  async close(): Promise<void> {
    if (this.#watch !== undefined) clearInterval(this.#watch);
    for (const flights of this.#inflight.values()) for (const f of flights) f.abort.abort(new Error('the gateway is shutting down'));
    if (this.#handlers.size > 0) {
      const deadline = Date.now() + 1000;
      await until(Promise.allSettled([...this.#handlers]), deadline);
      // The SDK writes a handler's answer a few ticks after the handler settles: over HTTP, on the
      // response of its POST, which then ends.
      await new Promise((r) => setImmediate(r));
      await until(Promise.all([...this.#posts].map((res) => new Promise((r) => res.once('close', r)))), deadline);
    }
    await Promise.all([...this.#transports.values()].map((t) => t.transport.close().catch(() => undefined)));
    await Promise.all([...this.#servers].map((s) => s.close().catch(() => undefined)));
    if (this.#http !== undefined) {
      this.#http.closeAllConnections();
      await new Promise<void>((r) => this.#http!.close(() => r()));
    }
    await Promise.all([...this.upstreams.values()].map((u) => u.client.close().catch(() => undefined)));
    const left = await this.#outcomes.close(this.config.ledger.timeoutMs);
    if (left > 0) this.#log(`${left} outcome event(s) (tool.completed / tool.failed) could not be recorded before shutdown`);
    await this.#custody.close().catch(() => undefined);
  }

  /**
   * Waits until the outcomes of finished calls are recorded (or `timeoutMs` passes).
   * @returns how many are still unrecorded
   */
  flushOutcomes(timeoutMs = this.config.ledger.timeoutMs): Promise<number> {
    return this.#outcomes.drain(timeoutMs);
  }
}

/** Waits for `p`, or until `deadline` (Date.now()) passes, whichever comes first. */
async function until(p: Promise<unknown>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))]);
  clearTimeout(timer);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new RangeError('body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
