import { Worker } from 'node:worker_threads';
import { AppError } from '../errors.js';

/**
 * Starts a worker thread and waits for its `{ ready }` message (the session is created); rejects
 * with INVALID_MODEL, and ends the worker, when it reports a failure, throws or exits while loading.
 * `what` names the model in messages.
 */
export async function spawnReadyWorker(url: URL, workerData: unknown, what: string): Promise<Worker> {
  const worker = new Worker(url, { workerData });
  try {
    await new Promise<void>((resolve, reject) => {
      const onMsg = (m: { ready?: boolean; message?: string }) => {
        if (m.ready === undefined) return;
        worker.off('message', onMsg);
        if (m.ready) resolve();
        else reject(new AppError('INVALID_MODEL', `cannot load ${what}: ${m.message}`));
      };
      worker.on('message', onMsg);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new AppError('INVALID_MODEL', `the worker exited with code ${code} while loading ${what}`)));
    });
  } catch (e) {
    await worker.terminate();
    throw e;
  }
  return worker;
}
