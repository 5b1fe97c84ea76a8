/**
 * Approvals: a human's answer to one exact pending call. An `approval_required`
 * decision opens one, bound to the session, the tool and the digest of the
 * arguments; a human with the `approve` role grants or denies it; the approved
 * call uses it once; unanswered, it expires. Every step is an entry
 * (`approval.requested|granted|denied|expired`). See docs/api.md, "Approvals".
 */
import { canonicalJson, type EventDraft, type JsonValue, type Principal, sha256, toBase64url, utf8 } from '@custody/core';
import type { Ledger } from '@custody/ledger';
import { SIGNATURE_HEADER, signWebhook } from '@custody/records';
import { v5 as uuidv5, v7 as uuidv7 } from 'uuid';

import { ApiError } from '../errors.js';
import type { ApprovalContext, ApprovalDecision, ApprovalRecord, ApprovalSessionStatus, ApprovalStore } from './approval-store.js';

/** The UUID namespace of approval.expired entry ids (RFC 9562 v5 of `<tenant>/<approval>/approval.expired`). */
const EXPIRY_NAMESPACE = '6f3c2a1e-6b1d-4b8e-9a57-0c2d7f4e9b10';

/** The UUID namespace of decision entry ids (v5 of `<tenant>/<approval>/decision`): one decision entry per approval, ever. */
const DECISION_NAMESPACE = '2b0f5c8e-93a4-4d61-8f1e-5a7c3e9d2b46';

/** The id of an approval's one `approval.granted` or `approval.denied` entry. */
export function decisionEventId(tenant: string, approval: string): string {
  return uuidv5(`${tenant}/${approval}/decision`, DECISION_NAMESPACE);
}

/** The principal of the approval service's own steps (expiry). */
export const APPROVALS_ACTOR: Principal = { type: 'service', id: 'custody-approvals' };

/** Where approvals learn the state of their sessions (the authority's). */
export interface ApprovalSessions {
  /** The session's state now (an active session past its expiry is `expired`); undefined when unknown. */
  status(tenant: string, id: string): Promise<ApprovalSessionStatus | undefined>;
}

/** What approvals need of the identity authority: its sessions, and a step before each close (seal). */
export interface ApprovalAuthority {
  readonly store: { getSession(tenant: string, id: string): Promise<{ status: ApprovalSessionStatus; expiresAt: string } | undefined> };
  beforeClose(hook: (tenant: string, sessionId: string) => Promise<void>): void;
}

/**
 * An id as the self-approval check compares it: NFKC, case-folded, without control,
 * format (zero-width, bidi) and other default-ignorable characters, whitespace runs as
 * one space and trimmed. `Alice@Example.com\u200b` is `alice@example.com`.
 */
export function normalisedId(id: string): string {
  const strip = (t: string) => t.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/gu, '');
  return strip(strip(id).normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC')).replace(/\s+/gu, ' ').trim();
}

/** Whether two principals are the same approver (a retry of the same answer). */
function sameApprover(a: Principal, b: Principal): boolean {
  return a.type === b.type && a.id === b.id && (a.issuer ?? '') === (b.issuer ?? '');
}

/** The 409 message for an approval that is no longer pending: what was recorded, by whom, when. */
function answeredMessage(a: ApprovalRecord): string {
  if ((a.status === 'granted' || a.status === 'denied') && a.approver !== undefined) {
    return `approval ${a.id} was already ${a.status} by ${a.approver.id}${a.decidedAt !== undefined ? ` at ${a.decidedAt}` : ''}`;
  }
  if (a.status === 'expired') {
    return a.sessionEnded !== undefined
      ? `approval ${a.id} is expired: its session was ${a.sessionEnded.status} at ${a.sessionEnded.at} before anyone answered`
      : `approval ${a.id} is expired: nobody answered by ${a.expiresAt}`;
  }
  return `approval ${a.id} is already ${a.status === 'pending' ? 'being decided' : a.status}`;
}

