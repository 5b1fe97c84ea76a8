/**
 * FileSpool on a real folder: order, durability across reopen, torn lines, the cursor, the lock.
 * A failed write (M2) is a real ENOSPC on a real 64 KiB tmpfs (root only; skipped otherwise).
 */
import { type ChildProcess, execFileSync, fork, spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterEach, describe, expect, it } from 'vitest';

import type { SdkError } from '../errors.js';
import { FileSpool } from './file-spool.js';

/** True when this process may mount a tmpfs (root on Linux): a real full disk for the ENOSPC test. */
const lockChild = fileURLToPath(new URL('../../test-support/spool-lock-child.ts', import.meta.url));
const root = fileURLToPath(new URL('../../../../', import.meta.url));

/** True when `unshare` can run a process as PID 1 of a new PID namespace (root on Linux). */
const canUnshare = process.platform === 'linux' && spawnSync('unshare', ['-fp', '--mount-proc', 'true']).status === 0;

const canMountTmpfs = (() => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(join(tmpdir(), 'custody-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
})();

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
    const warnings: SdkError[] = [];
    const b = new FileSpool({ dir, onWarning: (w) => warnings.push(w) });
    expect(b.pending()).toBe(1);
    expect(warnings.map((w) => w.message)).toEqual([expect.stringContaining('dropped an incomplete last record (11 bytes')]);
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

  it.skipIf(!canMountTmpfs)('M2: a write that fails for lack of space (real ENOSPC) rejects, is taken back out, and the events acknowledged after it survive a reopen', async () => {
    const mnt = tmp();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
    try {
      const dir = join(mnt, 'spool');
      const a = new FileSpool({ dir });
      await a.append([ev(1)]);
      // The disk fills up (another writer on the same file system).
      const filler = join(mnt, 'filler');
      const fd = openSync(filler, 'w');
      let full: unknown;
      try {
        for (;;) writeSync(fd, Buffer.alloc(1024, 1));
      } catch (err) {
        full = err;
      } finally {
        closeSync(fd);
      }
      expect(full).toMatchObject({ code: 'ENOSPC' });
      // An event bigger than the room left in the segment's last page: the kernel takes part of it, then ENOSPC.
      const big = { ...ev(2), data: { blob: 'x'.repeat(6000) } };
      await expect(a.append([big])).rejects.toMatchObject({ code: 'ENOSPC' });
      expect(a.pending()).toBe(1);
      // Space comes back: later events are acknowledged, each on a clean line.
      unlinkSync(filler);
      await a.append([ev(3)]);
      await a.append([ev(4)]);
      expect(a.peek(10).map((e) => e.id)).toEqual([ev(1).id, ev(3).id, ev(4).id]);
      await a.close();
      const seg = readdirSync(dir).find((f) => f.startsWith('segment-'))!;
      const lines = readFileSync(join(dir, seg), 'utf8').split('\n');
      expect(lines.map((l) => (l === '' ? '' : (JSON.parse(l) as { id: string }).id))).toEqual([ev(1).id, ev(3).id, ev(4).id, '']);

      const warnings: SdkError[] = [];
      const b = new FileSpool({ dir, onWarning: (w) => warnings.push(w) });
      expect(b.peek(10).map((e) => e.id)).toEqual([ev(1).id, ev(3).id, ev(4).id]);
      expect(warnings).toEqual([]);
      await b.close();
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('M2: a spool an older SDK tore (a failed write, then the next event appended onto it) opens: every intact event is kept, the unreadable bytes are set aside and reported with their position', async () => {
    const dir = tmp();
    const a = new FileSpool({ dir });
    await a.close();
    const seg = readdirSync(dir).find((f) => f.startsWith('segment-'))!;
    const line = (e: object) => `${JSON.stringify(e)}\n`;
    const torn = line({ ...ev(2), data: { blob: 'y'.repeat(200) } }).slice(0, 120);
    const content = line(ev(1)) + torn + line(ev(3)) + 'not json at all\n' + line(ev(4)) + '{"id":"cut';
    writeFileSync(join(dir, seg), content);
    const warnings: SdkError[] = [];
    const b = new FileSpool({ dir, onWarning: (w) => warnings.push(w) });
    expect(b.peek(10).map((e) => e.id)).toEqual([ev(1).id, ev(3).id, ev(4).id]);
    const tornAt = Buffer.byteLength(line(ev(1)));
    const badAt = tornAt + Buffer.byteLength(torn + line(ev(3)));
    expect(warnings.map((w) => w.code)).toEqual(['SDK_SPOOL_CORRUPT', 'SDK_SPOOL_CORRUPT', 'SDK_SPOOL_CORRUPT']);
    expect(warnings[0]!.message).toContain(`the record at bytes ${tornAt}-`);
    expect(warnings[0]!.message).toContain(`the complete event ${ev(3).id} at its end was kept`);
    expect(warnings[1]!.message).toContain(`the record at bytes ${badAt}-`);
    expect(warnings[2]!.message).toContain('dropped an incomplete last record');
    const setAside = readFileSync(join(dir, 'corrupt.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { offset: number; text: string });
    expect(setAside.map((c) => c.offset)).toEqual([tornAt, badAt]);
    expect(setAside[1]!.text).toBe('not json at all');
    // Delivered past them, the spool continues cleanly; reopening does not set the same bytes aside twice.
    await b.append([ev(5)]);
    await b.close();
    const c = new FileSpool({ dir, onWarning: () => undefined });
    expect(c.peek(10).map((e) => e.id)).toEqual([ev(1).id, ev(3).id, ev(4).id, ev(5).id]);
    await c.ack(4);
    await c.close();
    expect(readFileSync(join(dir, 'corrupt.ndjson'), 'utf8').trim().split('\n')).toHaveLength(2);
    const d = new FileSpool({ dir });
    expect(d.pending()).toBe(0);
    await d.close();
  });

  it('M3: a lock naming this process\'s own pid but another process (a restarted container) is stale and taken over', async () => {
    for (const lock of [String(process.pid), JSON.stringify({ pid: process.pid, token: 'an-earlier-incarnation', host: hostname(), since: new Date(0).toISOString() })]) {
      const dir = tmp();
      const a = new FileSpool({ dir });
      await a.append([ev(1)]);
      await a.close();
      writeFileSync(join(dir, 'lock'), lock);
      const b = new FileSpool({ dir });
      expect(b.pending()).toBe(1);
      expect(JSON.parse(readFileSync(join(dir, 'lock'), 'utf8'))).toMatchObject({ pid: process.pid });
      // …while this process's own lock still locks a second FileSpool out.
      expect(() => new FileSpool({ dir })).toThrow(expect.objectContaining({ code: 'SDK_SPOOL_LOCKED' }));
      await b.close();
    }
  });

  it.skipIf(!canUnshare)('M3: a restarted agent that is PID 1 again (a container) opens the spool its SIGKILLed predecessor, also PID 1, left locked', () => {
    const dir = tmp();
    const run = () => spawnSync('unshare', ['-fp', '--mount-proc', process.execPath, '--import', 'tsx', lockChild, 'crash', dir], { cwd: root, encoding: 'utf8', timeout: 30_000 });
    const first = run();
    expect(first.stdout.trim(), first.stderr).toBe('pid 1 pending 0');
    expect(JSON.parse(readFileSync(join(dir, 'lock'), 'utf8'))).toMatchObject({ pid: 1 });
    const second = run();
    expect(second.stdout.trim(), second.stderr).toBe('pid 1 pending 1');
  });

  it('M3: of 8 processes racing to take over a dead owner\'s lock, exactly one wins, every round (20 rounds)', async () => {
    const dir = tmp();
    const dead = spawnSync(process.execPath, ['-e', '']).pid!; // a process that has exited
    const children: ChildProcess[] = [];
    const inbox = new Map<ChildProcess, ((m: Record<string, unknown>) => void)[]>();
    const next = (c: ChildProcess) => new Promise<Record<string, unknown>>((resolve) => inbox.get(c)!.push(resolve));
    try {
      for (let i = 0; i < 8; i++) {
        const c = fork(lockChild, ['race', dir], { cwd: root, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        inbox.set(c, []);
        c.on('message', (m: Record<string, unknown>) => inbox.get(c)!.shift()?.(m));
        children.push(c);
      }
      await Promise.all(children.map((c) => next(c)));
      for (let round = 0; round < 20; round++) {
        // The owner died: its lock stays (this SDK's format, or an earlier SDK's bare pid).
        writeFileSync(join(dir, 'lock'), round % 2 === 0 ? JSON.stringify({ pid: dead, token: `dead-${round}`, host: hostname(), since: new Date().toISOString() }) : String(dead));
        const go = Date.now() + 150;
        const answers = await Promise.all(children.map((c) => (c.send({ go }), next(c))));
        const owners = answers.filter((a) => a['own'] === true);
        expect(owners, `round ${round}: ${JSON.stringify(answers)}`).toHaveLength(1);
        for (const a of answers) if (a['own'] !== true) expect(a['code'], JSON.stringify(a)).toBe('SDK_SPOOL_LOCKED');
        await Promise.all(children.map((c) => (c.send({ release: true }), next(c))));
      }
    } finally {
      for (const c of children) c.kill();
    }
  }, 120_000);
});
