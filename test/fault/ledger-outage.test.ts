/**
 * Issue 9, fault test: the ledger (`custody up`, a real process) stops under
 * gateway and SDK traffic, and comes back on the same address.
 *
 * - The MCP gateway fails closed: every tool call that starts while the ledger is
 *   down is refused and never reaches the upstream, and every call the upstream
 *   ever saw has its decision (`tool.requested` with its arguments) in the ledger.
 * - SDK tool calls fail closed the same way (the wrapped function runs only with
 *   a durable decision).
 * - The SDK's FileSpool takes the events recorded while the ledger is down and,
 *   once it is back, delivers every event exactly once: each id the SDK returned
 *   is in the session exactly once.
 *
 * Short form: one outage (SIGKILL); SOAK=1: five, alternating SIGKILL and SIGTERM.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Gateway, parseGatewayConfig } from '@custody/gateway';
import { Custody, LedgerUnavailableError, type Session } from '@custody/sdk';
import { FileSpool } from '@custody/sdk/spool';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, describe, expect, it } from 'vitest';

import { api, custody as cli, type Server, startServer } from '../e2e/custody-process.js';
import { freePort, listLog, sleep, soak, waitFor } from './fault-kit.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const policies = join(root, 'examples/policies');
const upstream = fileURLToPath(new URL('./fixtures/recording-upstream.mjs', import.meta.url));

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
});

interface Call {
  path: string;
  /** The ledger was down for the whole call (stopped before it started, restarted after it ended). */
  down: boolean;
  outcome?: string;
}

/** Where the ledger is: `up`, or down since the outage number `outage`. */
const ledger = { down: false, outages: 0 };

/**
 * The refusal code of a failed MCP call: the JSON-RPC error's data.code, or
 * `HTTP 503 LEDGER_UNAVAILABLE` when the gateway refused the request itself (the
 * credential could not be re-checked: 503 temporarily_unavailable naming -32004),
 * else the error's message.
 */
function refusal(err: unknown): string {
  if (err instanceof McpError) return String((err.data as { code?: string } | undefined)?.code ?? err.code);
  const message = err instanceof Error ? err.message : String(err);
  if (/temporarily_unavailable/.test(message) && /-32004/.test(message)) return 'HTTP 503 LEDGER_UNAVAILABLE';
  return message;
}

