/**
 * `Records`: records management over a Ledger. Redaction after sealing, erasure
 * for a data subject, retention with legal hold, and keyed-digest search. It only
 * ever drops disclosures: entries, tree nodes and checkpoints never change, so
 * every receipt, consistency proof and bundle keeps verifying. Every act is first
 * recorded as an `admin.*` entry in the tenant's log (docs/records.md).
 */
import { randomBytes } from 'node:crypto';

import { type EventDraft, listCommitments, parseDisclosure, revealFields } from '@custody/core';
import { decodeStoredEntry, type EventView, type Ledger, LedgerError, type LegalHoldRow, type RetentionRuleRow, type StoredEntry, viewOf } from '@custody/ledger';
import { v7 as uuidv7 } from 'uuid';

import { RecordsError } from './errors.js';
import { checkPointer, isAtOrUnder, keyedDigest, valueAt } from './keyed-digest.js';
import { checkDays, checkHoldTarget, checkRuleField, checkTypePattern, governingRule, holdCovering, type HoldTarget, isExpired } from './retention.js';

/** Who acts: the id of the `service` principal recorded as the admin entry's actor (e.g. `key:<admin key id>`). */
export interface Acting {
  by: string;
}

/** The outcome of redacting one event. */
export interface RedactResult {
  event: string;
  index: number;
  /** Fields whose disclosure this call dropped. */
  redacted: string[];
  /** Named fields that were already redacted. */
  alreadyRedacted: string[];
  /** Id of the `admin.redacted` entry, when anything was dropped. */
  entry?: string;
}

/** One page of an erasure for a data subject. */
export interface ErasureResult {
  subject: string;
  /** Events of the subject examined in this call. */
  scanned: number;
  /** Events whose disclosures were dropped. */
  events: number;
  /** Fields dropped. */
  fields: number;
  /** Present when more events follow: pass it back to continue. */
  nextCursor?: string;
}

/** A purge run's outcome. */
export interface PurgeResult {
  run: string;
  dryRun: boolean;
  /** Entries examined (those still holding disclosures). */
  scanned: number;
  /** Entries whose expired disclosures were dropped (or would be, in a dry run). */
  events: number;
  fields: number;
  /** Entries with expired fields kept because a legal hold covers them. */
  held: number;
  /** Holds that kept something, by id. */
  holds: string[];
  /** Ids of the `admin.purged` entries recorded (none in a dry run). */
  entries: string[];
}

/** Options for `Records`. */
export interface RecordsOptions {
  /** Clock for retention and admin entries (tests pass a fixed one). */
  now?: () => Date;
  /** Entries per `admin.purged` entry and per erasure page. Default 200. */
  chunk?: number;
}

const DIGEST_CURSOR = 'digests';
const DIGEST_PATHS = 'digestPaths';
const MAX_DIGEST_PATHS = 32;
const REASON_MAX = 1024;
const INDEX_CHUNK = 500;

function checkReason(reason: unknown): string {
  if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > REASON_MAX) {
    throw new RecordsError('RECORDS_REQUEST_INVALID', `reason must be 1-${REASON_MAX} characters, not only spaces`, { field: 'reason' });
  }
  return reason;
}

function checkBy(by: unknown): string {
  if (typeof by !== 'string' || by.length === 0 || by.length > 512) throw new RecordsError('RECORDS_REQUEST_INVALID', 'by must be 1-512 characters', { field: 'by' });
  return by;
}

/** Paths of the disclosures an entry still holds, parallel to `disclosures`. */
function disclosurePaths(disclosures: readonly string[]): (string | undefined)[] {
  return disclosures.map((d) => {
    try {
      return parseDisclosure(d).path;
    } catch {
      return undefined;
    }
  });
}

/**
 * Records management for every tenant of a ledger.
 * @example
 * const records = new Records(ledger);
 * await records.redact('acme', { event: id, fields: ['/data/arguments'], reason: 'GDPR art. 17 request 88', by: 'key:abc' });
 */
export class Records {
  readonly ledger: Ledger;
  readonly #now: () => Date;
  readonly #chunk: number;
  readonly #keys = new Map<string, Uint8Array>();
  /** Per-tenant queue: indexing, redaction and purge of one tenant run one at a time in this process. */
  readonly #queues = new Map<string, Promise<unknown>>();

  constructor(ledger: Ledger, opts: RecordsOptions = {}) {
    this.ledger = ledger;
    this.#now = opts.now ?? (() => new Date());
    this.#chunk = Math.max(1, Math.min(1000, opts.chunk ?? 200));
  }

