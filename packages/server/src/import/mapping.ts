/**
 * Declarative import mappings (`custody.import-mapping/v1`): a JSON or YAML file
 * that says how the records of one foreign system (a SaaS audit log, an IAM or PAM
 * webhook, an LLM-observability export) become `external.<source>.*` entries.
 * Selectors are JSONPath (RFC 9535 syntax, evaluated with jsonpath-plus); a field
 * can also be a constant, a lookup table, a fallback list and a conversion.
 * Loading checks the whole file, so a bad mapping stops `custody up` at start,
 * never a request. See docs/api.md, "Generic import".
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';

import { CustodyError, canonicalJson } from '@custody/core';
import { JSONPath } from 'jsonpath-plus';
import { parse as parseYaml } from 'yaml';

/** The format identifier a mapping file must name. */
export const MAPPING_FORMAT = 'custody.import-mapping/v1';

/** A mapping that cannot be used (raised at load, before the server serves). */
export class ImportMappingError extends CustodyError<'IMPORT_MAPPING_INVALID'> {
  /** Where in the mapping, e.g. `actor.id.path`. */
  readonly field: string | undefined;
  constructor(message: string, field?: string) {
    super('IMPORT_MAPPING_INVALID', message);
    this.field = field;
  }
}

/** Conversions a field may apply to what its selector found. */
export const CONVERSIONS = ['string', 'number', 'integer', 'boolean', 'time', 'json', 'lowercase', 'snake_case'] as const;
export type Conversion = (typeof CONVERSIONS)[number];

/**
 * One field: a JSONPath string (`"$.eventName"`), a list of fields (the first
 * that yields a value), or an object.
 */
export type FieldSpec = string | FieldSpec[] | FieldObject;

/** A field as an object. */
export interface FieldObject {
  /** JSONPath into the record (first match, or every match with `all`). */
  path?: string;
  /** A constant value. */
  const?: unknown;
  /** Alternatives: the first that yields a value. */
  first?: FieldSpec[];
  /** Every match of `path`, as an array. */
  all?: boolean;
  /** A lookup table: the value (as a string) → what to record. Unlisted values pass through unless `default` is set. */
  map?: Record<string, unknown>;
  /** What to record when nothing matched (or the value is not in `map`). */
  default?: unknown;
  /** A regular expression the (text) value must match: its first capture group (else the whole match) is recorded; no match is "nothing". */
  match?: string;
  /** A conversion applied last. */
  as?: Conversion;
  /** Only when the record meets this condition (else the field is absent). */
  when?: Condition;
}

/** A condition on the record, for optional sections (`tool`, `initiator`). */
export interface Condition {
  path: string;
  equals?: unknown;
  in?: unknown[];
  exists?: boolean;
}

/** A principal section. */
export interface PrincipalSpec {
  when?: Condition;
  type?: FieldSpec;
  id: FieldSpec;
  name?: FieldSpec;
  issuer?: FieldSpec;
}

/** The mapping file, as written. */
export interface MappingDocument {
  format: typeof MAPPING_FORMAT;
  /** The `:source` of `POST /v1/import/:source`, and the middle of every entry type: `external.<source>.<kind>`. */
  source: string;
  description?: string;
  /** JSONPath selecting the records of a JSON body (default: the items of an array, else the object itself). */
  records?: string;
  /** The record's own id in the source system: makes a re-import a duplicate. Default: a digest of the record. */
  id?: FieldSpec;
  /** When it happened, as the source claims it (RFC 3339, or Unix seconds or milliseconds). Required. */
  time: FieldSpec;
  /** The kind of record: `external.<source>.<kind>` (normalised to snake_case). Required. */
  type: FieldSpec;
  /** Who acted. Required; `type` defaults to `service`. Always recorded as `verified: false`. */
  actor: PrincipalSpec;
  /** The human accountable, when the source names one (`verified: false`). */
  initiator?: PrincipalSpec;
  /** A Custody session id the record claims (recorded as `data.session`). */
  session?: FieldSpec;
  /** W3C trace context: correlates the entry with sessions' events in the timeline. */
  trace?: { traceId: FieldSpec; spanId?: FieldSpec; parentSpanId?: FieldSpec };
  /** The tool or API the record is about. */
  tool?: { when?: Condition; name: FieldSpec; server?: FieldSpec; callId?: FieldSpec };
  /** Further `data` fields. `prompt`, `output`, `arguments` and `result` are stored as commitments. */
  data?: Record<string, FieldSpec>;
}

/** A loaded, checked mapping. */
export interface ImportMapping {
  readonly source: string;
  readonly description: string | undefined;
  /** `sha256:<hex>` of the mapping's canonical JSON: recorded in every entry it makes. */
  readonly digest: string;
  /** Where it was loaded from (for messages). */
  readonly origin: string;
  readonly doc: MappingDocument;
}

