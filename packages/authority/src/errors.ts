/**
 * Errors of the identity authority. Each carries a Custody code (SCREAMING_SNAKE,
 * area prefix `TOKEN_`, `SCOPE_`, `DELEGATION_`, `AUTHORITY_`) and the RFC 6749
 * §5.2 / RFC 8693 error code the OAuth endpoints answer with. Every code is
 * listed in docs/errors.md.
 */
import { CustodyError } from '@custody/core';

/** OAuth error codes (RFC 6749 §5.2, RFC 8693 §2.2.2) the token endpoint answers with. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'temporarily_unavailable';

/** Custody codes of the authority. */
export type AuthorityErrorCode =
  | 'TOKEN_MALFORMED'
  | 'TOKEN_TYPE_UNSUPPORTED'
  | 'TOKEN_ALG_NONE'
  | 'TOKEN_ALG_SYMMETRIC'
  | 'TOKEN_ALG_NOT_ALLOWED'
  | 'TOKEN_ISSUER_UNTRUSTED'
  | 'TOKEN_ISSUER_INVALID'
  | 'TOKEN_ISSUER_UNAVAILABLE'
  | 'TOKEN_KID_UNKNOWN'
  | 'TOKEN_SIGNATURE_INVALID'
  | 'TOKEN_EXPIRED'
  | 'TOKEN_NOT_YET_VALID'
  | 'TOKEN_AUDIENCE_INVALID'
  | 'TOKEN_CLAIMS_INVALID'
  | 'TOKEN_ACT_UNEXPECTED'
  | 'TOKEN_INACTIVE'
  | 'GRANT_TYPE_UNSUPPORTED'
  | 'EXCHANGE_INVALID'
  | 'SCOPE_INVALID'
  | 'SCOPE_WIDENED'
  | 'AUDIENCE_INVALID'
  | 'AUDIENCE_WIDENED'
  | 'LIFETIME_INVALID'
  | 'LIFETIME_EXTENDED'
  | 'DELEGATION_TOO_DEEP'
  | 'TENANT_MISMATCH'
  | 'AUTHORITY_SESSION_NOT_FOUND'
  | 'AUTHORITY_SESSION_INACTIVE'
  | 'AUTHORITY_CONFIG_INVALID'
  | 'AUTHORITY_KEY_INVALID';

/** The OAuth error each code answers with on the OAuth endpoints. */
export const OAUTH_ERROR_OF: Record<AuthorityErrorCode, OAuthErrorCode> = {
  // RFC 8693 §2.2.2: an invalid or unacceptable subject_token or actor_token is invalid_request.
  TOKEN_MALFORMED: 'invalid_request',
  TOKEN_TYPE_UNSUPPORTED: 'invalid_request',
  TOKEN_ALG_NONE: 'invalid_request',
  TOKEN_ALG_SYMMETRIC: 'invalid_request',
  TOKEN_ALG_NOT_ALLOWED: 'invalid_request',
  TOKEN_ISSUER_UNTRUSTED: 'invalid_request',
  TOKEN_ISSUER_INVALID: 'invalid_request',
  TOKEN_ISSUER_UNAVAILABLE: 'temporarily_unavailable',
  TOKEN_KID_UNKNOWN: 'invalid_request',
  TOKEN_SIGNATURE_INVALID: 'invalid_request',
  TOKEN_EXPIRED: 'invalid_request',
  TOKEN_NOT_YET_VALID: 'invalid_request',
  TOKEN_AUDIENCE_INVALID: 'invalid_request',
  TOKEN_CLAIMS_INVALID: 'invalid_request',
  TOKEN_ACT_UNEXPECTED: 'invalid_request',
  TOKEN_INACTIVE: 'invalid_request',
  GRANT_TYPE_UNSUPPORTED: 'unsupported_grant_type',
  EXCHANGE_INVALID: 'invalid_request',
  SCOPE_INVALID: 'invalid_scope',
  SCOPE_WIDENED: 'invalid_scope',
  AUDIENCE_INVALID: 'invalid_target',
  AUDIENCE_WIDENED: 'invalid_target',
  LIFETIME_INVALID: 'invalid_request',
  LIFETIME_EXTENDED: 'invalid_request',
  DELEGATION_TOO_DEEP: 'invalid_request',
  TENANT_MISMATCH: 'invalid_request',
  AUTHORITY_SESSION_NOT_FOUND: 'invalid_request',
  AUTHORITY_SESSION_INACTIVE: 'invalid_request',
  AUTHORITY_CONFIG_INVALID: 'invalid_request',
  AUTHORITY_KEY_INVALID: 'invalid_request',
};

/** The HTTP status of each code (OAuth endpoints: 400, or 503 when an issuer's keys cannot be fetched). */
export const AUTHORITY_STATUS: Record<AuthorityErrorCode, number> = {
  ...(Object.fromEntries(Object.keys(OAUTH_ERROR_OF).map((c) => [c, 400])) as Record<AuthorityErrorCode, number>),
  TOKEN_ISSUER_UNAVAILABLE: 503,
  AUTHORITY_SESSION_NOT_FOUND: 404,
  AUTHORITY_SESSION_INACTIVE: 409,
  // Raised at start-up, never by a request.
  AUTHORITY_CONFIG_INVALID: 500,
  AUTHORITY_KEY_INVALID: 500,
};

/** A refused token, exchange or session operation. Clients branch on `code` (or `oauth` on the OAuth endpoints). */
export class AuthorityError extends CustodyError<AuthorityErrorCode> {
  /** The OAuth error code for RFC 6749 §5.2 bodies. */
  readonly oauth: OAuthErrorCode;
  /** The HTTP status. */
  readonly status: number;
  /** The request parameter at fault, when one can be named (`subject_token`, `scope` …). */
  readonly field: string | undefined;
  constructor(code: AuthorityErrorCode, message: string, options?: { cause?: unknown; field?: string }) {
    super(code, message, options);
    this.oauth = OAUTH_ERROR_OF[code];
    this.status = AUTHORITY_STATUS[code];
    this.field = options?.field;
  }
}
