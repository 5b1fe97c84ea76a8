/**
 * POST /v1/import/:source: audit records of another system (a SaaS audit log, an
 * IAM or PAM webhook, an LLM-observability export) become `external.<source>.*`
 * entries of the key's tenant through the declarative mapping configured for
 * `source` (`custody up --import-mapping FILE`). Imported entries are lower
 * assurance, like OTLP's: sessionless, principals never marked verified,
 * `data.assurance: "imported"`. All or nothing on validation: one record the
 * mapping or the envelope rules refuse writes nothing. GET /v1/import lists the
 * configured sources. See docs/api.md, "Generic import".
 * @internal
 */
import { FormatError, type PreparedEvent } from '@custody/core';
import { type AppendResult, LedgerError } from '@custody/ledger';
import type { FastifySchemaCompiler } from 'fastify';

import { ROLES, callerOf } from '../auth.js';
import { AppendFailedError, ApiError } from '../errors.js';
import { RecordInvalid, eventOfRecord, recordsOf } from '../import/apply.js';
import type { ImportMapping } from '../import/mapping.js';
import { preparedEventsOf } from '../ingest.js';
import { type RouteContext, access, errorResponses, rolesLine } from '../route-kit.js';

const NDJSON = 'application/x-ndjson';

/** Only the body's shape (as for events: Ajv would coerce values in place). */
const bodyCompiler: FastifySchemaCompiler<unknown> = ({ contentType }) => (data: unknown) => {
  if (contentType === NDJSON ? typeof data === 'string' : data !== null && typeof data === 'object') return { value: data };
  return { error: new ApiError('IMPORT_INVALID', 400, 'the body must be a JSON object, a JSON array of records, or NDJSON (one record per line)') };
};

/** Rejects a JSON key that could poison a prototype (as Fastify's JSON parser does). */
function noProto(key: string, value: unknown): unknown {
  if (key === '__proto__') throw new SyntaxError('__proto__ key');
  return value;
}

function ndjsonRecords(text: string, maxBatch: number): unknown[] {
  const lines = text.split('\n').map((l, n) => ({ text: l.trim(), line: n + 1 })).filter((l) => l.text !== '');
  if (lines.length > maxBatch) throw new ApiError('BATCH_TOO_LARGE', 413, `a request may hold at most ${maxBatch} records; this one holds ${lines.length}: split it`);
  return lines.map(({ text: t, line }, i) => {
    try {
      return JSON.parse(t, noProto) as unknown;
    } catch {
      throw new ApiError('IMPORT_INVALID', 400, `records[${i}] (line ${line}) is not valid JSON`, { field: `records[${i}]` });
    }
  });
}

const SOURCE_VIEW = {
  type: 'object',
  required: ['source', 'mapping'],
  additionalProperties: false,
  properties: {
    source: { type: 'string', description: 'The :source of POST /v1/import/:source; entries are external.<source>.*.' },
    description: { type: 'string' },
    mapping: { type: 'string', description: "sha256:<hex> of the mapping's canonical JSON, recorded as data.mapping in every entry it makes." },
  },
} as const;

const RESPONSE = {
  type: 'object',
  required: ['source', 'imported', 'duplicates', 'results'],
  additionalProperties: false,
  properties: {
    source: { type: 'string' },
    imported: { type: 'integer', minimum: 0, description: 'New entries.' },
    duplicates: { type: 'integer', minimum: 0, description: 'Records already imported (same source and record id): their original results.' },
    results: {
      type: 'array',
      description: 'One per record, in order.',
      items: {
        type: 'object',
        required: ['id', 'index', 'duplicate', 'type'],
        additionalProperties: false,
        properties: {
          id: { type: 'string', description: 'The entry id: a UUID (v8) derived from the source and the record id, so a re-import is a duplicate.' },
          index: { type: 'integer', minimum: 0, description: "Leaf index in the tenant's log." },
          duplicate: { type: 'boolean' },
          type: { type: 'string', description: 'external.<source>.<kind>' },
          recordId: { type: 'string', description: "The record's id in the source system, when the mapping names one." },
        },
      },
    },
  },
} as const;

