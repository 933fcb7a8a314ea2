import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { AppError } from '../errors.js';
import type { ModelManifest } from '../model/manifest.js';
import type { BatchInput, BatchOutput } from './batch.js';
import type { WorkerInit, WorkerRequest, WorkerResponse } from './worker.js';

/** What the scheduler needs from an inference engine. */
export interface Engine {
  run(batch: BatchInput): Promise<BatchOutput>;
  close(): Promise<void>;
}

export interface EngineOptions {
  modelDir: string;
  manifest: ModelManifest;
  /** intra-op threads for the session (default: 2). */
  threads: number;
  /** ORT execution provider: 'cpu' (default), 'webgpu', 'cuda', ... */
  executionProvider: string;
}

/** The ONNX session in a worker thread; one run at a time, in order. */
export class WorkerEngine implements Engine {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (o: BatchOutput) => void; reject: (e: Error) => void }>();
  private closed = false;
  /** Why the worker died, once it has: later runs fail at once instead of waiting forever. */
  private dead: string | null = null;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (msg: WorkerResponse) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.out);
      else p.reject(new AppError('INTERNAL', `inference failed: ${msg.message}`));
    });
    worker.on('error', (e) => this.failAll(e));
    worker.on('exit', (code) => this.failAll(new Error(`inference worker exited with code ${code}`)));
  }

  /** Starts the worker and waits until the session is created. */
  static async start(opts: EngineOptions): Promise<WorkerEngine> {
    const init: WorkerInit = {
      modelPath: path.resolve(opts.modelDir, opts.manifest.modelFile),
      manifest: opts.manifest,
      threads: opts.threads,
      executionProvider: opts.executionProvider,
    };
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
    await new Promise<void>((resolve, reject) => {
      const onMsg = (m: { ready?: boolean; message?: string }) => {
        if (m.ready === undefined) return;
        worker.off('message', onMsg);
        if (m.ready) resolve();
        else reject(new AppError('INVALID_MODEL', `cannot load ${init.modelPath}: ${m.message}`));
      };
      worker.on('message', onMsg);
      worker.once('error', reject);
    });
    return new WorkerEngine(worker);
  }

  run(batch: BatchInput): Promise<BatchOutput> {
    if (this.closed) return Promise.reject(new AppError('SHUTTING_DOWN', 'the inference engine is closed'));
    if (this.dead) return Promise.reject(new AppError('INTERNAL', `the inference worker is not running: ${this.dead}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, batch } satisfies WorkerRequest);
    });
  }

  private failAll(e: Error): void {
    this.dead ??= e.message;
    for (const p of this.pending.values()) p.reject(new AppError('INTERNAL', `inference worker failed: ${e.message}`));
    this.pending.clear();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.worker.terminate();
  }
}