/** The `:source` of a route and the middle of an entry type. */
export const SOURCE_NAME = /^[a-z0-9_]{1,64}$/;
const DATA_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/** `data` keys the importer writes itself. */
export const RESERVED_DATA = new Set(['source', 'assurance', 'mapping', 'recordId', 'session']);
const TOP_KEYS = new Set(['format', 'source', 'description', 'records', 'id', 'time', 'type', 'actor', 'initiator', 'session', 'trace', 'tool', 'data']);
const FIELD_KEYS = new Set(['path', 'const', 'first', 'all', 'map', 'default', 'match', 'as', 'when']);
const MAX_DEPTH = 8;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function checkPath(path: unknown, at: string): void {
  if (typeof path !== 'string' || !path.startsWith('$')) throw new ImportMappingError(`${at}: a selector is a JSONPath starting with "$" (for a constant write { "const": … })`, at);
  if (path.length > 1024) throw new ImportMappingError(`${at}: a JSONPath of at most 1024 characters`, at);
  try {
    JSONPath.toPathArray(path);
    // Filter expressions are parsed when first applied: apply the path to a probe.
    JSONPath({ path, json: { x: { y: [1] } }, wrap: true, eval: 'safe' });
  } catch (err) {
    throw new ImportMappingError(`${at}: not a valid JSONPath: ${(err as Error).message}`, at);
  }
}

function checkField(spec: unknown, at: string, depth = 0): void {
  if (depth > MAX_DEPTH) throw new ImportMappingError(`${at}: nested deeper than ${MAX_DEPTH}`, at);
  if (typeof spec === 'string') return checkPath(spec, at);
  if (Array.isArray(spec)) {
    if (spec.length === 0) throw new ImportMappingError(`${at}: an empty list of alternatives`, at);
    spec.forEach((s, i) => checkField(s, `${at}[${i}]`, depth + 1));
    return;
  }
  if (!isObject(spec)) throw new ImportMappingError(`${at}: expected a JSONPath string, a list, or an object with path, const or first`, at);
  for (const k of Object.keys(spec)) if (!FIELD_KEYS.has(k)) throw new ImportMappingError(`${at}.${k}: unknown key (expected ${[...FIELD_KEYS].join(', ')})`, `${at}.${k}`);
  const sources = ['path', 'const', 'first'].filter((k) => k in spec);
  if (sources.length > 1) throw new ImportMappingError(`${at}: give one of path, const and first, not ${sources.join(' and ')}`, at);
  if (sources.length === 0 && !('default' in spec)) throw new ImportMappingError(`${at}: give path, const, first or default`, at);
  if (spec['path'] !== undefined) checkPath(spec['path'], `${at}.path`);
  if (spec['first'] !== undefined) checkField(spec['first'], `${at}.first`, depth + 1);
  if (spec['first'] !== undefined && !Array.isArray(spec['first'])) throw new ImportMappingError(`${at}.first: expected a list`, `${at}.first`);
  if (spec['all'] !== undefined && typeof spec['all'] !== 'boolean') throw new ImportMappingError(`${at}.all: expected true or false`, `${at}.all`);
  if (spec['map'] !== undefined && !isObject(spec['map'])) throw new ImportMappingError(`${at}.map: expected an object (value → what to record)`, `${at}.map`);
  if (spec['match'] !== undefined) {
    if (typeof spec['match'] !== 'string' || spec['match'].length > 512) throw new ImportMappingError(`${at}.match: a regular expression of at most 512 characters`, `${at}.match`);
    try {
      new RegExp(spec['match'], 'u');
    } catch (err) {
      throw new ImportMappingError(`${at}.match: not a valid regular expression: ${(err as Error).message}`, `${at}.match`);
    }
  }
  checkCondition(spec['when'], `${at}.when`);
  if (spec['as'] !== undefined && !(CONVERSIONS as readonly unknown[]).includes(spec['as'])) throw new ImportMappingError(`${at}.as: one of ${CONVERSIONS.join(', ')}`, `${at}.as`);
}

function checkCondition(c: unknown, at: string): void {
  if (c === undefined) return;
  if (!isObject(c)) throw new ImportMappingError(`${at}: expected { path, equals | in | exists }`, at);
  for (const k of Object.keys(c)) if (!['path', 'equals', 'in', 'exists'].includes(k)) throw new ImportMappingError(`${at}.${k}: unknown key`, `${at}.${k}`);
  checkPath(c['path'], `${at}.path`);
  if (c['in'] !== undefined && !Array.isArray(c['in'])) throw new ImportMappingError(`${at}.in: expected a list`, `${at}.in`);
  if (c['exists'] !== undefined && typeof c['exists'] !== 'boolean') throw new ImportMappingError(`${at}.exists: expected true or false`, `${at}.exists`);
}

function checkSection(v: unknown, at: string, keys: readonly string[], required: readonly string[], conditional: boolean): void {
  if (!isObject(v)) throw new ImportMappingError(`${at}: expected an object with ${required.join(', ')}`, at);
  for (const k of Object.keys(v)) {
    if (!keys.includes(k) && !(conditional && k === 'when')) throw new ImportMappingError(`${at}.${k}: unknown key (expected ${keys.join(', ')})`, `${at}.${k}`);
  }
  for (const k of required) if (v[k] === undefined) throw new ImportMappingError(`${at}.${k} is required`, `${at}.${k}`);
  for (const k of keys) if (v[k] !== undefined) checkField(v[k], `${at}.${k}`);
  if (conditional) checkCondition(v['when'], `${at}.when`);
}

