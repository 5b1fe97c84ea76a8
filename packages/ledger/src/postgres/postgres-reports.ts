/**
 * The report selections of `PostgresStore` (see ../reports.ts for what each means;
 * ../sqlite/sqlite-reports.ts is the same logic on SQLite). Every selection walks
 * an index the store already maintains, newest first, and stops at `limit` rows.
 * @internal
 */
import type pg from 'pg';

import { AFTER_END_ALLOWED, APPROVALS_SERVICE_ID, type PrincipalEntry, type ReportRange, SESSION_END_TYPES, SESSION_ENDED_STATES, type StoreReports, type TopPrincipal, type TypeCount, sessionPath } from '../reports.js';
import { DELEGATION_TYPES } from '../entry-row.js';
import { BUCKET, clockKey, decodePostings, filterTimeKey, ROLE_BIT } from '../store-shared.js';

/** Runs one statement the way the store does (maps driver errors). */
export type PostgresQuery = <R extends pg.QueryResultRow>(sql: string, params: unknown[]) => Promise<pg.QueryResult<R>>;

type Int8 = string | number;

const list = (xs: readonly string[]) => xs.map((x) => `'${x}'`).join(', ');

/** Appends the `time` window of `alias` (entries' time_key) to `params`, returning the SQL. */
function timeWhere(alias: string, range: ReportRange, params: unknown[]): string {
  let sql = '';
  if (range.since !== undefined) {
    params.push(filterTimeKey(range.since, 'since'));
    sql += ` AND ${alias}.time_key >= $${params.length}`;
  }
  if (range.until !== undefined) {
    params.push(filterTimeKey(range.until, 'until'));
    sql += ` AND ${alias}.time_key < $${params.length}`;
  }
  return sql;
}

/** @internal */
export class PostgresReports implements StoreReports {
  readonly #q: string;
  readonly #query: PostgresQuery;

  /**
   * @param q the quoted schema name
   * @param query runs a statement the way the store does
   */
  constructor(q: string, query: PostgresQuery) {
    this.#q = q;
    this.#query = query;
  }

  async #indexes(sql: string, params: unknown[]): Promise<number[]> {
    return (await this.#query<{ idx: Int8 }>(sql, params)).rows.map((r) => Number(r.idx));
  }

  async unapprovedCalls(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]> {
    const q = this.#q;
    const params: unknown[] = [tenant, before ?? Number.MAX_SAFE_INTEGER];
    const time = timeWhere('d', range, params);
    params.push(limit);
    // A human approval names in `cause` the call, the decision, or the approval.requested
    // that names either (as the server's approvals write it). entries.principals is
    // encodePrincipals' JSON ([[role, type, id], …], no spaces).
    const sql = `SELECT d.idx FROM ${q}.entries d
      WHERE d.tenant = $1 AND d.decision = 'approval_required' AND d.type = 'policy.decided' AND d.idx < $2${time}
        AND NOT EXISTS (SELECT 1 FROM ${q}.entries g
          WHERE g.tenant = d.tenant AND g.session_id = d.session_id AND g.type = 'approval.granted'
            AND strpos(g.principals, '["approver","human",') > 0
            AND (g.cause = d.cause OR g.cause = d.id
              OR EXISTS (SELECT 1 FROM ${q}.entries r
                WHERE r.tenant = g.tenant AND r.id = g.cause AND r.session_id = g.session_id AND r.type = 'approval.requested'
                  AND (r.cause = d.cause OR r.cause = d.id))))
      ORDER BY d.idx DESC LIMIT $${params.length}`;
    return this.#indexes(sql, params);
  }

  async deniedCalls(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]> {
    const params: unknown[] = [tenant, before ?? Number.MAX_SAFE_INTEGER];
    const time = timeWhere('d', range, params);
    params.push(limit);
    const sql = `SELECT d.idx FROM ${this.#q}.entries d
      WHERE d.tenant = $1 AND d.decision = 'deny' AND d.type = 'policy.decided' AND d.idx < $2${time}
      ORDER BY d.idx DESC LIMIT $${params.length}`;
    return this.#indexes(sql, params);
  }

  async outOfScopeCalls(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]> {
    const params: unknown[] = [tenant, before ?? Number.MAX_SAFE_INTEGER];
    const time = timeWhere('e', range, params);
    params.push(limit);
    // scope_gap is kept at write time (entry-row.ts, uncoveredLink): only the gaps are walked.
    const sql = `SELECT e.idx FROM ${this.#q}.entries e
      WHERE e.tenant = $1 AND e.scope_gap = 1 AND e.idx < $2${time}
      ORDER BY e.idx DESC LIMIT $${params.length}`;
    return this.#indexes(sql, params);
  }

