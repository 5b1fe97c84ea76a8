/**
 * A child process for the FileSpool lock tests (packages/sdk/src/spool/file-spool.test.ts).
 * Usage: node --import tsx spool-lock-child.ts race <dir>
 *   Waits for `{ go: <epoch ms> }` on IPC, spins until then (so every child tries at the same
 *   instant), opens a FileSpool on <dir>, answers `{ own: true }` or `{ own: false, code }`, holds the
 *   spool until `{ release: true }`, closes it and answers `{ released: true }`.
 * Usage: node --import tsx spool-lock-child.ts crash <dir>
 *   Opens the spool, appends one event, prints `pid <pid> pending <n>` and SIGKILLs itself
 *   (the lock stays behind, as after a crash); prints `locked <message>` if it cannot open.
 */
import { FileSpool } from '../src/spool/file-spool.js';

const [mode, dir] = process.argv.slice(2) as ['race' | 'crash', string];

if (mode === 'crash') {
  try {
    const spool = new FileSpool({ dir, onWarning: () => undefined });
    const before = spool.pending();
    await spool.append([{ id: `00000000-0000-7000-8000-${String(process.hrtime.bigint() % 1_000_000_000_000n).padStart(12, '0')}`, type: 'model.output' }]);
    process.stdout.write(`pid ${process.pid} pending ${before}\n`, () => process.kill(process.pid, 'SIGKILL'));
  } catch (err) {
    process.stdout.write(`locked ${(err as Error).message}\n`);
  }
} else {
  let spool: FileSpool | undefined;
  process.on('message', (m: { go?: number; release?: boolean; exit?: boolean }) => {
    if (m.go !== undefined) {
      while (Date.now() < m.go) {
        // spin: start together
      }
      try {
        spool = new FileSpool({ dir });
        process.send!({ own: true });
      } catch (err) {
        process.send!({ own: false, code: (err as { code?: string }).code, message: (err as Error).message });
      }
    } else if (m.release === true) {
      void (spool?.close() ?? Promise.resolve()).then(() => {
        spool = undefined;
        process.send!({ released: true });
      });
    } else if (m.exit === true) {
      process.disconnect();
    }
  });
  process.send!({ ready: true });
}
