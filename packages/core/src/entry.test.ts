import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { fromUtf8 } from './bytes.js';
import { canonicalBytes } from './canonical-json.js';
import { type EventDraft, placeEvent, prepareEvent, sealEvent } from './entry.js';
import { validateEnvelope } from './envelope.js';
import { FormatError } from './errors.js';

const seeded = (seed: number) => (n: number) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (seed * 31 + i * 17) & 0xff;
  return out;
};

const base: EventDraft = {
  id: '01936f6e-0000-7000-8000-000000000001',
  type: 'tool.requested',
  time: '2026-11-22T09:00:00.000Z',
  session: { id: 's-1', objective: 'refund order 1234' },
  initiator: { type: 'human', id: 'alice@example.com' },
  actor: { type: 'agent', id: 'agent:refunds' },
  tool: { name: 'refunds.create' },
  data: { arguments: { orderId: '1234', amount: 12.5 }, note: 'x' },
};

const D = 'A'.repeat(43);

describe('prepareEvent and placeEvent', () => {
  it('place(prepare(draft)) is byte for byte the canonical JSON of the placed envelope', () => {
    const p = prepareEvent(base, { tenant: 'acme', random: seeded(1) });
    const s = placeEvent(p, { recordedAt: '2026-11-22T09:00:00.123Z', seq: 7, prev: D });
    expect(s.entry).toEqual(canonicalBytes(validateEnvelope(s.envelope)));
    expect(s.envelope.session).toMatchObject({ id: 's-1', seq: 7, prev: D });
    expect(fromUtf8(s.entry)).not.toContain('custody-slot');
  });

  it('places a seal, and sessionless events have only the recordedAt slot', () => {
    const closed = prepareEvent({ ...base, type: 'session.closed', tool: undefined } as EventDraft, { tenant: 'acme' });
    expect(closed.slots.map((x) => x.name).sort()).toEqual(['prev', 'recordedAt', 'sealCount', 'sealHead', 'seq']);
    const s = placeEvent(closed, { recordedAt: '2026-11-22T09:00:00.000Z', seq: 3, prev: D, seal: { count: 2, head: D } });
    expect(s.entry).toEqual(canonicalBytes(validateEnvelope(s.envelope)));
    expect(() => placeEvent(closed, { recordedAt: '2026-11-22T09:00:00.000Z', seq: 3, prev: D })).toThrowError(expect.objectContaining({ field: 'seal' }));
    const admin = prepareEvent({ id: base.id, type: 'admin.key_created', time: base.time, actor: { type: 'service', id: 'custody' } }, { tenant: 'acme' });
    expect(admin.slots.map((x) => x.name)).toEqual(['recordedAt']);
  });

  it('refuses placed values the envelope does not allow', () => {
    const p = prepareEvent(base, { tenant: 'acme' });
    expect(() => placeEvent(p, { recordedAt: 'yesterday', seq: 1, prev: null })).toThrow(FormatError);
    expect(() => placeEvent(p, { recordedAt: base.time, seq: 2, prev: null })).toThrowError(expect.objectContaining({ field: 'session.prev' }));
    expect(() => placeEvent(p, { recordedAt: base.time, seq: 0, prev: D })).toThrowError(expect.objectContaining({ field: 'session.seq' }));
  });

  it('leaves the draft as it was (it may be frozen) and hands back the stand-ins, not the slots', () => {
    const deepFreeze = <T>(v: T): T => {
      if (v !== null && typeof v === 'object') {
        for (const x of Object.values(v)) deepFreeze(x);
        Object.freeze(v);
      }
      return v;
    };
    const draft = deepFreeze(structuredClone({ ...base, data: { ...base.data, prompt: 'refund it', nested: { list: [1, { a: 'b' }] } } }));
    const before = JSON.stringify(draft);
    const p = prepareEvent(draft, { tenant: 'acme', random: seeded(2) });
    expect(JSON.stringify(draft)).toBe(before);
    expect(p.envelope).toMatchObject({ recordedAt: '2000-01-01T00:00:00.000Z', session: { seq: 1, prev: null } });
    expect(JSON.stringify(p.envelope)).not.toContain('custody-slot');
    expect(p.slots.map((x) => x.name)).toEqual(['recordedAt', 'prev', 'seq']);
    // Placing the same prepared event twice (as a retry after a head conflict does) gives the same bytes.
    const place = () => placeEvent(p, { recordedAt: '2026-11-22T09:00:00.123Z', seq: 2, prev: D }).entry;
    expect(place()).toEqual(place());
    const closed = prepareEvent(deepFreeze({ ...draft, type: 'session.closed', tool: undefined, seal: { count: 9, head: D } }) as EventDraft, { tenant: 'acme' });
    expect(closed.envelope.seal).toEqual({ count: 1, head: 'A'.repeat(43) });
  });

  it('cannot be fooled by event content that looks like a slot', () => {
    const p = prepareEvent({ ...base, data: { note: '\u0000custody-slot:x:seq' } }, { tenant: 'acme' });
    const s = placeEvent(p, { recordedAt: base.time, seq: 1, prev: null });
    expect(s.entry).toEqual(canonicalBytes(validateEnvelope(s.envelope)));
  });

  it('agrees with direct canonicalisation for arbitrary data, keys and positions', () => {
    const key = fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k !== '__proto__' && k !== '$commitment');
    const json = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null), fc.array(tie('v'), { maxLength: 3 }), fc.dictionary(key, tie('v'), { maxKeys: 4 })),
    })).v;
    fc.assert(
      fc.property(fc.dictionary(key, json, { maxKeys: 6 }), fc.integer({ min: 1, max: 2 ** 40 }), (data, seq) => {
        const draft = { ...base, data } as EventDraft;
        let p;
        try {
          p = prepareEvent(draft, { tenant: 'acme', random: seeded(seq) });
        } catch (err) {
          expect(err).toBeInstanceOf(FormatError); // e.g. a lone surrogate
          return;
        }
        const s = placeEvent(p, { recordedAt: '2026-01-02T03:04:05.6Z', seq, prev: seq === 1 ? null : D });
        expect(s.entry).toEqual(canonicalBytes(validateEnvelope(s.envelope)));
        expect(s).toEqual(sealEvent(draft, { tenant: 'acme', recordedAt: '2026-01-02T03:04:05.6Z', seq, prev: seq === 1 ? null : D, random: seeded(seq) }));
      }),
      { numRuns: 300 },
    );
  });
});
