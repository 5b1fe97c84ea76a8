import { describe, expect, it } from 'vitest';

import { checkDisclosures, commitFields, createDisclosure, formatPointer, listCommitments, parseDisclosure, parsePointer, revealFields } from './commitment.js';
import { canonicalBytes } from './canonical-json.js';
import { sealEvent } from './entry.js';
import { FormatError } from './errors.js';

const draft = {
  id: '019ab3a0-0000-7000-8000-000000000001',
  type: 'tool.completed' as const,
  time: '2026-11-22T09:00:00.000Z',
  session: { id: 's1' },
  initiator: { type: 'human' as const, id: 'alice@example.com' },
  actor: { type: 'agent' as const, id: 'a1' },
  tool: { name: 'refunds.create' },
  data: { arguments: { orderId: '1234' }, result: { ok: true }, durationMs: 41 },
};

describe('commitments and disclosures', () => {
  it('commits the sensitive fields; disclosures open them', () => {
    const s = sealEvent(draft, { tenant: 'acme', recordedAt: '2026-11-22T09:00:00.001Z', seq: 1, prev: null });
    expect(s.disclosures).toHaveLength(2);
    expect(listCommitments(s.envelope).map((c) => c.path)).toEqual(['/data/arguments', '/data/result']);
    expect(JSON.stringify(s.envelope)).not.toContain('1234');
    const check = checkDisclosures(s.envelope, s.disclosures);
    expect(check).toEqual({
      disclosed: [
        { path: '/data/arguments', value: { orderId: '1234' } },
        { path: '/data/result', value: { ok: true } },
      ],
      redacted: [],
      failures: [],
    });
    expect(revealFields(s.envelope, s.disclosures).data).toEqual(draft.data);
  });

  it('redacting (dropping a disclosure) leaves the entry bytes unchanged', () => {
    const s = sealEvent(draft, { tenant: 'acme', recordedAt: '2026-11-22T09:00:00.001Z', seq: 1, prev: null });
    const before = canonicalBytes(s.envelope);
    const check = checkDisclosures(s.envelope, s.disclosures.slice(1));
    expect(check.redacted).toEqual(['/data/arguments']);
    expect(canonicalBytes(s.envelope)).toEqual(before);
    expect(canonicalBytes(s.envelope)).toEqual(s.entry);
  });

  it('a disclosure cannot be moved to another field', () => {
    const s = sealEvent(draft, { tenant: 'acme', recordedAt: '2026-11-22T09:00:00.001Z', seq: 1, prev: null });
    const foreign = createDisclosure('/data/result', { ok: false }).disclosure;
    const check = checkDisclosures(s.envelope, [foreign, 'not-base64!']);
    expect(check.failures.map((f) => f.code)).toEqual(['DISCLOSURE_MISMATCH', 'DISCLOSURE_MALFORMED']);
    const elsewhere = createDisclosure('/data/other', 1).disclosure;
    expect(checkDisclosures(s.envelope, [elsewhere]).failures[0]!.code).toBe('DISCLOSURE_MISMATCH');
  });

  it('uses 128-bit salts and fresh ones each time', () => {
    const a = parseDisclosure(createDisclosure('/data/prompt', 'x').disclosure);
    const b = parseDisclosure(createDisclosure('/data/prompt', 'x').disclosure);
    expect(a.salt).toHaveLength(22);
    expect(a.salt).not.toBe(b.salt);
  });

  it('handles JSON Pointer escaping', () => {
    expect(parsePointer('/data/a~1b~0c')).toEqual(['data', 'a/b~c']);
    expect(formatPointer(['data', 'a/b~c', 0])).toBe('/data/a~1b~0c/0');
    expect(() => parsePointer('data')).toThrow(FormatError);
    expect(() => parsePointer('/a~2')).toThrow(FormatError);
    const { committed, disclosures } = commitFields({ data: { list: ['x', 'y'] } }, ['/data/list/1', '/data/missing']);
    expect(committed.data.list[0]).toBe('x');
    expect(disclosures).toHaveLength(1);
  });
});

describe('commitFields copy-on-write and prepareEvent', () => {
  it('never changes the caller\'s objects', () => {
    const input = { data: { arguments: { orderId: '1' }, other: { keep: true } }, list: [1] };
    const before = JSON.stringify(input);
    const { committed } = commitFields(input, ['/data/arguments']);
    expect(JSON.stringify(input)).toBe(before);
    expect(committed.data.other).toBe(input.data.other);
    expect(committed.data).not.toBe(input.data);
  });

  it('prepareEvent refuses what sealEvent refuses, naming the field', async () => {
    const { prepareEvent } = await import('./entry.js');
    const params = { tenant: 'acme', recordedAt: '2026-11-22T09:00:00.001Z', seq: 1, prev: null };
    expect(() => prepareEvent(draft, params)).not.toThrow();
    expect(() => prepareEvent({ ...draft, data: { prompt: 'a\ud800b' } }, params)).toThrowError(expect.objectContaining({ code: 'JSON_INVALID', field: 'data.prompt' }));
    expect(() => prepareEvent({ ...draft, tool: undefined } as never, params)).toThrowError(expect.objectContaining({ code: 'ENVELOPE_INVALID', field: 'tool' }));
    expect(() => sealEvent({ ...draft, data: { prompt: 'a\ud800b' } }, params)).toThrow(FormatError);
  });
});
