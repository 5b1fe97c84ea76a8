/**
 * `custody sessions list|show|revoke`: sessions opened by token exchange, their
 * status, scope, expiry and delegation tree, and the kill switch.
 */
import type { Command } from 'commander';

import { addConnectionOptions, apiJson, queryString, resolveConnection } from '../connection.js';
import { CliError, type Output, paint, safeData, safeJson } from '../output.js';
import { printTable } from '../render.js';

/** A session as GET /v1/authority/sessions answers it (the fields the CLI shows). */
interface SessionJson {
  id: string;
  parent?: string;
  root: string;
  depth: number;
  initiator: { id: string; issuer?: string };
  agent: { id: string; issuer?: string };
  scope: string[];
  audience: string[];
  objective: string;
  createdAt: string;
  expiresAt: string;
  status: string;
  endedAt?: string;
  endedBy?: string;
  endReason?: string;
  credentials?: { jti: string; fingerprint: string; status: string; expiresAt: string }[];
}

interface Conn {
  url?: string;
  apiKey?: string;
  profile?: string;
  data?: string;
  json?: boolean;
}

const STATUS_STYLE: Record<string, 'green' | 'red' | 'yellow' | 'dim'> = { active: 'green', revoked: 'red', expired: 'yellow', closed: 'dim' };

function status(io: Output, s: string): string {
  const style = STATUS_STYLE[s];
  return style === undefined ? s : paint(io.color, style, s);
}

/** `custody sessions list`. */
export async function runSessionsList(opts: Conn & { status?: string; initiator?: string; agent?: string; root?: string; limit?: string }, io: Output): Promise<number> {
  if (opts.status !== undefined && !['active', 'revoked', 'closed', 'expired'].includes(opts.status)) {
    throw new CliError('FLAG_INVALID', '--status must be active, revoked, closed or expired');
  }
  const conn = resolveConnection(opts);
  const q = queryString({ status: opts.status, initiator: opts.initiator, agent: opts.agent, root: opts.root, limit: opts.limit });
  const res = await apiJson<{ sessions: SessionJson[]; nextCursor?: string }>(conn, `/v1/authority/sessions${q}`);
  if (opts.json) {
    io.out(safeJson(res, 2));
    return 0;
  }
  if (res.sessions.length === 0) {
    io.out('no sessions');
    return 0;
  }
  printTable(
    io,
    ['SESSION', 'STATUS', 'DEPTH', 'INITIATOR', 'AGENT', 'SCOPE', 'EXPIRES'],
    safeData(res.sessions).map((s) => [s.id, status(io, s.status), String(s.depth), s.initiator.id, s.agent.id, s.scope.join(' '), s.expiresAt]),
  );
  if (res.nextCursor !== undefined) io.out(paint(io.color, 'dim', `(more: --limit to see more)`));
  return 0;
}

/** `custody sessions show <id>`. */
export async function runSessionsShow(id: string, opts: Conn, io: Output): Promise<number> {
  const conn = resolveConnection(opts);
  const raw = await apiJson<{ session: SessionJson; descendants: SessionJson[] }>(conn, `/v1/authority/sessions/${encodeURIComponent(id)}`);
  if (opts.json) {
    io.out(safeJson(raw, 2));
    return 0;
  }
  // The objective (the agent's side may write it), ids and reasons: shown escaped.
  const res = safeData(raw);
  const s = res.session;
  io.out(`${paint(io.color, 'bold', s.id)}  ${status(io, s.status)}${s.endedAt !== undefined ? ` at ${s.endedAt} by ${s.endedBy ?? '?'} (${s.endReason ?? ''})` : ''}`);
  io.out(`  objective  ${s.objective}`);
  io.out(`  initiator  ${s.initiator.id}${s.initiator.issuer !== undefined ? ` (${s.initiator.issuer})` : ''}`);
  io.out(`  agent      ${s.agent.id}${s.agent.issuer !== undefined ? ` (${s.agent.issuer})` : ''}`);
  io.out(`  scope      ${s.scope.join(' ')}`);
  io.out(`  audience   ${s.audience.join(' ')}`);
  io.out(`  depth      ${s.depth}${s.parent !== undefined ? `, delegated from ${s.parent}` : ''} (root ${s.root})`);
  io.out(`  opened     ${s.createdAt}, expires ${s.expiresAt}`);
  for (const c of s.credentials ?? []) io.out(`  credential ${c.jti} ${status(io, c.status)} sha256:${c.fingerprint}`);
  if (res.descendants.length > 0) {
    io.out();
    io.out(paint(io.color, 'bold', 'Delegated sessions'));
    for (const d of res.descendants) io.out(`${'  '.repeat(d.depth - s.depth)}${d.id}  ${status(io, d.status)}  ${d.agent.id}  [${d.scope.join(' ')}]`);
  }
  io.out();
  io.out(paint(io.color, 'dim', `timeline: curl -H "authorization: Bearer $CUSTODY_API_KEY" ${conn.url}/v1/sessions/${s.id}/timeline`));
  return 0;
}

