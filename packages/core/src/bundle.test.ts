import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { verifyBundle } from './bundle.js';
import { fromBase64, toBase64 } from './bytes.js';
import type { EventDraft } from './entry.js';
import { MemoryLog } from './memory-log.js';
import { generateSigner } from './note.js';
import * as browserCodec from './codec-browser.js';
import * as nodeCodec from './codec-node.js';
import { sha256 as browserSha256 } from './sha256-browser.js';
import { sha256 as nodeSha256 } from './sha256-node.js';

const signer = generateSigner('custody.test/acme');

function session(log: MemoryLog, id: string, n: number, sealIt = true): void {
  const base = {
    time: '2026-11-22T09:00:00.000Z',
    session: { id },
    initiator: { type: 'human' as const, id: 'alice@example.com' },
    actor: { type: 'agent' as const, id: 'a1' },
  };
  let k = 0;
  const id7 = () => `019ab3a0-0000-7000-8000-${(log.size * 1000 + k++).toString(16).padStart(12, '0')}`;
  log.append({ ...base, id: id7(), type: 'session.opened' });
  for (let i = 1; i < n; i++) {
    log.append({ ...base, id: id7(), type: 'tool.requested', tool: { name: 't' }, data: { arguments: { i } } } as EventDraft);
  }
  if (sealIt) {
    const head = log.sessionHead(id)!;
    log.append({ ...base, id: id7(), type: 'session.closed', seal: { count: head.seq + 1, head: head.head } });
  }
}

describe('verifyBundle', () => {
  it('reports complete for a sealed session, with a structured report', () => {
    const log = new MemoryLog({ tenant: 'acme', signer });
    session(log, 's1', 5);
    session(log, 's2', 3, false);
    const report = verifyBundle(log.bundle('s1'), { verifierKey: signer.verifierText });
    expect(report.ok).toBe(true);
    expect(report.verdict).toBe('complete');
    expect(report.key).toEqual({ source: 'given', matchesBundle: true, text: signer.verifierText });
    expect(report.checkpoint).toMatchObject({ origin: 'custody.test/acme', size: 9 });
    expect(report.sessions).toEqual([{ id: 's1', ok: true, sealed: true, entries: 6 }]);
    expect(report.records.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(report.records[1]!.disclosed).toEqual(['/data/arguments']);
    expect(report.summary).toMatch(/^OK: 6 records included in custody\.test\/acme at size 9/);
    const open = verifyBundle(log.bundle('s2'));
    expect(open.verdict).toBe('intact');
    expect(open.key.source).toBe('bundle');
    expect(open.summary).toContain('intact so far, not sealed');
  });

  it('names the fields of a bundle that no proof covers (ignored), without letting them change the verdict', () => {
    const log = new MemoryLog({ tenant: 'acme', signer });
    session(log, 's1', 3);
    const clean = verifyBundle(log.bundle('s1'), { verifierKey: signer.verifierText });
    expect(clean.ignored).toBeUndefined();
    const b = log.bundle('s1') as unknown as Record<string, unknown> & { records: Record<string, unknown>[] };
    b['notes'] = 'approved by the CFO';
    b['\u001b[2Jx\u202e'] = 1;
    b.records[1]!['comment'] = 'looks fine';
    const report = verifyBundle(b, { verifierKey: signer.verifierText });
    expect(report.verdict).toBe('complete');
    expect(report.ignored).toEqual(['notes', '??2Jx?', 'records[1].comment']);
    expect(report.summary).toContain('; ignored fields no proof covers: notes, ??2Jx?, records[1].comment');
    // At most 20 are named.
    for (let i = 0; i < 30; i++) b[`extra${i}`] = i;
    expect(verifyBundle(b).ignored).toHaveLength(20);
  });

  it('verifies the same bundle before and after redaction, reporting redacted fields', () => {
    const log = new MemoryLog({ tenant: 'acme', signer });
    session(log, 's1', 4);
    const before = log.bundle('s1');
    const after = structuredClone(before);
    delete after.records[2]!.disclosures;
    const a = verifyBundle(before, { verifierKey: signer.verifierText });
    const b = verifyBundle(after, { verifierKey: signer.verifierText });
    expect(a.verdict).toBe('complete');
    expect(b.verdict).toBe('complete');
    expect(a.records[2]!.redacted).toEqual([]);
    expect(b.records[2]!.redacted).toEqual(['/data/arguments']);
    expect(before.records[2]!.entry).toBe(after.records[2]!.entry);
  });

  it('verifies a 2,000-entry session', () => {
    const log = new MemoryLog({ tenant: 'acme', signer });
    session(log, 'big', 2000);
    const r = verifyBundle(log.bundle('big'), { verifierKey: signer.verifierText });
    expect(r.verdict).toBe('complete');
    expect(r.records).toHaveLength(2001);
  });

  it('never throws and never passes a mutated bundle', () => {
    const log = new MemoryLog({ tenant: 'acme', signer });
    session(log, 's1', 4);
    const golden = log.bundle('s1');
    fc.assert(
      fc.property(fc.nat(golden.records.length - 1), fc.nat(4000), fc.integer({ min: 1, max: 255 }), fc.constantFrom('entry', 'proof', 'checkpoint'), (rec, pos, x, part) => {
        const b = structuredClone(golden);
        if (part === 'entry') {
          const bytes = fromBase64(b.records[rec]!.entry);
          bytes[pos % bytes.length]! ^= x;
          b.records[rec]!.entry = toBase64(bytes);
        } else {
          const text = part === 'proof' ? b.records[rec]!.proof : b.checkpoint;
          const i = pos % text.length;
          const mutated = text.slice(0, i) + String.fromCharCode(text.charCodeAt(i) ^ (x & 0x7f || 1)) + text.slice(i + 1);
          if (part === 'proof') b.records[rec]!.proof = mutated;
          else b.checkpoint = mutated;
        }
        const r = verifyBundle(b, { verifierKey: signer.verifierText });
        expect(r.ok).toBe(false);
        expect(r.failures.length).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.anything(), (junk) => {
        expect(verifyBundle(junk).ok).toBe(false);
      }),
    );
  });
});

describe('sha256 backends', () => {
  it('node:crypto and @noble/hashes agree', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (data) => {
        expect(toBase64(nodeSha256(data))).toBe(toBase64(browserSha256(data)));
      }),
    );
  });
});

describe('codec backends', () => {
  it('Buffer and @scure/base give the same base64 and base64url, of views too', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (data) => {
        const view = data.subarray(data.length >> 2);
        expect(nodeCodec.base64Encode(view)).toBe(browserCodec.base64Encode(view));
        expect(nodeCodec.base64urlEncode(view)).toBe(browserCodec.base64urlEncode(view));
      }),
    );
  });
});
