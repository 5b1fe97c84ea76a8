/**
 * bench/gateway: the latency the MCP gateway adds to one `tools/call`, durable
 * recording included, measured against the same call made straight to the same
 * upstream (stdio) in the same run; and Cedar decisions per second with the
 * example policy set. Two topologies: everything in this process (server, gateway
 * and agent share one thread: the worst case); the Custody server in its own process
 * (`custody up`) with the gateway here; and fully deployed, where `custody gateway
 * --stdio` is a process of its own too and the agent talks to it over stdio.
 * Writes its section of docs/benchmarks.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Authority, parseTrustConfig, signingKeyFromSeed, SqliteAuthorityStore } from '@custody/authority';
import { createTestIssuer } from '@custody/authority/testing';
import { Gateway, parseGatewayConfig } from '@custody/gateway';
import { Ledger, SqliteStore } from '@custody/ledger';
import { Approvals, createApiKey, createServer, SqliteApprovalStore } from '@custody/server';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';

import { fmt, machine, peakRssMiB, percentile, writeSection } from '../lib.js';

const quick = process.env['BENCH_QUICK'] === '1';
const CALLS = quick ? 300 : 2000;
const root = fileURLToPath(new URL('../../', import.meta.url));
const upstream = join(root, 'examples/gateway/upstream-server.mjs');

const dir = mkdtempSync(join(tmpdir(), 'custody-gw-bench-'));
const path = join(dir, 'ledger.db');
const ledger = await Ledger.open({ store: new SqliteStore({ path }), logSeed: new Uint8Array(32).fill(1), originHost: 'bench' });
const idp = await createTestIssuer('https://idp.bench', 'custody');
const agents = await createTestIssuer('https://agents.bench', 'custody');
const trust = parseTrustConfig({ humans: [{ issuer: idp.issuer, audience: 'custody', jwks: idp.jwks }], agents: [{ issuer: agents.issuer, audience: 'custody', jwks: agents.jwks }] });
const authority = await Authority.open({ store: new SqliteAuthorityStore({ path, checkpoints: 'off' }), ledger, trust, signingKey: signingKeyFromSeed(new Uint8Array(32).fill(2)), sweepIntervalMs: 0 });
const approvalStore = new SqliteApprovalStore({ path, checkpoints: 'off' });
await approvalStore.migrate();
const approvals = new Approvals({ store: approvalStore, sweepIntervalMs: 0 }, ledger);
const app = await createServer({ ledger, authority, approvals });
const url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/\/$/, '');
authority.setIssuer(url);
const key = (await createApiKey(ledger, { tenant: 'default', role: 'ingest', name: 'gateway' })).key;
const gateway = await Gateway.start(
  parseGatewayConfig({
    ledger: { url, apiKey: key },
    listen: { host: '127.0.0.1', port: 0 },
    policies: join(root, 'examples/policies'),
    upstreams: { files: { command: process.execPath, args: [upstream, 'files'] } },
  }),
);
const gatewayUrl = await gateway.listen();
// The same gateway, recording each outcome durably before the agent gets the result.
const strictGateway = await Gateway.start(
  parseGatewayConfig({
    ledger: { url, apiKey: key, recordOutcomes: 'before-result' },
    listen: { host: '127.0.0.1', port: 0 },
    policies: join(root, 'examples/policies'),
    upstreams: { files: { command: process.execPath, args: [upstream, 'files'] } },
  }),
);
const session = await authority.exchange({
  grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
  subject_token: await idp.sign({ sub: 'alice@example.com' }),
  subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
  actor_token: await agents.sign({ sub: 'agent:bench' }),
  actor_token_type: 'urn:ietf:params:oauth:token-type:jwt',
  scope: 'files.read_file',
  objective: 'benchmark',
});

// The deployed topology: `custody up` in its own process, the gateway here.
const bin = join(root, 'packages/cli/dist/bin.js');
const serverDir = mkdtempSync(join(tmpdir(), 'custody-gw-bench-server-'));
const server = spawn(process.execPath, [bin, 'up', '--data', serverDir, '--port', '0', '--dev-issuer'], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
// Never leave the server behind, whatever ends this process.
process.once('exit', () => server.kill('SIGKILL'));
const serverUrl = await new Promise<string>((resolve, reject) => {
  let out = '';
  const timer = setTimeout(() => reject(new Error(`custody up did not start:\n${out}`)), 30_000);
  const onData = (d: Buffer) => {
    out += d.toString();
    const m = /listening on (http:\/\/\S+)/.exec(out);
    if (m) {
      clearTimeout(timer);
      resolve(m[1]!.replace(/\/$/, ''));
    }
  };
  server.stdout.on('data', onData);
  server.stderr.on('data', onData);
  server.once('exit', (code) => reject(new Error(`custody up exited (${code}):\n${out}`)));
});
const dev = JSON.parse(spawnSync(process.execPath, [bin, 'dev-tokens', '--data', serverDir, '--human', 'alice@example.com', '--agent', 'agent:bench', '--json'], { encoding: 'utf8' }).stdout) as { subject_token: string; actor_token: string };
const exchanged = await fetch(`${serverUrl}/oauth/token`, {
  method: 'POST',
  body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: dev.subject_token, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', actor_token: dev.actor_token, actor_token_type: 'urn:ietf:params:oauth:token-type:jwt', scope: 'files.read_file', objective: 'benchmark' }),
});
if (!exchanged.ok) throw new Error(`token exchange failed: ${await exchanged.text()}`);
const remoteCredential = ((await exchanged.json()) as { access_token: string }).access_token;
const remoteGateway = await Gateway.start(
  parseGatewayConfig({
    ledger: { url: serverUrl, apiKey: readFileSync(join(serverDir, 'admin.key'), 'utf8').trim() },
    listen: { host: '127.0.0.1', port: 0 },
    policies: join(root, 'examples/policies'),
    upstreams: { files: { command: process.execPath, args: [upstream, 'files'] } },
  }),
);
const [remoteAgentSide, remoteGatewaySide] = InMemoryTransport.createLinkedPair();
await remoteGateway.connect(remoteGatewaySide, remoteCredential);
const remote = new Client({ name: 'bench-agent-remote', version: '1' });
await remote.connect(remoteAgentSide);

const direct = new Client({ name: 'bench-direct', version: '1' });
await direct.connect(new StdioClientTransport({ command: process.execPath, args: [upstream, 'files'] }));
const [agentSide, gatewaySide] = InMemoryTransport.createLinkedPair();
await gateway.connect(gatewaySide, session.access_token);
const inProcess = new Client({ name: 'bench-agent', version: '1' });
await inProcess.connect(agentSide);
const [strictAgentSide, strictGatewaySide] = InMemoryTransport.createLinkedPair();
await strictGateway.connect(strictGatewaySide, session.access_token);
const strict = new Client({ name: 'bench-agent-strict', version: '1' });
await strict.connect(strictAgentSide);
const overHttp = new Client({ name: 'bench-agent-http', version: '1' });
await overHttp.connect(new StreamableHTTPClientTransport(new URL(`${gatewayUrl}/mcp`), { requestInit: { headers: { authorization: `Bearer ${session.access_token}` } } }));

// Fully deployed, as a local agent runs it: `custody gateway --stdio` in its own process
// (its own upstream child), the agent here over stdio: the direct call's own transport.
const processConfig = join(serverDir, 'gateway.json');
writeFileSync(
  processConfig,
  JSON.stringify({
    ledger: { url: serverUrl, apiKey: readFileSync(join(serverDir, 'admin.key'), 'utf8').trim() },
    listen: { host: '127.0.0.1', port: 0 },
    policies: join(root, 'examples/policies'),
    upstreams: { files: { command: process.execPath, args: [upstream, 'files'] } },
  }),
);
const separate = new Client({ name: 'bench-agent-stdio', version: '1' });
await separate.connect(
  new StdioClientTransport({ command: process.execPath, args: [bin, 'gateway', '--config', processConfig, '--stdio'], env: { ...process.env, CUSTODY_SESSION_CREDENTIAL: remoteCredential } as Record<string, string>, stderr: 'ignore' }),
);

const paths = { direct: [] as number[], gateway: [] as number[], strict: [] as number[], http: [] as number[], remote: [] as number[], separate: [] as number[] };
const call = { name: 'read_file', arguments: { path: 'report.txt' } };
const time = async (fn: () => Promise<unknown>) => {
  const t = performance.now();
  await fn();
  return performance.now() - t;
};
for (let i = 0; i < 50; i++) {
  await direct.callTool(call);
  await inProcess.callTool({ ...call, name: 'files.read_file' });
  await strict.callTool({ ...call, name: 'files.read_file' });
  await overHttp.callTool({ ...call, name: 'files.read_file' });
  await remote.callTool({ ...call, name: 'files.read_file' });
  await separate.callTool({ ...call, name: 'files.read_file' });
}
// Interleaved, so that the machine's noise falls on every path alike. Before each timed
// call, every gateway's background work (tool.completed of the previous call) is drained,
// so that no call, the direct one included, pays for another's outcome recording.
const settle = async () => {
  await Promise.all([gateway, strictGateway, remoteGateway].map((g) => g.flushOutcomes()));
  await new Promise((r) => setImmediate(r));
};
const timed = async (xs: number[], fn: () => Promise<unknown>) => {
  await settle();
  xs.push(await time(fn));
};
for (let i = 0; i < CALLS; i++) {
  await timed(paths.direct, () => direct.callTool(call));
  await timed(paths.gateway, () => inProcess.callTool({ ...call, name: 'files.read_file' }));
  await timed(paths.strict, () => strict.callTool({ ...call, name: 'files.read_file' }));
  await timed(paths.http, () => overHttp.callTool({ ...call, name: 'files.read_file' }));
  await timed(paths.remote, () => remote.callTool({ ...call, name: 'files.read_file' }));
  await timed(paths.separate, () => separate.callTool({ ...call, name: 'files.read_file' }));
  // That gateway's outcome recording runs in its own process, out of reach of settle():
  // give it time to finish before the next timed call.
  await new Promise((r) => setTimeout(r, 5));
}

// Calibration: the same direct call back to back, nothing in between, the way the issue's
// reference figure (about 0.24 ms at p50 for a direct stdio callTool on this machine) was
// taken, though that tool did nothing and this one reads a file. The interleaved direct path above is slower than this: each of its calls finds
// the upstream idle, and waking an idle process costs this virtual machine far more than
// a hot loop does. The gap shows how much of every figure above is the host's wake-up cost.
const tight: number[] = [];
for (let i = 0; i < CALLS; i++) tight.push(await time(() => direct.callTool(call)));

// Cedar decisions per second with the example set (the gateway's own engine).
const request = {
  action: 'tools/call' as const,
  principal: { type: 'agent' as const, id: 'agent:bench' },
  target: { server: 'payments', name: 'transfer' },
  arguments: { amount: 250_000, currency: 'EUR', to: 'DE89370400440532013000' },
  session: { id: 's-1', scope: ['payments.transfer'], expiresAt: new Date(Date.now() + 3600_000).toISOString(), depth: 0, initiator: 'alice@example.com' },
};
const decisions = quick ? 5_000 : 20_000;
const d0 = performance.now();
for (let i = 0; i < decisions; i++) gateway.engine.decide(request);
const perSecond = decisions / ((performance.now() - d0) / 1000);

await separate.close();
await remote.close();
await remoteGateway.close();
server.kill('SIGTERM');
await new Promise((r) => server.once('exit', r));
rmSync(serverDir, { recursive: true, force: true });
await direct.close();
await inProcess.close();
await overHttp.close();
await strict.close();
await strictGateway.close();
await gateway.close();
await app.close();
await approvals.close();
await authority.close();
await ledger.close();
rmSync(dir, { recursive: true, force: true });

const row = (label: string, xs: number[]) => `| ${label} | ${fmt(percentile(xs, 50), 2)} | ${fmt(percentile(xs, 99), 2)} | ${times(xs, 50)} | ${times(xs, 99)} |`;
const added = (xs: number[], p: number) => percentile(xs, p) - percentile(paths.direct, p);
const times = (xs: number[], p: number) => `${fmt(percentile(xs, p) / percentile(paths.direct, p), 1)}×`;
// The issue's targets for the latency the gateway adds, in ms.
const TARGET = { p50: 2, p99: 5 };
const verdict = (xs: number[]) => (added(xs, 50) <= TARGET.p50 && added(xs, 99) <= TARGET.p99 ? 'met' : 'not met');
const body = `## MCP gateway: added latency per tools/call (\`bench/gateway\`)

${machine()}; ${fmt(CALLS)} calls per path, interleaved, after 50 warm-up calls, each call timed alone (the gateways' background outcome recording drained before it); SQLite ledger (WAL, synchronous FULL).
Each call through the gateway: Cedar decision, \`POST /v1/decisions\` (credential verified live; \`tool.requested\` + \`policy.decided\` durably committed)
before the upstream call; then \`tool.completed\`, recorded in the background once the agent has the result (default \`ledger.recordOutcomes: after-result\`),
or durably before it (\`before-result\`). Upstream: \`examples/gateway/upstream-server.mjs files\` over stdio.

| path | p50 ms | p99 ms | p50 vs direct | p99 vs direct |
| --- | ---: | ---: | ---: | ---: |
${row('direct to the upstream (stdio)', paths.direct)}
${row('agent → gateway (in-process transport) → upstream (stdio)', paths.gateway)}
${row('the same, recordOutcomes: before-result', paths.strict)}
${row('agent → gateway (Streamable HTTP) → upstream (stdio)', paths.http)}
${row('deployed: server in its own process (`custody up`); agent → gateway (in-process transport) → upstream (stdio)', paths.remote)}
${row('fully deployed: `custody up` and `custody gateway --stdio` each in its own process; agent → gateway (stdio) → upstream (stdio)', paths.separate)}

Added by the gateway, fully deployed (\`custody up\` and \`custody gateway --stdio\` each in its own process, the agent on stdio: the direct call's own transport, plus the gateway's hop): **p50 ${fmt(added(paths.separate, 50), 2)} ms, p99 ${fmt(added(paths.separate, 99), 2)} ms** (targets: ≤ ${TARGET.p50} ms, ≤ ${TARGET.p99} ms: ${verdict(paths.separate)}).
The Custody server in its own process, the gateway in this one (in-process agent transport; this process also hosts the other paths' server and gateways): p50 ${fmt(added(paths.remote, 50), 2)} ms, p99 ${fmt(added(paths.remote, 99), 2)} ms added.
Everything in one process (server, gateway and agent on one thread; in-process agent transport, the same stdio hop to the upstream): **p50 ${fmt(added(paths.gateway, 50), 2)} ms, p99 ${fmt(added(paths.gateway, 99), 2)} ms** (${verdict(paths.gateway)}).
With \`recordOutcomes: before-result\`: p50 ${fmt(added(paths.strict, 50), 2)} ms, p99 ${fmt(added(paths.strict, 99), 2)} ms added.
Over Streamable HTTP on the agent side: p50 ${fmt(added(paths.http, 50), 2)} ms, p99 ${fmt(added(paths.http, 99), 2)} ms added.

Calibration: the direct call back to back (${fmt(CALLS)} calls, nothing in between; the issue's reference for scale is about 0.24 ms p50 for a direct stdio \`callTool\`, and this tool also reads a file): p50 ${fmt(percentile(tight, 50), 2)} ms, p99 ${fmt(percentile(tight, 99), 2)} ms.
The interleaved direct path above is ${fmt(percentile(paths.direct, 50) / percentile(tight, 50), 1)}× that at p50: each of its calls finds the upstream idle, and waking an idle process costs this virtual machine more than a hot loop does; every interleaved path pays that wake-up, the direct one included, so the added figures compare like with like.

Cedar decisions with the example policy set (\`examples/policies\`, the approval path: one evaluation): ${fmt(perSecond)} per second on one core.
Peak RSS of the benchmark process (server, gateways and agents in one process; the upstreams, the deployed server and the stdio gateway are child processes): ${fmt(peakRssMiB())} MiB.
`;
process.stdout.write(body);
writeSection('gateway', body);
