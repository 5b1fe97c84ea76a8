/**
 * Custody's Cedar schema: the entities, the MCP actions and the request context
 * every policy is validated against. See docs/policies.md, "Schema".
 */

/** The version of the built-in schema; part of every policy-set version's canonical text. */
export const SCHEMA_VERSION = 'custody.policy-schema/v1';

/**
 * The built-in schema (Cedar schema syntax, no namespace). A policy folder's
 * `*.cedarschema` files are appended to it; when none defines `Arguments`,
 * `type Arguments = {};` is added.
 */
export const BASE_SCHEMA = `// ${SCHEMA_VERSION}
// Principals: the identity that performs the call (usually the agent).
entity Human;
entity Agent;
entity Workload;
entity Service;
// The session a call belongs to (its attributes travel in context.session).
entity Session;
// An MCP server (an upstream of the gateway) and what it offers.
entity Server;
entity Tool in [Server];
entity Resource in [Server];
entity Prompt in [Server];

// The session a request is made in: its scope, expiry and delegation depth.
type SessionContext = {
  id: String,
  scope: Set<String>,
  "inScope": Bool,
  expiresAt: datetime,
  depth: Long,
  initiator: String,
  objective?: String,
};

// The state of a human approval for this exact call.
type ApprovalContext = {
  status: String,
  granted: Bool,
};

// What the request is about: the namespaced name and its server.
type TargetContext = {
  name: String,
  server: String,
};

type RequestContext = {
  arguments: Arguments,
  session: SessionContext,
  approval: ApprovalContext,
  target: TargetContext,
  now: datetime,
};

action "tools/call" appliesTo { principal: [Human, Agent, Workload, Service], resource: [Tool], context: RequestContext };
action "tools/list" appliesTo { principal: [Human, Agent, Workload, Service], resource: [Tool], context: RequestContext };
action "resources/read" appliesTo { principal: [Human, Agent, Workload, Service], resource: [Resource], context: RequestContext };
action "resources/list" appliesTo { principal: [Human, Agent, Workload, Service], resource: [Resource], context: RequestContext };
action "prompts/get" appliesTo { principal: [Human, Agent, Workload, Service], resource: [Prompt], context: RequestContext };
action "prompts/list" appliesTo { principal: [Human, Agent, Workload, Service], resource: [Prompt], context: RequestContext };
`;

/** The MCP methods that are Cedar actions. */
export const POLICY_ACTIONS = ['tools/call', 'tools/list', 'resources/read', 'resources/list', 'prompts/get', 'prompts/list'] as const;
export type PolicyAction = (typeof POLICY_ACTIONS)[number];

/** The Cedar entity type of the resource for each action. */
export const ACTION_RESOURCE_TYPE: Readonly<Record<PolicyAction, 'Tool' | 'Resource' | 'Prompt'>> = {
  'tools/call': 'Tool',
  'tools/list': 'Tool',
  'resources/read': 'Resource',
  'resources/list': 'Resource',
  'prompts/get': 'Prompt',
  'prompts/list': 'Prompt',
};

/** Principal types of the schema, by the envelope's principal type. */
export const PRINCIPAL_ENTITY_TYPE = { human: 'Human', agent: 'Agent', workload: 'Workload', service: 'Service' } as const;
