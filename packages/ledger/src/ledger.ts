/**
 * The ledger: one append-only, signed Merkle log per tenant over a LedgerStore.
 * It sequences events (group commit), serves checkpoints, receipts, consistency
 * proofs and bundles from stored tree nodes in O(log n) reads, and answers
 * identity queries.
 */
import { hostname } from 'node:os';

import {
  type Bundle,
  checkDisclosures,
  consistencyProofFromNodes,
  consistencyProofNodes,
  createBundle,
  type Envelope,
  type EventDraft,
  EMPTY_ROOT,
  formatReceipt,
  inclusionProofFromNodes,
  inclusionProofNodes,
  type NodeId,
  nodeKey,
  type NoteSigner,
  type PreparedEvent,
  type RandomBytes,
  revealFields,
  rootFromNodes,
  signCheckpoint,
  signerFromSeed,
  subtreeNodes,
  toBase64,
  verifyCheckpoint,
} from '@custody/core';

import { type ComplianceReport, complianceReport } from './compliance.js';
import { LedgerError } from './errors.js';
import {
  actedAfterEndReport,
  deepDelegationReport,
  deniedCallsReport,
  type PrincipalActivity,
  principalActivityReport,
  type ReportPage,
  type ReportRange,
  type ReportRequest,
  type TopPrincipal,
  topPrincipalsReport,
  unapprovedCallsReport,
  type ActedAfterEndRow,
  type DeepDelegationRow,
  type DeniedCallRow,
  type UnapprovedCallRow,
} from './reports.js';
import { type AppendResult, Sequencer } from './sequencer.js';
import { decodeStoredEntry } from './store-shared.js';
import type { EntryFilter, LedgerStore, Page, PageRequest, SessionFilter, SessionRow, StoredCheckpoint, StoredEntry } from './store.js';

/** Settings for a ledger. */
export interface LedgerOptions {
  store: LedgerStore;
  /** The 32-byte Ed25519 seed of the log key; each tenant's key name is its origin. */
  logSeed: Uint8Array;
  /** Host part of every origin (`<host>/<tenant>`). Persisted on first start; later values must match. */
  originHost?: string;
  maxBatch?: number;
  maxWaitMs?: number;
  /** See SequencerOptions.maxPending. */
  maxPending?: number;
  /** See SequencerOptions.maxQueueWaitMs. */
  maxQueueWaitMs?: number;
  sensitivePaths?: readonly string[];
  now?: () => Date;
  /** Random source for commitment salts (tests pass a seeded one). */
  random?: RandomBytes;
}

/** An entry as the API shows it: the envelope with disclosed fields opened. */
export interface EventView {
  index: number;
  /** The envelope, with every commitment whose disclosure is held replaced by its value. */
  event: Envelope;
  /** JSON Pointers of committed fields with no disclosure (redacted). */
  redacted: string[];
  /** Entry digest (base64url leaf hash). */
  digest: string;
}

/** A node of a session's causal tree. */
export interface CauseNode {
  id: string;
  index: number;
  seq?: number;
  type: string;
  children: CauseNode[];
}

const NODE_CHUNK = 5_000;

/** The ledger. Create with `Ledger.open`. */
export class Ledger {
  readonly store: LedgerStore;
  readonly originHost: string;
  readonly #seed: Uint8Array;
  readonly #signers = new Map<string, NoteSigner>();
  readonly #sequencer: Sequencer;
  /**
   * What preparing an event depends on, for a preparation worker in another thread
   * (the server's, for large POST /v1/events bodies): the sensitive paths, and
   * whether another thread may prepare at all (not when a custom random source is set:
   * its salts must come from that source).
   */
  readonly preparation: { readonly sensitivePaths: readonly string[] | undefined; readonly portable: boolean };

