/**
 * `custody dev-tokens`: mints a human token and an agent token from the local
 * development issuer (DEVELOPMENT ONLY), ready for POST /oauth/token.
 */
import { loadDevIssuerKey, mintDevTokens } from '@custody/authority';
import type { Command } from 'commander';

import { dataDir, ensureDataDir } from '../local-config.js';
import { CliError, type Output, paint, safeJson } from '../output.js';

/** Options of `custody dev-tokens`. */
export interface DevTokensOptions {
  data?: string;
  human: string;
  agent: string;
  /** Also mint an approver token for this human (POST /v1/approvals/:id). */
  approver?: string;
  ttl?: string;
  json?: boolean;
}

/** `custody dev-tokens`. */
export async function runDevTokens(opts: DevTokensOptions, io: Output): Promise<number> {
  const ttl = opts.ttl === undefined ? 3600 : Number(opts.ttl);
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 86_400) throw new CliError('FLAG_INVALID', '--ttl must be 1-86400 seconds');
  for (const [flag, v] of [
    ['--human', opts.human],
    ['--agent', opts.agent],
    ...(opts.approver !== undefined ? ([['--approver', opts.approver]] as const) : []),
  ] as const) {
    if (v.length === 0 || v.length > 512) throw new CliError('FLAG_INVALID', `${flag} must be 1-512 characters`);
  }
  const dir = dataDir(opts.data);
  ensureDataDir(dir);
  const tokens = await mintDevTokens(loadDevIssuerKey(dir), { human: opts.human, agent: opts.agent, ...(opts.approver !== undefined ? { approver: opts.approver } : {}), ttlSeconds: ttl });
  if (opts.json) {
    io.out(safeJson({ subject_token: tokens.subject_token, actor_token: tokens.actor_token, subject_token_type: tokens.subject_token_type, actor_token_type: tokens.actor_token_type, ...(tokens.approver_token !== undefined ? { approver_token: tokens.approver_token } : {}), expires_at: tokens.expires_at, warning: tokens.warning }, 2));
    return 0;
  }
  io.err(paint(io.color, 'yellow', `${tokens.warning}.`));
  io.out(`export SUBJECT_TOKEN=${tokens.subject_token}`);
  io.out(`export ACTOR_TOKEN=${tokens.actor_token}`);
  if (tokens.approver_token !== undefined) io.out(`export APPROVER_TOKEN=${tokens.approver_token}`);
  io.err(`# ${opts.human} (human) and ${opts.agent} (agent), valid until ${tokens.expires_at}. Then:`);
  io.err(`#   curl -s $CUSTODY_URL/oauth/token -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \\`);
  io.err(`#     -d subject_token=$SUBJECT_TOKEN -d subject_token_type=urn:ietf:params:oauth:token-type:jwt \\`);
  io.err(`#     -d actor_token=$ACTOR_TOKEN -d actor_token_type=urn:ietf:params:oauth:token-type:jwt \\`);
  io.err(`#     -d scope="refunds:read refunds:create" --data-urlencode objective="refund order 1234"`);
  if (tokens.approver_token !== undefined) {
    io.err(`# ${opts.approver} (approver): answer an approval with APPROVER_TOKEN as the bearer (never with SUBJECT_TOKEN):`);
    io.err(`#   curl -s $CUSTODY_URL/v1/approvals/<id> -H "authorization: Bearer $APPROVER_TOKEN" -H 'content-type: application/json' -d '{"decision":"approve"}'`);
  }
  return 0;
}

/** Registers `custody dev-tokens`. */
export function registerDevTokensCommand(program: Command, io: Output, later: (p: Promise<number>) => Promise<void>): void {
  program
    .command('dev-tokens')
    .summary('mint human and agent test tokens from the local dev issuer (development only)')
    .description(
      'Mint a human token and an agent token from the local development issuer, ready for\n' +
        'POST /oauth/token (subject_token and actor_token). DEVELOPMENT ONLY: the issuer key lives in\n' +
        '<data>/dev-issuer.key, and a server trusts it only when started with `custody up --dev-issuer`\n' +
        'on the same data folder. Without --json it prints shell exports. With --approver it also mints an\n' +
        'approver token (audience custody-approvals) for POST /v1/approvals/:id: the subject token never answers approvals.',
    )
    .option('-d, --data <dir>', 'data folder of the dev issuer key (default: $CUSTODY_DATA or ./.custody)')
    .requiredOption('--human <id>', "the human's subject, e.g. alice@example.com")
    .requiredOption('--agent <id>', "the agent's subject, e.g. agent:refunds")
    .option('--approver <id>', 'also mint an approver token for this human (audience custody-approvals), to answer approvals with; e.g. bob@example.com')
    .option('--ttl <seconds>', 'token lifetime (default 3600)')
    .option('--json', 'print { "subject_token", "actor_token", "approver_token"?, … } as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  $ custody up --dev-issuer &\n  $ custody dev-tokens --human alice@example.com --agent agent:refunds --json\n  $ eval "$(custody dev-tokens --human alice@example.com --agent agent:refunds)"\n  $ custody dev-tokens --human alice@example.com --agent agent:refunds --approver bob@example.com --json | jq -r .approver_token',
    )
    .action((opts: DevTokensOptions) => later(runDevTokens(opts, io)));
}
