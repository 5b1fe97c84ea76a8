/**
 * The sequencer: group commit for each tenant's log. It assigns leaf indexes and
 * per-session sequence numbers, links each session's hash chain, seals events
 * into entries, extends the Merkle tree, signs one checkpoint per batch, and
 * resolves each append only after the store has made the batch durable.
 */
import {
  type EventDraft,
  FormatError,
  MerkleFrontier,
  type NoteSigner,
  placeEvent,
  type PreparedEvent,
  prepareEvent,
  type RandomBytes,
  type SealedEvent,
  signCheckpoint,
  type StoredNode,
} from '@custody/core';

import { entryRowOf, nextSessionRow } from './entry-row.js';
import { LedgerError, StoreError } from './errors.js';
import type { EntryRow, LedgerStore, LogHead, SessionRow } from './store.js';

/** Where one event landed. */
export interface AppendResult {
  id: string;
  /** Leaf index in the tenant's log. */
  index: number;
  /** Position in its session, for session-scoped events. */
  seq?: number;
  /** True when an event with this id was already in the log: this is the original result. */
  duplicate: boolean;
}

/** Sequencer settings. */
export interface SequencerOptions {
  store: LedgerStore;
  /** The note signer for a tenant's log (its name is the log's origin). */
  signerFor: (tenant: string) => NoteSigner;
  /** Most events in one committed batch. Default 500. */
  maxBatch?: number;
  /** How long the first event of a batch waits for company, in ms. Default 0 (same tick). */
  maxWaitMs?: number;
  /** Most events waiting per tenant before appends are refused with STORE_BUSY. Default 50,000. */
  maxPending?: number;
  /**
   * Longest a tenant's oldest waiting event may have waited, in ms, before new
   * appends are refused with STORE_BUSY (503 with Retry-After over HTTP). Past
   * capacity the queue would otherwise grow until callers time out with nothing
   * said; this bounds the wait and tells them to come back. Default 2,000.
   */
  maxQueueWaitMs?: number;
  sensitivePaths?: readonly string[];
  now?: () => Date;
  /** Random source for commitment salts (tests pass a seeded one). */
  random?: RandomBytes;
}

interface Pending {
  prepared: PreparedEvent;
  /** When it was queued (performance.now()). */
  since: number;
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

interface TenantState {
  queue: Pending[];
  flushing: boolean;
  scheduled: boolean;
  /** Cached head; undefined means "read it from the store". */
  head?: LogHead | null;
  sessions: Map<string, SessionRow>;
}

const MAX_CONFLICT_RETRIES = 20;
const SESSION_CACHE = 100_000;

/** Group-commits events into per-tenant logs. */
export class Sequencer {
  readonly #opts: Required<Omit<SequencerOptions, 'sensitivePaths' | 'random'>> & Pick<SequencerOptions, 'sensitivePaths' | 'random'>;
  readonly #tenants = new Map<string, TenantState>();
  #closed = false;

  constructor(opts: SequencerOptions) {
    this.#opts = { maxBatch: 500, maxWaitMs: 0, maxPending: 50_000, maxQueueWaitMs: 2_000, now: () => new Date(), ...opts };
  }

  /**
   * Appends events to a tenant's log. Each draft is prepared (committed, validated,
   * canonicalised) at once; a draft that cannot be rejects with LedgerError
   * `EVENT_INVALID`. Resolves, per event, after its batch is durable; rejects per
   * event (LedgerError for that event, StoreError when the store could not commit:
   * nothing was acknowledged).
   */
  append(tenant: string, drafts: readonly EventDraft[]): Promise<PromiseSettledResult<AppendResult>[]> {
    const prepared: (PreparedEvent | LedgerError)[] = drafts.map((draft) => {
      try {
        return this.prepare(tenant, draft);
      } catch (err) {
        if (err instanceof FormatError) return toEventInvalid(err);
        throw err;
      }
    });
    return this.appendPrepared(tenant, prepared);
  }

