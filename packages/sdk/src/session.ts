/**
 * A session: one bounded grant (objective, initiator, agent, scope, expiry)
 * obtained by token exchange. Records what the agent does in the session's
 * chain, with causation ids and W3C trace context filled in, and runs tool calls
 * through the decision point.
 */
import { createDisclosure, redactSecrets } from '@custody/core';
import { v7 as uuidv7 } from 'uuid';

import type { CustodyCore } from './client.js';
import { type CredentialFacts, type DelegationLink, type Principal } from './credential-claims.js';
import { type DecisionInfo, DeniedError, ApprovalTimeoutError, LedgerUnavailableError, RequestError, RevokedError, SdkError } from './errors.js';
import { encodeHandoff, handoffFingerprint } from './handoff.js';
import { apiErrorOf, refused } from './http.js';
import type { RecordResult } from './outbox.js';
import type { OutgoingEvent } from './spool-store.js';
import { activeOtelContext, formatTraceparent, newSpanId, type TraceContext } from './trace-context.js';

/** How much of a value is recorded: the value (committed, disclosure kept), its commitment only, or nothing. */
export type Capture = 'full' | 'digest' | 'none';

/** What to do with a tool call when the decision point or the ledger cannot be reached. */
export type UnavailableMode = 'fail-closed' | 'proceed';

/** An event to record (the SDK fills id, time, session, identities, cause and trace). */
export interface RecordInput {
  /** An event type of the v1 taxonomy, e.g. `model.output`, or `external.*`. */
  type: string;
  data?: Record<string, unknown>;
  tool?: { name: string; server?: string; callId?: string };
  /** The event that led to this one (default: the session's previous event). */
  cause?: string;
  /** Trace context (default: the active OpenTelemetry span, else the session's trace). */
  trace?: TraceContext;
  /** The source's time (default: now). */
  time?: string;
}

/** Options of a wrapped tool. */
export interface ToolOptions {
  /** The server part of `<server>.<name>` (default: the part of the name before its first dot, else the client's `toolServer`). */
  server?: string;
  /** What to record of the arguments and the result (default `full`; secrets are redacted first). */
  capture?: Capture | { arguments?: Capture; result?: Capture };
  /** Override the client's `toolsWhenUnavailable` for this tool. */
  whenUnavailable?: UnavailableMode;
  /** Longest wait for a human's approval, in ms (default: the client's `approvalTimeoutMs`). */
  approvalTimeoutMs?: number;
}

/** Per-call context for `callTool`. */
export interface CallOptions extends ToolOptions {
  /** The caller's id of the call (e.g. the framework's tool call id). */
  callId?: string;
}

/** Options of `delegate`. */
export interface DelegateOptions {
  /** The sub-agent's own token (OIDC JWT or SPIFFE JWT-SVID). */
  actorToken: string;
  /** A part of this session's scope (default: all of it). */
  scope?: string | string[];
  objective?: string;
  audience?: string | string[];
  lifetimeSeconds?: number;
}

/** Options of `handoff`. */
export interface HandoffOptions {
  /** The part of this session's scope the consumer may continue with (default: all of it). A narrower scope makes the consumer delegate. */
  scope?: string | string[];
  /** The task handed off, in words (the child session's objective; default: this session's). */
  objective?: string;
  /** Who the work is meant for (an agent id; recorded, informational). */
  to?: string;
  /** How long the context may be continued, in seconds (default and at most: until this session's credential expires). */
  lifetimeSeconds?: number;
  /** More to record in the handoff event's `data.handoff`. */
  data?: Record<string, unknown>;
}

