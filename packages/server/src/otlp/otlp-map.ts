/**
 * Maps OpenTelemetry spans to `external.otel.*` events: GenAI spans (the
 * semantic conventions' `gen_ai.operation.name`: invoke_agent, execute_tool,
 * chat …) become lower-assurance evidence that keeps its trace and span ids, so
 * it lines up with gateway-verified entries of the same trace. Spans without
 * GenAI or Custody attributes are skipped. See docs/sdk.md, "OTLP import".
 * @internal
 */
import { createHash } from 'node:crypto';

import type { AnyValue, KeyValue, OtlpSpan } from './otlp-decode.js';

/** `gen_ai.operation.name` → event type. */
export const OPERATION_TYPES: Readonly<Record<string, string>> = {
  invoke_agent: 'external.otel.agent_invoked',
  create_agent: 'external.otel.agent_created',
  invoke_workflow: 'external.otel.workflow_invoked',
  execute_tool: 'external.otel.tool_executed',
  chat: 'external.otel.model_called',
  text_completion: 'external.otel.model_called',
  generate_content: 'external.otel.model_called',
  embeddings: 'external.otel.embeddings',
};

/** Attributes whose values are content (prompts, outputs, arguments, results): recorded as commitments. */
const CONTENT: Readonly<Record<string, string>> = {
  'gen_ai.input.messages': 'prompt',
  'gen_ai.system_instructions': 'prompt',
  'gen_ai.prompt': 'prompt',
  'gen_ai.output.messages': 'output',
  'gen_ai.completion': 'output',
  'gen_ai.tool.call.arguments': 'arguments',
  'gen_ai.tool.call.result': 'result',
};

const MAX_STRING = 65_536;
const MAX_ATTRIBUTES = 128;
const SPAN_KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
const STATUS = ['unset', 'ok', 'error'];

/** Why a span was not imported. */
export class SpanRefused extends Error {}

/**
 * The text of a scalar from an untrusted body: strings as they are, numbers and
 * booleans as text, anything else (objects, arrays, null) undefined. Never calls
 * a value's own toString (OTLP/JSON is attacker-controlled: `{"toString":1}`).
 */
function scalarText(v: unknown): string | undefined {
  return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' ? String(v) : undefined;
}

/** A plain JS value of an AnyValue (depth-limited); null for what is not one. */
export function valueOf(v: AnyValue | undefined, depth = 0): unknown {
  if (v === undefined || v === null || typeof v !== 'object' || depth > 8) return null;
  if (v.stringValue !== undefined) return scalarText(v.stringValue)?.slice(0, MAX_STRING) ?? null;
  if (v.boolValue !== undefined) return Boolean(v.boolValue);
  if (v.intValue !== undefined) {
    const text = scalarText(v.intValue);
    if (text === undefined) return null;
    const n = Number(text);
    return Number.isSafeInteger(n) ? n : text.slice(0, 64);
  }
  if (v.doubleValue !== undefined) {
    const text = scalarText(v.doubleValue);
    if (text === undefined) return null;
    return Number.isFinite(Number(text)) ? Number(text) : text.slice(0, 64);
  }
  if (v.arrayValue !== undefined) {
    const values: unknown = v.arrayValue?.values;
    return (Array.isArray(values) ? (values as AnyValue[]) : []).slice(0, 256).map((x) => valueOf(x, depth + 1));
  }
  if (v.kvlistValue !== undefined) return attributesOf(v.kvlistValue?.values, depth + 1);
  if (v.bytesValue !== undefined) {
    const text = scalarText(v.bytesValue);
    return text === undefined ? null : { base64: text.slice(0, MAX_STRING) };
  }
  return null;
}

/** Attributes as an object (first MAX_ATTRIBUTES; `__proto__` dropped). */
export function attributesOf(list: KeyValue[] | undefined, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of (Array.isArray(list) ? list : []).slice(0, MAX_ATTRIBUTES)) {
    if (typeof kv?.key !== 'string' || kv.key === '__proto__' || kv.key.length > 256) continue;
    out[kv.key] = valueOf(kv.value, depth);
  }
  return out;
}

/** Unix nanoseconds (string or number) → RFC 3339 with milliseconds. */
function timeOf(nanos: string | number | undefined): string | undefined {
  if (nanos === undefined || nanos === '' || nanos === 0 || nanos === '0') return undefined;
  let ms: number;
  try {
    ms = Number(BigInt(typeof nanos === 'number' ? Math.trunc(nanos) : nanos) / 1_000_000n);
  } catch {
    return undefined;
  }
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) || ms < 0 || d.getUTCFullYear() > 9999 ? undefined : d.toISOString();
}

