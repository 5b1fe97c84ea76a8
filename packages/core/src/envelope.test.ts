import { describe, expect, it } from 'vitest';

import { CUSTODY_ONLY_TYPES, EVENT_TYPES, envelopeIssues, isCustodyOnlyType, isEventType, validateEnvelope } from './envelope.js';

const base = {
  v: 1,
  id: '019ab3a0-0000-7000-8000-000000000001',
  tenant: 'acme',
  type: 'tool.requested',
  time: '2026-11-22T09:00:00.000Z',
  recordedAt: '2026-11-22T09:00:00.012Z',
  session: { id: 's1', seq: 2, prev: 'S8xLbBGY5-hf2Yge5uSfT8TTWy4XxbWrnTFgq6l39II' },
  initiator: { type: 'human', id: 'alice@example.com', verified: true },
  actor: { type: 'agent', id: 'refund-agent' },
  tool: { name: 'orders.lookup' },
  data: { arguments: { $commitment: 'S8xLbBGY5-hf2Yge5uSfT8TTWy4XxbWrnTFgq6l39II' } },
};

describe('envelope', () => {
  it('accepts a valid envelope', () => {
    expect(envelopeIssues(base)).toEqual([]);
    expect(validateEnvelope(base).type).toBe('tool.requested');
  });

  it('names the field in every error', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ ...base, v: 2 }, 'v'],
      [{ ...base, id: 'not-a-uuid' }, 'id'],
      [{ ...base, session: { ...base.session, seq: 1.5 } }, 'session.seq'],
      [{ ...base, session: { ...base.session, seq: 1 } }, 'session.prev'],
      [{ ...base, actor: { type: 'agent', id: '' } }, 'actor.id'],
      [{ ...base, chain: [{ principal: { type: 'x', id: 'a' } }] }, 'chain[0].principal.type'],
      [{ ...base, tool: undefined }, 'tool'],
      [{ ...base, type: 'session.closed', tool: undefined }, 'seal'],
      [{ ...base, seal: { count: 2, head: base.session.prev } }, 'seal'],
      [{ ...base, workload: { method: 'oidc', verified: true } }, 'workload'],
      [{ ...base, workload: { method: 'jwt-svid', verified: true, spiffeId: 'https://x' } }, 'workload.spiffeId'],
      [{ ...base, recordedAt: '2026-11-22T09:00:00+01:00' }, 'recordedAt'],
      [{ ...base, time: '2026-02-30T09:00:00Z' }, 'time'],
      [{ ...base, data: { arguments: { $commitment: 'x' } } }, 'data.arguments'],
      [{ ...base, data: { a: [{ $commitment: base.session.prev, b: 1 }] } }, 'data.a[0]'],
      [{ ...base, credential: { jti: 'j', fingerprint: 'nope' } }, 'credential.fingerprint'],
    ];
    for (const [env, field] of cases) {
      const issues = envelopeIssues(env);
      expect(issues.map((i) => i.field), JSON.stringify(env)).toContain(field);
      expect(() => validateEnvelope(env)).toThrowError(expect.objectContaining({ code: 'ENVELOPE_INVALID' }));
    }
  });

  it('allows admin.* and external.* without a session', () => {
    const { session: _s, initiator: _i, tool: _t, ...rest } = base;
    expect(envelopeIssues({ ...rest, type: 'admin.key_created' })).toEqual([]);
    expect(envelopeIssues({ ...rest, type: 'external.otel.span' })).toEqual([]);
    expect(envelopeIssues({ ...rest, type: 'prompt.received' }).map((i) => i.field)).toEqual(['session', 'initiator']);
  });

  it('knows the taxonomy', () => {
    expect(isEventType('approval.expired')).toBe(true);
    expect(isEventType('admin.retention.changed')).toBe(true);
    expect(isEventType('admin.')).toBe(false);
    expect(isEventType('tool.exploded')).toBe(false);
  });

  it("names the types only Custody's own services record: answered approvals, credentials, revocations and expiries, and admin.*", () => {
    expect(EVENT_TYPES.filter((t) => isCustodyOnlyType(t))).toEqual(['session.revoked', 'session.expired', 'approval.granted', 'approval.denied', 'approval.expired', 'credential.issued', 'credential.revoked', 'credential.expired']);
    expect(CUSTODY_ONLY_TYPES.size).toBe(8);
    expect(isCustodyOnlyType('admin.key_created')).toBe(true);
    for (const t of ['session.opened', 'session.delegated', 'session.closed', 'tool.requested', 'policy.decided', 'approval.requested', 'tool.completed', 'external.x']) expect(isCustodyOnlyType(t), t).toBe(false);
  });
});
