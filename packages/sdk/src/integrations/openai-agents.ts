/**
 * `@custody/sdk/openai-agents`: Custody for the OpenAI Agents SDK for JS
 * (`@openai/agents`, an optional peer dependency). `custodyAgentTools` wraps
 * function tools so that each call is decided by policy before it runs;
 * `recordRun` hooks a Runner so that each agent's final output and each handoff
 * between agents is recorded.
 */
import type { FunctionTool, Runner, Tool } from '@openai/agents';

import { DeniedError } from '../errors.js';
import type { Capture, Session, UnavailableMode } from '../session.js';

/** Options of `custodyAgentTools`. */
export interface CustodyAgentToolsOptions {
  /** The server part of Custody tool names, `<server>.<tool>` (default: the client's `toolServer`). */
  server?: string;
  capture?: Capture | { arguments?: Capture; result?: Capture };
  whenUnavailable?: UnavailableMode;
  /**
   * A denied call: `tell-model` (default) answers the model with the denial and
   * its reasons, as a tool result, so the agent can change course; `throw`
   * ends the run with `DeniedError`.
   */
  onDenied?: 'tell-model' | 'throw';
}

/** Parses a tool call's JSON arguments (the model's; may be anything). */
function argsOf(input: string): Record<string, unknown> {
  try {
    const v = JSON.parse(input) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : { input: v };
  } catch {
    return { input };
  }
}

/**
 * Wraps an agent's function tools (others pass through unchanged).
 * @example
 * const agent = new Agent({ name: 'clerk', tools: custodyAgentTools(session, [readFile], { server: 'files' }) });
 */
export function custodyAgentTools<T extends Tool>(session: Session, tools: readonly T[], opts: CustodyAgentToolsOptions = {}): T[] {
  return tools.map((t) => {
    if (t.type !== 'function') return t;
    const f = t as unknown as FunctionTool;
    const invoke: FunctionTool['invoke'] = async (ctx, input, details) => {
      try {
        return await session.callTool(f.name, argsOf(input), () => f.invoke(ctx, input, details), {
          ...(details?.toolCall?.callId !== undefined ? { callId: details.toolCall.callId } : {}),
          ...(details?.signal !== undefined ? { signal: details.signal } : {}),
          ...(opts.server !== undefined ? { server: opts.server } : {}),
          ...(opts.capture !== undefined ? { capture: opts.capture } : {}),
          ...(opts.whenUnavailable !== undefined ? { whenUnavailable: opts.whenUnavailable } : {}),
        });
      } catch (err) {
        if (err instanceof DeniedError && opts.onDenied !== 'throw') {
          return `Custody denied this call (${err.code}): ${err.decision?.reasons.join('; ') ?? err.message}`;
        }
        throw err;
      }
    };
    return { ...f, invoke } as unknown as T;
  });
}

/**
 * Records each agent's final output of `runner`'s runs as `model.output` in
 * `session` (with the agent's name), and each handoff between agents
 * (`agent_handoff`) with `session.handoff()`: a `session.delegated` entry with
 * `data.handoff` (`stage: "offered"`, `to`: the next agent, `from`, `framework`).
 * The next agent runs in the same process and continues this session, so the
 * context is not used. What cannot be recorded (e.g. `RevokedError` for a handoff
 * of a revoked session) goes to the client's `delivery.onError` (a process warning
 * without one). Returns a function that stops recording.
 */
export function recordRun(session: Session, runner: Runner, opts: { handoffs?: boolean } = {}): () => void {
  const onEnd = (_ctx: unknown, agent: { name: string }, output: string) => {
    // A hook cannot throw into the run: a recording failure goes to the client's delivery.onError (else a process warning).
    void session.modelOutput(output, { data: { agent: agent.name } }).catch((err: unknown) => session.report(err instanceof Error ? err : new Error(String(err))));
  };
  const onHandoff = (_ctx: unknown, from: { name: string }, to: { name: string }) => {
    void session.handoff({ to: to.name, data: { from: from.name, framework: 'openai-agents', inProcess: true } }).catch((err: unknown) => session.report(err instanceof Error ? err : new Error(String(err))));
  };
  runner.on('agent_end', onEnd);
  if (opts.handoffs !== false) runner.on('agent_handoff', onHandoff);
  return () => {
    runner.off('agent_end', onEnd);
    runner.off('agent_handoff', onHandoff);
  };
}
