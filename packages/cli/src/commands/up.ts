import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';

import {
  Authority,
  AuthorityError,
  type AuthorityStore,
  devIssuerTrust,
  emptyTrustConfig,
  loadDevIssuerKey,
  loadSigningKey,
  loadTrustConfig,
  PostgresAuthorityStore,
  signingKeyFromText,
  SqliteAuthorityStore,
} from '@custody/authority';
import { Ledger, LedgerError } from '@custody/ledger';
import { StreamRunner } from '@custody/records';
import { formatIssue, loadPolicySet, PolicyEngine, PolicyError } from '@custody/policy';
import { type ApprovalStore, Approvals, createApiKey, createServer, ImportMappingError, loadMappingFile, PostgresApprovalStore, SqliteApprovalStore } from '@custody/server';

import { DEFAULT_PORT, dataDir, loadLogSeed, openStore, writeSecret } from '../local-config.js';
import { CliError, listenFailure, type Log, logFailures, type Output, paint, safeJson, stderrLog, stopSignal } from '../output.js';
import { parseIntFlag } from '../render.js';

export interface UpOptions {
  data?: string;
  port?: string;
  host?: string;
  postgres?: string;
  originHost?: string;
  logKey?: string;
  quiet?: boolean;
  /** Print one JSON `listening` line on stdout (and `stopped` at the end); log JSON lines on stderr. */
  json?: boolean;
  /** Trust configuration file (docs/authority.md). */
  trust?: string;
  /** Trust the local development issuer (DEVELOPMENT ONLY). */
  devIssuer?: boolean;
  /** Session credential signing key file. */
  sessionKey?: string;
  /** Custody's issuer identifier (default: the trust file's, else the server URL). */
  issuer?: string;
  /** Policy folder POST /v1/decisions decides with (docs/policies.md). */
  policies?: string;
  /** How long an approval waits for a human, in seconds (default 300). */
  approvalTtl?: string;
  /** URL told of every new approval. */
  approvalWebhook?: string;
  approvalWebhookSecret?: string;
  /** Import mappings of POST /v1/import/:source: `FILE` or `SOURCE=FILE`, repeatable. */
  importMapping?: string[];
  /** Most write requests in progress at once (503 SERVER_BUSY above it). */
  maxInflightWrites?: string;
  prepareWorkers?: string;
}

/**
 * `custody up`: opens the store (SQLite in the data folder, or PostgreSQL),
 * creates the first admin key on first start, and serves the API until stopped.
 */
export async function runUp(opts: UpOptions, io: Output): Promise<number> {
  const json = opts.json === true;
  const log = stderrLog(io, json, 'custody: ');
  return json ? logFailures(log, () => serve(opts, io, log)) : serve(opts, io, log);
}

/** A thrown error's message after a log message, as `custody up` has always printed it. */
const withCause = (message: string, err: unknown) => `${message}${err instanceof Error ? `: ${err.message}` : ''}`;

