/**
 * Fixtures for store tests: a small in-memory stand-in for the sequencer that
 * seals events with `@custody/core` and produces valid `SealedBatch`es (entries,
 * index rows, tree nodes, session rows, head and signed checkpoint), plus a
 * generator of realistic events.
 */
import {
  type EventDraft,
  MerkleFrontier,
  type NoteSigner,
  sealEvent,
  signCheckpoint,
  signerFromSeed,
  type StoredNode,
} from '@custody/core';
import { v7 as uuidv7 } from 'uuid';

import { entryRowOf, nextSessionRow } from '../entry-row.js';
import type { EntryRow, LogHead, SealedBatch, SessionRow } from '../store.js';

/** The fixed Ed25519 seed of fixture logs (test key: never use it for anything else). */
export const FIXTURE_SEED: Uint8Array = Uint8Array.from({ length: 32 }, (_, i) => i + 1);

/** Settings of a fixture log. */
export interface FixtureLogOptions {
  tenant: string;
  /** Resume after a stored head (its sessions are unknown unless given). */
  head?: LogHead;
  /** Known session states when resuming. */
  sessions?: Iterable<SessionRow>;
  /** Signs checkpoints; default: `test.custody/<tenant>` with FIXTURE_SEED. */
  signer?: NoteSigner;
  /** `recordedAt` of the first batch; every batch is one second later. Default 2026-01-01T00:00:00Z. */
  start?: Date;
}

/**
 * A tenant log in memory that hands out batches the way the sequencer would.
 * @example
 * const log = new FixtureLog({ tenant: 'acme' });
 * await store.append(log.append(scenarioDrafts({ sessions: 3 })), 0);
 */
export class FixtureLog {
  readonly tenant: string;
  readonly signer: NoteSigner;
  #frontier: MerkleFrontier;
  #sessions: Map<string, SessionRow>;
  #clock: number;
  #head: LogHead | undefined;

  constructor(opts: FixtureLogOptions) {
    this.tenant = opts.tenant;
    this.signer = opts.signer ?? signerFromSeed(`test.custody/${opts.tenant}`, FIXTURE_SEED);
    this.#frontier = opts.head ? new MerkleFrontier(opts.head.size, opts.head.edge) : new MerkleFrontier();
    this.#head = opts.head;
    this.#sessions = new Map([...(opts.sessions ?? [])].map((s) => [s.id, { ...s }]));
    this.#clock = (opts.start ?? new Date('2026-01-01T00:00:00Z')).getTime();
  }

  /** Entries so far. */
  get size(): number {
    return this.#frontier.size;
  }

  /** The head after the last batch (undefined before the first). */
  get head(): LogHead | undefined {
    return this.#head;
  }

  /** The state of a session, as the store should hold it. */
  session(id: string): SessionRow | undefined {
    const s = this.#sessions.get(id);
    return s && { ...s };
  }

