/** FileSpool on a real folder: order, durability across reopen, torn lines, the cursor, the lock. */
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { FileSpool } from './file-spool.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'custody-spool-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const ev = (i: number) => ({ id: `00000000-0000-7000-8000-${String(i).padStart(12, '0')}`, type: 'model.output', data: { i } });

describe('FileSpool', () => {
  it('keeps appended events in order across a reopen, and resumes after the cursor', async () => {
    const dir = tmp();
    const a = new FileSpool({ dir });
    await a.append([ev(1), ev(2)]);
    await a.append([ev(3)]);
    await a.ack(1);
    await a.close();
    const b = new FileSpool({ dir });
    expect(b.peek(10).map((e) => e.id)).toEqual([ev(2).id, ev(3).id]);
    await b.ack(2);
    expect(b.pending()).toBe(0);
    await b.close();
    // Fully delivered segments are gone; a reopened spool is empty.
    expect(readdirSync(dir).filter((f) => f.startsWith('segment-'))).toHaveLength(1);
    const c = new FileSpool({ dir });
    expect(c.pending()).toBe(0);
    await c.close();
  });

  it('drops a torn last line (a crash mid-write) and appends after it', async () => {
    const dir = tmp();
    const a = new FileSpool({ dir });
    await a.append([ev(1)]);
    await a.close();
    const seg = readdirSync(dir).find((f) => f.startsWith('segment-'))!;
    appendFileSync(join(dir, seg), '{"id":"torn');
    const b = new FileSpool({ dir });
    expect(b.pending()).toBe(1);
    await b.append([ev(2)]);
    await b.close();
    const c = new FileSpool({ dir });
    expect(c.peek(10).map((e) => e.id)).toEqual([ev(1).id, ev(2).id]);
    await c.close();
  });

  it('rotates segments and sets refused events aside', async () => {
    const dir = tmp();
    const a = new FileSpool({ dir, segmentBytes: 64 });
    for (let i = 0; i < 5; i++) await a.append([ev(i)]);
    expect(readdirSync(dir).filter((f) => f.startsWith('segment-')).length).toBeGreaterThan(1);
    await a.reject(ev(0), { code: 'EVENT_INVALID', message: 'bad' });
    await a.ack(3);
    await a.close();
    const b = new FileSpool({ dir, segmentBytes: 64 });
    expect(b.peek(10).map((e) => e.id)).toEqual([ev(3).id, ev(4).id]);
    expect(b.deadLetters()).toMatchObject([{ error: { code: 'EVENT_INVALID' }, event: { id: ev(0).id } }]);
    await b.close();
  });

  it('is owned by one live process at a time', async () => {
    const dir = tmp();
    const a = new FileSpool({ dir });
    expect(() => new FileSpool({ dir })).toThrow(expect.objectContaining({ code: 'SDK_SPOOL_LOCKED' }));
    await a.close();
    const b = new FileSpool({ dir });
    await b.close();
  });
});
