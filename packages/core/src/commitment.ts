/**
 * Commitments and disclosures for sensitive fields, after SD-JWT (RFC 9901):
 * the entry holds `{ "$commitment": digest }`, the disclosure holds the salt and
 * the value. Dropping a disclosure redacts the field; the entry bytes do not change.
 * See docs/format.md, "Commitments and disclosures".
 */
import { fromBase64url, fromUtf8, toBase64url, utf8 } from './bytes.js';
import { canonicalJson, parseJson } from './canonical-json.js';
import { COMMITMENT_KEY, type Envelope } from './envelope.js';
import { FormatError } from './errors.js';
import { sha256 } from './hash.js';

/** Minimum salt length in bytes (128 bits). */
export const MIN_SALT_BYTES = 16;

/** Fields Custody commits by default: prompts, tool arguments and results, model outputs. */
export const DEFAULT_SENSITIVE_PATHS: readonly string[] = [
  '/data/prompt',
  '/data/arguments',
  '/data/result',
  '/data/output',
];

/** A commitment object as it stands in an entry. */
export interface Commitment {
  [COMMITMENT_KEY]: string;
}

/** A decoded disclosure. */
export interface Disclosure {
  /** base64url salt, at least 16 bytes. */
  salt: string;
  /** RFC 6901 JSON Pointer of the commitment inside the envelope. */
  path: string;
  value: unknown;
}

/** Source of random bytes; defaults to `crypto.getRandomValues`. */
export type RandomBytes = (length: number) => Uint8Array;

/** Bytes drawn from the CSPRNG at once: one call per 256 salts instead of one per salt. */
const POOL_BYTES = 4096;
let pool = new Uint8Array(0);
let poolAt = 0;

/**
 * `crypto.getRandomValues`, drawn through a pool (as Node's own randomUUID does); each
 * byte is handed out once. The default source of commitment salts; the server also draws
 * the random bits of the event ids it assigns from it (one CSPRNG call per 256 ids).
 */
export const pooledRandomBytes: RandomBytes = (length) => {
  if (length > POOL_BYTES) return globalThis.crypto.getRandomValues(new Uint8Array(length));
  if (poolAt + length > pool.length) {
    pool = globalThis.crypto.getRandomValues(new Uint8Array(POOL_BYTES));
    poolAt = 0;
  }
  const out = pool.slice(poolAt, poolAt + length);
  poolAt += length;
  return out;
};

/** The digest that stands for `disclosure`: base64url(SHA-256(ASCII(disclosure))). */
export function disclosureDigest(disclosure: string): string {
  return toBase64url(sha256(utf8(disclosure)));
}

/**
 * Makes the disclosure for `value` at `path`.
 * @example
 * const { disclosure, digest } = createDisclosure('/data/prompt', 'refund order 1234');
 */
export function createDisclosure(
  path: string,
  value: unknown,
  random: RandomBytes = pooledRandomBytes,
): { disclosure: string; digest: string } {
  cachedPointer(path);
  const salt = toBase64url(random(MIN_SALT_BYTES));
  const disclosure = toBase64url(utf8(canonicalJson([salt, path, value])));
  return { disclosure, digest: disclosureDigest(disclosure) };
}

/**
 * Decodes a disclosure (attacker-controlled).
 * @throws FormatError `DISCLOSURE_MALFORMED`
 */
export function parseDisclosure(disclosure: string): Disclosure {
  let decoded: unknown;
  try {
    decoded = parseJson(fromUtf8(fromBase64url(disclosure, 'disclosure'), 'disclosure'), 'disclosure');
  } catch (cause) {
    throw new FormatError('DISCLOSURE_MALFORMED', 'disclosure is not base64url of a JSON array', { cause });
  }
  if (!Array.isArray(decoded) || decoded.length !== 3) {
    throw new FormatError('DISCLOSURE_MALFORMED', 'disclosure must decode to [salt, path, value]');
  }
  const [salt, path, value] = decoded as [unknown, unknown, unknown];
  if (typeof salt !== 'string' || typeof path !== 'string') {
    throw new FormatError('DISCLOSURE_MALFORMED', 'disclosure salt and path must be strings');
  }
  let saltBytes: Uint8Array;
  try {
    saltBytes = fromBase64url(salt, 'salt');
  } catch (cause) {
    throw new FormatError('DISCLOSURE_MALFORMED', 'disclosure salt is not base64url', { cause });
  }
  if (saltBytes.length < MIN_SALT_BYTES) {
    throw new FormatError('DISCLOSURE_MALFORMED', `disclosure salt is shorter than ${MIN_SALT_BYTES} bytes`);
  }
  try {
    parsePointer(path);
  } catch (cause) {
    throw new FormatError('DISCLOSURE_MALFORMED', 'disclosure path is not a JSON Pointer', { cause });
  }
  return { salt, path, value };
}

