/**
 * Applies an import mapping to foreign records: each record becomes one raw
 * `external.<source>.<kind>` event (sessionless, actor and initiator marked
 * `verified: false`, `data.assurance: "imported"`), with an id derived from the
 * source and the record's own id so that a re-import is a duplicate. Pure: the
 * route validates, prepares and appends what this returns.
 * @internal
 */
import { createHash } from 'node:crypto';

import { canonicalJson } from '@custody/core';
import { JSONPath } from 'jsonpath-plus';

import type { Condition, Conversion, FieldSpec, ImportMapping, PrincipalSpec } from './mapping.js';

/** A record the mapping cannot turn into an event; `field` names the mapped field (e.g. `actor.id`). */
export class RecordInvalid extends Error {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
  }
}

const PRINCIPAL_TYPES = ['human', 'agent', 'workload', 'service'];
const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** An ISO 8601 date-time without a zone: read as UTC (many exports omit the Z). */
const NAIVE_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Every match of a JSONPath in `json` (null values dropped: "absent"). */
export function select(path: string, json: unknown): unknown[] {
  const found = JSONPath({ path, json: json as object, wrap: true, eval: 'safe' }) as unknown;
  return (Array.isArray(found) ? found : []).filter((v) => v !== null && v !== undefined);
}

/** A UUID (version 8, RFC 9562) from SHA-256 of `text`: the same text, the same id. */
export function derivedId(text: string): string {
  const h = createHash('sha256').update(text).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/** `GetObject` / `tool-call` / `Tool Call` → `get_object` / `tool_call`. */
export function snakeCase(s: string): string {
  return s
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
}

function convert(value: unknown, as: Conversion, at: string): unknown {
  const fail = (what: string): never => {
    throw new RecordInvalid(`${at}: ${JSON.stringify(value)?.slice(0, 80)} is not ${what}`, at);
  };
  switch (as) {
    case 'string':
      return typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : JSON.stringify(value);
    case 'number': {
      const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
      return Number.isFinite(n) ? n : fail('a number');
    }
    case 'integer': {
      const n = typeof value === 'number' ? value : typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : NaN;
      return Number.isSafeInteger(n) ? n : fail('an integer');
    }
    case 'boolean':
      if (typeof value === 'boolean') return value;
      if (value === 'true' || value === 1 || value === '1') return true;
      if (value === 'false' || value === 0 || value === '0') return false;
      return fail('a boolean');
    case 'time':
      return timeOf(value) ?? fail('a time (RFC 3339, or Unix seconds or milliseconds)');
    case 'json':
      if (typeof value !== 'string') return value;
      try {
        return JSON.parse(value) as unknown;
      } catch {
        return fail('JSON text');
      }
    case 'lowercase':
      return typeof value === 'string' ? value.toLowerCase() : fail('a string');
    case 'snake_case':
      return typeof value === 'string' ? snakeCase(value) : fail('a string');
  }
}

/** RFC 3339 UTC with milliseconds, from a time string (a missing zone is UTC) or Unix seconds/milliseconds. */
export function timeOf(value: unknown): string | undefined {
  let ms: number;
  if (typeof value === 'number' && Number.isFinite(value)) ms = value < 1e11 ? value * 1000 : value;
  else if (typeof value === 'string' && /^\d{9,13}(\.\d+)?$/.test(value)) ms = Number(value) < 1e11 ? Number(value) * 1000 : Number(value);
  else if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}/.test(value)) ms = Date.parse(NAIVE_TIME.test(value) ? `${value.replace(' ', 'T')}Z` : value);
  else return undefined;
  const d = new Date(Math.trunc(ms));
  return Number.isNaN(d.getTime()) || d.getUTCFullYear() < 1970 || d.getUTCFullYear() > 9999 ? undefined : d.toISOString();
}

