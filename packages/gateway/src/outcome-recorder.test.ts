import type { EventDraft } from '@custody/core';
import { describe, expect, it } from 'vitest';

import { CustodyHttpError } from './custody-client.js';
import { OutcomeRecorder } from './outcome-recorder.js';

const ev = (i: number): EventDraft => ({ id: `0190${String(i).padStart(4, '0')}`, type: 'tool.completed', time: new Date(0).toISOString(), actor: { type: 'agent', id: 'a' }, cause: `c${i}` }) as EventDraft;

describe('OutcomeRecorder', () => {
  it('batches the outcomes of one turn into one append', async () => {
    const appended: string[][] = [];
    const r = new OutcomeRecorder(async (events) => void appended.push(events.map((e) => e.id)), () => undefined);
    for (let i = 0; i < 5; i++) r.record(ev(i));
    expect(await r.drain(1000)).toBe(0);
    expect(appended).toEqual([[0, 1, 2, 3, 4].map((i) => ev(i).id)]);
  });

  it('keeps outcomes while the ledger is away and delivers each once it is back, in order', async () => {
    const delivered: string[] = [];
    let down = 3;
    const logs: string[] = [];
    const r = new OutcomeRecorder(
      async (events) => {
        if (down-- > 0) throw new TypeError('fetch failed');
        delivered.push(...events.map((e) => e.id));
      },
      (m) => logs.push(m),
      { initialBackoffMs: 5, maxBackoffMs: 20, maxBatch: 2 },
    );
    for (let i = 0; i < 5; i++) r.record(ev(i));
    expect(await r.drain(5000)).toBe(0);
    expect(delivered).toEqual([0, 1, 2, 3, 4].map((i) => ev(i).id));
    expect(logs.filter((l) => l.includes('retrying'))).toHaveLength(3);
  });

  it('drops a batch the ledger refuses as invalid (4xx), and goes on with the rest', async () => {
    const delivered: string[] = [];
    const logs: string[] = [];
    const r = new OutcomeRecorder(
      async (events) => {
        if (events.some((e) => e.id === ev(0).id)) throw new CustodyHttpError(400, 'EVENT_INVALID', 'bad');
        delivered.push(...events.map((e) => e.id));
      },
      (m) => logs.push(m),
      { maxBatch: 1 },
    );
    r.record(ev(0));
    r.record(ev(1));
    expect(await r.drain(1000)).toBe(0);
    expect(delivered).toEqual([ev(1).id]);
    expect(logs.join('\n')).toContain('EVENT_INVALID');
  });

  it('reports what is left when the ledger stays away past the deadline, and drops the oldest past the cap', async () => {
    const logs: string[] = [];
    const r = new OutcomeRecorder(
      async () => {
        throw new CustodyHttpError(503, 'LEDGER_UNAVAILABLE', 'down');
      },
      (m) => logs.push(m),
      { maxQueued: 3, initialBackoffMs: 5, maxBackoffMs: 10 },
    );
    for (let i = 0; i < 4; i++) r.record(ev(i));
    expect(r.pending).toBe(3);
    expect(logs.join('\n')).toContain(`dropped tool.completed ${ev(0).id}`);
    expect(await r.close(50)).toBe(3);
  });
});
