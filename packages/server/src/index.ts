/**
 * @custody/server: Custody's HTTP API (Fastify), versioned under /v1.
 * Every name exported here is public API.
 */
export { API_KEY_ROLES, authenticate, createApiKey, hashApiKey, revokeApiKey } from './api-keys.js';
export type { ApiKeyRole, CreateApiKeyOptions, CreatedApiKey, RevokeApiKeyOptions } from './api-keys.js';
export { API_ERROR_CODES, ApiError, errorResponse } from './errors.js';
export type { ApiErrorCode, ErrorBody, ErrorResponse } from './errors.js';
export { DEFAULT_BODY_LIMIT, DEFAULT_MAX_BATCH, createServer } from './server.js';
export type { ServerOptions } from './server.js';
