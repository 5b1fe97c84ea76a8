import canonicalize from 'canonicalize';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { canonicalJson, isWellFormed } from './canonical-json.js';
import { FormatError } from './errors.js';

/** JSON values as JSON.parse makes them, with keys and strings across all of UTF-16 (lone surrogates included). */
const jsonValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.string({ unit: 'binary' }),
    fc.string({ unit: fc.constantFrom('\\', 'u', 'd', '8', '0', '"', '\u0000', '\ud83d', '\ude00', 'é') }),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), tie('value'), { maxKeys: 6 }),
  ),
})).value;

const hasLoneSurrogate = (s: string) => !isWellFormed(s);
const anyLoneSurrogate = (v: unknown): boolean =>
  typeof v === 'string'
    ? hasLoneSurrogate(v)
    : Array.isArray(v)
      ? v.some(anyLoneSurrogate)
      : v !== null && typeof v === 'object'
        ? Object.entries(v).some(([k, x]) => hasLoneSurrogate(k) || anyLoneSurrogate(x))
        : false;

describe('canonicalJson', () => {
  it('gives the bytes of the reference implementation (canonicalize), and refuses exactly what it refuses', () => {
    fc.assert(
      fc.property(jsonValue, (v) => {
        if (anyLoneSurrogate(v)) {
          expect(() => canonicalJson(v)).toThrow(FormatError);
          expect(() => canonicalize(v)).toThrow();
        } else {
          expect(canonicalJson(v)).toBe(canonicalize(v));
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('keeps text that only looks like a surrogate escape, and refuses a real lone surrogate in a key or a value', () => {
    expect(canonicalJson({ a: '\\ud800' })).toBe('{"a":"\\\\ud800"}');
    expect(canonicalJson({ '\ud83d\ude00': 1, '\u20ac': 2 })).toBe('{"€":2,"😀":1}');
    expect(() => canonicalJson({ a: 'x\ud800' })).toThrow(/cannot be canonicalised/);
    expect(() => canonicalJson({ ['\udc00']: 1 })).toThrow(FormatError);
  });

  it('refuses what JSON cannot hold, with JSON_INVALID', () => {
    const cycle: Record<string, unknown> = {};
    cycle['self'] = cycle;
    for (const bad of [Number.NaN, Infinity, [-Infinity], 10n, { f: () => 1 }, [Symbol('s')], cycle]) {
      expect(() => canonicalJson(bad)).toThrow(expect.objectContaining({ code: 'JSON_INVALID' }));
    }
    expect(() => canonicalJson(undefined)).toThrow(expect.objectContaining({ code: 'JSON_INVALID' }));
  });

  it('drops undefined members and writes undefined array items as null, as JSON.stringify does', () => {
    expect(canonicalJson({ b: undefined, a: [undefined, -0, 1e21, 0.1] })).toBe('{"a":[null,0,1e+21,0.1]}');
  });
});
