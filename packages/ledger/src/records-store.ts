/**
 * The records-management part of the `LedgerStore` contract: what retention,
 * legal hold, redaction and keyed-digest search need from a store. Like the rest
 * of the contract it keeps rows and bytes and decides nothing: which fields are
 * past retention, which hold applies and how a digest is computed is
 * `@custody/records`' business.
 *
 * None of these methods touches an entry's bytes, a tree node or a checkpoint:
 * records management only ever drops disclosures (docs/records.md).
 */

/** A retention rule: committed fields of entries of `type` are kept `days` days after `recordedAt`. */
export interface RetentionRuleRow {
  /** An event type, a family `prefix.*`, or `*` for every type. */
  type: string;
  /** JSON Pointer of one committed field (e.g. `/data/result`), or `''` for every committed field. */
  field: string;
  /** Whole days, 0 or more. */
  days: number;
  /** When the rule was last set (RFC 3339). */
  updatedAt: string;
}

/** A legal hold: while not lifted, no disclosure of an entry it covers is purged. */
export interface LegalHoldRow {
  id: string;
  kind: 'session' | 'principal' | 'range';
  /** The session id (`session`) or principal id (`principal`). */
  target?: string;
  /** `range`: `recordedAt` at or after (RFC 3339). */
  since?: string;
  /** `range`: `recordedAt` before (RFC 3339). */
  until?: string;
  reason: string;
  createdAt: string;
  /** Who placed it (the admin principal id). */
  createdBy: string;
  liftedAt?: string;
  liftedBy?: string;
}

/** One keyed digest of a value found at `path` in the entry at `index`. */
export interface ValueDigestRow {
  index: number;
  /** JSON Pointer the value was found at. */
  path: string;
  /** base64url HMAC-SHA-256 (computed by the caller; the store never sees the value). */
  digest: string;
}

/**
 * Records-management rows of a store. Every write MUST be atomic and durable
 * before it resolves, and MUST reject with a `StoreError` as the rest of the
 * contract does.
 */
export interface StoreRecords {
  /**
   * Replaces an entry's disclosures only if they still equal `expected` (a
   * compare-and-set, so two redactions or a redaction and a purge never undo
   * each other). Resolves to false when they differ or there is no such entry.
   * The entry bytes MUST NOT change.
   */
  replaceDisclosures(tenant: string, index: number, expected: readonly string[], next: readonly string[]): Promise<boolean>;

  /** The tenant's retention rules, ordered by type then field. */
  retentionRules(tenant: string): Promise<RetentionRuleRow[]>;
  /** Inserts a rule or replaces the rule with the same type and field. */
  putRetentionRule(tenant: string, rule: RetentionRuleRow): Promise<void>;
  /** Deletes a rule; resolves to false when there was none. */
  deleteRetentionRule(tenant: string, type: string, field: string): Promise<boolean>;

  /** Every hold of the tenant, lifted ones included, oldest first. */
  holds(tenant: string): Promise<LegalHoldRow[]>;
  /** Inserts a hold; resolves to false, writing nothing, when the tenant already has a hold with its id. */
  putHold(tenant: string, hold: LegalHoldRow): Promise<boolean>;
  /** Lifts a hold that is in force; resolves to false when there is no such hold in force. */
  liftHold(tenant: string, id: string, at: string, by: string): Promise<boolean>;

  /** A per-tenant setting of records management (e.g. the digest paths), or undefined. */
  getSetting(tenant: string, name: string): Promise<string | undefined>;
  putSetting(tenant: string, name: string, value: string): Promise<void>;

  /**
   * The tenant's keyed-digest key. The first call stores `candidate` (32 random
   * bytes); every later call, in any process, resolves to the stored key.
   */
  digestKey(tenant: string, candidate: Uint8Array): Promise<Uint8Array>;

  /** The position of a named cursor over the tenant's log (0 when never set). */
  cursor(tenant: string, name: string): Promise<number>;
  /** Sets a cursor, backwards too (e.g. to re-index after a configuration change). */
  setCursor(tenant: string, name: string, next: number): Promise<void>;
  /**
   * Inserts keyed digests (an existing identical row is kept) and advances the
   * cursor to `cursor.next` unless it is already there or beyond, in one transaction.
   */
  putDigests(tenant: string, rows: readonly ValueDigestRow[], cursor: { name: string; next: number }): Promise<void>;
  /** Entry indexes with a digest equal to `digest`, ascending, each once, after `after`. */
  findDigests(tenant: string, digest: string, page: { limit: number; after?: number }): Promise<number[]>;
  /** Deletes the digests of entry `index` found at or under any of `paths`; resolves to how many. */
  deleteDigests(tenant: string, index: number, paths: readonly string[]): Promise<number>;
}

/** A legal_holds row as both stores read it. @internal */
export interface HoldDbRow {
  id: string;
  kind: LegalHoldRow['kind'];
  target: string | null;
  since: string | null;
  until: string | null;
  reason: string;
  created_at: string;
  created_by: string;
  lifted_at: string | null;
  lifted_by: string | null;
}

/** A hold row as the contract shows it. @internal */
export function toHold(r: HoldDbRow): LegalHoldRow {
  const h: LegalHoldRow = { id: r.id, kind: r.kind, reason: r.reason, createdAt: r.created_at, createdBy: r.created_by };
  if (r.target !== null) h.target = r.target;
  if (r.since !== null) h.since = r.since;
  if (r.until !== null) h.until = r.until;
  if (r.lifted_at !== null) h.liftedAt = r.lifted_at;
  if (r.lifted_by !== null) h.liftedBy = r.lifted_by;
  return h;
}
