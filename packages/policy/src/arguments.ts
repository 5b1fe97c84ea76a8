/**
 * Fits a tool call's JSON arguments (attacker-controlled) to the schema's
 * `Arguments` type: undeclared attributes are dropped, declared ones must have
 * the declared type. A mismatch is reported, never passed on to Cedar, because
 * a `forbid` whose condition errors would silently not apply.
 */
import type { CedarType } from './cedar.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A value in Cedar's JSON form. @internal */
export type CedarJson = boolean | number | string | CedarJson[] | { [k: string]: CedarJson };

/** The result of fitting: the Cedar value, or the first mismatch naming its path. @internal */
export type Fitted = { ok: true; value: CedarJson } | { ok: false; path: string; message: string };

const EXTENSIONS = new Set(['datetime', 'decimal', 'ipaddr', 'duration']);

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'number' && !Number.isSafeInteger(v) ? 'a non-integer number' : `a ${typeof v}`;
}

/** Fits `value` to `type`; `path` names it in messages. @internal */
export function fitToType(value: unknown, type: CedarType, path: string): Fitted {
  const t = type as { type: string; name?: string; element?: CedarType; attributes?: Record<string, CedarType & { required?: boolean }> };
  const bad = (expected: string): Fitted => ({ ok: false, path, message: `expected ${expected}, got ${describe(value)}` });
  const kind = t.type === 'Extension' ? (t.name ?? '') : t.type;
  switch (kind) {
    case 'String':
      return typeof value === 'string' ? { ok: true, value } : bad('a string');
    case 'Long':
      // Cedar Longs are signed 64-bit; JSON numbers are exact only up to 2^53.
      return typeof value === 'number' && Number.isSafeInteger(value) ? { ok: true, value } : bad('an integer (Long)');
    case 'Boolean':
    case 'Bool':
      return typeof value === 'boolean' ? { ok: true, value } : bad('a boolean');
    case 'Set': {
      if (!Array.isArray(value)) return bad('an array (Set)');
      const out: CedarJson[] = [];
      for (let i = 0; i < value.length; i++) {
        const r = fitToType(value[i], t.element!, `${path}[${i}]`);
        if (!r.ok) return r;
        out.push(r.value);
      }
      return { ok: true, value: out };
    }
    case 'Record': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return bad('an object (Record)');
      const out: Record<string, CedarJson> = {};
      for (const [k, at] of Object.entries(t.attributes ?? {})) {
        const v = (value as Record<string, Json>)[k];
        if (v === undefined || v === null) {
          if (at.required === false) continue;
          return { ok: false, path: `${path}.${k}`, message: 'is required' };
        }
        const r = fitToType(v, at, `${path}.${k}`);
        if (!r.ok) return r;
        out[k] = r.value;
      }
      return { ok: true, value: out };
    }
    default:
      if (EXTENSIONS.has(kind)) {
        let arg: string | undefined;
        if (kind === 'decimal' && typeof value === 'number' && Number.isFinite(value)) arg = value.toFixed(4);
        else if (typeof value === 'string') arg = value;
        return arg === undefined ? bad(`a ${kind} string`) : { ok: true, value: { __extn: { fn: kind, arg } } };
      }
      return { ok: false, path, message: `arguments of type ${kind} are not supported; use String, Long, Bool, a Set, a record or decimal` };
  }
}
