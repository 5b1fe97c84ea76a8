/**
 * The report selections of `SqliteStore` (see ../reports.ts for what each means).
 * Every selection walks an index the store already maintains, newest first, and
 * stops once it has `limit` rows: entries_decision (unapproved and denied calls),
 * entries_scope_gap (out-of-scope calls), entries_end_walk (session ends),
 * entries_chain_links (deep delegation), entries_session, entries_session_grants and
 * entries_session_ends (the per-call and per-session probes), the principals postings
 * (a principal's activity) and sessions (top principals).
 * @internal
 */

import { AFTER_END_ALLOWED, APPROVALS_SERVICE_ID, type PrincipalEntry, type ReportRange, SESSION_END_TYPES, SESSION_ENDED_STATES, type StoreReports, type TopPrincipal, type TypeCount, sessionPath } from '../reports.js';
import { DELEGATION_TYPES } from '../entry-row.js';
import { BUCKET, clockKey, decodePostings, filterTimeKey, ROLE_BIT } from '../store-shared.js';
import { SqlitePart } from './sqlite-part.js';

/** Indexes fetched per statement when reading a principal's entries. */
const CHUNK = 2000;

const list = (xs: readonly string[]) => xs.map((x) => `'${x}'`).join(', ');

/** The `time` window of `alias` as SQL and parameters (entries' time_key). */
function timeWhere(alias: string, range: ReportRange): { sql: string; params: string[] } {
  let sql = '';
  const params: string[] = [];
  if (range.since !== undefined) {
    sql += ` AND ${alias}.time_key >= ?`;
    params.push(filterTimeKey(range.since, 'since'));
  }
  if (range.until !== undefined) {
    sql += ` AND ${alias}.time_key < ?`;
    params.push(filterTimeKey(range.until, 'until'));
  }
  return { sql, params };
}

