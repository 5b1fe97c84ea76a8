/**
 * `custody gateway --config FILE`: runs the MCP gateway (docs/gateway.md).
 */
import { Gateway, GatewayError, loadGatewayConfig } from '@custody/gateway';
import { PolicyError } from '@custody/policy';
import type { Command } from 'commander';

import { CliError, type Output } from '../output.js';

/** Options of `custody gateway`. */
export interface GatewayCommandOptions {
  config: string;
  stdio?: boolean;
}

/** `custody gateway`: serves until SIGINT/SIGTERM (or, with --stdio, until stdin closes). */
export async function runGateway(opts: GatewayCommandOptions, io: Output): Promise<number> {
  let gateway: Gateway;
  try {
    gateway = await Gateway.start(loadGatewayConfig(opts.config), { log: (m) => io.err(`custody gateway: ${m}`) });
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
    const server = await gateway.serveStdio(credential);
    await new Promise<void>((resolve) => {
      server.onclose = () => resolve();
    });
    await gateway.close();
    return 0;
  }
  const url = await gateway.listen();
  const tools = [...gateway.upstreams.values()].reduce((n, u) => n + u.tools.length, 0);
  io.out(`Custody gateway: ${gateway.upstreams.size} upstream(s), ${tools} tool(s); policies ${gateway.engine.version}`);
  io.out(`listening on ${url}/mcp`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await gateway.close();
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
    .addHelpText('after', '\nExamples:\n  $ custody gateway --config examples/gateway/gateway.json\n  $ CUSTODY_SESSION_CREDENTIAL=$TOKEN custody gateway --config gateway.json --stdio')
    .action((opts: GatewayCommandOptions) => later(runGateway(opts, io)));
}
