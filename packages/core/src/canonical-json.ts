/**
 * RFC 8785 JSON Canonicalization Scheme (JCS), wrapped so that every failure is a
 * typed FormatError and so that parsing can insist on canonical input.
 *
 * For a JSON value, RFC 8785 is ECMAScript's JSON.stringify with object members
 * sorted by the UTF-16 code units of their names (RFC 8785 §3.2.3), and with lone
 * surrogates, NaN and the infinities refused. `safe-stable-stringify` in strict,
 * deterministic mode is exactly that serialiser, at about three times the rate of
 * `canonicalize` (the RFC co-author's reference package), except that it escapes a
 * lone surrogate as `\udXXX` instead of refusing it. So its output is used unless it
 * holds `\ud`, the start of every such escape; then `canonicalize` decides, refusing
 * the value or (for text that merely holds those characters) giving the same bytes.
 * The RFC 8785 vectors in test-vectors/v1/canonical-json check the output and the
 * refusal; canonical-json.test.ts checks both paths against `canonicalize` itself.
 */
import canonicalize from 'canonicalize';
import { configure } from 'safe-stable-stringify';

import { fromUtf8, utf8 } from './bytes.js';
import { FormatError } from './errors.js';

/** A JSON value as JCS sees it. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Sorted members; throws on NaN, ±Infinity, BigInt, functions, symbols and cycles. */
const stringify = configure({ strict: true, deterministic: true, bigint: false, circularValue: Error });

/**
 * The RFC 8785 canonical serialisation of `value` (a JSON value: plain objects,
 * arrays, strings, finite numbers, booleans and null; `toJSON` is honoured).
 * Rejects NaN, ±Infinity, lone surrogates, cycles, BigInt and values JSON cannot hold.
 */
export function canonicalJson(value: unknown): string {
  let out: string | undefined;
  try {
    out = stringify(value);
    if (out !== undefined && out.includes('\\ud')) out = canonicalize(value);
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new FormatError('JSON_INVALID', `value cannot be canonicalised: ${reason}`, { cause });
  }
  if (out === undefined) throw new FormatError('JSON_INVALID', 'value has no JSON representation');
  return out;
}

type WellFormed = (this: string) => boolean;
const nativeWellFormed = (String.prototype as { isWellFormed?: WellFormed }).isWellFormed;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True when `s` holds no lone surrogate (String.prototype.isWellFormed where the engine has it). */
export const isWellFormed: (s: string) => boolean =
  nativeWellFormed !== undefined ? (s) => nativeWellFormed.call(s) : (s) => !LONE_SURROGATE.test(s);

/** UTF-8 bytes of the RFC 8785 canonical serialisation of `value`. */
export function canonicalBytes(value: unknown): Uint8Array {
  return utf8(canonicalJson(value));
}

/** Parses JSON text, turning syntax errors into FormatError('JSON_INVALID'). */
export function parseJson(text: string, what = 'JSON'): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new FormatError('JSON_INVALID', `${what} is not valid JSON`, { cause });
  }
}

/**
 * Parses UTF-8 bytes that MUST already be RFC 8785 canonical (attacker-controlled:
 * entry bytes). Rejects invalid UTF-8, invalid JSON, and any text that is not
 * exactly the canonical form of its own parse: whitespace, duplicate keys,
 * unsorted keys, non-canonical numbers or escapes.
 */
export function parseCanonical(bytes: Uint8Array, what = 'entry'): unknown {
  const text = fromUtf8(bytes, what);
  const value = parseJson(text, what);
  if (canonicalJson(value) !== text) {
    throw new FormatError('JSON_NOT_CANONICAL', `${what} is not RFC 8785 canonical JSON`);
  }
  return value;
}
