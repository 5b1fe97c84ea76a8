/**
 * JSON Schemas of the API: shared ones (added with `addSchema`, rendered as
 * OpenAPI components) and the query strings of the read routes. The OpenAPI
 * document is generated from these, so they are the API's reference.
 * @internal
 */

/** A `$ref` to a shared schema by its `$id`. */
export const ref = (id: string) => ({ $ref: `${id}#` }) as const;

const time = { type: 'string', format: 'date-time', description: 'RFC 3339 in UTC, e.g. 2026-11-22T06:00:00.123Z' } as const;
const nonEmpty = (maxLength: number, description?: string) =>
  ({ type: 'string', minLength: 1, maxLength, ...(description !== undefined ? { description } : {}) }) as const;

const principal = {
  $id: 'Principal',
  type: 'object',
  description: 'An identity: a human, agent, workload or service. `verified` is true only when Custody verified a token for it.',
  required: ['type', 'id'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', enum: ['human', 'agent', 'workload', 'service'] },
    id: nonEmpty(512),
    issuer: nonEmpty(512),
    name: nonEmpty(256),
    verified: { type: 'boolean' },
  },
} as const;

/** Envelope parts that clients and the ledger spell the same way (docs/format.md). */
const parts = {
  chain: {
    type: 'array',
    maxItems: 64,
    description: 'Delegation links, root first.',
    items: {
      type: 'object',
      required: ['principal'],
      additionalProperties: false,
      properties: { principal: ref('Principal'), scope: { type: 'array', items: { type: 'string' } }, session: { type: 'string' } },
    },
  },
  workload: {
    type: 'object',
    description: "The actor's attested workload identity (spiffeId or subject required).",
    required: ['method', 'verified'],
    additionalProperties: false,
    properties: {
      method: { type: 'string', enum: ['jwt-svid', 'x509-svid', 'oidc', 'api-key', 'unverified'] },
      verified: { type: 'boolean' },
      spiffeId: { type: 'string', pattern: '^spiffe://' },
      issuer: { type: 'string' },
      subject: { type: 'string' },
    },
  },
  cause: { type: 'string', description: 'Id of the event that led to this one.' },
  trace: {
    type: 'object',
    description: 'W3C Trace Context.',
    required: ['traceId', 'spanId'],
    additionalProperties: false,
    properties: {
      traceId: { type: 'string', pattern: '^[0-9a-f]{32}$' },
      spanId: { type: 'string', pattern: '^[0-9a-f]{16}$' },
      flags: { type: 'string', pattern: '^[0-9a-f]{2}$' },
      state: { type: 'string' },
    },
  },
  tool: {
    type: 'object',
    description: 'The tool call (for tool.* and policy.decided). Arguments and results go in data.',
    required: ['name'],
    additionalProperties: false,
    properties: { name: nonEmpty(256), server: { type: 'string' }, callId: { type: 'string' } },
  },
  decision: {
    type: 'object',
    description: 'The policy decision (for policy.decided).',
    required: ['effect', 'policyVersion', 'policies', 'reasons'],
    additionalProperties: false,
    properties: {
      effect: { type: 'string', enum: ['allow', 'deny', 'approval_required'] },
      policyVersion: { type: 'string' },
      policies: { type: 'array', items: { type: 'string' } },
      reasons: { type: 'array', items: { type: 'string' } },
      evaluatedAt: time,
      durationMs: { type: 'number', minimum: 0 },
    },
  },
  approval: {
    type: 'object',
    description: 'The approval (for approval.*).',
    required: ['id'],
    additionalProperties: false,
    properties: {
      id: { type: 'string' },
      status: { type: 'string', enum: ['pending', 'granted', 'denied', 'expired'] },
      approver: ref('Principal'),
      source: { type: 'object', additionalProperties: { type: 'string' } },
      expiresAt: time,
      argumentsDigest: { type: 'string' },
      reason: { type: 'string' },
    },
  },
  credential: {
    type: 'object',
    description: 'The session credential (for credential.*), known by jti and fingerprint, never by its value.',
    required: ['jti', 'fingerprint'],
    additionalProperties: false,
    properties: {
      jti: { type: 'string' },
      fingerprint: { type: 'string', description: 'base64url SHA-256 of the token' },
      scope: { type: 'array', items: { type: 'string' } },
      audience: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
      issuedAt: time,
      expiresAt: time,
      depth: { type: 'integer', minimum: 0, maximum: 64 },
    },
  },
  data: {
    type: 'object',
    description: 'Further detail. data.prompt, data.arguments, data.result and data.output are stored as salted commitments, their values as disclosures beside the entry.',
  },
} as const;

