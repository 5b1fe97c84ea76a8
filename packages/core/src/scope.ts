/**
 * What a scope holds. Scope tokens are opaque strings, with one rule of their own:
 * `<server>.*` holds every `<server>.<name>` (a server's tools, as policy reads a
 * session's scope for a call). So narrowing `files.*` to `files.read_file`, on
 * delegation or in a handoff, is narrowing, and the reverse is widening.
 */

/** True when a scope (a set of tokens) holds `token`: the token itself, or `<server>.*` for a `<server>.<name>` token. */
export function scopeHolds(scope: readonly string[], token: string): boolean {
  if (scope.includes(token)) return true;
  const dot = token.indexOf('.');
  return dot > 0 && scope.includes(`${token.slice(0, dot)}.*`);
}

/** The tokens of `requested` that `granted` does not hold (empty when `requested` narrows or equals it). */
export function scopeExcess(requested: readonly string[], granted: readonly string[]): string[] {
  return requested.filter((t) => !scopeHolds(granted, t));
}