  private constructor(opts: LedgerOptions, originHost: string) {
    this.store = opts.store;
    this.originHost = originHost;
    this.preparation = Object.freeze({ sensitivePaths: opts.sensitivePaths === undefined ? undefined : Object.freeze([...opts.sensitivePaths]), portable: opts.random === undefined });
    this.#seed = opts.logSeed.slice();
    this.#sequencer = new Sequencer({
      store: opts.store,
      signerFor: (t) => this.signerFor(t),
      ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
      ...(opts.maxWaitMs !== undefined ? { maxWaitMs: opts.maxWaitMs } : {}),
      ...(opts.maxPending !== undefined ? { maxPending: opts.maxPending } : {}),
      ...(opts.maxQueueWaitMs !== undefined ? { maxQueueWaitMs: opts.maxQueueWaitMs } : {}),
      ...(opts.sensitivePaths !== undefined ? { sensitivePaths: opts.sensitivePaths } : {}),
      ...(opts.now !== undefined ? { now: opts.now } : {}),
      ...(opts.random !== undefined ? { random: opts.random } : {}),
    });
  }

  /** Migrates the store and opens the ledger. */
  static async open(opts: LedgerOptions): Promise<Ledger> {
    await opts.store.migrate();
    const wanted = opts.originHost ?? hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-');
    const host = await opts.store.initMeta('originHost', wanted);
    if (opts.originHost !== undefined && host !== opts.originHost) {
      throw new LedgerError(
        'CONFIG_INVALID',
        `this store's logs are named ${host}/<tenant> (fixed at first start); the origin host ${opts.originHost} does not match`,
      );
    }
    await checkLogKey(opts.store, host, opts.logSeed);
    return new Ledger(opts, host);
  }

  /** The log origin of a tenant. */
  origin(tenant: string): string {
    return `${this.originHost}/${tenant}`;
  }

  /** The note signer of a tenant's log. */
  signerFor(tenant: string): NoteSigner {
    let s = this.#signers.get(tenant);
    if (s === undefined) {
      s = signerFromSeed(this.origin(tenant), this.#seed);
      this.#signers.set(tenant, s);
    }
    return s;
  }

  /** The note verifier key of a tenant's log. */
  verifierKey(tenant: string): string {
    return this.signerFor(tenant).verifierText;
  }

  /** Appends events; see Sequencer.append. */
  append(tenant: string, drafts: readonly EventDraft[]): Promise<PromiseSettledResult<AppendResult>[]> {
    return this.#sequencer.append(tenant, drafts);
  }

  /** Prepares a draft for appendPrepared: validates it once, before anything is appended. See Sequencer.prepare. */
  prepare(tenant: string, draft: EventDraft): PreparedEvent {
    return this.#sequencer.prepare(tenant, draft);
  }

  /** Appends prepared events; see Sequencer.appendPrepared. */
  appendPrepared(tenant: string, events: readonly (PreparedEvent | LedgerError)[]): Promise<PromiseSettledResult<AppendResult>[]> {
    return this.#sequencer.appendPrepared(tenant, events);
  }

  /** Forgets cached heads, e.g. after another process wrote. */
  invalidate(tenant?: string): void {
    this.#sequencer.invalidate(tenant);
  }

  async #nodes(tenant: string, ids: readonly NodeId[]): Promise<(id: NodeId) => Uint8Array> {
    const map = new Map<string, Uint8Array>();
    for (let i = 0; i < ids.length; i += NODE_CHUNK) {
      for (const [k, v] of await this.store.getNodes(tenant, ids.slice(i, i + NODE_CHUNK))) map.set(k, v);
    }
    return (id) => {
      const h = map.get(nodeKey(id));
      if (h === undefined) throw new LedgerError('RANGE_INVALID', `tree node ${nodeKey(id)} is not stored`);
      return h;
    };
  }

  /** The latest signed checkpoint (size 0 for an empty log). */
  async latestCheckpoint(tenant: string): Promise<StoredCheckpoint> {
    const cp = await this.store.latestCheckpoint(tenant);
    if (cp !== undefined) return cp;
    return this.checkpointAt(tenant, 0);
  }

  /** A signed checkpoint at an earlier `size`, signing (and storing) one if none was stored. */
  async checkpointAt(tenant: string, size: number): Promise<StoredCheckpoint> {
    const stored = await this.store.getCheckpoint(tenant, size);
    if (stored !== undefined) return stored;
    const head = await this.store.head(tenant);
    const current = head?.size ?? 0;
    if (!Number.isSafeInteger(size) || size < 0 || size > current) {
      throw new LedgerError('RANGE_INVALID', `size must be between 0 and the log size ${current}`, { field: 'size' });
    }
    const rootHash = size === 0 ? EMPTY_ROOT : rootFromNodes(size, await this.#nodes(tenant, subtreeNodes(0, size)));
    const note = signCheckpoint({ origin: this.origin(tenant), size, rootHash, extensions: [] }, this.signerFor(tenant));
    const cp = { size, rootHash, note };
    await this.store.putCheckpoint(tenant, cp);
    return cp;
  }

  async #size(tenant: string, size?: number): Promise<StoredCheckpoint> {
    return size === undefined ? this.latestCheckpoint(tenant) : this.checkpointAt(tenant, size);
  }

  /** The receipt (tlog-proof@v1) for entry `index` against the checkpoint at `size` (default: latest). */
  async receipt(tenant: string, index: number, size?: number): Promise<string> {
    const cp = await this.#size(tenant, size);
    if (!Number.isSafeInteger(index) || index < 0 || index >= cp.size) {
      throw new LedgerError('RANGE_INVALID', `index must be below the tree size ${cp.size}`, { field: 'index' });
    }
    const lookup = await this.#nodes(tenant, inclusionProofNodes(index, cp.size));
    return formatReceipt({ index, proof: inclusionProofFromNodes(index, cp.size, lookup), checkpoint: cp.note });
  }

  /** The consistency proof from size `from` to size `to` (default: latest), as hashes. */
  async consistency(tenant: string, from: number, to?: number): Promise<Uint8Array[]> {
    const cp = await this.#size(tenant, to);
    if (!Number.isSafeInteger(from) || from < 0 || from > cp.size) {
      throw new LedgerError('RANGE_INVALID', `from must be between 0 and ${cp.size}`, { field: 'from' });
    }
    const lookup = await this.#nodes(tenant, consistencyProofNodes(from, cp.size));
    return consistencyProofFromNodes(from, cp.size, lookup);
  }

  /** A `custody.bundle/v1` bundle for a whole session against the latest checkpoint. */
  async bundle(tenant: string, sessionId: string, opts: { disclosures?: boolean } = {}): Promise<Bundle> {
    const entries = await this.store.sessionEntries(tenant, sessionId);
    if (entries.length === 0) throw new LedgerError('SESSION_NOT_FOUND', `no session ${sessionId}`);
    const cp = await this.latestCheckpoint(tenant);
    const ids = entries.flatMap((e) => inclusionProofNodes(e.index, cp.size));
    const lookup = await this.#nodes(tenant, dedupe(ids));
    return createBundle({
      session: sessionId,
      verifierKey: this.verifierKey(tenant),
      checkpoint: cp.note,
      records: entries.map((e) => ({
        entry: toBase64(e.entry),
        proof: formatReceipt({ index: e.index, proof: inclusionProofFromNodes(e.index, cp.size, lookup), checkpoint: cp.note }),
        ...(opts.disclosures !== false && e.disclosures.length > 0 ? { disclosures: e.disclosures } : {}),
      })),
    });
  }

  /** Identity query over a tenant's entries. */
  async query(tenant: string, filter: EntryFilter, page: PageRequest): Promise<Page<EventView>> {
    const res = await this.store.queryEntries(tenant, filter, page);
    return { items: res.items.map(viewOf), ...(res.nextCursor ? { nextCursor: res.nextCursor } : {}) };
  }

  async session(tenant: string, id: string): Promise<SessionRow> {
    const s = await this.store.getSession(tenant, id);
    if (s === undefined) throw new LedgerError('SESSION_NOT_FOUND', `no session ${id}`);
    return s;
  }

  listSessions(tenant: string, filter: SessionFilter, page: PageRequest): Promise<Page<SessionRow>> {
    return this.store.listSessions(tenant, filter, page);
  }

  /** A session's entries in seq order with their causal tree (by `cause`). */
  async timeline(tenant: string, id: string): Promise<{ session: SessionRow; events: EventView[]; tree: CauseNode[] }> {
    const session = await this.session(tenant, id);
    const events = (await this.store.sessionEntries(tenant, id)).map(viewOf);
    const nodes = new Map<string, CauseNode>();
    for (const e of events) {
      nodes.set(e.event.id, { id: e.event.id, index: e.index, type: e.event.type, ...(e.event.session ? { seq: e.event.session.seq } : {}), children: [] });
    }
    const tree: CauseNode[] = [];
    for (const e of events) {
      const node = nodes.get(e.event.id)!;
      const parent = e.event.cause !== undefined ? nodes.get(e.event.cause) : undefined;
      if (parent !== undefined && parent !== node) parent.children.push(node);
      else tree.push(node);
    }
    return { session, events, tree };
  }

  /** One event by id. */
  async event(tenant: string, id: string): Promise<EventView> {
    const e = await this.store.getEntryById(tenant, id);
    if (e === undefined) throw new LedgerError('EVENT_NOT_FOUND', `no event ${id}`);
    return viewOf(e);
  }

  /** Report: sensitive tool calls without a human approval (reports.ts). */
  unapprovedCalls(tenant: string, req: ReportRequest): Promise<ReportPage<UnapprovedCallRow>> {
    return unapprovedCallsReport(this.store, tenant, req);
  }

  /** Report: calls denied by policy or attempted outside their chain's scope. */
  deniedCalls(tenant: string, req: ReportRequest): Promise<ReportPage<DeniedCallRow>> {
    return deniedCallsReport(this.store, tenant, req);
  }

  /** Report: sessions that acted after their revocation, expiry or seal (should be none). */
  actedAfterEnd(tenant: string, req: ReportRequest): Promise<ReportPage<ActedAfterEndRow>> {
    return actedAfterEndReport(this.store, tenant, req);
  }

  /** Report: sessions whose delegation chain is deeper than `depth` hops. */
  deepDelegation(tenant: string, req: ReportRequest & { depth?: number }): Promise<ReportPage<DeepDelegationRow>> {
    return deepDelegationReport(this.store, tenant, req);
  }

  /** Report: one principal's activity by type, tool, decision and role. */
  principalActivity(tenant: string, req: ReportRange & { principal: string; limit?: number }): Promise<PrincipalActivity> {
    return principalActivityReport(this.store, tenant, req);
  }

  /** The compliance report for one framework (compliance.ts). */
  compliance(tenant: string, req: ReportRange & { framework: string; bundleHashes?: boolean }): Promise<ComplianceReport> {
    return complianceReport(this, tenant, req);
  }

  /** Report: the most active initiators and agents. */
  topPrincipals(tenant: string, req: ReportRange & { limit?: number }): Promise<ReportPage<TopPrincipal>> {
    return topPrincipalsReport(this.store, tenant, req);
  }

  /** Waits for queued appends, then closes the store. */
  async close(): Promise<void> {
    await this.#sequencer.close();
    await this.store.close();
  }
}

