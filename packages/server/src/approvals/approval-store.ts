/**
 * The `ApprovalStore` contract: approvals bound to one exact tool call (the
 * session, the tool and the digest of its arguments), kept in the deployment's
 * database beside the ledger in their own `approvals` table. See docs/api.md,
 * "Approvals".
 */
import type { DelegationLink, Principal } from '@custody/core';

/** An approval's state. `granted` approvals are single-use: `consumedAt` marks the use. */
export type ApprovalStatus = 'pending' | 'granted' | 'denied' | 'expired';

/** The state of an approval's session (the authority's): only an `active` session's approvals can be answered. */
export type ApprovalSessionStatus = 'active' | 'revoked' | 'closed' | 'expired';

/** What an approver sees: the call in full context, arguments as disclosed (secrets redacted). */
export interface ApprovalContext {
  /**
   * The session asking. `objective` is this session's, which its agent (or, delegated, the
   * delegating agent) states; `rootObjective` is the objective its human's session was
   * opened with, when this one is delegated, so the approver sees what the human asked for.
   */
  session: { id: string; objective?: string; rootObjective?: string; scope: string[]; expiresAt: string; depth: number };
  initiator: Principal;
  agent: Principal;
  chain: DelegationLink[];
  /** Arguments as recorded (capture `full`, secrets redacted); absent for capture `digest` or `none`. */
  arguments?: Record<string, unknown>;
  capture: 'full' | 'digest' | 'none';
  policies: string[];
  reasons: string[];
  policyVersion: string;
  /** The enforcement point that asked (e.g. `key:<id>` of a gateway). */
  requestedBy: string;
  callId?: string;
}

/** One approval. */
export interface ApprovalRecord {
  tenant: string;
  /** `apr-<UUIDv7>`. */
  id: string;
  sessionId: string;
  /** `<server>.<name>`. */
  tool: string;
  /** base64url SHA-256 of the RFC 8785 canonical JSON of the call's arguments. */
  argumentsDigest: string;
  status: ApprovalStatus;
  createdAt: string;
  expiresAt: string;
  /** The `tool.requested` event of the call. */
  callEvent: string;
  /** The `approval.requested` event. */
  requestEvent: string;
  context: ApprovalContext;
  decidedAt?: string;
  approver?: Principal;
  source?: Record<string, string>;
  reason?: string;
  /** When the approved call used it (single use). */
  consumedAt?: string;
  /** An approval expired because its session ended (revoked, closed, expired) before anyone answered: how and when. */
  sessionEnded?: { status: Exclude<ApprovalSessionStatus, 'active'>; at: string };
}

/** What deciding sets. */
export interface ApprovalDecision {
  status: 'granted' | 'denied';
  at: string;
  approver: Principal;
  source: Record<string, string>;
  reason?: string;
}

/** Listing filters. */
export interface ApprovalFilter {
  status?: ApprovalStatus;
  session?: string;
}

/**
 * Persists approvals. Every write MUST be atomic and durable before it resolves.
 * `claim`, `consume` and `expireDue` MUST change a row only from the state named,
 * so that of several nodes on one PostgreSQL exactly one wins.
 */
export interface ApprovalStore {
  readonly kind: 'sqlite' | 'postgres';
  /** Creates the table if missing. Idempotent; safe with several nodes. */
  migrate(): Promise<void>;
  close(): Promise<void>;
  create(a: ApprovalRecord): Promise<void>;
  get(tenant: string, id: string): Promise<ApprovalRecord | undefined>;
  /** Newest first; `cursor` is the previous page's `nextCursor`. */
  list(tenant: string, filter: ApprovalFilter, limit: number, cursor?: string): Promise<{ approvals: ApprovalRecord[]; nextCursor?: string }>;
  /**
   * Sets the decision of a pending, unexpired approval (at `d.at`) and marks it
   * unrecorded (`deciding`) until {@link ApprovalStore.settle}: a `deciding` row is
   * neither pending nor usable. Returns false when it was not pending or has expired.
   */
  claim(tenant: string, id: string, d: ApprovalDecision): Promise<boolean>;
  /**
   * Ends a claim: makes the claimed decision visible (`true`: its ledger entry is
   * durable), writes the decision the ledger holds instead (an `ApprovalDecision`:
   * an earlier attempt's entry is the one that counts), or reverts to pending
   * (`false`). Changes only a `deciding` row; returns whether it changed one.
   */
  settle(tenant: string, id: string, outcome: boolean | ApprovalDecision): Promise<boolean>;
  /** Claims older than {@link CLAIM_STALE_MS} at `now`: their decider stopped or its ledger append never answered. */
  staleClaims(now: Date, limit: number): Promise<{ tenant: string; id: string; expiresAt: string }[]>;
  /**
   * Marks a granted, unused approval used, when it is bound to this session, tool
   * and arguments digest and still usable at `at`. Returns false otherwise.
   */
  consume(tenant: string, id: string, binding: { sessionId: string; tool: string; argumentsDigest: string }, at: string, usableUntil: string): Promise<boolean>;
  /**
   * Expires due pending approvals (and due claims abandoned for over {@link CLAIM_STALE_MS}), returning them.
   * They are `expiring` (read as expired; never answerable or usable again) until
   * {@link ApprovalStore.settleExpiry} says their `approval.expired` entry is in the ledger.
   */
  expireDue(now: Date, limit: number, tenant?: string, id?: string): Promise<ApprovalRecord[]>;
  /** Expires the pending approvals of a session that ended (`expiring`, as expireDue), returning them. Claims are left to settle. */
  expireSession(tenant: string, sessionId: string, ended: NonNullable<ApprovalRecord['sessionEnded']>, now: Date): Promise<ApprovalRecord[]>;
  /** Sessions with pending approvals (for the sweeper to check whether they ended). */
  pendingSessions(limit: number): Promise<{ tenant: string; sessionId: string }[]>;
  /** Expired approvals whose `approval.expired` entry is not known to be in the ledger yet (oldest first). */
  unrecordedExpiries(limit: number): Promise<ApprovalRecord[]>;
  /** Marks an `expiring` approval's entry recorded (`expired`). Returns whether it changed a row. */
  settleExpiry(tenant: string, id: string): Promise<boolean>;
}

