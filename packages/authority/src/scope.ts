/**
 * OAuth scopes (RFC 6749 §3.3): space-delimited scope tokens. A session's scope
 * is a set; delegation may only narrow it.
 */
import { AuthorityError } from './errors.js';

/** RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]{1,256}$/;
/** Most scope tokens in one grant. */
export const MAX_SCOPE_TOKENS = 64;

/**
 * Parses a space-delimited scope string (attacker-controlled input) into a sorted
 * set of scope tokens.
 * @throws AuthorityError `SCOPE_INVALID` for a malformed or oversized scope
 */
export function parseScope(text: string): string[] {
  const tokens = text.split(' ').filter((t) => t !== '');
  if (tokens.length === 0) throw new AuthorityError('SCOPE_INVALID', 'scope is empty: name what the session may do, e.g. "refunds:read refunds:create"', { field: 'scope' });
  if (tokens.length > MAX_SCOPE_TOKENS) throw new AuthorityError('SCOPE_INVALID', `scope holds more than ${MAX_SCOPE_TOKENS} tokens`, { field: 'scope' });
  for (const t of tokens) {
    if (!SCOPE_TOKEN.test(t)) throw new AuthorityError('SCOPE_INVALID', 'scope tokens are 1-256 printable ASCII characters other than space, " and \\', { field: 'scope' });
  }
  return [...new Set(tokens)].sort();
}

/** The tokens of `requested` that `granted` does not hold (`<server>.*` holds `<server>.<name>`: @custody/core's scope rule). */
export { scopeExcess } from '@custody/core';

/** The space-delimited form of a scope set. */
export function scopeText(scope: readonly string[]): string {
  return scope.join(' ');
}
