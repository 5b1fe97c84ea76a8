/**
 * Versioned, forward-only migrations of the PostgreSQL store. Each migration runs
 * in one transaction that first takes an advisory lock on the schema, so several
 * processes may call `migrate()` at once: one migrates, the others wait and then
 * find nothing to do. Applied versions are rows of `<schema>.schema_migrations`.
 *
 * Append a migration to change the schema; never edit one that has shipped.
 */
import type pg from 'pg';

import { StoreError } from '../errors.js';

/** One schema migration; `sql` receives the quoted schema name. @internal */
export interface PostgresMigration {
  readonly version: number;
  readonly description: string;
  readonly sql: (schema: string) => string;
}

// Same logical schema as the SQLite store (see sqlite-migrations.ts for why each
// index exists, and for the packed `nodes` and postings `principals` tables).
// Text that is compared or range-scanned uses COLLATE "C": byte order, so `type`
// family ranges and time keys compare as they do in SQLite, whatever the locale.
const V1 = (s: string) => `
CREATE TABLE ${s}.meta (
  key   text COLLATE "C" PRIMARY KEY,
  value text NOT NULL
);

CREATE TABLE ${s}.entries (
  tenant       text COLLATE "C" NOT NULL,
  idx          bigint NOT NULL,
  id           text COLLATE "C" NOT NULL,
  type         text COLLATE "C" NOT NULL,
  time         text NOT NULL,
  time_key     text COLLATE "C" NOT NULL,
  recorded_at  text NOT NULL,
  entry        bytea NOT NULL,
  disclosures  text NOT NULL,
  digest       text NOT NULL,
  session_id   text COLLATE "C",
  seq          bigint,
  initiator_id text COLLATE "C",
  actor_id     text COLLATE "C" NOT NULL,
  tool_name    text COLLATE "C",
  decision     text COLLATE "C",
  cause        text COLLATE "C",
  trace_id     text COLLATE "C",
  principals   text NOT NULL,
  CONSTRAINT entries_pkey PRIMARY KEY (tenant, idx)
);
CREATE UNIQUE INDEX entries_id ON ${s}.entries (tenant, id);
CREATE INDEX entries_session ON ${s}.entries (tenant, session_id, idx) WHERE session_id IS NOT NULL;
CREATE INDEX entries_tool ON ${s}.entries (tenant, tool_name, idx) WHERE tool_name IS NOT NULL;
CREATE INDEX entries_type ON ${s}.entries (tenant, type, idx);
CREATE INDEX entries_decision ON ${s}.entries (tenant, decision, idx) WHERE decision IS NOT NULL;
CREATE INDEX entries_trace ON ${s}.entries (tenant, trace_id, idx) WHERE trace_id IS NOT NULL;
CREATE INDEX entries_time ON ${s}.entries (tenant, time_key, idx);

CREATE TABLE ${s}.principals (
  tenant    text COLLATE "C" NOT NULL,
  bucket    bigint NOT NULL,
  pid       text COLLATE "C" NOT NULL,
  first_idx bigint NOT NULL,
  ptype     text NOT NULL,
  postings  bytea NOT NULL,
  PRIMARY KEY (tenant, bucket, pid, first_idx)
);

CREATE TABLE ${s}.nodes (
  tenant text COLLATE "C" NOT NULL,
  level  smallint NOT NULL,
  start  bigint NOT NULL,
  hashes bytea NOT NULL,
  PRIMARY KEY (tenant, level, start)
);
-- Hashes do not compress; never try.
ALTER TABLE ${s}.nodes ALTER COLUMN hashes SET STORAGE EXTERNAL;

CREATE TABLE ${s}.sessions (
  tenant       text COLLATE "C" NOT NULL,
  id           text COLLATE "C" NOT NULL,
  seq          bigint NOT NULL,
  digest       text NOT NULL,
  sealed       boolean NOT NULL,
  initiator_id text COLLATE "C",
  actor_id     text COLLATE "C",
  objective    text,
  parent       text,
  first_at     text COLLATE "C" NOT NULL,
  last_at      text COLLATE "C" NOT NULL,
  first_index  bigint NOT NULL,
  last_index   bigint NOT NULL,
  entries      bigint NOT NULL,
  last_type    text NOT NULL,
  PRIMARY KEY (tenant, id)
);
CREATE INDEX sessions_recent ON ${s}.sessions (tenant, last_index);
CREATE INDEX sessions_initiator ON ${s}.sessions (tenant, initiator_id, last_index);
CREATE INDEX sessions_actor ON ${s}.sessions (tenant, actor_id, last_index);

CREATE TABLE ${s}.heads (
  tenant text COLLATE "C" PRIMARY KEY,
  size   bigint NOT NULL,
  edge   bytea NOT NULL,
  root   bytea NOT NULL
);

CREATE TABLE ${s}.checkpoints (
  tenant text COLLATE "C" NOT NULL,
  size   bigint NOT NULL,
  root   bytea NOT NULL,
  note   text NOT NULL,
  PRIMARY KEY (tenant, size)
);

CREATE TABLE ${s}.api_keys (
  tenant     text COLLATE "C" NOT NULL,
  id         text COLLATE "C" NOT NULL,
  role       text NOT NULL,
  name       text NOT NULL,
  hash       text COLLATE "C" NOT NULL UNIQUE,
  created_at text NOT NULL,
  revoked_at text,
  PRIMARY KEY (tenant, id)
);
`;

