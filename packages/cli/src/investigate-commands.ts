/**
 * The investigation commands of `custody`: search, timeline, show and report.
 * Each talks to a server through connection.ts and takes --json.
 */
import type { Command } from 'commander';

import { type ReportOptions, runReport } from './commands/report.js';
import { runSearch, type SearchOptions } from './commands/search.js';
import { runShow, type ShowOptions } from './commands/show.js';
import { runTimeline, type TimelineOptions } from './commands/timeline.js';
import { addConnectionOptions } from './connection.js';
import type { Output } from './output.js';

const TIMES = 'an ISO time (2026-11-22T06:00:00Z, 2026-11-22) or a relative one (30m, 24h, 7d, 2w)';

/** Registers `search`, `timeline`, `show` and `report` on the program. */
export function registerInvestigationCommands(program: Command, io: Output, later: (p: Promise<number>) => Promise<void>): void {
  addConnectionOptions(
    program
      .command('search')
      .summary('find events by who, what and when')
      .description(
        'Search the ledger (GET /v1/events): every given filter must hold. Newest first; --all follows\n' +
          'every page (progress on stderr). --user is the initiator (the human who asked for the work).',
      )
      .option('--user <id>', 'initiator (the human accountable for the task)')
      .option('--agent <id>', 'agent: the actor or any link of the delegation chain')
      .option('--approver <id>', 'approver of an approval')
      .option('--principal <id>', 'principal in any role')
      .option('--workload <id>', 'workload identity: SPIFFE ID or <issuer>|<subject>')
      .option('--tool <name>', 'tool name')
      .option('--decision <effect>', 'allow, deny or approval_required')
      .option('--type <type>', 'event type, or a family such as approval.*')
      .option('--session <id>', 'session id')
      .option('--trace <id>', 'W3C trace id')
      .option('--objective <text>', 'substring of the session objective')
      .option('--since <time>', `events at or after: ${TIMES}`)
      .option('--until <time>', `events before: ${TIMES}`)
      .option('--limit <n>', 'events per page, 1-1000 (default 100)')
      .option('--cursor <cursor>', 'continue after a previous page')
      .option('--all', 'fetch every page')
      .option('--asc', 'oldest first')
      .option('--json', 'print JSON: { events, nextCursor? }'),
  )
    .addHelpText(
      'after',
      `
Examples:
  $ custody search --user alice@example.com --since 24h
  $ custody search --agent agent:billing --tool stripe.refund --decision deny
  $ custody search --approver dave@example.com --type approval.* --since 7d --all --json | jq '.events | length'`,
    )
    .action((opts: SearchOptions) => later(runSearch(opts, io)));

  addConnectionOptions(
    program
      .command('timeline')
      .summary("a session's steps as a causal tree")
      .description(
        "Show a session as a tree by causation (each event under the event it names as `cause`;\n" +
          'the rest in seq order): initiator, delegation chain, decisions with policies and reasons,\n' +
          'approvals, credentials, and the seal or revocation.',
      )
      .argument('<session>', 'session id')
      .option('--json', 'print JSON: { session, events, tree }'),
  )
    .addHelpText('after', '\nExamples:\n  $ custody timeline sess-refund-1234\n  $ custody timeline sess-refund-1234 --json | jq \'.events[].event.type\'')
    .action((session: string, opts: TimelineOptions) => later(runTimeline(session, opts, io)));

  addConnectionOptions(
    program
      .command('show')
      .summary('one event, its receipt and its disclosed and redacted fields')
      .description(
        "Show one event by id, check its receipt (inclusion proof and signed checkpoint) against the\n" +
          "log key, and list which committed fields are disclosed and which redacted. Exit 1 when the\n" +
          'receipt does not verify, 2 when the --key cannot be used (a missing or unreadable file, a key\n' +
          'that is not a verifier key).',
      )
      .argument('<event-id>', 'event id (a UUID)')
      .option('-k, --key <verifierKey>', "the log's verifier key to check against, or a file holding it (default: the server's, GET /v1/log/key)")
      .option('--json', 'print JSON: { event, receipt, disclosed, redacted }'),
  )
    .addHelpText('after', '\nExamples:\n  $ custody show 0193a0c2-7a6e-7c1f-9d3e-2b4f5a6c7d8e\n  $ custody show 0193a0c2-7a6e-7c1f-9d3e-2b4f5a6c7d8e --key log.vkey --json')
    .action((id: string, opts: ShowOptions) => later(runShow(id, opts, io)));

  addConnectionOptions(
    program
      .command('report')
      .summary('compliance reports: unapproved, denied, after-end, deep delegation, activity')
      .description('Run a report over the whole log (GET /v1/reports/<name>). Every row names its session.')
      .addHelpText(
        'after',
        '\nReports:\n' +
          '  unapproved-calls    sensitive tool calls (approval_required) without a human\n' +
          '                      approval\n' +
          '  denied-calls        calls denied by policy, or attempted outside the delegation\n' +
          '                      scope\n' +
          '  acted-after-end     sessions that acted after revocation, expiry or seal\n' +
          '                      (should be none)\n' +
          '  deep-delegation     delegation chains deeper than --depth hops (default 2)\n' +
          '  principal-activity  one principal (--principal) counted by type, tool, decision\n' +
          '                      and role; without --principal: the top principals\n' +
          '  top-principals      the most active initiators and agents\n' +
          '  compliance          evidence and gaps per control of --framework (owasp-agentic,\n' +
          '                      nist-ai-rmf, maestro, csf); --format text|json|html',
      )
      .argument('<name>', 'report name')
      .option('--since <time>', `from: ${TIMES}`)
      .option('--until <time>', `before: ${TIMES}`)
      .option('--limit <n>', 'rows per page, 1-1000')
      .option('--cursor <cursor>', 'continue after a previous page')
      .option('--all', 'fetch every page')
      .option('--depth <n>', 'deep-delegation: report chains deeper than this many hops')
      .option('--principal <id>', 'principal-activity: the principal')
      .option('--framework <name>', 'compliance: owasp-agentic, nist-ai-rmf, maestro or csf')
      .option('--format <format>', 'compliance: text (default), json or html')
      .option('-o, --out <file>', 'compliance: write the report to this file')
      .option('--json', 'print JSON: { report, rows, nextCursor? }'),
  )
    .addHelpText(
      'after',
      `
Examples:
  $ custody report unapproved-calls --since 90d --all
  $ custody report denied-calls --since 24h --json | jq '.rows[] | {session, tool, kind}'
  $ custody report acted-after-end
  $ custody report deep-delegation --depth 3
  $ custody report principal-activity --principal agent:billing --since 7d
  $ custody report principal-activity --since 30d
  $ custody report compliance --framework owasp-agentic --since 90d
  $ custody report compliance --framework csf --format html -o pr-aa.html`,
    )
    .action((name: string, opts: ReportOptions) => later(runReport(name, opts, io)));
}