/** @internal */
export class SqliteReports extends SqlitePart implements StoreReports {
  #indexes(sql: string, params: unknown[]): number[] {
    return this.run(() => (this.stmt(sql).all(...params) as { idx: number }[]).map((r) => r.idx));
  }

  async unapprovedCalls(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]> {
    const t = timeWhere('d', range);
    // A human approval: an approval.granted whose approver is a human, naming in `cause` the
    // call, the decision, or (as the server's approvals write it) the approval.requested that
    // names either. entries.principals is encodePrincipals' JSON ([[role, type, id], …], no
    // spaces), so the pair is a fixed substring.
    const sql = `SELECT d.idx FROM entries d INDEXED BY entries_decision
      WHERE d.tenant = ? AND d.decision = 'approval_required' AND d.type = 'policy.decided' AND d.idx < ?${t.sql}
        AND NOT EXISTS (SELECT 1 FROM entries g INDEXED BY entries_session_grants
          WHERE g.tenant = d.tenant AND g.session_id = d.session_id AND g.type = 'approval.granted'
            AND instr(g.principals, '["approver","human",') > 0
            AND (g.cause = d.cause OR g.cause = d.id
              OR EXISTS (SELECT 1 FROM entries r INDEXED BY entries_id
                WHERE r.tenant = g.tenant AND r.id = g.cause AND r.session_id = g.session_id AND r.type = 'approval.requested'
                  AND (r.cause = d.cause OR r.cause = d.id))))
      ORDER BY d.idx DESC LIMIT ?`;
    return this.#indexes(sql, [tenant, before ?? Number.MAX_SAFE_INTEGER, ...t.params, limit]);
  }

  async deniedCalls(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]> {
    const t = timeWhere('d', range);
    const sql = `SELECT d.idx FROM entries d INDEXED BY entries_decision
      WHERE d.tenant = ? AND d.decision = 'deny' AND d.type = 'policy.decided' AND d.idx < ?${t.sql}
      ORDER BY d.idx DESC LIMIT ?`;
    return this.#indexes(sql, [tenant, before ?? Number.MAX_SAFE_INTEGER, ...t.params, limit]);
  }

  async outOfScopeCalls(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]> {
    const t = timeWhere('e', range);
    // scope_gap is kept at write time (entry-row.ts, uncoveredLink): only the gaps are walked.
    const sql = `SELECT e.idx FROM entries e INDEXED BY entries_scope_gap
      WHERE e.tenant = ? AND e.scope_gap = 1 AND e.idx < ?${t.sql}
      ORDER BY e.idx DESC LIMIT ?`;
    return this.#indexes(sql, [tenant, before ?? Number.MAX_SAFE_INTEGER, ...t.params, limit]);
  }

  async actedAfterEnd(tenant: string, range: ReportRange, before: number | undefined, limit: number): Promise<number[]> {
    const t = timeWhere('t', range);
    // One walk per end type (an IN list would sort every match before the LIMIT), over
    // the partial indexes of migration 4, whose WHERE needs the type as a literal to
    // apply. The session row's last_index is the cheap test; the probes run only for
    // sessions that go on after this end. A refusal (isRefusal: a tool.failed with a cause
    // and data.refused true) is not acting; only such candidates' bytes are parsed.
    const refusal = `(a.type = 'tool.failed' AND a.cause IS NOT NULL AND json_type(CAST(a.entry AS TEXT), '$.data.refused') IS 'true')`;
    // Custody's bookkeeping of something recorded before the end (isEndBookkeeping): the
    // gateway's cancellation of a call in flight, and the approvals service expiring an
    // approval because its session ended. The cause is looked up by id in the same session.
    const causeBefore = (type: string) =>
      `EXISTS (SELECT 1 FROM entries c INDEXED BY entries_id WHERE c.tenant = a.tenant AND c.id = a.cause AND c.session_id = a.session_id AND c.type = '${type}' AND c.idx < t.idx)`;
    const cancellation = `(a.type = 'tool.failed' AND a.cause IS NOT NULL AND json_type(CAST(a.entry AS TEXT), '$.data.cancelled') IS 'true' AND ${causeBefore('tool.requested')})`;
    const expiry = `(a.type = 'approval.expired' AND a.actor_id = '${APPROVALS_SERVICE_ID}' AND a.cause IS NOT NULL
      AND json_extract(CAST(a.entry AS TEXT), '$.actor.type') IS 'service'
      AND json_type(CAST(a.entry AS TEXT), '$.data.sessionEnded') IS 'text' AND json_extract(CAST(a.entry AS TEXT), '$.data.sessionEnded') IN (${list(SESSION_ENDED_STATES)})
      AND ${causeBefore('approval.requested')})`;
    const lists = SESSION_END_TYPES.map((type) => {
      const sql = `SELECT t.idx FROM entries t INDEXED BY entries_end_walk
        CROSS JOIN sessions s ON s.tenant = t.tenant AND s.id = t.session_id
        WHERE t.tenant = ? AND t.type = '${type}' AND t.type IN (${list(SESSION_END_TYPES)}) AND t.idx < ?${t.sql} AND s.last_index > t.idx
          AND NOT EXISTS (SELECT 1 FROM entries p INDEXED BY entries_session_ends
            WHERE p.tenant = t.tenant AND p.session_id = t.session_id AND p.idx < t.idx AND p.type IN (${list(SESSION_END_TYPES)}))
          AND EXISTS (SELECT 1 FROM entries a INDEXED BY entries_session
            WHERE a.tenant = t.tenant AND a.session_id = t.session_id AND a.idx > t.idx AND a.type NOT IN (${list(AFTER_END_ALLOWED)}) AND NOT ${refusal} AND NOT ${cancellation} AND NOT ${expiry})
        ORDER BY t.idx DESC LIMIT ?`;
      return this.#indexes(sql, [tenant, before ?? Number.MAX_SAFE_INTEGER, ...t.params, limit]);
    });
    return [...new Set(lists.flat())].sort((a, b) => b - a).slice(0, limit);
  }

  async deepDelegation(tenant: string, links: number, range: ReportRange, before: number | undefined, limit: number): Promise<number[]> {
    const t = timeWhere('e', range);
    // chain_links is kept at write time (entry-row.ts): the walk reads only longer chains.
    const sql = `SELECT e.idx FROM entries e INDEXED BY entries_chain_links
      WHERE e.tenant = ? AND e.type = ? AND e.chain_links > ? AND e.idx < ?${t.sql}
      ORDER BY e.idx DESC LIMIT ?`;
    const lists = DELEGATION_TYPES.map((type) => this.#indexes(sql, [tenant, type, links, before ?? Number.MAX_SAFE_INTEGER, ...t.params, limit]));
    return [...new Set(lists.flat())].sort((a, b) => b - a).slice(0, limit);
  }

  async principalEntries(tenant: string, principal: string, range: ReportRange): Promise<PrincipalEntry[]> {
    return this.run(() => {
      const size = (this.stmt('SELECT size FROM heads WHERE tenant = ?').get(tenant) as { size: number } | undefined)?.size ?? 0;
      if (size === 0) return [];
      const postings = this.stmt('SELECT first_idx, postings FROM principals WHERE tenant = ? AND bucket = ? AND pid = ? ORDER BY first_idx');
      const roles = new Map<number, number>();
      for (let b = 0; b <= Math.floor((size - 1) / BUCKET); b++) {
        const rows = postings.all(tenant, b, principal) as { first_idx: number; postings: Uint8Array }[];
        if (rows.length === 0) continue;
        for (const bit of Object.values(ROLE_BIT)) for (const i of decodePostings(rows, bit)) roles.set(i, (roles.get(i) ?? 0) | bit);
      }
      const indexes = [...roles.keys()].sort((a, b) => a - b);
      const t = timeWhere('e', range);
      const sql = `SELECT e.idx, e.type, e.tool_name, e.decision, e.session_id FROM json_each(?) c
        CROSS JOIN entries e INDEXED BY entries_idx ON e.tenant = ? AND e.idx = c.value
        WHERE 1 = 1${t.sql} ORDER BY e.idx`;
      const out: PrincipalEntry[] = [];
      for (let at = 0; at < indexes.length; at += CHUNK) {
        const rows = this.stmt(sql).all(JSON.stringify(indexes.slice(at, at + CHUNK)), tenant, ...t.params) as {
          idx: number;
          type: string;
          tool_name: string | null;
          decision: string | null;
          session_id: string | null;
        }[];
        for (const r of rows) {
          out.push({
            index: r.idx,
            type: r.type,
            roles: roles.get(r.idx) ?? 0,
            ...(r.tool_name !== null ? { tool: r.tool_name } : {}),
            ...(r.decision !== null ? { decision: r.decision } : {}),
            ...(r.session_id !== null ? { session: r.session_id } : {}),
          });
        }
      }
      return out;
    });
  }

  async topPrincipals(tenant: string, range: ReportRange, limit: number): Promise<TopPrincipal[]> {
    const where: string[] = [];
    const params: string[] = [];
    if (range.since !== undefined) {
      where.push('s.last_at >= ?');
      params.push(clockKey(range.since, 'since'));
    }
    if (range.until !== undefined) {
      where.push('s.first_at < ?');
      params.push(clockKey(range.until, 'until'));
    }
    const cond = where.map((w) => ` AND ${w}`).join('');
    const rows: TopPrincipal[] = [];
    for (const [column, role] of [
      ['initiator_id', 'initiator'],
      ['actor_id', 'agent'],
    ] as const) {
      // SQLite returns the bare column s.id from the row holding max(s.last_index).
      const sql = `SELECT s.${column} AS principal, count(*) AS sessions, sum(s.entries) AS entries, max(s.last_index) AS last_index, s.id AS last_session
        FROM sessions s WHERE s.tenant = ? AND s.${column} IS NOT NULL${cond}
        GROUP BY s.${column} ORDER BY sessions DESC, principal LIMIT ?`;
      const found = this.run(
        () => this.stmt(sql).all(tenant, ...params, limit) as { principal: string; sessions: number; entries: number; last_session: string }[],
      );
      for (const r of found) {
        rows.push({ principal: r.principal, role, sessions: r.sessions, entries: r.entries, lastSession: r.last_session, lastSessionPath: sessionPath(r.last_session) });
      }
    }
    return rows;
  }

  async typeCounts(tenant: string, range: ReportRange): Promise<TypeCount[]> {
    const t = timeWhere('e', range);
    // Without a window both counts read only their (covering) index.
    const byType = `SELECT e.type, count(*) AS n FROM entries e INDEXED BY ${t.sql === '' ? 'entries_type' : 'entries_time'}
      WHERE e.tenant = ?${t.sql} GROUP BY e.type`;
    const byDecision = `SELECT e.decision, count(*) AS n FROM entries e INDEXED BY entries_decision
      WHERE e.tenant = ? AND e.decision IS NOT NULL${t.sql} GROUP BY e.decision`;
    return this.run(() => [
      ...(this.stmt(byType).all(tenant, ...t.params) as { type: string; n: number }[]).map((r) => ({ type: r.type, count: r.n })),
      ...(this.stmt(byDecision).all(tenant, ...t.params) as { decision: string; n: number }[]).map((r) => ({ type: 'policy.decided', decision: r.decision, count: r.n })),
    ]);
  }

  async sessionCounts(tenant: string, range: ReportRange): Promise<{ sessions: number; sealed: number; open: number }> {
    const params: string[] = [];
    let cond = '';
    if (range.since !== undefined) {
      cond += ' AND s.last_at >= ?';
      params.push(clockKey(range.since, 'since'));
    }
    if (range.until !== undefined) {
      cond += ' AND s.first_at < ?';
      params.push(clockKey(range.until, 'until'));
    }
    const sql = `SELECT count(*) AS sessions, coalesce(sum(s.sealed), 0) AS sealed,
      coalesce(sum(CASE WHEN s.sealed = 0 AND s.last_type NOT IN (${list(AFTER_END_ALLOWED)})
        AND NOT EXISTS (SELECT 1 FROM entries p INDEXED BY entries_session_ends
          WHERE p.tenant = s.tenant AND p.session_id = s.id AND p.type IN (${list(SESSION_END_TYPES)})) THEN 1 ELSE 0 END), 0) AS open
      FROM sessions s WHERE s.tenant = ?${cond}`;
    return this.run(() => this.stmt(sql).get(tenant, ...params) as { sessions: number; sealed: number; open: number });
  }
}
