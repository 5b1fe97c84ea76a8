/**
 * @custody/authority: Custody's identity authority. Verifies human and workload
 * tokens, opens sessions by RFC 8693 token exchange, delegates with attenuation,
 * revokes in cascade, introspects (RFC 7662) and publishes its JWKS.
 * Every name exported here is public API.
 */
export { AUTHORITY_ACTOR, Authority, TOKEN_EXCHANGE_GRANT, TOKEN_TYPES, actOf } from './authority.js';
export type {
  ActClaim,
  AuthorityOptions,
  EventSink,
  IntrospectionResponse,
  Requester,
  SessionView,
  TokenExchangeRequest,
  TokenExchangeResponse,
  VerifiedCredential,
} from './authority.js';
export type { AuthorityStore, CredentialRecord, EndChange, Ended, OutboxEvent, SessionListFilter, SessionRecord, SessionStatus } from './authority-store.js';
export { DEV_AGENT_ISSUER, DEV_APPROVER_AUDIENCE, DEV_AUDIENCE, DEV_HUMAN_ISSUER, DEV_ISSUER_KEY_FILE, devIssuerTrust, loadDevIssuerKey, mintDevTokens } from './dev-issuer.js';
export type { DevTokenOptions, DevTokens } from './dev-issuer.js';
export { AUTHORITY_STATUS, AuthorityError, OAUTH_ERROR_OF } from './errors.js';
export type { AuthorityErrorCode, OAuthErrorCode } from './errors.js';
export { tokenFingerprint } from './fingerprint.js';
export { PostgresAuthorityStore } from './postgres/postgres-authority-store.js';
export type { PostgresAuthorityStoreConfig } from './postgres/postgres-authority-store.js';
export { MAX_SCOPE_TOKENS, parseScope, scopeExcess, scopeText } from './scope.js';
export { SESSION_KEY_HEADER, loadSigningKey, signingKeyFromSeed, signingKeyFromText } from './signing-key.js';
export type { PublicJwk, SigningKey } from './signing-key.js';
export { SqliteAuthorityStore } from './sqlite/sqlite-authority-store.js';
export type { SqliteAuthorityStoreConfig } from './sqlite/sqlite-authority-store.js';
export { MAX_TOKEN_LENGTH, TokenVerifier } from './token-verifier.js';
export type { PresentedToken, VerifiedToken } from './token-verifier.js';
export { ASYMMETRIC_ALGORITHMS, emptyTrustConfig, loadTrustConfig, parseTrustConfig } from './trust-config.js';
export type { IssuerTrust, KeySource, SessionLimits, TrustConfig } from './trust-config.js';
