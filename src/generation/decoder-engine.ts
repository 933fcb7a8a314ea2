import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { AppError } from '../errors.js';
import type { ModelManifest } from '../model/manifest.js';
import type { AdapterPayload } from '../runtime/batch.js';
import { spawnReadyWorker, workerModule } from '../runtime/spawn-worker.js';
import type { StepTransfer } from './decoder-runner.js';
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
  /** Estimated bytes moved between host and device, and what stayed there (docs/gpu.md). */
  transfer?: StepTransfer;
}

/** What the generation scheduler needs from a decoder. */
export interface DecoderEngine {
  step(rows: WorkerStepRow[], adapters: AdapterPayload[]): Promise<DecoderStepResult>;
  /** Drops the sequences' KV caches (finished or cancelled). */
  free(seqs: number[]): void;
  close(): Promise<void>;
}

export interface DecoderEngineOptions {
  modelDir: string;
  manifest: ModelManifest;
  threads: number;
  executionProvider: string;
  /** Delay before a dead worker is started again, ms (doubles per crash in a row, up to maxDelayMs). */
  restart?: { firstDelayMs: number; maxDelayMs: number };
}

const restarting = (why: string) => new AppError('WORKER_RESTARTING', `the decoder worker stopped (${why}); retry shortly`, { headers: { 'retry-after': '1' } });

/**
 * The decoder session and its KV caches in a worker thread; steps run one at a time, in order.
 * Supervised: when the worker dies, the steps in it fail with 503 WORKER_RESTARTING (their
 * sequences' caches died with it) and a new worker is started after a back-off.
 */
export class DecoderWorkerEngine implements DecoderEngine {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (o: DecoderStepResult) => void; reject: (e: Error) => void }>();
  private worker: Worker | null = null;
  private dead: string | null = null;
  private closed = false;
  private crashesInARow = 0;
  /** Worker deaths so far (metrics, tests). */
  crashes = 0;

  private constructor(private readonly opts: DecoderEngineOptions) {}

  static async start(opts: DecoderEngineOptions): Promise<DecoderWorkerEngine> {
    const e = new DecoderWorkerEngine(opts);
    await e.spawn();
    return e;
  }

  get up(): boolean { return this.worker !== null && this.dead === null; }

  private async spawn(): Promise<void> {
    const { opts } = this;
    const init: DecoderWorkerInit = { modelDir: path.resolve(opts.modelDir), manifest: opts.manifest, threads: opts.threads, executionProvider: opts.executionProvider };
    const worker = await spawnReadyWorker(workerModule(import.meta.url, 'decoder-worker'), init, opts.modelDir);
    worker.on('message', (msg: DecoderWorkerResponse) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve({ logits: msg.logits, runMs: msg.runMs, feedMs: msg.feedMs, kvBytes: msg.kvBytes, kvTokens: msg.kvTokens, transfer: msg.transfer });
      else p.reject(new AppError('INTERNAL', `decoder step failed: ${msg.message}`));
    });
    let gone = false;
    const died = (why: string) => {
      if (gone) return;
      gone = true;
      if (this.worker === worker) this.worker = null;
      for (const p of this.pending.values()) p.reject(restarting(why));
      this.pending.clear();
      if (this.closed) return;
      this.dead = why;
      this.crashes++;
      const r = opts.restart ?? { firstDelayMs: 100, maxDelayMs: 30_000 };
      const delay = Math.min(r.maxDelayMs, r.firstDelayMs * 2 ** this.crashesInARow++);
      setTimeout(() => {
        if (this.closed) return;
        this.spawn().then(() => { this.dead = null; }, (e: Error) => died(`restart failed: ${e.message}`));
      }, delay).unref();
    };
    worker.on('error', (e) => died(e.message));
    worker.on('exit', (code) => died(`exit code ${code}`));
    this.worker = worker;
    const upSince = Date.now();
    setTimeout(() => { if (this.worker === worker && Date.now() - upSince >= 60_000) this.crashesInARow = 0; }, 60_000).unref();
  }

  step(rows: WorkerStepRow[], adapters: AdapterPayload[]): Promise<DecoderStepResult> {
    if (this.closed) return Promise.reject(new AppError('SHUTTING_DOWN', 'the decoder is closed'));
    const w = this.worker;
    if (!w || this.dead) return Promise.reject(restarting(this.dead ?? 'starting'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ type: 'step', id, rows, adapters } satisfies DecoderWorkerRequest);
    });
  }

  free(seqs: number[]): void {
    if (seqs.length && this.worker && !this.dead) this.worker.postMessage({ type: 'free', seqs } satisfies DecoderWorkerRequest);
  }

  /** Test-only: the worker thread exits, as a crash would end it. */
  crashForTest(): void {
    this.worker?.postMessage({ type: 'crash' } satisfies DecoderWorkerRequest);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.worker?.terminate();
  }
}
