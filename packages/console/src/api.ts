/**
 * The console's client of the Custody HTTP API (same origin). The API key is kept
 * in sessionStorage: it lives as long as the tab and is sent only to this server.
 */
const KEY = 'custody.apiKey';

export function apiKey(): string | undefined {
  return sessionStorage.getItem(KEY) ?? undefined;
}

export function signIn(key: string): void {
  sessionStorage.setItem(KEY, key);
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
}

/** An answer of the server that is not 2xx, with its error code. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET or POST a /v1 path with the signed-in key; resolves to the parsed JSON (or text). */
export async function api<T>(path: string, init: { method?: string; body?: unknown; key?: string; text?: boolean } = {}): Promise<T> {
  const key = init.key ?? apiKey();
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    headers: {
      ...(key !== undefined ? { authorization: `Bearer ${key}` } : {}),
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) {
    let code = `HTTP_${res.status}`;
    let message = text.slice(0, 300) || res.statusText;
    try {
      const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
      code = e?.code ?? code;
      message = e?.message ?? message;
    } catch {
      // not JSON: keep the text
    }
    throw new ApiError(res.status, code, message);
  }
  if (init.text === true) return text as T;
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

/** A query string of the given, non-empty values. */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

// ---- shapes of the API's answers that the console reads ---------------------------

export interface Principal {
  type: string;
  id: string;
  issuer?: string;
  name?: string;
  verified?: boolean;
}

export interface DelegationLink {
  principal: Principal;
  scope?: string[];
  session?: string;
}

export interface Envelope {
  id: string;
  type: string;
  time: string;
  recordedAt: string;
  session?: { id: string; seq: number; objective?: string; parent?: string };
  initiator?: Principal;
  actor: Principal;
  chain?: DelegationLink[];
  cause?: string;
  trace?: { traceId: string; spanId: string };
  tool?: { name: string; server?: string; callId?: string };
  decision?: { effect: string; policyVersion: string; policies: string[]; reasons: string[] };
  approval?: { id: string; status?: string; approver?: Principal; source?: Record<string, string>; expiresAt?: string; reason?: string; argumentsDigest?: string };
  credential?: { jti: string; fingerprint: string; scope?: string[]; issuedAt?: string; expiresAt?: string; depth?: number };
  seal?: { count: number; head: string };
  data?: Record<string, unknown>;
}

export interface EventView {
  index: number;
  event: Envelope;
  redacted: string[];
  digest: string;
}

export interface CauseNode {
  id: string;
  index: number;
  seq?: number;
  type: string;
  children: CauseNode[];
}

export interface Timeline {
  session: { id: string; sealed?: boolean; initiator?: string; agent?: string; objective?: string };
  events: EventView[];
  tree: CauseNode[];
  external?: EventView[];
}

export interface CredentialRecord {
  jti: string;
  fingerprint: string;
  issuedAt: string;
  expiresAt: string;
  status: string;
  endedAt?: string;
}

export interface AuthoritySession {
  id: string;
  parent?: string;
  root: string;
  depth: number;
  initiator: Principal;
  agent: Principal;
  chain: DelegationLink[];
  scope: string[];
  objective: string;
  createdAt: string;
  expiresAt: string;
  status: string;
  endedAt?: string;
  endedBy?: string;
  endReason?: string;
  credentials?: CredentialRecord[];
}

export interface Approval {
  id: string;
  status: string;
  session: string;
  tool: string;
  createdAt: string;
  expiresAt: string;
  argumentsDigest: string;
  context: {
    session: { id: string; objective?: string; rootObjective?: string; scope: string[]; expiresAt: string; depth: number };
    initiator: Principal;
    agent: Principal;
    chain: DelegationLink[];
    arguments?: Record<string, unknown>;
    capture: string;
    policies: string[];
    reasons: string[];
    requestedBy: string;
  };
  call: string;
  decidedAt?: string;
  approver?: Principal;
  source?: Record<string, string>;
  reason?: string;
  consumedAt?: string;
  /** active, revoked, closed or expired: an ended session's call can no longer run. */
  sessionStatus?: string;
}
