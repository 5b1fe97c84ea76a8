/**
 * The durable spool: append-only NDJSON segment files in one folder, fsync'd
 * before `append` resolves, with a cursor (replaced atomically: write, fsync,
 * rename, fsync the folder) naming how far delivery has got. A crash at any
 * point loses no appended event; at worst the last delivered batch is sent
 * again, and the ledger answers an id it already holds with its original result,
 * so nothing is written twice. Node-only.
 *
 * A write that fails (ENOSPC, EIO, a short write) is taken back out of the
 * segment (truncated to the last complete record, else the spool continues in a
 * fresh segment) before the failed `append` rejects, so no later event is ever
 * appended onto a torn record. On open, an incomplete last record is dropped (it
 * was never acknowledged) and an unreadable record in the middle is set aside
 * (copied to `corrupt.ndjson`, reported with its file and byte position) while
 * every intact record is still delivered.
 *
 * Folder layout: `segment-<n>.ndjson` (one event per line), `cursor`
 * (`{ "segment": n, "offset": bytes }`), `dead-letter.ndjson` (events the
 * ledger refused for good, with why), `corrupt.ndjson` (unreadable bytes found
 * in a segment, with where), `lock` (the owning process).
 *
 * The lock names its owner by pid and by a random token of the owning process
 * (and, on Linux, the boot id and the process's start time), is created whole
 * and atomically (`link` of a written temp file: it exists complete or not at
 * all), and a dead owner's lock is removed only under a takeover guard
 * (`mkdir lock.takeover`) after re-reading that it is still the stale one, so
 * of processes racing for a spool exactly one wins. A lock with this process's
 * pid but another token is an earlier incarnation's (a restarted container whose
 * agent is PID 1 again): stale.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, ftruncateSync, linkSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmdirSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

import { SdkError } from '../errors.js';
import type { OutgoingEvent, SpoolStore } from '../spool-store.js';

/** Options of a FileSpool. */
export interface FileSpoolOptions {
  /** The spool's folder (created, mode 0700). One process owns it at a time. */
  dir: string;
  /** Start a new segment file once the current one holds this many bytes (default 16 MiB). */
  segmentBytes?: number;
  /**
   * Told what the spool recovered from when it opened: an incomplete last record
   * (a crash or a failed write; never acknowledged) that was dropped, or an
   * unreadable record in the middle of a segment that was set aside
   * (`SDK_SPOOL_CORRUPT`; the message names the file and byte position).
   * Default: a process warning.
   */
  onWarning?: (warning: SdkError) => void;
}

interface Queued {
  event: OutgoingEvent;
  segment: number;
  /** Byte offset just after this event's line in its segment. */
  end: number;
}

const SEGMENT = /^segment-(\d{10})\.ndjson$/;
const NEWLINE = 0x0a;

const segmentName = (n: number) => `segment-${String(n).padStart(10, '0')}.ndjson`;

/** The event a spool line holds, or undefined when it is not one. */
function parseEvent(line: string): OutgoingEvent | undefined {
  try {
    const v = JSON.parse(line) as unknown;
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && typeof (v as { id?: unknown }).id === 'string' && typeof (v as { type?: unknown }).type === 'string') return v as OutgoingEvent;
  } catch {
    // not JSON
  }
  return undefined;
}

/**
 * A complete event at the end of an unreadable line: what an earlier SDK
 * left after a failed write (the torn bytes, then the next acknowledged event
 * appended onto them). Spool lines start with the event's id.
 */
function salvage(line: string): OutgoingEvent | undefined {
  for (let at = line.lastIndexOf('{"id":'); at > 0; at = line.lastIndexOf('{"id":', at - 1)) {
    const event = parseEvent(line.slice(at));
    if (event !== undefined) return event;
  }
  return undefined;
}

/** True when process `pid` exists (EPERM: it exists but is not ours). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What a lock says of its owner. */
interface LockOwner {
  pid: number;
  /** Random, once per process (shared by every copy of the SDK the process loaded). */
  token: string;
  host: string;
  /** Linux: /proc/sys/kernel/random/boot_id. */
  bootId?: string;
  /** Linux: the process's start time in clock ticks since boot (/proc/<pid>/stat field 22). */
  startTicks?: number;
  since: string;
}

const readOr = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/** The start time of process `pid` in clock ticks since boot (Linux), undefined elsewhere. */
function startTicks(pid: number | 'self'): number | undefined {
  const stat = readOr(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[19]);
  return Number.isSafeInteger(ticks) ? ticks : undefined;
}

const statOr = (path: string): { mtimeMs: number } | undefined => {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
};

const TOKEN = Symbol.for('custody.sdk.spool.processToken');

