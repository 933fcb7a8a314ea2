import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { AppError } from '../errors.js';
import { spawnReadyWorker, workerModule } from './spawn-worker.js';
import type { ModelManifest } from '../model/manifest.js';
import type { BatchInput, BatchOutput } from './batch.js';
import type { CrashHow, CrashWhen, WorkerInit, WorkerRequest, WorkerResponse } from './worker.js';

/** What the scheduler needs from an inference engine. */
export interface Engine {
  run(batch: BatchInput): Promise<BatchOutput>;
  close(): Promise<void>;
}

/** What readiness and metrics read from an engine that can lose and restart its worker. */
export interface EngineHealth {
  /** True while a worker is running and takes work. */
  readonly up: boolean;
  /** Worker restarts so far (attempts, failed ones included). */
  readonly restarts: number;
  /** Seconds until the next restart attempt while down (for Retry-After); 0 when up. */
  readonly retryAfterSeconds: number;
}

/** When a dead worker is started again. */
export interface RestartPolicy {
  /** Delay before the first restart after a crash, ms. */
  firstDelayMs: number;
  /** The delay doubles with every crash in a row, up to this, ms. */
  maxDelayMs: number;
  /** A worker that stayed up this long before it died starts the back-off afresh, ms. */
  stableMs: number;
}

export const DEFAULT_RESTART: RestartPolicy = { firstDelayMs: 100, maxDelayMs: 30_000, stableMs: 60_000 };

/** The delay before restart attempt `crashes` (1 for the first crash in a row): exponential, capped. */
export function restartDelay(crashes: number, p: Pick<RestartPolicy, 'firstDelayMs' | 'maxDelayMs'>): number {
  return Math.min(p.maxDelayMs, p.firstDelayMs * 2 ** Math.max(0, crashes - 1));
}

/** What the engine logs through (a pino logger fits). */
export interface EngineLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Notifications about the worker (metrics, tests). */
export interface EngineEvents {
  /** The worker died: runs in it failed with WORKER_RESTARTING; a restart follows in `restartInMs`. */
  onDown?(info: { reason: string; crashes: number; restartInMs: number }): void;
  /** A restarted worker passed its probe run and takes work again. */
  onUp?(info: { restarts: number; downMs: number }): void;
}

export interface EngineOptions {
  modelDir: string;
  manifest: ModelManifest;
  /** intra-op threads for the session (default: 2). */
  threads: number;
  /** ORT execution provider: 'cpu' (default), 'webgpu', 'cuda', ... */
  executionProvider: string;
  /** Restart back-off; defaults in {@link DEFAULT_RESTART}. */
  restart?: Partial<RestartPolicy>;
  /** A batch a restarted worker must run before it takes work again (the warm-up). */
  probe?: BatchInput;
  log?: EngineLog;
  events?: EngineEvents;
}

interface Pending { resolve(o: BatchOutput): void; reject(e: Error): void }

const silent: EngineLog = { info() {}, warn() {}, error() {} };

/** Starts the inference worker and waits until its session is created. */
function spawnWorker(init: WorkerInit): Promise<Worker> {
  return spawnReadyWorker(workerModule(import.meta.url, 'worker'), init, init.modelPath);
}

/**
 * The ONNX session in a worker thread; one run at a time, in order. The worker is supervised:
 * when it dies (an error thrown in it, process.exit, running out of its heap), runs in it fail
 * at once with WORKER_RESTARTING (503, Retry-After), `up` turns false, and a new worker is
 * started after a back-off that doubles with every crash in a row (capped; reset once a worker
 * stays up `stableMs`). A restarted worker takes work only once it has run the probe batch.
 */
export class WorkerEngine implements Engine, EngineHealth {
  private worker: Worker | null = null;
  /** Events from workers of an older generation (already handled as dead) are ignored. */
  private generation = 0;
  private accepting = false;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private crashes = 0;
  private upSince = performance.now();
  private downSince = 0;
  private restartDue = 0;
  private restartCount = 0;
  private readonly policy: RestartPolicy;
  private readonly log: EngineLog;

  private constructor(private readonly init: WorkerInit, private readonly opts: EngineOptions) {
    this.policy = { ...DEFAULT_RESTART, ...(opts.restart ?? {}) };
    this.log = opts.log ?? silent;
  }

  /** Starts the worker and waits until the session is created (INVALID_MODEL if it cannot be). */
  static async start(opts: EngineOptions): Promise<WorkerEngine> {
    const init: WorkerInit = {
      modelPath: path.resolve(opts.modelDir, opts.manifest.modelFile),
      manifest: opts.manifest,
      threads: opts.threads,
      executionProvider: opts.executionProvider,
    };
    const engine = new WorkerEngine(init, opts);
    engine.attach(await spawnWorker(init));
    engine.accepting = true;
    return engine;
  }

