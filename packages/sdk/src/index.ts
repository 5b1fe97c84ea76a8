/**
 * @custody/sdk — the client for agents and tools: sessions by token exchange,
 * events, policy-checked tool wrappers and an outbox that survives ledger
 * outages. Fetch-based; runs in Node, Deno, Bun and browsers. The durable,
 * fsync'd spool is Node-only: `@custody/sdk/spool`. See docs/sdk.md.
 */
export { Custody } from './client.js';
export type { ContinueHandoffOptions, CustodyOptions, OpenSessionOptions } from './client.js';
export { Session } from './session.js';
export type { Capture, CallOptions, DelegateOptions, Handoff, HandoffOptions, RecordInput, ToolOptions, UnavailableMode } from './session.js';
export { handoffFingerprint, parseHandoff } from './handoff.js';
export type { HandoffContext } from './handoff.js';
export { AbortedError, ApprovalTimeoutError, ConfigError, DeniedError, LedgerUnavailableError, RequestError, RevokedError, SdkError, UndeliveredError } from './errors.js';
export type { DecisionInfo, SdkErrorCode } from './errors.js';
export type { DeliveryOptions, RecordResult } from './outbox.js';
export { MemorySpool } from './spool-store.js';
export type { OutgoingEvent, SpoolStore } from './spool-store.js';
export { formatTraceparent, newSpanId, newTraceId, parseTraceparent } from './trace-context.js';
export type { OtelApi, TraceContext } from './trace-context.js';
export type { DelegationLink, Principal } from './credential-claims.js';
export type { FetchLike } from './http.js';