/** Parsed pointers of the sensitive paths, which are the same few for every event. */
const POINTER_CACHE = new Map<string, readonly string[]>();
const POINTER_CACHE_MAX = 256;

/** parsePointer through a small cache, for the hot path (the result is shared: do not change it). */
function cachedPointer(pointer: string): readonly string[] {
  let tokens = POINTER_CACHE.get(pointer);
  if (tokens === undefined) {
    tokens = parsePointer(pointer);
    if (POINTER_CACHE.size < POINTER_CACHE_MAX) POINTER_CACHE.set(pointer, tokens);
  }
  return tokens;
}

/** Splits an RFC 6901 JSON Pointer into unescaped reference tokens. */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/') || /~[^01]|~$/.test(pointer)) {
    throw new FormatError('DISCLOSURE_MALFORMED', `not an RFC 6901 JSON Pointer: ${JSON.stringify(pointer)}`);
  }
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Builds an RFC 6901 JSON Pointer from reference tokens. */
export function formatPointer(tokens: readonly (string | number)[]): string {
  return tokens.map((t) => '/' + String(t).replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}

function isCommitment(node: unknown): node is Commitment {
  return (
    node !== null &&
    typeof node === 'object' &&
    !Array.isArray(node) &&
    typeof (node as Record<string, unknown>)[COMMITMENT_KEY] === 'string' &&
    Object.keys(node).length === 1
  );
}

/** Every commitment in an envelope's `data`, with its JSON Pointer, in document order. */
export function listCommitments(env: Envelope): { path: string; digest: string }[] {
  const out: { path: string; digest: string }[] = [];
  const walk = (node: unknown, tokens: (string | number)[]) => {
    if (isCommitment(node)) {
      out.push({ path: formatPointer(tokens), digest: node[COMMITMENT_KEY] });
    } else if (Array.isArray(node)) {
      node.forEach((item, i) => walk(item, [...tokens, i]));
    } else if (node !== null && typeof node === 'object') {
      for (const [k, v] of Object.entries(node)) walk(v, [...tokens, k]);
    }
  };
  if (env.data !== undefined) walk(env.data, ['data']);
  return out;
}

function getAt(root: unknown, tokens: readonly string[]): unknown {
  let node = root;
  for (const t of tokens) {
    if (node === null || typeof node !== 'object') return undefined;
    if (Array.isArray(node)) {
      if (!/^(0|[1-9]\d*)$/.test(t)) return undefined;
      node = node[Number(t)];
    } else {
      if (!Object.prototype.hasOwnProperty.call(node, t)) return undefined;
      node = (node as Record<string, unknown>)[t];
    }
  }
  return node;
}

function setAt(root: Record<string, unknown>, tokens: readonly string[], value: unknown): void {
  let node: unknown = root;
  for (let i = 0; i < tokens.length - 1; i++) node = (node as Record<string, unknown>)[tokens[i]!];
  const last = tokens[tokens.length - 1]!;
  if (Array.isArray(node)) node[Number(last)] = value;
  else (node as Record<string, unknown>)[last] = value;
}

/**
 * Replaces the values at `paths` (those present) with commitments.
 * Returns a new envelope-like object and the disclosures that open it. The input
 * is not changed: only the containers on a committed path are copied, the rest
 * is shared with the input.
 */
export function commitFields<T extends object>(
  env: T,
  paths: readonly string[] = DEFAULT_SENSITIVE_PATHS,
  random: RandomBytes = pooledRandomBytes,
): { committed: T; disclosures: string[] } {
  const committed = { ...env } as T & Record<string, unknown>;
  return { committed, disclosures: commitOwnedFields(committed, paths, random) };
}

/**
 * commitFields on an object the caller owns (a fresh copy): replaces the values
 * at `paths` in `root` itself, copying only the containers below it on a
 * committed path, and returns the disclosures.
 * @internal
 */
export function commitOwnedFields(root: Record<string, unknown>, paths: readonly string[] = DEFAULT_SENSITIVE_PATHS, random: RandomBytes = pooledRandomBytes): string[] {
  const committed = root;
  let copied: Set<unknown> | undefined;
  const disclosures: string[] = [];
  for (const path of paths) {
    const tokens = cachedPointer(path);
    if (tokens.length === 0) continue;
    const value = getAt(committed, tokens);
    if (value === undefined || isCommitment(value)) continue;
    const { disclosure, digest } = createDisclosure(path, value, random);
    // Copy-on-write down the path, so the caller's objects stay as they were.
    let node: Record<string, unknown> | unknown[] = committed;
    for (let i = 0; i < tokens.length - 1; i++) {
      const key = tokens[i]!;
      const child = (node as Record<string, unknown>)[key];
      let copy = child;
      copied ??= new Set<unknown>([committed]);
      if (!copied.has(child)) {
        copy = Array.isArray(child) ? [...(child as unknown[])] : { ...(child as Record<string, unknown>) };
        copied.add(copy);
        if (Array.isArray(node)) node[Number(key)] = copy;
        else node[key] = copy;
      }
      node = copy as Record<string, unknown> | unknown[];
    }
    const last = tokens[tokens.length - 1]!;
    if (Array.isArray(node)) node[Number(last)] = { [COMMITMENT_KEY]: digest };
    else node[last] = { [COMMITMENT_KEY]: digest };
    disclosures.push(disclosure);
  }
  return disclosures;
}

/** The result of checking disclosures against one entry. */
export interface DisclosureCheck {
  /** Commitments opened by a disclosure, with their values. */
  disclosed: { path: string; value: unknown }[];
  /** Commitments with no disclosure: redacted fields. */
  redacted: string[];
  /** Disclosures that are malformed or open nothing. */
  failures: { disclosure: number; code: 'DISCLOSURE_MALFORMED' | 'DISCLOSURE_MISMATCH'; message: string }[];
}

/** Checks each disclosure against the commitments of `env`, and lists what stays redacted. */
export function checkDisclosures(env: Envelope, disclosures: readonly string[]): DisclosureCheck {
  const commitments = listCommitments(env);
  const byPath = new Map(commitments.map((c) => [c.path, c.digest]));
  const opened = new Map<string, unknown>();
  const failures: DisclosureCheck['failures'] = [];
  disclosures.forEach((disclosure, i) => {
    let parsed: Disclosure;
    try {
      parsed = parseDisclosure(disclosure);
    } catch (err) {
      failures.push({ disclosure: i, code: 'DISCLOSURE_MALFORMED', message: (err as Error).message });
      return;
    }
    const expected = byPath.get(parsed.path);
    if (expected === undefined) {
      failures.push({
        disclosure: i,
        code: 'DISCLOSURE_MISMATCH',
        message: `disclosure for ${parsed.path} matches no commitment in the entry`,
      });
    } else if (expected !== disclosureDigest(disclosure)) {
      failures.push({
        disclosure: i,
        code: 'DISCLOSURE_MISMATCH',
        message: `disclosure for ${parsed.path} does not match its commitment`,
      });
    } else {
      opened.set(parsed.path, parsed.value);
    }
  });
  return {
    disclosed: [...opened].map(([path, value]) => ({ path, value })),
    redacted: commitments.filter((c) => !opened.has(c.path)).map((c) => c.path),
    failures,
  };
}

/** A copy of `env` with every commitment that `disclosures` open replaced by its value. */
export function revealFields(env: Envelope, disclosures: readonly string[]): Envelope {
  const out = structuredClone(env) as Envelope & Record<string, unknown>;
  for (const { path, value } of checkDisclosures(env, disclosures).disclosed) {
    setAt(out, parsePointer(path), value);
  }
  return out;
}
