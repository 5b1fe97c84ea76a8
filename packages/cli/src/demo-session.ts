/**
 * A realistic demo session: Alice asks a refund agent to refund an order; the
 * agent looks the order up, delegates the refund to a payments sub-agent, a
 * policy requires approval, Bob approves, the refund runs, the sessions are sealed.
 * Deterministic when given a seeded random source, so it also makes test vectors.
 */
import { type EventDraft, type LoggedEvent, MemoryLog, type NoteSigner, type Principal, type RandomBytes } from '@custody/core';
import { v7 as uuidv7 } from 'uuid';

export interface DemoOptions {
  signer: NoteSigner;
  tenant?: string;
  /** Random bytes for salts and ids; pass a seeded one for reproducible output. */
  random?: RandomBytes;
  /** First event time; each later step is one second on. */
  start?: Date;
}

export interface DemoResult {
  log: MemoryLog;
  /** The parent session (refund agent), sealed. */
  session: string;
  /** The delegated payments session, sealed. */
  child: string;
  /** A third session left open (not sealed). */
  open: string;
  events: LoggedEvent[];
}

/** A deterministic random source from a 32-bit seed (xorshift; for vectors and demos only). */
export function seededRandom(seed: number): RandomBytes {
  let x = seed >>> 0 || 1;
  return (length) => {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      out[i] = x & 0xff;
    }
    return out;
  };
}

