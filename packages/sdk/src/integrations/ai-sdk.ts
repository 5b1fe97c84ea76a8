/**
 * `@custody/sdk/ai`: Custody for the Vercel AI SDK (`ai`, an optional peer
 * dependency). `custodyTools` wraps `tool()` definitions so that every call the
 * model makes is decided by policy (and approved by a human when required)
 * before `execute` runs, and its result or error is recorded in the session.
 */
import type { Tool, ToolExecutionOptions } from 'ai';

import type { Capture, Session, UnavailableMode } from '../session.js';

/** Options of `custodyTools`. */
export interface CustodyToolsOptions {
  /** The server part of each tool's Custody name, `<server>.<tool>` (default: the client's `toolServer`, unless the key has a dot). */
  server?: string;
  /** What to record of arguments and results (default `full`, secrets redacted). */
  capture?: Capture | { arguments?: Capture; result?: Capture };
  /** Override the client's fail mode for these tools. */
  whenUnavailable?: UnavailableMode;
}

/** True for an `async function*` (whose call returns its stream without running any of its code). */
function isAsyncGeneratorFunction(fn: unknown): boolean {
  return Object.prototype.toString.call(fn) === '[object AsyncGeneratorFunction]';
}

/**
 * Wraps AI SDK tools: the model's calls go through Custody's decision point.
 * A denied call throws `DeniedError` from `execute`, which the AI SDK reports
 * to the model as a tool error. A streaming tool (`async *execute`, preliminary
 * results) stays a stream: each value reaches the AI SDK unchanged, and
 * `tool.completed` records the last one (the tool's output) when the stream ends,
 * or `tool.failed` when it throws (`Session.callToolStream`).
 * @example
 * const result = await generateText({ model, tools: custodyTools(session, { lookup, refund }), prompt });
 */
export function custodyTools<T extends Record<string, Tool>>(session: Session, tools: T, opts: CustodyToolsOptions = {}): T {
  const out: Record<string, Tool> = {};
  for (const [name, t] of Object.entries(tools)) {
    const execute = t.execute;
    if (execute === undefined) {
      out[name] = t; // a client-side tool: nothing runs here
      continue;
    }
    const callOpts = (options: ToolExecutionOptions) => ({
      callId: options.toolCallId,
      // An aborted generateText ends a decision or an approval wait: the call does not run later.
      ...(options.abortSignal !== undefined ? { signal: options.abortSignal } : {}),
      ...(opts.server !== undefined ? { server: opts.server } : {}),
      ...(opts.capture !== undefined ? { capture: opts.capture } : {}),
      ...(opts.whenUnavailable !== undefined ? { whenUnavailable: opts.whenUnavailable } : {}),
    });
    out[name] = {
      ...t,
      // A streaming tool (`async *execute`: preliminary results) must stay an async iterable, returned at once: the
      // AI SDK only streams what `execute` returns synchronously. The call is decided when the AI SDK starts reading.
      execute: isAsyncGeneratorFunction(execute)
        ? (input: unknown, options: ToolExecutionOptions) => session.callToolStream(name, (input ?? {}) as Record<string, unknown>, () => execute.call(t, input as never, options) as AsyncIterable<unknown>, callOpts(options))
        : (input: unknown, options: ToolExecutionOptions) => session.callTool(name, (input ?? {}) as Record<string, unknown>, () => execute.call(t, input as never, options) as unknown, callOpts(options)),
    } as Tool;
  }
  return out as T;
}
