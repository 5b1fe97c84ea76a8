/**
 * Expiry of unanswered approvals: `approval.expired` is recorded even when the
 * ledger refuses the first attempts, exactly once. A decision whose decider died
 * (or whose answer was lost) after the ledger took it stands: it is recovered,
 * never expired or decided a second time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Ledger, SqliteStore } from '@custody/ledger';
import { afterAll, describe, expect, it } from 'vitest';

import { CLAIM_STALE_MS } from './approval-store.js';
import { Approvals, decisionEventId } from './approvals.js';
import { SqliteApprovalStore } from './sqlite-approval-store.js';

const dir = mkdtempSync(join(tmpdir(), 'custody-approval-expiry-'));
const ledger = await Ledger.open({ store: new SqliteStore({ path: join(dir, 'ledger.db') }), logSeed: new Uint8Array(32).fill(9), originHost: 'custody.test' });
afterAll(async () => {
  await ledger.close();
  rmSync(dir, { recursive: true, force: true });
});

const context = {
  session: { id: 'ses-9', scope: ['payments.transfer'], expiresAt: '2026-11-22T12:00:00.000Z', depth: 0 },
  initiator: { type: 'human' as const, id: 'alice@example.com' },
  agent: { type: 'agent' as const, id: 'agent:refunds' },
  chain: [],
  capture: 'full' as const,
  policies: ['transfer-needs-approval'],
  reasons: ['transfers need a human'],
  policyVersion: 'sha256:x',
  requestedBy: 'key:x',
};

/** The real ledger, each append going through `wrap` (which calls `append` to commit, or not). */
function withAppend(wrap: (append: () => ReturnType<Ledger['append']>) => ReturnType<Ledger['append']>): Ledger {
  return new Proxy(ledger, {
    get(target, prop, receiver) {
      if (prop === 'append') return (...args: Parameters<Ledger['append']>) => wrap(() => target.append(...args));
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

describe('approval expiry', () => {
  it('retries approval.expired at each sweep while the ledger refuses it, and records it once', async () => {
    const store = new SqliteApprovalStore({ path: join(dir, 'ledger.db') });
    await store.migrate();
    let now = new Date('2026-11-22T10:00:00.000Z');
    let refusals = 2;
    // The real ledger, whose append fails twice (as a full disk or a lost database would).
    const flaky = withAppend(async (append) => {
      if (refusals-- > 0) throw new Error('the store is unavailable');
      return append();
    });
    const logs: string[] = [];
    const approvals = new Approvals({ store, sweepIntervalMs: 0, ttlSeconds: 60, now: () => now, log: (m) => logs.push(m) }, flaky);
    const { record } = approvals.prepare('acme', { sessionId: 'ses-9', tool: 'payments.transfer', argumentsDigest: 'z'.repeat(43), callEvent: 'call', context });
    await approvals.open(record);

    now = new Date('2026-11-22T10:02:00.000Z');
    expect((await approvals.sweep()).expired).toEqual([record.id]);
    expect((await approvals.sweep()).expired).toEqual([]);
    expect(logs.filter((l) => l.includes('retrying at the next sweep'))).toHaveLength(2);
    await approvals.sweep();
    await approvals.sweep();

    const { items: events } = await ledger.query('acme', { type: 'approval.expired' }, { limit: 10 });
    expect(events.map((e) => e.event.approval?.id)).toEqual([record.id]);
    expect((await approvals.get('acme', record.id)).status).toBe('expired');
    await approvals.close();
  });

  it('a decision the ledger took stands: after a lost answer, after its node died, and a claim with no entry reverts', async () => {
    const store = new SqliteApprovalStore({ path: join(dir, 'ledger.db') });
    await store.migrate();
    let now = new Date('2026-11-23T10:00:00.000Z');
    let loseAnswers = 0;
    // The real ledger, which commits and then loses its answer (as a dropped connection would).
    const lossy = withAppend(async (append) => {
      const results = await append();
      if (loseAnswers-- > 0) throw new Error('the answer was lost');
      return results;
    });
    const approvals = new Approvals({ store, sweepIntervalMs: 0, ttlSeconds: 300, now: () => now }, lossy);
    const open = async () => {
      const { record } = approvals.prepare('acme', { sessionId: 'ses-9', tool: 'payments.transfer', argumentsDigest: 'z'.repeat(43), callEvent: 'call', context });
      await approvals.open(record);
      return record.id;
    };
    const bob = { type: 'human' as const, id: 'bob@example.com' };
    const carol = { type: 'human' as const, id: 'carol@example.com' };
    const decisions = async (id: string) => (await ledger.query('acme', { type: 'approval.*' }, { limit: 100 })).items.filter((e) => e.event.approval?.id === id && e.event.type !== 'approval.requested').map((e) => e.event.type);

    // 1. Bob's grant is committed, but his answer is lost: the claim reverts. Carol's later
    //    denial finds Bob's entry in the ledger (same entry id): his grant stands, she gets 409.
    const a = await open();
    loseAnswers = 1;
    await expect(approvals.decide('acme', a, { status: 'granted', approver: bob, source: {} })).rejects.toThrow('the answer was lost');
    expect((await approvals.get('acme', a)).status).toBe('pending');
    await expect(approvals.decide('acme', a, { status: 'denied', approver: carol, source: {} })).rejects.toMatchObject({ code: 'APPROVAL_NOT_PENDING', message: expect.stringContaining('granted by bob@example.com') });
    expect(await approvals.get('acme', a)).toMatchObject({ status: 'granted', approver: bob });
    // Bob retrying gets his own decision back.
    const b = await open();
    loseAnswers = 1;
    await expect(approvals.decide('acme', b, { status: 'denied', approver: bob, source: {} })).rejects.toThrow('the answer was lost');
    expect(await approvals.decide('acme', b, { status: 'denied', approver: bob, source: {} })).toMatchObject({ status: 'denied', approver: bob });
    expect(await decisions(a)).toEqual(['approval.granted']);
    expect(await decisions(b)).toEqual(['approval.denied']);

    // 2. A node claimed c, recorded the grant and died before settling; a node claimed d and
    //    died before recording anything. Past the claim's staleness (and c's expiry): c is
    //    granted, not expired; d is pending again and can be decided.
    const c = await open();
    const d = await open();
    const claimedAt = now.toISOString();
    expect(await store.claim('acme', c, { status: 'granted', at: claimedAt, approver: bob, source: {} })).toBe(true);
    expect(await store.claim('acme', d, { status: 'granted', at: claimedAt, approver: bob, source: {} })).toBe(true);
    await ledger.append('acme', [{ id: decisionEventId('acme', c), type: 'approval.granted', time: claimedAt, session: { id: 'ses-9' }, initiator: context.initiator, actor: bob, tool: { name: 'payments.transfer', server: 'payments' }, approval: { id: c, status: 'granted', approver: bob, source: {} }, data: {} }]);
    now = new Date(now.getTime() + CLAIM_STALE_MS + 1000);
    expect(await approvals.sweep()).toEqual({ expired: [], recovered: [c, d] });
    expect(await approvals.get('acme', c)).toMatchObject({ status: 'granted', approver: bob });
    expect((await approvals.get('acme', d)).status).toBe('pending');
    expect(await approvals.decide('acme', d, { status: 'denied', approver: carol, source: {} })).toMatchObject({ status: 'denied', approver: carol });
    now = new Date(now.getTime() + 600_000);
    await approvals.sweep();
    expect(await decisions(c)).toEqual(['approval.granted']);
    expect(await decisions(d)).toEqual(['approval.denied']);
    await approvals.close();
  });
});