  get up(): boolean {
    return this.accepting && !this.closed;
  }

  get restarts(): number {
    return this.restartCount;
  }

  get retryAfterSeconds(): number {
    if (this.up) return 0;
    return Math.max(1, Math.ceil((this.restartDue - performance.now()) / 1000));
  }

  run(batch: BatchInput): Promise<BatchOutput> {
    if (this.closed) return Promise.reject(new AppError('SHUTTING_DOWN', 'the inference engine is closed'));
    if (!this.accepting) return Promise.reject(this.restartingError('the inference worker is restarting after a crash; retry shortly'));
    return this.send(batch);
  }

  /**
   * Test-only: makes the worker die as a crash would, by `process.exit` in it or an uncaught
   * error, at once or at the start of its next run (so a batch is in it when it dies).
   */
  crashForTest(how: CrashHow = 'exit', when: CrashWhen = 'now'): void {
    this.worker?.postMessage({ type: 'crash', how, when } satisfies WorkerRequest);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.accepting = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.failAll(new AppError('SHUTTING_DOWN', 'the inference engine is closed'));
    const w = this.worker;
    this.worker = null;
    await w?.terminate();
  }

  private send(batch: BatchInput): Promise<BatchOutput> {
    const worker = this.worker;
    if (!worker) return Promise.reject(this.restartingError('the inference worker is not running'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ type: 'run', id, batch } satisfies WorkerRequest);
    });
  }

  private restartingError(message: string): AppError {
    return new AppError('WORKER_RESTARTING', message, { headers: { 'Retry-After': String(this.retryAfterSeconds || 1) } });
  }

  private attach(worker: Worker): void {
    const gen = ++this.generation;
    this.worker = worker;
    worker.on('message', (msg: WorkerResponse) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.out);
      else p.reject(new AppError('INTERNAL', `inference failed: ${msg.message}`));
    });
    worker.on('error', (e) => this.died(gen, worker, `uncaught error in the worker: ${e.message}`));
    worker.on('exit', (code) => this.died(gen, worker, `the worker exited with code ${code}`));
  }

  private failAll(e: AppError): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  /** The worker of generation `gen` died (first report wins; later ones, and any after close, are ignored). */
  private died(gen: number, worker: Worker, reason: string): void {
    if (gen !== this.generation || this.closed) return;
    this.generation++;
    this.worker = null;
    this.accepting = false;
    this.downSince = performance.now();
    void worker.terminate(); // after an 'error' it exits anyway; make sure
    this.scheduleRestart(reason);
    this.failAll(this.restartingError(`the inference worker died (${reason}); it is restarting, retry shortly`));
  }

  private scheduleRestart(reason: string): void {
    const lived = performance.now() - this.upSince;
    this.crashes = lived >= this.policy.stableMs ? 1 : this.crashes + 1;
    const delay = restartDelay(this.crashes, this.policy);
    this.restartDue = performance.now() + delay;
    this.log.error({ reason, crashes: this.crashes, restartInMs: delay }, 'inference worker died; restarting it');
    this.opts.events?.onDown?.({ reason, crashes: this.crashes, restartInMs: delay });
    this.timer = setTimeout(() => void this.restart(), delay);
  }

  private async restart(): Promise<void> {
    this.timer = null;
    if (this.closed) return;
    this.restartCount++;
    let worker: Worker;
    try {
      worker = await spawnWorker(this.init);
    } catch (e) {
      if (!this.closed) this.scheduleRestart(`restart failed: ${(e as Error).message}`);
      return;
    }
    if (this.closed) {
      await worker.terminate();
      return;
    }
    this.upSince = performance.now();
    this.attach(worker);
    if (this.opts.probe) {
      try {
        await this.send(this.opts.probe);
      } catch (e) {
        // A worker that cannot run the probe is as good as dead: end it; its exit restarts it.
        if (this.worker === worker) {
          this.log.error({ err: e }, 'restarted inference worker failed its probe run');
          void worker.terminate();
        }
        return;
      }
      if (this.worker !== worker || this.closed) return;
    }
    this.accepting = true;
    this.upSince = performance.now();
    const downMs = Math.round(performance.now() - this.downSince);
    this.log.warn({ restarts: this.restartCount, downMs }, 'inference worker restarted; taking work again');
    this.opts.events?.onUp?.({ restarts: this.restartCount, downMs });
  }
}