async function serve(opts: UpOptions, io: Output, log: Log): Promise<number> {
  const json = opts.json === true;
  const dir = dataDir(opts.data);
  const port = opts.port === undefined ? Number(process.env['CUSTODY_PORT'] ?? DEFAULT_PORT) : Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError('PORT_INVALID', `--port must be 0-65535, got ${opts.port}`);
  const host = opts.host ?? process.env['CUSTODY_HOST'] ?? '127.0.0.1';
  const maxInflightWrites = parseIntFlag(opts.maxInflightWrites, '--max-inflight-writes', 1, 100_000);
  const prepareWorkers = parseIntFlag(opts.prepareWorkers, '--prepare-workers', 0, 64);
  // Everything that can be wrong with the configuration is checked before anything opens,
  // so that a bad flag or file ends the process with its error, never leaves it hanging.
  const trust = startup(() => (opts.trust !== undefined ? loadTrustConfig(opts.trust) : emptyTrustConfig()));
  const policy = opts.policies === undefined ? undefined : startup(() => new PolicyEngine(loadPolicySet(opts.policies!)));
  const ttl = opts.approvalTtl === undefined ? 300 : Number(opts.approvalTtl);
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 86_400) throw new CliError('FLAG_INVALID', '--approval-ttl must be 1-86400 seconds');
  const webhookSecret = (opts.approvalWebhookSecret ?? process.env['CUSTODY_APPROVAL_WEBHOOK_SECRET']) || undefined;
  if (opts.approvalWebhook !== undefined && !/^https?:\/\/\S+$/.test(opts.approvalWebhook)) throw new CliError('FLAG_INVALID', '--approval-webhook must be an http(s) URL');
  if (webhookSecret !== undefined && webhookSecret.length < 16) throw new CliError('FLAG_INVALID', 'the approval webhook secret must be at least 16 characters');
  if (opts.approvalWebhook !== undefined && webhookSecret === undefined) {
    log('warn', `the approval webhook ${opts.approvalWebhook} is unsigned: a receiver cannot tell Custody's notifications from forged ones; set --approval-webhook-secret (or $CUSTODY_APPROVAL_WEBHOOK_SECRET, 16+ characters)`);
  }
  const importMappings = (opts.importMapping ?? []).map((spec) => startup(() => loadMappingFile(spec)));
  // Then the keys, created on first start.
  if (opts.devIssuer) {
    const dev = devIssuerTrust(loadDevIssuerKey(dir));
    trust.humans.push(dev.humans);
    trust.agents.push(dev.agents);
  }
  const envKey = process.env['CUSTODY_SESSION_KEY'];
  const { seed, source, created } = loadLogSeed(dir, opts.logKey);
  const session =
    opts.sessionKey !== undefined
      ? { key: startup(() => loadSigningKey(opts.sessionKey!).key), created: false, source: opts.sessionKey }
      : envKey !== undefined && envKey !== ''
        ? { key: startup(() => signingKeyFromText(envKey, '$CUSTODY_SESSION_KEY')), created: false, source: '$CUSTODY_SESSION_KEY' }
        : { ...loadSigningKey(join(dir, 'session.key'), { create: true }), source: join(dir, 'session.key') };

  // What is open is closed again if a later step fails (a port in use, a database gone).
  const opened: (() => Promise<unknown>)[] = [];
  try {
    return await run();
  } catch (err) {
    for (const close of opened.reverse()) await close().catch(() => undefined);
    throw listenFailure(err, host, port) ?? err;
  }

  async function run(): Promise<number> {
    const store = await openStore(dir, opts.postgres);
    opened.push(() => store.close());
    const ledger = await Ledger.open({ store, logSeed: seed, ...(opts.originHost ? { originHost: opts.originHost } : {}) }).catch((err: unknown) => {
      // A log key this start made for a store whose logs another key signs is wrong: take it back.
      if (created && err instanceof LedgerError && err.code === 'CONFIG_INVALID' && err.field === 'logKey') {
        rmSync(source, { force: true });
        throw new LedgerError('CONFIG_INVALID', `${err.message}; the new log key this start wrote to ${source} was removed again`, { field: 'logKey' });
      }
      throw err;
    });
    opened.push(() => ledger.close());

    const c = io.color;
    const rel = (p: string) => relative(process.cwd(), p) || p;
    const keyPath = join(dir, 'admin.key');
    const keys = await store.listApiKeys('default');
    let newKey = false;
    if (!keys.some((k) => k.role === 'admin' && k.revokedAt === undefined) && !existsSync(keyPath)) {
      const { key } = await createApiKey(ledger, { tenant: 'default', role: 'admin', name: 'first admin (custody up)' });
      writeSecret(keyPath, key + '\n');
      newKey = true;
    }

    // The identity authority: its tables live in the ledger's database.
    const pgUrl = opts.postgres ?? process.env['CUSTODY_POSTGRES_URL'];
    const schema = process.env['CUSTODY_POSTGRES_SCHEMA'];
    // Beside a SQLite ledger in ledger.db, the ledger's connection checkpoints the file for all.
    const sideCheckpoints = store.kind === 'sqlite' ? ({ checkpoints: 'off' } as const) : {};
    const authorityStore: AuthorityStore =
      store.kind === 'postgres' && pgUrl !== undefined && pgUrl !== ''
        ? new PostgresAuthorityStore({ connectionString: pgUrl, ...(schema ? { schema } : {}) })
        : new SqliteAuthorityStore({ path: join(dir, 'ledger.db'), ...sideCheckpoints });
    const issuer = opts.issuer ?? trust.issuer;
    const authority = await Authority.open({
      store: authorityStore,
      ledger,
      trust,
      signingKey: session.key,
      ...(issuer !== undefined ? { issuer } : {}),
      log: (message, err) => log(err === undefined ? 'warn' : 'error', withCause(message, err)),
    });
    opened.push(() => authority.close());

    // Approvals (their own table beside the ledger's) and, with --policies, server-side decisions.
    for (const w of policy?.policySet.warnings ?? []) log('warn', `policy warning: ${formatIssue(w)}`);
    const approvalStore: ApprovalStore =
      store.kind === 'postgres' && pgUrl !== undefined && pgUrl !== '' ? new PostgresApprovalStore({ connectionString: pgUrl, ...(schema ? { schema } : {}) }) : new SqliteApprovalStore({ path: join(dir, 'ledger.db'), ...sideCheckpoints });
    opened.push(() => approvalStore.close());
    await approvalStore.migrate();
    const approvals = new Approvals(
      {
        store: approvalStore,
        ttlSeconds: ttl,
        ...(opts.approvalWebhook !== undefined ? { webhook: { url: opts.approvalWebhook, ...(webhookSecret !== undefined ? { secret: webhookSecret } : {}) } } : {}),
        log: (message, err) => log(err === undefined ? 'warn' : 'error', withCause(message, err)),
      },
      ledger,
    );
    opened.pop(); // approvals.close() closes its store
    opened.push(() => approvals.close());

    const consoleDir = builtConsole();
    const app = await createServer({ ledger, authority, approvals, ...(policy !== undefined ? { policy } : {}), importMappings, ...(consoleDir !== undefined ? { consoleDir } : {}), ...(maxInflightWrites !== undefined ? { maxInflightWrites } : {}), ...(prepareWorkers !== undefined ? { prepareWorkers } : {}), logger: false });
    opened.push(() => app.close());
    const address = await app.listen({ port, host });
    const url = address.replace('[::1]', 'localhost');
    authority.setIssuer(url);
    // Log streams (docs/records.md, "Streaming"): one delivery loop per stream this node holds the lease of.
    const streams = new StreamRunner(ledger, { log: (message) => log('warn', message) });
    streams.start();
    // Signals are handled from before the announcement on.
    const stopped = stopSignal();
    if (json) {
      // One line a script can parse; what the banner says goes to stderr as log lines.
      if (created) log('warn', `new log key written to ${source} (mode 0600): back it up; it signs every checkpoint`);
      if (newKey) log('info', `first admin API key written to ${keyPath} (mode 0600)`);
      if (session.created) log('info', `new session credential key written to ${session.source} (mode 0600); kid ${session.key.kid}`);
      if (opts.devIssuer) log('warn', `DEVELOPMENT ONLY: trusting the local dev issuer (custody dev-tokens --data ${dir}); never use --dev-issuer in production`);
      io.out(
        safeJson({
          event: 'listening',
          url,
          store: store.kind,
          data: dir,
          origins: ledger.origin('<tenant>'),
          logKeySource: source,
          adminKeyFile: existsSync(keyPath) ? keyPath : null,
          created: { logKey: created, adminKey: newKey, sessionKey: session.created },
          console: consoleDir !== undefined ? `${url}/` : null,
          openapi: `${url}/v1/openapi.json`,
          issuer: authority.issuer,
          trusts: { humans: trust.humans.length, agents: trust.agents.length },
          approvalTtlSeconds: ttl,
          policyVersion: policy?.version ?? null,
          importSources: importMappings.map((m) => m.source),
          devIssuer: opts.devIssuer === true,
          pid: process.pid,
        }),
      );
    } else if (!opts.quiet) {
      io.out(`Custody ${paint(c, 'bold', 'up')}: ${store.kind === 'sqlite' ? `SQLite in ${rel(dir)}` : 'PostgreSQL'}; logs ${ledger.origin('<tenant>')}`);
      if (created) io.out(`  new log key written to ${rel(source)} (mode 0600): back it up; it signs every checkpoint`);
      if (newKey) io.out(`  first admin API key written to ${rel(keyPath)} (mode 0600)`);
      if (session.created) io.out(`  new session credential key written to ${rel(session.source)} (mode 0600); kid ${session.key.kid}`);
      io.out(`  authority: issuer ${authority.issuer}; trusts ${trust.humans.length} human and ${trust.agents.length} agent issuer(s)`);
      io.out(`  approvals: wait ${ttl} s for a human${policy !== undefined ? `; decisions with policies ${policy.version}` : ''}`);
      if (importMappings.length > 0) io.out(`  import: POST /v1/import/{${importMappings.map((m) => m.source).join(',')}}`);
      if (opts.devIssuer) io.out(paint(c, 'yellow', `  DEVELOPMENT ONLY: trusting the local dev issuer (custody dev-tokens --data ${rel(dir)}); never use --dev-issuer in production`));
      io.out();
      io.out(paint(c, 'bold', 'Next:'));
      if (consoleDir !== undefined) io.out(`  the console: ${url}/  (sign in with the API key in ${rel(keyPath)})`);
      else io.out('  the web console is not built (npm run build builds it)');
      io.out(`  export CUSTODY_URL=${url} CUSTODY_API_KEY=$(cat ${rel(keyPath)})`);
      io.out(`  curl -s -X POST $CUSTODY_URL/v1/events -H "authorization: Bearer $CUSTODY_API_KEY" -H 'content-type: application/json' \\`);
      io.out(`    -d '{"type":"session.opened","session":{"id":"s-1","objective":"try custody"},"initiator":{"type":"human","id":"alice@example.com"},"actor":{"type":"agent","id":"my-agent"}}'`);
      io.out(`  npx custody export --session s-1 -o s-1.bundle.json && npx custody verify s-1.bundle.json --key "$(curl -s $CUSTODY_URL/v1/log/key -H "authorization: Bearer $CUSTODY_API_KEY")"`);
      if (consoleDir !== undefined) io.out(`  then open ${url}/sessions/s-1: its evidence is verified in your browser`);
      io.out(`  API reference: ${url}/v1/openapi.json   Stop with Ctrl-C.`);
      io.out();
    }
    // The line scripts wait for; always printed (with --json, the `listening` object above).
    if (!json) io.out(`listening on ${url}`);

    const signal = await stopped;
    log('info', 'shutting down: finishing queued appends', json ? { signal } : undefined);
    await app.close();
    await streams.stop();
    await approvals.close();
    await authority.close();
    await ledger.close();
    if (json) io.out(safeJson({ event: 'stopped', url, signal }));
    return 0;
  }
}

/** Runs a start-up step, turning a configuration error into a CliError naming it. */
function startup<T>(step: () => T): T {
  try {
    return step();
  } catch (err) {
    if (err instanceof AuthorityError || err instanceof PolicyError || err instanceof ImportMappingError) throw new CliError(err.code, err.message);
    throw err;
  }
}

/** The built web console (`@custody/console`'s dist folder), when it is installed and built. */
function builtConsole(): string | undefined {
  try {
    const dir = join(dirname(createRequire(import.meta.url).resolve('@custody/console/package.json')), 'dist');
    return existsSync(join(dir, 'index.html')) ? dir : undefined;
  } catch {
    return undefined;
  }
}
