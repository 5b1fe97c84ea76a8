/**
 * W3C Trace Context for events: taken from the active OpenTelemetry span when
 * `@opentelemetry/api` is installed (an optional peer dependency), otherwise a
 * trace per session and a fresh span id per event.
 * See https://www.w3.org/TR/trace-context/ (traceparent: version-traceid-spanid-flags).
 */

/** The envelope's `trace` part. */
export interface TraceContext {
  traceId: string;
  spanId: string;
  flags?: string;
  state?: string;
}

/** The part of `@opentelemetry/api` the SDK uses. */
export interface OtelApi {
  trace: { getActiveSpan(): { spanContext(): { traceId: string; spanId: string; traceFlags: number; traceState?: { serialize(): string } } } | undefined };
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO = /^0+$/;

function hex(bytes: number): string {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** A random W3C trace id (32 lowercase hex digits). */
export function newTraceId(): string {
  return hex(16);
}

/** A random W3C span id (16 lowercase hex digits). */
export function newSpanId(): string {
  return hex(8);
}

/** Formats a `traceparent` header value. */
export function formatTraceparent(t: TraceContext): string {
  return `00-${t.traceId}-${t.spanId}-${t.flags ?? '01'}`;
}

/** Parses a `traceparent` header value; undefined when malformed (W3C: ignore it). */
export function parseTraceparent(value: string, state?: string): TraceContext | undefined {
  const m = TRACEPARENT.exec(value.trim());
  if (m === null || ZERO.test(m[1]!) || ZERO.test(m[2]!)) return undefined;
  return { traceId: m[1]!, spanId: m[2]!, flags: m[3]!, ...(state !== undefined && state !== '' ? { state: state.slice(0, 512) } : {}) };
}

let loaded: Promise<OtelApi | undefined> | undefined;

/** Loads `@opentelemetry/api` once, if it is installed. @internal */
export function loadOtel(): Promise<OtelApi | undefined> {
  // A variable specifier keeps bundlers from requiring the optional peer dependency.
  const name = '@opentelemetry/api';
  loaded ??= import(/* @vite-ignore */ name).then(
    (m: unknown) => {
      const api = ((m as { default?: unknown }).default ?? m) as Partial<OtelApi>;
      return typeof api.trace?.getActiveSpan === 'function' ? (api as OtelApi) : undefined;
    },
    () => undefined,
  );
  return loaded;
}

/** The active OpenTelemetry span's context, if there is a valid one. @internal */
export function activeOtelContext(otel: OtelApi | undefined): TraceContext | undefined {
  const span = otel?.trace.getActiveSpan();
  if (span === undefined) return undefined;
  const c = span.spanContext();
  if (!/^[0-9a-f]{32}$/.test(c.traceId) || !/^[0-9a-f]{16}$/.test(c.spanId) || ZERO.test(c.traceId) || ZERO.test(c.spanId)) return undefined;
  const state = c.traceState?.serialize();
  return { traceId: c.traceId, spanId: c.spanId, flags: (c.traceFlags & 0xff).toString(16).padStart(2, '0'), ...(state !== undefined && state !== '' ? { state: state.slice(0, 512) } : {}) };
}
