/**
 * `@custody/policy`: Cedar policies for Custody — the schema of Custody's entities,
 * MCP actions and request context; loading and validating a policy folder;
 * versioned policy sets; and decisions shaped like the envelope's `decision` part.
 * Every name exported here is public API. See docs/policies.md.
 */
export { CANONICAL_HEADER, canonicalPolicyText, normaliseText, policySetVersion } from './canonical-text.js';
export type { PolicySourceFile } from './canonical-text.js';
export { formatIssue, PolicyError } from './errors.js';
export type { PolicyErrorCode, PolicyIssue, PolicySourcePosition } from './errors.js';
export { parsePolicyCases, runPolicyCases } from './policy-cases.js';
export type { PolicyCase, PolicyCaseResult } from './policy-cases.js';
export { APPROVAL_STATUSES, checkRequest, PolicyEngine, scopeCovers, targetId } from './policy-engine.js';
export type { ApprovalStatus, PolicyDecision, PolicyRequest } from './policy-engine.js';
export { compilePolicySet, loadPolicySet, readPolicyFolder } from './policy-set.js';
export type { CompiledPolicySet, LoadedPolicy } from './policy-set.js';
export { ACTION_RESOURCE_TYPE, BASE_SCHEMA, POLICY_ACTIONS, PRINCIPAL_ENTITY_TYPE, SCHEMA_VERSION } from './schema.js';
export type { PolicyAction } from './schema.js';
