/**
 * A session: one bounded grant (objective, initiator, agent, scope, expiry)
 * obtained by token exchange. Records what the agent does in the session's
 * chain, with causation ids and W3C trace context filled in, and runs tool calls
 * through the decision point.
 */
import { createDisclosure, isCustodyOnlyType, redactSecrets, scopeExcess } from '@custody/core';
import { v7 as uuidv7 } from 'uuid';

import type { CustodyCore } from './client.js';
import { type CredentialFacts, type DelegationLink, type Principal } from './credential-claims.js';
import { AbortedError, ApprovalTimeoutError, ConfigError, type DecisionInfo, DeniedError, LedgerUnavailableError, RequestError, RevokedError, SdkError } from './errors.js';
import { encodeHandoff, handoffFingerprint } from './handoff.js';
import { apiErrorOf, refused } from './http.js';
import type { RecordResult } from './outbox.js';
import { optionalCapture, optionalFunction, optionalMode, optionalMs, optionalPositiveInteger, optionalSignal, optionalString, optionsObject, requiredString, tokenList } from './validate.js';
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
  /**
   * Aborts the call while it is being decided or waits for a human's approval
   * (`AbortedError`, `SDK_ABORTED`; the call does not run). The integrations pass
   * the framework's signal (the AI SDK's `abortSignal`, the MCP client's `signal`).
   * Once the call runs, the signal is the tool's business.
   */
  signal?: AbortSignal;
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

/** Lone UTF-16 surrogates (not part of a pair): JSON can carry them, the ledger refuses them. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** `s` with every lone surrogate replaced by U+FFFD (what a UTF-8 encoder does). */
export function wellFormed(s: string): string {
  return s.replace(LONE_SURROGATE, '\uFFFD');
}

/** The first `max` UTF-16 units of `s`, never cutting a surrogate pair in two. */
export function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  const end = max > 0 && /[\uD800-\uDBFF]/.test(s[max - 1]!) && /[\uDC00-\uDFFF]/.test(s[max] ?? '') ? max - 1 : max;
  return s.slice(0, end);
}

/** A copy of a JSON value with every string (values and keys) well-formed. */
function wellFormedDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return wellFormed(value);
  if (value === null || typeof value !== 'object' || depth > 256) return value;
  if (Array.isArray(value)) return value.map((v) => wellFormedDeep(v, depth + 1));
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value; // a Date, a class instance…: JSON.stringify's business
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) Object.defineProperty(out, wellFormed(k), { value: wellFormedDeep(v, depth + 1), enumerable: true, writable: true, configurable: true });
  return out;
}

