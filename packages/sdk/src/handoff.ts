/**
 * Handoff contexts: what `session.handoff()` puts in a queue message so that the
 * agent consuming it continues the same causal chain (the producer's session) or
 * a delegated child session, with the producer's trace. A context is one
 * URL-safe string: `chf1.<base64url(JSON)>`. Its authority is the session
 * credential inside it — an EdDSA JWT Custody signed, verified by the authority
 * when the consumer continues (signature, issuer, not revoked, closed or
 * expired). The rest (trace context, the handoff event, the narrowing offered) is
 * bound by the SHA-256 fingerprint of the whole string, which the producer
 * records in the ledger with the handoff. See docs/sdk.md, "Handoffs".
 * @internal
 */
import { fromBase64url, toBase64url } from '@custody/core';

import { credentialFacts, fingerprintOf } from './credential-claims.js';
import { SdkError } from './errors.js';
import { parseTraceparent, type TraceContext } from './trace-context.js';

/** The prefix of a v1 handoff context. */
export const HANDOFF_PREFIX = 'chf1.';
/** Longest context accepted (a credential is at most a few KiB). */
const MAX_CONTEXT = 16_384;

/** What a handoff context says. */
export interface HandoffContext {
  /** The id of the producer's handoff event (`session.delegated` with `data.handoff.stage: "offered"`). */
  id: string;
  /** The producer's session. */
  session: string;
  /** The producer's session credential (a secret: the context is one). */
  credential: string;
  /** W3C trace context of the handoff, as a `traceparent` header value. */
  traceparent: string;
  tracestate?: string;
  /** The scope offered to the consumer (absent: all of the producer's). */
  scope?: string[];
  /** The task offered, in words. */
  objective?: string;
  /** Who it is meant for (informational: the consumer's own token decides who it is). */
  to?: string;
  /** After this the context must not be continued (RFC 3339). */
  expiresAt: string;
}

function invalid(message: string, cause?: unknown): SdkError<'SDK_HANDOFF_INVALID'> {
  return new SdkError('SDK_HANDOFF_INVALID', message, cause === undefined ? undefined : { cause });
}

const utf8 = new TextEncoder();

/** Encodes a handoff context. @internal */
export function encodeHandoff(h: HandoffContext): string {
  return HANDOFF_PREFIX + toBase64url(utf8.encode(JSON.stringify(h)));
}

/** The SHA-256 fingerprint of a context string, as the producer's handoff event records it. */
export function handoffFingerprint(context: string): string {
  return fingerprintOf(context);
}

const str = (v: unknown, max: number): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;

/**
 * Reads a handoff context (from a queue message: untrusted until the authority
 * has verified its credential). Checks its shape, that the credential names the
 * same session, and that it has not expired.
 * @throws SdkError `SDK_HANDOFF_INVALID`
 */
export function parseHandoff(context: string, now = new Date()): HandoffContext & { trace: TraceContext } {
  if (typeof context !== 'string' || !context.startsWith(HANDOFF_PREFIX)) throw invalid(`not a Custody handoff context (expected ${HANDOFF_PREFIX}…)`);
  if (context.length > MAX_CONTEXT) throw invalid(`a handoff context is at most ${MAX_CONTEXT} characters`);
  let h: Record<string, unknown>;
  try {
    const v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(fromBase64url(context.slice(HANDOFF_PREFIX.length)))) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new TypeError('not an object');
    h = v as Record<string, unknown>;
  } catch (cause) {
    throw invalid('the handoff context does not decode', cause);
  }
  if (!str(h['id'], 64) || !str(h['session'], 128) || !str(h['credential'], MAX_CONTEXT) || !str(h['traceparent'], 64) || !str(h['expiresAt'], 40)) {
    throw invalid('the handoff context lacks id, session, credential, traceparent or expiresAt');
  }
  const trace = parseTraceparent(h['traceparent'], typeof h['tracestate'] === 'string' ? h['tracestate'] : undefined);
  if (trace === undefined) throw invalid('the handoff context has no valid traceparent');
  const scope = h['scope'];
  if (scope !== undefined && (!Array.isArray(scope) || scope.length === 0 || !scope.every((s) => str(s, 256)))) throw invalid('the handoff scope must be a list of scope tokens');
  for (const k of ['objective', 'to', 'tracestate'] as const) if (h[k] !== undefined && !str(h[k], 4096)) throw invalid(`the handoff ${k} must be text`);
  let facts;
  try {
    facts = credentialFacts(h['credential']);
  } catch (cause) {
    throw invalid('the handoff credential is not a Custody session credential', cause);
  }
  if (facts.sessionId !== h['session']) throw invalid(`the handoff names session ${h['session']} but its credential is for ${facts.sessionId}`);
  const expires = Date.parse(h['expiresAt']);
  if (Number.isNaN(expires)) throw invalid('the handoff expiresAt is not a time');
  if (expires <= now.getTime()) throw invalid(`the handoff expired at ${h['expiresAt']}`);
  return {
    id: h['id'],
    session: h['session'],
    credential: h['credential'],
    traceparent: h['traceparent'],
    ...(typeof h['tracestate'] === 'string' ? { tracestate: h['tracestate'] } : {}),
    ...(scope !== undefined ? { scope: scope as string[] } : {}),
    ...(typeof h['objective'] === 'string' ? { objective: h['objective'] } : {}),
    ...(typeof h['to'] === 'string' ? { to: h['to'] } : {}),
    expiresAt: h['expiresAt'],
    trace,
  };
}
