/**
 * Preparation workers: large POST /v1/events bodies are parsed and prepared
 * (validated, committed, canonicalised: prepareEvent) in worker threads, so that
 * the request thread spends its time sequencing and committing. Preparing is most
 * of the CPU an event costs before the store; on a machine with a spare core, the
 * next request's events are prepared while this one's commit.
 *
 * Nothing is appended in a worker, so a worker that fails costs nothing: the tasks
 * it held are prepared on the request thread instead, and the worker is replaced.
 * @internal
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

import type { PreparedEvent } from '@custody/core';

import { deserializeError, type PrepareTask, type WorkerAnswer } from './prepare-protocol.js';

/** Settings of a pool. */
export interface PreparePoolOptions {
  /** Worker threads. */
  size: number;
  /** The ledger's sensitive paths (Ledger.preparation). */
  sensitivePaths: readonly string[] | undefined;
  /** Prepares a task on the request thread: when no worker can. */
  inline: (task: Omit<PrepareTask, 'id'>) => PreparedEvent[];
  /** Where the pool says that a worker failed. Default stderr. */
  log?: (message: string) => void;
  /** Starts one worker (tests start failing ones). Default the preparation worker. @internal */
  spawn?: (workerData: { sensitivePaths: readonly string[] | undefined }) => Worker;
}

/** Workers a server starts by default: one per core beyond the request thread's, at most 4; none on one core. */
export function defaultPrepareWorkers(): number {
  return Math.max(0, Math.min(4, availableParallelism() - 1));
}

interface Pending {
  task: Omit<PrepareTask, 'id'>;
  resolve: (events: PreparedEvent[]) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
  /** Answered at least one task: it loads and runs. */
  proven: boolean;
}

/** Consecutive workers that fail before answering anything, after which the pool stops trying. */
const MAX_UNPROVEN_FAILURES = 3;

/** A pool of preparation workers. */
export class PreparePool {
  readonly size: number;
  readonly #opts: PreparePoolOptions;
  readonly #slots: (Slot | undefined)[];
  #next = 1;
  #failures = 0;
  #closed = false;
  readonly #counts = { inWorker: 0, inline: 0 };

  constructor(opts: PreparePoolOptions) {
    if (!Number.isSafeInteger(opts.size) || opts.size < 1) throw new RangeError('a preparation pool needs at least one worker');
    this.size = opts.size;
    this.#opts = opts;
    this.#slots = Array.from({ length: opts.size }, () => undefined);
  }

  /** Bodies prepared so far: by a worker, and on the request thread. */
  get counts(): { readonly inWorker: number; readonly inline: number } {
    return { ...this.#counts };
  }

  /** True while tasks go to workers (false once closed, or after workers failed to start). */
  get active(): boolean {
    return !this.#closed && this.#failures < MAX_UNPROVEN_FAILURES;
  }

  /**
   * Prepares one body in a worker, or on this thread when no worker can.
   * @throws what preparedBodyOf throws for this body (the same codes and messages)
   */
  prepare(task: Omit<PrepareTask, 'id'>): Promise<PreparedEvent[]> {
    if (!this.active) return this.#inline(task);
    const slot = this.#leastBusy();
    if (slot === undefined) return this.#inline(task);
    const id = this.#next++;
    return new Promise<PreparedEvent[]>((resolve, reject) => {
      slot.pending.set(id, { task, resolve, reject });
      slot.worker.ref();
      slot.worker.postMessage({ ...task, id } satisfies PrepareTask);
    });
  }

  /** Stops the workers; tasks they still held are prepared on this thread. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(
      this.#slots.map(async (slot, i) => {
        if (slot === undefined) return;
        this.#slots[i] = undefined;
        this.#rescue(slot);
        await slot.worker.terminate();
      }),
    );
  }

  async #inline(task: Omit<PrepareTask, 'id'>): Promise<PreparedEvent[]> {
    this.#counts.inline++;
    return this.#opts.inline(task);
  }

  #leastBusy(): Slot | undefined {
    let best: Slot | undefined;
    for (let i = 0; i < this.#slots.length; i++) {
      const slot = this.#slots[i] ?? this.#start(i);
      if (slot === undefined) continue;
      if (best === undefined || slot.pending.size < best.pending.size) best = slot;
      if (best.pending.size === 0) break;
    }
    return best;
  }

  #start(i: number): Slot | undefined {
    let worker: Worker;
    try {
      worker = (this.#opts.spawn ?? spawnWorker)({ sensitivePaths: this.#opts.sensitivePaths });
    } catch (err) {
      this.#failed(`could not start a preparation worker (${err instanceof Error ? err.message : String(err)})`, false);
      return undefined;
    }
    const slot: Slot = { worker, pending: new Map(), proven: false };
    worker.unref();
    worker.on('message', (answer: WorkerAnswer) => {
      const p = slot.pending.get(answer.id);
      if (p === undefined) return;
      slot.pending.delete(answer.id);
      if (slot.pending.size === 0) worker.unref();
      if (!slot.proven) {
        slot.proven = true;
        this.#failures = 0;
      }
      this.#counts.inWorker++;
      if ('events' in answer) p.resolve(answer.events);
      else p.reject(deserializeError(answer.error));
    });
    const gone = (why: string) => {
      if (this.#slots[i] !== slot) return;
      this.#slots[i] = undefined;
      this.#rescue(slot);
      if (!this.#closed) this.#failed(`a preparation worker ${why}; its requests are prepared on the request thread, and it is replaced`, slot.proven);
    };
    worker.on('error', (err) => gone(`failed (${err.message})`));
    worker.on('exit', (code) => gone(`exited (code ${code})`));
    this.#slots[i] = slot;
    return slot;
  }

  /** Prepares a gone worker's tasks on this thread: nothing of them was appended. */
  #rescue(slot: Slot): void {
    const held = [...slot.pending.values()];
    slot.pending.clear();
    for (const p of held) {
      this.#inline(p.task).then(p.resolve, p.reject);
    }
  }

  #failed(message: string, proven: boolean): void {
    if (!proven) this.#failures++;
    const stop = this.#failures >= MAX_UNPROVEN_FAILURES ? ' Preparation workers are off: every request is prepared on the request thread.' : '';
    (this.#opts.log ?? ((m: string) => process.stderr.write(`custody: ${m}\n`)))(`${message}.${stop}`);
  }
}

/**
 * Built (dist/*.js): the worker's own module. From the TypeScript sources (tests, tsx),
 * Node cannot load a .ts worker, so a small bootstrap registers tsx in the worker first,
 * with the repository's tsconfig.spec.json when there is one, whose paths resolve the
 * workspace packages to their sources too (as the tests' own aliases do), not to dist.
 */
function spawnWorker(workerData: { sensitivePaths: readonly string[] | undefined }): Worker {
  const self = import.meta.url;
  if (self.endsWith('.ts')) {
    const entry = new URL('./prepare-worker.ts', self).href;
    const tsconfig = fileURLToPath(new URL('../../../tsconfig.spec.json', self));
    const options = existsSync(tsconfig) ? { tsconfig } : {};
    const bootstrap = `import('tsx/esm/api').then(({ register }) => { register(${JSON.stringify(options)}); return import(${JSON.stringify(entry)}); })`;
    return new Worker(bootstrap, { eval: true, workerData });
  }
  return new Worker(new URL('./prepare-worker.js', self), { workerData });
}