/** Builds the demo log. */
export function buildDemo(opts: DemoOptions): DemoResult {
  const random = opts.random ?? ((n: number) => globalThis.crypto.getRandomValues(new Uint8Array(n)));
  let clock = (opts.start ?? new Date('2026-11-22T09:00:00.000Z')).getTime();
  const tick = () => new Date((clock += 1000));
  const log = new MemoryLog({
    tenant: opts.tenant ?? 'default',
    signer: opts.signer,
    random,
    now: () => new Date(clock + 12),
  });
  const id = () => uuidv7({ msecs: clock, random: random(16) });
  const events: LoggedEvent[] = [];
  const add = (draft: Omit<EventDraft, 'id' | 'time'>): LoggedEvent => {
    const at = tick();
    const e = log.append({ ...draft, id: id(), time: at.toISOString() } as EventDraft);
    events.push(e);
    return e;
  };

  const alice: Principal = { type: 'human', id: 'alice@example.com', issuer: 'https://idp.example.com', verified: true };
  const bob: Principal = { type: 'human', id: 'bob@example.com', issuer: 'https://idp.example.com', verified: true };
  const refundAgent: Principal = { type: 'agent', id: 'refund-agent', issuer: 'spiffe://example.com', verified: true };
  const payAgent: Principal = { type: 'agent', id: 'payments-agent', issuer: 'spiffe://example.com', verified: true };
  const gateway: Principal = { type: 'service', id: 'custody-gateway', verified: true };
  const trace = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', flags: '01' };
  const workload = { method: 'jwt-svid' as const, verified: true, spiffeId: 'spiffe://example.com/ns/support/sa/refund-agent' };

  const session = 'sess-refund-1234';
  const child = 'sess-refund-1234.payments';
  const base = { initiator: alice, actor: refundAgent, workload, trace };
  const chain = [{ principal: refundAgent, scope: ['orders:read', 'refunds:create'], session }];
  const s = (extra: object = {}) => ({ id: session, ...extra });

  const opened = add({ ...base, type: 'session.opened', session: s({ objective: 'Refund order 1234: the item arrived damaged' }), chain });
  add({
    ...base,
    type: 'credential.issued',
    actor: { type: 'service', id: 'custody-authority', verified: true },
    session: s(),
    chain,
    cause: opened.envelope.id,
    credential: {
      jti: 'jti-7f3a9c',
      fingerprint: 'n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg',
      scope: ['orders:read', 'refunds:create'],
      audience: 'https://tools.example.com',
      issuedAt: new Date(clock).toISOString(),
      expiresAt: new Date(clock + 15 * 60_000).toISOString(),
      depth: 0,
    },
  });
  const prompt = add({ ...base, type: 'prompt.received', session: s(), chain, data: { prompt: 'Please refund order 1234, it arrived broken. My card ends 4242.' } });
  const lookup = add({
    ...base,
    type: 'tool.requested',
    session: s(),
    chain,
    cause: prompt.envelope.id,
    tool: { name: 'orders.lookup', server: 'orders-mcp', callId: 'call-1' },
    data: { arguments: { orderId: '1234' } },
  });
  add({
    ...base,
    actor: gateway,
    type: 'policy.decided',
    session: s(),
    chain,
    cause: lookup.envelope.id,
    tool: { name: 'orders.lookup', server: 'orders-mcp', callId: 'call-1' },
    decision: { effect: 'allow', policyVersion: 'sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae', policies: ['read-own-orders'], reasons: ['orders:read is in the session scope'], durationMs: 0.4 },
  });
  add({
    ...base,
    type: 'tool.completed',
    session: s(),
    chain,
    cause: lookup.envelope.id,
    tool: { name: 'orders.lookup', server: 'orders-mcp', callId: 'call-1' },
    data: { result: { orderId: '1234', total: 89.9, currency: 'EUR', status: 'delivered' }, durationMs: 41 },
  });
  const delegated = add({ ...base, type: 'session.delegated', session: s(), chain, data: { child, scope: ['refunds:create'] } });

  // The delegated payments session: narrower scope, its own chain.
  const childChain = [...chain, { principal: payAgent, scope: ['refunds:create'], session: child }];
  const cbase = { initiator: alice, actor: payAgent, trace, chain: childChain, workload: { ...workload, spiffeId: 'spiffe://example.com/ns/support/sa/payments-agent' } };
  const c = (extra: object = {}) => ({ id: child, ...extra });
  add({ ...cbase, type: 'session.opened', session: c({ parent: session, objective: 'Issue the refund for order 1234' }), cause: delegated.envelope.id });
  const refund = add({
    ...cbase,
    type: 'tool.requested',
    session: c(),
    tool: { name: 'refunds.create', server: 'payments-mcp', callId: 'call-2' },
    data: { arguments: { orderId: '1234', amount: 89.9, currency: 'EUR' } },
  });
  add({
    ...cbase,
    actor: gateway,
    type: 'policy.decided',
    session: c(),
    cause: refund.envelope.id,
    tool: { name: 'refunds.create', server: 'payments-mcp', callId: 'call-2' },
    decision: {
      effect: 'approval_required',
      policyVersion: 'sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae',
      policies: ['refunds-over-50-need-approval'],
      reasons: ['refund amount 89.90 EUR is over the 50.00 EUR limit'],
      durationMs: 0.6,
    },
  });
  const asked = add({
    ...cbase,
    actor: gateway,
    type: 'approval.requested',
    session: c(),
    cause: refund.envelope.id,
    tool: { name: 'refunds.create', server: 'payments-mcp', callId: 'call-2' },
    approval: { id: 'appr-51', status: 'pending', expiresAt: new Date(clock + 600_000).toISOString() },
  });
  add({
    ...cbase,
    actor: bob,
    type: 'approval.granted',
    session: c(),
    cause: asked.envelope.id,
    tool: { name: 'refunds.create', server: 'payments-mcp', callId: 'call-2' },
    approval: { id: 'appr-51', status: 'granted', approver: bob, source: { channel: 'console', ip: '10.0.4.17' }, reason: 'Photo of damage attached to the ticket' },
  });
  add({
    ...cbase,
    type: 'tool.completed',
    session: c(),
    cause: refund.envelope.id,
    tool: { name: 'refunds.create', server: 'payments-mcp', callId: 'call-2' },
    data: { result: { refundId: 're_9Q2', status: 'succeeded' }, durationMs: 230 },
  });
  seal(add, log, child, { ...cbase, session: c() });

  add({ ...base, type: 'model.output', session: s(), chain, data: { output: 'Your refund of 89.90 EUR for order 1234 has been issued.' } });
  seal(add, log, session, { ...base, chain, session: s() });

  // A session still open: it verifies as intact so far, not sealed.
  const open = 'sess-report-77';
  add({ ...base, type: 'session.opened', session: { id: open, objective: 'Summarise this week\u2019s refunds' }, chain: [{ principal: refundAgent, scope: ['orders:read'], session: open }] });
  add({ ...base, type: 'prompt.received', session: { id: open }, data: { prompt: 'How many refunds this week?' } });
  return { log, session, child, open, events };
}

function seal(add: (d: Omit<EventDraft, 'id' | 'time'>) => LoggedEvent, log: MemoryLog, id: string, base: Omit<EventDraft, 'id' | 'time' | 'type'>) {
  const head = log.sessionHead(id)!;
  add({ ...base, type: 'session.closed', seal: { count: head.seq + 1, head: head.head } });
}
