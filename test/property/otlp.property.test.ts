/**
 * Property-based tests of the OTLP import's parsers (issue 9, adversarial input):
 * protobuf ExportTraceServiceRequest decoding and the span → `external.otel.*`
 * mapping that both encodings feed. Arbitrary bytes and mutated requests only
 * ever raise ApiError `OTLP_INVALID` (decoding) or SpanRefused (a span without
 * valid ids), as POST /v1/traces expects; protobuf round-trips; and every event
 * the mapping produces is one the ledger accepts (or refuses with a FormatError,
 * which the route counts as a rejected span).
 */
import { fileURLToPath } from 'node:url';

import { FormatError, prepareEvent, type EventDraft } from '@custody/core';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';

import { ApiError } from '../../packages/server/src/errors.js';
import { decodeTraceRequest, type ExportTraceRequest, type OtlpSpan } from '../../packages/server/src/otlp/otlp-decode.js';
import { attributesOf, eventOfSpan, SpanRefused } from '../../packages/server/src/otlp/otlp-map.js';
import { hostile, mutated } from '../fuzz/schema-arbitrary.js';

const RUNS = Number(process.env['PROPERTY_RUNS'] ?? (process.env['SOAK'] === '1' ? 3000 : 300));

const PROTO = fileURLToPath(new URL('../../packages/server/proto/', import.meta.url));
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => `${PROTO}${target}`;
root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto');
const Request = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');

/** What POST /v1/traces does with a decoded request, minus the append: every span mapped and prepared. */
function importAll(req: ExportTraceRequest): { events: number; refused: number } {
  let events = 0;
  let refused = 0;
  if (req.resourceSpans !== undefined && !Array.isArray(req.resourceSpans)) return { events, refused: 1 };
  for (const rs of req.resourceSpans ?? []) {
    const resource = attributesOf(rs?.resource?.attributes);
    for (const ss of Array.isArray(rs?.scopeSpans) ? rs.scopeSpans : []) {
      for (const span of Array.isArray(ss?.spans) ? ss.spans : []) {
        try {
          const raw = span !== null && typeof span === 'object' ? eventOfSpan(span, resource, ss.scope) : undefined;
          if (raw === undefined) continue;
          // The ledger's own envelope rules (the route prepares every event the same way).
          prepareEvent({ ...raw, time: (raw['time'] as string | undefined) ?? '2026-11-22T00:00:00.000Z' } as EventDraft, { tenant: 'acme' });
          events++;
        } catch (err) {
          if (err instanceof SpanRefused || err instanceof FormatError) refused++;
          else throw err;
        }
      }
    }
  }
  return { events, refused };
}

const hex = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const anyValue: fc.Arbitrary<Record<string, unknown>> = fc.letrec<{ v: Record<string, unknown> }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.string({ maxLength: 20 }).map((s) => ({ stringValue: s })),
    fc.boolean().map((b) => ({ boolValue: b })),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((i) => ({ intValue: i.toString() })),
    fc.double().map((d) => ({ doubleValue: d })),
    fc.uint8Array({ maxLength: 8 }).map((b) => ({ bytesValue: b })),
    fc.array(tie('v'), { maxLength: 3 }).map((values) => ({ arrayValue: { values } })),
    fc.array(fc.record({ key: fc.string({ maxLength: 8 }), value: tie('v') }), { maxLength: 3 }).map((values) => ({ kvlistValue: { values } })),
  ),
})).v;
const attributes = fc.array(
  fc.record({ key: fc.oneof(fc.constantFrom('gen_ai.operation.name', 'gen_ai.agent.id', 'gen_ai.tool.name', 'gen_ai.tool.call.arguments', 'gen_ai.usage.input_tokens', 'custody.session.id', 'service.name'), fc.string({ maxLength: 12 })), value: anyValue }),
  { maxLength: 6 },
);
/** An ExportTraceServiceRequest as protobufjs objects (ids as bytes). */
const protoRequest = fc.record({
  resourceSpans: fc.array(
    fc.record({
      resource: fc.record({ attributes }),
      scopeSpans: fc.array(
        fc.record({
          scope: fc.record({ name: fc.string({ maxLength: 8 }), version: fc.string({ maxLength: 4 }) }),
          spans: fc.array(
            fc.record({
              traceId: fc.oneof(hex(16), fc.uint8Array({ maxLength: 20 })),
              spanId: fc.oneof(hex(8), fc.uint8Array({ maxLength: 10 })),
              parentSpanId: hex(8),
              name: fc.string({ maxLength: 16 }),
              kind: fc.integer({ min: 0, max: 5 }),
              startTimeUnixNano: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
              endTimeUnixNano: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
              attributes: fc.array(fc.constant({ key: 'gen_ai.operation.name', value: { stringValue: 'chat' } }), { maxLength: 1 }).chain((a) => attributes.map((b) => [...a, ...b])),
              status: fc.record({ code: fc.integer({ min: 0, max: 2 }), message: fc.string({ maxLength: 8 }) }),
              flags: fc.nat({ max: 0xffffffff }),
              traceState: fc.string({ maxLength: 10 }),
            }),
            { maxLength: 3 },
          ),
        }),
        { maxLength: 2 },
      ),
    }),
    { maxLength: 2 },
  ),
});
const encode = (obj: unknown) => Request.encode(Request.fromObject(obj as Record<string, unknown>)).finish();

