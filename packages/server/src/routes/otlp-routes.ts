/**
 * POST /v1/traces: OTLP/HTTP trace import (JSON or protobuf, as OpenTelemetry
 * exporters send them). GenAI spans become `external.otel.*` entries of the key's
 * tenant that keep their trace and span ids, marked as imported (lower assurance).
 * See docs/sdk.md, "OTLP import".
 * @internal
 */

import { FormatError, type PreparedEvent } from '@custody/core';
import { LedgerError } from '@custody/ledger';
import type { FastifySchemaCompiler } from 'fastify';

import { ROLES, callerOf } from '../auth.js';
import { AppendFailedError, ApiError } from '../errors.js';
import { preparedEventsOf } from '../ingest.js';
import { type ExportTraceRequest, decodeTraceRequest, encodeTraceResponse } from '../otlp/otlp-decode.js';
import { SpanRefused, attributesOf, eventOfSpan } from '../otlp/otlp-map.js';
import { type RouteContext, access, errorResponses, rolesLine } from '../route-kit.js';

const PROTOBUF = 'application/x-protobuf';

/** Only the body's shape (as for events: Ajv would coerce values in place). */
const bodyCompiler: FastifySchemaCompiler<unknown> = ({ contentType }) => (data: unknown) => {
  if (contentType === PROTOBUF ? data instanceof Uint8Array : data !== null && typeof data === 'object' && !Array.isArray(data)) return { value: data };
  return { error: new ApiError('OTLP_INVALID', 400, 'the body must be an OTLP ExportTraceServiceRequest (JSON object or protobuf)') };
};

const RESPONSE = {
  type: 'object',
  additionalProperties: false,
  description: 'ExportTraceServiceResponse (OTLP/JSON); `partialSuccess` when some spans were refused.',
  properties: {
    partialSuccess: {
      type: 'object',
      additionalProperties: false,
      required: ['rejectedSpans', 'errorMessage'],
      properties: { rejectedSpans: { type: 'integer', minimum: 0 }, errorMessage: { type: 'string' } },
    },
  },
} as const;

/** Registers POST /v1/traces. */
export function otlpRoutes(ctx: RouteContext): void {
  const { app, ledger } = ctx;
  if (!app.hasContentTypeParser(PROTOBUF)) app.addContentTypeParser(PROTOBUF, { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  const append = access(ctx, ROLES.append);

  app.route({
    method: 'POST',
    url: '/v1/traces',
    ...(append.onRequest ? { onRequest: append.onRequest } : {}),
    config: { gzip: 'OTLP_INVALID' },
    validatorCompiler: bodyCompiler,
    schema: {
      tags: ['events'],
      summary: 'Import OpenTelemetry traces (OTLP/HTTP)',
      description:
        'An OTLP/HTTP trace export (application/json or application/x-protobuf, uncompressed or with Content-Encoding: gzip), as OpenTelemetry exporters send it: point OTEL_EXPORTER_OTLP_TRACES_ENDPOINT here with an ingest key in the Authorization header. ' +
        'Spans with GenAI attributes (gen_ai.operation.name: invoke_agent, execute_tool, chat …) or custody.* attributes become external.otel.* entries that keep their trace and span ids and are marked imported (lower assurance); other spans are skipped. ' +
        'Each span has a stable event id, so a retried export is a duplicate, never a second entry. Spans without valid ids are refused and counted in partialSuccess. ' +
        rolesLine(ROLES.append),
      security: append.security,
      body: {
        content: {
          'application/json': { schema: { type: 'object', description: 'ExportTraceServiceRequest, OTLP/JSON encoding.' } },
          [PROTOBUF]: { schema: { type: 'string', format: 'binary', description: 'ExportTraceServiceRequest, protobuf encoding.' } },
        },
      },
      response: {
        200: { description: 'Imported (protobuf requests get the protobuf encoding of the same message).', content: { 'application/json': { schema: RESPONSE }, [PROTOBUF]: { schema: { type: 'string', format: 'binary' } } } },
        ...errorResponses([400, 401, 403, 413, 415, 500, 503, 507]),
      },
    },
    handler: async (request, reply) => {
      const tenant = callerOf(request).tenant;
      const protobuf = request.body instanceof Uint8Array;
      if (!protobuf && (request.body === null || typeof request.body !== 'object' || Array.isArray(request.body))) {
        throw new ApiError('OTLP_INVALID', 400, 'the body must be an OTLP ExportTraceServiceRequest (JSON object or protobuf)');
      }
      const req: ExportTraceRequest = protobuf ? decodeTraceRequest(request.body as Uint8Array) : (request.body as ExportTraceRequest);
      if (req.resourceSpans !== undefined && !Array.isArray(req.resourceSpans)) throw new ApiError('OTLP_INVALID', 400, 'resourceSpans must be an array', { field: 'resourceSpans' });
      const prepared: PreparedEvent[] = [];
      const problems: string[] = [];
      let spans = 0;
      for (const rs of req.resourceSpans ?? []) {
        const resource = attributesOf(rs?.resource?.attributes);
        for (const ss of Array.isArray(rs?.scopeSpans) ? rs.scopeSpans : []) {
          for (const span of Array.isArray(ss?.spans) ? ss.spans : []) {
            spans += 1;
            if (spans > ctx.maxBatch) throw new ApiError('BATCH_TOO_LARGE', 413, `an export may hold at most ${ctx.maxBatch} spans: lower the exporter's maxExportBatchSize`);
            try {
              const raw = span !== null && typeof span === 'object' ? eventOfSpan(span, resource, ss.scope) : undefined;
              if (raw === undefined) continue;
              prepared.push(...preparedEventsOf([raw], tenant, { admin: false, prepare: (draft) => ledger.prepare(tenant, draft) }));
            } catch (err) {
              if (err instanceof SpanRefused || err instanceof LedgerError || err instanceof FormatError || err instanceof ApiError) problems.push(err.message);
              else throw err;
            }
          }
        }
      }
      if (prepared.length > 0) {
        const settled = await ledger.appendPrepared(tenant, prepared);
        let fatal: unknown;
        for (const s of settled) {
          if (s.status === 'fulfilled') continue;
          if (s.reason instanceof LedgerError || s.reason instanceof FormatError) problems.push(s.reason.message);
          else fatal ??= s.reason;
        }
        if (fatal !== undefined) throw new AppendFailedError(fatal, undefined);
      }
      const partial = problems.length > 0 ? { rejectedSpans: problems.length, errorMessage: problems.slice(0, 5).join('; ').slice(0, 2000) } : undefined;
      if (protobuf) return reply.code(200).type(PROTOBUF).send(Buffer.from(encodeTraceResponse(partial)));
      return reply.code(200).send(partial === undefined ? {} : { partialSuccess: partial });
    },
  });
}