  #serial<T>(tenant: string, fn: () => Promise<T>): Promise<T> {
    const prior = this.#queues.get(tenant) ?? Promise.resolve();
    const next = prior.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.#queues.set(tenant, tail);
    void tail.then(() => {
      if (this.#queues.get(tenant) === tail) this.#queues.delete(tenant);
    });
    return next;
  }

  /** Appends admin entries and resolves to their ids; throws the first refusal. */
  async #record(tenant: string, by: string, items: { type: `admin.${string}`; data: Record<string, unknown> }[]): Promise<string[]> {
    if (items.length === 0) return [];
    const time = this.#now().toISOString();
    const drafts: EventDraft[] = items.map((it) => ({ id: uuidv7(), type: it.type, time, actor: { type: 'service', id: by }, data: it.data }));
    const results = await this.ledger.append(tenant, drafts);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    return drafts.map((d) => d.id!);
  }

  /** Drops the disclosures at `paths` from the entry (compare-and-set, re-read on a race) and their keyed digests. */
  async #drop(tenant: string, e: StoredEntry, paths: readonly string[]): Promise<void> {
    let current = e;
    for (let attempt = 0; attempt < 5; attempt++) {
      const at = disclosurePaths(current.disclosures);
      const kept = current.disclosures.filter((_, i) => !paths.some((p) => at[i] !== undefined && isAtOrUnder(at[i]!, p)));
      if (kept.length === current.disclosures.length) break;
      if (await this.ledger.store.records.replaceDisclosures(tenant, current.index, current.disclosures, kept)) break;
      const again = (await this.ledger.store.getEntries(tenant, [current.index]))[0];
      if (again === undefined) break;
      current = again;
    }
    await this.ledger.store.records.deleteDigests(tenant, current.index, paths);
  }

  // -------------------------------------------------------------------------
  // Redaction and erasure
  // -------------------------------------------------------------------------

  /**
   * Redacts committed fields of one event after the fact: records `admin.redacted`
   * (naming the event and the fields, never their values), then drops the fields'
   * disclosures and keyed digests. Fields already redacted are reported, not an error.
   * @throws LedgerError `EVENT_NOT_FOUND`; RecordsError `POINTER_INVALID`,
   *   `FIELD_NOT_COMMITTED` (the entry holds no commitment at that pointer: a
   *   value in clear cannot be redacted without rewriting the entry), `RECORDS_REQUEST_INVALID`
   */
  async redact(tenant: string, req: Acting & { event: string; fields: readonly string[]; reason: string }): Promise<RedactResult> {
    const by = checkBy(req.by);
    const reason = checkReason(req.reason);
    if (!Array.isArray(req.fields) || req.fields.length === 0 || req.fields.length > 64) {
      throw new RecordsError('RECORDS_REQUEST_INVALID', 'name 1-64 fields to redact, as JSON Pointers such as /data/arguments', { field: 'fields' });
    }
    const fields = [...new Set(req.fields.map((f, i) => checkPointer(f, `fields[${i}]`)))];
    return this.#serial(tenant, async () => {
      const e = await this.ledger.store.getEntryById(tenant, req.event);
      if (e === undefined) throw new LedgerError('EVENT_NOT_FOUND', `no event ${req.event}`);
      const committed = listCommitments(decodeStoredEntry(e)).map((c) => c.path);
      for (const f of fields) {
        if (!committed.includes(f)) {
          throw new RecordsError(
            'FIELD_NOT_COMMITTED',
            `event ${req.event} has no commitment at ${f}: only committed fields can be redacted (this entry commits ${committed.length === 0 ? 'none' : committed.join(', ')})`,
            { field: 'fields' },
          );
        }
      }
      const held = new Set(disclosurePaths(e.disclosures));
      const drop = fields.filter((f) => held.has(f));
      const already = fields.filter((f) => !held.has(f));
      const out: RedactResult = { event: req.event, index: e.index, redacted: drop, alreadyRedacted: already };
      if (drop.length === 0) return out;
      [out.entry] = await this.#record(tenant, by, [{ type: 'admin.redacted', data: { event: req.event, index: e.index, fields: drop, reason } }]);
      await this.#drop(tenant, e, drop);
      return out;
    });
  }

  /**
   * Erasure for a data subject: redacts every committed field of every event whose
   * initiator is `subject`, one `admin.redacted` entry per event (with
   * `erasure.subject`), a page of events per call. Call again with `nextCursor`
   * until it is absent.
   */
  async erase(tenant: string, req: Acting & { subject: string; reason: string; cursor?: string; limit?: number }): Promise<ErasureResult> {
    const by = checkBy(req.by);
    const reason = checkReason(req.reason);
    if (typeof req.subject !== 'string' || req.subject.length === 0 || req.subject.length > 2048) {
      throw new RecordsError('RECORDS_REQUEST_INVALID', 'subject must be a principal id of 1-2048 characters', { field: 'subject' });
    }
    return this.#serial(tenant, async () => {
      const page = await this.ledger.store.queryEntries(
        tenant,
        { initiator: req.subject },
        { limit: req.limit ?? this.#chunk, order: 'asc', ...(req.cursor !== undefined ? { cursor: req.cursor } : {}) },
      );
      const todo: { e: StoredEntry; paths: string[] }[] = [];
      for (const e of page.items) {
        const paths = [...new Set(disclosurePaths(e.disclosures).filter((p): p is string => p !== undefined))];
        if (paths.length > 0) todo.push({ e, paths });
      }
      await this.#record(
        tenant,
        by,
        todo.map(({ e, paths }) => ({ type: 'admin.redacted' as const, data: { event: e.id, index: e.index, fields: paths, reason, erasure: { subject: req.subject } } })),
      );
      for (const { e, paths } of todo) await this.#drop(tenant, e, paths);
      return {
        subject: req.subject,
        scanned: page.items.length,
        events: todo.length,
        fields: todo.reduce((n, t) => n + t.paths.length, 0),
        ...(page.nextCursor !== undefined ? { nextCursor: page.nextCursor } : {}),
      };
    });
  }

  // -------------------------------------------------------------------------
  // Retention and legal hold
  // -------------------------------------------------------------------------

  /** The tenant's retention rules. */
  retention(tenant: string): Promise<RetentionRuleRow[]> {
    return this.ledger.store.records.retentionRules(tenant);
  }

  /**
   * Sets how many days committed fields of a type (and optionally one field) are
   * kept; records `admin.retention_set` first.
   * @throws RecordsError `RETENTION_INVALID`, `POINTER_INVALID`
   */
  async setRetention(tenant: string, req: Acting & { type: string; field?: string; days: number }): Promise<RetentionRuleRow> {
    const by = checkBy(req.by);
    const type = checkTypePattern(req.type);
    const field = checkRuleField(req.field);
    const days = checkDays(req.days);
    const before = (await this.retention(tenant)).find((r) => r.type === type && r.field === field);
    const rule: RetentionRuleRow = { type, field, days, updatedAt: this.#now().toISOString() };
    await this.#record(tenant, by, [
      { type: 'admin.retention_set', data: { type, field, days, ...(before !== undefined ? { previousDays: before.days } : {}) } },
    ]);
    await this.ledger.store.records.putRetentionRule(tenant, rule);
    return rule;
  }

  /**
   * Removes a retention rule (its fields are then kept, unless a broader rule applies);
   * records `admin.retention_deleted` first.
   * @throws RecordsError `RETENTION_NOT_FOUND`
   */
  async deleteRetention(tenant: string, req: Acting & { type: string; field?: string }): Promise<void> {
    const by = checkBy(req.by);
    const type = checkTypePattern(req.type);
    const field = checkRuleField(req.field);
    const before = (await this.retention(tenant)).find((r) => r.type === type && r.field === field);
    if (before === undefined) throw new RecordsError('RETENTION_NOT_FOUND', `no retention rule for type ${type}${field === '' ? '' : ` and field ${field}`}`);
    await this.#record(tenant, by, [{ type: 'admin.retention_deleted', data: { type, field, days: before.days } }]);
    await this.ledger.store.records.deleteRetentionRule(tenant, type, field);
  }

  /** Every hold of the tenant, lifted ones included. */
  holds(tenant: string): Promise<LegalHoldRow[]> {
    return this.ledger.store.records.holds(tenant);
  }

  /**
   * Places a legal hold on a session, a principal or a time range of `recordedAt`;
   * records `admin.hold_placed` first.
   * @throws RecordsError `HOLD_INVALID`, `RECORDS_REQUEST_INVALID`
   */
  async placeHold(tenant: string, req: Acting & HoldTarget & { reason: string }): Promise<LegalHoldRow> {
    const by = checkBy(req.by);
    const reason = checkReason(req.reason);
    const target = checkHoldTarget(req);
    const hold: LegalHoldRow = { id: uuidv7(), ...target, reason, createdAt: this.#now().toISOString(), createdBy: by };
    await this.#record(tenant, by, [{ type: 'admin.hold_placed', data: { hold: hold.id, ...target, reason } }]);
    await this.ledger.store.records.putHold(tenant, hold);
    return hold;
  }

  /**
   * Lifts a hold in force; records `admin.hold_lifted` first.
   * @throws RecordsError `HOLD_NOT_FOUND`
   */
  async liftHold(tenant: string, req: Acting & { id: string; reason?: string }): Promise<LegalHoldRow> {
    const by = checkBy(req.by);
    const reason = req.reason === undefined ? undefined : checkReason(req.reason);
    const hold = (await this.holds(tenant)).find((h) => h.id === req.id && h.liftedAt === undefined);
    if (hold === undefined) throw new RecordsError('HOLD_NOT_FOUND', `this tenant has no legal hold ${String(req.id).slice(0, 80)} in force`);
    const at = this.#now().toISOString();
    await this.#record(tenant, by, [{ type: 'admin.hold_lifted', data: { hold: hold.id, ...(reason !== undefined ? { reason } : {}) } }]);
    await this.ledger.store.records.liftHold(tenant, hold.id, at, by);
    return { ...hold, liftedAt: at, liftedBy: by };
  }

  /**
   * Purges: drops every disclosure past its retention rule, except in entries a
   * legal hold covers, and their keyed digests. Entries, tree nodes and
   * checkpoints stay, so every proof still verifies. Records `admin.purged`
   * entries naming each event and field, a chunk per entry, before dropping
   * anything; the run's last entry carries its `total` (so every run, even one
   * with nothing due, is on record).
   */
  async purge(tenant: string, req: Acting & { dryRun?: boolean }): Promise<PurgeResult> {
    const by = checkBy(req.by);
    return this.#serial(tenant, async () => {
      const store = this.ledger.store;
      const run = uuidv7();
      const dryRun = req.dryRun === true;
      const result: PurgeResult = { run, dryRun, scanned: 0, events: 0, fields: 0, held: 0, holds: [], entries: [] };
      const rules = await store.records.retentionRules(tenant);
      const holds = (await store.records.holds(tenant)).filter((h) => h.liftedAt === undefined);
      const now = this.#now();
      const size = (await store.head(tenant))?.size ?? 0;
      const holdIds = new Set<string>();
      let pending: { e: StoredEntry; paths: string[] }[] = [];
      let part = 0;
      const flush = async (last: boolean) => {
        if (!dryRun && (pending.length > 0 || last)) {
          const data = {
            run,
            part: part++,
            events: pending.map(({ e, paths }) => ({ event: e.id, index: e.index, fields: paths })),
            ...(last ? { total: { events: result.events, fields: result.fields, held: result.held, holds: [...holdIds] } } : {}),
          };
          result.entries.push(...(await this.#record(tenant, by, [{ type: 'admin.purged', data }])));
          for (const { e, paths } of pending) await this.#drop(tenant, e, paths);
        }
        pending = [];
      };
      if (rules.length > 0) {
        // The scan stops at the head as it was when the run began; admin.purged entries land after it.
        for await (const e of store.readEntries(tenant, 0, size)) {
          if (e.disclosures.length === 0) continue;
          result.scanned++;
          const paths = [
            ...new Set(
              disclosurePaths(e.disclosures).filter((p): p is string => {
                if (p === undefined) return false;
                const rule = governingRule(rules, e.type, p);
                return rule !== undefined && isExpired(rule, e.recordedAt, now);
              }),
            ),
          ];
          if (paths.length === 0) continue;
          const hold = holdCovering(holds, e);
          if (hold !== undefined) {
            result.held++;
            holdIds.add(hold.id);
            continue;
          }
          result.events++;
          result.fields += paths.length;
          pending.push({ e, paths });
          if (pending.length >= this.#chunk) await flush(false);
        }
      }
      result.holds = [...holdIds];
      await flush(true);
      return result;
    });
  }

  // -------------------------------------------------------------------------
  // Keyed digests
  // -------------------------------------------------------------------------

  /** The JSON Pointers whose values the tenant indexes as keyed digests. */
  async digestPaths(tenant: string): Promise<string[]> {
    const raw = await this.ledger.store.records.getSetting(tenant, DIGEST_PATHS);
    return raw === undefined ? [] : (JSON.parse(raw) as string[]);
  }

  /**
   * Sets the pointers whose values are indexed (replacing the list), records
   * `admin.digest_paths_set`, and re-indexes the tenant's log from the start.
   * @throws RecordsError `POINTER_INVALID`, `RECORDS_REQUEST_INVALID`
   */
  async setDigestPaths(tenant: string, req: Acting & { paths: readonly string[] }): Promise<string[]> {
    const by = checkBy(req.by);
    if (!Array.isArray(req.paths) || req.paths.length > MAX_DIGEST_PATHS) {
      throw new RecordsError('RECORDS_REQUEST_INVALID', `paths must be a list of at most ${MAX_DIGEST_PATHS} JSON Pointers`, { field: 'paths' });
    }
    const paths = [...new Set(req.paths.map((p, i) => checkPointer(p, `paths[${i}]`)))].sort();
    return this.#serial(tenant, async () => {
      await this.#record(tenant, by, [{ type: 'admin.digest_paths_set', data: { paths } }]);
      await this.ledger.store.records.putSetting(tenant, DIGEST_PATHS, JSON.stringify(paths));
      await this.ledger.store.records.setCursor(tenant, DIGEST_CURSOR, 0);
      return paths;
    });
  }

  async #key(tenant: string): Promise<Uint8Array> {
    let k = this.#keys.get(tenant);
    if (k === undefined) {
      k = await this.ledger.store.records.digestKey(tenant, new Uint8Array(randomBytes(32)));
      this.#keys.set(tenant, k);
    }
    return k;
  }

  /**
   * Brings the tenant's keyed-digest index up to the log's head: for each new
   * entry, the values (opened from its disclosures, or in clear) at the
   * configured pointers. Resolves to the entries indexed.
   */
  async indexDigests(tenant: string): Promise<number> {
    return this.#serial(tenant, () => this.#index(tenant));
  }

  async #index(tenant: string): Promise<number> {
    const store = this.ledger.store;
    const paths = await this.digestPaths(tenant);
    const size = (await store.head(tenant))?.size ?? 0;
    let from = await store.records.cursor(tenant, DIGEST_CURSOR);
    if (from >= size) return 0;
    if (paths.length === 0) {
      await store.records.putDigests(tenant, [], { name: DIGEST_CURSOR, next: size });
      return 0;
    }
    const key = await this.#key(tenant);
    let n = 0;
    while (from < size) {
      const to = Math.min(size, from + INDEX_CHUNK);
      const rows: { index: number; path: string; digest: string }[] = [];
      for await (const e of store.readEntries(tenant, from, to)) {
        const env = revealFields(decodeStoredEntry(e), e.disclosures);
        for (const p of paths) {
          const v = valueAt(env, p);
          if (v !== undefined) rows.push({ index: e.index, path: p, digest: keyedDigest(key, p, v) });
        }
        n++;
      }
      await store.records.putDigests(tenant, rows, { name: DIGEST_CURSOR, next: to });
      from = to;
    }
    return n;
  }

  /**
   * Finds the events whose value at `path` equals `value`, oldest first, after
   * bringing the index up to date. Only digests are compared; `value` is not stored.
   * @throws RecordsError `DIGEST_PATH_NOT_INDEXED` for a pointer the tenant does not index;
   *   LedgerError `CURSOR_INVALID`
   */
  async findValue(tenant: string, req: { path: string; value: string; limit?: number; cursor?: string }): Promise<{ items: EventView[]; nextCursor?: string }> {
    const path = checkPointer(req.path, 'path');
    if (typeof req.value !== 'string' || req.value.length > 4096) {
      throw new RecordsError('RECORDS_REQUEST_INVALID', 'value must be text of at most 4096 characters', { field: 'value' });
    }
    let after: number | undefined;
    if (req.cursor !== undefined) {
      if (!/^(0|[1-9]\d{0,15})$/.test(req.cursor)) throw new LedgerError('CURSOR_INVALID', 'cursor is not one this listing made', { field: 'cursor' });
      after = Number(req.cursor);
    }
    const limit = Math.max(1, Math.min(1000, req.limit ?? 100));
    return this.#serial(tenant, async () => {
      const paths = await this.digestPaths(tenant);
      if (!paths.includes(path)) {
        throw new RecordsError(
          'DIGEST_PATH_NOT_INDEXED',
          `${path} is not indexed for this tenant (indexed: ${paths.length === 0 ? 'none' : paths.join(', ')}); an admin sets them with PUT /v1/records/digest-paths`,
          { field: 'path' },
        );
      }
      await this.#index(tenant);
      const key = await this.#key(tenant);
      const indexes = await this.ledger.store.records.findDigests(tenant, keyedDigest(key, path, req.value), { limit: limit + 1, ...(after !== undefined ? { after } : {}) });
      const more = indexes.length > limit;
      const page = indexes.slice(0, limit);
      const entries = await this.ledger.store.getEntries(tenant, page);
      return { items: entries.map(viewOf), ...(more ? { nextCursor: String(page[page.length - 1]) } : {}) };
    });
  }
}
