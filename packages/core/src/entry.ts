/**
 * Entries: the exact bytes the log commits to for one event, the RFC 8785
 * canonical JSON of the sealed envelope, and their digests.
 */
import { fromBase64, toBase64url, utf8 } from './bytes.js';
import { canonicalBytes, canonicalJson, isWellFormed, parseCanonical } from './canonical-json.js';
import { commitOwnedFields, DEFAULT_SENSITIVE_PATHS, type RandomBytes } from './commitment.js';
import { ENVELOPE_VERSION, type Envelope, validateEnvelope } from './envelope.js';
import { FormatError } from './errors.js';
import { leafHash } from './merkle.js';

/** The entry bytes of a sealed envelope (validated first). */
export function encodeEntry(env: Envelope): Uint8Array {
  return canonicalBytes(validateEnvelope(env));
}

/**
 * Parses entry bytes (attacker-controlled): canonical JSON of a valid v1 envelope.
 * @throws FormatError `ENTRY_MALFORMED`, naming the bad field when there is one
 */
export function decodeEntry(entry: Uint8Array): Envelope {
  try {
    return validateEnvelope(parseCanonical(entry, 'entry'));
  } catch (err) {
    if (err instanceof FormatError) {
      throw new FormatError('ENTRY_MALFORMED', err.message, { cause: err, ...(err.field ? { field: err.field } : {}) });
    }
    throw err;
  }
}

/** Decodes the base64 entry of a bundle record. @throws FormatError `ENTRY_MALFORMED` */
export function decodeEntryBase64(text: string): Uint8Array {
  try {
    return fromBase64(text, 'entry');
  } catch (cause) {
    throw new FormatError('ENTRY_MALFORMED', 'entry is not valid base64', { cause });
  }
}

/** The entry digest that the session chain links: base64url of the RFC 6962 leaf hash. */
export function entryDigest(entry: Uint8Array): string {
  return toBase64url(leafHash(entry));
}

/** An event as a source submits it, before the ledger seals it. */
export type EventDraft = Omit<Envelope, 'v' | 'tenant' | 'recordedAt' | 'session'> & {
  session?: Omit<NonNullable<Envelope['session']>, 'seq' | 'prev'>;
};

/** What the ledger assigns when it seals an event. */
export interface SealParams {
  tenant: string;
  recordedAt: string;
  /** Position in the session (1-based) and the digest of the entry before it; omit for sessionless events. */
  seq?: number;
  prev?: string | null;
  /** JSON Pointers of the fields to commit; defaults to DEFAULT_SENSITIVE_PATHS. */
  sensitivePaths?: readonly string[];
  random?: RandomBytes;
}

/** A sealed event: its envelope, entry bytes, hashes and the disclosures for its commitments. */
export interface SealedEvent {
  envelope: Envelope;
  entry: Uint8Array;
  leafHash: Uint8Array;
  digest: string;
  disclosures: string[];
}

/** The envelope a draft becomes, before commitments. */
function envelopeOf(draft: EventDraft, params: Pick<SealParams, 'tenant' | 'recordedAt' | 'seq' | 'prev'>): Record<string, unknown> {
  const base: Record<string, unknown> = { ...draft, v: ENVELOPE_VERSION, tenant: params.tenant, recordedAt: params.recordedAt };
  if (draft.session !== undefined) {
    base['session'] = { ...draft.session, seq: params.seq, prev: params.prev ?? null };
  }
  return base;
}

/**
 * Where in parsed JSON a value RFC 8785 cannot serialise stands (a lone surrogate, in a
 * value or a key, or a non-finite number): the steps from the root, or undefined. The
 * walk allocates nothing until it finds one, since every event is checked.
 */
function faultSteps(node: unknown): (number | string | { key: string })[] | undefined {
  if (typeof node === 'string') return isWellFormed(node) ? undefined : [];
  if (typeof node === 'number') return Number.isFinite(node) ? undefined : [];
  if (node === null || typeof node !== 'object') return undefined;
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      const f = faultSteps(node[i]);
      if (f !== undefined) return (f.push(i), f);
    }
    return undefined;
  }
  const obj = node as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!isWellFormed(k)) return [{ key: k }];
    const f = faultSteps(obj[k]);
    if (f !== undefined) return (f.push(k), f);
  }
  return undefined;
}

