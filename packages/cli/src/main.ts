/**
 * The `custody` command.
 */
import { Command, CommanderError } from 'commander';

import { runDemo } from './commands/demo.js';
import { runVerify } from './commands/verify.js';
import { CliError, type Output, processOutput } from './output.js';

const VERSION = '0.1.0';

/** Builds the command tree. Exported for tests. */
export function buildProgram(io: Output, setExit: (code: number) => void): Command {
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
        'and reason when anything fails, 2 when the input cannot be read.',
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
    .addHelpText('after', '\nExample:\n  $ custody demo --out /tmp/custody-demo')
    .action((opts: { out: string }) => setExit(runDemo(opts, io)));

  return program;
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
    if (err instanceof CliError) {
      io.err(`custody: ${err.message} [${err.code}]`);
      return err.exitCode;
    }
    io.err(`custody: unexpected error: ${err instanceof Error ? err.message : String(err)}`);
    return 70;
  }
}
