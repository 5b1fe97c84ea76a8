/**
 * The gateway's errors: `GatewayError` (start-up and configuration) and the
 * JSON-RPC error codes an agent sees when a call is refused.
 */
import { CustodyError } from '@custody/core';

/** Codes of the gateway's own errors. */
export type GatewayErrorCode =
  | 'GATEWAY_CONFIG_INVALID'
  | 'GATEWAY_CONFIG_UNREADABLE'
  | 'GATEWAY_UPSTREAM_UNAVAILABLE'
  | 'GATEWAY_LEDGER_UNAVAILABLE';

/** A gateway that cannot start or reach what it needs. */
export class GatewayError extends CustodyError<GatewayErrorCode> {}

/**
 * JSON-RPC error codes of refused `tools/call` requests (the implementation-defined
 * server error range, -32000 to -32099). `error.data.code` repeats them as text.
 */
export const MCP_ERRORS = {
  /** The policy denied the call; `data.reasons` says why. */
  POLICY_DENIED: -32001,
  /** A human denied the call, or nobody answered in time. */
  APPROVAL_DENIED: -32002,
  /** The session credential is revoked, closed or expired (kill switch). */
  SESSION_INACTIVE: -32003,
  /** The ledger could not durably record the decision: the call was not made (fail closed). */
  LEDGER_UNAVAILABLE: -32004,
  /** The upstream MCP server could not be reached or failed. */
  UPSTREAM_FAILED: -32005,
} as const;