/** The field of the first value RFC 8785 cannot serialise in parsed JSON (`a.b[2]`; a bad key `a.<key>`), or undefined. */
function jsonFault(node: unknown): string | undefined {
  const steps = faultSteps(node);
  if (steps === undefined) return undefined;
  let path = '';
  for (let i = steps.length - 1; i >= 0; i--) {
    const s = steps[i]!;
    path = typeof s === 'number' ? `${path}[${s}]` : typeof s === 'string' ? (path === '' ? s : `${path}.${s}`) : `${path}.${s.key}`;
  }
  return path;
}

/*
 * Sealing in two steps. `prepareEvent` does everything that does not depend on
 * where the event lands (commitments, validation, canonicalisation), so it can run
 * before the event is sequenced, and more than once in parallel. It canonicalises
 * the envelope with unique placeholder strings ("slots") where the ledger's own
 * values go: `recordedAt`, `session.seq`, `session.prev` and the seal. `placeEvent`
 * then splices the JSON of the real values into those slots. RFC 8785 orders object
 * members by key alone and serialises each value independently, so the result is
 * byte-for-byte the canonical JSON of the placed envelope (tests check this against
 * canonicalising the placed envelope directly).
 */

/** What the sequencer fills in when it places a prepared event. */
type SlotName = 'recordedAt' | 'seq' | 'prev' | 'sealCount' | 'sealHead';

/** A per-process secret that makes slot strings impossible to forge from event content. */
const SLOT_NONCE = toBase64url(globalThis.crypto.getRandomValues(new Uint8Array(16)));
const slotText = (name: SlotName) => `\u0000custody-slot:${SLOT_NONCE}:${name}`;
const SLOT_TEXT: Record<SlotName, string> = {
  recordedAt: slotText('recordedAt'),
  seq: slotText('seq'),
  prev: slotText('prev'),
  sealCount: slotText('sealCount'),
  sealHead: slotText('sealHead'),
};

/** The JSON of each slot string, as it stands in a template. */
const SLOT_TOKEN: Record<SlotName, string> = {
  recordedAt: JSON.stringify(SLOT_TEXT.recordedAt),
  seq: JSON.stringify(SLOT_TEXT.seq),
  prev: JSON.stringify(SLOT_TEXT.prev),
  sealCount: JSON.stringify(SLOT_TEXT.sealCount),
  sealHead: JSON.stringify(SLOT_TEXT.sealHead),
};

/** The slots of each kind of event, and the seal object of slots. */
const RECORDED_AT_SLOT: readonly SlotName[] = ['recordedAt'];
const SESSION_SLOTS: readonly SlotName[] = ['recordedAt', 'seq', 'prev'];
const SEAL_SLOTS: readonly SlotName[] = ['recordedAt', 'sealCount', 'sealHead'];
const SESSION_SEAL_SLOTS: readonly SlotName[] = ['recordedAt', 'seq', 'prev', 'sealCount', 'sealHead'];
const SLOT_SEAL = { count: SLOT_TEXT.sealCount, head: SLOT_TEXT.sealHead };

/** Valid stand-ins for the placed values, so that validation sees a complete envelope. */
const STAND_IN = { recordedAt: '2000-01-01T00:00:00.000Z', seq: 1, prev: null, seal: { count: 1, head: 'A'.repeat(43) } } as const;

/** A draft made ready for sealing, before its place in the log is known. */
export interface PreparedEvent {
  /** The event id. */
  id: string;
  /** The committed envelope, with stand-in values where the slots are. */
  envelope: Envelope;
  /** Canonical JSON of the envelope with slots; see placeEvent. */
  template: string;
  /** Where each slot is in `template`, in order. */
  slots: readonly { at: number; length: number; name: SlotName }[];
  disclosures: string[];
  /**
   * True when the id was minted for this event as it was prepared (the server assigns
   * UUIDv7 ids to events sent without one), not given by its source: no earlier append
   * can have used it, so the sequencer skips its idempotency lookup. Set only by the
   * code that minted the id.
   */
  idAssigned?: boolean;
}

