/**
 * `@custody/gateway`: the MCP gateway, Custody's enforcement point in front of
 * MCP servers. Every name exported here is public API. See docs/gateway.md.
 */
export { CustodyHttpError } from './custody-client.js';
export type { ActiveSession, DecisionAnswer } from './custody-client.js';
export { GatewayError, MCP_ERRORS } from './errors.js';
export type { GatewayErrorCode } from './errors.js';
export { Gateway } from './gateway.js';
export type { GatewayOptions } from './gateway.js';
export { loadGatewayConfig, parseGatewayConfig } from './gateway-config.js';
export type { GatewayConfig, HttpUpstream, StdioUpstream, ToolSettings } from './gateway-config.js';
export { perRequestSignalFetch } from './upstreams.js';
export type { CredentialRef, Upstream } from './upstreams.js';
