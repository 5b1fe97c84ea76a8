/**
 * `custody streams list|add|remove|status|retry`: the tenant's log streams to a
 * webhook (signed CloudEvents), Splunk HEC or syslog, through /v1/streams (admin).
 * Secrets are read from a file or the environment, never from the command line
 * (it shows in `ps`), and never printed except a generated webhook secret, once.
 * See docs/records.md, "Streaming".
 */
import { readFileSync } from 'node:fs';

import type { Command } from 'commander';

import { addConnectionOptions, apiJson, type Connection, type ConnectionOptions, resolveConnection } from '../connection.js';
import { CliError, type Output, safeData, safeJson, safeText } from '../output.js';

/** A stream as the API shows it. */
interface StreamView {
  id: string;
  name: string;
  kind: string;
  status: string;
  cursor: number;
  lag?: number;
  failures: number;
  lastError?: string;
  lastErrorAt?: string;
  lastDeliveredAt?: string;
  target: { url?: string; host?: string; port?: number; tls?: boolean };
  secretFingerprint?: string;
}

/** Options of `custody streams …`. */
export interface StreamsOptions extends ConnectionOptions {
  json?: boolean;
  kind?: string;
  targetUrl?: string;
  secretFile?: string;
  tokenFile?: string;
  index?: string;
  sourcetype?: string;
  host?: string;
  port?: string;
  tls?: boolean;
  caFile?: string;
  facility?: string;
  batchSize?: string;
  maxFailures?: string;
  backoffMs?: string;
  from?: string;
}

function whole(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new CliError('OPTION_INVALID', `${flag} must be a whole number`);
  return Number(value);
}

function secretFrom(file: string | undefined, env: string): string | undefined {
  if (file !== undefined) {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new CliError('FILE_UNREADABLE', `cannot read ${file}: ${(err as Error).message}`);
    }
  }
  const v = process.env[env];
  return v === undefined || v === '' ? undefined : v;
}

function target(s: StreamView): string {
  return s.target.url ?? `${s.target.tls ? 'tls' : 'tcp'}://${s.target.host}:${s.target.port}`;
}

function line(view: StreamView): string {
  const s = safeData(view);
  const state = s.status === 'dead_letter' ? 'DEAD LETTER' : s.failures > 0 ? `retrying (${s.failures} failures)` : 'active';
  return `${s.id}  ${s.name.padEnd(20)} ${s.kind.padEnd(10)} ${state.padEnd(24)} cursor ${s.cursor}${s.lag !== undefined ? ` lag ${s.lag}` : ''}  → ${target(s)}`;
}

/** Resolves a stream given by id or by name. */
async function resolveStream(conn: Connection, ref: string): Promise<StreamView> {
  const { streams } = await apiJson<{ streams: StreamView[] }>(conn, '/v1/streams');
  const found = streams.find((s) => s.id === ref) ?? streams.find((s) => s.name === ref);
  if (found === undefined) throw new CliError('STREAM_NOT_FOUND', `no stream with id or name ${ref} (custody streams list)`);
  return found;
}

/** `custody streams <action>`. */
export async function runStreams(action: 'list' | 'add' | 'remove' | 'status' | 'retry', ref: string | undefined, opts: StreamsOptions, io: Output): Promise<number> {
  const conn = resolveConnection(opts);
  if (action === 'list') {
    const { streams } = await apiJson<{ streams: StreamView[] }>(conn, '/v1/streams');
    if (opts.json) io.out(safeJson(streams));
    else if (streams.length === 0) io.out('no streams (custody streams add)');
    else for (const s of streams) io.out(line(s));
    return 0;
  }
  if (ref === undefined) throw new CliError('ARGUMENT_REQUIRED', action === 'add' ? 'name the stream' : 'name the stream (id or name)');
  if (action === 'add') {
    if (opts.kind === undefined) throw new CliError('OPTION_INVALID', '--kind is required: webhook, splunk_hec or syslog');
    const ca = opts.caFile !== undefined ? secretFrom(opts.caFile, '') : undefined;
    const from = opts.from === undefined || opts.from === 'now' || opts.from === 'start' ? opts.from : whole(opts.from, '--from');
    const body: Record<string, unknown> = {
      name: ref,
      kind: opts.kind,
      url: opts.targetUrl,
      secret: opts.kind === 'webhook' ? secretFrom(opts.secretFile, 'CUSTODY_STREAM_SECRET') : undefined,
      token: opts.kind === 'splunk_hec' ? secretFrom(opts.tokenFile, 'CUSTODY_STREAM_TOKEN') : undefined,
      index: opts.index,
      sourcetype: opts.sourcetype,
      host: opts.host,
      port: whole(opts.port, '--port'),
      tls: opts.tls,
      ca,
      facility: whole(opts.facility, '--facility'),
      batchSize: whole(opts.batchSize, '--batch-size'),
      maxFailures: whole(opts.maxFailures, '--max-failures'),
      backoffMs: whole(opts.backoffMs, '--backoff-ms'),
      from,
    };
    for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
    const r = await apiJson<{ stream: StreamView; secret?: string; entry: string }>(conn, '/v1/streams', { method: 'POST', body: JSON.stringify(body) });
    if (opts.json) io.out(safeJson(r));
    else {
      io.out(`added stream ${r.stream.name} (${r.stream.id}): ${r.stream.kind} → ${target(r.stream)}, from index ${r.stream.cursor}; recorded as ${r.entry}`);
      if (r.secret !== undefined) io.out(`webhook signing secret (shown once; verify the custody-signature header with it):\n${r.secret}`);
    }
    return 0;
  }
  const s = await resolveStream(conn, ref);
  const path = `/v1/streams/${encodeURIComponent(s.id)}`;
  if (action === 'status') {
    const v = await apiJson<StreamView>(conn, path);
    if (opts.json) io.out(safeJson(v));
    else {
      io.out(line(v));
      if (v.lastDeliveredAt) io.out(`  last delivered ${safeText(v.lastDeliveredAt)}`);
      if (v.lastError) io.out(`  last error ${safeText(v.lastErrorAt ?? '')}: ${safeText(v.lastError)}`);
      if (v.status === 'dead_letter') io.out(`  stopped: fix the target, then custody streams retry ${v.name}`);
    }
    return v.status === 'dead_letter' ? 2 : 0;
  }
  if (action === 'retry') {
    const v = await apiJson<StreamView & { entry: string }>(conn, `${path}/retry`, { method: 'POST' });
    io.out(opts.json ? safeJson(v) : `stream ${v.name} is active again from index ${v.cursor}; recorded as ${v.entry}`);
    return 0;
  }
  const r = await apiJson<{ id: string; entry: string }>(conn, path, { method: 'DELETE' });
  io.out(opts.json ? safeJson(r) : `removed stream ${s.name} (${r.id}) at index ${s.cursor}; recorded as ${r.entry}`);
  return 0;
}

