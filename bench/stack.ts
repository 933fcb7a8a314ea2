/**
 * The serving path without HTTP, built from the real parts (store → loader → AdapterCache →
 * Batcher → WorkerEngine), fed token ids directly. Figures build one per side; the engine (the
 * ONNX session, seconds to create) is shared between sides.
 */
import os from 'node:os';
import { pino } from 'pino';
import ort from 'onnxruntime-node';
import { AdapterCache } from '../src/adapter/cache.js';
import { AdapterLoader } from '../src/adapter/loader.js';
import { AdapterStore } from '../src/adapter/store.js';
import type { ModelManifest } from '../src/model/manifest.js';
import { WorkerEngine, type Engine } from '../src/runtime/engine.js';
import { Batcher, type BatchReport } from '../src/scheduler/batcher.js';

/** Session options as the engine's worker uses them (for sessions the bench creates itself), on the run's execution provider. */
export function sessionOptions(executionProvider: string): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [executionProvider],
    intraOpNumThreads: os.availableParallelism(),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  };
}

/** The batcher's settings in every figure (the server's defaults, except a moderate batch). */
export const BATCH = { maxBatchRows: 8, maxWaitMs: 0, maxQueueRows: 1_000_000 };

export const silentLog = pino({ level: 'silent' });

export async function openStore(dir: string): Promise<AdapterStore> {
  const store = new AdapterStore({ dir, log: silentLog });
  await store.init();
  return store;
}

/** Starts the real inference worker on a slotted model. */
export function startEngine(modelDir: string, manifest: ModelManifest, executionProvider: string): Promise<WorkerEngine> {
  return WorkerEngine.start({ modelDir, manifest, threads: os.availableParallelism(), executionProvider });
}

/** Something that serves one single-row request for an adapter (by index). */
export interface Server {
  request(adapter: number, ids: number[]): Promise<void>;
}

/** Cache + batcher over a shared engine. */
export interface Stack extends Server {
  cache: AdapterCache;
  batcher: Batcher;
  loader: AdapterLoader;
  /** Batches run and distinct adapters in them since the last {@link Stack.resetCounts}. */
  batches: { runs: number; rows: number; distinct: number };
  resetCounts(): void;
  /** Loads adapters into the cache (acquire + release), in order. */
  preload(indices: Iterable<number>): Promise<void>;
}

/** Options of {@link makeStack}. */
export interface StackOptions {
  store: AdapterStore;
  manifest: ModelManifest;
  engine: Engine;
  /** Adapter ids; requests name adapters by index into this list. */
  ids: readonly string[];
  cacheBytes: number;
  padId: number;
  maxBatchRows?: number;
}

export function makeStack(o: StackOptions): Stack {
  const loader = new AdapterLoader(o.store, o.manifest);
  const cache = new AdapterCache({ maxBytes: o.cacheBytes, load: (id) => loader.load(id) });
  const batches = { runs: 0, rows: 0, distinct: 0 };
  const batcher = new Batcher({
    engine: o.engine, ...BATCH, ...(o.maxBatchRows ? { maxBatchRows: o.maxBatchRows } : {}), padId: o.padId,
    onBatch: (r: BatchReport) => { batches.runs++; batches.rows += r.rows; batches.distinct += r.distinctAdapters; },
  });
  const request = async (adapter: number, ids: number[]) => {
    const lease = await cache.acquire(o.ids[adapter]!);
    try {
      await batcher.submit([{ ids, adapter: lease.weights }]);
    } finally {
      lease.release();
    }
  };
  return {
    cache, batcher, loader, batches, request,
    resetCounts() {
      batches.runs = 0; batches.rows = 0; batches.distinct = 0;
      Object.assign(cache.counters, { hits: 0, misses: 0, evictions: 0, loads: 0, loadFailures: 0 });
    },
    async preload(indices) {
      for (const i of indices) (await cache.acquire(o.ids[i]!)).release();
    },
  };
}

/**
 * Closed loop: keeps `concurrency` requests in flight until every item was served; returns
 * rows per second. `concurrency` ≥ 2 × the batch size keeps the next batch queued while one runs.
 */
export async function closedLoop(server: Server, items: ReadonlyArray<{ adapter: number; ids: number[] }>, concurrency: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next < items.length) {
      const it = items[next++]!;
      await server.request(it.adapter, it.ids);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane));
  return items.length / ((performance.now() - t0) / 1000);
}

/** What an open-loop run saw. */
export interface OpenLoopResult {
  /** Each request's latency (scheduled arrival → answer), ms, in arrival order. */
  latencies: number[];
  /** Rows answered ÷ (last answer − start), rows/s. */
  throughput: number;
  /** Arrival rate offered, requests/s. */
  offered: number;
  seconds: number;
}

/** Open loop: each item is sent at its `at` (ms) regardless of how the server keeps up. */
export async function openLoop(server: Server, items: ReadonlyArray<{ at: number; adapter: number; ids: number[] }>): Promise<OpenLoopResult> {
  const t0 = performance.now();
  const latencies = new Array<number>(items.length);
  const pending: Promise<void>[] = [];
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    const wait = t0 + it.at - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const arrival = t0 + it.at; // latency from the scheduled arrival: a late send counts against the server
    pending.push(server.request(it.adapter, it.ids).then(() => { latencies[i] = performance.now() - arrival; }));
  }
  await Promise.all(pending);
  const seconds = (performance.now() - t0) / 1000;
  const span = items.length ? items[items.length - 1]!.at / 1000 : 1;
  return { latencies, throughput: items.length / seconds, offered: items.length / span, seconds };
}
