/**
 * `custody approvals list|show|approve|deny`: human approvals of exact pending
 * calls. Answering needs an approve (or admin) key; the key's name is the approver.
 */
import type { Command } from 'commander';

import { addConnectionOptions, apiJson, queryString, resolveConnection } from '../connection.js';
import { CliError, type Output, paint, safeData, safeJson } from '../output.js';
import { printTable } from '../render.js';

/** An approval as the API answers it (the fields the CLI shows). */
interface ApprovalJson {
  id: string;
  status: string;
  session: string;
  tool: string;
  createdAt: string;
  expiresAt: string;
  decidedAt?: string;
  approver?: { id: string };
  reason?: string;
  /** The session's state (active, revoked, closed, expired): an ended session's call can no longer run. */
  sessionStatus?: string;
  context: {
    initiator: { id: string };
    agent: { id: string };
    chain: { principal: { id: string } }[];
    session: { objective?: string; rootObjective?: string };
    arguments?: Record<string, unknown>;
    capture: string;
    reasons: string[];
    policies: string[];
  };
}

interface Conn {
  url?: string;
  apiKey?: string;
  profile?: string;
  data?: string;
  json?: boolean;
}

const STYLE: Record<string, 'green' | 'red' | 'yellow' | 'dim'> = { pending: 'yellow', granted: 'green', denied: 'red', expired: 'dim' };

/** `custody approvals list`. */
export async function runApprovalsList(opts: Conn & { status?: string; session?: string; limit?: string }, io: Output): Promise<number> {
  const status = opts.status ?? 'pending';
  if (!['pending', 'granted', 'denied', 'expired', 'all'].includes(status)) throw new CliError('FLAG_INVALID', '--status must be pending, granted, denied, expired or all');
  const conn = resolveConnection(opts);
  const res = await apiJson<{ approvals: ApprovalJson[] }>(conn, `/v1/approvals${queryString({ status: status === 'all' ? undefined : status, session: opts.session, limit: opts.limit })}`);
  if (opts.json) {
    io.out(safeJson(res, 2));
    return 0;
  }
  if (res.approvals.length === 0) {
    io.out(`no ${status === 'all' ? '' : `${status} `}approvals`);
    return 0;
  }
  // Everything shown is agent- or server-supplied text: made safe before it is styled.
  printTable(
    io,
    ['APPROVAL', 'STATUS', 'TOOL', 'INITIATOR', 'AGENT', 'EXPIRES', 'WHY'],
    safeData(res.approvals).map((a) => [a.id, paint(io.color, STYLE[a.status] ?? 'dim', a.status), a.tool, a.context.initiator.id, a.context.agent.id, a.expiresAt, a.context.reasons.join('; ')]),
  );
  return 0;
}

/** `custody approvals show <id>`. */
export async function runApprovalsShow(id: string, opts: Conn, io: Output): Promise<number> {
  const conn = resolveConnection(opts);
  const raw = await apiJson<ApprovalJson>(conn, `/v1/approvals/${encodeURIComponent(id)}`);
  if (opts.json) {
    io.out(safeJson(raw, 2));
    return 0;
  }
  // The objective, tool, ids and reasons are agent- or server-supplied: shown escaped, so
  // that none can rewrite what the approver reads (e.g. move up and overwrite the arguments).
  const a = safeData(raw);
  io.out(`${paint(io.color, 'bold', a.id)}  ${paint(io.color, STYLE[a.status] ?? 'dim', a.status)}${a.approver !== undefined ? ` by ${a.approver.id}` : ''}${a.reason !== undefined ? ` (${a.reason})` : ''}`);
  io.out(`  tool       ${a.tool}`);
  io.out(`  arguments  ${raw.context.arguments !== undefined ? safeJson(raw.context.arguments) : `(not disclosed: capture ${a.context.capture})`}`);
  io.out(`  session    ${a.session}${a.context.session.objective !== undefined ? `: ${a.context.session.objective}` : ''}${a.sessionStatus !== undefined && a.sessionStatus !== 'active' ? ` (${a.sessionStatus})` : ''}`);
  // A delegated session's objective is the delegating agent's words; the human's comes first.
  if (a.context.session.rootObjective !== undefined) io.out(`  asked for  ${a.context.session.rootObjective} (the human's session; the line above is the delegating agent's)`);
  io.out(`  chain      ${a.context.chain.map((l) => l.principal.id).join(' → ')}`);
  io.out(`  why        ${a.context.reasons.join('; ')} [${a.context.policies.join(', ')}]`);
  io.out(`  expires    ${a.expiresAt}`);
  return 0;
}

/** `custody approvals approve|deny <id>`. */
export async function runApprovalsDecide(id: string, decision: 'approve' | 'deny', opts: Conn & { reason?: string }, io: Output): Promise<number> {
  const conn = resolveConnection(opts);
  const raw = await apiJson<ApprovalJson>(conn, `/v1/approvals/${encodeURIComponent(id)}`, {
    method: 'POST',
    body: JSON.stringify({ decision, ...(opts.reason !== undefined ? { reason: opts.reason } : {}) }),
  });
  if (opts.json) {
    io.out(safeJson(raw, 2));
    return 0;
  }
  const a = safeData(raw);
  io.out(`${paint(io.color, STYLE[a.status] ?? 'dim', a.status)} ${a.id}: ${a.tool} for ${a.context.agent.id} (approver ${a.approver?.id ?? '?'})`);
  return 0;
}

/** Registers `custody approvals`. */
export function registerApprovalsCommands(program: Command, io: Output, later: (p: Promise<number>) => Promise<void>): void {
  const approvals = program
    .command('approvals')
    .summary('list and answer human approvals of pending tool calls')
    .description(
      'A call that policy marks approval_required waits for a human. Each approval is bound to the ' +
        'exact call (session, tool, arguments digest), is single-use and expires. Answering needs an ' +
        "approve (or admin) API key; the key's name is the approver, who must not be the call's " +
        'initiator or agent (docs/api.md, "Approvals").',
    );
  addConnectionOptions(
    approvals.command('list').description('list approvals (default: pending), with the call and why it needs approval'),
  )
    .option('--status <status>', 'pending, granted, denied, expired or all', 'pending')
    .option('--session <id>', 'only this session')
    .option('--limit <n>', 'at most n')
    .option('--json', 'print JSON')
    .action((opts: Parameters<typeof runApprovalsList>[0]) => later(runApprovalsList(opts, io)));
  addConnectionOptions(approvals.command('show').description('one approval in full context').argument('<id>'))
    .option('--json', 'print JSON')
    .action((id: string, opts: Conn) => later(runApprovalsShow(id, opts, io)));
  for (const decision of ['approve', 'deny'] as const) {
    addConnectionOptions(approvals.command(decision).description(`${decision} one pending call`).argument('<id>'), 'approve')
      .option('--reason <text>', 'why (recorded in the ledger)')
      .option('--json', 'print JSON')
      .action((id: string, opts: Conn & { reason?: string }) => later(runApprovalsDecide(id, decision, opts, io)));
  }
}
