/**
 * The `AuthorityStore` contract: sessions, their parent/child tree, credential
 * `jti`s and fingerprints (never tokens), their status, the signing keys' public
 * halves, and an outbox of ledger events not yet appended. Kept in the
 * deployment's database beside the ledger (own `authority_*` tables, created
 * idempotently): `SqliteAuthorityStore`, `PostgresAuthorityStore`.
 */
import type { DelegationLink, EventDraft, Principal, Workload } from '@custody/core';

/** A session's status. Only `active` grants anything. */
export type SessionStatus = 'active' | 'revoked' | 'closed' | 'expired';

/** A session as the authority keeps it. */
export interface SessionRecord {
  tenant: string;
  id: string;
  /** The session this one was delegated from. */
  parent?: string;
  /** The root of its delegation tree. */
  root: string;
  /** 0 for a session opened by token exchange; parent's depth + 1 when delegated. */
  depth: number;
  /** The human accountable for the task (from the verified subject token). */
  initiator: Principal;
  /** The agent acting in this session (from the verified actor token). */
  agent: Principal;
  /** Delegation links, root first: the initiator, then each agent with its scope and session. */
  chain: DelegationLink[];
  workload?: Workload;
  scope: string[];
  audience: string[];
  objective: string;
  clientId?: string;
  createdAt: string;
  expiresAt: string;
  status: SessionStatus;
  /** When and by whom it stopped being active, and why. */
  endedAt?: string;
  endedBy?: string;
  endReason?: string;
}

/** A credential issued for a session: its `jti` and fingerprint only. */
export interface CredentialRecord {
  jti: string;
  tenant: string;
  sessionId: string;
  fingerprint: string;
  issuedAt: string;
  expiresAt: string;
  status: 'active' | 'revoked' | 'expired';
  endedAt?: string;
}

/** A ledger event waiting in the outbox. */
export interface OutboxEvent {
  id: number;
  tenant: string;
  draft: EventDraft;
  attempts: number;
}

/** What ending sessions changed: the sessions and credentials that were active. */
export interface Ended {
  sessions: SessionRecord[];
  credentials: CredentialRecord[];
}

/** How sessions end. */
export interface EndChange {
  status: Exclude<SessionStatus, 'active'>;
  at: string;
  by: string;
  reason: string;
}

/** Session listing filters; all given ones must hold. */
export interface SessionListFilter {
  status?: SessionStatus;
  initiator?: string;
  agent?: string;
  root?: string;
}

/**
 * Persists the authority's state. Every write MUST be atomic and durable before
 * it resolves; `endSessions` and `expireDue` MUST change a session only while it
 * is `active` (so of several nodes exactly one ends it) and MUST write the
 * events `record` returns in the same transaction.
 */
export interface AuthorityStore {
  readonly kind: 'sqlite' | 'postgres';
  /** Creates the tables if missing. Idempotent; safe with several nodes. */
  migrate(): Promise<void>;
  close(): Promise<void>;

  /** Publishes a signing key's public JWK (idempotent). */
  putSigningKey(kid: string, jwk: Record<string, unknown>, at: string): Promise<void>;
  /** Every published public JWK, oldest first. */
  signingKeys(): Promise<Record<string, unknown>[]>;

  /**
   * Inserts a new session with its first credential, in one transaction. A
   * delegated session (one with a `parent`) is inserted only while its parent is
   * `active`: the check takes the lock that `endTree` takes on the tree's root,
   * so a delegation racing a revocation either commits first (and is ended by
   * it) or finds its parent ended. Then nothing is written and this resolves
   * `false`; otherwise `true`.
   */
  createSession(session: SessionRecord, credential: CredentialRecord): Promise<boolean>;
  getSession(tenant: string, id: string): Promise<SessionRecord | undefined>;
  /** Sessions newest first; `cursor` is the previous page's `nextCursor`. */
  listSessions(tenant: string, filter: SessionListFilter, limit: number, cursor?: string): Promise<{ sessions: SessionRecord[]; nextCursor?: string }>;
  /** The session and every descendant, parents before children. */
  subtree(tenant: string, id: string): Promise<SessionRecord[]>;
  getCredential(jti: string): Promise<CredentialRecord | undefined>;
  credentialsOf(tenant: string, sessionId: string): Promise<CredentialRecord[]>;

