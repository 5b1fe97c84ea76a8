/**
 * OCSF export: every event Custody maps validates against the vendored OCSF 1.5.0
 * definitions, with the documented mapping; the validator catches what it must.
 */
import { type EventDraft, sealEvent } from '@custody/core';
import { describe, expect, it } from 'vitest';

import { csvCell, csvHeader, csvLine, formatExportLine } from './export-formats.js';
import { ocsfClassOf, ocsfFacts, toOcsf, validateOcsf } from './ocsf.js';

const who = {
  initiator: { type: 'human' as const, id: 'ivy@example.com', name: 'Ivy', issuer: 'https://idp.example.com', verified: true },
  actor: { type: 'agent' as const, id: 'agent:refunds', name: 'Refund agent' },
};
const t = '2026-11-22T06:00:00.000Z';
const drafts: EventDraft[] = [
  { id: '01a20000-0000-7000-8000-000000000001', type: 'tool.requested', time: t, session: { id: 's-1' }, ...who, tool: { name: 'stripe.refund', server: 'stripe-mcp', callId: 'c1' }, workload: { method: 'jwt-svid', verified: true, spiffeId: 'spiffe://example.com/agent' }, data: { arguments: { amount: 5 } } },
  { id: '01a20000-0000-7000-8000-000000000002', type: 'policy.decided', time: t, session: { id: 's-1' }, ...who, tool: { name: 'stripe.refund' }, decision: { effect: 'deny', policyVersion: 'v1', policies: ['p1'], reasons: ['over limit'] } },
  { id: '01a20000-0000-7000-8000-000000000003', type: 'tool.completed', time: t, session: { id: 's-1' }, ...who, tool: { name: 'stripe.refund' }, data: { result: { ok: true } } },
  { id: '01a20000-0000-7000-8000-000000000004', type: 'tool.failed', time: t, session: { id: 's-1' }, ...who, tool: { name: 'stripe.refund' } },
  { id: '01a20000-0000-7000-8000-000000000005', type: 'credential.issued', time: t, session: { id: 's-1' }, ...who, credential: { jti: 'j-1', fingerprint: 'x'.repeat(43), scope: ['tool:stripe.refund'], issuedAt: t, expiresAt: '2026-11-22T07:00:00.000Z' } },
  { id: '01a20000-0000-7000-8000-000000000006', type: 'policy.decided', time: t, session: { id: 's-1' }, ...who, tool: { name: 'db.read' }, decision: { effect: 'allow', policyVersion: 'v1', policies: [], reasons: [] } },
];
let seq = 0;
let prev: string | null = null;
const envelopes = drafts.map((d) => {
  seq++;
  const s = sealEvent(d, { tenant: 'acme', recordedAt: t, seq, prev });
  prev = s.digest;
  return s.envelope;
});

