/**
 * `custody gateway --config FILE`: runs the MCP gateway (docs/gateway.md).
 */
import { Gateway, GatewayError, loadGatewayConfig } from '@custody/gateway';
import { PolicyError } from '@custody/policy';
import type { Command } from 'commander';

import { CliError, listenFailure, type Log, logFailures, type Output, safeJson, stderrLog, stopSignal } from '../output.js';

/** Options of `custody gateway`. */
export interface GatewayCommandOptions {
  config: string;
  stdio?: boolean;
  /** Listen on this port instead of the configuration's listen.port (0 picks a free one). */
  port?: string;
  /** Print one JSON `listening` line on stdout (and `stopped` at the end); log JSON lines on stderr. */
  json?: boolean;
}

/** `custody gateway`: serves until SIGINT/SIGTERM (or, with --stdio, until stdin closes). */
export async function runGateway(opts: GatewayCommandOptions, io: Output): Promise<number> {
  const json = opts.json === true;
  const log = stderrLog(io, json, 'custody gateway: ');
  return json ? logFailures(log, () => serve(opts, io, log)) : serve(opts, io, log);
}

async function serve(opts: GatewayCommandOptions, io: Output, log: Log): Promise<number> {
  const json = opts.json === true;
  const port = opts.port === undefined ? undefined : /^\d{1,5}$/.test(opts.port) ? Number(opts.port) : Number.NaN;
  if (port !== undefined && !(port >= 0 && port <= 65535)) throw new CliError('PORT_INVALID', `--port must be 0-65535, got ${opts.port}`);
  let gateway: Gateway;
  try {
    const config = loadGatewayConfig(opts.config);
    gateway = await Gateway.start(port === undefined ? config : { ...config, listen: { ...config.listen, port } }, { log: (m) => log('warn', m) });
  } catch (err) {
    if (err instanceof GatewayError || err instanceof PolicyError) throw new CliError(err.code, err.message);
    throw err;
  }
  if (opts.stdio) {
    const credential = process.env['CUSTODY_SESSION_CREDENTIAL'];
    if (credential === undefined || credential === '') {
      await gateway.close();
      throw new CliError('CREDENTIAL_MISSING', 'with --stdio, set CUSTODY_SESSION_CREDENTIAL to the agent\'s Custody session credential');
    }
    // Standard output carries MCP here: with --json only the log lines change.
    const server = await gateway.serveStdio(credential);
    await new Promise<void>((resolve) => {
      server.onclose = () => resolve();
    });
    await gateway.close();
    return 0;
  }
  let url: string;
  try {
    url = await gateway.listen();
  } catch (err) {
    await gateway.close().catch(() => undefined);
    throw listenFailure(err, gateway.config.listen.host, gateway.config.listen.port) ?? err;
  }
  const tools = [...gateway.upstreams.values()].reduce((n, u) => n + u.tools.length, 0);
  // Signals are handled from before the announcement on.
  const stopped = stopSignal();
  if (json) {
    io.out(safeJson({ event: 'listening', url: `${url}/mcp`, upstreams: [...gateway.upstreams.keys()], tools, policyVersion: gateway.engine.version, ledger: gateway.config.ledger.url, pid: process.pid }));
  } else {
    io.out(`Custody gateway: ${gateway.upstreams.size} upstream(s), ${tools} tool(s); policies ${gateway.engine.version}`);
    io.out(`listening on ${url}/mcp`);
  }
  const signal = await stopped;
  if (json) log('info', 'shutting down', { signal });
  await gateway.close();
  if (json) io.out(safeJson({ event: 'stopped', url: `${url}/mcp`, signal }));
  return 0;
}

/** Registers `custody gateway`. */
export function registerGatewayCommand(program: Command, io: Output, later: (p: Promise<number>) => Promise<void>): void {
  program
    .command('gateway')
    .summary('run the MCP gateway in front of MCP servers')
    .description(
      'Run the MCP gateway: agents connect with their Custody session credential (Streamable HTTP at\n' +
        '/mcp, or stdio with --stdio); every tools/call is decided with Cedar, recorded by the Custody\n' +
        'server before it runs, held for a human when policy asks, and forwarded with the upstream\'s\n' +
        'own credential. Prints `listening on <url>/mcp` when ready. Configuration: docs/gateway.md.',
    )
    .requiredOption('-c, --config <file>', 'the gateway configuration (JSON)')
    .option('--stdio', 'serve one local agent over stdin/stdout; its credential is $CUSTODY_SESSION_CREDENTIAL')
    .option('-p, --port <n>', "port to listen on instead of the configuration's listen.port (0 picks a free one)")
    .option('--json', 'print one JSON line when listening: { event, url, upstreams, tools, policyVersion }; log JSON lines on stderr')
    .addHelpText(
      'after',
      "\nExamples:\n  $ custody gateway --config examples/gateway/gateway.json\n  $ CUSTODY_SESSION_CREDENTIAL=$TOKEN custody gateway --config gateway.json --stdio\n  $ custody gateway --config gateway.json --port 0 --json 2>>gateway.log | jq -r 'select(.event == \"listening\").url'",
    )
    .action((opts: GatewayCommandOptions) => later(runGateway(opts, io)));
}