/** Registers POST /v1/import/:source and GET /v1/import. */
export function importRoutes(ctx: RouteContext, mappings: ReadonlyMap<string, ImportMapping>): void {
  const { app, ledger } = ctx;
  const append = access(ctx, ROLES.append);
  const configured = () => ([...mappings.keys()].length === 0 ? 'none is configured (custody up --import-mapping FILE)' : `configured: ${[...mappings.keys()].join(', ')}`);

  app.route<{ Params: { source: string } }>({
    method: 'POST',
    url: '/v1/import/:source',
    ...(append.onRequest ? { onRequest: append.onRequest } : {}),
    validatorCompiler: bodyCompiler,
    schema: {
      tags: ['events'],
      summary: 'Import records of another system through a declarative mapping',
      description:
        'Records of a foreign system (a SaaS audit log, an IAM or PAM audit webhook, an LLM-observability export) become external.<source>.<kind> entries through the mapping configured for :source (custody up --import-mapping FILE; docs/api.md, "Generic import"). ' +
        'The body is a JSON object or array (the mapping\'s `records` JSONPath selects the records; default: the items of an array, else the object) or NDJSON (one record per line). ' +
        'Imported entries are lower assurance, like OTLP\'s: sessionless, actor and initiator never marked verified, `data.source` = :source, `data.assurance: "imported"`, `data.mapping` = the mapping\'s digest; they join session timelines by trace id. ' +
        'All or nothing on validation: one record the mapping or the envelope rules refuse (400 IMPORT_RECORD_INVALID naming records[i] and the field) writes nothing. ' +
        `Each entry id is derived from the source and the record's id, so a re-import answers duplicates, never second entries. At most ${ctx.maxBatch} records per request. ` +
        rolesLine(ROLES.append),
      security: append.security,
      params: { type: 'object', required: ['source'], properties: { source: { type: 'string', minLength: 1, maxLength: 64, description: 'A configured import source, e.g. cloudtrail.' } } },
      body: {
        content: {
          'application/json': { schema: { oneOf: [{ type: 'object' }, { type: 'array' }], description: 'A JSON object or array holding the records.' } },
          [NDJSON]: { schema: { type: 'string', description: 'One record as JSON per line.' } },
        },
      },
      response: {
        200: { description: 'Imported; some or all records were already in the log (duplicates).', ...RESPONSE },
        201: { description: 'Imported; every record is a new entry.', ...RESPONSE },
        ...errorResponses([400, 401, 403, 413, 415, 500]),
        404: { ...errorResponses([404])[404], description: 'IMPORT_SOURCE_UNKNOWN: no mapping is configured for :source.' },
        ...errorResponses([503, 507], 'AppendFailure'),
      },
    },
    handler: async (request, reply) => {
      const tenant = callerOf(request).tenant;
      const { source } = request.params;
      const mapping = mappings.get(source);
      if (mapping === undefined) {
        throw new ApiError('IMPORT_SOURCE_UNKNOWN', 404, `no import mapping for source ${JSON.stringify(source.slice(0, 64))}: ${configured()}`, { field: 'source' });
      }
      const ndjson = request.mediaType === NDJSON;
      if (ndjson ? typeof request.body !== 'string' : request.body === null || typeof request.body !== 'object') {
        throw new ApiError('IMPORT_INVALID', 400, 'the body must be a JSON object, a JSON array of records, or NDJSON (one record per line)');
      }
      const records = recordsOf(ndjson ? ndjsonRecords(request.body as string, ctx.maxBatch) : request.body, mapping, ndjson);
      if (records.length === 0) {
        throw new ApiError('IMPORT_INVALID', 400, mapping.doc.records !== undefined && !ndjson ? `the body holds no records at ${mapping.doc.records}` : 'the request holds no records');
      }
      if (records.length > ctx.maxBatch) throw new ApiError('BATCH_TOO_LARGE', 413, `a request may hold at most ${ctx.maxBatch} records; this one holds ${records.length}: split it`);

      // Map and check every record before anything is appended: one bad record writes nothing.
      const prepared: PreparedEvent[] = [];
      const meta: { type: string; recordId?: string }[] = [];
      records.forEach((record, i) => {
        let raw: Record<string, unknown>;
        try {
          raw = eventOfRecord(record, mapping);
        } catch (err) {
          if (!(err instanceof RecordInvalid)) throw err;
          const field = err.field === '' ? `records[${i}]` : `records[${i}].${err.field}`;
          throw new ApiError('IMPORT_RECORD_INVALID', 400, `records[${i}]: ${err.message}`, { field });
        }
        try {
          prepared.push(...preparedEventsOf([raw], tenant, { admin: false, prepare: (draft) => ledger.prepare(tenant, draft) }));
        } catch (err) {
          if (!(err instanceof LedgerError || err instanceof FormatError || err instanceof ApiError)) throw err;
          const at = (s: string) => s.replace(/events\[0\]/g, `records[${i}]`);
          throw new ApiError('IMPORT_RECORD_INVALID', 400, `the entry of ${at(err.message)}`, { field: at(err.field ?? `records[${i}]`) });
        }
        const data = raw['data'] as { recordId?: string };
        meta.push({ type: String(raw['type']), ...(data.recordId !== undefined ? { recordId: data.recordId } : {}) });
      });

      // Two records with the same id in one request are one entry (the second a duplicate).
      const settled = await ledger.appendPrepared(tenant, prepared);
      const results: (AppendResult & { type: string; recordId?: string })[] = [];
      let fatal: unknown;
      settled.forEach((s, i) => {
        if (s.status === 'fulfilled') results.push({ id: s.value.id, index: s.value.index, duplicate: s.value.duplicate, ...meta[i]! });
        else fatal ??= s.reason;
      });
      // Sessionless entries are refused by the sequencer only for store faults: answer them (503/507); a retry is safe (stable ids).
      if (fatal !== undefined) {
        if (fatal instanceof LedgerError || fatal instanceof FormatError) throw new ApiError('IMPORT_RECORD_INVALID', 400, fatal.message);
        throw new AppendFailedError(fatal, undefined);
      }
      const duplicates = results.filter((r) => r.duplicate).length;
      return reply.code(duplicates === 0 ? 201 : 200).send({ source, imported: results.length - duplicates, duplicates, results });
    },
  });

  const read = access(ctx, [...new Set([...ROLES.append, ...ROLES.read])]);
  app.get(
    '/v1/import',
    {
      ...(read.onRequest ? { onRequest: read.onRequest } : {}),
      schema: {
        tags: ['events'],
        summary: 'Configured import sources',
        description: `The sources POST /v1/import/:source accepts, with each mapping's digest. Roles: ingest, admin, read, approve.`,
        security: read.security,
        response: {
          200: { description: 'The configured sources.', type: 'object', required: ['sources'], additionalProperties: false, properties: { sources: { type: 'array', items: SOURCE_VIEW } } },
          ...errorResponses([400, 401, 403, 500, 503]),
        },
      },
    },
    async () => ({ sources: [...mappings.values()].map((m) => ({ source: m.source, ...(m.description !== undefined ? { description: m.description } : {}), mapping: m.digest })) }),
  );
}