  async actedAfterEnd(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]> {
    const q = this.#q;
    // A refusal (isRefusal: a tool.failed with a cause and data.refused true) is not acting;
    // the CASE parses only such candidates' bytes.
    const refusal = `(CASE WHEN a.type = 'tool.failed' AND a.cause IS NOT NULL THEN convert_from(a.entry, 'UTF8')::jsonb @> '{"data":{"refused":true}}'::jsonb ELSE false END)`;
    // Custody's bookkeeping of something recorded before the end (isEndBookkeeping): the
    // gateway's cancellation of a call in flight, and the approvals service expiring an
    // approval because its session ended. The cause is looked up by id in the same session.
    const causeBefore = (type: string) =>
      `EXISTS (SELECT 1 FROM ${q}.entries c WHERE c.tenant = a.tenant AND c.id = a.cause AND c.session_id = a.session_id AND c.type = '${type}' AND c.idx < t.idx)`;
    // coalesce: a missing field makes the test NULL, and NOT NULL would drop the entry.
    const cancellation = `coalesce(CASE WHEN a.type = 'tool.failed' AND a.cause IS NOT NULL
      THEN convert_from(a.entry, 'UTF8')::jsonb @> '{"data":{"cancelled":true}}'::jsonb AND ${causeBefore('tool.requested')} ELSE false END, false)`;
    const expiry = `coalesce(CASE WHEN a.type = 'approval.expired' AND a.actor_id = '${APPROVALS_SERVICE_ID}' AND a.cause IS NOT NULL
      THEN convert_from(a.entry, 'UTF8')::jsonb @> '{"actor":{"type":"service"}}'::jsonb
        AND jsonb_typeof(convert_from(a.entry, 'UTF8')::jsonb -> 'data' -> 'sessionEnded') = 'string'
        AND convert_from(a.entry, 'UTF8')::jsonb -> 'data' ->> 'sessionEnded' IN (${list(SESSION_ENDED_STATES)})
        AND ${causeBefore('approval.requested')}
      ELSE false END, false)`;
    const lists = await Promise.all(
      SESSION_END_TYPES.map((type) => {
        const params: unknown[] = [tenant, type, before ?? Number.MAX_SAFE_INTEGER];
        const time = timeWhere('t', range, params);
        params.push(limit);
        const sql = `SELECT t.idx FROM ${q}.entries t
          JOIN ${q}.sessions s ON s.tenant = t.tenant AND s.id = t.session_id
          WHERE t.tenant = $1 AND t.type = $2 AND t.idx < $3${time} AND s.last_index > t.idx
            AND NOT EXISTS (SELECT 1 FROM ${q}.entries p
              WHERE p.tenant = t.tenant AND p.session_id = t.session_id AND p.idx < t.idx AND p.type IN (${list(SESSION_END_TYPES)}))
            AND EXISTS (SELECT 1 FROM ${q}.entries a
              WHERE a.tenant = t.tenant AND a.session_id = t.session_id AND a.idx > t.idx AND a.type NOT IN (${list(AFTER_END_ALLOWED)}) AND NOT ${refusal} AND NOT ${cancellation} AND NOT ${expiry})
          ORDER BY t.idx DESC LIMIT $${params.length}`;
        return this.#indexes(sql, params);
      }),
    );
    return [...new Set(lists.flat())].sort((a, b) => b - a).slice(0, limit);
  }

  async deepDelegation(tenant: string, links: number, range: ReportRange, before: number | undefined, limit: number): Promise<number[]> {
    const lists = await Promise.all(
      DELEGATION_TYPES.map((type) => {
        const params: unknown[] = [tenant, type, before ?? Number.MAX_SAFE_INTEGER, links];
        const time = timeWhere('e', range, params);
        params.push(limit);
        const sql = `SELECT e.idx FROM ${this.#q}.entries e
          WHERE e.tenant = $1 AND e.type = $2 AND e.idx < $3${time}
            AND e.chain_links > $4
          ORDER BY e.idx DESC LIMIT $${params.length}`;
        return this.#indexes(sql, params);
      }),
    );
    return [...new Set(lists.flat())].sort((a, b) => b - a).slice(0, limit);
  }