/** The immutable part of an approval row, as one JSON column. @internal */
export function approvalDocument(a: ApprovalRecord): string {
  return JSON.stringify({ context: a.context, callEvent: a.callEvent, requestEvent: a.requestEvent });
}

/** The decision column of a claimed or decided row. @internal */
export function decisionDocument(d: ApprovalDecision): string {
  return JSON.stringify({ status: d.status, approver: d.approver, source: d.source, ...(d.reason !== undefined ? { reason: d.reason } : {}) });
}

/** A row of the approvals table. @internal */
export interface ApprovalRow {
  tenant: string;
  id: string;
  session_id: string;
  tool: string;
  arguments_digest: string;
  status: string;
  created_at: string;
  expires_at: string;
  doc: string;
  decided_at: string | null;
  decision: string | null;
  consumed_at: string | null;
}

/** The decision column of an approval expired because its session ended. @internal */
export function sessionEndedDocument(ended: NonNullable<ApprovalRecord['sessionEnded']>): string {
  return JSON.stringify({ sessionEnded: ended });
}

/**
 * An approval from its row. A `deciding` row reads as pending (its decision is not
 * recorded yet); an `expiring` one as expired (final; only its entry is not known to be
 * recorded yet). @internal
 */
export function approvalFromRow(r: ApprovalRow): ApprovalRecord {
  const doc = JSON.parse(r.doc) as Pick<ApprovalRecord, 'context' | 'callEvent' | 'requestEvent'>;
  const ended = r.status === 'expiring' || r.status === 'expired';
  const parsed = r.decision === null ? undefined : (JSON.parse(r.decision) as { approver?: Principal; source?: Record<string, string>; reason?: string; sessionEnded?: ApprovalRecord['sessionEnded'] });
  const decision = !ended && parsed?.approver !== undefined ? (parsed as { approver: Principal; source: Record<string, string>; reason?: string }) : undefined;
  const visible = r.status !== 'deciding';
  return {
    tenant: r.tenant,
    id: r.id,
    sessionId: r.session_id,
    tool: r.tool,
    argumentsDigest: r.arguments_digest,
    status: (r.status === 'deciding' ? 'pending' : r.status === 'expiring' ? 'expired' : r.status) as ApprovalStatus,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    ...doc,
    ...(visible && !ended && r.decided_at !== null ? { decidedAt: r.decided_at } : {}),
    ...(visible && decision !== undefined ? { approver: decision.approver, source: decision.source, ...(decision.reason !== undefined ? { reason: decision.reason } : {}) } : {}),
    ...(r.consumed_at !== null ? { consumedAt: r.consumed_at } : {}),
    ...(ended && parsed?.sessionEnded !== undefined ? { sessionEnded: parsed.sessionEnded } : {}),
  };
}

/** A listing cursor: the last row's created_at and id. @internal */
export function encodeApprovalCursor(createdAt: string, id: string): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString('base64url');
}

/** @internal */
export function decodeApprovalCursor(cursor: string): [string, string] | undefined {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string') return [v[0], v[1]];
  } catch {
    // fall through
  }
  return undefined;
}

/**
 * How long a claim may stay unsettled before the sweeper recovers it (its node
 * died between claim and settle): it settles it as the ledger recorded it, or
 * reverts it to pending (expired, when due) if the ledger has no decision.
 */
export const CLAIM_STALE_MS = 60_000;