/** Settings of approvals. */
export interface ApprovalsOptions {
  store: ApprovalStore;
  /** How long an approval waits for a human, in seconds. Default 300. */
  ttlSeconds?: number;
  /** How long a granted approval stays usable after it was granted, in seconds (if later than its expiry). Default 60. */
  useWindowSeconds?: number;
  /**
   * Optional webhook told of every new approval (POST, JSON; best effort, off the call path: see `webhookRetryDelaysMs`).
   * With `secret`, each request carries `custody-signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "<t>.<body>")>`,
   * as log-stream webhooks do (check it with `verifyWebhook` of @custody/records).
   */
  webhook?: { url: string; headers?: Record<string, string>; secret?: string };
  /**
   * Waits before each retry of a webhook delivery that failed (network error, timeout,
   * HTTP 429 or 5xx), in ms; one attempt more than delays. Default [1000, 4000]: three
   * attempts. Best effort: a notification that fails them all is logged and dropped.
   */
  webhookRetryDelaysMs?: number[];
  /** The states of sessions (the authority's); see also {@link Approvals.attachAuthority}. */
  sessions?: ApprovalSessions;
  /** How often expiries are swept, in ms. 0: never (call sweep()). Default 1000. */
  sweepIntervalMs?: number;
  now?: () => Date;
  log?: (message: string, err?: unknown) => void;
}

/** The digest an approval binds: base64url(SHA-256(RFC 8785 canonical JSON of the arguments)). */
export function argumentsDigest(args: Record<string, unknown>): string {
  return toBase64url(sha256(utf8(canonicalJson(args as JsonValue))));
}

/** The fields every approval entry repeats. */
function base(a: ApprovalRecord): Pick<EventDraft, 'session' | 'initiator' | 'chain' | 'tool'> {
  const dot = a.tool.indexOf('.');
  return {
    session: { id: a.sessionId },
    initiator: a.context.initiator,
    chain: a.context.chain,
    tool: { name: a.tool, server: a.tool.slice(0, dot), ...(a.context.callId !== undefined ? { callId: a.context.callId } : {}) },
  };
}

