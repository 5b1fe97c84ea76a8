/**
 * The SQLite WAL checkpointer, on its own thread and connection.
 *
 * In WAL mode every commit appends to the write-ahead log, and a checkpoint copies
 * the log back into the database file and syncs it. Left to SQLite, that copy runs
 * inside whichever commit crosses `wal_autocheckpoint`, on the thread that is
 * serving requests: one commit in a few hundred then takes a hundred milliseconds
 * instead of a few. This runs PASSIVE checkpoints (which never block a writer)
 * from a worker thread instead, and the store turns automatic checkpoints off.
 * If the worker stops for any reason, the store turns them back on.
 *
 * Copying is not enough on its own. The WAL only starts over from its first frame
 * when a writer begins a transaction and finds every frame already copied, and
 * under steady writes the worker's pass never ends at such a moment: commits land
 * while it copies. The WAL would then grow without bound (1.4 GiB after 10,000
 * small commits, and commits get slower as the file grows). So the worker repeats
 * its pass until one finds no new frame (between big batches, two or three passes),
 * and when small commits keep landing it reports back instead, once a pass found
 * little that was new: the store finishes on its own connection between two
 * commits, with a pass that copies only the frames written since (about a
 * millisecond). The next commit then restarts the WAL.
 * @internal
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** How often the worker checkpoints, in ms. */
export const CHECKPOINT_INTERVAL_MS = 250;
/** Most passes in one catch-up before the store is asked to finish. */
const MAX_PASSES = 8;
/** A later pass that found at most this many new frames (1 MiB) hands the rest to the store. */
const HANDOFF_FRAMES = 256;

// A plain script (eval), so that it runs the same from TypeScript sources and from dist.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 100');
const checkpoint = () => {
  try {
    // Catch up: each pass copies what the commits wrote during the one before. A pass
    // that finds no new frame leaves every frame copied, and the next commit starts
    // the WAL over by itself (between big batches, after two or three passes). When
    // commits keep landing, the store finishes on its own thread, between two commits,
    // once a pass found only a little that was new: it then has about as little to copy.
    let before = 0;
    for (let pass = 0; pass < workerData.maxPasses; pass++) {
      const [r] = db.pragma('wal_checkpoint(PASSIVE)');
      if (!r || r.busy !== 0 || r.log <= 0) return;
      if (r.log === before && r.checkpointed === r.log) return;
      const fresh = r.log >= before ? r.log - before : r.log;
      before = r.log;
      if (pass > 0 && fresh <= workerData.handoffFrames) break;
    }
    parentPort.postMessage('finish');
  } catch (err) {
    // SQLITE_BUSY: another checkpoint is running; the next tick tries again.
    if (!err || err.code !== 'SQLITE_BUSY') throw err;
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  try { checkpoint(); } finally { db.close(); parentPort.close(); }
});
parentPort.postMessage('ready');
`;

/** A running background checkpointer. */
export interface Checkpointer {
  /** Runs a last checkpoint and stops the worker. */
  stop(): Promise<void>;
}

/**
 * Starts checkpointing the WAL of the database at `path` from a worker thread.
 * `onPass` runs on this thread when the worker's passes could not leave every frame
 * copied because commits kept landing (the store finishes the checkpoint there);
 * `onExit` runs if the worker stops other than through `stop()` (the store then
 * re-enables automatic checkpoints).
 */
export function startCheckpointer(path: string, onPass: () => void, onExit: (err?: unknown) => void, intervalMs = CHECKPOINT_INTERVAL_MS): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, driver, intervalMs, maxPasses: MAX_PASSES, handoffFrames: HANDOFF_FRAMES } });
  worker.unref();
  let stopping = false;
  let failure: unknown;
  worker.on('message', (m: unknown) => {
    if (!stopping && m === 'finish') onPass();
  });
  worker.on('error', (err) => {
    failure = err;
  });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  void exited.then(() => {
    if (!stopping) onExit(failure);
  });
  return {
    async stop() {
      if (stopping) return exited;
      stopping = true;
      worker.postMessage('stop');
      const timer = setTimeout(() => void worker.terminate(), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
