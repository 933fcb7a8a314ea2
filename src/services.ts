import path from 'node:path';
import type { Logger } from 'pino';
import { AdapterCache, type CacheEvents } from './adapter/cache.js';
import { AdapterLoader } from './adapter/loader.js';
import { AdapterRegistry } from './adapter/registry.js';
import { AdapterStore } from './adapter/store.js';
import type { Config } from './config.js';
import { InferenceService } from './inference.js';
import { loadManifest, type ModelManifest } from './model/manifest.js';
import { AsyncTokenizer } from './model/async-tokenizer.js';
import { TextTokenizer } from './model/tokenizer.js';
import type { BatchInput } from './runtime/batch.js';
import { WorkerEngine, type EngineEvents } from './runtime/engine.js';
import { Batcher, type BatchReport } from './scheduler/batcher.js';

/** Callbacks the metrics module plugs in (services stay metrics-free). */
export interface ServiceHooks {
  cache?: CacheEvents;
  onBatch?(r: BatchReport): void;
  /** The inference worker died / came back. */
  engine?: EngineEvents;
}

/** Everything behind the HTTP layer, built once per app and passed in (no singletons). */
export interface Services {
  config: Config;
  manifest: ModelManifest;
  tokenizer: TextTokenizer;
  /** Tokenizes requests: small ones on the HTTP thread, long ones in a tokenizer thread. */
  encoder: AsyncTokenizer;
  /** The supervised inference worker (restarted with back-off when it dies). */
  engine: WorkerEngine;
  store: AdapterStore;
  loader: AdapterLoader;
  cache: AdapterCache;
  registry: AdapterRegistry;
  batcher: Batcher;
  inference: InferenceService;
  /** One real inference through the whole path; readiness waits for it. */
  warmup(): Promise<void>;
  /** Drains the batcher and stops the worker. */
  close(): Promise<void>;
}

/** Loads the base model, scans the adapter store, starts the inference worker. */
export async function createServices(config: Config, log: Logger, hooks: ServiceHooks = {}): Promise<Services> {
  const modelDir = path.resolve(config.modelDir);
  const manifest = await loadManifest(modelDir);
  const tokenizerPath = path.join(modelDir, manifest.tokenizerFile);
  const tokenizer = await TextTokenizer.load(tokenizerPath);
  const store = new AdapterStore({ dir: path.resolve(config.adaptersDir), log: log.child({ component: 'store' }) });
  const loader = new AdapterLoader(store, manifest, { allowBaseMismatch: config.allowBaseMismatch });
  const pinned = config.pin.split(',').map((s) => s.trim()).filter(Boolean);
  const cache = new AdapterCache({
    maxBytes: Math.floor(config.cacheMb * 1024 * 1024),
    load: (id) => loader.load(id),
    pinned,
    ...(hooks.cache ? { events: hooks.cache } : {}),
  });
  const registry = new AdapterRegistry(store, loader, cache, log.child({ component: 'registry' }));
  await registry.init();
  // One real run through the model: the warm-up readiness waits for, and the probe a restarted worker must pass.
  const warmIds = tokenizer.encode('warm-up', manifest.maxLength, true);
  const warmBatch: BatchInput = { batch: 1, seqLen: warmIds.length, inputIds: Int32Array.from(warmIds), lengths: Int32Array.of(warmIds.length), adapters: [], rowAdapter: Int32Array.of(-1) };
  const engine = await WorkerEngine.start({
    modelDir, manifest, threads: config.threads, executionProvider: config.executionProvider,
    restart: { firstDelayMs: config.workerRestartMs, maxDelayMs: Math.max(config.workerRestartMs, config.workerRestartMaxMs) },
    probe: warmBatch,
    log: log.child({ component: 'engine' }),
    ...(hooks.engine ? { events: hooks.engine } : {}),
  });
  const batcher = new Batcher({
    engine,
    maxBatchRows: config.maxBatch,
    maxWaitMs: config.maxWaitMs,
    maxQueueRows: config.queueLimit,
    padId: tokenizer.padId,
    ...(hooks.onBatch ? { onBatch: hooks.onBatch } : {}),
  });
  const encoder = await new AsyncTokenizer({ tokenizer, tokenizerPath }).start();
  const inference = new InferenceService({
    manifest, encoder, batcher, registry,
    limits: { maxInputs: config.maxInputs, maxTokens: config.maxTokens, maxInputChars: config.maxInputChars },
  });
  return {
    config, manifest, tokenizer, encoder, engine, store, loader, cache, registry, batcher, inference,
    async warmup() {
      await engine.run(warmBatch);
    },
    async close() {
      await batcher.drain();
      await encoder.close();
      await engine.close();
    },
  };
}
