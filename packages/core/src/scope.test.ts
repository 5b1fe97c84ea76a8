import { describe, expect, it } from 'vitest';

import { scopeExcess, scopeHolds } from './scope.js';

describe('scope', () => {
  it('holds a token itself, and <server>.<name> under <server>.*', () => {
    expect(scopeHolds(['refunds:read'], 'refunds:read')).toBe(true);
    expect(scopeHolds(['files.*'], 'files.read_file')).toBe(true);
    expect(scopeHolds(['files.*'], 'files.*')).toBe(true);
    expect(scopeHolds(['files.*'], 'files.x.y')).toBe(true);
    // The server part is everything before the first dot, matched whole.
    expect(scopeHolds(['files.*'], 'filesystem.read')).toBe(false);
    expect(scopeHolds(['files.read_file'], 'files.*')).toBe(false);
    expect(scopeHolds(['files.read_file'], 'files.write_file')).toBe(false);
    // Only `<server>.*` is a pattern: `*`, `files*` and `refunds:*` are plain tokens.
    expect(scopeHolds(['*'], 'files.read_file')).toBe(false);
    expect(scopeHolds(['files*'], 'files.read_file')).toBe(false);
    expect(scopeHolds(['refunds:*'], 'refunds:read')).toBe(false);
    expect(scopeHolds(['.*'], '.x')).toBe(false);
  });

  it('names what a request asks beyond a grant', () => {
    expect(scopeExcess(['files.read_file', 'files.write_file'], ['files.*'])).toEqual([]);
    expect(scopeExcess(['files.*', 'payments.transfer'], ['files.read_file', 'payments.*'])).toEqual(['files.*']);
    expect(scopeExcess(['a', 'c'], ['a', 'b'])).toEqual(['c']);
  });
});
