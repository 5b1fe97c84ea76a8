import { verifyBundle, canonicalJson, sha256, toBase64url } from '@custody/core';
import { describe, expect, it } from 'vitest';

import { COMPLIANCE_FRAMEWORKS, complianceHtml, complianceReport } from './compliance.js';
import { Ledger } from './ledger.js';
import { SqliteStore } from './sqlite/sqlite-store.js';
import { scenarioDrafts } from './testing/batch-fixtures.js';

const tenant = 'acme';

async function seeded(): Promise<Ledger> {
  const ledger = await Ledger.open({ store: new SqliteStore({ path: ':memory:' }), logSeed: new Uint8Array(32).fill(4), originHost: 'custody.test' });
  const drafts = scenarioDrafts({ sessions: 40, toolCalls: 3, seed: 11, prefix: 'c' });
  for (let i = 0; i < drafts.length; i += 200) {
    const res = await ledger.append(tenant, drafts.slice(i, i + 200));
    expect(res.filter((r) => r.status === 'rejected')).toEqual([]);
  }
  return ledger;
}

/** Counts a filter's matches by paging the ordinary query API: the "direct query". */
async function countQuery(ledger: Ledger, filter: Parameters<Ledger['query']>[1]): Promise<number> {
  let n = 0;
  let cursor: string | undefined;
  for (;;) {
    const page = await ledger.query(tenant, filter, { limit: 500, ...(cursor ? { cursor } : {}) });
    n += page.items.length;
    if (page.nextCursor === undefined) return n;
    cursor = page.nextCursor;
  }
}

describe('the compliance report', () => {
  it("numbers match direct queries, and example bundles hash to what /bundle serves", async () => {
    const ledger = await seeded();
    const report = await complianceReport(ledger, tenant, { framework: 'owasp-agentic' });
    const m = report.measures;
    const head = await ledger.latestCheckpoint(tenant);
    expect(report.checkpoint.size).toBe(head.size);
    expect(m.entries).toBe(head.size);
    for (const type of ['tool.requested', 'policy.decided', 'session.opened', 'session.closed', 'approval.granted']) {
      expect(m.byType[type] ?? 0, type).toBe(await countQuery(ledger, { type }));
    }
    for (const effect of ['allow', 'deny', 'approval_required'] as const) {
      expect(m.decisions[effect], effect).toBe(await countQuery(ledger, { decision: effect }));
    }
    let unapproved = 0;
    let cursor: string | undefined;
    do {
      const page = await ledger.unapprovedCalls(tenant, { limit: 1000, ...(cursor ? { cursor } : {}) });
      unapproved += page.rows.length;
      cursor = page.nextCursor;
    } while (cursor !== undefined);
    expect(m.gaps.unapprovedCalls.count).toBe(unapproved);
    const sessions = await ledger.listSessions(tenant, {}, { limit: 1000 });
    expect(m.sessions.sessions).toBe(sessions.items.length);
    expect(m.sessions.sealed).toBe(sessions.items.filter((s) => s.sealed).length);

    const asi02 = report.controls.find((c) => c.id === 'ASI02')!;
    expect(asi02.evidence.find((e) => e.measure.startsWith('tool calls recorded'))!.value).toBe(m.byType['tool.requested']);
    expect(asi02.status).toBe(unapproved > 0 ? 'gap' : 'evidence');
    for (const x of Object.values(m.gaps).flatMap((g) => g.examples)) {
      const bundle = await ledger.bundle(tenant, x.session, { disclosures: false });
      expect(x.bundleSha256).toBe(toBase64url(sha256(new TextEncoder().encode(canonicalJson(bundle)))));
      expect(verifyBundle(bundle, { verifierKey: ledger.verifierKey(tenant) }).ok).toBe(true);
    }
    await ledger.close();
  });

  it('covers every framework, renders HTML, and refuses an unknown one', async () => {
    const ledger = await seeded();
    for (const framework of COMPLIANCE_FRAMEWORKS) {
      const r = await complianceReport(ledger, tenant, { framework, since: '2026-01-01T00:00:00Z', bundleHashes: false });
      expect(r.controls.length).toBeGreaterThan(3);
      const html = complianceHtml(r, 'https://custody.example');
      expect(html).toContain(r.frameworkTitle.replace(/&/g, '&amp;'));
      expect(html).not.toContain('undefined');
    }
    await expect(complianceReport(ledger, tenant, { framework: 'iso-42001' })).rejects.toThrow(RangeError);
    await ledger.close();
  });
});
