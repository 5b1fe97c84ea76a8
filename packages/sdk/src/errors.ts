/**
 * Errors the SDK raises. One class per situation an agent developer must handle
 * differently; each carries a stable `code` (docs/errors.md, "SDK errors").
 */
import { CustodyError } from '@custody/core';

/** Codes of the SDK's errors. */
export type SdkErrorCode =
  | 'SDK_DENIED'
  | 'SDK_APPROVAL_DENIED'
  | 'SDK_APPROVAL_EXPIRED'
  | 'SDK_APPROVAL_TIMEOUT'
  | 'SDK_REVOKED'
  | 'SDK_LEDGER_UNAVAILABLE'
  | 'SDK_DELIVERY_UNACKNOWLEDGED'
  | 'SDK_EVENTS_UNDELIVERED'
  | 'SDK_EVENT_DROPPED'
  | 'SDK_EVENT_TYPE_RESERVED'
  | 'SDK_OUTCOME_UNRECORDED'
  | 'SDK_ABORTED'
  | 'SDK_REQUEST_FAILED'
  | 'SDK_EXCHANGE_FAILED'
  | 'SDK_CONFIG_INVALID'
  | 'SDK_SPOOL_LOCKED'
  | 'SDK_SPOOL_CORRUPT'
  | 'SDK_SPOOL_FULL'
  | 'SDK_HANDOFF_INVALID';

/** Base class of every SDK error; branch on `code` or on the subclass. */
export class SdkError<C extends SdkErrorCode = SdkErrorCode> extends CustodyError<C> {}

/** What the decision point answered, as carried by a denial. */
export interface DecisionInfo {
  effect: 'allow' | 'deny' | 'approval_required';
  policies: string[];
  reasons: string[];
  policyVersion: string;
}

/** Policy denied the tool call (it was recorded as denied and did not run). */
export class DeniedError extends SdkError<'SDK_DENIED' | 'SDK_APPROVAL_DENIED' | 'SDK_APPROVAL_EXPIRED'> {
  /** `<server>.<name>` of the refused call. */
  readonly tool: string;
  /** The decision, when the decision point gave one. */
  readonly decision: DecisionInfo | undefined;
  /** The approval that was denied or expired, for `SDK_APPROVAL_*`. */
  readonly approval: string | undefined;
  constructor(code: 'SDK_DENIED' | 'SDK_APPROVAL_DENIED' | 'SDK_APPROVAL_EXPIRED', tool: string, message: string, opts: { decision?: DecisionInfo; approval?: string } = {}) {
    super(code, message);
    this.tool = tool;
    this.decision = opts.decision;
    this.approval = opts.approval;
  }
}

/** No human answered the approval within the SDK's wait (the approval may still be answered later). */
export class ApprovalTimeoutError extends SdkError<'SDK_APPROVAL_TIMEOUT'> {
  readonly tool: string;
  readonly approval: string;
  constructor(tool: string, approval: string, waitedMs: number, options?: { cause?: unknown }) {
    super('SDK_APPROVAL_TIMEOUT', `no answer to approval ${approval} for ${tool} within ${Math.round(waitedMs / 1000)} s; the call did not run`, options);
    this.tool = tool;
    this.approval = approval;
  }
}

/** The session's credential was revoked, closed or has expired: stop the task. */
export class RevokedError extends SdkError<'SDK_REVOKED'> {
  readonly session: string;
  constructor(session: string, message: string, options?: { cause?: unknown }) {
    super('SDK_REVOKED', `session ${session}: ${message}`, options);
    this.session = session;
  }
}

/**
 * The ledger (or the decision point) could not be reached or could not record.
 * For a tool call under fail-closed, the call did not run. `SDK_DELIVERY_UNACKNOWLEDGED`:
 * something answered a delivery without acknowledging each event by id (a
 * maintenance page, a proxy, a wrong `url`); the events stay spooled.
 */
export class LedgerUnavailableError extends SdkError<'SDK_LEDGER_UNAVAILABLE' | 'SDK_DELIVERY_UNACKNOWLEDGED'> {}

/**
 * `custody.close()` stopped with events still undelivered in a spool that does not survive
 * the process (the in-memory default): they are lost. `undelivered` says how many.
 */
export class UndeliveredError extends SdkError<'SDK_EVENTS_UNDELIVERED'> {
  readonly undelivered: number;
  constructor(undelivered: number, message: string, options?: { cause?: unknown }) {
    super('SDK_EVENTS_UNDELIVERED', message, options);
    this.undelivered = undelivered;
  }
}

/** An option of the SDK has a wrong type or value; `option` names it (e.g. `toolsWhenUnavailable`, `openSession.scope`). */
export class ConfigError extends SdkError<'SDK_CONFIG_INVALID'> {
  readonly option: string;
  constructor(option: string, message: string) {
    super('SDK_CONFIG_INVALID', `${option}: ${message}`);
    this.option = option;
  }
}

/** The caller aborted the call (its `signal`): it did not run. */
export class AbortedError extends SdkError<'SDK_ABORTED'> {
  readonly tool: string;
  constructor(tool: string, message: string, options?: { cause?: unknown }) {
    super('SDK_ABORTED', message, options);
    this.tool = tool;
  }
}

/** The server refused a request for a reason the caller must fix (its `apiCode` is the server's code). */
export class RequestError extends SdkError<'SDK_REQUEST_FAILED' | 'SDK_EXCHANGE_FAILED' | 'SDK_EVENT_DROPPED'> {
  /** HTTP status. */
  readonly status: number;
  /** The server's error code (`error.code`, or `custody_code` / `error` of an OAuth answer). */
  readonly apiCode: string;
  constructor(code: 'SDK_REQUEST_FAILED' | 'SDK_EXCHANGE_FAILED' | 'SDK_EVENT_DROPPED', status: number, apiCode: string, message: string) {
    super(code, `${message} (${status} ${apiCode})`);
    this.status = status;
    this.apiCode = apiCode;
  }
}
