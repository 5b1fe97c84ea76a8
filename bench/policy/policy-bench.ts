/**
 * bench/policy: Cedar decisions per second and per-decision latency with a
 * realistic policy set (the example policies plus generated per-tool rules,
 * 20+ in all), preparsed once (PolicyEngine: preparsePolicySet slices,
 * statefulIsAuthorized; the schema is applied at load), against two rows measured
 * in the same run: the baseline, cedar-wasm's stateless isAuthorized, which parses
 * the policy text and schema on every call; and the floor, one statefulIsAuthorized
 * call with a one-policy set, an empty context and no entities, the least any
 * decision through cedar-wasm can cost.
 */
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

import { compilePolicySet, PolicyEngine, type PolicyRequest, readPolicyFolder } from '@custody/policy';
import { isAuthorized, preparsePolicySet, statefulIsAuthorized } from '@cedar-policy/cedar-wasm/nodejs';

import { fmt, machine, peakRssMiB, percentile, writeSection } from '../lib.js';

const quick = process.env['BENCH_QUICK'] === '1';
const N = quick ? 5_000 : 30_000;
const BASELINE_N = quick ? 500 : 3_000;

const examples = fileURLToPath(new URL('../../examples/policies', import.meta.url));
const files = readPolicyFolder(examples);
// Per-tool rules of a realistic deployment: each server's tools permitted to agents, some with argument checks.
const servers = ['crm', 'tickets', 'calendar', 'docs', 'search', 'git', 'ci', 'mail'];
let extra = '';
for (const s of servers) {
  extra += `@id("${s}-read")\npermit (principal is Agent, action == Action::"tools/call", resource in Server::"${s}")\nwhen { context.session.depth <= 2 };\n\n`;
  extra += `@id("${s}-bulk")\nforbid (principal, action == Action::"tools/call", resource in Server::"${s}")\nwhen { context.arguments has amount && context.arguments.amount > 10000 };\n\n`;
}
const set = compilePolicySet([...files, { name: '40-generated.cedar', text: extra }]);
const engine = new PolicyEngine(set);

const session = { id: 's-bench', scope: ['files.read_file', 'payments.transfer', 'crm.*', 'tickets.*'], expiresAt: '2099-01-01T00:00:00Z', depth: 0, initiator: 'alice@example.com' };
const requests: PolicyRequest[] = [
  { action: 'tools/call', principal: { type: 'agent', id: 'agent:a' }, target: { server: 'files', name: 'read_file' }, arguments: { path: '/srv/orders/1.json' }, session },
  { action: 'tools/call', principal: { type: 'agent', id: 'agent:a' }, target: { server: 'payments', name: 'transfer' }, arguments: { amount: 2500, currency: 'EUR', to: 'DE89370400440532013000' }, session },
  { action: 'tools/call', principal: { type: 'agent', id: 'agent:a' }, target: { server: 'payments', name: 'transfer' }, arguments: { amount: 250000, currency: 'EUR' }, session },
  { action: 'tools/call', principal: { type: 'agent', id: 'agent:a' }, target: { server: 'crm', name: 'lookup' }, arguments: {}, session },
  { action: 'tools/call', principal: { type: 'agent', id: 'agent:a' }, target: { server: 'git', name: 'push' }, arguments: {}, session },
];

interface Measured {
  perSec: number;
  /** Decisions per second of this process's CPU time: the rate on a core of its own, whatever else the machine runs. */
  perCpuSec: number;
  p50: number;
  p99: number;
}

function measure(n: number, fn: (i: number) => void): Measured {
  for (let i = 0; i < Math.min(500, n); i++) fn(i); // warm up
  const times = new Float64Array(n);
  const cpu = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    fn(i);
    times[i] = performance.now() - t;
  }
  const total = performance.now() - start;
  const used = process.cpuUsage(cpu);
  const xs = Array.from(times);
  return { perSec: n / (total / 1000), perCpuSec: n / ((used.user + used.system) / 1e6), p50: percentile(xs, 50), p99: percentile(xs, 99) };
}

