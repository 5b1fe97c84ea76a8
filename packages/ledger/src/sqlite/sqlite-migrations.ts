/**
 * Versioned, forward-only migrations of the SQLite store. The schema version is
 * SQLite's `PRAGMA user_version`, written in the same transaction as the
 * migration it records, so a migration is applied entirely or not at all.
 *
 * Append a migration to change the schema; never edit one that has shipped.
 */
import type BetterSqlite3 from 'better-sqlite3';

import { StoreError } from '../errors.js';

/** One schema migration. @internal */
export interface SqliteMigration {
  /** 1, 2, 3 … with no gap. */
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

// Index choices (each index costs ingest, so every one serves a query):
// entries_idx       readEntries, getEntries, unfiltered pages (log order), joins from principals
// entries_id        findIds, getEntryById, the duplicate-id check of append
// entries_session   sessionEntries and `session` (log order within a session is its seq order)
// entries_tool      `tool`;  entries_type: `type` (exact, and `family.*` as a range)
// entries_decision  `decision`;  entries_trace: `traceId`;  entries_time: `since` / `until`
// principals (PK)   `initiator`, `agent`, `workload`, `principal`, `approver`, in log order (postings)
// sessions_*        listSessions by recency, by initiator, by agent
// the partial indexes of versions 4 and 5 serve the reports (each says which)
//
// principals: an inverted index, postings rows rather than one row per (entry,
// principal). For each batch and each principal id in it, one row holds the
// entries it appears in and its roles there (bits: 1 initiator, 2 actor, 4 chain,
// 8 approver, 16 workload), so an agent that is actor and chain link of an entry
// is listed once. Rows are keyed by bucket = idx / 4096 first, so a batch writes
// into the pages of one bucket. Measured at 200k entries against one row per
// (principal, entry) keyed by principal: that layout wrote twice the WAL per entry
// and halved ingest; postings cost about 4% over no identity index at all. A
// query walks buckets in log order, intersects the named principals' postings,
// and stops once its page is full. The entry's PrincipalRows themselves are read
// back from entries.principals (JSON).
//
// nodes: tree nodes in runs: a row holds the hashes of nodes start, start+1, …
// of one level (at most 256; a row starts at a multiple of 256 or where a batch's
// nodes start), so a batch of 500 entries writes about a dozen rows, not ~1000.
// Rows are only ever inserted; the append checks that each level's run starts
// where that level's stored nodes end. A node is read from the last run of its
// level starting at or before it.
const V1 = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE entries (
  tenant       TEXT    NOT NULL,
  idx          INTEGER NOT NULL,
  id           TEXT    NOT NULL,
  type         TEXT    NOT NULL,
  time         TEXT    NOT NULL,
  time_key     TEXT    NOT NULL,
  recorded_at  TEXT    NOT NULL,
  entry        BLOB    NOT NULL,
  disclosures  TEXT    NOT NULL,
  digest       TEXT    NOT NULL,
  session_id   TEXT,
  seq          INTEGER,
  initiator_id TEXT,
  actor_id     TEXT    NOT NULL,
  tool_name    TEXT,
  decision     TEXT,
  cause        TEXT,
  trace_id     TEXT,
  principals   TEXT    NOT NULL
);
CREATE UNIQUE INDEX entries_idx ON entries (tenant, idx);
CREATE UNIQUE INDEX entries_id ON entries (tenant, id);
CREATE INDEX entries_session ON entries (tenant, session_id, idx) WHERE session_id IS NOT NULL;
CREATE INDEX entries_tool ON entries (tenant, tool_name, idx) WHERE tool_name IS NOT NULL;
CREATE INDEX entries_type ON entries (tenant, type, idx);
CREATE INDEX entries_decision ON entries (tenant, decision, idx) WHERE decision IS NOT NULL;
CREATE INDEX entries_trace ON entries (tenant, trace_id, idx) WHERE trace_id IS NOT NULL;
CREATE INDEX entries_time ON entries (tenant, time_key, idx);

CREATE TABLE principals (
  tenant    TEXT    NOT NULL,
  bucket    INTEGER NOT NULL,
  pid       TEXT    NOT NULL,
  first_idx INTEGER NOT NULL,
  ptype     TEXT    NOT NULL,
  postings  BLOB    NOT NULL,
  PRIMARY KEY (tenant, bucket, pid, first_idx)
) WITHOUT ROWID;

CREATE TABLE nodes (
  tenant TEXT    NOT NULL,
  level  INTEGER NOT NULL,
  start  INTEGER NOT NULL,
  hashes BLOB    NOT NULL,
  PRIMARY KEY (tenant, level, start)
);

CREATE TABLE sessions (
  tenant       TEXT    NOT NULL,
  id           TEXT    NOT NULL,
  seq          INTEGER NOT NULL,
  digest       TEXT    NOT NULL,
  sealed       INTEGER NOT NULL,
  initiator_id TEXT,
  actor_id     TEXT,
  objective    TEXT,
  -- The objective case-folded (JavaScript toLowerCase), for the substring filter:
  -- SQLite's lower() and LIKE fold ASCII only.
  objective_fold TEXT,
  parent       TEXT,
  first_at     TEXT    NOT NULL,
  last_at      TEXT    NOT NULL,
  first_index  INTEGER NOT NULL,
  last_index   INTEGER NOT NULL,
  entries      INTEGER NOT NULL,
  last_type    TEXT    NOT NULL,
  PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX sessions_recent ON sessions (tenant, last_index);
CREATE INDEX sessions_initiator ON sessions (tenant, initiator_id, last_index);
CREATE INDEX sessions_actor ON sessions (tenant, actor_id, last_index);

CREATE TABLE heads (
  tenant TEXT    PRIMARY KEY,
  size   INTEGER NOT NULL,
  edge   BLOB    NOT NULL,
  root   BLOB    NOT NULL
) WITHOUT ROWID;

CREATE TABLE checkpoints (
  tenant TEXT    NOT NULL,
  size   INTEGER NOT NULL,
  root   BLOB    NOT NULL,
  note   TEXT    NOT NULL,
  PRIMARY KEY (tenant, size)
) WITHOUT ROWID;

CREATE TABLE api_keys (
  tenant     TEXT NOT NULL,
  id         TEXT NOT NULL,
  role       TEXT NOT NULL,
  name       TEXT NOT NULL,
  hash       TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL,
  revoked_at TEXT,
  PRIMARY KEY (tenant, id)
);
`;

// V2: records management (../records-store.ts, docs/records.md). Retention rules and
// legal holds are few rows per tenant; value_digests is the keyed-digest index
// (HMAC of chosen values, never the values), read by digest and deleted by entry.
const V2 = `
CREATE TABLE retention_rules (
  tenant     TEXT    NOT NULL,
  type       TEXT    NOT NULL,
  field      TEXT    NOT NULL,
  days       INTEGER NOT NULL,
  updated_at TEXT    NOT NULL,
  PRIMARY KEY (tenant, type, field)
) WITHOUT ROWID;

CREATE TABLE legal_holds (
  tenant     TEXT NOT NULL,
  id         TEXT NOT NULL,
  kind       TEXT NOT NULL,
  target     TEXT,
  since      TEXT,
  until      TEXT,
  reason     TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  lifted_at  TEXT,
  lifted_by  TEXT,
  PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

CREATE TABLE record_settings (
  tenant TEXT NOT NULL,
  name   TEXT NOT NULL,
  value  TEXT NOT NULL,
  PRIMARY KEY (tenant, name)
) WITHOUT ROWID;

CREATE TABLE record_cursors (
  tenant TEXT    NOT NULL,
  name   TEXT    NOT NULL,
  next   INTEGER NOT NULL,
  PRIMARY KEY (tenant, name)
) WITHOUT ROWID;

CREATE TABLE digest_keys (
  tenant TEXT PRIMARY KEY,
  key    BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE value_digests (
  tenant TEXT    NOT NULL,
  digest TEXT    NOT NULL,
  idx    INTEGER NOT NULL,
  path   TEXT    NOT NULL,
  PRIMARY KEY (tenant, digest, idx, path)
) WITHOUT ROWID;
CREATE INDEX value_digests_entry ON value_digests (tenant, idx);
`;

// Version 3: log streams (docs/records.md, "Streaming").
const V3 = `
CREATE TABLE streams (
  tenant            TEXT    NOT NULL,
  id                TEXT    NOT NULL,
  name              TEXT    NOT NULL,
  kind              TEXT    NOT NULL,
  config            TEXT    NOT NULL,
  status            TEXT    NOT NULL,
  cursor            INTEGER NOT NULL,
  failures          INTEGER NOT NULL,
  last_error        TEXT,
  last_error_at     TEXT,
  last_delivered_at TEXT,
  created_at        TEXT    NOT NULL,
  updated_at        TEXT    NOT NULL,
  lease_holder      TEXT,
  lease_until       INTEGER,
  PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX streams_name ON streams (tenant, name);
`;

// Version 4: two small partial indexes over session ends (about one entry in twenty),
// so the acted-after-end report walks the ends and probes each session's earlier
// ends without reading entry rows (../reports.ts).
const V4 = `
CREATE INDEX entries_end_walk ON entries (tenant, type, idx, session_id, time_key)
  WHERE type IN ('session.revoked', 'session.expired', 'session.closed');
CREATE INDEX entries_session_ends ON entries (tenant, session_id, idx)
  WHERE type IN ('session.revoked', 'session.expired', 'session.closed');
`;

// Version 5: what the compliance report's gaps need, kept at write time so that they
// walk their matches, not every call or session opening (each measured at 1M entries):
// - scope_gap: 1 for a tool.requested that some link of its chain has no scope for
//   (entry-row.ts, uncoveredLink); the out-of-scope report read every call's bytes.
// - chain_links: the chain's length on session.opened and session.delegated; the
//   deep-delegation report parsed every opening that has a chain.
// - entries_session_grants: the approval.granted entries of a session, which the
//   unapproved-calls probe read among all of that session's entries.
// The existing rows are filled in here by the same rule in SQL (scopeCovers in
// entry-row.ts: `*`, the name, `tool:<name>`, or a prefix ending in `*`); `custody
// audit` recomputes both columns from the entry bytes and names any that differ.
const COVERS = `(s.value = '*' OR s.value = e.tool_name OR s.value = 'tool:' || e.tool_name
  OR (substr(s.value, -1) = '*' AND (substr(e.tool_name, 1, length(s.value) - 1) = substr(s.value, 1, length(s.value) - 1)
    OR substr('tool:' || e.tool_name, 1, length(s.value) - 1) = substr(s.value, 1, length(s.value) - 1))))`;
const V5 = `
ALTER TABLE entries ADD COLUMN scope_gap INTEGER;
ALTER TABLE entries ADD COLUMN chain_links INTEGER;
UPDATE entries AS e SET scope_gap = 1
  WHERE e.type = 'tool.requested' AND instr(e.entry, CAST('"scope":' AS BLOB)) > 0
    AND EXISTS (SELECT 1 FROM json_each(CAST(e.entry AS TEXT), '$.chain') l
      WHERE json_type(l.value, '$.scope') = 'array'
        AND NOT EXISTS (SELECT 1 FROM json_each(l.value, '$.scope') s WHERE ${COVERS}));
UPDATE entries SET chain_links = json_array_length(CAST(entry AS TEXT), '$.chain')
  WHERE type IN ('session.opened', 'session.delegated') AND instr(principals, '["chain",') > 0
    AND json_array_length(CAST(entry AS TEXT), '$.chain') > 0;
CREATE INDEX entries_scope_gap ON entries (tenant, idx) WHERE scope_gap = 1;
CREATE INDEX entries_chain_links ON entries (tenant, type, chain_links, idx) WHERE chain_links IS NOT NULL;
CREATE INDEX entries_session_grants ON entries (tenant, session_id, cause) WHERE type = 'approval.granted';
`;

/** Every migration, in order. @internal */
export const SQLITE_MIGRATIONS: readonly SqliteMigration[] = [
  { version: 1, description: 'initial schema', sql: V1 },
  { version: 2, description: 'records management: retention, legal holds, keyed digests', sql: V2 },
  { version: 3, description: 'log streams: configuration, cursor, delivery state, lease', sql: V3 },
  { version: 4, description: 'partial indexes over session ends (acted-after-end report)', sql: V4 },
  { version: 5, description: 'scope gaps, chain lengths and session grants kept at write time (compliance report)', sql: V5 },
];

/** The schema version this code writes and reads. @internal */
export const SQLITE_SCHEMA_VERSION = SQLITE_MIGRATIONS.length;

/** The database's schema version (0 for a new database). @internal */
export function sqliteSchemaVersion(db: BetterSqlite3.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/**
 * Applies pending migrations, each in its own IMMEDIATE transaction (so a
 * second process migrating at the same time waits, then finds nothing to do).
 * @throws StoreError `STORE_MIGRATION_FAILED` when the database is newer than this code
 * @internal
 */
export function migrateSqlite(db: BetterSqlite3.Database): void {
  for (const m of SQLITE_MIGRATIONS) {
    db.transaction(() => {
      const current = sqliteSchemaVersion(db);
      if (current > SQLITE_SCHEMA_VERSION) {
        throw new StoreError(
          'STORE_MIGRATION_FAILED',
          `the database schema is version ${current}, newer than this Custody (version ${SQLITE_SCHEMA_VERSION}); migrations are forward-only`,
        );
      }
      if (current >= m.version) return;
      if (current !== m.version - 1) {
        throw new StoreError('STORE_MIGRATION_FAILED', `cannot apply migration ${m.version} to schema version ${current}`);
      }
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
}
