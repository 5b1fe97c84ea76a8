/**
 * Checks of what callers pass the SDK (JavaScript callers and values read from
 * the environment or a config file are not protected by the TypeScript types):
 * a wrong type or value throws `ConfigError` (`SDK_CONFIG_INVALID`) naming the
 * option, never a silent default, a stringified "undefined" or a raw TypeError.
 * @internal
 */
import { ConfigError } from './errors.js';

/** The values of `toolsWhenUnavailable` / `whenUnavailable`. */
export const UNAVAILABLE_MODES = ['fail-closed', 'proceed'] as const;
const CAPTURES = ['full', 'digest', 'none'] as const;
/** The longest delay a timer takes (setTimeout clamps anything larger to 1 ms). */
const MAX_MS = 2_147_483_647;

const shown = (v: unknown): string => {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : typeof v;
};

/** An options object (or undefined when `optional`). */
export function optionsObject(option: string, v: unknown, optional: boolean): Record<string, unknown> {
  if (v === undefined && optional) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(option, `expected an options object, got ${shown(v)}`);
  return v as Record<string, unknown>;
}

/** A non-empty string. */
export function requiredString(option: string, v: unknown): string {
  if (typeof v !== 'string' || v.trim() === '') throw new ConfigError(option, `expected a non-empty string, got ${shown(v)}`);
  return v;
}

/** A non-empty string, or undefined. */
export function optionalString(option: string, v: unknown): string | undefined {
  return v === undefined ? undefined : requiredString(option, v);
}

/** Space-delimited tokens or a list of them: at least one, each a non-empty string without spaces. */
export function tokenList(option: string, v: unknown): string[] {
  const list = typeof v === 'string' ? v.split(' ').filter((t) => t !== '') : Array.isArray(v) ? (v as unknown[]) : undefined;
  if (list === undefined) throw new ConfigError(option, `expected a space-delimited string or a list of strings, got ${shown(v)}`);
  for (const t of list) {
    if (typeof t !== 'string' || t === '' || /\s/.test(t)) throw new ConfigError(option, `each entry must be a non-empty string without spaces, got ${shown(t)}`);
  }
  if (list.length === 0) throw new ConfigError(option, 'expected at least one entry');
  return list as string[];
}

/** A positive, finite number of milliseconds a timer can wait (at most 2^31 - 1), or undefined. */
export function optionalMs(option: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > MAX_MS) throw new ConfigError(option, `expected a positive number of milliseconds (at most ${MAX_MS}), got ${shown(v)}`);
  return v;
}

/** A positive whole number (e.g. seconds), or undefined. */
export function optionalPositiveInteger(option: string, v: unknown, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > max) throw new ConfigError(option, `expected a whole number from 1 to ${max}, got ${shown(v)}`);
  return v;
}

/** `fail-closed` or `proceed`, exactly, or undefined. */
export function optionalMode(option: string, v: unknown): 'fail-closed' | 'proceed' | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !(UNAVAILABLE_MODES as readonly string[]).includes(v)) throw new ConfigError(option, `must be 'fail-closed' or 'proceed', got ${shown(v)}`);
  return v as 'fail-closed' | 'proceed';
}

/** A capture level or `{ arguments?, result? }`, or undefined. */
export function optionalCapture(option: string, v: unknown): void {
  if (v === undefined) return;
  const one = (o: string, c: unknown) => {
    if (c !== undefined && (typeof c !== 'string' || !(CAPTURES as readonly string[]).includes(c))) throw new ConfigError(o, `must be 'full', 'digest' or 'none', got ${shown(c)}`);
  };
  if (typeof v === 'string') return one(option, v);
  const o = optionsObject(option, v, false);
  one(`${option}.arguments`, o['arguments']);
  one(`${option}.result`, o['result']);
}

/** true, false, or undefined. */
export function optionalBoolean(option: string, v: unknown): boolean | undefined {
  if (v !== undefined && typeof v !== 'boolean') throw new ConfigError(option, `expected true or false, got ${shown(v)}`);
  return v;
}

/** A function, or undefined. */
export function optionalFunction(option: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'function') throw new ConfigError(option, `expected a function, got ${shown(v)}`);
}

/** An AbortSignal (anything with `aborted` and `addEventListener`), or undefined. */
export function optionalSignal(option: string, v: unknown): AbortSignal | undefined {
  if (v === undefined) return undefined;
  const s = v as { aborted?: unknown; addEventListener?: unknown } | null;
  if (s === null || typeof s !== 'object' || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function') throw new ConfigError(option, `expected an AbortSignal, got ${shown(v)}`);
  return v as AbortSignal;
}
