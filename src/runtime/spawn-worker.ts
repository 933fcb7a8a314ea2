import { Worker } from 'node:worker_threads';
import { AppError } from '../errors.js';

/**
 * The worker module `stem` beside the module at `base` (its `import.meta.url`): the compiled `.js`
 * normally, the `.ts` source when the caller itself runs from source (tsx, as the mutation tests do).
 */
export function workerModule(base: string, stem: string): URL {
  return new URL(`./${stem}${base.endsWith('.ts') ? '.ts' : '.js'}`, base);
}

/**
 * Starts a worker thread and waits for its `{ ready }` message (the session is created); rejects
 * with INVALID_MODEL, and ends the worker, when it reports a failure, throws or exits while loading.
 * `what` names the model in messages.
 */
export async function spawnReadyWorker(url: URL, workerData: unknown, what: string): Promise<Worker> {
  // From source, the worker registers tsx itself: a worker thread does not inherit `--import tsx`.
  const worker = url.pathname.endsWith('.ts')
    ? new Worker(`import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(url.href)}); })`, { eval: true, workerData })
    : new Worker(url, { workerData });
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
