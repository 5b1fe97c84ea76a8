import { describe, expect, it } from 'vitest';

import { MemorySpool } from './spool-store.js';

const ev = (i: number) => ({ id: `e-${i}`, type: 'model.output' });

describe('MemorySpool', () => {
  it('keeps events in order until acknowledged', async () => {
    const s = new MemorySpool();
    await s.append([ev(1), ev(2), ev(3)]);
    expect(s.peek(2).map((e) => e.id)).toEqual(['e-1', 'e-2']);
    await s.ack(2);
    expect(s.pending()).toBe(1);
    expect(s.peek(10).map((e) => e.id)).toEqual(['e-3']);
  });

  it('refuses past maxEvents with SDK_SPOOL_FULL, keeping what it holds, and takes more once delivered', async () => {
    const s = new MemorySpool({ maxEvents: 3 });
    await s.append([ev(1), ev(2)]);
    await expect(s.append([ev(3), ev(4)])).rejects.toMatchObject({ code: 'SDK_SPOOL_FULL' });
    expect(s.peek(10).map((e) => e.id)).toEqual(['e-1', 'e-2']);
    await s.append([ev(3)]);
    await s.ack(3);
    await s.append([ev(4)]);
    expect(s.pending()).toBe(1);
  });

  it('keeps the newest 1,000 dead letters', async () => {
    const s = new MemorySpool();
    for (let i = 0; i < 1_005; i++) await s.reject(ev(i), { code: 'EVENT_INVALID', message: 'bad' });
    expect(s.rejected).toHaveLength(1_000);
    expect(s.rejected[0]!.event.id).toBe('e-5');
  });

  it('refuses a maxEvents that is not a positive integer', () => {
    expect(() => new MemorySpool({ maxEvents: 0 })).toThrow(expect.objectContaining({ code: 'SDK_CONFIG_INVALID' }));
  });
});
