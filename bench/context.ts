/**
 * What every figure shares: the run's settings, the synthetic model and adapters (made once),
 * the adapter store, and one inference worker (creating an ONNX session takes seconds).
 */
import type { AdapterStore } from '../src/adapter/store.js';
import type { WorkerEngine } from '../src/runtime/engine.js';
import { ensureAdapters, ensureMerged, ensureModel, type BenchModel, type ModelSize } from './models.js';
import type { FigureResult } from './report.js';
import { openStore, startEngine } from './stack.js';

/** Settings of one run (quick by default, --full for BERT-base). */
export interface BenchSettings {
  mode: 'quick' | 'full';
  size: ModelSize;
  /** `.bench/`: models, adapters, results. */
  root: string;
  /** Measured repeats per ratio (warm-up rounds come on top). */
  reps: number;
  warmup: number;
  seed: number;
  soakSeconds: number;
  /** Rows per batch (the batcher's maxBatchRows). */
  batchRows: number;
  /** Input length range, tokens with [CLS]/[SEP]. */
  minTokens: number;
  maxTokens: number;
  /** Adapters for the 1,000-resident figure. */
  manyAdapters: number;
  /** Adapters in use in the cache-pressure and same-adapter figures. */
  zipfAdapters: number;
  /** Adapters (and merged models) of the merged-model baseline. */
  mergedAdapters: number;
  /** Seconds of each open-loop run in the same-adapter figure. */
  openLoopSeconds: number;
  /** Intra-op threads of the generation figures' engines, ours and the peers alike (default: the CPU count). */
  threads?: number;
  /** Repeats of the generation figures when given (--reps); otherwise 3 in quick mode, `reps` in full. */
  genReps?: number;
  /** onnxruntime-node execution provider of every ORT session the figures make (--execution-provider; default cpu). */
  executionProvider: string;
}

export type Log = (msg: string) => void;

export class BenchContext {
  private modelP: Promise<BenchModel> | null = null;
  private engineP: Promise<WorkerEngine> | null = null;
  private storeP: Promise<AdapterStore> | null = null;

  constructor(readonly s: BenchSettings, readonly log: Log) {}

  /** The synthetic model, made on first use. */
  model(): Promise<BenchModel> {
    return (this.modelP ??= ensureModel(this.s.root, this.s.size, this.log));
  }

  /** A short name of the synthetic model for the table. */
  get modelName(): string {
    return this.s.size === 'base' ? 'synthetic BERT-base' : 'synthetic DistilBERT-size';
  }

  /** Ids of the first `n` random adapters (made if missing). */
  async adapters(n: number): Promise<string[]> {
    return ensureAdapters(await this.model(), n, this.log);
  }

  async merged(ids: string[]): Promise<string[]> {
    return ensureMerged(await this.model(), ids, this.log);
  }

  store(): Promise<AdapterStore> {
    return (this.storeP ??= this.model().then((m) => openStore(m.adaptersDir)));
  }

  /** The shared inference worker on the slotted synthetic model. */
  engine(): Promise<WorkerEngine> {
    return (this.engineP ??= this.model().then((m) => startEngine(m.slottedDir, m.manifest, this.s.executionProvider)));
  }

  /** Results figures share (e.g. the memory children's measurements), by key. */
  readonly memo = new Map<string, unknown>();

  /** The synthetic tokenizer's [PAD] id (0: the specials come first in its vocabulary). */
  readonly padId = 0;

  async close(): Promise<void> {
    if (this.engineP) await (await this.engineP).close();
    this.engineP = null;
  }
}

/** A figure: runs its measurements and returns its rows and notes. */
export type Figure = (ctx: BenchContext) => Promise<Omit<FigureResult, 'seconds' | 'id'>>;