/** What `handoff` returns: put `context` in the queue message. */
export interface Handoff {
  /** The id of the handoff event in this session (`session.delegated`, `data.handoff.stage: "offered"`). */
  id: string;
  /** The compact context (`chf1.…`) for the consumer's `custody.continueHandoff`. It carries this session's credential: treat the message as a secret. */
  context: string;
  /** The handoff's trace context, for the message's `traceparent` header (OpenTelemetry propagation). */
  traceparent: string;
  tracestate?: string;
  /** When the context stops being usable (RFC 3339). */
  expiresAt: string;
  /** What the event recorded (`delivered` or `spooled`). */
  recorded: RecordResult;
}

interface DecisionAnswer {
  decision: DecisionInfo;
  call: string;
  decisionEvent: string;
  approval?: { id: string; status: string; expiresAt: string };
}

const TOOL_SERVER = /^[A-Za-z0-9_-]{1,64}$/;

/** JSON-safe copy of a value (functions, symbols and cycles become strings). */
function jsonSafe(value: unknown): unknown {
  if (value === undefined) return null;
  try {
    return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))) as unknown;
  } catch {
    return String(value);
  }
}

/** The `data` fields recording `value` under `field` at a capture level. */
function captured(field: string, value: unknown, capture: Capture): Record<string, unknown> {
  if (capture === 'none') return {};
  const safe = jsonSafe(value);
  if (capture === 'digest') return { [field]: { $commitment: createDisclosure(`/data/${field}`, safe).digest } };
  const r = redactSecrets(safe);
  return { [field]: r.value, ...(r.redactions.length > 0 ? { redacted: r.redactions } : {}) };
}

function captureOf(c: ToolOptions['capture']): { arguments: Capture; result: Capture } {
  if (c === undefined || typeof c === 'string') return { arguments: c ?? 'full', result: c ?? 'full' };
  return { arguments: c.arguments ?? 'full', result: c.result ?? 'full' };
}

/** One session. Get one from `Custody.openSession`, `Session.delegate` or `Custody.resume`. */
export class Session {
  /** The session id (`ses-…`). */
  readonly id: string;
  /** The session credential (a short-lived JWT). Treat it as a secret. */
  readonly credential: string;
  /** Scope tokens the session holds. */
  readonly scope: readonly string[];
  /** When the credential expires (RFC 3339). */
  readonly expiresAt: string;
  /** The trace this session's events belong to unless an OpenTelemetry span is active. */
  readonly traceId: string;
  /** The human who asked for the work. */
  readonly initiator: Principal;
  /** The agent acting in this session. */
  readonly actor: Principal;
  /** The delegation chain, root first. */
  readonly chain: readonly DelegationLink[];
  /** The parent session, for a delegated one. */
  readonly parent: string | undefined;
  readonly #core: CustodyCore;
  readonly #facts: CredentialFacts;
  #last: string | undefined;
  #closed = false;

  /** @internal Use `Custody.openSession`. */
  constructor(core: CustodyCore, credential: string, facts: CredentialFacts, opts: { traceId: string; cause?: string }) {
    this.#core = core;
    this.#facts = facts;
    this.id = facts.sessionId;
    this.credential = credential;
    this.scope = facts.scope;
    this.expiresAt = facts.expiresAt;
    this.initiator = facts.initiator;
    this.actor = facts.actor;
    this.chain = facts.chain;
    this.parent = facts.parent;
    this.traceId = opts.traceId;
    this.#last = opts.cause;
  }

  /** The id of the last event this session recorded (the default cause of the next). */
  get lastEvent(): string | undefined {
    return this.#last;
  }

