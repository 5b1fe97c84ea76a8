/**
 * The durable spool: append-only NDJSON segment files in one folder, fsync'd
 * before `append` resolves, with a cursor (replaced atomically: write, fsync,
 * rename, fsync the folder) naming how far delivery has got. A crash at any
 * point loses no appended event; at worst the last delivered batch is sent
 * again, and the ledger answers an id it already holds with its original result,
 * so nothing is written twice. Node-only.
 *
 * Folder layout: `segment-<n>.ndjson` (one event per line), `cursor`
 * (`{ "segment": n, "offset": bytes }`), `dead-letter.ndjson` (events the
 * ledger refused for good, with why), `lock` (the owning process id).
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import { SdkError } from '../errors.js';
import type { OutgoingEvent, SpoolStore } from '../spool-store.js';

/** Options of a FileSpool. */
export interface FileSpoolOptions {
  /** The spool's folder (created, mode 0700). One process owns it at a time. */
  dir: string;
  /** Start a new segment file once the current one holds this many bytes (default 16 MiB). */
  segmentBytes?: number;
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

/** True when process `pid` exists (EPERM: it exists but is not ours). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
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

  constructor(opts: FileSpoolOptions) {
    this.dir = opts.dir;
    this.#segmentBytes = opts.segmentBytes ?? 16 * 1024 * 1024;
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
    if (this.#size >= this.#segmentBytes) this.#rotate();
    const lines = events.map((e) => Buffer.from(`${JSON.stringify(e)}\n`, 'utf8'));
    const buf = Buffer.concat(lines);
    let written = 0;
    while (written < buf.length) written += writeSync(this.#fd, buf, written, buf.length - written);
    // Durable before the caller is told the events are kept.
    fsyncSync(this.#fd);
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
    try {
      unlinkSync(join(this.dir, 'lock'));
    } catch {
      // already gone
    }
    return Promise.resolve();
  }

  /** Reads segment `s` from `offset`; drops a torn last line (a crash mid-write: never acknowledged). Returns the valid size. */
  #load(s: number, offset: number, last: boolean): number {
    const path = join(this.dir, segmentName(s));
    const bytes = readFileSync(path);
    let start = Math.min(offset, bytes.length);
    let valid = start;
    while (start < bytes.length) {
      const nl = bytes.indexOf(NEWLINE, start);
      if (nl === -1) break;
      const line = bytes.subarray(start, nl).toString('utf8');
      start = nl + 1;
      valid = start;
      if (line.trim() === '') continue;
      let event: OutgoingEvent;
      try {
        event = JSON.parse(line) as OutgoingEvent;
      } catch (cause) {
        throw new SdkError('SDK_SPOOL_CORRUPT', `${path}: a line before byte ${nl} is not JSON; move the file aside to continue`, { cause });
      }
      this.#queue.push({ event, segment: s, end: start });
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
    for (let i = 0; i < 2; i++) {
      try {
        writeFileSync(path, String(process.pid), { flag: 'wx', mode: 0o600 });
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const pid = Number(readFileSync(path, 'utf8').trim());
      if (Number.isSafeInteger(pid) && pid > 0 && alive(pid)) {
        throw new SdkError('SDK_SPOOL_LOCKED', `the spool ${this.dir} is in use by process ${pid}; one process owns a spool at a time`);
      }
      // The owner died (a crash): take over.
      unlinkSync(path);
    }
    throw new SdkError('SDK_SPOOL_LOCKED', `could not lock the spool ${this.dir}`);
  }

  #open(): void {
    if (this.#closed) throw new SdkError('SDK_CONFIG_INVALID', 'the spool is closed');
  }
}
