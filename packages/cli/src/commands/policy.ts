/**
 * `custody policy validate|test`: check a folder of Cedar policies against
 * Custody's schema, and run policy unit cases. See docs/policies.md.
 */
import { readFileSync } from 'node:fs';

import { type CompiledPolicySet, formatIssue, loadPolicySet, parsePolicyCases, PolicyEngine, PolicyError, runPolicyCases } from '@custody/policy';
import type { Command } from 'commander';

import { addConnectionOptions } from '../connection.js';
import { CliError, type Output, paint, safeJson } from '../output.js';
import { type ReplayOptions, runPolicyReplay } from './policy-replay.js';

/** Loads a policy folder, turning a PolicyError into a CliError with its code (exit 2). */
function load(dir: string): CompiledPolicySet {
  try {
    return loadPolicySet(dir);
  } catch (err) {
    if (err instanceof PolicyError) throw new CliError(err.code, `${dir}: ${err.message}`);
    throw err;
  }
}

/** `custody policy validate DIR`. */
export function runPolicyValidate(dir: string, opts: { json?: boolean }, io: Output): number {
  const set = load(dir);
  if (opts.json) {
    io.out(
      safeJson(
        {
          valid: true,
          version: set.version,
          files: set.files,
          policies: set.policies.map(({ id, file, line, column, effect, approval }) => ({ id, file, line, column, effect, approval })),
          warnings: set.warnings,
        },
        2,
      ),
    );
    return 0;
  }
  for (const w of set.warnings) io.err(paint(io.color, 'yellow', `warning: ${formatIssue(w)}`));
  const approvals = set.policies.filter((p) => p.approval).length;
  io.out(
    `${paint(io.color, 'green', 'valid')}: ${set.policies.length} policies in ${set.files.length} files` +
      `${approvals > 0 ? ` (${approvals} requiring approval)` : ''}${set.warnings.length > 0 ? `, ${set.warnings.length} warnings` : ''}`,
  );
  io.out(`version ${set.version}`);
  return 0;
}

/** `custody policy test DIR --cases FILE`: exit 0 when every case passes, 1 listing failures. */
export function runPolicyTest(dir: string, opts: { cases: string; json?: boolean }, io: Output): number {
  const set = load(dir);
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(opts.cases, 'utf8'));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code !== undefined) throw new CliError('FILE_UNREADABLE', `cannot read the cases file ${opts.cases}: ${e.code}`);
    throw new CliError('POLICY_CASES_INVALID', `the cases file ${opts.cases} is not JSON: ${e.message}`);
  }
  let results;
  try {
    results = runPolicyCases(new PolicyEngine(set), parsePolicyCases(doc));
  } catch (err) {
    if (err instanceof PolicyError) throw new CliError(err.code, `${opts.cases}: ${err.message}`);
    throw err;
  }
  const failed = results.filter((r) => !r.pass);
  if (opts.json) {
    io.out(safeJson({ version: set.version, passed: results.length - failed.length, failed: failed.length, results }, 2));
    return failed.length > 0 ? 1 : 0;
  }
  for (const w of set.warnings) io.err(paint(io.color, 'yellow', `warning: ${formatIssue(w)}`));
  for (const r of results) {
    const mark = r.pass ? paint(io.color, 'green', 'pass') : paint(io.color, 'red', 'FAIL');
    io.out(`${mark}  ${r.name}  ${paint(io.color, 'dim', `${r.decision.effect}${r.decision.policies.length > 0 ? ` by ${r.decision.policies.join(', ')}` : ''}`)}`);
    if (!r.pass) io.out(`      ${r.failure ?? ''}`);
  }
  io.out(`${results.length - failed.length} passed, ${failed.length} failed (policy set ${set.version})`);
  return failed.length > 0 ? 1 : 0;
}

/** Registers `custody policy validate|test|replay`. */
export function registerPolicyCommands(program: Command, io: Output, setExit: (code: number) => void): void {
  const policy = program
    .command('policy')
    .summary('validate Cedar policies and run policy unit cases')
    .description(
      "Work with a folder of Cedar policies (*.cedar, plus *.cedarschema fragments that may define the Arguments type): validate them against Custody's schema, and run unit cases. See docs/policies.md.",
    );
  policy
    .command('validate')
    .description(
      "Parse and validate every policy in DIR against Custody's schema and print the policy-set\n" +
        'version (sha256 of the canonical text). Exits 0 when valid (warnings, such as a policy that\n' +
        'can never apply, go to standard error), 2 naming the file, line and column of each error.',
    )
    .argument('<dir>', 'folder of .cedar files')
    .option('--json', 'print the version, policies and warnings as JSON')
    .addHelpText('after', '\nExamples:\n  $ custody policy validate examples/policies\n  $ custody policy validate ./policies --json | jq -r .version')
    .action((dir: string, opts: { json?: boolean }) => setExit(runPolicyValidate(dir, opts, io)));
  policy
    .command('test')
    .description(
      'Run policy unit cases: each case is a request and the decision it must get (allow, deny or\n' +
        'approval_required, optionally with the policy ids that must decide it). Exits 0 when all\n' +
        'pass, 1 listing each failure, 2 when the policies or the cases file are invalid.',
    )
    .argument('<dir>', 'folder of .cedar files')
    .requiredOption('--cases <file>', 'JSON file: [ { "name", "request", "expect" } … ] or { "defaults": {…}, "cases": [ … ] }')
    .option('--json', 'print every result with its full decision as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  $ custody policy test examples/policies --cases examples/policies/cases.json\n  $ custody policy test ./policies --cases cases.json --json | jq \'.results[] | select(.pass | not)\'',
    )
    .action((dir: string, opts: { cases: string; json?: boolean }) => setExit(runPolicyTest(dir, opts, io)));
  addConnectionOptions(
    policy
      .command('replay')
      .description(
        'Re-evaluate recorded tool-call decisions (policy.decided entries, read through the API) under\n' +
          'the policies in --policies, and list the calls whose decision would change. Each request is\n' +
          "rebuilt from the log: the decision's actor, tool and session, the arguments of the call it\n" +
          "decided, and the session's credential (scope, expiry, depth); parts the log does not hold are\n" +
          'named in MISSING. Approvals are replayed as not given. Exits 0; 2 for invalid policies.',
      )
      .requiredOption('--policies <dir>', 'folder of .cedar files to replay under')
      .option('--since <time>', 'decisions from (RFC 3339, or e.g. 24h, 7d)')
      .option('--until <time>', 'decisions before')
      .option('--all', 'list every replayed decision, not only the changed ones')
      .option('--json', 'print { version, replayed, changed, rows } as JSON')
      .option('-q, --quiet', 'no progress'),
  )
    .addHelpText('after', '\nExamples:\n  $ custody policy replay --policies ./policies-next --since 30d\n  $ custody policy replay --policies ./policies-next --json | jq \'.rows[] | {session, tool, recorded, replayed}\'')
    .action((opts: ReplayOptions) => runPolicyReplay(opts, io, load).then(setExit));
}
