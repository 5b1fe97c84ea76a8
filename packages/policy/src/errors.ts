/**
 * Errors raised by `@custody/policy`. Each carries a stable `POLICY_*` code;
 * callers branch on `code`, never on `message`. Every code is listed in
 * docs/policies.md ("Errors").
 */
import { CustodyError } from '@custody/core';

/** Codes for policy sets that cannot be loaded and requests that cannot be decided. */
export type PolicyErrorCode =
  | 'POLICY_DIR_UNREADABLE'
  | 'POLICY_DIR_EMPTY'
  | 'POLICY_PARSE_ERROR'
  | 'POLICY_INVALID'
  | 'POLICY_TEMPLATE_UNSUPPORTED'
  | 'POLICY_ANNOTATION_INVALID'
  | 'POLICY_DUPLICATE_ID'
  | 'POLICY_SCHEMA_INVALID'
  | 'POLICY_REQUEST_INVALID'
  | 'POLICY_CASES_INVALID';

/** Where in which file a problem is: 1-based line and column. */
export interface PolicySourcePosition {
  file: string;
  line: number;
  column: number;
}

/** One problem found while loading a policy set, naming the file and position. */
export interface PolicyIssue extends PolicySourcePosition {
  /** The policy's id (its `@id` annotation, else `<file>#<n>`), when the issue is about one policy. */
  policy?: string;
  message: string;
}

/**
 * A policy set that cannot be loaded, or a request that cannot be decided.
 * A server or gateway MUST refuse to start on one raised while loading.
 */
export class PolicyError extends CustodyError<PolicyErrorCode> {
  /** Every problem found (the message names the first ones). */
  readonly issues: readonly PolicyIssue[];
  constructor(code: PolicyErrorCode, message: string, options?: { cause?: unknown; issues?: readonly PolicyIssue[] }) {
    super(code, message, options);
    this.issues = options?.issues ?? [];
  }
}

/** `file:line:column: message` for an issue. */
export function formatIssue(issue: PolicyIssue): string {
  return `${issue.file}:${issue.line}:${issue.column}: ${issue.policy !== undefined ? `policy ${issue.policy}: ` : ''}${issue.message}`;
}
