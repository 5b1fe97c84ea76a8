/**
 * The `custody` command.
 */
import { Command, CommanderError } from 'commander';

import { registerApprovalsCommands } from './commands/approvals.js';
import { runAudit } from './commands/audit.js';
import { runDemo } from './commands/demo.js';
import { runLiveDemo } from './commands/demo-live.js';
import { registerDevTokensCommand } from './commands/dev-tokens.js';
import { runExport } from './commands/export.js';
import { registerGatewayCommand } from './commands/gateway.js';
import { runRecordsExport } from './commands/export-records.js';
import { runKeys } from './commands/keys.js';
import { registerSessionCommands } from './commands/sessions.js';
import { registerStreamsCommands } from './commands/streams.js';
import { registerPolicyCommands } from './commands/policy.js';
import { runUp } from './commands/up.js';
import { runVerify } from './commands/verify.js';
import { registerInvestigationCommands } from './investigate-commands.js';
import { failureOf, type Output, processOutput, safeText } from './output.js';
import { registerRecordsCommands } from './records-commands.js';

const VERSION = '0.1.0';

/** Builds the command tree. Exported for tests. */
export function buildProgram(io: Output, setExit: (code: number) => void): Command {
  const later = (p: Promise<number>) => p.then(setExit);
  const program = new Command('custody')
    .description('Custody: the accountability plane for AI agents.\nVerify evidence offline, with no trust in the server that produced it.')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride();

  program
    .command('verify')
    .summary('verify an evidence bundle offline')
    .description(
      'Verify a custody.bundle/v1 evidence bundle offline: the checkpoint signature, every\n' +
        "entry's inclusion proof, the session hash chain and seal, and every disclosure.\n" +
        'Exits 0 with a one-line verdict when everything holds, 1 naming each failing record\n' +
        'and reason when anything fails, 2 when the bundle or the --key cannot be used (a missing\n' +
        'or unreadable file, a key that is not a verifier key).',
    )
    .argument('<bundle>', 'bundle file (custody.bundle/v1 JSON), or - for standard input')
    .option('-k, --key <verifierKey>', "the log's note verifier key, or a file holding it (default: $CUSTODY_VERIFIER_KEY, else the bundle's own key)")
    .option('--json', 'print the full verification report as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ custody verify session.bundle.json --key "custody.example/acme+1f2e3d4c+AXr…"
  $ custody verify session.bundle.json --key log.vkey --json | jq .records
  $ curl -s "$CUSTODY_URL/v1/sessions/$ID/bundle" | custody verify - --key log.vkey

Verdicts:
  complete             every entry is genuine and the session is sealed: nothing is missing
  intact, not sealed   every entry shown is genuine and in order; the session is still open`,
    )
    .action((bundle: string, opts: { key?: string; json?: boolean }) => setExit(runVerify(bundle, opts, io)));

  program
    .command('demo')
    .summary('build a demo session, export and verify its evidence')
    .description('Build a realistic demo session in memory, export its evidence bundles, and verify them\n(and a tampered copy) offline. Writes into --out.')
    .option('-o, --out <dir>', 'where to write the bundles and the demo key', '.custody/demo')
    .option('--live', 'run a live server, the MCP gateway and a scripted agent: allowed, denied, approved, delegated and revoked calls (docs/gateway.md)')
    .option('--json', 'print JSON: { keyFile, bundles, tampered }; with --live { ok, scenarios, sessions, keyFile }')
    .addHelpText(
      'after',
      "\nExamples:\n  $ custody demo --out /tmp/custody-demo\n  $ custody demo --json | jq '.tampered.failures'\n  $ custody demo --live\n  $ custody demo --live --json | jq '.scenarios[] | {name, ok}'",
    )
    .action((opts: { out: string; live?: boolean; json?: boolean }) => (opts.live ? later(runLiveDemo(opts, io)) : setExit(runDemo(opts, io))));

  program
    .command('up')
    .summary('run the Custody server')
    .description(
      'Run the ledger and its HTTP API. Embedded by default: SQLite in the data folder, no other\n' +
        'service needed. With --postgres, several `custody up` processes can share one log.\n' +
        'On first start it creates the log key (<data>/log.key) and a first admin API key\n' +
        '(<data>/admin.key), both mode 0600. Prints `listening on http://HOST:PORT` when ready.',
    )
    .option('-d, --data <dir>', 'data folder (default: $CUSTODY_DATA or ./.custody)')
    .option('-p, --port <n>', `port (default: $CUSTODY_PORT or ${8470}; 0 picks a free one)`)
    .option('--host <addr>', 'address to bind (default: $CUSTODY_HOST or 127.0.0.1)')
    .option('--postgres <url>', 'use PostgreSQL (default: $CUSTODY_POSTGRES_URL), e.g. postgres://user@host/db')
    .option('--origin-host <name>', 'host part of each log origin <host>/<tenant> (fixed at first start)')
    .option('--log-key <file>', 'the log key file (default: $CUSTODY_LOG_KEY, else <data>/log.key); share it between nodes on one PostgreSQL')
    .option('-q, --quiet', 'print only the `listening on` line')
    .option('--json', 'print one JSON line when listening: { event, url, store, data, adminKeyFile, … }, and { event: "stopped" } at exit; log JSON lines on stderr')
    .option('--trust <file>', 'trust configuration: the human and agent token issuers to trust (docs/authority.md)')
    .option('--dev-issuer', 'also trust the local development issuer of `custody dev-tokens` (DEVELOPMENT ONLY)')
    .option('--session-key <file>', 'session credential signing key (default: $CUSTODY_SESSION_KEY, else <data>/session.key); share it between nodes')
    .option('--issuer <url>', "Custody's issuer URL in session credentials (default: the trust file's issuer, else the server URL)")
    .option('--policies <dir>', 'policy folder (.cedar files) that POST /v1/decisions decides with (docs/policies.md)')
    .option('--approval-ttl <seconds>', 'how long an approval waits for a human (default 300)')
    .option('--approval-webhook <url>', 'POST every new approval to this URL (notify approvers)')
    .option('--approval-webhook-secret <secret>', 'sign approval webhook requests (custody-signature header, HMAC-SHA-256); default $CUSTODY_APPROVAL_WEBHOOK_SECRET')
    .option('--import-mapping <[source=]file>', 'a declarative import mapping (JSON or YAML) for POST /v1/import/:source; repeatable (docs/api.md, "Generic import")', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--max-inflight-writes <n>', 'most write requests (POST /v1/events, /v1/traces, /v1/import) in progress at once; more get 503 SERVER_BUSY with Retry-After (default 256)')
    .option('--prepare-workers <n>', 'worker threads that parse and prepare large POST /v1/events bodies, 0 for none (default: one per core beyond the first, at most 4)')
    .addHelpText('after', '\nExamples:\n  $ custody up\n  $ custody up --data /var/lib/custody --port 8470\n  $ custody up --postgres postgres://custody@db/custody --log-key /etc/custody/log.key --session-key /etc/custody/session.key --trust /etc/custody/trust.json\n  $ custody up --dev-issuer   # then: custody dev-tokens --human alice@example.com --agent agent:refunds --json\n  $ custody up --port 0 --json 2>>custody.log | jq -r \'select(.event == "listening").url\'')
    .action((opts: Parameters<typeof runUp>[0]) => later(runUp(opts, io)));

  program
    .command('audit')
    .summary('re-verify every stored entry, tree node, checkpoint and session chain')
    .description(
      'Rebuild each tenant\'s Merkle tree from the stored entries and check it against every stored\n' +
        'tree node, signed checkpoint and session hash chain, and the index rows against the entries.\n' +
        'It checks with the log key `custody up` uses, and never creates one (no key: LOG_KEY_MISSING).\n' +
        'Exits 0 when everything holds, 1 naming the first bad index (or when the store is out of reach),\n' +
        '2 for a bad flag or file, or no log key.',
    )
    .option('-d, --data <dir>', 'data folder (default: $CUSTODY_DATA or ./.custody)')
    .option('--postgres <url>', 'audit a PostgreSQL store (default: $CUSTODY_POSTGRES_URL)')
    .option('--tenant <id...>', 'only these tenants')
    .option('--log-key <file>', 'the log key file (default: $CUSTODY_LOG_KEY, else <data>/log.key; audit never creates one)')
    .option('--json', 'print the report as JSON; when the audit cannot run (store out of reach, bad or missing log key), { ok: false, error: { code, message } }, same exit code')
    .addHelpText('after', '\nExamples:\n  $ custody audit\n  $ custody audit --postgres postgres://custody@db/custody --tenant acme --json')
    .action((opts: Parameters<typeof runAudit>[0]) => later(runAudit(opts, io)));

  program
    .command('export')
    .summary("write a session's evidence bundle, or events as OCSF, NDJSON or CSV")
    .description(
      "Fetch a session's custody.bundle/v1 evidence bundle from the server and write it to a file.\n" +
        'With --format ocsf|ndjson|csv, write every event matching the filters instead, oldest first\n' +
        '(OCSF 1.5.0: tool calls as API Activity, decisions and credentials as Authorize Session; see docs/records.md).',
    )
    .option('-s, --session <id>', 'the session to export (required without --format; a filter with it)')
    .option('-o, --out <file>', 'output file (default: standard output)')
    .option('--redacted', 'export without disclosures (sensitive values stay committed, not revealed)')
    .option('--format <format>', 'ocsf, ndjson or csv: export events instead of a bundle')
    .option('--user <id>', 'with --format: initiator')
    .option('--agent <id>', 'with --format: agent (actor or delegation link)')
    .option('--tool <name>', 'with --format: tool name')
    .option('--type <type>', 'with --format: event type or family (tool.*)')
    .option('--decision <effect>', 'with --format: allow, deny or approval_required')
    .option('--since <time>', 'with --format: events at or after (RFC 3339)')
    .option('--until <time>', 'with --format: events before (RFC 3339)')
    .option('--omit-data', 'with --format: leave out every event\'s data (payloads)')
    .option('--url <url>', 'server URL (default: $CUSTODY_URL or http://127.0.0.1:8470)')
    .option('--api-key <key>', 'API key with read access (default: $CUSTODY_API_KEY or <data>/admin.key)')
    .option('--profile <name>', 'a profile of the profile file (see docs/cli.md, "Connecting")')
    .option('-d, --data <dir>', 'data folder to find admin.key in')
    .option('--json', 'with -o: print JSON: { session, out, records, bytes, sha256 }; with --format { format, out, events, bytes, sha256 }')
    .addHelpText(
      'after',
      "\nExamples:\n  $ custody export --session s-1 -o s-1.bundle.json && custody verify s-1.bundle.json --key log.vkey\n  $ custody export --format ocsf --since 2026-11-01T00:00:00Z -o events.ocsf.ndjson\n  $ custody export --session s-1 -o s-1.bundle.json --json | jq -r .sha256",
    )
    .action((opts: Parameters<typeof runExport>[0] & { format?: string }) =>
      later(opts.format !== undefined ? runRecordsExport({ ...opts, format: opts.format }, io) : runExport(opts, io)),
    );

  registerInvestigationCommands(program, io, later);
  registerRecordsCommands(program, io, later);
  registerSessionCommands(program, io, later);
  registerDevTokensCommand(program, io, later);
  registerPolicyCommands(program, io, setExit);
  registerStreamsCommands(program, io, later);
  registerApprovalsCommands(program, io, later);
  registerGatewayCommand(program, io, later);

  const keys = program
    .command('keys')
    .summary('create, list and revoke API keys')
    .description(
      'Manage API keys. Each key belongs to one tenant and has one role: ingest, read, approve or admin.\n' +
        'Through the API (an admin key) a key manages its own tenant; with --direct it works on the\n' +
        'data folder or PostgreSQL directly, e.g. to create the first key of a new tenant.\n' +
        'Creating and revoking keys are recorded in the tenant\'s log as admin.* entries.',
    );
  const keyOpts = (c: Command) =>
    c
      .option('--url <url>', 'server URL (default: $CUSTODY_URL)')
      .option('--api-key <key>', 'admin API key (default: $CUSTODY_API_KEY or <data>/admin.key)')
      .option('--profile <name>', 'a profile of the profile file (see docs/cli.md, "Connecting")')
      .option('-d, --data <dir>', 'data folder')
      .option('--direct', 'work on the store directly instead of through the API')
      .option('--postgres <url>', 'with --direct: the PostgreSQL store')
      .option('--tenant <id>', 'with --direct: the tenant (default: default)')
      .option('--origin-host <name>', 'with --direct on a new store: the host part of log origins (as for custody up)')
      .option('--json', 'print JSON');
  keyOpts(keys.command('create').description('create a key (shown once)'))
    .requiredOption('--role <role>', 'ingest, read, approve or admin')
    .option('--name <name>', 'a label')
    .addHelpText('after', '\nExamples:\n  $ custody keys create --role ingest --name gateway\n  $ custody keys create --direct --tenant acme --role admin')
    .action((opts: Parameters<typeof runKeys>[2]) => later(runKeys('create', undefined, opts, io)));
  keyOpts(keys.command('list').description('list keys (never their secrets)')).action((opts: Parameters<typeof runKeys>[2]) => later(runKeys('list', undefined, opts, io)));
  keyOpts(keys.command('revoke').description('revoke a key').argument('<id>', 'key id')).action((id: string, opts: Parameters<typeof runKeys>[2]) =>
    later(runKeys('revoke', id, opts, io)),
  );

  reflowDescriptions(program);
  return program;
}

/**
 * Joins the hard-wrapped lines of every command's description into paragraphs, so
 * that commander wraps them to the terminal's width once (rather than breaking our
 * line ends again). Blank lines, list items and indented lines are kept.
 */
function reflowDescriptions(cmd: Command): void {
  const text = cmd.description();
  if (text !== '') cmd.description(text.replace(/([^\n])\n(?![\n\s*\-$]|\d+\.)/g, '$1 '));
  for (const sub of cmd.commands) reflowDescriptions(sub);
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[], io: Output = processOutput()): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const f = failureOf(err);
    // The message may quote the server's (and through it an agent's) text: shown escaped.
    io.err(f.code === 'INTERNAL' ? `custody: ${safeText(f.message)}` : `custody: ${safeText(f.message)} [${safeText(f.code)}]`);
    return f.exitCode;
  }
}
