/**
 * Turns a POST /v1/events body (attacker-controlled: one event, an array, or
 * NDJSON) into prepared events, checking every one before any is appended: a
 * request with one bad event writes nothing.
 * @internal
 */
import { type EventDraft, FormatError, isCustodyOnlyType, pooledRandomBytes, type PreparedEvent } from '@custody/core';
import { LedgerError } from '@custody/ledger';
import secureJson from 'secure-json-parse';
import { v7 as uuidv7 } from 'uuid';

import { ApiError } from './errors.js';

/** Deepest nesting accepted inside one event (the envelope itself uses 4 levels). */
export const MAX_DEPTH = 64;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function invalid(i: number, field: string, message: string): LedgerError {
  const at = `events[${i}]${field === '' ? '' : `.${field}`}`;
  return new LedgerError('EVENT_INVALID', `${at}: ${message}`, { field: at });
}

/** What `preparedBodyOf` needs besides the body. */
export interface BodyPreparation {
  tenant: string;
  /** application/x-ndjson rather than application/json. */
  ndjson: boolean;
  /** The caller's key is an admin key (see preparedEventsOf). */
  admin: boolean;
  maxBatch: number;
  /** Fills a missing `time` (default now). */
  now?: Date;
  prepare: (draft: EventDraft) => PreparedEvent;
}

/**
 * A POST /v1/events body, as received (text), to prepared events: parses it as
 * Fastify's own JSON parser would (secure-json-parse, refusing `__proto__` and
 * `constructor.prototype` keys), then rawEventsOf and preparedEventsOf. Pure but for
 * fresh ids and salts, so it runs on the request's thread or in a preparation worker
 * (prepare-pool.ts) alike.
 * @throws ApiError `REQUEST_INVALID`, `BATCH_TOO_LARGE`, `TENANT_MISMATCH`, `FORBIDDEN`; LedgerError `EVENT_INVALID`; FormatError `JSON_INVALID` (the body, or an NDJSON line)
 */
export function preparedBodyOf(text: string, opts: BodyPreparation): PreparedEvent[] {
  let body: unknown = text;
  if (!opts.ndjson) {
    if (text.trim() === '') throw new ApiError('REQUEST_INVALID', 400, 'the body is empty');
    try {
      body = secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' });
    } catch (cause) {
      throw new FormatError('JSON_INVALID', 'the body is not valid JSON (or holds a __proto__ or constructor.prototype key)', { cause });
    }
  }
  const raw = rawEventsOf(body, opts.maxBatch, opts.ndjson);
  return preparedEventsOf(raw, opts.tenant, { admin: opts.admin, prepare: opts.prepare, ...(opts.now !== undefined ? { now: opts.now } : {}) });
}

/** Rejects a JSON key that could poison a prototype (as Fastify's JSON parser does). */
function noProto(key: string, value: unknown): unknown {
  if (key === '__proto__') throw new SyntaxError('__proto__ key');
  return value;
}

/**
 * The raw events of a body: with `ndjson`, the text holds one event per line (blank
 * lines are skipped); otherwise an object is one event and an array a batch.
 * @throws ApiError `REQUEST_INVALID` (no events), `BATCH_TOO_LARGE`; FormatError `JSON_INVALID` naming the line
 */
export function rawEventsOf(body: unknown, maxBatch: number, ndjson: boolean): unknown[] {
  let events: unknown[];
  if (ndjson && typeof body === 'string') {
    const lines = body.split('\n').map((l, n) => ({ text: l.trim(), line: n + 1 })).filter((l) => l.text !== '');
    checkCount(lines.length, maxBatch);
    events = lines.map(({ text, line }, i) => {
      try {
        return JSON.parse(text, noProto) as unknown;
      } catch (cause) {
        throw new FormatError('JSON_INVALID', `events[${i}] (line ${line}) is not valid JSON`, { cause, field: `events[${i}]` });
      }
    });
  } else if (!ndjson && Array.isArray(body)) {
    events = body;
  } else if (!ndjson && isObject(body)) {
    events = [body];
  } else {
    throw new ApiError('REQUEST_INVALID', 400, 'the body must be an event object, an array of events, or NDJSON');
  }
  checkCount(events.length, maxBatch);
  return events;
}

function checkCount(n: number, maxBatch: number): void {
  if (n === 0) throw new ApiError('REQUEST_INVALID', 400, 'the request holds no events');
  if (n > maxBatch) throw new ApiError('BATCH_TOO_LARGE', 413, `a request may hold at most ${maxBatch} events; this one holds ${n}: split it`);
}

/** True when `value` nests deeper than `max` (iterative: deep input cannot overflow the stack here). */
function tooDeep(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d >= max) return true;
    for (const child of Object.values(v)) if (child !== null && typeof child === 'object') stack.push([child, d + 1]);
  }
  return false;
}