const eventInput = {
  $id: 'EventInput',
  type: 'object',
  description:
    'One event as a source submits it (docs/format.md, "The envelope"). The ledger assigns v, recordedAt, session.seq, session.prev and the seal; ' +
    'they are ignored if sent. The server assigns id (a UUIDv7) and time (now) when absent; tenant comes from the API key and, if sent, must equal it. ' +
    'The server validates each event with the same rules as the ledger before appending any.',
  required: ['type', 'actor'],
  additionalProperties: false,
  properties: {
    id: { type: 'string', description: 'Lowercase UUID. Re-sending an id returns the original result and never writes a second entry.' },
    tenant: { type: 'string', description: "Optional; must equal the key's tenant (400 TENANT_MISMATCH otherwise)." },
    type: { type: 'string', description: 'An event type of the v1 taxonomy, e.g. session.opened, tool.requested, admin.<name>, external.<name>.' },
    time: { ...time, description: 'When the source says it happened (default: now).' },
    session: {
      type: 'object',
      description: 'Required for every type but admin.* and external.*.',
      required: ['id'],
      additionalProperties: false,
      properties: {
        id: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' },
        parent: { type: 'string', description: 'The parent session of a delegated session.' },
        objective: { type: 'string', description: 'The task, as stated when the session opened.' },
        seq: { description: 'Assigned by the ledger; ignored.' },
        prev: { description: 'Assigned by the ledger; ignored.' },
      },
    },
    initiator: { ...ref('Principal'), description: 'The human (or service) who asked for the work; required with session.' },
    actor: { ...ref('Principal'), description: 'Who performed this step.' },
    ...parts,
    v: { description: 'Assigned by the ledger; ignored.' },
    recordedAt: { description: 'Assigned by the ledger; ignored.' },
    seal: { description: 'Written by the ledger on session.closed; ignored.' },
  },
} as const;

const envelope = {
  $id: 'Envelope',
  type: 'object',
  description: 'A sealed v1 envelope, with every commitment whose disclosure the ledger holds opened to its value.',
  required: ['v', 'id', 'tenant', 'type', 'time', 'recordedAt', 'actor'],
  additionalProperties: false,
  properties: {
    v: { type: 'integer', const: 1 },
    id: { type: 'string' },
    tenant: { type: 'string' },
    type: { type: 'string' },
    time,
    recordedAt: time,
    session: {
      type: 'object',
      required: ['id', 'seq', 'prev'],
      additionalProperties: false,
      properties: {
        id: { type: 'string' },
        seq: { type: 'integer', minimum: 1 },
        prev: { type: ['string', 'null'], description: 'Entry digest of the session entry before this one; null for seq 1.' },
        parent: { type: 'string' },
        objective: { type: 'string' },
      },
    },
    initiator: ref('Principal'),
    actor: ref('Principal'),
    ...parts,
    seal: {
      type: 'object',
      required: ['count', 'head'],
      additionalProperties: false,
      properties: { count: { type: 'integer' }, head: { type: 'string' } },
    },
  },
} as const;

const eventView = {
  $id: 'EventView',
  type: 'object',
  required: ['index', 'event', 'redacted', 'digest'],
  additionalProperties: false,
  properties: {
    index: { type: 'integer', minimum: 0, description: "Leaf index in the tenant's log." },
    event: ref('Envelope'),
    redacted: { type: 'array', items: { type: 'string' }, description: 'JSON Pointers of committed fields whose disclosure was dropped.' },
    digest: { type: 'string', description: 'Entry digest: base64url of the RFC 6962 leaf hash.' },
  },
} as const;

const session = {
  $id: 'Session',
  type: 'object',
  required: ['id', 'seq', 'digest', 'sealed', 'firstAt', 'lastAt', 'firstIndex', 'lastIndex', 'entries', 'lastType'],
  additionalProperties: false,
  properties: {
    id: { type: 'string' },
    seq: { type: 'integer', description: "seq of the session's last entry" },
    digest: { type: 'string', description: "entry digest of the session's last entry (the head of its hash chain)" },
    sealed: { type: 'boolean', description: 'true once session.closed sealed it' },
    initiatorId: { type: 'string' },
    actorId: { type: 'string' },
    objective: { type: 'string' },
    parent: { type: 'string' },
    firstAt: time,
    lastAt: time,
    firstIndex: { type: 'integer' },
    lastIndex: { type: 'integer' },
    entries: { type: 'integer' },
    lastType: { type: 'string' },
  },
} as const;

const causeNode = {
  $id: 'CauseNode',
  type: 'object',
  description: 'A node of the causal tree (by cause); an event whose cause is not in the session is a root.',
  required: ['id', 'index', 'type', 'children'],
  additionalProperties: false,
  properties: {
    id: { type: 'string' },
    index: { type: 'integer' },
    seq: { type: 'integer' },
    type: { type: 'string' },
    children: { type: 'array', items: ref('CauseNode') },
  },
} as const;

const bundle = {
  $id: 'Bundle',
  type: 'object',
  description: 'A custody.bundle/v1 evidence bundle (docs/format.md); verify it offline with `custody verify`.',
  required: ['format', 'verifierKey', 'checkpoint', 'records'],
  additionalProperties: false,
  properties: {
    format: { type: 'string', const: 'custody.bundle/v1' },
    session: { type: 'string' },
    verifierKey: { type: 'string' },
    checkpoint: { type: 'string', description: 'A signed note (C2SP tlog-checkpoint).' },
    records: {
      type: 'array',
      items: {
        type: 'object',
        required: ['entry', 'proof'],
        additionalProperties: false,
        properties: {
          entry: { type: 'string', description: 'base64 of the exact entry bytes' },
          proof: { type: 'string', description: 'receipt: C2SP tlog-proof@v1 text' },
          disclosures: { type: 'array', items: { type: 'string' } },
        },
      },
    },
    consistency: { type: 'object', additionalProperties: { type: 'array', items: { type: 'string' } } },
  },
} as const;