// V2: records management (see V2 in ../sqlite/sqlite-migrations.ts).
const V2 = (s: string) => `
CREATE TABLE ${s}.retention_rules (
  tenant     text COLLATE "C" NOT NULL,
  type       text COLLATE "C" NOT NULL,
  field      text COLLATE "C" NOT NULL,
  days       integer NOT NULL,
  updated_at text NOT NULL,
  PRIMARY KEY (tenant, type, field)
);

CREATE TABLE ${s}.legal_holds (
  tenant     text COLLATE "C" NOT NULL,
  id         text COLLATE "C" NOT NULL,
  kind       text NOT NULL,
  target     text,
  since      text,
  until      text,
  reason     text NOT NULL,
  created_at text COLLATE "C" NOT NULL,
  created_by text NOT NULL,
  lifted_at  text,
  lifted_by  text,
  PRIMARY KEY (tenant, id)
);

CREATE TABLE ${s}.record_settings (
  tenant text COLLATE "C" NOT NULL,
  name   text COLLATE "C" NOT NULL,
  value  text NOT NULL,
  PRIMARY KEY (tenant, name)
);

CREATE TABLE ${s}.record_cursors (
  tenant text COLLATE "C" NOT NULL,
  name   text COLLATE "C" NOT NULL,
  next   bigint NOT NULL,
  PRIMARY KEY (tenant, name)
);

CREATE TABLE ${s}.digest_keys (
  tenant text COLLATE "C" PRIMARY KEY,
  key    bytea NOT NULL
);

CREATE TABLE ${s}.value_digests (
  tenant text COLLATE "C" NOT NULL,
  digest text COLLATE "C" NOT NULL,
  idx    bigint NOT NULL,
  path   text COLLATE "C" NOT NULL,
  PRIMARY KEY (tenant, digest, idx, path)
);
CREATE INDEX value_digests_entry ON ${s}.value_digests (tenant, idx);
`;

// V3: log streams (see V3 in ../sqlite/sqlite-migrations.ts).
const V3 = (s: string) => `
CREATE TABLE ${s}.streams (
  tenant            text COLLATE "C" NOT NULL,
  id                text COLLATE "C" NOT NULL,
  name              text COLLATE "C" NOT NULL,
  kind              text NOT NULL,
  config            text NOT NULL,
  status            text NOT NULL,
  cursor            bigint NOT NULL,
  failures          integer NOT NULL,
  last_error        text,
  last_error_at     text,
  last_delivered_at text,
  created_at        text NOT NULL,
  updated_at        text NOT NULL,
  lease_holder      text,
  lease_until       bigint,
  PRIMARY KEY (tenant, id),
  UNIQUE (tenant, name)
);
`;