// Baseline: the same decisions through the stateless API (policy text and schema parsed per call).
const policyText = Object.fromEntries(set.policies.map((p) => [p.id, p.text]));
function stateless(r: PolicyRequest): void {
  const a = isAuthorized({
    principal: { type: 'Agent', id: r.principal.id },
    action: { type: 'Action', id: r.action },
    resource: { type: 'Tool', id: `${r.target.server}.${r.target.name}` },
    context: {
      arguments: (r.arguments ?? {}) as Record<string, string | number>,
      session: { ...session, scope: [...session.scope], inScope: true, expiresAt: { __extn: { fn: 'datetime', arg: '2099-01-01T00:00:00.000Z' } } },
      approval: { status: 'none', granted: false },
      target: { name: `${r.target.server}.${r.target.name}`, server: r.target.server },
      now: { __extn: { fn: 'datetime', arg: new Date().toISOString() } },
    },
    entities: [{ uid: { type: 'Tool', id: `${r.target.server}.${r.target.name}` }, attrs: {}, parents: [{ type: 'Server', id: r.target.server }] }],
    policies: { staticPolicies: policyText },
    schema: set.schemaText,
    validateRequest: true,
  });
  if (a.type !== 'success') throw new Error(JSON.stringify(a.errors));
}

// The floor: the bare cost of one call into cedar-wasm (serde in and out, one trivial policy).
preparsePolicySet('bench:floor', { staticPolicies: { floor: 'permit (principal, action, resource);' } });
function floorCall(): void {
  const a = statefulIsAuthorized({
    principal: { type: 'Agent', id: 'agent:a' },
    action: { type: 'Action', id: 'tools/call' },
    resource: { type: 'Tool', id: 'files.read_file' },
    context: {},
    entities: [],
    preparsedPolicySetId: 'bench:floor',
    validateRequest: false,
  });
  if (a.type !== 'success') throw new Error(JSON.stringify(a.errors));
}

const effects: Record<string, number> = {};
for (const r of requests) {
  const d = engine.decide(r);
  effects[d.effect] = (effects[d.effect] ?? 0) + 1;
}
const loadBefore = loadavg()[0]!;
const base = measure(BASELINE_N, (i) => stateless(requests[i % requests.length]!));
const floor = measure(N, floorCall);
const pre = measure(N, (i) => engine.decide(requests[i % requests.length]!));
const allowOnly = measure(N, () => engine.decide(requests[0]!));
const approvalPath = measure(N, () => engine.decide(requests[2]!));

const row = (name: string, m: Measured) =>
  `| ${name} | ${fmt(m.perSec)} | ${fmt(m.perCpuSec)} | ${fmt(m.p50 * 1000)} µs | ${fmt(m.p99 * 1000)} µs | ${fmt(m.perSec / base.perSec, 1)}× | ${fmt(floor.perSec / m.perSec, 1)}× |`;
const worst = [pre, allowOnly, approvalPath].reduce((a, b) => ({ perSec: Math.min(a.perSec, b.perSec), perCpuSec: Math.min(a.perCpuSec, b.perCpuSec), p50: 0, p99: Math.max(a.p99, b.p99) }));
const loadAfter = loadavg()[0]!;
const met = worst.perSec >= 5000 && worst.p99 <= 0.5;
const body = `## Policy decisions (bench/policy)

${machine()}. ${set.policies.length} policies (examples/policies plus ${servers.length * 2} generated per-server rules), one core, ${fmt(N)} decisions per row (baseline ${fmt(BASELINE_N)}).
A mix of ${requests.length} requests (${Object.entries(effects).map(([k, v]) => `${v} ${k}`).join(', ')}), each with its arguments in \`context\`.
Each decision is at most one \`statefulIsAuthorized\` call, on the slice of the set whose scope matches, with only the context those policies read (and the resource entity only when one needs it).
Load average ${fmt(loadBefore, 1)} before and ${fmt(loadAfter, 1)} after the run (other work shares the cores); *per CPU-second* is the rate on a core of its own.
Target: p99 ≤ 500 µs and ≥ 5,000 decisions/s: ${met ? 'met on every engine row' : 'missed on at least one engine row'} (worst ${fmt(worst.perSec)}/s, ${fmt(worst.perCpuSec)} per CPU-second, p99 ${fmt(worst.p99 * 1000)} µs). Peak RSS ${fmt(peakRssMiB())} MiB.

| path | decisions/s | per CPU-second | p50 | p99 | vs baseline | time vs floor |
|---|---:|---:|---:|---:|---:|---:|
${row('baseline: stateless isAuthorized (parses policies + schema per call)', base)}
${row('floor: one statefulIsAuthorized, one trivial policy, empty context, no entities', floor)}
${row('PolicyEngine.decide, mixed requests (preparsed)', pre)}
${row('PolicyEngine.decide, allow only', allowOnly)}
${row('PolicyEngine.decide, approval path (one evaluation)', approvalPath)}
`;
process.stdout.write(body);
// BENCH_POLICY_DRY=1: print only, leave docs/benchmarks.md alone (for repeated runs while tuning).
if (process.env['BENCH_POLICY_DRY'] !== '1') writeSection('policy', body);