/** The value of one field for `record` (undefined when nothing matched and there is no default). */
export function evaluate(spec: FieldSpec, record: unknown, at: string): unknown {
  if (typeof spec === 'string') return select(spec, record)[0];
  if (Array.isArray(spec)) {
    for (const [i, s] of spec.entries()) {
      const v = evaluate(s, record, `${at}[${i}]`);
      if (v !== undefined) return v;
    }
    return undefined;
  }
  if (spec.when !== undefined && !holds(spec.when, record)) return undefined;
  let value: unknown;
  if ('const' in spec) value = spec.const;
  else if (spec.path !== undefined) {
    const found = select(spec.path, record);
    value = spec.all === true ? (found.length > 0 ? found : undefined) : found[0];
  } else if (spec.first !== undefined) value = evaluate(spec.first, record, `${at}.first`);
  if (spec.match !== undefined && value !== undefined) {
    const m = typeof value === 'string' ? new RegExp(spec.match, 'u').exec(value) : null;
    value = m === null ? undefined : (m[1] ?? m[0]);
  }
  if (spec.map !== undefined && value !== undefined) {
    const key = typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
    if (key !== undefined && Object.prototype.hasOwnProperty.call(spec.map, key)) value = spec.map[key];
    else if (spec.default !== undefined) value = spec.default;
  }
  if (value === undefined && spec.default !== undefined) value = spec.default;
  if (value !== undefined && spec.as !== undefined) value = convert(value, spec.as, at);
  return value;
}

function holds(c: Condition | undefined, record: unknown): boolean {
  if (c === undefined) return true;
  const found = select(c.path, record);
  if (c.exists !== undefined) return (found.length > 0) === c.exists;
  if ('equals' in c) return found.some((v) => v === c.equals);
  if (c.in !== undefined) return found.some((v) => c.in!.includes(v));
  return found.length > 0;
}

function text(value: unknown, at: string, required: boolean): string | undefined {
  if (value === undefined) {
    if (required) throw new RecordInvalid(`${at}: the record has no value here`, at);
    return undefined;
  }
  if (typeof value === 'string') {
    if (value === '' && required) throw new RecordInvalid(`${at}: empty`, at);
    return value === '' ? undefined : value;
  }
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new RecordInvalid(`${at}: expected text, found ${Array.isArray(value) ? 'a list' : typeof value}`, at);
}

function principal(spec: PrincipalSpec, record: unknown, at: string, defaultType: string): Record<string, unknown> {
  const type = text(spec.type === undefined ? undefined : evaluate(spec.type, record, `${at}.type`), `${at}.type`, false) ?? defaultType;
  if (!PRINCIPAL_TYPES.includes(type)) throw new RecordInvalid(`${at}.type: ${JSON.stringify(type).slice(0, 40)} is not one of ${PRINCIPAL_TYPES.join(', ')} (map it)`, `${at}.type`);
  const id = text(evaluate(spec.id, record, `${at}.id`), `${at}.id`, true)!;
  const name = spec.name === undefined ? undefined : text(evaluate(spec.name, record, `${at}.name`), `${at}.name`, false);
  const issuer = spec.issuer === undefined ? undefined : text(evaluate(spec.issuer, record, `${at}.issuer`), `${at}.issuer`, false);
  return { type, id, ...(issuer !== undefined ? { issuer } : {}), ...(name !== undefined ? { name } : {}), verified: false };
}

/** A 32-hex trace id from a trace id or a UUID. */
function traceIdOf(value: unknown, at: string): string {
  const s = typeof value === 'string' ? value.trim().toLowerCase() : '';
  const hex = UUID.test(s) ? s.replace(/-/g, '') : s;
  if (!HEX32.test(hex) || /^0+$/.test(hex)) throw new RecordInvalid(`${at}: ${JSON.stringify(value)?.slice(0, 80)} is not a W3C trace id (32 hex digits) or a UUID`, at);
  return hex;
}

/** A 16-hex span id: as given, else the first 16 hex digits of SHA-256 of the value (e.g. a run's UUID). */
function spanIdOf(value: unknown): string {
  const s = (typeof value === 'string' ? value : JSON.stringify(value)).trim().toLowerCase();
  if (HEX16.test(s) && !/^0+$/.test(s)) return s;
  return createHash('sha256').update(s).digest('hex').slice(0, 16);
}

/**
 * The records of a request body: NDJSON lines are records; a JSON body goes
 * through the mapping's `records` selector, else an array is its items and an
 * object one record.
 */