const errorDetail = {
  type: 'object',
  required: ['code', 'message'],
  additionalProperties: false,
  properties: {
    code: { type: 'string', description: 'Stable SCREAMING_SNAKE code (docs/errors.md); branch on it, never on message.' },
    message: { type: 'string' },
    field: { type: 'string', description: 'The field at fault, when one can be named, e.g. events[3].session.id.' },
  },
} as const;

const error = {
  $id: 'Error',
  type: 'object',
  description: 'Every error response.',
  required: ['error'],
  additionalProperties: false,
  properties: { error: errorDetail },
} as const;

const appendResult = {
  $id: 'AppendResult',
  description: 'Where one event landed, or why the sequencer refused it.',
  oneOf: [
    {
      type: 'object',
      required: ['id', 'index', 'duplicate'],
      additionalProperties: false,
      properties: {
        id: { type: 'string' },
        index: { type: 'integer', minimum: 0, description: "Leaf index in the tenant's log." },
        seq: { type: 'integer', minimum: 1, description: 'Position in its session.' },
        duplicate: { type: 'boolean', description: 'true when the id was already in the log: this is the original result.' },
      },
    },
    {
      type: 'object',
      required: ['id', 'error'],
      additionalProperties: false,
      properties: { id: { type: 'string' }, error: errorDetail },
    },
  ],
} as const;

const appendFailure = {
  $id: 'AppendFailure',
  type: 'object',
  description: 'The request could not be completed. `results`, when present, lists per event what was committed before the failure.',
  required: ['error'],
  additionalProperties: false,
  properties: { error: errorDetail, results: { type: 'array', items: ref('AppendResult') } },
} as const;

const apiKey = {
  $id: 'ApiKey',
  type: 'object',
  description: 'An API key as listed (never its secret nor hash).',
  required: ['id', 'tenant', 'role', 'name', 'createdAt'],
  additionalProperties: false,
  properties: {
    id: { type: 'string' },
    tenant: { type: 'string' },
    role: { type: 'string', enum: ['ingest', 'read', 'approve', 'admin'] },
    name: { type: 'string' },
    createdAt: time,
    revokedAt: time,
  },
} as const;

/** Shared schemas, in dependency order. */
export const SHARED_SCHEMAS = [principal, eventInput, envelope, eventView, session, causeNode, bundle, error, appendResult, appendFailure, apiKey] as const;

/** Paging parameters of every list route. */
export const PAGING = {
  limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100, description: 'Most items in one page.' },
  cursor: { type: 'string', minLength: 1, maxLength: 2048, description: 'nextCursor of the previous page.' },
  order: { type: 'string', enum: ['asc', 'desc'], default: 'desc', description: 'Log order; newest first by default.' },
} as const;

const idParam = (description: string, maxLength = 2048) => ({ type: 'string', minLength: 1, maxLength, description }) as const;

/** Filters of an identity query (EntryFilter), all of which must hold. */
export const ENTRY_FILTERS = {
  initiator: idParam('Initiator principal id.'),
  agent: idParam('Agent principal id: the actor or any delegation link.'),
  workload: idParam('Workload identity: SPIFFE ID or <issuer>|<subject>.'),
  principal: idParam('Principal id in any role.'),
  approver: idParam('Approver principal id.'),
  session: idParam('Session id.', 128),
  objective: idParam('Substring of the session objective (case-insensitive).', 4096),
  tool: idParam('Tool name.', 256),
  decision: { type: 'string', enum: ['allow', 'deny', 'approval_required'] },
  type: { type: 'string', pattern: '^[a-z0-9_]+(\\.[a-z0-9_]+)*(\\.\\*)?$', maxLength: 256, description: 'Event type, exact, or a family ending in .* (e.g. approval.*).' },
  trace: { type: 'string', pattern: '^[0-9a-f]{32}$', description: 'W3C trace id.' },
  since: { ...time, description: '`time` at or after (RFC 3339).' },
  until: { ...time, description: '`time` before (RFC 3339).' },
} as const;

/** Session filters (SessionFilter). */
export const SESSION_FILTERS = {
  initiator: ENTRY_FILTERS.initiator,
  agent: ENTRY_FILTERS.agent,
  objective: ENTRY_FILTERS.objective,
  sealed: { type: 'boolean', description: 'Only sealed (true) or open (false) sessions.' },
  since: { ...time, description: 'Sessions active at or after (RFC 3339).' },
  until: { ...time, description: 'Sessions active before (RFC 3339).' },
} as const;

/** A session id path parameter. */
export const SESSION_ID = { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$', description: 'Session id.' } as const;