/** JSON-safe copy of a value (functions, symbols and cycles become strings; lone surrogates U+FFFD). */
function jsonSafe(value: unknown): unknown {
  if (value === undefined) return null;
  try {
    return wellFormedDeep(JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))) as unknown);
  } catch {
    return wellFormed(String(value));
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

/** True for a value `for await` reads (a stream of partial results), which callTool does not read. */
function isAsyncIterable(value: unknown): boolean {
  return value !== null && typeof value === 'object' && typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function';
}

/** What `tool.failed` records of a thrown value: its name and message (cut on a code point, secrets redacted). */
function errorData(err: unknown): { name: string; message: string } {
  const e = err instanceof Error ? { name: wellFormed(truncate(String(err.name), 200)), message: wellFormed(truncate(String(err.message), 4000)) } : { name: 'Error', message: wellFormed(truncate(String(err), 4000)) };
  return redactSecrets(e).value as { name: string; message: string };
}

/** True once `signal` has aborted (a function, so that TypeScript does not narrow `aborted` across awaits). */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (isAborted(signal)) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** How often an approval wait re-checks that the session is still active (s). */
const REVOCATION_CHECK_S = 5;

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
    if (input === null || typeof input !== 'object' || typeof input.type !== 'string' || input.type === '') throw new ConfigError('record.type', 'an event needs a type (a string of the v1 taxonomy, e.g. model.output, or external.*)');
    // Only Custody's own services record these (the ledger refuses them, 403, from an ingest key).
    if (isCustodyOnlyType(input.type)) {
      throw new SdkError(
        'SDK_EVENT_TYPE_RESERVED',
        `${input.type} events record what Custody itself did (an answered approval, a credential's life, a revocation, the ledger's governance): the ledger refuses them from an agent's key, so the SDK does not send or spool them`,
      );
    }
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
    requiredString('tool.name', name);
    optionalFunction('tool.fn', fn);
    if (fn === undefined) throw new ConfigError('tool.fn', 'expected the tool function');
    checkToolOptions('tool', opts);
    return (args: A) => this.callTool(name, args, () => fn(args), opts);
  }

  /**
   * One policy-checked tool call (what `tool()` wrappers and the framework integrations use).
   *
   * Under `whenUnavailable: 'proceed'` the call runs undecided only when no
   * decision could be obtained at all. Once the decision point has answered
   * (`deny`, or `approval_required`), an outage afterwards (while waiting for the
   * approval, or asking again with it) never runs the call: the wait goes on
   * until `approvalTimeoutMs` (`ApprovalTimeoutError`), and a failure of the
   * second decision throws `LedgerUnavailableError`.
   *
   * Once `run` has run, its own result is returned (or its own error rethrown)
   * even when recording the outcome fails; that failure is reported to the
   * client's `delivery.onError` (`SDK_OUTCOME_UNRECORDED`).
   *
   * When `run` returns a stream (an async iterable), it is returned unread and
   * `tool.completed` records `data.stream: true` and no result: use callToolStream
   * to record a streaming tool's values.
   * @throws DeniedError, ApprovalTimeoutError, RevokedError, AbortedError, LedgerUnavailableError (fail-closed, or after a decision), or what `run` throws
   */
  async callTool<R>(name: string, args: Record<string, unknown>, run: () => R | Promise<R>, opts: CallOptions = {}): Promise<R> {
    requiredString('callTool.name', name);
    if (typeof run !== 'function') throw new ConfigError('callTool.run', 'expected the function that runs the tool');
    const { full, call, toolPart, capture } = await this.#authorize('callTool', name, args, opts);
    const started = Date.now();
    let result: R;
    try {
      result = await run();
    } catch (err) {
      await this.#recordOutcome(full, call, { type: 'tool.failed', cause: call, tool: toolPart, data: { error: errorData(err), durationMs: Date.now() - started } });
      throw err;
    }
    // A stream (an async iterable: a generator, a ReadableStream) is handed back unread: its
    // values come after this record, so none is recorded (its JSON would be a misleading {}).
    // `data.stream: true` says so; callToolStream records what such a tool streams.
    const outcome = isAsyncIterable(result) ? { stream: true } : captured('result', result, capture.result);
    await this.#recordOutcome(full, call, { type: 'tool.completed', cause: call, tool: toolPart, data: { ...outcome, capture: capture.result, durationMs: Date.now() - started } });
    return result;
  }

  /**
   * One policy-checked call of a tool that streams (an async iterable of partial results,
   * e.g. an AI SDK tool whose `execute` is an `async function*`). The call is decided (and
   * approved) when the stream is first read; only then does `run` run. Every value passes
   * through unchanged. When the stream ends, `tool.completed` records the last value (what
   * the AI SDK takes as the tool's output) as `data.result` and `data.chunks` (how many
   * values); when it throws, `tool.failed` records the error (and `data.chunks`); when the
   * reader stops early, `tool.failed` records `data.cancelled: true`.
   * @throws (from the stream) what `callTool` throws, or what the tool's stream throws
   */
  async *callToolStream<T>(name: string, args: Record<string, unknown>, run: () => AsyncIterable<T>, opts: CallOptions = {}): AsyncGenerator<T, void, undefined> {
    requiredString('callToolStream.name', name);
    if (typeof run !== 'function') throw new ConfigError('callToolStream.run', 'expected the function that runs the tool');
    const { full, call, toolPart, capture } = await this.#authorize('callToolStream', name, args, opts);
    const started = Date.now();
    let chunks = 0;
    let last: T | undefined;
    let ended = false;
    try {
      const stream = run();
      if (stream === null || typeof stream !== 'object' || typeof (stream as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] !== 'function') throw new ConfigError('callToolStream.run', 'expected a function that returns an async iterable');
      for await (const value of stream) {
        chunks++;
        last = value;
        yield value;
      }
      ended = true;
    } catch (err) {
      ended = true;
      await this.#recordOutcome(full, call, { type: 'tool.failed', cause: call, tool: toolPart, data: { error: errorData(err), chunks, durationMs: Date.now() - started } });
      throw err;
    } finally {
      if (!ended) {
        // The reader stopped early (break, return()): the tool did not finish.
        await this.#recordOutcome(full, call, { type: 'tool.failed', cause: call, tool: toolPart, data: { error: { name: 'StreamCancelled', message: `the caller stopped reading the stream after ${chunks} value(s)` }, cancelled: true, chunks, durationMs: Date.now() - started } });
      }
    }
    await this.#recordOutcome(full, call, { type: 'tool.completed', cause: call, tool: toolPart, data: { ...captured('result', last, capture.result), capture: capture.result, chunks, durationMs: Date.now() - started } });
  }

  /** Decides (and awaits approval of) one call; returns once it may run, with what recording its outcome needs. */
  async #authorize(fn: string, name: string, args: Record<string, unknown>, opts: CallOptions): Promise<{ full: string; call: string; toolPart: { name: string; server: string; callId?: string }; capture: { arguments: Capture; result: Capture } }> {
    requiredString(`${fn}.name`, name);
    checkToolOptions(fn, opts);
    optionalString(`${fn}.callId`, opts.callId);
    const signal = optionalSignal(`${fn}.signal`, opts.signal);
    const { server, tool } = this.#toolName(name, opts.server);
    const full = `${server}.${tool}`;
    const capture = captureOf(opts.capture);
    const toolPart = { name: full, server, ...(opts.callId !== undefined ? { callId: opts.callId } : {}) };
    const mode = opts.whenUnavailable ?? this.#core.options.toolsWhenUnavailable;
    const aborted = (cause?: unknown) => new AbortedError(full, `${full}: the caller aborted the call before it ran`, cause === undefined ? undefined : { cause });
    if (isAborted(signal)) throw aborted(signal?.reason);
    /** Set once the decision point has answered: from then on, `proceed` never applies. */
    const progress = { decided: false };
    let call: string;
    try {
      try {
        // What happened before the call is delivered first, so the log keeps the order it happened in.
        await this.#core.outbox.flush(0);
      } catch (err) {
        // Under proceed, events that cannot be delivered yet must not stop the decision point from deciding.
        if (!(err instanceof LedgerUnavailableError) || mode !== 'proceed') throw err;
      }
      const answer = await this.#decideAndWait(
        full,
        { tool: { server, name: tool }, arguments: jsonSafe(args), capture: capture.arguments, ...(opts.callId !== undefined ? { callId: opts.callId } : {}), ...(this.#last !== undefined ? { cause: this.#last } : {}) },
        opts,
        progress,
        signal,
      );
      call = answer.call;
    } catch (err) {
      if (isAborted(signal) && !(err instanceof DeniedError || err instanceof RevokedError)) throw aborted(err);
      // Only a mode of exactly 'proceed' proceeds, and only when no decision exists.
      if (!(err instanceof LedgerUnavailableError) || mode !== 'proceed' || progress.decided) throw err;
      // Proceeding without a decision is a deployment's choice: say so in the record.
      const requested = await this.record({
        type: 'tool.requested',
        tool: toolPart,
        data: { ...captured('arguments', args, capture.arguments), capture: capture.arguments, decision: 'unavailable', whenUnavailable: 'proceed', reason: truncate(err.message, 1000) },
      });
      call = requested.id;
    }
    if (isAborted(signal)) {
      // Decided (and perhaps approved) but aborted before it ran: the call's trail says so, and it does not run.
      await this.#recordOutcome(full, call, { type: 'tool.failed', cause: call, tool: toolPart, data: { error: { name: 'AbortError', message: 'the caller aborted the call before it ran' }, aborted: true, durationMs: 0 } });
      throw aborted(signal?.reason);
    }
    return { full, call, toolPart, capture };
  }

  /**
   * Records a call's outcome after the tool ran (or was aborted). Never throws:
   * the tool's own result or error is what the caller gets. When the ledger
   * refuses the outcome itself, an outcome without the value (`data.unrecordable`)
   * is recorded instead; what still fails is reported (`SDK_OUTCOME_UNRECORDED`).
   */
  async #recordOutcome(tool: string, call: string, input: RecordInput): Promise<void> {
    try {
      await this.record(input);
      return;
    } catch (first) {
      let cause: unknown = first;
      if (first instanceof RequestError) {
        try {
          const { durationMs, capture } = input.data ?? {};
          await this.record({ ...input, data: { unrecordable: { code: first.apiCode, message: truncate(first.message, 1000) }, ...(capture !== undefined ? { capture } : {}), ...(durationMs !== undefined ? { durationMs } : {}) } });
          cause = undefined;
        } catch (second) {
          cause = second;
        }
      }
      const why = first instanceof Error ? first.message : String(first);
      this.#core.outbox.report(
        new SdkError(
          'SDK_OUTCOME_UNRECORDED',
          cause === undefined
            ? `${tool} (call ${call}) ran, but the ledger refused its ${input.type} as recorded: an outcome without the value was recorded instead (${why})`
            : `${tool} (call ${call}) ran, but its ${input.type} could not be recorded; the caller got the tool's own result or error (${why})`,
          { cause: first },
        ),
      );
    }
  }

  /**
   * Delegates part of this session to a sub-agent (token exchange with this
   * session's credential as the subject): the child's scope, audience and
   * lifetime can only be narrower.
   */
  async delegate(opts: DelegateOptions): Promise<Session> {
    const o = optionsObject('delegate', opts, false);
    requiredString('delegate.actorToken', o['actorToken']);
    if (o['scope'] !== undefined) tokenList('delegate.scope', o['scope']);
    optionalString('delegate.objective', o['objective']);
    if (o['audience'] !== undefined) tokenList('delegate.audience', o['audience']);
    optionalPositiveInteger('delegate.lifetimeSeconds', o['lifetimeSeconds']);
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
    const o = optionsObject('handoff', opts, true);
    if (o['scope'] !== undefined) tokenList('handoff.scope', o['scope']);
    optionalString('handoff.objective', o['objective']);
    optionalString('handoff.to', o['to']);
    if (o['data'] !== undefined) optionsObject('handoff.data', o['data'], false);
    if (this.#closed) throw new RevokedError(this.id, 'cannot hand off a closed session');
    // A revoked (or closed elsewhere) session's context could never be continued: refuse rather than record an offer nobody can take.
    if (!(await this.#stillActive(undefined))) throw new RevokedError(this.id, 'cannot hand off: the session was revoked, closed or has expired');
    const scope = opts.scope === undefined ? undefined : [...new Set((Array.isArray(opts.scope) ? opts.scope : opts.scope.split(' ')).filter((t) => t !== ''))].sort();
    if (scope !== undefined) {
      const wider = scopeExcess(scope, this.scope);
      if (scope.length === 0 || wider.length > 0) throw new SdkError('SDK_HANDOFF_INVALID', scope.length === 0 ? 'a handoff scope must name at least one scope token' : `cannot hand off scope this session does not hold: ${wider.join(' ')}`);
    }
    const credentialEnd = Date.parse(this.expiresAt);
    if (credentialEnd <= Date.now()) throw new RevokedError(this.id, `the session credential expired at ${this.expiresAt}`);
    if (opts.lifetimeSeconds !== undefined && (!Number.isInteger(opts.lifetimeSeconds) || opts.lifetimeSeconds < 1)) throw new SdkError('SDK_HANDOFF_INVALID', 'lifetimeSeconds must be a whole number of seconds, at least 1');
    const expiresAt = new Date(Math.min(credentialEnd, opts.lifetimeSeconds === undefined ? credentialEnd : Date.now() + opts.lifetimeSeconds * 1000)).toISOString();
    const id = uuidv7();
    const trace = this.traceContext();
    // Anything but this session's own scope is narrower (checked above): `files.read_file` of `files.*` too.
    const narrowed = scope !== undefined && (scope.length !== this.scope.length || scope.some((t) => !this.scope.includes(t))) ? scope : undefined;
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

  /** @internal Reports a problem the caller did not see thrown (the client's `delivery.onError`, else a process warning). */
  report(err: Error): void {
    this.#core.outbox.report(err);
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
      ...(input.tool !== undefined ? { tool: wellFormedDeep(input.tool) as RecordInput['tool'] } : {}),
      // The ledger refuses lone surrogates: they become U+FFFD rather than cost the event.
      ...(input.data !== undefined ? { data: wellFormedDeep(input.data) as Record<string, unknown> } : {}),
    };
  }

  async #decide(tool: string, body: Record<string, unknown>, signal: AbortSignal | undefined): Promise<DecisionAnswer> {
    const answer = await this.#core.http.send<DecisionAnswer>({
      method: 'POST',
      path: '/v1/decisions',
      bearer: this.credential,
      json: body,
      traceparent: formatTraceparent(this.traceContext()),
      timeoutMs: this.#core.options.requestTimeoutMs,
      ...(signal !== undefined ? { signal } : {}),
    });
    if (answer.status === 200) {
      const b = answer.body as Partial<DecisionAnswer> | undefined;
      const effect = b !== null && typeof b === 'object' ? b.decision?.effect : undefined;
      if ((effect !== 'allow' && effect !== 'deny' && effect !== 'approval_required') || typeof b!.call !== 'string') {
        // Not the decision point's answer (a maintenance page, a proxy): no decision was obtained.
        throw new LedgerUnavailableError('SDK_LEDGER_UNAVAILABLE', `POST /v1/decisions answered 200 with a body that is not a decision (is \`url\` Custody?): ${typeof (answer.body as unknown) === 'string' ? JSON.stringify((answer.body as unknown as string).slice(0, 80)) : 'no decision'}`);
      }
      const d = b!.decision!;
      return { ...(b as DecisionAnswer), decision: { ...d, policies: Array.isArray(d.policies) ? d.policies : [], reasons: Array.isArray(d.reasons) ? d.reasons : [] } };
    }
    const e = apiErrorOf(answer);
    if (answer.status === 401) throw new RevokedError(this.id, `the decision point refused the session credential for ${tool}: ${e.message}`);
    if (answer.status === 409 && e.code === 'APPROVAL_NOT_GRANTED') throw new DeniedError('SDK_APPROVAL_DENIED', tool, `${tool}: ${e.message}`);
    throw refused(answer, `deciding ${tool}`);
  }

  async #decideAndWait(tool: string, body: Record<string, unknown>, opts: ToolOptions, progress: { decided: boolean }, signal: AbortSignal | undefined): Promise<DecisionAnswer> {
    let answer = await this.#decide(tool, body, signal);
    progress.decided = true;
    if (answer.decision.effect === 'approval_required') {
      const approval = answer.approval?.id;
      if (approval === undefined) throw new RequestError('SDK_REQUEST_FAILED', 200, 'APPROVAL_MISSING', `the decision point asked for approval of ${tool} but opened none`);
      const status = await this.#awaitApproval(tool, approval, opts.approvalTimeoutMs ?? this.#core.options.approvalTimeoutMs, signal);
      if (status === 'denied') throw new DeniedError('SDK_APPROVAL_DENIED', tool, `a human denied ${tool} (approval ${approval})`, { decision: answer.decision, approval });
      if (status === 'expired') throw new DeniedError('SDK_APPROVAL_EXPIRED', tool, `the approval for ${tool} expired unanswered (approval ${approval})`, { decision: answer.decision, approval });
      // Granted: ask again with the approval, which the decision point checks against this exact call and uses once.
      answer = await this.#decide(tool, { ...body, approval }, signal);
    }
    if (answer.decision.effect !== 'allow') {
      throw new DeniedError('SDK_DENIED', tool, `policy denied ${tool}${answer.decision.reasons.length > 0 ? `: ${answer.decision.reasons.join('; ')}` : ''}`, { decision: answer.decision });
    }
    return answer;
  }

  /** True unless Custody says this session's credential is no longer active (revoked, closed or expired, also through an ancestor). */
  async #stillActive(signal: AbortSignal | undefined): Promise<boolean> {
    if (Date.parse(this.expiresAt) <= Date.now()) return false;
    try {
      const answer = await this.#core.http.send<{ active?: unknown }>({
        method: 'POST',
        path: '/oauth/introspect',
        bearer: this.#core.apiKey,
        form: { token: this.credential },
        timeoutMs: this.#core.options.requestTimeoutMs,
        ...(signal !== undefined ? { signal } : {}),
      });
      return !(answer.status === 200 && answer.body !== null && typeof answer.body === 'object' && answer.body.active === false);
    } catch {
      return true; // Unknown (unreachable): the decision point refuses a revoked credential anyway.
    }
  }

  /**
   * Waits for a human's answer: long polls of at most REVOCATION_CHECK_S seconds,
   * each followed by a check that the session is still active. An outage does not
   * end the wait (it is retried until the timeout); a revocation or the caller's
   * abort does.
   */
  async #awaitApproval(tool: string, id: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<string> {
    const started = Date.now();
    let outage: LedgerUnavailableError | undefined;
    let retry = 250;
    for (;;) {
      if (isAborted(signal)) throw new AbortedError(tool, `${tool}: the caller aborted the wait for approval ${id}; the call did not run`, { cause: signal?.reason });
      const left = timeoutMs - (Date.now() - started);
      if (left <= 0) throw new ApprovalTimeoutError(tool, id, timeoutMs, outage === undefined ? undefined : { cause: outage });
      const wait = Math.max(0, Math.min(REVOCATION_CHECK_S, Math.floor(left / 1000)));
      let answer;
      try {
        answer = await this.#core.http.send<{ status: string }>({
          method: 'GET',
          path: `/v1/approvals/${encodeURIComponent(id)}/status?wait=${wait}`,
          bearer: this.#core.apiKey,
          timeoutMs: wait * 1000 + this.#core.options.requestTimeoutMs,
          ...(signal !== undefined ? { signal } : {}),
        });
      } catch (err) {
        if (!(err instanceof LedgerUnavailableError)) throw err;
        if (isAborted(signal)) continue;
        // An outage while a human decides is not "no decision": keep waiting (never proceed) until the timeout.
        outage = err;
        await sleep(Math.min(retry, Math.max(0, timeoutMs - (Date.now() - started))), signal);
        retry = Math.min(retry * 2, 5_000);
        continue;
      }
      retry = 250;
      if (answer.status !== 200) throw refused(answer, `waiting for approval ${id}`);
      const status = (answer.body as { status?: unknown } | undefined)?.status;
      if (status === 'granted' || status === 'denied') return status;
      if (status !== 'pending' && status !== 'expired') {
        outage = new LedgerUnavailableError('SDK_LEDGER_UNAVAILABLE', `GET /v1/approvals/${id}/status answered 200 with a body that is not an approval's status`);
        await sleep(Math.min(1_000, Math.max(0, left)), signal);
        continue;
      }
      // Still pending, or expired (which a revocation also causes): is the session still alive?
      if (!(await this.#stillActive(signal))) {
        throw new RevokedError(this.id, `the session was revoked, closed or has expired while ${tool} waited for approval ${id}; the call did not run: stop the task`);
      }
      if (status === 'expired') return status;
      if (wait === 0) await sleep(Math.min(left, 250), signal);
    }
  }
}

/** Checks the options of `tool()` / `callTool()`. */
function checkToolOptions(fn: string, opts: unknown): void {
  const o = optionsObject(`${fn}.options`, opts, true);
  optionalMode(`${fn}.whenUnavailable`, o['whenUnavailable']);
  optionalMs(`${fn}.approvalTimeoutMs`, o['approvalTimeoutMs']);
  optionalCapture(`${fn}.capture`, o['capture']);
  const server = o['server'];
  if (server !== undefined && (typeof server !== 'string' || !TOOL_SERVER.test(server))) throw new ConfigError(`${fn}.server`, 'must be 1-64 characters of A-Z a-z 0-9 _ -');
}