/** `custody sessions revoke <id>`. */
export async function runSessionsRevoke(id: string, opts: Conn & { reason?: string }, io: Output): Promise<number> {
  const conn = resolveConnection(opts);
  const raw = await apiJson<{ session: string; revoked: string[]; recorded: boolean }>(conn, `/v1/sessions/${encodeURIComponent(id)}/revoke`, {
    method: 'POST',
    body: JSON.stringify(opts.reason !== undefined ? { reason: opts.reason } : {}),
  });
  if (opts.json) {
    io.out(safeJson(raw, 2));
    return 0;
  }
  const res = safeData(raw);
  if (res.revoked.length === 0) io.out(`session ${id} and its descendants were already inactive`);
  else io.out(`${paint(io.color, 'red', 'revoked')} ${res.revoked.length} session${res.revoked.length === 1 ? '' : 's'}: ${res.revoked.join(', ')}`);
  if (!res.recorded) io.err('custody: the revocation is in force; its ledger entries are queued and will be appended shortly');
  return 0;
}

/** Registers `custody sessions`. */
export function registerSessionCommands(program: Command, io: Output, later: (p: Promise<number>) => Promise<void>): void {
  const sessions = program
    .command('sessions')
    .summary('list, show and revoke sessions opened by token exchange')
    .description(
      'Sessions the authority opened (POST /oauth/token): who asked, which agent, scope, expiry, status\n' +
        'and delegation tree. `revoke` is the kill switch: it revokes a session and every session delegated\n' +
        'from it at once, and records session.revoked / credential.revoked for each. See docs/authority.md.',
    );
  addConnectionOptions(sessions.command('list').description('list sessions, newest first'), 'read')
    .option('--status <status>', 'active, revoked, closed or expired')
    .option('--initiator <id>', 'only sessions of this human')
    .option('--agent <id>', 'only sessions of this agent')
    .option('--root <id>', 'only the delegation tree of this root session')
    .option('--limit <n>', 'at most n sessions (default 100)')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  $ custody sessions list --status active\n  $ custody sessions list --initiator alice@example.com --json | jq \'.sessions[].id\'')
    .action((opts: Parameters<typeof runSessionsList>[0]) => later(runSessionsList(opts, io)));
  addConnectionOptions(sessions.command('show').description('one session, its credentials and its delegated sessions').argument('<id>', 'session id'), 'read')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  $ custody sessions show ses-0193…\n  $ custody sessions show ses-0193… --json | jq .descendants')
    .action((id: string, opts: Conn) => later(runSessionsShow(id, opts, io)));
  addConnectionOptions(sessions.command('revoke').description('revoke a session and every descendant (kill switch)').argument('<id>', 'session id'), 'admin')
    .option('--reason <text>', 'why, recorded in the ledger')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  $ custody sessions revoke ses-0193… --reason "agent misbehaving"\n  $ custody sessions revoke ses-0193… --json')
    .action((id: string, opts: Parameters<typeof runSessionsRevoke>[1]) => later(runSessionsRevoke(id, opts, io)));
}