/**
 * Refuses a log key other than the one that signs the store's logs. Every process on one
 * store must sign with the same key: a node started with a fresh or another key would
 * sign checkpoints no pinned verifier accepts, silently. The store keeps the key's public
 * half (`logPublicKey`, set at first start); a store from before it was kept has its
 * tenants' latest checkpoints checked against the key instead, once.
 * @throws LedgerError `CONFIG_INVALID` naming both public keys, with `field: 'logKey'`
 */
async function checkLogKey(store: LedgerStore, host: string, seed: Uint8Array): Promise<void> {
  const publicKey = toBase64(signerFromSeed(host, seed).publicKey);
  const refuse = (which: string) =>
    new LedgerError(
      'CONFIG_INVALID',
      `this store's logs are signed with another log key (${which}) than the one this process was given (public key ${publicKey}): every Custody process on one store must use the same log key (copy its log.key, or pass --log-key or $CUSTODY_LOG_KEY)`,
      { field: 'logKey' },
    );
  const known = await store.getMeta('logPublicKey');
  if (known === undefined) {
    for (const tenant of await store.tenants()) {
      const cp = await store.latestCheckpoint(tenant);
      if (cp === undefined) continue;
      try {
        verifyCheckpoint(cp.note, signerFromSeed(`${host}/${tenant}`, seed));
      } catch {
        throw refuse(`the latest checkpoint of tenant ${tenant} does not verify with it`);
      }
    }
  }
  const kept = await store.initMeta('logPublicKey', publicKey);
  if (kept !== publicKey) throw refuse(`public key ${kept}`);
}

/** The API view of a stored entry. */
export function viewOf(e: StoredEntry): EventView {
  const env = decodeStoredEntry(e);
  const check = checkDisclosures(env, e.disclosures);
  return { index: e.index, event: revealFields(env, e.disclosures), redacted: check.redacted, digest: e.digest };
}

function dedupe(ids: NodeId[]): NodeId[] {
  const seen = new Set<string>();
  return ids.filter((id) => {
    const k = nodeKey(id);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
