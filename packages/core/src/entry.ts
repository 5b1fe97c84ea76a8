/**
 * Entries: the exact bytes the log commits to for one event, the RFC 8785
 * canonical JSON of the sealed envelope, and their digests.
 */
import { fromBase64, toBase64url } from './bytes.js';
import { canonicalBytes, parseCanonical } from './canonical-json.js';
import { commitFields, DEFAULT_SENSITIVE_PATHS, type RandomBytes } from './commitment.js';
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

/** The envelope a draft becomes, before commitments: what both sealing and its dry run validate. */
function envelopeOf(draft: EventDraft, params: SealParams): Record<string, unknown> {
  const base: Record<string, unknown> = { ...draft, v: ENVELOPE_VERSION, tenant: params.tenant, recordedAt: params.recordedAt };
  if (draft.session !== undefined) {
    base['session'] = { ...draft.session, seq: params.seq, prev: params.prev ?? null };
  }
  return base;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Finds a value RFC 8785 cannot serialise in parsed JSON: a lone surrogate or a non-finite number. */
function jsonFault(node: unknown, path: string): string | undefined {
  if (typeof node === 'string') return LONE_SURROGATE.test(node) ? path : undefined;
  if (typeof node === 'number') return Number.isFinite(node) ? undefined : path;
  if (node === null || typeof node !== 'object') return undefined;
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      const f = jsonFault(node[i], `${path}[${i}]`);
      if (f !== undefined) return f;
    }
    return undefined;
  }
  for (const [k, v] of Object.entries(node)) {
    if (LONE_SURROGATE.test(k)) return `${path}.${k}`;
    const f = jsonFault(v, path === '' ? k : `${path}.${k}`);
    if (f !== undefined) return f;
  }
  return undefined;
}

/**
 * Checks that `sealEvent(draft, params)` would succeed, without committing,
 * canonicalising or hashing: the cheap dry run an API does before accepting a
 * request, so that one bad event refuses the request before anything is written.
 * @throws FormatError `ENVELOPE_INVALID` naming the field, or `JSON_INVALID`
 */
export function validateDraft(draft: EventDraft, params: SealParams): void {
  const env = envelopeOf(draft, params);
  validateEnvelope(env);
  const fault = jsonFault(env, '');
  if (fault !== undefined) {
    throw new FormatError('JSON_INVALID', `${fault}: holds a value RFC 8785 JSON cannot hold (a lone surrogate or a non-finite number)`, { field: fault });
  }
}

/**
 * Seals an event: assigns `v`, `tenant`, `recordedAt` and the session `seq`/`prev`,
 * replaces sensitive fields with commitments, validates, and encodes the entry.
 * @throws FormatError `ENVELOPE_INVALID` naming the field
 */
export function sealEvent(draft: EventDraft, params: SealParams): SealedEvent {
  const { committed, disclosures } = commitFields(envelopeOf(draft, params), params.sensitivePaths ?? DEFAULT_SENSITIVE_PATHS, params.random);
  const envelope = validateEnvelope(committed);
  const entry = canonicalBytes(envelope);
  const hash = leafHash(entry);
  return { envelope, entry, leafHash: hash, digest: toBase64url(hash), disclosures };
}