describe('toOcsf', () => {
  it('maps every tool call, decision and credential to an event that validates against the vendored OCSF 1.5.0 definitions', () => {
    for (const env of envelopes) {
      const o = toOcsf(env, { origin: 'custody.example/acme', index: 3, digest: 'd' });
      expect(o, env.type).toBeDefined();
      expect(validateOcsf(o!), env.type).toEqual([]);
    }
  });

  it('maps tool calls to API Activity (6003) and decisions and credentials to Authorize Session (3003), people where the issue says', () => {
    const call = toOcsf(envelopes[0]!)!;
    expect(call).toMatchObject({ class_uid: 6003, category_uid: 6, type_uid: 600399, activity_id: 99, activity_name: 'tool.requested', api: { operation: 'stripe.refund', service: { name: 'stripe-mcp' }, request: { uid: 'c1' } } });
    expect(call['actor']).toMatchObject({ user: { uid: 'ivy@example.com', name: 'Ivy', type_id: 1 }, app_name: 'Refund agent', app_uid: 'agent:refunds', invoked_by: 'agent:refunds', session: { uid: 's-1', issuer: 'https://idp.example.com' } });
    expect(call['src_endpoint']).toEqual({ uid: 'spiffe://example.com/agent', name: 'agent:refunds' });
    expect(call['metadata']).toMatchObject({ version: '1.5.0', uid: drafts[0]!.id, tenant_uid: 'acme', correlation_uid: 's-1', product: { name: 'Custody' } });
    const deny = toOcsf(envelopes[1]!)!;
    expect(deny).toMatchObject({ class_uid: 3003, category_uid: 3, type_uid: 300301, status_id: 2, user: { uid: 'ivy@example.com' }, privileges: ['tool:stripe.refund'], session: { uid: 's-1' } });
    expect(toOcsf(envelopes[2]!)).toMatchObject({ status_id: 1 });
    expect(toOcsf(envelopes[3]!)).toMatchObject({ status_id: 2 });
    expect(toOcsf(envelopes[4]!)).toMatchObject({ class_uid: 3003, status_id: 1, privileges: ['tool:stripe.refund'], session: { credential_uid: 'j-1', expiration_time: Date.parse('2026-11-22T07:00:00.000Z') } });
    expect(ocsfClassOf('session.opened')).toBeUndefined();
    expect(ocsfClassOf('approval.granted')).toBeUndefined();
  });

  it('names its source and the classes it vendors', () => {
    const f = ocsfFacts();
    expect(f.source).toMatchObject({ repository: 'https://github.com/ocsf/ocsf-schema', tag: '1.5.0' });
    expect(f.source.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(Object.values(f.classes).map((c) => c.class_uid).sort()).toEqual([3003, 6003]);
  });
});

describe('validateOcsf', () => {
  const good = () => structuredClone(toOcsf(envelopes[0]!)!) as Record<string, unknown>;
  it('catches a missing required attribute, an unknown attribute, a bad enum, a bad type and inconsistent ids', () => {
    const a = good();
    delete a['api'];
    expect(validateOcsf(a).map((i) => i.path)).toContain('$.api');
    const b = good();
    (b['actor'] as Record<string, unknown>)['agent_name'] = 'x';
    expect(validateOcsf(b).map((i) => i.path)).toContain('$.actor.agent_name');
    const c = good();
    c['severity_id'] = 42;
    expect(validateOcsf(c).map((i) => i.path)).toContain('$.severity_id');
    const d = good();
    d['time'] = '2026-11-22';
    expect(validateOcsf(d).map((i) => i.path)).toContain('$.time');
    const e = good();
    e['type_uid'] = 600301;
    expect(validateOcsf(e).map((i) => i.path)).toContain('$.type_uid');
    const f = good();
    f['src_endpoint'] = {};
    expect(validateOcsf(f).map((i) => i.message).join()).toContain('at least one');
    expect(validateOcsf({ class_uid: 1 })[0]!.path).toBe('$.class_uid');
    const g = structuredClone(toOcsf(envelopes[1]!)!) as Record<string, unknown>;
    g['group'] = { name: 'x' };
    expect(validateOcsf(g).map((i) => i.message).join()).toContain('exactly one of privileges, group');
  });
});

describe('CSV and NDJSON lines', () => {
  it('quotes per RFC 4180 and defuses formulas', () => {
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('=HYPERLINK("x")')).toBe(`"'=HYPERLINK(""x"")"`);
    expect(csvCell('-1')).toBe("'-1");
    expect(csvCell(undefined)).toBe('');
    const line = csvLine({ index: 0, event: envelopes[1]!, redacted: ['/data/x'], digest: 'd' });
    expect(line.split(',')).toHaveLength(csvHeader().split(',').length);
    expect(line).toContain('deny');
    expect(JSON.parse(formatExportLine('ndjson', { index: 0, event: envelopes[0]!, redacted: [], digest: 'd' })!)).toMatchObject({ index: 0, digest: 'd' });
    expect(formatExportLine('ocsf', { index: 0, event: { ...envelopes[0]!, type: 'session.opened' }, redacted: [], digest: 'd' })).toBeUndefined();
  });
});