  /**
   * Ends the active sessions among `ids` and their active credentials, and queues
   * the ledger events `record` makes of what changed, in one transaction.
   */
  endSessions(tenant: string, ids: readonly string[], change: EndChange, record: (ended: Ended) => EventDraft[]): Promise<Ended & { outbox: number[] }>;
  /**
   * Ends the active sessions of the tree under `id` (the kill switch): `id`
   * itself with `change.self`, every descendant with `change.descendants`, with
   * their active credentials, and queues the events `record` makes, in one
   * transaction. The tree is read inside that transaction, under the lock
   * `createSession` takes for a delegation, so no session delegated from the
   * tree outlives this. `ended.sessions` lists `id` first (when it was active),
   * then descendants parents first. A session that does not exist ends nothing.
   */
  endTree(tenant: string, id: string, change: { self: EndChange; descendants: EndChange }, record: (ended: Ended) => EventDraft[]): Promise<Ended & { outbox: number[] }>;
  /**
   * Expires active sessions whose expiry is at or before `now` (at most `limit`),
   * queueing the events `record` makes, one transaction per tenant.
   */
  expireDue(now: Date, limit: number, record: (tenant: string, ended: Ended) => EventDraft[]): Promise<{ tenant: string; ended: Ended; outbox: number[] }[]>;

  /** Queues ledger events (durably) for `flush`. Returns their ids. */
  enqueue(tenant: string, drafts: readonly EventDraft[]): Promise<number[]>;
  /**
   * Claims up to `limit` pending events for `leaseMs` (so that another node does
   * not append them meanwhile), oldest first; `ids` restricts to those.
   */
  claimOutbox(limit: number, leaseMs: number, ids?: readonly number[]): Promise<OutboxEvent[]>;
  /** Removes appended events. */
  deleteOutbox(ids: readonly number[]): Promise<void>;
  /** Marks events the ledger refused for good (kept, never retried), with the reason. */
  failOutbox(ids: readonly number[], reason: string): Promise<void>;
}

/** A listing cursor: the last row's createdAt and id. @internal */
export function encodeListCursor(createdAt: string, id: string): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString('base64url');
}

/** @internal */
export function decodeListCursor(cursor: string): [string, string] | undefined {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string') return [v[0], v[1]];
  } catch {
    // fall through
  }
  return undefined;
}

/** The immutable part of a session, stored as one JSON column. @internal */
export function sessionDocument(s: SessionRecord): string {
  return JSON.stringify({
    initiator: s.initiator,
    agent: s.agent,
    chain: s.chain,
    ...(s.workload ? { workload: s.workload } : {}),
    scope: s.scope,
    audience: s.audience,
    objective: s.objective,
    ...(s.clientId !== undefined ? { clientId: s.clientId } : {}),
  });
}

/** A session from its row. @internal */
export function sessionFromRow(r: {
  tenant: string;
  id: string;
  parent_id: string | null;
  root_id: string;
  depth: number | string;
  doc: string;
  created_at: string;
  expires_at: string;
  status: string;
  ended_at: string | null;
  ended_by: string | null;
  end_reason: string | null;
}): SessionRecord {
  const doc = JSON.parse(r.doc) as Pick<SessionRecord, 'initiator' | 'agent' | 'chain' | 'workload' | 'scope' | 'audience' | 'objective' | 'clientId'>;
  return {
    tenant: r.tenant,
    id: r.id,
    ...(r.parent_id !== null ? { parent: r.parent_id } : {}),
    root: r.root_id,
    depth: Number(r.depth),
    ...doc,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    status: r.status as SessionStatus,
    ...(r.ended_at !== null ? { endedAt: r.ended_at } : {}),
    ...(r.ended_by !== null ? { endedBy: r.ended_by } : {}),
    ...(r.end_reason !== null ? { endReason: r.end_reason } : {}),
  };
}

/** A credential from its row. @internal */
export function credentialFromRow(r: { jti: string; tenant: string; session_id: string; fingerprint: string; issued_at: string; expires_at: string; status: string; ended_at: string | null }): CredentialRecord {
  return {
    jti: r.jti,
    tenant: r.tenant,
    sessionId: r.session_id,
    fingerprint: r.fingerprint,
    issuedAt: r.issued_at,
    expiresAt: r.expires_at,
    status: r.status as CredentialRecord['status'],
    ...(r.ended_at !== null ? { endedAt: r.ended_at } : {}),
  };
}