/** Throws the first rejected append result (the store's error when it could not commit). */
export function assertAppended(results: readonly PromiseSettledResult<unknown>[]): void {
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** A call's approval refused (409): it is bound to another call, or cannot be used. Carries the approval as it stands. */
export class ApprovalRefused extends ApiError {
  readonly approval: ApprovalRecord;
  constructor(code: 'APPROVAL_MISMATCH' | 'APPROVAL_NOT_GRANTED', message: string, approval: ApprovalRecord) {
    super(code, 409, message);
    this.approval = approval;
  }
}

/** The approval service over a store and the ledger. */
export class Approvals {
  readonly store: ApprovalStore;
  readonly ttlSeconds: number;
  readonly #ledger: Ledger;
  readonly #useWindowMs: number;
  readonly #webhook: ApprovalsOptions['webhook'];
  readonly #webhookRetryDelaysMs: readonly number[];
  readonly #now: () => Date;
  readonly #log: (message: string, err?: unknown) => void;
  #sessions: ApprovalSessions | undefined;
  readonly #attached = new WeakSet<object>();
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<unknown> | undefined;
  #closed = false;

  constructor(opts: ApprovalsOptions, ledger: Ledger) {
    this.store = opts.store;
    this.ttlSeconds = opts.ttlSeconds ?? 300;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 1) throw new RangeError('ttlSeconds must be a positive integer');
    this.#ledger = ledger;
    this.#useWindowMs = (opts.useWindowSeconds ?? 60) * 1000;
    this.#webhook = opts.webhook;
    this.#webhookRetryDelaysMs = opts.webhookRetryDelaysMs ?? [1000, 4000];
    this.#sessions = opts.sessions;
    this.#now = opts.now ?? (() => new Date());
    this.#log = opts.log ?? (() => undefined);
    const every = opts.sweepIntervalMs ?? 1000;
    if (every > 0) this.#schedule(every);
  }

  now(): Date {
    return this.#now();
  }

  /**
   * Learns session states from the authority (unless `sessions` was given), and ends a
   * session's pending approvals before its close writes the seal, so that their
   * `approval.expired` entries are in the sealed log. Idempotent.
   */
  attachAuthority(authority: ApprovalAuthority): void {
    if (this.#attached.has(authority)) return;
    this.#attached.add(authority);
    this.#sessions ??= {
      status: async (tenant, id) => {
        const s = await authority.store.getSession(tenant, id);
        if (s === undefined) return undefined;
        return s.status === 'active' && Date.parse(s.expiresAt) <= this.#now().getTime() ? 'expired' : s.status;
      },
    };
    authority.beforeClose(async (tenant, sessionId) => {
      await this.endSession(tenant, sessionId, 'closed');
    });
  }

  /** The state of a session (undefined: unknown, or no session source). */
  async sessionStatus(tenant: string, sessionId: string): Promise<ApprovalSessionStatus | undefined> {
    return this.#sessions?.status(tenant, sessionId);
  }

  /**
   * Expires a session's pending approvals because it ended, recording `approval.expired`
   * (`data.sessionEnded`) for each. Returns their ids.
   */
  async endSession(tenant: string, sessionId: string, status: Exclude<ApprovalSessionStatus, 'active'>): Promise<string[]> {
    const ended = await this.store.expireSession(tenant, sessionId, { status, at: this.#now().toISOString() }, this.#now());
    await this.#record(ended);
    return ended.map((a) => a.id);
  }

  /** The new approval's record and its `approval.requested` draft (appended by the caller with the call's entries). */
  prepare(tenant: string, p: { sessionId: string; tool: string; argumentsDigest: string; callEvent: string; context: ApprovalContext; ttlSeconds?: number }): { record: ApprovalRecord; draft: EventDraft } {
    const now = this.#now();
    const ttl = Math.min(p.ttlSeconds ?? this.ttlSeconds, this.ttlSeconds);
    const record: ApprovalRecord = {
      tenant,
      id: `apr-${uuidv7()}`,
      sessionId: p.sessionId,
      tool: p.tool,
      argumentsDigest: p.argumentsDigest,
      status: 'pending',
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + ttl * 1000).toISOString(),
      callEvent: p.callEvent,
      requestEvent: uuidv7(),
      context: p.context,
    };
    const draft: EventDraft = {
      id: record.requestEvent,
      type: 'approval.requested',
      time: record.createdAt,
      ...base(record),
      actor: APPROVALS_ACTOR,
      cause: p.callEvent,
      approval: { id: record.id, status: 'pending', expiresAt: record.expiresAt, argumentsDigest: record.argumentsDigest },
      data: { policies: p.context.policies, reasons: p.context.reasons, policyVersion: p.context.policyVersion, requestedBy: p.context.requestedBy },
    };
    return { record, draft };
  }

  /** Stores an approval whose `approval.requested` entry is durable, and notifies the webhook. */
  async open(record: ApprovalRecord, url?: string): Promise<void> {
    await this.store.create(record);
    if (this.#webhook !== undefined) void this.#notify(record, url);
  }

  async #notify(a: ApprovalRecord, url?: string): Promise<void> {
    const hook = this.#webhook!;
    const body = JSON.stringify({ type: 'approval.requested', approval: viewOf(a), ...(url !== undefined ? { decide: url } : {}) });
    const attempts = this.#webhookRetryDelaysMs.length + 1;
    for (let attempt = 1; attempt <= attempts && !this.#closed; attempt++) {
      let failure: string;
      try {
        const res = await fetch(hook.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...hook.headers,
            ...(hook.secret !== undefined ? { [SIGNATURE_HEADER]: signWebhook(hook.secret, body, Math.floor(this.now().getTime() / 1000)) } : {}),
          },
          body,
          signal: AbortSignal.timeout(5000),
        });
        await res.arrayBuffer();
        if (res.ok) return;
        failure = `answered HTTP ${res.status}`;
        // A 4xx other than 429 is the receiver refusing this request: sending it again would not help.
        if (res.status < 500 && res.status !== 429) {
          this.#log(`the approval webhook ${failure} for ${a.id}; not retried`);
          return;
        }
      } catch (err) {
        failure = `failed (${err instanceof Error ? err.message : String(err)})`;
      }
      if (attempt === attempts) {
        this.#log(`the approval webhook ${failure} for ${a.id}; gave up after ${attempts} attempt(s)`);
        return;
      }
      this.#log(`the approval webhook ${failure} for ${a.id}; retrying (attempt ${attempt + 1} of ${attempts})`);
      await new Promise((r) => setTimeout(r, this.#webhookRetryDelaysMs[attempt - 1]).unref());
    }
  }

  /**
   * An approval, expiring it first when it is due.
   * @throws ApiError `APPROVAL_NOT_FOUND`
   */
  async get(tenant: string, id: string): Promise<ApprovalRecord> {
    const a = await this.store.get(tenant, id);
    if (a === undefined) throw new ApiError('APPROVAL_NOT_FOUND', 404, `this tenant has no approval ${id}`);
    if (a.status === 'pending' && Date.parse(a.expiresAt) <= this.#now().getTime()) {
      await this.#record(await this.store.expireDue(this.#now(), 1, tenant, id));
      return (await this.store.get(tenant, id)) ?? a;
    }
    return a;
  }

  /**
   * A human's answer. The approver must not be the session's agent, initiator or any
   * link of its delegation chain (ids compared normalised: {@link normalisedId}), and
   * the session must be active. The same approver repeating the answer recorded gets
   * it back (nothing new is recorded).
   * @throws ApiError `APPROVAL_NOT_FOUND`, `APPROVAL_SELF`, `APPROVAL_NOT_PENDING` (naming the decision recorded, who and when),
   *   `APPROVAL_SESSION_INACTIVE`; the store's errors (nothing changed)
   */
  async decide(tenant: string, id: string, d: { status: 'granted' | 'denied'; approver: Principal; source: Record<string, string>; reason?: string; apiKey?: string }): Promise<ApprovalRecord> {
    const a = await this.get(tenant, id);
    const involved = new Set([a.context.agent.id, a.context.initiator.id, ...a.context.chain.map((l) => l.principal.id)].map(normalisedId));
    if (involved.has(normalisedId(d.approver.id))) {
      throw new ApiError('APPROVAL_SELF', 403, `${JSON.stringify(d.approver.id)} is in this call's delegation chain (initiator or agent), ids compared without case or invisible characters: a call cannot be approved by anyone it acts for or through`);
    }
    const answered = (x: ApprovalRecord): ApprovalRecord => {
      if (x.status === d.status && x.approver !== undefined && sameApprover(x.approver, d.approver)) return x;
      throw new ApiError('APPROVAL_NOT_PENDING', 409, answeredMessage(x));
    };
    if (a.status !== 'pending') return answered(a);
    const session = await this.#sessions?.status(tenant, a.sessionId);
    if (session !== undefined && session !== 'active') {
      // Its call can never run now; end the approval at once rather than at the next sweep.
      await this.endSession(tenant, a.sessionId, session).catch((err: unknown) => this.#log(`could not expire the approvals of ended session ${a.sessionId}`, err));
      throw new ApiError('APPROVAL_SESSION_INACTIVE', 409, `approval ${id} cannot be answered: its session ${a.sessionId} is ${session}, so its call can no longer run`);
    }
    const at = this.#now().toISOString();
    const decision = { status: d.status, at, approver: d.approver, source: d.source, ...(d.reason !== undefined ? { reason: d.reason } : {}) };
    if (!(await this.store.claim(tenant, id, decision))) {
      const now = await this.get(tenant, id);
      return answered(now);
    }
    // The entry id is derived from the approval: if an earlier attempt's entry is in
    // the ledger (its node died before settling, or its answer was lost), the ledger
    // answers with that one (duplicate), and that decision is the one that counts.
    const entryId = decisionEventId(tenant, id);
    let duplicate: boolean;
    try {
      const results = await this.#ledger.append(tenant, [
        {
          id: entryId,
          type: d.status === 'granted' ? 'approval.granted' : 'approval.denied',
          time: at,
          ...base(a),
          actor: d.approver,
          cause: a.requestEvent,
          approval: {
            id,
            status: d.status,
            approver: d.approver,
            source: d.source,
            expiresAt: a.expiresAt,
            argumentsDigest: a.argumentsDigest,
            ...(d.reason !== undefined ? { reason: d.reason } : {}),
          },
          data: { call: a.callEvent, ...(d.apiKey !== undefined ? { apiKey: d.apiKey } : {}) },
        },
      ]);
      assertAppended(results);
      duplicate = (results[0] as PromiseFulfilledResult<{ duplicate: boolean }>).value.duplicate;
    } catch (err) {
      await this.store.settle(tenant, id, false);
      throw err;
    }
    if (!duplicate) {
      if (!(await this.store.settle(tenant, id, true))) this.#log(`approval ${id}: its decision is recorded but the claim was recovered meanwhile (settle found no claim)`);
      return this.get(tenant, id);
    }
    const recorded = await this.#recordedDecision(tenant, id);
    if (recorded !== undefined) await this.store.settle(tenant, id, recorded);
    const now = await this.get(tenant, id);
    if (recorded === undefined || recorded.status !== d.status || !sameApprover(recorded.approver, d.approver)) {
      throw new ApiError('APPROVAL_NOT_PENDING', 409, `approval ${id} was already ${recorded?.status ?? now.status}${recorded !== undefined ? ` by ${recorded.approver.id} at ${recorded.at}` : ''}: the ledger holds that decision`);
    }
    return now;
  }

  /** The decision the ledger holds for an approval, if any. */
  async #recordedDecision(tenant: string, id: string): Promise<ApprovalDecision | undefined> {
    let view: Awaited<ReturnType<Ledger['event']>>;
    try {
      view = await this.#ledger.event(tenant, decisionEventId(tenant, id));
    } catch (err) {
      if ((err as { code?: unknown }).code === 'EVENT_NOT_FOUND') return undefined;
      throw err;
    }
    const a = view.event.approval;
    if (a === undefined || (a.status !== 'granted' && a.status !== 'denied') || a.approver === undefined) return undefined;
    return { status: a.status, at: view.event.time, approver: a.approver, source: a.source ?? {}, ...(a.reason !== undefined ? { reason: a.reason } : {}) };
  }

  /**
   * Until when a granted approval can be used: its expiry, or `useWindowSeconds` after
   * the grant when that is later.
   */
  usableUntil(a: ApprovalRecord): string {
    return new Date(Math.max(Date.parse(a.expiresAt), Date.parse(a.decidedAt ?? a.expiresAt) + this.#useWindowMs)).toISOString();
  }

  /** Whether a granted approval lapsed unused: its use window ({@link Approvals.usableUntil}) has passed. */
  lapsed(a: ApprovalRecord): boolean {
    return a.status === 'granted' && a.consumedAt === undefined && Date.parse(this.usableUntil(a)) <= this.#now().getTime();
  }

  /** For a granted approval: until when it can be used, and whether it lapsed unused (as the API shows it). */
  use(a: ApprovalRecord): { usableUntil: string; lapsed: boolean } | undefined {
    return a.status === 'granted' ? { usableUntil: this.usableUntil(a), lapsed: this.lapsed(a) } : undefined;
  }

  /** Why an approval that matches the call cannot be used, or undefined when it can. */
  #unusable(a: ApprovalRecord): string | undefined {
    if (a.consumedAt !== undefined) return `the approval ${a.id} was already used at ${a.consumedAt}: approvals are single-use`;
    if (a.status !== 'granted') return `the approval ${a.id} is ${a.status}, not granted`;
    if (this.lapsed(a)) {
      return `the approval ${a.id} lapsed unused at ${this.usableUntil(a)}: a granted approval is usable until its expiry or ${this.#useWindowMs / 1000} s after the grant, whichever is later; ask again`;
    }
    return undefined;
  }

  /**
   * The granted approval a call brings, checked against the call it is bound to.
   * @throws ApiError `APPROVAL_NOT_FOUND`; {@link ApprovalRefused} `APPROVAL_MISMATCH` (another session, tool or
   *   arguments), `APPROVAL_NOT_GRANTED` (not granted, already used, or lapsed)
   */
  async check(tenant: string, id: string, binding: { sessionId: string; tool: string; argumentsDigest: string }): Promise<ApprovalRecord> {
    const a = await this.get(tenant, id);
    const other = a.sessionId !== binding.sessionId ? 'another session' : a.tool !== binding.tool ? 'another tool' : a.argumentsDigest !== binding.argumentsDigest ? 'other arguments' : undefined;
    if (other !== undefined) {
      throw new ApprovalRefused(
        'APPROVAL_MISMATCH',
        `the approval ${id} was ${a.status === 'granted' ? 'granted' : 'requested'} for ${other}: an approval is bound to one exact call (its session, tool and arguments digest must match exactly)`,
        a,
      );
    }
    const why = this.#unusable(a);
    if (why !== undefined) throw new ApprovalRefused('APPROVAL_NOT_GRANTED', why, a);
    return a;
  }

  /**
   * Marks a checked approval used.
   * @throws {@link ApprovalRefused} `APPROVAL_NOT_GRANTED` when another call used it first or it lapsed meanwhile
   */
  async consume(a: ApprovalRecord): Promise<void> {
    const ok = await this.store.consume(a.tenant, a.id, { sessionId: a.sessionId, tool: a.tool, argumentsDigest: a.argumentsDigest }, this.#now().toISOString(), this.usableUntil(a));
    if (ok) return;
    const now = (await this.store.get(a.tenant, a.id)) ?? a;
    throw new ApprovalRefused('APPROVAL_NOT_GRANTED', this.#unusable(now) ?? `the approval ${a.id} is no longer usable`, now);
  }

  /**
   * Expires due approvals and the pending approvals of sessions that ended, and records
   * `approval.expired` for each expired approval whose entry is not known to be in the
   * ledger (those of earlier sweeps too: the state is kept in the store, not in memory).
   */
  async sweep(): Promise<{ expired: string[]; recovered: string[] }> {
    const recovered = await this.#recoverClaims();
    const due = await this.store.expireDue(this.#now(), 500);
    const ended = await this.#expireEndedSessions();
    await this.#record(await this.store.unrecordedExpiries(500));
    return { expired: [...due.map((a) => a.id), ...ended], recovered };
  }

  /** Expires the pending approvals of sessions that are no longer active. */
  async #expireEndedSessions(): Promise<string[]> {
    if (this.#sessions === undefined) return [];
    const out: string[] = [];
    for (const { tenant, sessionId } of await this.store.pendingSessions(200)) {
      const status = await this.#sessions.status(tenant, sessionId);
      if (status === undefined || status === 'active') continue;
      const ended = await this.store.expireSession(tenant, sessionId, { status, at: this.#now().toISOString() }, this.#now());
      out.push(...ended.map((a) => a.id));
    }
    return out;
  }

  /**
   * Claims nobody settled (the deciding node died between its ledger append and
   * settle): each becomes what the ledger recorded, or pending again when the
   * ledger has no decision for it (a due one is then expired by this sweep).
   */
  async #recoverClaims(): Promise<string[]> {
    const out: string[] = [];
    for (const c of await this.store.staleClaims(this.#now(), 100)) {
      const recorded = await this.#recordedDecision(c.tenant, c.id);
      if (recorded !== undefined) {
        if (await this.store.settle(c.tenant, c.id, recorded)) out.push(c.id);
      } else if (Date.parse(c.expiresAt) > this.#now().getTime()) {
        if (await this.store.settle(c.tenant, c.id, false)) out.push(c.id);
      }
    }
    return out;
  }

  /**
   * Appends `approval.expired` for expired approvals and marks each recorded. One the
   * ledger refuses stays `expiring` in the store and is retried at the next sweep (by any
   * node; after a restart too). The entry id is derived from the approval, so a retry (or
   * two nodes racing) never writes it twice: the ledger answers a known id with the
   * original entry. A session sealed (closed) before the entry could be written refuses it
   * for good (SESSION_SEALED): that is final, logged once, and the approval stays expired
   * in the store with no entry (docs/api.md, "Approvals").
   */
  async #record(expired: ApprovalRecord[]): Promise<void> {
    for (const a of expired) {
      const ended = a.sessionEnded;
      try {
        const results = await this.#ledger.append(a.tenant, [
          {
            id: uuidv5(`${a.tenant}/${a.id}/approval.expired`, EXPIRY_NAMESPACE),
            type: 'approval.expired',
            time: ended !== undefined && ended.at < a.expiresAt ? ended.at : a.expiresAt,
            ...base(a),
            actor: APPROVALS_ACTOR,
            cause: a.requestEvent,
            approval: { id: a.id, status: 'expired', expiresAt: a.expiresAt, argumentsDigest: a.argumentsDigest },
            data:
              ended !== undefined
                ? { call: a.callEvent, reason: `the session ended (${ended.status}) before anyone answered`, sessionEnded: ended.status }
                : { call: a.callEvent, reason: 'no human answered in time' },
          },
        ]);
        assertAppended(results);
      } catch (err) {
        if ((err as { code?: unknown }).code === 'SESSION_SEALED') {
          await this.store.settleExpiry(a.tenant, a.id).catch(() => undefined);
          this.#log(`approval ${a.id} expired, but its session ${a.sessionId} was sealed before approval.expired could be recorded: the log ends with its approval.requested (not retried)`);
        } else {
          this.#log(`could not record the expiry of approval ${a.id}; retrying at the next sweep`, err);
        }
        continue;
      }
      await this.store.settleExpiry(a.tenant, a.id).catch((err: unknown) => this.#log(`approval ${a.id}: its expiry is recorded, but marking it so failed (retried, harmlessly, at the next sweep)`, err));
    }
  }

  #schedule(every: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#sweeping = this.sweep()
        .catch((err) => this.#log('approval sweep failed; retrying', err))
        .finally(() => {
          this.#sweeping = undefined;
          this.#schedule(every);
        });
    }, every);
    this.#timer.unref();
  }

  /** Stops the sweeper and closes the store. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#sweeping;
    await this.store.close();
  }
}

/**
 * An approval as the API shows it; `sessionStatus`: its session's state, when known;
 * `use`: for a granted approval, until when it can be used and whether it lapsed unused.
 */
export function viewOf(a: ApprovalRecord, sessionStatus?: ApprovalSessionStatus, use?: { usableUntil: string; lapsed: boolean }): Record<string, unknown> {
  return {
    id: a.id,
    status: a.status,
    session: a.sessionId,
    tool: a.tool,
    argumentsDigest: a.argumentsDigest,
    createdAt: a.createdAt,
    expiresAt: a.expiresAt,
    call: a.callEvent,
    context: a.context,
    ...(a.decidedAt !== undefined ? { decidedAt: a.decidedAt } : {}),
    ...(a.approver !== undefined ? { approver: a.approver } : {}),
    ...(a.source !== undefined ? { source: a.source } : {}),
    ...(a.reason !== undefined ? { reason: a.reason } : {}),
    ...(a.consumedAt !== undefined ? { consumedAt: a.consumedAt } : {}),
    ...(use !== undefined && a.status === 'granted' ? { usableUntil: use.usableUntil, ...(use.lapsed ? { lapsed: true } : {}) } : {}),
    ...(sessionStatus !== undefined ? { sessionStatus } : {}),
  };
}
