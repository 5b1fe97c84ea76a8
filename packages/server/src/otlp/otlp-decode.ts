/**
 * Decodes OTLP/HTTP trace export requests (attacker-controlled) into one plain
 * shape: the OTLP/JSON encoding's (camelCase fields, hex trace and span ids,
 * 64-bit integers as strings). Protobuf bodies are decoded by protobufjs from
 * the official opentelemetry-proto definitions vendored in `proto/` (see its
 * README); nothing here parses protobuf by hand.
 * @internal
 */
import { fileURLToPath } from 'node:url';

import protobuf from 'protobufjs';

import { ApiError } from '../errors.js';

/** An OTLP AnyValue (JSON encoding). */
export interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  bytesValue?: string;
  arrayValue?: { values?: AnyValue[] };
  kvlistValue?: { values?: KeyValue[] };
}

/** An OTLP attribute. */
export interface KeyValue {
  key: string;
  value?: AnyValue;
}

/** One span (the fields Custody reads). */
export interface OtlpSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  traceState?: string;
  flags?: number;
  name?: string;
  kind?: number | string;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: KeyValue[];
  status?: { code?: number | string; message?: string };
}

/** An ExportTraceServiceRequest. */
export interface ExportTraceRequest {
  resourceSpans?: {
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: { scope?: { name?: string; version?: string }; spans?: OtlpSpan[] }[];
  }[];
}

// dist/otlp/x.js and src/otlp/x.ts both sit two folders below the package root.
const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

let types: { request: protobuf.Type; response: protobuf.Type } | undefined;

function load(): { request: protobuf.Type; response: protobuf.Type } {
  if (types !== undefined) return types;
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => `${PROTO_DIR}${target}`;
  root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto');
  types = {
    request: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest'),
    response: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse'),
  };
  return types;
}

const hex = (b: unknown) => (b instanceof Uint8Array ? Buffer.from(b).toString('hex') : typeof b === 'string' ? Buffer.from(b, 'base64').toString('hex') : undefined);

/** Converts a decoded protobuf message to the OTLP/JSON shape (ids as hex). */
function toJsonShape(obj: Record<string, unknown>): ExportTraceRequest {
  for (const rs of (obj['resourceSpans'] as ExportTraceRequest['resourceSpans']) ?? []) {
    for (const ss of rs.scopeSpans ?? []) {
      for (const span of ss.spans ?? []) {
        const s = span as Record<string, unknown>;
        for (const f of ['traceId', 'spanId', 'parentSpanId'] as const) {
          const h = hex(s[f]);
          if (h === undefined || h === '') delete s[f];
          else s[f] = h;
        }
      }
    }
  }
  return obj as ExportTraceRequest;
}

/**
 * Decodes an OTLP protobuf ExportTraceServiceRequest.
 * @throws ApiError `OTLP_INVALID` when the bytes are not one
 */
export function decodeTraceRequest(bytes: Uint8Array): ExportTraceRequest {
  const { request } = load();
  let msg: protobuf.Message;
  try {
    msg = request.decode(bytes);
  } catch (cause) {
    throw new ApiError('OTLP_INVALID', 400, `the body is not an OTLP ExportTraceServiceRequest (protobuf): ${(cause as Error).message}`, { cause });
  }
  const obj = request.toObject(msg, { longs: String, enums: Number, bytes: Uint8Array, defaults: false, arrays: true }) as Record<string, unknown>;
  return toJsonShape(obj);
}

/** The protobuf encoding of an ExportTraceServiceResponse. */
export function encodeTraceResponse(partial: { rejectedSpans: number; errorMessage: string } | undefined): Uint8Array {
  const { response } = load();
  const body = partial === undefined ? {} : { partialSuccess: { rejectedSpans: partial.rejectedSpans, errorMessage: partial.errorMessage } };
  return response.encode(response.fromObject(body)).finish();
}
