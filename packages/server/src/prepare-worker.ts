/**
 * A preparation worker (see prepare-pool.ts): parses and prepares POST /v1/events
 * bodies off the request thread. It holds no state but the sensitive paths, appends
 * nothing, and answers every task, with the events or with the error the request
 * thread would have thrown.
 * @internal
 */
import { parentPort, workerData } from 'node:worker_threads';

import { prepareEvent } from '@custody/core';

import { preparedBodyOf } from './ingest.js';
import { type PrepareTask, serializeError, type WorkerAnswer } from './prepare-protocol.js';

const { sensitivePaths } = workerData as { sensitivePaths: readonly string[] | undefined };
const port = parentPort!;

port.on('message', (task: PrepareTask) => {
  let answer: WorkerAnswer;
  try {
    const events = preparedBodyOf(task.body, {
      tenant: task.tenant,
      ndjson: task.ndjson,
      admin: task.admin,
      maxBatch: task.maxBatch,
      now: new Date(task.now),
      prepare: (draft) => prepareEvent(draft, { tenant: task.tenant, ...(sensitivePaths !== undefined ? { sensitivePaths } : {}) }),
    });
    answer = { id: task.id, events };
  } catch (err) {
    answer = { id: task.id, error: serializeError(err) };
  }
  port.postMessage(answer);
});