/** What the ledger assigns when it places a prepared event. */
export interface PlaceParams {
  recordedAt: string;
  /** Position in the session (1-based) and the digest of the entry before it; only for session-scoped events. */
  seq?: number;
  prev?: string | null;
  /** The seal a `session.closed` event carries: the count and head of the chain it closes. */
  seal?: { count: number; head: string };
}

/**
 * Prepares a draft for sealing: assigns `v` and `tenant`, replaces sensitive fields
 * with commitments, validates, and canonicalises the envelope with slots for the
 * values the ledger assigns when it places the event (see placeEvent). Any
 * `seal` a `session.closed` draft carries is replaced by the ledger's own.
 * @throws FormatError `ENVELOPE_INVALID` naming the field, or `JSON_INVALID`
 */
export function prepareEvent(draft: EventDraft, params: Pick<SealParams, 'tenant' | 'sensitivePaths' | 'random'>): PreparedEvent {
  const closes = draft.type === 'session.closed';
  const hasSession = draft.session !== undefined;
  const base = envelopeOf(draft, { tenant: params.tenant, recordedAt: STAND_IN.recordedAt, seq: STAND_IN.seq, prev: STAND_IN.prev });
  if (closes) base['seal'] = STAND_IN.seal;
  const fault = jsonFault(base);
  if (fault !== undefined) {
    throw new FormatError('JSON_INVALID', `${fault}: holds a value RFC 8785 JSON cannot hold (a lone surrogate or a non-finite number)`, { field: fault });
  }
  // `base` and the session object in it are this function's own copies, so they are committed in place.
  const disclosures = commitOwnedFields(base, params.sensitivePaths ?? DEFAULT_SENSITIVE_PATHS, params.random);
  const envelope = validateEnvelope(base);

  // Canonicalise with the slot strings standing where the placed values go, then put the stand-ins back.
  const session = hasSession ? (base['session'] as Record<string, unknown>) : undefined;
  const names = closes ? (hasSession ? SESSION_SEAL_SLOTS : SEAL_SLOTS) : hasSession ? SESSION_SLOTS : RECORDED_AT_SLOT;
  let template: string;
  base['recordedAt'] = SLOT_TEXT.recordedAt;
  if (session !== undefined) {
    session['seq'] = SLOT_TEXT.seq;
    session['prev'] = SLOT_TEXT.prev;
  }
  if (closes) base['seal'] = SLOT_SEAL;
  try {
    template = canonicalJson(base);
  } finally {
    base['recordedAt'] = STAND_IN.recordedAt;
    if (session !== undefined) {
      session['seq'] = STAND_IN.seq;
      session['prev'] = STAND_IN.prev;
    }
    if (closes) base['seal'] = STAND_IN.seal;
  }
  return { id: draft.id, envelope, template, slots: findSlots(template, names), disclosures };
}

/** The JSON text every slot token starts with. */
const SLOT_PREFIX = JSON.stringify(slotText('recordedAt')).slice(0, -'recordedAt"'.length);

/**
 * Where each of `names` stands in `template`, in order. One pass over the template
 * for the common prefix of the tokens; when that does not find each token exactly
 * once, the token-by-token search below decides (and refuses).
 */
function findSlots(template: string, names: readonly SlotName[]): PreparedEvent['slots'] {
  const found: { at: number; length: number; name: SlotName }[] = [];
  for (let at = template.indexOf(SLOT_PREFIX); at >= 0; at = template.indexOf(SLOT_PREFIX, at + 1)) {
    const name = names.find((n) => template.startsWith(SLOT_TOKEN[n], at));
    if (name === undefined || found.length === names.length || found.some((f) => f.name === name)) return searchSlots(template, names);
    found.push({ at, length: SLOT_TOKEN[name].length, name });
  }
  return found.length === names.length ? found : searchSlots(template, names);
}

