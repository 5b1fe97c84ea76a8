/**
 * Retention rules and legal holds as values: validation, which rule governs a
 * committed field, and which hold covers an entry. No I/O. See docs/records.md.
 */
import { isEventType } from '@custody/core';
import type { LegalHoldRow, RetentionRuleRow, StoredEntry } from '@custody/ledger';

import { RecordsError } from './errors.js';
import { checkPointer, isAtOrUnder } from './keyed-digest.js';

/** Longest retention accepted: 100 years. */
export const MAX_RETENTION_DAYS = 36_500;
const DAY_MS = 86_400_000;
const FAMILY = /^[a-z0-9_]+(\.[a-z0-9_]+)*\.\*$/;

/**
 * Checks a rule's type pattern: an event type, a family `prefix.*`, or `*`.
 * @throws RecordsError `RETENTION_INVALID`
 */
export function checkTypePattern(type: unknown): string {
  if (typeof type === 'string' && (type === '*' || FAMILY.test(type) || isEventType(type))) return type;
  throw new RecordsError('RETENTION_INVALID', 'type must be an event type (tool.completed), a family (tool.*) or * for every type', { field: 'type' });
}

/**
 * Checks a rule's days: a whole number from 0 to 36,500.
 * @throws RecordsError `RETENTION_INVALID`
 */
export function checkDays(days: unknown): number {
  if (typeof days === 'number' && Number.isSafeInteger(days) && days >= 0 && days <= MAX_RETENTION_DAYS) return days;
  throw new RecordsError('RETENTION_INVALID', `days must be a whole number from 0 to ${MAX_RETENTION_DAYS}`, { field: 'days' });
}

/**
 * Checks a rule's field: `''` (every committed field) or a JSON Pointer under `/data`.
 * @throws RecordsError `POINTER_INVALID`
 */
export function checkRuleField(field: unknown): string {
  if (field === undefined || field === '') return '';
  return checkPointer(field, 'field');
}

/** How specific a type pattern is: exact type > longer family > shorter family > `*`. */
function typeRank(pattern: string, type: string): number {
  if (pattern === type) return 1_000_000;
  if (pattern === '*') return 0;
  if (pattern.endsWith('.*')) {
    const prefix = pattern.slice(0, -1); // keeps the dot: `tool.`
    return type.startsWith(prefix) ? prefix.length : -1;
  }
  return -1;
}

/**
 * The rule that governs the committed field at `path` of an entry of `type`:
 * among the rules whose type matches (exact, family, `*`) and whose field is
 * `path`, one of its parents, or every field, the one with the most specific
 * type wins, then the one with the most specific field.
 */
export function governingRule(rules: readonly RetentionRuleRow[], type: string, path: string): RetentionRuleRow | undefined {
  let best: RetentionRuleRow | undefined;
  let bestRank: [number, number] = [-1, -1];
  for (const r of rules) {
    const t = typeRank(r.type, type);
    if (t < 0 || !isAtOrUnder(path, r.field)) continue;
    const f = r.field.length;
    if (t > bestRank[0] || (t === bestRank[0] && f > bestRank[1])) {
      best = r;
      bestRank = [t, f];
    }
  }
  return best;
}

/** Whether a field recorded at `recordedAt` is past the rule's retention at `now`. */
export function isExpired(rule: RetentionRuleRow, recordedAt: string, now: Date): boolean {
  return Date.parse(recordedAt) + rule.days * DAY_MS <= now.getTime();
}

/** What a new hold names. */
export type HoldTarget = { kind: 'session'; session: string } | { kind: 'principal'; principal: string } | { kind: 'range'; since: string; until: string };

function checkTime(value: unknown, field: string): string {
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/.test(value) && !Number.isNaN(Date.parse(value))) {
    return new Date(Date.parse(value)).toISOString();
  }
  throw new RecordsError('HOLD_INVALID', `${field} must be an RFC 3339 time such as 2026-01-31T00:00:00Z`, { field });
}

/**
 * Checks what a hold names and returns its stored fields.
 * @throws RecordsError `HOLD_INVALID`
 */
export function checkHoldTarget(t: HoldTarget): Pick<LegalHoldRow, 'kind' | 'target' | 'since' | 'until'> {
  const text = (v: unknown, field: string) => {
    if (typeof v !== 'string' || v.length === 0 || v.length > 512) throw new RecordsError('HOLD_INVALID', `${field} must be 1-512 characters`, { field });
    return v;
  };
  switch (t.kind) {
    case 'session':
      return { kind: 'session', target: text(t.session, 'session') };
    case 'principal':
      return { kind: 'principal', target: text(t.principal, 'principal') };
    case 'range': {
      const since = checkTime(t.since, 'since');
      const until = checkTime(t.until, 'until');
      if (Date.parse(since) >= Date.parse(until)) throw new RecordsError('HOLD_INVALID', 'since must be before until', { field: 'until' });
      return { kind: 'range', since, until };
    }
    default:
      throw new RecordsError('HOLD_INVALID', 'a hold names a session, a principal, or a time range (since and until)', { field: 'kind' });
  }
}

/** The first hold in force that covers the entry, or undefined. A range covers `recordedAt` in [since, until). */
export function holdCovering(holds: readonly LegalHoldRow[], e: StoredEntry): LegalHoldRow | undefined {
  const at = Date.parse(e.recordedAt);
  return holds.find((h) => {
    if (h.liftedAt !== undefined) return false;
    switch (h.kind) {
      case 'session':
        return e.sessionId === h.target;
      case 'principal':
        return e.initiatorId === h.target || e.actorId === h.target || e.principals.some((p) => p.id === h.target);
      case 'range':
        return at >= Date.parse(h.since!) && at < Date.parse(h.until!);
      default:
        // An unknown kind from a newer version: hold rather than purge.
        return true;
    }
  });
}
