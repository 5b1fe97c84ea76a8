/**
 * Expiry of unanswered approvals: `approval.expired` is recorded even when the
 * ledger refuses the first attempts, exactly once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Ledger, SqliteStore } from '@custody/ledger';
import { afterAll, describe, expect, it } from 'vitest';

import { Approvals } from './approvals.js';
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

describe('approval expiry', () => {
  it('retries approval.expired at each sweep while the ledger refuses it, and records it once', async () => {
    const store = new SqliteApprovalStore({ path: join(dir, 'ledger.db') });
    await store.migrate();
    let now = new Date('2026-11-22T10:00:00.000Z');
    let refusals = 2;
    // The real ledger, whose append fails twice (as a full disk or a lost database would).
    const flaky = new Proxy(ledger, {
      get(target, prop, receiver) {
        if (prop === 'append') {
          return async (...args: Parameters<Ledger['append']>) => {
            if (refusals-- > 0) throw new Error('the store is unavailable');
            return target.append(...args);
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
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
});