/** This process as a lock names it. */
function thisProcess(): LockOwner {
  const g = globalThis as { [TOKEN]?: string };
  g[TOKEN] ??= randomUUID();
  const bootId = readOr('/proc/sys/kernel/random/boot_id')?.trim();
  const ticks = startTicks('self');
  return { pid: process.pid, token: g[TOKEN], host: hostname(), ...(bootId !== undefined ? { bootId } : {}), ...(ticks !== undefined ? { startTicks: ticks } : {}), since: new Date().toISOString() };
}

/** Parses a lock: this SDK's JSON, or an earlier SDK's bare pid. */
function parseLock(raw: string): Partial<LockOwner> | undefined {
  const t = raw.trim();
  if (/^\d+$/.test(t)) return { pid: Number(t) };
  try {
    const v = JSON.parse(t) as Partial<LockOwner>;
    return v !== null && typeof v === 'object' && Number.isSafeInteger(v.pid) && (v.pid as number) > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Why the lock `held` no longer has a live owner, or undefined when its owner may be alive. */
function staleness(held: Partial<LockOwner>, me: LockOwner): string | undefined {
  const pid = held.pid!;
  if (held.token === me.token) return undefined; // this very process (another FileSpool on the folder)
  if (pid === me.pid) return `it names this process's pid ${pid} with another process's token: an earlier process with the same pid (a restarted container)`;
  if (!alive(pid)) return `its owner, process ${pid}, has exited`;
  if (held.bootId !== undefined && me.bootId !== undefined && held.bootId !== me.bootId) return `it was taken before the machine restarted (boot ${held.bootId})`;
  if (held.startTicks !== undefined && held.bootId === me.bootId) {
    const now = startTicks(pid);
    if (now !== undefined && now !== held.startTicks) return `process ${pid} is not the process that took it (the pid was reused)`;
  }
  return undefined;
}

/** Blocks this thread for `ms` (the lock is taken in a constructor, synchronously). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * A spool on disk that survives a crash of the agent's process.
 * @example
 * import { FileSpool } from '@custody/sdk/spool';
 * const custody = new Custody({ url, apiKey, spool: new FileSpool({ dir: '.custody-spool' }) });
 */
export class FileSpool implements SpoolStore {
  readonly durable = true;
  /** The spool's folder. */
  readonly dir: string;
  readonly #segmentBytes: number;
  readonly #queue: Queued[] = [];
  #active: number;
  #fd: number;
  #size: number;
  #closed = false;
  /** True after a failed write whose bytes could not be taken back out yet: repaired before the next append. */
  #torn = false;
  /** What this spool's lock file holds. */
  #lockContent = '';
  readonly #onWarning: ((warning: SdkError) => void) | undefined;

  constructor(opts: FileSpoolOptions) {
    this.dir = opts.dir;
    this.#segmentBytes = opts.segmentBytes ?? 16 * 1024 * 1024;
    this.#onWarning = opts.onWarning;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.#lock();
    const cursor = this.#readCursor();
    const segments = readdirSync(this.dir)
      .map((f) => SEGMENT.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    for (const s of segments) if (s < cursor.segment) unlinkSync(join(this.dir, segmentName(s)));
    const live = segments.filter((s) => s >= cursor.segment);
    this.#active = live[live.length - 1] ?? cursor.segment;
    this.#size = 0;
    for (const s of live) {
      const size = this.#load(s, s === cursor.segment ? cursor.offset : 0, s === this.#active);
      if (s === this.#active) this.#size = size;
    }
    this.#fd = openSync(join(this.dir, segmentName(this.#active)), 'a', 0o600);
    this.#syncDir();
  }

  pending(): number {
    return this.#queue.length;
  }

  async append(events: readonly OutgoingEvent[]): Promise<void> {
    this.#open();
    if (events.length === 0) return;
    if (this.#torn) this.#repair();
    if (this.#size >= this.#segmentBytes) this.#rotate();
    const lines = events.map((e) => Buffer.from(`${JSON.stringify(e)}\n`, 'utf8'));
    const buf = Buffer.concat(lines);
    try {
      let written = 0;
      while (written < buf.length) written += writeSync(this.#fd, buf, written, buf.length - written);
      // Durable before the caller is told the events are kept.
      fsyncSync(this.#fd);
    } catch (err) {
      // Not acknowledged (ENOSPC, EIO, a failed fsync): whatever part of it reached the file comes back out,
      // so the next event starts on a clean line. If that fails too, it is retried before the next append.
      this.#torn = true;
      try {
        this.#repair();
      } catch {
        // #torn stays set
      }
      throw err;
    }
    let end = this.#size;
    events.forEach((event, i) => {
      end += lines[i]!.length;
      this.#queue.push({ event, segment: this.#active, end });
    });
    this.#size = end;
    return Promise.resolve();
  }

  peek(max: number): readonly OutgoingEvent[] {
    return this.#queue.slice(0, max).map((q) => q.event);
  }

  async ack(count: number): Promise<void> {
    this.#open();
    if (count <= 0) return;
    const done = this.#queue.splice(0, Math.min(count, this.#queue.length));
    const last = done[done.length - 1]!;
    if (this.#queue.length === 0 && this.#size > 0) {
      // Everything is delivered: continue in a fresh segment and drop the old ones.
      this.#rotate();
      this.#writeCursor({ segment: this.#active, offset: 0 });
    } else {
      this.#writeCursor({ segment: last.segment, offset: last.end });
    }
    const keep = this.#queue[0]?.segment ?? this.#active;
    for (const f of readdirSync(this.dir)) {
      const m = SEGMENT.exec(f);
      if (m !== null && Number(m[1]) < keep) unlinkSync(join(this.dir, f));
    }
    return Promise.resolve();
  }

  async reject(event: OutgoingEvent, error: { code: string; message: string }): Promise<void> {
    const fd = openSync(join(this.dir, 'dead-letter.ndjson'), 'a', 0o600);
    try {
      writeSync(fd, `${JSON.stringify({ rejectedAt: new Date().toISOString(), error, event })}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return Promise.resolve();
  }

  /** Events the ledger refused for good, oldest first. */
  deadLetters(): { rejectedAt: string; error: { code: string; message: string }; event: OutgoingEvent }[] {
    const path = join(this.dir, 'dead-letter.ndjson');
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { rejectedAt: string; error: { code: string; message: string }; event: OutgoingEvent });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
    // Only our own lock: never one another process took meanwhile.
    const path = join(this.dir, 'lock');
    if (readOr(path) === this.#lockContent) {
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    }
    return Promise.resolve();
  }

  /** Cuts the active segment back to its last complete record after a failed write; else continues in a fresh segment. */
  #repair(): void {
    try {
      ftruncateSync(this.#fd, this.#size);
      fsyncSync(this.#fd);
    } catch (cause) {
      // The segment cannot be cut back (EIO…): its torn tail is dropped when the spool is opened again.
      try {
        this.#rotate();
      } catch {
        throw new SdkError('SDK_SPOOL_CORRUPT', `${join(this.dir, segmentName(this.#active))}: a failed write could not be taken back out of the spool, nor a new segment started; nothing more is appended until it can be`, { cause });
      }
    }
    this.#torn = false;
  }

  #warn(message: string): void {
    const warning = new SdkError('SDK_SPOOL_CORRUPT', message);
    if (this.#onWarning !== undefined) {
      try {
        this.#onWarning(warning);
      } catch {
        // a throwing hook must not stop the spool from opening
      }
      return;
    }
    process.emitWarning(message, { code: 'SDK_SPOOL_CORRUPT' });
  }

  /** Copies an unreadable record to `corrupt.ndjson` (once per position), so setting it aside deletes nothing. */
  #setAside(segment: number, offset: number, bytes: Buffer): void {
    const path = join(this.dir, 'corrupt.ndjson');
    if (existsSync(path) && readFileSync(path, 'utf8').includes(`"segment":${segment},"offset":${offset},`)) return;
    const fd = openSync(path, 'a', 0o600);
    try {
      writeSync(fd, `${JSON.stringify({ foundAt: new Date().toISOString(), segment, offset, length: bytes.length, text: bytes.toString('utf8') })}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Reads segment `s` from `offset`. An incomplete last record (a crash or a failed write: never acknowledged)
   * is dropped; an unreadable record in the middle is set aside and reported, and a complete event at its end
   * (what an older SDK appended onto a torn record) is kept. Returns the valid size.
   */
  #load(s: number, offset: number, last: boolean): number {
    const path = join(this.dir, segmentName(s));
    const bytes = readFileSync(path);
    let start = Math.min(offset, bytes.length);
    let valid = start;
    while (start < bytes.length) {
      const nl = bytes.indexOf(NEWLINE, start);
      if (nl === -1) break;
      const at = start;
      const raw = bytes.subarray(start, nl);
      const line = raw.toString('utf8');
      start = nl + 1;
      valid = start;
      if (line.trim() === '') continue;
      const event = parseEvent(line);
      if (event !== undefined) {
        this.#queue.push({ event, segment: s, end: start });
        continue;
      }
      const kept = salvage(line);
      this.#setAside(s, at, raw);
      this.#warn(
        `${path}: the record at bytes ${at}-${nl} is not a spooled event; it was set aside in ${join(this.dir, 'corrupt.ndjson')}${kept !== undefined ? `, and the complete event ${kept.id} at its end was kept` : ''}. Every other record is delivered.`,
      );
      if (kept !== undefined) this.#queue.push({ event: kept, segment: s, end: start });
    }
    if (valid < bytes.length) {
      this.#warn(`${path}: dropped an incomplete last record (${bytes.length - valid} bytes from byte ${valid}): a write cut short by a crash or a failed write, never acknowledged`);
    }
    if (valid < bytes.length && last) {
      const fd = openSync(path, 'r+');
      try {
        ftruncateSync(fd, valid);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    return valid;
  }

  #rotate(): void {
    closeSync(this.#fd);
    this.#active += 1;
    this.#size = 0;
    this.#fd = openSync(join(this.dir, segmentName(this.#active)), 'a', 0o600);
    this.#syncDir();
  }

  #readCursor(): { segment: number; offset: number } {
    const path = join(this.dir, 'cursor');
    if (!existsSync(path)) return { segment: 1, offset: 0 };
    try {
      const c = JSON.parse(readFileSync(path, 'utf8')) as { segment?: unknown; offset?: unknown };
      if (Number.isSafeInteger(c.segment) && Number.isSafeInteger(c.offset)) return { segment: c.segment as number, offset: c.offset as number };
    } catch {
      // fall through
    }
    throw new SdkError('SDK_SPOOL_CORRUPT', `${path} is not a spool cursor`);
  }

  #writeCursor(c: { segment: number; offset: number }): void {
    const tmp = join(this.dir, 'cursor.tmp');
    writeFileSync(tmp, JSON.stringify(c), { mode: 0o600 });
    const fd = openSync(tmp, 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(this.dir, 'cursor'));
    this.#syncDir();
  }

  #syncDir(): void {
    try {
      const fd = openSync(this.dir, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch {
      // Some platforms cannot fsync a folder; the rename is still atomic.
    }
  }

  #lock(): void {
    const path = join(this.dir, 'lock');
    const me = thisProcess();
    const mine = JSON.stringify(me);
    const tmp = join(this.dir, `lock.${me.token}.${randomUUID()}.tmp`);
    writeFileSync(tmp, mine, { mode: 0o600 });
    try {
      for (let attempt = 0; attempt < 500; attempt++) {
        try {
          // Atomic: the lock appears whole, naming us, or not at all (EEXIST).
          linkSync(tmp, path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          const raw = readOr(path);
          if (raw === undefined) continue; // removed meanwhile: try again
          const held = parseLock(raw);
          if (held === undefined) {
            // Not a lock this SDK writes whole: an earlier SDK may be writing it right now; an old one is garbage.
            const age = Date.now() - (statOr(path)?.mtimeMs ?? 0);
            if (age < 2_000) throw new SdkError('SDK_SPOOL_LOCKED', `the spool ${this.dir} is being locked by another process (its lock is not readable yet)`);
            this.#takeOver(path, raw);
            continue;
          }
          const why = staleness(held, me);
          if (why === undefined) {
            const who = held.token === me.token ? 'this process (another FileSpool)' : `process ${held.pid}${held.host !== undefined && held.host !== me.host ? ` on ${held.host}` : ''}`;
            throw new SdkError('SDK_SPOOL_LOCKED', `the spool ${this.dir} is in use by ${who}; one process owns a spool at a time`);
          }
          // The owner is gone (a crash, a restart): take over, atomically.
          this.#takeOver(path, raw);
          continue;
        }
        // Ours, unless something removed it in between: check.
        if (readOr(path) === mine) {
          this.#lockContent = mine;
          return;
        }
      }
      throw new SdkError('SDK_SPOOL_LOCKED', `could not lock the spool ${this.dir}: other processes kept taking it`);
    } finally {
      try {
        unlinkSync(tmp);
      } catch {
        // gone
      }
    }
  }

  /**
   * Removes the lock iff it still holds `stale`, under the takeover guard: of processes that all
   * found the same dead owner, one removes its lock and the others then find the winner's.
   */
  #takeOver(path: string, stale: string): void {
    const guard = join(this.dir, 'lock.takeover');
    try {
      mkdirSync(guard, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Another process is taking over (it holds the guard for microseconds). A guard older than 10 s
      // was left by a process that died inside it.
      if (Date.now() - (statOr(guard)?.mtimeMs ?? Date.now()) > 10_000) {
        try {
          rmdirSync(guard);
        } catch {
          // someone else cleared it
        }
      } else {
        pause(2);
      }
      return;
    }
    try {
      if (readOr(path) === stale) unlinkSync(path);
    } finally {
      rmdirSync(guard);
    }
  }

  #open(): void {
    if (this.#closed) throw new SdkError('SDK_CONFIG_INVALID', 'the spool is closed');
  }
}