  /** Every session's state. */
  get sessions(): SessionRow[] {
    return [...this.#sessions.values()].map((s) => ({ ...s }));
  }

  /** A copy at the same state: builds a competing batch from the same head. */
  fork(): FixtureLog {
    const f = new FixtureLog({
      tenant: this.tenant,
      signer: this.signer,
      sessions: this.#sessions.values(),
      start: new Date(this.#clock),
      ...(this.#head ? { head: this.#head } : {}),
    });
    return f;
  }

  /**
   * Seals `drafts` into the next batch and advances the log. A `session.closed`
   * draft gets its seal (count and head of the chain) here, as the sequencer does.
   */
  append(drafts: readonly EventDraft[]): SealedBatch {
    const recordedAt = new Date(this.#clock).toISOString();
    this.#clock += 1000;
    const entries: EntryRow[] = [];
    const nodes: StoredNode[] = [];
    const touched = new Map<string, SessionRow>();
    for (const draft of drafts) {
      const sid = draft.session?.id;
      const prior = sid === undefined ? undefined : this.#sessions.get(sid);
      const toSeal: EventDraft =
        draft.type === 'session.closed' && prior !== undefined ? { ...draft, seal: { count: prior.seq + 1, head: prior.digest } } : draft;
      const sealed = sealEvent(toSeal, {
        tenant: this.tenant,
        recordedAt,
        ...(sid !== undefined ? { seq: (prior?.seq ?? 0) + 1, prev: prior?.digest ?? null } : {}),
      });
      const index = this.#frontier.size;
      for (const n of this.#frontier.append(sealed.leafHash)) nodes.push(n);
      entries.push(entryRowOf(sealed, index));
      if (sid !== undefined) {
        const next = nextSessionRow(prior, sealed, index, recordedAt);
        this.#sessions.set(sid, next);
        touched.set(sid, next);
      }
    }
    const size = this.#frontier.size;
    const rootHash = this.#frontier.root();
    const note = signCheckpoint({ origin: this.signer.name, size, rootHash, extensions: [] }, this.signer);
    const head: LogHead = { size, edge: this.#frontier.edge(), rootHash };
    this.#head = head;
    return {
      tenant: this.tenant,
      entries,
      nodes,
      sessions: [...touched.values()].map((s) => ({ ...s })),
      head,
      checkpoint: { size, rootHash, note },
    };
  }
}

/**
 * Seals drafts into one batch on top of `log` (a shorthand for `log.append`).
 * @example
 * const batch = makeBatch(new FixtureLog({ tenant: 'acme' }), scenarioDrafts({ sessions: 2 }));
 */
export function makeBatch(log: FixtureLog, drafts: readonly EventDraft[]): SealedBatch {
  return log.append(drafts);
}

/** Settings of the scenario generator. */
export interface ScenarioOptions {
  /** Sessions to open. */
  sessions: number;
  /** Tool calls per session (default 2). */
  toolCalls?: number;
  /** Close each session with a seal (default: every other session). */
  seal?: boolean | ((i: number) => boolean);
  /** Sessionless `admin.*` / `external.*` events to mix in (default 1 per 4 sessions). */
  sessionless?: number;
  /** Prefix of session ids (default a random one, so scenarios never collide). */
  prefix?: string;
  /** Source clock of the first event (default 2026-01-01T00:00:00Z); each event is 137 ms later. */
  start?: Date;
  /** Pseudo-random seed for the choice of people, tools and outcomes (default 1). */
  seed?: number;
  /**
   * Draw people, agents and tools from generated pools of about this many humans
   * (agents: a fifth, tools: a twentieth) instead of SCENARIO_PEOPLE, for large logs.
   */
  crowd?: number;
}

/** The principals the scenario generator draws from. */
export const SCENARIO_PEOPLE = {
  humans: ['alice@example.com', 'bob@example.com', 'carol@example.com'],
  approvers: ['dave@example.com', 'erin@example.com'],
  agents: ['agent:triage', 'agent:billing', 'agent:research'],
  subAgents: ['agent:sub-search', 'agent:sub-writer'],
  tools: ['github.create_issue', 'slack.post_message', 'db.query', 'stripe.refund'],
  objectives: ['Refund order 4411 for ACME Corp', 'Triage the Überlingen outage', 'Summarise open GitHub issues', 'Rotate the Slack webhook'],
} as const;

/**
 * Realistic events (each entry ~0.5–1 KB): sessions that open, take prompts,
 * request tools, get policy decisions (some needing approval), complete or fail,
 * produce output and (some) close with a seal; delegated sub-sessions; and a few
 * sessionless admin and imported events. Sessions interleave as they would live.
 */
export function scenarioDrafts(opts: ScenarioOptions): EventDraft[] {
  const rnd = mulberry32(opts.seed ?? 1);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const people: People = opts.crowd === undefined ? SCENARIO_PEOPLE : crowdOf(opts.crowd);
  const prefix = opts.prefix ?? `s-${Math.floor(Math.random() * 2 ** 40).toString(36)}`;
  let clock = (opts.start ?? new Date('2026-01-01T00:00:00Z')).getTime();
  const time = (): string => {
    clock += 137;
    // Sources send different precisions; the store must compare them as times.
    const iso = new Date(clock).toISOString();
    const r = rnd();
    if (r < 0.2) return `${iso.slice(0, 19)}Z`;
    if (r < 0.4) return `${iso.slice(0, 23)}417Z`;
    return iso;
  };
  const hex = (n: number) => Array.from({ length: n }, () => '0123456789abcdef'[Math.floor(rnd() * 16)]).join('').replace(/^0/, '1');
  const toolCalls = opts.toolCalls ?? 2;
  const sealIt = (i: number) => (typeof opts.seal === 'function' ? opts.seal(i) : (opts.seal ?? i % 2 === 0));

  // One queue of drafts per session; interleaved round-robin at the end.
  const queues: EventDraft[][] = [];
  for (let i = 0; i < opts.sessions; i++) {
    const sessionId = `${prefix}-${i}`;
    const human = pick(people.humans);
    const delegated = i % 5 === 4;
    const agent = delegated ? pick(people.subAgents) : pick(people.agents);
    const initiator = { type: 'human' as const, id: human, verified: true };
    const actor = { type: 'agent' as const, id: agent, verified: true };
    // A delegated session carries its chain (root first); a direct one needs none.
    const chain = delegated
      ? [
          { principal: { type: 'human' as const, id: human } },
          { principal: { type: 'agent' as const, id: pick(people.agents) }, session: `${prefix}-${i - 1}` },
          { principal: { type: 'agent' as const, id: agent } },
        ]
      : undefined;
    const workload = { method: 'jwt-svid' as const, verified: true, spiffeId: `spiffe://example.org/sa/${agent.replace(/[^a-z0-9-]/g, '-')}` };
    const traceId = hex(32);
    const base = (type: EventDraft['type'], extra: Partial<EventDraft> = {}): EventDraft => ({
      id: uuidv7(),
      type,
      time: time(),
      session: { id: sessionId },
      initiator,
      actor,
      ...(chain ? { chain } : {}),
      // Not every agent runs with an attested workload or sends trace context.
      ...(i % 3 !== 2 ? { workload } : {}),
      ...(i % 2 === 0 ? { trace: { traceId, spanId: hex(16) } } : {}),
      ...extra,
    });
    const q: EventDraft[] = [];
    const objective = opts.crowd === undefined ? pick(people.objectives) : `${pick(people.objectives)} (ticket ${hex(6)})`;
    q.push(
      base(delegated ? 'session.delegated' : 'session.opened', {
        session: { id: sessionId, objective, ...(delegated ? { parent: `${prefix}-${i - 1}` } : {}) },
        data: { model: 'claude-sonnet' },
      }),
    );
    q.push(base('prompt.received', { data: { prompt: `Please ${objective.toLowerCase()} and report back with the details.` } }));
    for (let c = 0; c < toolCalls; c++) {
      const tool = { name: pick(people.tools), callId: `call-${i}-${c}` };
      const requested = base('tool.requested', { tool, data: { arguments: { orderId: 4400 + c } } });
      q.push(requested);
      const r = rnd();
      const effect = r < 0.6 ? 'allow' : r < 0.8 ? 'approval_required' : 'deny';
      q.push(
        base('policy.decided', {
          tool,
          cause: requested.id,
          decision: { effect, policyVersion: 'sha256:3f1c9a0e', policies: [`policy-${tool.name}`], reasons: [] },
        }),
      );
      if (effect === 'deny') continue;
      if (effect === 'approval_required') {
        const approver = { type: 'human' as const, id: pick(people.approvers), verified: true };
        const approvalId = `appr-${i}-${c}`;
        q.push(base('approval.requested', { tool, cause: requested.id, approval: { id: approvalId, status: 'pending' } }));
        const granted = rnd() < 0.7;
        q.push(
          base(granted ? 'approval.granted' : 'approval.denied', {
            tool,
            cause: requested.id,
            approval: { id: approvalId, status: granted ? 'granted' : 'denied', approver, source: { channel: 'slack' } },
          }),
        );
        if (!granted) continue;
      }
      const ok = rnd() < 0.85;
      q.push(base(ok ? 'tool.completed' : 'tool.failed', { tool, cause: requested.id, data: { result: ok ? { rows: 3 } : { error: 'timeout' } } }));
    }
    q.push(base('model.output', { data: { output: `Done: ${objective}.` } }));
    if (sealIt(i)) q.push(base('session.closed', { data: { reason: 'completed' } }));
    queues.push(q);
  }
  const sessionless = opts.sessionless ?? Math.floor(opts.sessions / 4);
  for (let k = 0; k < sessionless; k++) {
    queues.push([
      k % 2 === 0
        ? { id: uuidv7(), type: 'admin.key_created', time: time(), actor: { type: 'service', id: 'svc:custody-admin' }, data: { keyId: `key-${k}`, role: 'ingest' } }
        : {
            id: uuidv7(),
            type: 'external.okta.login',
            time: time(),
            actor: { type: 'human', id: pick(people.humans) },
            workload: { method: 'oidc', verified: false, issuer: 'https://okta.example.com', subject: `sub-${k}` },
            data: { ip: '203.0.113.7' },
          },
    ]);
  }
  // Round-robin, so sessions interleave in the log as they would live.
  const out: EventDraft[] = [];
  for (let round = 0; out.length < queues.reduce((n, q) => n + q.length, 0); round++) {
    for (const q of queues) if (round < q.length) out.push(q[round]!);
  }
  return out;
}

/** Drafts of `n` events in fresh sessions (a bulk filler for large batches). */
export function bulkDrafts(n: number, opts: Omit<ScenarioOptions, 'sessions'> = {}): EventDraft[] {
  const out: EventDraft[] = [];
  let seed = opts.seed ?? 1;
  while (out.length < n) {
    for (const d of scenarioDrafts({ ...opts, seed: seed++, sessions: 8, prefix: `${opts.prefix ?? 'bulk'}-${seed}-${Math.floor(Math.random() * 2 ** 40).toString(36)}` })) {
      if (out.length < n) out.push(d);
    }
  }
  return out;
}

type People = { readonly [K in keyof typeof SCENARIO_PEOPLE]: readonly string[] };
const crowds = new Map<number, People>();

/** Generated pools of people, agents and tools for large logs. */
function crowdOf(n: number): People {
  let c = crowds.get(n);
  if (c === undefined) {
    const list = (k: number, f: (i: number) => string) => Array.from({ length: Math.max(1, Math.round(k)) }, (_, i) => f(i));
    c = {
      humans: list(n, (i) => `user-${i}@example.com`),
      approvers: list(n / 20, (i) => `approver-${i}@example.com`),
      agents: list(n / 5, (i) => `agent:worker-${i}`),
      subAgents: list(n / 10, (i) => `agent:sub-${i}`),
      tools: list(n / 20, (i) => `tool-${i}.call`),
      objectives: SCENARIO_PEOPLE.objectives,
    };
    crowds.set(n, c);
  }
  return c;
}

/** A small seeded PRNG (mulberry32), so fixture data and benchmark parameters are reproducible. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