// Version 4: what the compliance report's gaps need, kept at write time so that they
// walk their matches, not every call, session opening or session (measured at 1M
// entries; ../sqlite/sqlite-migrations.ts version 5 is the same on SQLite):
// - scope_gap: 1 for a tool.requested that some link of its chain has no scope for
//   (entry-row.ts, uncoveredLink); chain_links: the chain's length on session.opened
//   and session.delegated. Existing rows are filled in by the same rule in SQL
//   (scopeCovers: `*`, the name, `tool:<name>`, or a prefix ending in `*`); `custody
//   audit` recomputes both from the entry bytes.
// - entries_session_grants: a session's approval.granted entries (the unapproved-calls
//   probe); entries_session_ends: a session's ends (the open-sessions count and the
//   acted-after-end probe), which both read among all of a session's entries.
const COVERS = `(s = '*' OR s = e.tool_name OR s = 'tool:' || e.tool_name
  OR (right(s, 1) = '*' AND (starts_with(e.tool_name, left(s, -1)) OR starts_with('tool:' || e.tool_name, left(s, -1)))))`;
const V4 = (s: string) => `
ALTER TABLE ${s}.entries ADD COLUMN scope_gap smallint, ADD COLUMN chain_links integer;
UPDATE ${s}.entries e SET scope_gap = 1
  WHERE e.type = 'tool.requested' AND position('\\x2273636f7065223a'::bytea IN e.entry) > 0
    AND EXISTS (SELECT 1 FROM jsonb_array_elements(convert_from(e.entry, 'UTF8')::jsonb -> 'chain') l
      WHERE jsonb_typeof(l -> 'scope') = 'array'
        AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(l -> 'scope') s WHERE ${COVERS}));
UPDATE ${s}.entries e SET chain_links = jsonb_array_length(convert_from(e.entry, 'UTF8')::jsonb -> 'chain')
  WHERE e.type IN ('session.opened', 'session.delegated') AND strpos(e.principals, '["chain",') > 0
    AND jsonb_typeof(convert_from(e.entry, 'UTF8')::jsonb -> 'chain') = 'array'
    AND jsonb_array_length(convert_from(e.entry, 'UTF8')::jsonb -> 'chain') > 0;
CREATE INDEX entries_scope_gap ON ${s}.entries (tenant, idx) WHERE scope_gap = 1;
CREATE INDEX entries_chain_links ON ${s}.entries (tenant, type, chain_links, idx) WHERE chain_links IS NOT NULL;
CREATE INDEX entries_session_grants ON ${s}.entries (tenant, session_id, cause) WHERE type = 'approval.granted';
CREATE INDEX entries_session_ends ON ${s}.entries (tenant, session_id, idx) WHERE type IN ('session.revoked', 'session.expired', 'session.closed');
`;

/** Every migration, in order. @internal */
export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  { version: 1, description: 'initial schema', sql: V1 },
  { version: 2, description: 'records management: retention, legal holds, keyed digests', sql: V2 },
  { version: 3, description: 'log streams: configuration, cursor, delivery state, lease', sql: V3 },
  { version: 4, description: 'scope gaps, chain lengths, session grants and ends kept at write time (compliance report)', sql: V4 },
];

/** The schema version this code writes and reads. @internal */
export const POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS.length;

/**
 * Creates the schema if needed and applies pending migrations, all in one
 * transaction under `pg_advisory_xact_lock` on the schema (safe to run from
 * several processes at once).
 * @param schema the unquoted schema name (already validated)
 * @throws StoreError `STORE_MIGRATION_FAILED` when the database is newer than this code
 * @internal
 */
export async function migratePostgres(client: pg.PoolClient, schema: string): Promise<void> {
  const q = `"${schema}"`;
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`custody.migrate/${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${q}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${q}.schema_migrations (version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const { rows } = await client.query<{ v: number }>(`SELECT coalesce(max(version), 0)::integer AS v FROM ${q}.schema_migrations`);
    const current = rows[0]?.v ?? 0;
    if (current > POSTGRES_SCHEMA_VERSION) {
      throw new StoreError(
        'STORE_MIGRATION_FAILED',
        `the schema ${schema} is version ${current}, newer than this Custody (version ${POSTGRES_SCHEMA_VERSION}); migrations are forward-only`,
      );
    }
    for (const m of POSTGRES_MIGRATIONS) {
      if (m.version <= current) continue;
      await client.query(m.sql(q));
      await client.query(`INSERT INTO ${q}.schema_migrations (version, description) VALUES ($1, $2)`, [m.version, m.description]);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