  /** The trace context for a new event: the active OpenTelemetry span, else a new span in the session's trace. */
  traceContext(): TraceContext {
    return activeOtelContext(this.#core.otel) ?? { traceId: this.traceId, spanId: newSpanId(), flags: '01' };
  }

  /**
   * Records one event in the session's chain, delivered now or spooled when the
   * ledger is away.
   * @example await session.record({ type: 'external.app.note', data: { note: 'cache warmed' } })
   */
  async record(input: RecordInput): Promise<RecordResult> {
    const event = this.#event(input);
    const result = await this.#core.outbox.submit(event);
    this.#last = event.id;
    return result;
  }

  /** Records `prompt.received` (the prompt is committed; secrets are redacted first). */
  prompt(prompt: unknown, opts: { capture?: Capture; data?: Record<string, unknown>; cause?: string } = {}): Promise<RecordResult> {
    return this.record({ type: 'prompt.received', ...(opts.cause !== undefined ? { cause: opts.cause } : {}), data: { ...opts.data, ...captured('prompt', prompt, opts.capture ?? 'full') } });
  }

  /** Records `model.output` (the output is committed; secrets are redacted first). */
  modelOutput(output: unknown, opts: { model?: string; usage?: Record<string, number>; capture?: Capture; data?: Record<string, unknown>; cause?: string } = {}): Promise<RecordResult> {
    return this.record({
      type: 'model.output',
      ...(opts.cause !== undefined ? { cause: opts.cause } : {}),
      data: { ...opts.data, ...(opts.model !== undefined ? { model: opts.model } : {}), ...(opts.usage !== undefined ? { usage: opts.usage } : {}), ...captured('output', output, opts.capture ?? 'full') },
    });
  }

  /**
   * Wraps a tool function: each call asks the decision point, waits for a
   * human's approval when one is required, runs `fn` only when allowed, and
   * records its result or error.
   * @example const refund = session.tool('payments.refund', (a: { order: string }) => api.refund(a.order));
   *          await refund({ order: '1234' }); // DeniedError if policy says no
   */
  tool<A extends Record<string, unknown>, R>(name: string, fn: (args: A) => R | Promise<R>, opts: ToolOptions = {}): (args: A) => Promise<R> {
    return (args: A) => this.callTool(name, args, () => fn(args), opts);
  }

  /**
   * One policy-checked tool call (what `tool()` wrappers and the framework integrations use).
   * @throws DeniedError, ApprovalTimeoutError, RevokedError, LedgerUnavailableError (fail-closed), or what `run` throws
   */
  async callTool<R>(name: string, args: Record<string, unknown>, run: () => R | Promise<R>, opts: CallOptions = {}): Promise<R> {
    const { server, tool } = this.#toolName(name, opts.server);
    const full = `${server}.${tool}`;
    const capture = captureOf(opts.capture);
    const toolPart = { name: full, server, ...(opts.callId !== undefined ? { callId: opts.callId } : {}) };
    const mode = opts.whenUnavailable ?? this.#core.options.toolsWhenUnavailable;
    let call: string;
    try {
      // What happened before the call is delivered first, so the log keeps the order it happened in.
      await this.#core.outbox.flush(0);
      const answer = await this.#decideAndWait(
        full,
        { tool: { server, name: tool }, arguments: jsonSafe(args), capture: capture.arguments, ...(opts.callId !== undefined ? { callId: opts.callId } : {}), ...(this.#last !== undefined ? { cause: this.#last } : {}) },
        opts,
      );
      call = answer.call;
    } catch (err) {
      if (!(err instanceof LedgerUnavailableError) || mode === 'fail-closed') throw err;
      // Proceeding without a decision is a deployment's choice: say so in the record.
      const requested = await this.record({
        type: 'tool.requested',
        tool: toolPart,
        data: { ...captured('arguments', args, capture.arguments), capture: capture.arguments, decision: 'unavailable', whenUnavailable: 'proceed', reason: err.message.slice(0, 1000) },
      });
      call = requested.id;
    }
    const started = Date.now();
    let result: R;
    try {
      result = await run();
    } catch (err) {
      const e = err instanceof Error ? { name: err.name, message: err.message.slice(0, 4000) } : { name: 'Error', message: String(err).slice(0, 4000) };
      await this.record({ type: 'tool.failed', cause: call, tool: toolPart, data: { error: redactSecrets(e).value, durationMs: Date.now() - started } });
      throw err;
    }
    await this.record({ type: 'tool.completed', cause: call, tool: toolPart, data: { ...captured('result', result, capture.result), capture: capture.result, durationMs: Date.now() - started } });
    return result;
  }

  /**
   * Delegates part of this session to a sub-agent (token exchange with this
   * session's credential as the subject): the child's scope, audience and
   * lifetime can only be narrower.
   */
  async delegate(opts: DelegateOptions): Promise<Session> {
    return this.#core.exchange({
      subject_token: this.credential,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      actor_token: opts.actorToken,
      actor_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      ...(opts.scope !== undefined ? { scope: Array.isArray(opts.scope) ? opts.scope.join(' ') : opts.scope } : {}),
      ...(opts.objective !== undefined ? { objective: opts.objective } : {}),
      ...(opts.audience !== undefined ? { audience: Array.isArray(opts.audience) ? opts.audience.join(' ') : opts.audience } : {}),
      ...(opts.lifetimeSeconds !== undefined ? { requested_lifetime: String(opts.lifetimeSeconds) } : {}),
    }, this.#last, this.id);
  }

  /**
   * Hands the task to another agent through a queue (or any loosely coupled
   * pipeline): records the handoff in this session's chain and returns a compact
   * context for the message. The consumer continues with
   * `custody.continueHandoff(context, { actorToken })` — a delegated child
   * session, only ever narrower, whose events name this handoff as their cause
   * and share its trace — or, without `actorToken` and when nothing was narrowed,
   * in this same session (another process of the same agent).
   *
   * Recorded as `session.delegated` (the taxonomy's nearest type) with
   * `data.handoff`: `{ stage: "offered", id, scope, objective?, to?, expiresAt,
   * context }` where `context` is the SHA-256 fingerprint of the context string.
   * Keep this session open until the consumer has continued: closing or revoking
   * it ends the credential the context carries.
   * @example
   * const h = await session.handoff({ scope: 'files.read_file', objective: 'summarise invoice 1234', to: 'agent:summariser' });
   * await queue.send({ body: { invoice: 1234 }, headers: { 'custody-handoff': h.context, traceparent: h.traceparent } });
   * @throws SdkError `SDK_HANDOFF_INVALID` (a scope wider than this session's, a bad lifetime), RevokedError (this session has ended)
   */
  async handoff(opts: HandoffOptions = {}): Promise<Handoff> {
    if (this.#closed) throw new RevokedError(this.id, 'cannot hand off a closed session');
    const scope = opts.scope === undefined ? undefined : [...new Set((Array.isArray(opts.scope) ? opts.scope : opts.scope.split(' ')).filter((t) => t !== ''))].sort();
    if (scope !== undefined) {
      const wider = scope.filter((t) => !this.scope.includes(t));
      if (scope.length === 0 || wider.length > 0) throw new SdkError('SDK_HANDOFF_INVALID', scope.length === 0 ? 'a handoff scope must name at least one scope token' : `cannot hand off scope this session does not hold: ${wider.join(' ')}`);
    }
    const credentialEnd = Date.parse(this.expiresAt);
    if (credentialEnd <= Date.now()) throw new RevokedError(this.id, `the session credential expired at ${this.expiresAt}`);
    if (opts.lifetimeSeconds !== undefined && (!Number.isInteger(opts.lifetimeSeconds) || opts.lifetimeSeconds < 1)) throw new SdkError('SDK_HANDOFF_INVALID', 'lifetimeSeconds must be a whole number of seconds, at least 1');
    const expiresAt = new Date(Math.min(credentialEnd, opts.lifetimeSeconds === undefined ? credentialEnd : Date.now() + opts.lifetimeSeconds * 1000)).toISOString();
    const id = uuidv7();
    const trace = this.traceContext();
    const narrowed = scope !== undefined && scope.length < this.scope.length ? scope : undefined;
    const context = encodeHandoff({
      id,
      session: this.id,
      credential: this.credential,
      traceparent: formatTraceparent(trace),
      ...(trace.state !== undefined ? { tracestate: trace.state } : {}),
      ...(narrowed !== undefined ? { scope: narrowed } : {}),
      ...(opts.objective !== undefined ? { objective: opts.objective } : {}),
      ...(opts.to !== undefined ? { to: opts.to } : {}),
      expiresAt,
    });
    const recorded = await this.#recordEvent({
      id,
      type: 'session.delegated',
      trace,
      data: {
        handoff: {
          ...opts.data,
          stage: 'offered',
          id,
          scope: narrowed ?? [...this.scope],
          ...(opts.objective !== undefined ? { objective: opts.objective } : {}),
          ...(opts.to !== undefined ? { to: opts.to } : {}),
          expiresAt,
          context: handoffFingerprint(context),
        },
      },
    });
    return { id, context, traceparent: formatTraceparent(trace), ...(trace.state !== undefined ? { tracestate: trace.state } : {}), expiresAt, recorded };
  }