/** Runs `f`; passes when it returns or throws ApiError OTLP_INVALID. */
function decodeOrOtlpInvalid(bytes: Uint8Array): ExportTraceRequest | undefined {
  try {
    return decodeTraceRequest(bytes);
  } catch (err) {
    if (!(err instanceof ApiError) || err.code !== 'OTLP_INVALID') throw new Error(`threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, { cause: err });
    return undefined;
  }
}

describe('OTLP protobuf', () => {
  it('round-trips: decoded spans keep their ids (as hex), names and attributes', () => {
    fc.assert(
      fc.property(protoRequest, (req) => {
        const decoded = decodeTraceRequest(encode(req));
        const spans = (decoded.resourceSpans ?? []).flatMap((rs) => (rs.scopeSpans ?? []).flatMap((ss) => ss.spans ?? []));
        const originals = req.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
        expect(spans.length).toBe(originals.length);
        spans.forEach((s, i) => {
          const o = originals[i]!;
          expect(s.traceId ?? '').toBe(Buffer.from(o.traceId).toString('hex'));
          expect(s.spanId ?? '').toBe(Buffer.from(o.spanId).toString('hex'));
          expect(s.name ?? '').toBe(o.name);
          expect(s.attributes?.length ?? 0).toBe(o.attributes.length);
        });
        importAll(decoded);
      }),
      { numRuns: RUNS },
    );
  });

  it('raises only OTLP_INVALID on arbitrary bytes and on any single-byte mutation or truncation of a request; the mapping never throws', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }),
          fc.tuple(protoRequest, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([req, pos, x]) => {
            const bytes = encode(req).slice();
            if (bytes.length > 0) bytes[pos % bytes.length]! ^= x;
            return bytes;
          }),
          fc.tuple(protoRequest, fc.nat()).map(([req, cut]) => {
            const bytes = encode(req);
            return bytes.slice(0, bytes.length === 0 ? 0 : cut % bytes.length);
          }),
        ),
        (bytes) => {
          const req = decodeOrOtlpInvalid(bytes);
          if (req !== undefined) importAll(req);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('OTLP/JSON (the mapping of whatever JSON the body holds)', () => {
  const good: ExportTraceRequest = {
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'svc' } }] },
        scopeSpans: [
          {
            scope: { name: 'lib', version: '1' },
            spans: [
              {
                traceId: '5b8efff798038103d269b633813fc60c',
                spanId: 'eee19b7ec3c1b174',
                parentSpanId: 'eee19b7ec3c1b173',
                name: 'execute_tool refund',
                kind: 'SPAN_KIND_CLIENT',
                startTimeUnixNano: '1544712660000000000',
                endTimeUnixNano: 1544712661000000000,
                flags: 1,
                traceState: 'a=b',
                status: { code: 'STATUS_CODE_OK', message: 'ok' },
                attributes: [
                  { key: 'gen_ai.operation.name', value: { stringValue: 'execute_tool' } },
                  { key: 'gen_ai.tool.name', value: { stringValue: 'refund' } },
                  { key: 'gen_ai.tool.call.arguments', value: { stringValue: '{"a":1}' } },
                  { key: 'gen_ai.usage.input_tokens', value: { intValue: '12' } },
                  { key: 'x', value: { arrayValue: { values: [{ doubleValue: 1.5 }, { kvlistValue: { values: [{ key: 'k', value: { bytesValue: 'AAE=' } }] } }] } } },
                ],
              } as OtlpSpan,
            ],
          },
        ],
      },
    ],
  };

  it('maps a good request to events the ledger accepts', () => {
    expect(importAll(good)).toEqual({ events: 1, refused: 0 });
  });

  it('never throws anything but SpanRefused or a FormatError on mutated and arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.oneof({ weight: 4, arbitrary: mutated(fc.constant(good)) }, { weight: 1, arbitrary: hostile() }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 6 }) }), (v) => {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) return; // the route answers OTLP_INVALID before mapping
        importAll(v as ExportTraceRequest);
      }),
      { numRuns: RUNS * 3 },
    );
  });
});
