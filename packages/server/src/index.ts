/**
 * @custody/server: Custody's HTTP API (Fastify), versioned under /v1.
 * Every name exported here is public API.
 */
export { API_KEY_ROLES, authenticate, createApiKey, hashApiKey, revokeApiKey } from './api-keys.js';
export type { ApiKeyRole, CreateApiKeyOptions, CreatedApiKey, RevokeApiKeyOptions } from './api-keys.js';
export { API_ERROR_CODES, ApiError, errorResponse } from './errors.js';
export type { ApiErrorCode, ErrorBody, ErrorResponse } from './errors.js';
export { DEFAULT_BODY_LIMIT, DEFAULT_MAX_BATCH, createServer } from './server.js';
export { defaultPrepareWorkers } from './prepare-pool.js';
export type { ServerOptions } from './server.js';
export { APPROVALS_ACTOR, Approvals, argumentsDigest } from './approvals/approvals.js';
export type { ApprovalsOptions } from './approvals/approvals.js';
export type { ApprovalContext, ApprovalDecision, ApprovalFilter, ApprovalRecord, ApprovalStatus, ApprovalStore } from './approvals/approval-store.js';
export { PostgresApprovalStore } from './approvals/postgres-approval-store.js';
export type { PostgresApprovalStoreConfig } from './approvals/postgres-approval-store.js';
export { SqliteApprovalStore } from './approvals/sqlite-approval-store.js';
export type { SqliteApprovalStoreConfig } from './approvals/sqlite-approval-store.js';
export { POLICY_ACTOR, capturedArguments } from './routes/decision-routes.js';
export type { Capture } from './routes/decision-routes.js';
export { ImportMappingError, MAPPING_FORMAT, compileMapping, loadMappingFile, parseMappingText } from './import/mapping.js';
export type { FieldSpec, ImportMapping, MappingDocument } from './import/mapping.js';