function searchSlots(template: string, names: readonly SlotName[]): PreparedEvent['slots'] {
  return names
    .map((name) => {
      const token = SLOT_TOKEN[name];
      const at = template.indexOf(token);
      // The nonce is secret and fresh per process, so event content cannot hold a slot; check anyway.
      if (at < 0 || template.indexOf(token, at + 1) >= 0) throw new FormatError('ENVELOPE_INVALID', 'the event holds a reserved placeholder string');
      return { at, length: token.length, name };
    })
    .sort((a, b) => a.at - b.at);
}

const DIGEST_TEXT = /^[A-Za-z0-9_-]{43}$/;

const RECORDED_AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

function placeError(field: string, message: string): FormatError {
  return new FormatError('ENVELOPE_INVALID', `invalid envelope: ${field}: ${message}`, { field });
}

/** The JSON of a placed value, after checking it is what the envelope allows there. */
function slotValue(name: SlotName, p: PlaceParams): string {
  switch (name) {
    case 'recordedAt':
      if (!RECORDED_AT.test(p.recordedAt)) throw placeError('recordedAt', 'expected an RFC 3339 UTC time');
      return JSON.stringify(p.recordedAt);
    case 'seq':
      if (!Number.isSafeInteger(p.seq) || p.seq! < 1) throw placeError('session.seq', 'expected a positive integer');
      return String(p.seq);
    case 'prev': {
      const prev = p.prev ?? null;
      if ((prev === null) !== (p.seq === 1) || (prev !== null && !DIGEST_TEXT.test(prev))) {
        throw placeError('session.prev', 'must be null exactly when seq is 1, else a base64url SHA-256 digest (43 characters)');
      }
      return JSON.stringify(prev);
    }
    case 'sealCount':
      if (p.seal === undefined || !Number.isSafeInteger(p.seal.count) || p.seal.count < 1) throw placeError('seal', 'required for session.closed, as { count, head }');
      return String(p.seal.count);
    case 'sealHead':
      if (p.seal === undefined || typeof p.seal.head !== 'string' || !DIGEST_TEXT.test(p.seal.head)) throw placeError('seal.head', 'expected a base64url SHA-256 digest (43 characters)');
      return JSON.stringify(p.seal.head);
  }
}

/**
 * Places a prepared event: fills its slots with `recordedAt`, the session `seq` and
 * `prev`, and the seal, and hashes the entry. Costs one pass over the template and
 * one SHA-256, so the sequencer can do it while it holds the log's head.
 * @throws FormatError `ENVELOPE_INVALID` when a placed value is not one the envelope allows
 */
export function placeEvent(prepared: PreparedEvent, params: PlaceParams): SealedEvent {
  const { template, slots } = prepared;
  let text = '';
  let from = 0;
  for (const slot of slots) {
    text += template.slice(from, slot.at) + slotValue(slot.name, params);
    from = slot.at + slot.length;
  }
  text += template.slice(from);
  const envelope: Envelope = { ...prepared.envelope, recordedAt: params.recordedAt };
  if (envelope.session !== undefined) envelope.session = { ...envelope.session, seq: params.seq!, prev: params.prev ?? null };
  if (envelope.seal !== undefined) envelope.seal = { count: params.seal!.count, head: params.seal!.head };
  const entry = utf8(text);
  const hash = leafHash(entry);
  return { envelope, entry, leafHash: hash, digest: toBase64url(hash), disclosures: prepared.disclosures };
}

/**
 * Seals an event in one step: assigns `v`, `tenant`, `recordedAt` and the session
 * `seq`/`prev`, replaces sensitive fields with commitments, validates, and encodes
 * the entry. A `session.closed` draft must carry its seal. It is
 * `placeEvent(prepareEvent(draft, params), params)`.
 * @throws FormatError `ENVELOPE_INVALID` naming the field, or `JSON_INVALID`
 */
export function sealEvent(draft: EventDraft, params: SealParams): SealedEvent {
  return placeEvent(prepareEvent(draft, params), { ...params, ...(draft.type === 'session.closed' && draft.seal !== undefined ? { seal: draft.seal } : {}) });
}
