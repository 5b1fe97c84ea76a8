/**
 * fast-check arbitraries from the JSON Schemas of the OpenAPI document: values
 * that follow a schema (so requests get past validation into the handlers), and
 * hostile values to put anywhere in them (wrong types, huge strings, deep
 * nesting, unicode, objects whose toString is not a function …).
 */
import fc from 'fast-check';

export type Schema = Record<string, unknown>;

/** Values that break assumptions: each is valid JSON. */
export function hostile(): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.constantFrom<unknown>(
      null,
      true,
      0,
      -1,
      -0,
      1.5,
      1e308,
      -1e308,
      2 ** 53 + 1,
      '',
      ' ',
      '\u0000',
      '\ud800',
      '\udfff\ud800',
      '🦀'.repeat(300),
      'ｆｕｌｌｗｉｄｔｈ',
      '\u202e\u200b\ufeff',
      '../../etc/passwd',
      '%00%2F%25',
      '${jndi:ldap://x}',
      "' OR 1=1 --",
      '<script>alert(1)</script>',
      '2026-02-30T25:61:61Z',
      '9999-12-31T23:59:59.999Z',
      '0000-01-01T00:00:00Z',
      'apr-00000000-0000-0000-0000-000000000000',
      [],
      {},
      [null],
      { toString: 1, valueOf: 1 },
      { toString: { toString: 1 } },
      { $commitment: 'x' },
      { length: -1 },
      { constructor: { name: 'x' } },
      { hasOwnProperty: 1 },
    ),
    fc.integer({ min: 1, max: 400 }).map((n) => 'x'.repeat(n * 1000)),
    fc.integer({ min: 1, max: 3000 }).map((n) => nest(n)),
    fc.string({ unit: 'binary', maxLength: 64 }),
    fc.string({ unit: 'grapheme', maxLength: 64 }),
    fc.jsonValue({ maxDepth: 3 }),
  );
}

/** `n` nested arrays (or objects). */
export function nest(n: number): unknown {
  let v: unknown = n % 2 === 0 ? [] : {};
  for (let i = 0; i < n; i++) v = i % 3 === 0 ? { a: v } : [v];
  return v;
}

/** Resolves `$ref`s against the document's components. */
export function resolver(components: Record<string, Schema>): (s: Schema) => Schema {
  const resolve = (s: Schema): Schema => {
    const ref = s['$ref'];
    if (typeof ref !== 'string') return s;
    const target = components[ref.replace('#/components/schemas/', '')];
    return target === undefined ? {} : resolve(target);
  };
  return resolve;
}

/** A value that follows `schema` (roughly: the keywords the API uses). */
export function fromSchema(schema: Schema, resolve: (s: Schema) => Schema, depth = 0): fc.Arbitrary<unknown> {
  const s = resolve(schema);
  const alts = (s['oneOf'] ?? s['anyOf']) as Schema[] | undefined;
  if (Array.isArray(alts) && alts.length > 0) return fc.oneof(...alts.map((a) => fromSchema({ ...s, oneOf: undefined, anyOf: undefined, ...a }, resolve, depth)));
  if (Array.isArray(s['enum']) && s['enum'].length > 0) return fc.constantFrom(...(s['enum'] as unknown[]));
  if ('const' in s) return fc.constant(s['const']);
  const type = s['type'];
  if (Array.isArray(type)) return fc.oneof(...type.map((t) => fromSchema({ ...s, type: t }, resolve, depth)));
  switch (type) {
    case 'string': {
      if (typeof s['pattern'] === 'string') {
        try {
          return fc.stringMatching(new RegExp(s['pattern'])).filter((v) => v.length <= ((s['maxLength'] as number | undefined) ?? 4096));
        } catch {
          return fc.string();
        }
      }
      if (s['format'] === 'date-time') return fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString());
      const min = (s['minLength'] as number | undefined) ?? 0;
      const max = Math.max(min, Math.min((s['maxLength'] as number | undefined) ?? 24, 24));
      return fc.string({ minLength: min, maxLength: max });
    }
    case 'integer':
      return fc.integer({ min: Math.max((s['minimum'] as number | undefined) ?? -1000, -(2 ** 31)), max: Math.min((s['maximum'] as number | undefined) ?? 100_000, 2 ** 31) });
    case 'number':
      return fc.double({ noNaN: true, noDefaultInfinity: true, min: (s['minimum'] as number | undefined) ?? -1e6, max: (s['maximum'] as number | undefined) ?? 1e6 });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      if (depth > 4) return fc.constant([]);
      const items = (s['items'] as Schema | undefined) ?? {};
      return fc.array(fromSchema(items, resolve, depth + 1), { minLength: (s['minItems'] as number | undefined) ?? 0, maxLength: Math.min((s['maxItems'] as number | undefined) ?? 3, 3) });
    }
    case 'object': {
      const props = (s['properties'] ?? {}) as Record<string, Schema>;
      if (depth > 4 || Object.keys(props).length === 0) return fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 });
      const required = ((s['required'] ?? []) as string[]).filter((k) => k in props);
      return fc.record(Object.fromEntries(Object.entries(props).map(([k, v]) => [k, fromSchema(v, resolve, depth + 1)])), { requiredKeys: required });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** Every path to a node of a JSON value (the root is []). */
function paths(value: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (out.length > 200) return out;
  if (Array.isArray(value)) value.forEach((v, i) => paths(v, [...at, i], out));
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) paths(v, [...at, k], out);
  return out;
}

/** A copy of `value` with the node at `path` replaced (or, for an object, a field added or removed). */
function edit(value: unknown, path: (string | number)[], change: (node: unknown) => unknown): unknown {
  if (path.length === 0) return change(value);
  const [head, ...rest] = path;
  if (Array.isArray(value)) return value.map((v, i) => (i === head ? edit(v, rest, change) : v));
  const obj = value as Record<string, unknown>;
  return { ...obj, [head!]: edit(obj[head!], rest, change) };
}

/** A mutation of a value: replace a node with a hostile one, drop a field, add an unknown one. */
export function mutated(base: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  const one = fc.tuple(fc.nat(), fc.constantFrom('replace', 'replace', 'drop', 'add', 'wrap'), hostile(), fc.string({ minLength: 1, maxLength: 12 }));
  return fc.tuple(base, fc.array(one, { minLength: 1, maxLength: 3 })).map(([v, changes]) => changes.reduce((acc, change) => mutateOnce(acc, ...change), v));
}

function mutateOnce(v: unknown, pick: number, how: string, bad: unknown, key: string): unknown {
  const all = paths(v);
  const path = all[pick % all.length]!;
  switch (how) {
    case 'replace':
      return edit(v, path, () => bad);
    case 'drop':
      return path.length === 0 ? undefined : edit(v, path.slice(0, -1), (parent) => (Array.isArray(parent) ? parent.slice(1) : parent !== null && typeof parent === 'object' ? Object.fromEntries(Object.entries(parent).filter(([k]) => k !== String(path[path.length - 1]))) : parent));
    case 'add':
      return edit(v, path, (node) => (node !== null && typeof node === 'object' && !Array.isArray(node) ? { ...node, [key]: bad } : Array.isArray(node) ? [...node, bad] : node));
    default:
      return edit(v, path, (node) => [node]);
  }
}