/**
 * Normalises and prepares each raw event for `tenant`: refuses a different body
 * tenant, drops what the ledger assigns (v, recordedAt, session.seq/prev, seal),
 * fills `id` (UUIDv7) and `time` (now) when absent, then prepares it (commitments,
 * validation, canonical JSON: see prepareEvent) so that any event the ledger would
 * refuse as malformed is refused here, before anything is appended, and nothing is
 * validated twice. Only admin keys (`opts.admin`) may append `admin.*` events,
 * which record the ledger's own governance.
 * @throws ApiError `TENANT_MISMATCH`, `FORBIDDEN`; LedgerError `EVENT_INVALID` naming the event and field
 */
export function preparedEventsOf(
  raw: readonly unknown[],
  tenant: string,
  opts: { admin: boolean; prepare: (draft: EventDraft) => PreparedEvent; now?: Date },
): PreparedEvent[] {
  const time = (opts.now ?? new Date()).toISOString();
  return raw.map((value, i) => {
    if (!isObject(value)) throw invalid(i, '', 'expected an event object');
    if (tooDeep(value, MAX_DEPTH)) throw invalid(i, '', `nests deeper than ${MAX_DEPTH} levels`);
    const { v: _v, recordedAt: _r, seal: _s, tenant: claimed, ...draft } = value;
    if (claimed !== undefined && claimed !== tenant) {
      const shown = JSON.stringify(claimed).slice(0, 80);
      throw new ApiError('TENANT_MISMATCH', 400, `events[${i}].tenant is ${shown}, but this API key writes to tenant ${JSON.stringify(tenant)}; omit tenant`, {
        field: `events[${i}].tenant`,
      });
    }
    if (draft['session'] !== undefined) {
      if (!isObject(draft['session'])) throw invalid(i, 'session', 'expected an object { id, parent?, objective? }');
      const { seq: _seq, prev: _prev, ...session } = draft['session'];
      draft['session'] = session;
    }
    // UUIDv7 with its random bits from a pool: about a tenth of the cost of uuid's own
    // source (one CSPRNG call per id). Ids of one millisecond are then not in creation
    // order among themselves; nothing orders by id (the log index does).
    const assigned = draft['id'] === undefined;
    if (assigned) draft['id'] = uuidv7({ random: pooledRandomBytes(16) });
    if (draft['time'] === undefined) draft['time'] = time;
    if (!opts.admin) {
      const type = draft['type'];
      // admin.* entries record the ledger's own governance, and the types in CUSTODY_ONLY_TYPES record what
      // Custody's own services did (an answered approval, a credential's life, a revocation): only
      // those services, or an admin key, may write them. An ingest key could otherwise forge the
      // human approval that a report counts, or a revocation that never happened.
      if (typeof type === 'string' && isCustodyOnlyType(type)) {
        throw new ApiError('FORBIDDEN', 403, `events[${i}].type: only Custody itself (or an admin key) records ${type} events`, { field: `events[${i}].type` });
      }
      // "verified" means Custody verified the identity; a caller's event can only assert it.
      unverify(draft);
    }
    const prepared = prepare(draft as unknown as EventDraft, opts.prepare, i);
    // The id is this server's own, just minted: the sequencer need not look it up.
    return assigned ? { ...prepared, idAssigned: true } : prepared;
  });
}

/**
 * Sets `verified: true` to false on every principal of a caller's event (initiator,
 * actor, the delegation chain, an approver) and on its workload: only Custody's own
 * services write identities they verified.
 */
function unverify(draft: Record<string, unknown>): void {
  const principal = (p: unknown) => {
    if (isObject(p) && p['verified'] === true) p['verified'] = false;
  };
  principal(draft['initiator']);
  principal(draft['actor']);
  if (Array.isArray(draft['chain'])) for (const link of draft['chain']) if (isObject(link)) principal(link['principal']);
  if (isObject(draft['approval'])) principal(draft['approval']['approver']);
  if (isObject(draft['workload']) && draft['workload']['verified'] === true) draft['workload']['verified'] = false;
}

/** Prepares one event, naming it (events[i]) and its field in any error. */
function prepare(draft: EventDraft, prepareEvent: (draft: EventDraft) => PreparedEvent, i: number): PreparedEvent {
  try {
    return prepareEvent(draft);
  } catch (err) {
    if (err instanceof FormatError) {
      const field = err.field === undefined || err.field === '(envelope)' ? '' : err.field;
      throw new LedgerError('EVENT_INVALID', issuesOf(err.message, i), { cause: err, field: `events[${i}]${field === '' ? '' : `.${field}`}` });
    }
    // Anything else a hostile value could provoke (e.g. a RangeError) is still the event's fault.
    throw invalid(i, '', err instanceof Error ? err.message : 'cannot be sealed');
  }
}
/** Core's "invalid envelope: a: m; b: m" as "events[i].a: m; events[i].b: m". */
function issuesOf(message: string, i: number): string {
  const prefix = 'invalid envelope: ';
  if (!message.startsWith(prefix)) return `events[${i}]: ${message}`;
  return message
    .slice(prefix.length)
    .split('; ')
    .map((issue) => (issue.startsWith('(envelope): ') ? `events[${i}]: ${issue.slice(12)}` : `events[${i}].${issue}`))
    .join('; ');
}