/**
 * Checks a parsed mapping document and returns it ready for use.
 * @throws ImportMappingError naming the first bad field
 */
export function compileMapping(doc: unknown, origin = 'mapping', sourceOverride?: string): ImportMapping {
  if (!isObject(doc)) throw new ImportMappingError(`${origin}: a mapping is an object`);
  for (const k of Object.keys(doc)) if (!TOP_KEYS.has(k)) throw new ImportMappingError(`${origin}: unknown key ${k} (expected ${[...TOP_KEYS].join(', ')})`, k);
  if (doc['format'] !== MAPPING_FORMAT) throw new ImportMappingError(`${origin}: format must be "${MAPPING_FORMAT}"`, 'format');
  const source = sourceOverride ?? doc['source'];
  if (typeof source !== 'string' || !SOURCE_NAME.test(source)) throw new ImportMappingError(`${origin}: source must be 1-64 characters of a-z 0-9 _ (it becomes external.<source>.*)`, 'source');
  if (doc['description'] !== undefined && typeof doc['description'] !== 'string') throw new ImportMappingError(`${origin}: description must be a string`, 'description');
  try {
    if (doc['records'] !== undefined) checkPath(doc['records'], 'records');
    for (const k of ['time', 'type']) {
      if (doc[k] === undefined) throw new ImportMappingError(`${k} is required`, k);
      checkField(doc[k], k);
    }
    if (doc['id'] !== undefined) checkField(doc['id'], 'id');
    if (doc['session'] !== undefined) checkField(doc['session'], 'session');
    if (doc['actor'] === undefined) throw new ImportMappingError('actor is required ({ id, type?, name?, issuer? })', 'actor');
    checkSection(doc['actor'], 'actor', ['type', 'id', 'name', 'issuer'], ['id'], false);
    if (doc['initiator'] !== undefined) checkSection(doc['initiator'], 'initiator', ['type', 'id', 'name', 'issuer'], ['id'], true);
    if (doc['trace'] !== undefined) checkSection(doc['trace'], 'trace', ['traceId', 'spanId', 'parentSpanId'], ['traceId'], false);
    if (doc['tool'] !== undefined) checkSection(doc['tool'], 'tool', ['name', 'server', 'callId'], ['name'], true);
    if (doc['data'] !== undefined) {
      if (!isObject(doc['data'])) throw new ImportMappingError('data: expected an object (key → field)', 'data');
      for (const [k, v] of Object.entries(doc['data'])) {
        if (!DATA_KEY.test(k)) throw new ImportMappingError(`data.${k}: keys are 1-64 characters of A-Z a-z 0-9 _`, `data.${k}`);
        if (RESERVED_DATA.has(k)) throw new ImportMappingError(`data.${k}: reserved (the importer writes ${[...RESERVED_DATA].join(', ')})`, `data.${k}`);
        checkField(v, `data.${k}`);
      }
    }
  } catch (err) {
    if (err instanceof ImportMappingError) throw new ImportMappingError(`${origin}: ${err.message}`, err.field);
    throw err;
  }
  const normalised = { ...doc, source } as unknown as MappingDocument;
  const digest = `sha256:${createHash('sha256').update(canonicalJson(normalised as never)).digest('hex')}`;
  return { source, description: normalised.description, digest, origin, doc: normalised };
}

/** Parses mapping text: YAML (a superset of JSON) or JSON. */
export function parseMappingText(text: string, origin: string): unknown {
  try {
    return extname(origin).toLowerCase() === '.json' ? (JSON.parse(text) as unknown) : (parseYaml(text, { maxAliasCount: 16 }) as unknown);
  } catch (err) {
    throw new ImportMappingError(`${origin}: not valid ${extname(origin).toLowerCase() === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
}

/**
 * Loads a mapping file (`.json`, `.yaml` or `.yml`). `spec` is `FILE` or
 * `SOURCE=FILE` (the source then overrides the file's `source`).
 * @throws ImportMappingError
 */
export function loadMappingFile(spec: string): ImportMapping {
  const eq = spec.indexOf('=');
  const named = eq > 0 && SOURCE_NAME.test(spec.slice(0, eq));
  const file = named ? spec.slice(eq + 1) : spec;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ImportMappingError(`cannot read import mapping ${file}: ${(err as Error).message}`);
  }
  return compileMapping(parseMappingText(text, file), file, named ? spec.slice(0, eq) : undefined);
}

/**
 * A set of mappings by source.
 * @throws ImportMappingError when two mappings name the same source
 */
export function mappingsBySource(list: readonly ImportMapping[]): ReadonlyMap<string, ImportMapping> {
  const out = new Map<string, ImportMapping>();
  for (const m of list) {
    const prior = out.get(m.source);
    if (prior !== undefined) throw new ImportMappingError(`import source ${m.source} is mapped twice (${prior.origin} and ${m.origin})`, 'source');
    out.set(m.source, m);
  }
  return out;
}