  /** @internal Records the consumer's side of a handoff (what `continueHandoff` calls). */
  async acceptHandoff(h: { id: string; session: string; trace: TraceContext; scope?: string[]; to?: string }, mode: 'delegated' | 'same-session'): Promise<RecordResult> {
    return this.#recordEvent({
      id: uuidv7(),
      type: 'session.delegated',
      cause: h.id,
      trace: { traceId: h.trace.traceId, spanId: newSpanId(), flags: h.trace.flags ?? '01', ...(h.trace.state !== undefined ? { state: h.trace.state } : {}) },
      data: { handoff: { stage: 'accepted', id: h.id, from: h.session, mode, scope: [...this.scope], ...(h.to !== undefined ? { to: h.to } : {}) } },
    });
  }

  async #recordEvent(input: RecordInput & { id: string }): Promise<RecordResult> {
    const event = { ...this.#event(input), id: input.id };
    const result = await this.#core.outbox.submit(event);
    this.#last = event.id;
    return result;
  }

  /**
   * Ends the task: delivers what waits in the spool, then closes the session
   * (revoking its descendants) and writes the seal.
   * @throws LedgerUnavailableError when spooled events cannot be delivered (nothing is closed; retry); RevokedError when the session already ended
   */
  async close(opts: { reason?: string; flushTimeoutMs?: number } = {}): Promise<{ sealed: boolean; revoked: string[] }> {
    if (this.#closed) return { sealed: true, revoked: [] };
    await this.#core.outbox.flush(opts.flushTimeoutMs ?? 10_000);
    const answer = await this.#core.http.send<{ sealed?: boolean; revoked?: string[] }>({
      method: 'POST',
      path: `/v1/sessions/${encodeURIComponent(this.id)}/close`,
      bearer: this.credential,
      json: opts.reason !== undefined ? { reason: opts.reason } : {},
      traceparent: formatTraceparent(this.traceContext()),
      timeoutMs: this.#core.options.requestTimeoutMs,
    });
    if (answer.status === 200) {
      this.#closed = true;
      return { sealed: answer.body.sealed === true, revoked: answer.body.revoked ?? [] };
    }
    const e = apiErrorOf(answer);
    if (answer.status === 401 || answer.status === 409) throw new RevokedError(this.id, `cannot close: ${e.message} (${e.code})`);
    throw refused(answer, `closing session ${this.id}`);
  }

  #toolName(name: string, server: string | undefined): { server: string; tool: string } {
    let s = server;
    let t = name;
    const dot = name.indexOf('.');
    if (s === undefined && dot > 0 && TOOL_SERVER.test(name.slice(0, dot))) {
      s = name.slice(0, dot);
      t = name.slice(dot + 1);
    }
    return { server: s ?? this.#core.options.toolServer, tool: t };
  }

  #event(input: RecordInput): OutgoingEvent {
    const cause = input.cause ?? this.#last;
    return {
      id: uuidv7(),
      type: input.type,
      time: input.time ?? new Date().toISOString(),
      session: { id: this.id },
      initiator: this.initiator,
      actor: this.actor,
      chain: [...this.chain],
      credential: { jti: this.#facts.jti, fingerprint: this.#facts.fingerprint },
      trace: input.trace ?? this.traceContext(),
      ...(cause !== undefined ? { cause } : {}),
      ...(input.tool !== undefined ? { tool: input.tool } : {}),
      ...(input.data !== undefined ? { data: input.data } : {}),
    };
  }

  async #decide(tool: string, body: Record<string, unknown>): Promise<DecisionAnswer> {
    const answer = await this.#core.http.send<DecisionAnswer>({
      method: 'POST',
      path: '/v1/decisions',
      bearer: this.credential,
      json: body,
      traceparent: formatTraceparent(this.traceContext()),
      timeoutMs: this.#core.options.requestTimeoutMs,
    });
    if (answer.status === 200) return answer.body;
    const e = apiErrorOf(answer);
    if (answer.status === 401) throw new RevokedError(this.id, `the decision point refused the session credential for ${tool}: ${e.message}`);
    if (answer.status === 409 && e.code === 'APPROVAL_NOT_GRANTED') throw new DeniedError('SDK_APPROVAL_DENIED', tool, `${tool}: ${e.message}`);
    throw refused(answer, `deciding ${tool}`);
  }

  async #decideAndWait(tool: string, body: Record<string, unknown>, opts: ToolOptions): Promise<DecisionAnswer> {
    let answer = await this.#decide(tool, body);
    if (answer.decision.effect === 'approval_required') {
      const approval = answer.approval?.id;
      if (approval === undefined) throw new RequestError('SDK_REQUEST_FAILED', 200, 'APPROVAL_MISSING', `the decision point asked for approval of ${tool} but opened none`);
      const status = await this.#awaitApproval(tool, approval, opts.approvalTimeoutMs ?? this.#core.options.approvalTimeoutMs);
      if (status === 'denied') throw new DeniedError('SDK_APPROVAL_DENIED', tool, `a human denied ${tool} (approval ${approval})`, { decision: answer.decision, approval });
      if (status === 'expired') throw new DeniedError('SDK_APPROVAL_EXPIRED', tool, `the approval for ${tool} expired unanswered (approval ${approval})`, { decision: answer.decision, approval });
      // Granted: ask again with the approval, which the decision point checks against this exact call and uses once.
      answer = await this.#decide(tool, { ...body, approval });
    }
    if (answer.decision.effect !== 'allow') {
      throw new DeniedError('SDK_DENIED', tool, `policy denied ${tool}${answer.decision.reasons.length > 0 ? `: ${answer.decision.reasons.join('; ')}` : ''}`, { decision: answer.decision });
    }
    return answer;
  }

  async #awaitApproval(tool: string, id: string, timeoutMs: number): Promise<string> {
    const started = Date.now();
    for (;;) {
      const left = timeoutMs - (Date.now() - started);
      if (left <= 0) throw new ApprovalTimeoutError(tool, id, timeoutMs);
      const wait = Math.max(0, Math.min(25, Math.floor(left / 1000)));
      const answer = await this.#core.http.send<{ status: string }>({
        method: 'GET',
        path: `/v1/approvals/${encodeURIComponent(id)}/status?wait=${wait}`,
        bearer: this.#core.apiKey,
        timeoutMs: wait * 1000 + this.#core.options.requestTimeoutMs,
      });
      if (answer.status !== 200) throw refused(answer, `waiting for approval ${id}`);
      if (answer.body.status !== 'pending') return answer.body.status;
      if (wait === 0) await new Promise((r) => setTimeout(r, Math.min(left, 250)));
    }
  }
}
