/**
 * The approval stores on the real SQLite and PostgreSQL of this machine: one
 * conditional change per state, so of concurrent deciders, users and expirers
 * exactly one wins.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { postgresTestEnv, storeExcluded } from '@custody/ledger/testing';
import { afterAll, describe, expect, it } from 'vitest';

import { type ApprovalRecord, type ApprovalStore, CLAIM_STALE_MS } from './approval-store.js';
import { PostgresApprovalStore } from './postgres-approval-store.js';
import { SqliteApprovalStore } from './sqlite-approval-store.js';

const pg = await postgresTestEnv();
const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

const BACKENDS: { name: string; skip: string | false; make: () => Promise<ApprovalStore> }[] = [
  {
    name: 'sqlite',
    skip: storeExcluded('sqlite') ?? false,
    make: async () => {
      const dir = mkdtempSync(join(tmpdir(), 'custody-approvals-'));
      const s = new SqliteApprovalStore({ path: join(dir, 'ledger.db') });
      closers.push(async () => {
        await s.close();
        rmSync(dir, { recursive: true, force: true });
      });
      return s;
    },
  },
  {
    name: 'postgres',
    skip: pg.skip,
    make: async () => {
      const schema = await pg.freshSchema();
      const s = new PostgresApprovalStore({ connectionString: pg.url, schema });
      closers.push(async () => {
        await s.close();
        await pg.dropSchema(schema);
      });
      return s;
    },
  },
];

const at = (ms: number) => new Date(Date.parse('2026-11-22T10:00:00.000Z') + ms).toISOString();

function approval(id: string, expiresIn = 60_000): ApprovalRecord {
  return {
    tenant: 'acme',
    id,
    sessionId: 'ses-1',
    tool: 'payments.transfer',
    argumentsDigest: 'x'.repeat(43),
    status: 'pending',
    createdAt: at(0),
    expiresAt: at(expiresIn),
    callEvent: 'call',
    requestEvent: 'req',
    context: {
      session: { id: 'ses-1', scope: ['payments.transfer'], expiresAt: at(3_600_000), depth: 0 },
      initiator: { type: 'human', id: 'alice@example.com' },
      agent: { type: 'agent', id: 'agent:refunds' },
      chain: [],
      capture: 'full',
      policies: ['p'],
      reasons: ['r'],
      policyVersion: 'sha256:x',
      requestedBy: 'key:x',
    },
  };
}

const decision = (ms: number) => ({ status: 'granted' as const, at: at(ms), approver: { type: 'human' as const, id: 'bob@example.com' }, source: { ip: '127.0.0.1' } });

describe.each(BACKENDS)('approval store on $name', ({ skip, make }) => {
  it.skipIf(skip !== false)('decides once, is used once, and expires what nobody answered', async () => {
    const s = await make();
    await s.migrate();
    await s.migrate();
    await s.create(approval('apr-1'));
    await s.create(approval('apr-2', 1000));
    // Two deciders at once: exactly one claims it.
    const claims = await Promise.all([s.claim('acme', 'apr-1', decision(10)), s.claim('acme', 'apr-1', { ...decision(10), status: 'denied' })]);
    expect(claims.filter(Boolean)).toHaveLength(1);
    expect((await s.get('acme', 'apr-1'))!.status).toBe('pending'); // claimed, not yet recorded
    await s.settle('acme', 'apr-1', true);
    const decided = (await s.get('acme', 'apr-1'))!;
    expect(['granted', 'denied']).toContain(decided.status);
    expect(decided.approver).toEqual({ type: 'human', id: 'bob@example.com' });
    if (decided.status === 'granted') {
      const binding = { sessionId: 'ses-1', tool: 'payments.transfer', argumentsDigest: 'x'.repeat(43) };
      expect(await s.consume('acme', 'apr-1', { ...binding, tool: 'payments.other' }, at(20), at(60_000))).toBe(false);
      const uses = await Promise.all([s.consume('acme', 'apr-1', binding, at(20), at(60_000)), s.consume('acme', 'apr-1', binding, at(20), at(60_000))]);
      expect(uses.filter(Boolean)).toHaveLength(1);
    }
    // A claim that could not be recorded reverts to pending.
    expect(await s.claim('acme', 'apr-2', decision(10))).toBe(true);
    await s.settle('acme', 'apr-2', false);
    expect((await s.get('acme', 'apr-2'))!.status).toBe('pending');
    expect(await s.claim('acme', 'apr-2', decision(5000))).toBe(false); // too late
    const expired = await s.expireDue(new Date(at(2000)), 10);
    expect(expired.map((a) => a.id)).toEqual(['apr-2']);
    expect(await s.expireDue(new Date(at(2000)), 10)).toEqual([]);
    expect((await s.list('acme', { status: 'expired' }, 10)).approvals.map((a) => a.id)).toEqual(['apr-2']);
    // A stale claim is listed for recovery, and settles as the ledger recorded it.
    await s.create(approval('apr-3', 600_000));
    expect(await s.claim('acme', 'apr-3', decision(10))).toBe(true);
    expect(await s.staleClaims(new Date(at(10 + CLAIM_STALE_MS - 1)), 10)).toEqual([]);
    expect(await s.staleClaims(new Date(at(10 + CLAIM_STALE_MS)), 10)).toEqual([{ tenant: 'acme', id: 'apr-3', expiresAt: at(600_000) }]);
    const carol = { type: 'human' as const, id: 'carol@example.com' };
    expect(await s.settle('acme', 'apr-3', { status: 'denied', at: at(5), approver: carol, source: { ip: '10.0.0.1' }, reason: 'no' })).toBe(true);
    expect(await s.get('acme', 'apr-3')).toMatchObject({ status: 'denied', decidedAt: at(5), approver: carol, source: { ip: '10.0.0.1' }, reason: 'no' });
    expect(await s.settle('acme', 'apr-3', true)).toBe(false);
    expect(await s.staleClaims(new Date(at(10 + CLAIM_STALE_MS)), 10)).toEqual([]);
    const page = await s.list('acme', {}, 1);
    expect(page.approvals).toHaveLength(1);
    expect((await s.list('acme', {}, 1, page.nextCursor)).approvals).toHaveLength(1);
  });
});
