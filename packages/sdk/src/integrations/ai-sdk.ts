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

/**
 * Wraps AI SDK tools: the model's calls go through Custody's decision point.
 * A denied call throws `DeniedError` from `execute`, which the AI SDK reports
 * to the model as a tool error.
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
    out[name] = {
      ...t,
      execute: (input: unknown, options: ToolExecutionOptions) =>
        session.callTool(name, (input ?? {}) as Record<string, unknown>, () => execute.call(t, input as never, options) as unknown, {
          callId: options.toolCallId,
          // An aborted generateText ends a decision or an approval wait: the call does not run later.
          ...(options.abortSignal !== undefined ? { signal: options.abortSignal } : {}),
          ...(opts.server !== undefined ? { server: opts.server } : {}),
          ...(opts.capture !== undefined ? { capture: opts.capture } : {}),
          ...(opts.whenUnavailable !== undefined ? { whenUnavailable: opts.whenUnavailable } : {}),
        }),
    } as Tool;
  }
  return out as T;
}