/** A stable event id for a span, so an exporter's retry is a duplicate, never a second entry. */
export function spanEventId(traceId: string, spanId: string): string {
  const h = createHash('sha256').update(`custody.otlp/v1:${traceId}:${spanId}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x80; // UUID version 8 (RFC 9562: custom)
  h[8] = (h[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v.slice(0, 512) : undefined);

/**
 * The `external.otel.*` event of one span, or undefined for a span that is
 * neither GenAI nor Custody-tagged.
 * @throws SpanRefused for a span without valid trace and span ids
 */
export function eventOfSpan(span: OtlpSpan, resource: Record<string, unknown>, scope: { name?: string; version?: string } | undefined): Record<string, unknown> | undefined {
  const attrs = attributesOf(span.attributes);
  const op = str(attrs['gen_ai.operation.name']);
  const genai = Object.keys(attrs).some((k) => k.startsWith('gen_ai.'));
  const custody = Object.keys(attrs).some((k) => k.startsWith('custody.'));
  if (!genai && !custody) return undefined;
  const traceId = typeof span.traceId === 'string' ? span.traceId.toLowerCase() : '';
  const spanId = typeof span.spanId === 'string' ? span.spanId.toLowerCase() : '';
  const name = scalarText(span.name) ?? '';
  if (!/^[0-9a-f]{32}$/.test(traceId) || /^0+$/.test(traceId)) throw new SpanRefused(`span ${JSON.stringify(name.slice(0, 80))}: traceId must be 32 hex digits, not all zero`);
  if (!/^[0-9a-f]{16}$/.test(spanId) || /^0+$/.test(spanId)) throw new SpanRefused(`span ${JSON.stringify(name.slice(0, 80))}: spanId must be 16 hex digits, not all zero`);

  const type = op === undefined ? 'external.otel.span' : (OPERATION_TYPES[op] ?? 'external.otel.genai_operation');
  const start = timeOf(span.startTimeUnixNano);
  const end = timeOf(span.endTimeUnixNano);
  const agentId = str(attrs['gen_ai.agent.id']) ?? str(attrs['gen_ai.agent.name']);
  const service = str(resource['service.name']) ?? 'unknown_service';
  const content: Record<string, unknown> = {};
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(attrs)) {
    const field = CONTENT[k];
    if (field === undefined) rest[k] = v;
    else if (content[field] === undefined) content[field] = v;
    else content[field] = [content[field], v];
  }
  const toolName = str(attrs['gen_ai.tool.name']);
  const callId = str(attrs['gen_ai.tool.call.id']);
  const kind = typeof span.kind === 'number' ? SPAN_KINDS[span.kind] : typeof span.kind === 'string' ? span.kind.replace(/^SPAN_KIND_/, '').toLowerCase() : undefined;
  const statusCode = span.status?.code;
  const status = typeof statusCode === 'number' ? STATUS[statusCode] : typeof statusCode === 'string' ? statusCode.replace(/^STATUS_CODE_/, '').toLowerCase() : undefined;
  const session = str(attrs['custody.session.id']);
  const usage = {
    ...(typeof attrs['gen_ai.usage.input_tokens'] === 'number' ? { inputTokens: attrs['gen_ai.usage.input_tokens'] } : {}),
    ...(typeof attrs['gen_ai.usage.output_tokens'] === 'number' ? { outputTokens: attrs['gen_ai.usage.output_tokens'] } : {}),
  };
  return {
    id: spanEventId(traceId, spanId),
    type,
    ...(start !== undefined ? { time: start } : {}),
    actor: agentId !== undefined ? { type: 'agent', id: agentId, verified: false } : { type: 'service', id: service, verified: false },
    trace: {
      traceId,
      spanId,
      ...(typeof span.flags === 'number' ? { flags: (span.flags & 0xff).toString(16).padStart(2, '0') } : {}),
      ...(typeof span.traceState === 'string' && span.traceState !== '' ? { state: span.traceState.slice(0, 512) } : {}),
    },
    ...(toolName !== undefined ? { tool: { name: toolName, ...(callId !== undefined ? { callId } : {}) } } : {}),
    data: {
      source: 'otlp',
      assurance: 'imported',
      ...(op !== undefined ? { operation: op } : {}),
      ...(session !== undefined ? { session } : {}),
      span: {
        name: name.slice(0, 512),
        ...(typeof span.parentSpanId === 'string' && /^[0-9a-f]{16}$/i.test(span.parentSpanId) ? { parentSpanId: span.parentSpanId.toLowerCase() } : {}),
        ...(kind !== undefined ? { kind } : {}),
        ...(start !== undefined ? { start } : {}),
        ...(end !== undefined ? { end } : {}),
        ...(status !== undefined ? { status } : {}),
        ...(typeof span.status?.message === 'string' && span.status.message !== '' ? { statusMessage: span.status.message.slice(0, 2048) } : {}),
      },
      ...(str(attrs['gen_ai.request.model']) !== undefined || str(attrs['gen_ai.response.model']) !== undefined ? { model: str(attrs['gen_ai.response.model']) ?? str(attrs['gen_ai.request.model']) } : {}),
      ...(str(attrs['gen_ai.provider.name'] ?? attrs['gen_ai.system']) !== undefined ? { provider: str(attrs['gen_ai.provider.name'] ?? attrs['gen_ai.system']) } : {}),
      ...(Object.keys(usage).length > 0 ? { usage } : {}),
      attributes: rest,
      resource: { 'service.name': service, ...Object.fromEntries(Object.entries(resource).filter(([k]) => k.startsWith('service.') || k.startsWith('telemetry.sdk.')).slice(0, 16)) },
      ...(scalarText(scope?.name) !== undefined ? { scope: { name: scalarText(scope!.name)!.slice(0, 256), ...(scalarText(scope!.version) !== undefined ? { version: scalarText(scope!.version)!.slice(0, 64) } : {}) } } : {}),
      ...content,
    },
  };
}