/** Registers `custody streams list|add|remove|status|retry`. */
export function registerStreamsCommands(program: Command, io: Output, later: (p: Promise<number>) => Promise<void>): void {
  const streams = program
    .command('streams')
    .summary('stream the log to a webhook, Splunk HEC or syslog')
    .description(
      "Log streams deliver the tenant's entries at least once, in index order, with a durable cursor,\n" +
        'retries with backoff and a dead-letter state. Each change is an admin.stream_* entry. See docs/records.md.',
    );
  const opts = (c: Command) => addConnectionOptions(c.option('--json', 'print JSON'), 'admin');
  opts(streams.command('list').description('list streams with their status, cursor and lag')).action((o: StreamsOptions) => later(runStreams('list', undefined, o, io)));
  opts(
    streams
      .command('add')
      .description('add a stream')
      .argument('<name>', 'stream name (unique in the tenant)')
      .option('--kind <kind>', 'webhook, splunk_hec or syslog')
      .option('--target-url <url>', 'webhook or HEC URL (https; http only to a loopback host)')
      .option('--secret-file <file>', 'webhook HMAC secret (default $CUSTODY_STREAM_SECRET, else generated and printed once)')
      .option('--token-file <file>', 'HEC token (default $CUSTODY_STREAM_TOKEN)')
      .option('--index <index>', 'HEC index')
      .option('--sourcetype <sourcetype>', 'HEC sourcetype (default custody:entry)')
      .option('--host <host>', 'syslog server')
      .option('--port <port>', 'syslog port (default 601, 6514 with --tls)')
      .option('--tls', 'syslog over TLS')
      .option('--ca-file <file>', 'syslog TLS: extra trusted CA certificates (PEM)')
      .option('--facility <n>', 'syslog facility 0-23 (default 13, log audit)')
      .option('--batch-size <n>', 'entries per delivery (default 100)')
      .option('--max-failures <n>', 'consecutive failures before dead letter (default 10)')
      .option('--backoff-ms <n>', 'first retry delay in ms (default 1000)')
      .option('--from <where>', 'now (default), start, or an entry index'),
  )
    .addHelpText(
      'after',
      '\nExamples:\n  $ custody streams add siem --kind webhook --target-url https://siem.example.com/custody\n' +
        '  $ CUSTODY_STREAM_TOKEN=… custody streams add splunk --kind splunk_hec --target-url https://splunk.example.com:8088 --index agents\n' +
        '  $ custody streams add syslog --kind syslog --host logs.example.com --tls --from start',
    )
    .action((name: string, o: StreamsOptions) => later(runStreams('add', name, o, io)));
  opts(streams.command('status').description('show a stream (exit 2 when dead-lettered)').argument('<stream>', 'id or name')).action((ref: string, o: StreamsOptions) =>
    later(runStreams('status', ref, o, io)),
  );
  opts(streams.command('retry').description('make a dead-lettered stream active again').argument('<stream>', 'id or name')).action((ref: string, o: StreamsOptions) =>
    later(runStreams('retry', ref, o, io)),
  );
  opts(streams.command('remove').description('remove a stream').argument('<stream>', 'id or name')).action((ref: string, o: StreamsOptions) => later(runStreams('remove', ref, o, io)));
}