  async principalEntries(tenant: string, principal: string, range: ReportRange): Promise<PrincipalEntry[]> {
    const q = this.#q;
    const head = (await this.#query<{ size: Int8 }>(`SELECT size FROM ${q}.heads WHERE tenant = $1`, [tenant])).rows[0];
    const size = head === undefined ? 0 : Number(head.size);
    if (size === 0) return [];
    const buckets = Array.from({ length: Math.floor((size - 1) / BUCKET) + 1 }, (_, b) => b);
    const { rows: postings } = await this.#query<{ bucket: Int8; first_idx: Int8; postings: Uint8Array }>(
      `SELECT bucket, first_idx, postings FROM ${q}.principals WHERE tenant = $1 AND bucket = ANY($2::bigint[]) AND pid = $3 ORDER BY bucket, first_idx`,
      [tenant, buckets, principal],
    );
    const roles = new Map<number, number>();
    for (const bit of Object.values(ROLE_BIT)) for (const i of decodePostings(postings, bit)) roles.set(i, (roles.get(i) ?? 0) | bit);
    const indexes = [...roles.keys()].sort((a, b) => a - b);
    if (indexes.length === 0) return [];
    const params: unknown[] = [tenant, indexes];
    const time = timeWhere('e', range, params);
    const { rows } = await this.#query<{ idx: Int8; type: string; tool_name: string | null; decision: string | null; session_id: string | null }>(
      // One primary-key probe per index (LATERAL … LIMIT 1): with `idx = ANY(…)` or a plain join on a
      // few thousand indexes the planner scans and sorts the whole tenant instead (~1 s at 1M entries).
      // The window is tested outside the probe: inside, the planner walks the time index per row.
      `SELECT e.idx, e.type, e.tool_name, e.decision, e.session_id FROM unnest($2::bigint[]) AS w(idx)
        CROSS JOIN LATERAL (SELECT e.idx, e.type, e.tool_name, e.decision, e.session_id, e.time_key FROM ${q}.entries e
          WHERE e.tenant = $1 AND e.idx = w.idx LIMIT 1) AS e WHERE true${time} ORDER BY e.idx`,
      params,
    );
    return rows.map((r) => ({
      index: Number(r.idx),
      type: r.type,
      roles: roles.get(Number(r.idx)) ?? 0,
      ...(r.tool_name !== null ? { tool: r.tool_name } : {}),
      ...(r.decision !== null ? { decision: r.decision } : {}),
      ...(r.session_id !== null ? { session: r.session_id } : {}),
    }));
  }

  async topPrincipals(tenant: string, range: ReportRange, limit: number): Promise<TopPrincipal[]> {
    const rows: TopPrincipal[] = [];
    for (const [column, role] of [
      ['initiator_id', 'initiator'],
      ['actor_id', 'agent'],
    ] as const) {
      const params: unknown[] = [tenant];
      let cond = '';
      if (range.since !== undefined) {
        params.push(clockKey(range.since, 'since'));
        cond += ` AND s.last_at >= $${params.length}`;
      }
      if (range.until !== undefined) {
        params.push(clockKey(range.until, 'until'));
        cond += ` AND s.first_at < $${params.length}`;
      }
      params.push(limit);
      const sql = `SELECT s.${column} AS principal, count(*) AS sessions, sum(s.entries) AS entries,
          (array_agg(s.id ORDER BY s.last_index DESC))[1] AS last_session
        FROM ${this.#q}.sessions s WHERE s.tenant = $1 AND s.${column} IS NOT NULL${cond}
        GROUP BY s.${column} ORDER BY sessions DESC, principal LIMIT $${params.length}`;
      const found = await this.#query<{ principal: string; sessions: Int8; entries: Int8; last_session: string }>(sql, params);
      for (const r of found.rows) {
        rows.push({
          principal: r.principal,
          role,
          sessions: Number(r.sessions),
          entries: Number(r.entries),
          lastSession: r.last_session,
          lastSessionPath: sessionPath(r.last_session),
        });
      }
    }
    return rows;
  }

  async typeCounts(tenant: string, range: ReportRange): Promise<TypeCount[]> {
    const q = this.#q;
    const params: unknown[] = [tenant];
    const time = timeWhere('e', range, params);
    const byType = await this.#query<{ type: string; n: Int8 }>(`SELECT e.type, count(*) AS n FROM ${q}.entries e WHERE e.tenant = $1${time} GROUP BY e.type`, params);
    const byDecision = await this.#query<{ decision: string; n: Int8 }>(
      `SELECT e.decision, count(*) AS n FROM ${q}.entries e WHERE e.tenant = $1 AND e.decision IS NOT NULL${time} GROUP BY e.decision`,
      params,
    );
    return [
      ...byType.rows.map((r) => ({ type: r.type, count: Number(r.n) })),
      ...byDecision.rows.map((r) => ({ type: 'policy.decided', decision: r.decision, count: Number(r.n) })),
    ];
  }

  async sessionCounts(tenant: string, range: ReportRange): Promise<{ sessions: number; sealed: number; open: number }> {
    const params: unknown[] = [tenant];
    let cond = '';
    if (range.since !== undefined) {
      params.push(clockKey(range.since, 'since'));
      cond += ` AND s.last_at >= $${params.length}`;
    }
    if (range.until !== undefined) {
      params.push(clockKey(range.until, 'until'));
      cond += ` AND s.first_at < $${params.length}`;
    }
    const { rows } = await this.#query<{ sessions: Int8; sealed: Int8; open: Int8 }>(
      `SELECT count(*) AS sessions, count(*) FILTER (WHERE s.sealed) AS sealed,
        count(*) FILTER (WHERE NOT s.sealed AND s.last_type NOT IN (${list(AFTER_END_ALLOWED)})
          AND NOT EXISTS (SELECT 1 FROM ${this.#q}.entries p WHERE p.tenant = s.tenant AND p.session_id = s.id AND p.type IN (${list(SESSION_END_TYPES)}))) AS open
        FROM ${this.#q}.sessions s WHERE s.tenant = $1${cond}`,
      params,
    );
    const r = rows[0]!;
    return { sessions: Number(r.sessions), sealed: Number(r.sealed), open: Number(r.open) };
  }
}
