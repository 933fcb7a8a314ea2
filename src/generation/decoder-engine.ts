import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { AppError } from '../errors.js';
import type { ModelManifest } from '../model/manifest.js';
import type { AdapterPayload } from '../runtime/batch.js';
import type { DecoderWorkerInit, DecoderWorkerRequest, DecoderWorkerResponse, WorkerStepRow } from './decoder-worker.js';

/** What one step returns to the scheduler. */
export interface DecoderStepResult {
  /** Per row, the logits after its last new token `[vocab]`. */
  logits: Float32Array[];
  runMs: number;
  feedMs: number;
  /** KV-cache bytes held by all sequences after the step (capacity, not just length). */
  kvBytes: number;
  kvTokens: number;
}

/** What the generation scheduler needs from a decoder. */
export interface DecoderEngine {
  step(rows: WorkerStepRow[], adapters: AdapterPayload[]): Promise<DecoderStepResult>;
  /** Drops the sequences' KV caches (finished or cancelled). */
  free(seqs: number[]): void;
  close(): Promise<void>;
}

/** The decoder session and its KV caches in a worker thread; steps run one at a time, in order. */
export class DecoderWorkerEngine implements DecoderEngine {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (o: DecoderStepResult) => void; reject: (e: Error) => void }>();
  private dead: string | null = null;
  private closed = false;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (msg: DecoderWorkerResponse) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve({ logits: msg.logits, runMs: msg.runMs, feedMs: msg.feedMs, kvBytes: msg.kvBytes, kvTokens: msg.kvTokens });
      else p.reject(new AppError('INTERNAL', `decoder step failed: ${msg.message}`));
    });
    const fail = (e: Error) => {
      this.dead ??= e.message;
      for (const p of this.pending.values()) p.reject(new AppError('WORKER_RESTARTING', `the decoder worker stopped: ${e.message}`, { headers: { 'retry-after': '1' } }));
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
  }

  static async start(opts: { modelDir: string; manifest: ModelManifest; threads: number; executionProvider: string }): Promise<DecoderWorkerEngine> {
    const init: DecoderWorkerInit = { modelDir: path.resolve(opts.modelDir), manifest: opts.manifest, threads: opts.threads, executionProvider: opts.executionProvider };
    const worker = new Worker(new URL('./decoder-worker.js', import.meta.url), { workerData: init });
    await new Promise<void>((resolve, reject) => {
      const onMsg = (m: { ready?: boolean; message?: string }) => {
        if (m.ready === undefined) return;
        worker.off('message', onMsg);
        if (m.ready) resolve();
        else reject(new AppError('INVALID_MODEL', `cannot load ${opts.modelDir}: ${m.message}`));
      };
      worker.on('message', onMsg);
      worker.once('error', reject);
    });
    return new DecoderWorkerEngine(worker);
  }

  step(rows: WorkerStepRow[], adapters: AdapterPayload[]): Promise<DecoderStepResult> {
    if (this.closed) return Promise.reject(new AppError('SHUTTING_DOWN', 'the decoder is closed'));
    if (this.dead) return Promise.reject(new AppError('WORKER_RESTARTING', `the decoder worker is not running: ${this.dead}`, { headers: { 'retry-after': '1' } }));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'step', id, rows, adapters } satisfies DecoderWorkerRequest);
    });
  }

  free(seqs: number[]): void {
    if (seqs.length && !this.closed && !this.dead) this.worker.postMessage({ type: 'free', seqs } satisfies DecoderWorkerRequest);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.worker.terminate();
  }
}