export function recordsOf(body: unknown, mapping: ImportMapping, ndjson: boolean): unknown[] {
  if (ndjson) return body as unknown[];
  if (mapping.doc.records !== undefined) return select(mapping.doc.records, body);
  return Array.isArray(body) ? body : [body];
}

/**
 * The raw event of one record.
 * @throws RecordInvalid naming the mapped field
 */
export function eventOfRecord(record: unknown, mapping: ImportMapping): Record<string, unknown> {
  if (!isObject(record)) throw new RecordInvalid(`a record is a JSON object, not ${Array.isArray(record) ? 'a list' : record === null ? 'null' : typeof record}`, '');
  const m = mapping.doc;
  const recordId = m.id === undefined ? undefined : text(evaluate(m.id, record, 'id'), 'id', true);
  const kindRaw = evaluate(m.type, record, 'type');
  const kind = text(kindRaw, 'type', true)!.split('.').map(snakeCase).join('.');
  if (!/^[a-z0-9_]+(\.[a-z0-9_]+)*$/.test(kind) || kind.length > 128) throw new RecordInvalid(`type: ${JSON.stringify(kindRaw).slice(0, 80)} does not make an entry type`, 'type');
  const timeValue = evaluate(m.time, record, 'time');
  if (timeValue === undefined) throw new RecordInvalid('time: the record has no value here', 'time');
  const time = timeOf(timeValue);
  if (time === undefined) throw new RecordInvalid(`time: ${JSON.stringify(timeValue).slice(0, 80)} is not a time (RFC 3339, or Unix seconds or milliseconds)`, 'time');

  const id = derivedId(`custody.import/v1:${mapping.source}:${recordId ?? `sha256:${createHash('sha256').update(canonicalJson(record)).digest('hex')}`}`);
  const actor = principal(m.actor, record, 'actor', 'service');
  const initiator = m.initiator !== undefined && holds(m.initiator.when, record) ? principal(m.initiator, record, 'initiator', 'human') : undefined;

  let trace: Record<string, unknown> | undefined;
  if (m.trace !== undefined) {
    const t = evaluate(m.trace.traceId, record, 'trace.traceId');
    if (t !== undefined) {
      const span = m.trace.spanId === undefined ? undefined : evaluate(m.trace.spanId, record, 'trace.spanId');
      trace = { traceId: traceIdOf(t, 'trace.traceId'), spanId: spanIdOf(span ?? id) };
    }
  }
  const parentSpan = m.trace?.parentSpanId === undefined || trace === undefined ? undefined : evaluate(m.trace.parentSpanId, record, 'trace.parentSpanId');

  let tool: Record<string, unknown> | undefined;
  if (m.tool !== undefined && holds(m.tool.when, record)) {
    const name = text(evaluate(m.tool.name, record, 'tool.name'), 'tool.name', false);
    if (name !== undefined) {
      const server = m.tool.server === undefined ? undefined : text(evaluate(m.tool.server, record, 'tool.server'), 'tool.server', false);
      const callId = m.tool.callId === undefined ? undefined : text(evaluate(m.tool.callId, record, 'tool.callId'), 'tool.callId', false);
      tool = { name, ...(server !== undefined ? { server } : {}), ...(callId !== undefined ? { callId } : {}) };
    }
  }
  const session = m.session === undefined ? undefined : text(evaluate(m.session, record, 'session'), 'session', false);

  const data: Record<string, unknown> = {};
  for (const [k, spec] of Object.entries(m.data ?? {})) {
    const v = evaluate(spec, record, `data.${k}`);
    if (v !== undefined) data[k] = v;
  }
  return {
    id,
    type: `external.${mapping.source}.${kind}`,
    time,
    actor,
    ...(initiator !== undefined ? { initiator } : {}),
    ...(trace !== undefined ? { trace } : {}),
    ...(tool !== undefined ? { tool } : {}),
    data: {
      source: mapping.source,
      assurance: 'imported',
      mapping: mapping.digest,
      ...(recordId !== undefined ? { recordId } : {}),
      ...(session !== undefined ? { session } : {}),
      ...(parentSpan !== undefined ? { parentSpanId: spanIdOf(parentSpan) } : {}),
      ...data,
    },
  };
}