  /**
   * Prepares a draft for `tenant` with this sequencer's sensitive paths, so that a
   * caller can refuse a request before anything is appended, then hand the result
   * to appendPrepared without preparing twice.
   * @throws FormatError `ENVELOPE_INVALID` naming the field, or `JSON_INVALID`
   */
  prepare(tenant: string, draft: EventDraft): PreparedEvent {
    return prepareEvent(draft, {
      tenant,
      ...(this.#opts.sensitivePaths ? { sensitivePaths: this.#opts.sensitivePaths } : {}),
      ...(this.#opts.random ? { random: this.#opts.random } : {}),
    });
  }

  /** Appends prepared events (see prepare); an error in the list rejects that position. */
  appendPrepared(tenant: string, events: readonly (PreparedEvent | LedgerError)[]): Promise<PromiseSettledResult<AppendResult>[]> {
    if (this.#closed) return Promise.reject(new StoreError('STORE_UNAVAILABLE', 'the ledger is shutting down'));
    const t = this.#tenant(tenant);
    if (t.queue.length + events.length > this.#opts.maxPending) {
      return Promise.reject(new StoreError('STORE_BUSY', `more than ${this.#opts.maxPending} events are waiting to be committed`));
    }
    const now = performance.now();
    const oldest = t.queue[0];
    if (oldest !== undefined && now - oldest.since > this.#opts.maxQueueWaitMs) {
      const waited = Math.round(now - oldest.since);
      return Promise.reject(new StoreError('STORE_BUSY', `the log is behind: its oldest waiting event has waited ${waited} ms for a commit (more than ${this.#opts.maxQueueWaitMs} ms)`));
    }
    const promises = events.map((prepared) => {
      if (prepared instanceof LedgerError) return Promise.reject(prepared);
      if (prepared.envelope.tenant !== tenant) {
        return Promise.reject(new LedgerError('EVENT_INVALID', `the event was prepared for tenant ${prepared.envelope.tenant}, not ${tenant}`, { field: 'tenant' }));
      }
      return new Promise<AppendResult>((resolve, reject) => t.queue.push({ prepared, since: now, resolve, reject }));
    });
    this.#schedule(tenant, t);
    return Promise.allSettled(promises);
  }

  /** Forgets cached heads (after another process may have written). */
  invalidate(tenant?: string): void {
    for (const [name, t] of this.#tenants) {
      if (tenant === undefined || tenant === name) {
        delete t.head;
        t.sessions.clear();
      }
    }
  }

  /** Waits for queued events to commit, then refuses new ones. */
  async close(): Promise<void> {
    this.#closed = true;
    for (;;) {
      const busy = [...this.#tenants.values()].some((t) => t.flushing || t.queue.length > 0);
      if (!busy) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  #tenant(tenant: string): TenantState {
    let t = this.#tenants.get(tenant);
    if (t === undefined) {
      t = { queue: [], flushing: false, scheduled: false, sessions: new Map() };
      this.#tenants.set(tenant, t);
    }
    return t;
  }

  #schedule(tenant: string, t: TenantState): void {
    if (t.flushing || t.scheduled) return;
    t.scheduled = true;
    const run = () => {
      t.scheduled = false;
      void this.#flushLoop(tenant, t);
    };
    if (this.#opts.maxWaitMs > 0) setTimeout(run, this.#opts.maxWaitMs);
    else setImmediate(run);
  }

  async #flushLoop(tenant: string, t: TenantState): Promise<void> {
    if (t.flushing) return;
    t.flushing = true;
    try {
      while (t.queue.length > 0) {
        const batch = t.queue.splice(0, this.#opts.maxBatch);
        await this.#commit(tenant, t, batch);
        // Back to the event loop before the next batch. A caller that appends again as
        // soon as its promise settles refills the queue within the same microtask run,
        // and without this the loop would never turn: no timer, no I/O, no message of
        // the WAL checkpointer would run while such a caller keeps writing.
        if (t.queue.length > 0) await new Promise((r) => setImmediate(r));
      }
    } finally {
      t.flushing = false;
    }
  }

  async #commit(tenant: string, t: TenantState, batch: Pending[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#tryCommit(tenant, t, batch);
        return;
      } catch (err) {
        delete t.head;
        t.sessions.clear();
        if (err instanceof StoreError && err.code === 'STORE_HEAD_CONFLICT' && attempt < MAX_CONFLICT_RETRIES) {
          // Another writer moved the head (or an id landed meanwhile): re-read and re-seal.
          await new Promise((r) => setTimeout(r, Math.random() * 2 * (attempt + 1)));
          continue;
        }
        for (const p of batch) p.reject(err);
        return;
      }
    }
  }

  async #tryCommit(tenant: string, t: TenantState, batch: Pending[]): Promise<void> {
    const store = this.#opts.store;
    if (t.head === undefined) t.head = (await store.head(tenant)) ?? null;
    const head = t.head;

    // Idempotency: ids already in the log return their original result. An id minted as
    // its event was prepared (idAssigned) cannot be there, so it is not looked up.
    const ids = [...new Set(batch.flatMap((p) => (p.prepared.idAssigned === true ? [] : [p.prepared.id])))];
    const existing = ids.length === 0 ? new Map<string, { index: number; seq?: number }>() : await store.findIds(tenant, ids);
    const firstOf = new Map<string, Pending>();
    const followers: [Pending, Pending][] = [];
    const fresh: Pending[] = [];
    for (const p of batch) {
      const prior = existing.get(p.prepared.id);
      if (prior !== undefined) continue;
      const first = firstOf.get(p.prepared.id);
      if (first !== undefined) followers.push([p, first]);
      else {
        firstOf.set(p.prepared.id, p);
        fresh.push(p);
      }
    }

    // Session heads for every session in the batch.
    const sessionIds = [...new Set(fresh.flatMap((p) => (p.prepared.envelope.session ? [p.prepared.envelope.session.id] : [])))];
    const missing = sessionIds.filter((id) => !t.sessions.has(id));
    if (missing.length > 0) {
      for (const [id, row] of await store.sessions(tenant, missing)) t.sessions.set(id, row);
    }
    const sessions = new Map<string, SessionRow>();
    for (const id of sessionIds) {
      const row = t.sessions.get(id);
      if (row) sessions.set(id, row);
    }

    const frontier = head ? new MerkleFrontier(head.size, head.edge) : new MerkleFrontier();
    const signer = this.#opts.signerFor(tenant);
    const recordedAt = this.#opts.now().toISOString();
    const rows: EntryRow[] = [];
    const nodes: StoredNode[] = [];
    const touched = new Map<string, SessionRow>();
    const accepted: { p: Pending; result: AppendResult }[] = [];
    const refused: { p: Pending; err: unknown }[] = [];

    for (const p of fresh) {
      const env = p.prepared.envelope;
      const sid = env.session?.id;
      const prior = sid === undefined ? undefined : sessions.get(sid);
      if (prior?.sealed) {
        refused.push({ p, err: new LedgerError('SESSION_SEALED', `session ${sid} is sealed; no entry can follow its seal`, { field: 'session.id' }) });
        continue;
      }
      if (env.type === 'session.closed' && prior === undefined) {
        refused.push({ p, err: new LedgerError('SESSION_NOT_FOUND', `session ${String(sid)} has no entries to seal`, { field: 'session.id' }) });
        continue;
      }
      let sealed: SealedEvent;
      try {
        sealed = placeEvent(p.prepared, {
          recordedAt,
          ...(sid !== undefined ? { seq: (prior?.seq ?? 0) + 1, prev: prior?.digest ?? null } : {}),
          // The ledger writes the seal: the count and head of the chain it closes.
          ...(env.type === 'session.closed' && prior !== undefined ? { seal: { count: prior.seq + 1, head: prior.digest } } : {}),
        });
      } catch (err) {
        refused.push({ p, err: err instanceof FormatError ? toEventInvalid(err) : err });
        continue;
      }
      const index = frontier.size;
      for (const n of frontier.append(sealed.leafHash)) nodes.push(n);
      const row = entryRowOf(sealed, index);
      rows.push(row);
      if (sid !== undefined) {
        const next = nextSessionRow(prior, sealed, index, recordedAt);
        sessions.set(sid, next);
        touched.set(sid, next);
      }
      accepted.push({ p, result: { id: p.prepared.id, index, ...(row.seq !== undefined ? { seq: row.seq } : {}), duplicate: false } });
    }

    if (rows.length > 0) {
      const size = frontier.size;
      const rootHash = frontier.root();
      const note = signCheckpoint({ origin: signer.name, size, rootHash, extensions: [] }, signer);
      await store.append(
        {
          tenant,
          entries: rows,
          nodes,
          sessions: [...touched.values()],
          head: { size, edge: frontier.edge(), rootHash },
          checkpoint: { size, rootHash, note },
        },
        head?.size ?? 0,
      );
      t.head = { size, edge: frontier.edge(), rootHash };
      for (const [id, row] of touched) {
        t.sessions.delete(id);
        t.sessions.set(id, row);
      }
      while (t.sessions.size > SESSION_CACHE) t.sessions.delete(t.sessions.keys().next().value!);
    }

    // Everything below runs only after the batch is durable.
    const results = new Map<string, AppendResult>();
    for (const { p, result } of accepted) {
      results.set(result.id, result);
      p.resolve(result);
    }
    for (const { p, err } of refused) p.reject(err);
    for (const p of batch) {
      const prior = existing.get(p.prepared.id);
      if (prior !== undefined) p.resolve({ id: p.prepared.id, index: prior.index, ...(prior.seq !== undefined ? { seq: prior.seq } : {}), duplicate: true });
    }
    for (const [p, first] of followers) {
      const r = results.get(first.prepared.id);
      if (r) p.resolve({ ...r, duplicate: true });
      else p.reject(refused.find((x) => x.p === first)?.err ?? new LedgerError('EVENT_INVALID', 'the first event with this id was refused'));
    }
  }
}

function toEventInvalid(err: FormatError): LedgerError {
  return new LedgerError('EVENT_INVALID', err.message, { cause: err, ...(err.field ? { field: err.field } : {}) });
}