describe('the ledger stops under gateway and SDK traffic', () => {
  it(
    'the gateway and the SDK fail closed; the SDK spool delivers everything exactly once after',
    async () => {
      const started = Date.now();
      const data = mkdtempSync(join(tmpdir(), 'custody-fault-outage-'));
      cleanups.push(() => rmSync(data, { recursive: true, force: true }));
      const port = await freePort();
      const args = ['--data', data, '--dev-issuer', '--policies', policies, '--port', String(port), '--quiet'];
      let server: Server = await startServer(args);
      cleanups.push(() => server.stop());
      const url = server.url;
      const key = readFileSync(join(data, 'admin.key'), 'utf8').trim();
      const callLog = join(data, 'upstream-calls.log');
      writeFileSync(callLog, '');

      const gateway = await Gateway.start(
        parseGatewayConfig({
          ledger: { url, apiKey: key, timeoutMs: 3000 },
          listen: { host: '127.0.0.1', port: 0 },
          policies,
          upstreams: { files: { command: process.execPath, args: [upstream], env: { CALL_LOG: callLog } } },
          tools: { 'files.read_file': { capture: 'full' } },
        }),
      );
      cleanups.push(() => gateway.close());
      const gatewayUrl = await gateway.listen();

      const tokens = () => {
        const r = cli(['dev-tokens', '--data', data, '--human', 'alice@example.com', '--agent', 'agent:fault', '--json']);
        expect(r.code, r.stderr).toBe(0);
        return JSON.parse(r.stdout) as { subject_token: string; actor_token: string };
      };
      const t = tokens();
      const open = async (c: Custody, objective: string) =>
        c.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.*', objective });

      // Two SDK agents, each with its own durable spool; two gateway agents.
      const sdks = [0, 1].map(
        (i) => new Custody({ url, apiKey: key, spool: new FileSpool({ dir: join(data, `spool-${i}`) }), requestTimeoutMs: 3000, delivery: { initialBackoffMs: 25, maxBackoffMs: 250 } }),
      );
      cleanups.push(() => Promise.all(sdks.map((s) => s.close())));
      const sdkSessions: Session[] = [];
      for (const [i, s] of sdks.entries()) sdkSessions.push(await open(s, `sdk agent ${i}`));
      const opener = new Custody({ url, apiKey: key });
      const gatewaySessions = [await open(opener, 'gateway agent 0'), await open(opener, 'gateway agent 1')];
      await opener.close();
      const mcp = await Promise.all(
        gatewaySessions.map(async (s) => {
          const client = new Client({ name: 'fault-agent', version: '1.0.0' });
          await client.connect(new StreamableHTTPClientTransport(new URL(`${gatewayUrl}/mcp`), { requestInit: { headers: { authorization: `Bearer ${s.credential}` } } }));
          cleanups.push(() => client.close());
          return client;
        }),
      );

      // Traffic: gateway calls, SDK tool calls, SDK events, until stopped.
      let stopping = false;
      const gatewayCalls: Call[] = [];
      const sdkCalls: Call[] = [];
      const ran = new Set<string>();
      const recorded: { session: string; id: string; spooled: boolean }[] = [];
      const unexpected: string[] = [];
      const outageAt = () => (ledger.down ? ledger.outages : -1);
      const loops = [
        ...mcp.map(async (client, a) => {
          for (let n = 0; !stopping; n++) {
            const call: Call = { path: `g${a}-${n}.txt`, down: false };
            const at = outageAt();
            try {
              await client.callTool({ name: 'files.read_file', arguments: { path: call.path } }, undefined, { timeout: 20_000 });
              call.outcome = 'ok';
            } catch (err) {
              call.outcome = refusal(err);
            }
            call.down = at !== -1 && outageAt() === at;
            gatewayCalls.push(call);
            await sleep(5);
          }
        }),
        ...sdkSessions.map(async (session, a) => {
          const read = session.tool('files.read_file', ({ path }: { path: string }) => {
            ran.add(path);
            return `contents of ${path}`;
          });
          for (let n = 0; !stopping; n++) {
            const r = await session.record({ type: 'model.output', data: { output: `step ${n}` } });
            recorded.push({ session: session.id, id: r.id, spooled: r.spooled });
            if (n % 3 === 0) {
              const call: Call = { path: `s${a}-${n}.txt`, down: false };
              const at = outageAt();
              try {
                await read({ path: call.path });
                call.outcome = 'ok';
              } catch (err) {
                if (!(err instanceof LedgerUnavailableError)) unexpected.push(`SDK tool call: ${String(err)}`);
                call.outcome = err instanceof LedgerUnavailableError ? 'SDK_LEDGER_UNAVAILABLE' : String(err);
              }
              call.down = at !== -1 && outageAt() === at;
              sdkCalls.push(call);
            }
            await sleep(5);
          }
        }),
      ];
      const traffic = Promise.all(loops);
      traffic.catch(() => undefined);

      const okCalls = (calls: Call[]) => calls.filter((c) => c.outcome === 'ok').length;
      const outages = soak(1, 5);
      try {
        for (let o = 0; o < outages; o++) {
          const g = okCalls(gatewayCalls);
          const e = recorded.filter((r) => !r.spooled).length;
          await waitFor('gateway calls and SDK events going through', () => okCalls(gatewayCalls) >= g + 6 && recorded.filter((r) => !r.spooled).length >= e + 6, 60_000);
          // The ledger stops: SIGKILL (and, in the long form, every other time SIGTERM).
          if (o % 2 === 0) await server.kill();
          else expect(await server.stop()).toBe(0);
          ledger.outages++;
          ledger.down = true;
          const refusedBefore = gatewayCalls.filter((c) => c.down).length;
          const spooledBefore = recorded.filter((r) => r.spooled).length;
          const sdkRefusedBefore = sdkCalls.filter((c) => c.down).length;
          await waitFor(
            'gateway calls refused, SDK tool calls refused and SDK events spooled while the ledger is down',
            () => gatewayCalls.filter((c) => c.down).length >= refusedBefore + 6 && recorded.filter((r) => r.spooled).length >= spooledBefore + 20 && sdkCalls.filter((c) => c.down).length >= sdkRefusedBefore + 3,
            60_000,
          );
          ledger.down = false;
          server = await startServer(args);
          expect(server.url).toBe(url);
        }
        // Back: calls go through again and the spools drain.
        const g = okCalls(gatewayCalls);
        await waitFor('gateway calls going through after the ledger came back', () => okCalls(gatewayCalls) >= g + 6, 60_000);
      } finally {
        stopping = true;
        await traffic;
      }
      await Promise.all(sdks.map((s) => s.flush(30_000)));
      expect(sdks.map((s) => s.pending())).toEqual([0, 0]);
      expect(await gateway.flushOutcomes()).toBe(0);
      expect(unexpected).toEqual([]);

      // Fail closed: every call started while the ledger was down was refused and never reached the upstream.
      const reached = new Set(readFileSync(callLog, 'utf8').split('\n').filter(Boolean));
      const downCalls = gatewayCalls.filter((c) => c.down);
      expect(downCalls.length).toBeGreaterThanOrEqual(6 * outages);
      expect(downCalls.filter((c) => c.outcome === 'ok' || reached.has(c.path))).toEqual([]);
      const codes = new Set(downCalls.map((c) => c.outcome));
      // docs/gateway.md, "Fail closed": -32004, in the JSON-RPC answer or, when the gateway cannot re-check the credential, in a 503.
      expect([...codes].filter((c) => c !== 'LEDGER_UNAVAILABLE' && c !== 'HTTP 503 LEDGER_UNAVAILABLE')).toEqual([]);
      expect(sdkCalls.filter((c) => c.down && (c.outcome === 'ok' || ran.has(c.path)))).toEqual([]);
      expect(sdkCalls.filter((c) => c.down).every((c) => c.outcome === 'SDK_LEDGER_UNAVAILABLE')).toBe(true);

      // …and whatever ran (upstream or SDK function) has its decision in the ledger.
      const decided = new Set<string>();
      for (const s of [...gatewaySessions, ...sdkSessions]) {
        let cursor: string | undefined;
        do {
          const res = await api(url, key, `/v1/events?session=${s.id}&type=tool.requested&order=asc&limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
          expect(res.status).toBe(200);
          const page = (await res.json()) as { events: { event: { data?: { arguments?: { path?: string } } } }[]; nextCursor?: string };
          for (const e of page.events) if (e.event.data?.arguments?.path !== undefined) decided.add(e.event.data.arguments.path);
          cursor = page.nextCursor;
        } while (cursor !== undefined);
      }
      expect([...reached].filter((p) => !decided.has(p))).toEqual([]);
      expect([...ran].filter((p) => !decided.has(p))).toEqual([]);
      expect(reached.size).toBe(okCalls(gatewayCalls));

      // Exactly once: each id the SDK handed out is in its session once (listLog refuses an id seen twice).
      const spooled = recorded.filter((r) => r.spooled).length;
      expect(spooled).toBeGreaterThanOrEqual(20 * outages);
      for (const s of sdkSessions) {
        const log = await listLog(url, key, `&session=${s.id}`);
        const mine = recorded.filter((r) => r.session === s.id);
        expect(mine.filter((r) => !log.has(r.id)).map((r) => r.id)).toEqual([]);
        // Nothing else of the SDK's: the session holds these events, its tool calls' entries and the authority's.
        expect((await listLog(url, key, `&session=${s.id}&type=model.output`)).size).toBe(mine.length);
      }
      expect((await api(url, key, '/v1/health')).status).toBe(200);
      console.log(
        `ledger-outage: ${outages} outage(s); gateway ${gatewayCalls.length} calls (${downCalls.length} while down, refused: ${[...codes].join(', ')}); ` +
          `SDK ${recorded.length} events (${spooled} spooled, each delivered once), ${sdkCalls.length} tool calls; ${Date.now() - started} ms`,
      );
    },
    soak(120_000, 600_000),
  );
});
