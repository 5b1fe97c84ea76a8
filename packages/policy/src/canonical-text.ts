/**
 * The canonical text of a policy set and its version: SHA-256 over that text.
 * See docs/policies.md, "Versioning".
 */
import { sha256, toHex } from '@custody/core';

import { SCHEMA_VERSION } from './schema.js';

/** One source file of a policy set: its name within the folder and its text. */
export interface PolicySourceFile {
  /** File name, e.g. `10-payments.cedar` or `arguments.cedarschema`. */
  name: string;
  text: string;
}

/** First line of every canonical text: the format and the built-in schema's version. */
export const CANONICAL_HEADER = `custody.policy-set/v1 ${SCHEMA_VERSION}\n`;

/** Strips a UTF-8 BOM, turns CRLF and lone CR into LF, and ends the text with exactly one LF. */
export function normaliseText(text: string): string {
  let t = text.startsWith('\uFEFF') ? text.slice(1) : text;
  t = t.replace(/\r\n?/g, '\n');
  t = t.replace(/\n*$/, '');
  return `${t}\n`;
}

const encoder = new TextEncoder();

/** Compares names by their UTF-8 bytes (the order the canonical text uses). */
export function compareNames(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/**
 * The canonical text of a policy set: {@link CANONICAL_HEADER}, then for each file
 * in UTF-8 byte order of its name a line `=== <name>` followed by its normalised
 * text ({@link normaliseText}).
 */
export function canonicalPolicyText(files: readonly PolicySourceFile[]): string {
  const sorted = [...files].sort((a, b) => compareNames(a.name, b.name));
  let out = CANONICAL_HEADER;
  for (const f of sorted) out += `=== ${f.name}\n${normaliseText(f.text)}`;
  return out;
}

/**
 * The policy-set version: `sha256:` and the lowercase hex SHA-256 of the UTF-8
 * canonical text. Equal for equal policies whatever the line endings or the
 * order the files were read in.
 * @example
 * policySetVersion([{ name: 'a.cedar', text: 'permit(principal, action, resource);' }])
 * // 'sha256:…' (64 hex digits)
 */
export function policySetVersion(files: readonly PolicySourceFile[]): string {
  return `sha256:${toHex(sha256(encoder.encode(canonicalPolicyText(files))))}`;
}
