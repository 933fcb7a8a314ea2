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
import { Tokenizer } from '@huggingface/tokenizers';
import { readFile } from 'node:fs/promises';
import { AppError } from './errors.js';
import { DecoderWorkerEngine } from './generation/decoder-engine.js';
import { argmax } from './generation/greedy.js';
import type { GenerationMetrics } from './generation/metrics.js';
import { GenerationScheduler } from './generation/scheduler.js';
import { GenerationService } from './generation/service.js';

/** Callbacks the metrics module plugs in (services stay metrics-free). */
export interface ServiceHooks {
  cache?: CacheEvents;
  onBatch?(r: BatchReport): void;
  /** The inference worker died / came back. */
  engine?: EngineEvents;
  /** Steps, tokens and finished sequences of the text-generation bases. */
  generation?: Pick<GenerationMetrics, 'onStep' | 'onToken' | 'onFinished'>;
}

/** One text-generation base: its adapters, its decoder worker (with the KV caches) and its scheduler. */
export interface GenerationBase {
  manifest: ModelManifest;
  store: AdapterStore;
  registry: AdapterRegistry;
  engine: DecoderWorkerEngine;
  scheduler: GenerationScheduler;
  service: GenerationService;
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
  /** The text-generation bases (their adapters share `cache`). */
  generation: GenerationBase[];
  /** One real inference through the whole path; readiness waits for it. */
  warmup(): Promise<void>;
  /** Drains the batcher and stops the worker. */
  close(): Promise<void>;
}

/**
 * Loads the bases (one encoder, any number of text-generation bases), scans each base's adapter
 * store, starts the inference workers. Adapter ids are unique across bases; the adapter cache
 * (its byte budget) is shared.
 */
export async function createServices(config: Config, log: Logger, hooks: ServiceHooks = {}): Promise<Services> {
  const dirs = config.modelDir.map((d) => path.resolve(d));
  const manifests = await Promise.all(dirs.map((d) => loadManifest(d)));
  const encoders = manifests.flatMap((m, i) => (m.task === 'text-generation' ? [] : [i]));
  if (encoders.length !== 1) {
    throw new AppError('INVALID_CONFIG', `--model-dir must name exactly one encoder base (classification / embeddings) and any number of text-generation bases; got ${encoders.length} encoder bases (${dirs.join(', ')})`);
  }
  const names = manifests.map((m) => m.baseModel);
  if (new Set(names).size !== names.length) throw new AppError('INVALID_CONFIG', `two bases have the same name: ${names.join(', ')}`);
  const ei = encoders[0]!;
  const modelDir = dirs[ei]!;
  const manifest = manifests[ei]!;
  const tokenizerPath = path.join(modelDir, manifest.tokenizerFile);
  const tokenizer = await TextTokenizer.load(tokenizerPath);
  const store = new AdapterStore({ dir: path.resolve(config.adaptersDir[ei]!), log: log.child({ component: 'store' }) });
  const loader = new AdapterLoader(store, manifest, { allowBaseMismatch: config.allowBaseMismatch });
  const pinned = config.pin.split(',').map((s) => s.trim()).filter(Boolean);
  const genRegistries: Array<{ registry: AdapterRegistry; loader: AdapterLoader }> = [];
  const cache = new AdapterCache({
    maxBytes: Math.floor(config.cacheMb * 1024 * 1024),
    // One budget for every base: an id is loaded by the base whose store holds it.
    load: (id) => (genRegistries.find((g) => g.registry.has(id))?.loader ?? loader).load(id),
    pinned,
    ...(hooks.cache ? { events: hooks.cache } : {}),
  });
  const generation: GenerationBase[] = [];
  try {
    for (const [i, m] of manifests.entries()) {
      if (i === ei) continue;
      generation.push(await startGenerationBase(config, dirs[i]!, m, path.resolve(config.adaptersDir[i]!), cache, genRegistries, log, hooks));
    }
    const registry = new AdapterRegistry(store, loader, cache, log.child({ component: 'registry' }));
    await registry.init();
    const seen = new Map<string, string>();
    for (const [base, reg] of [[manifest.baseModel, registry] as const, ...generation.map((g) => [g.manifest.baseModel, g.registry] as const)]) {
      for (const a of reg.list()) {
        const other = seen.get(a.id);
        if (other) throw new AppError('INVALID_CONFIG', `adapter id "${a.id}" is in the stores of two bases (${other} and ${base}); ids must be unique across bases`);
        seen.set(a.id, base);
      }
    }
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
      config, manifest, tokenizer, encoder, engine, store, loader, cache, registry, batcher, inference, generation,
      async warmup() {
        await engine.run(warmBatch);
        for (const g of generation) await warmDecoder(g);
      },
      async close() {
        for (const g of generation) g.scheduler.close();
        await Promise.all(generation.map((g) => g.scheduler.drain()));
        await batcher.drain();
        await encoder.close();
        await engine.close();
        await Promise.all(generation.map((g) => g.engine.close()));
      },
    };
  } catch (e) {
    // Decoder workers already started must not keep the process alive after a failed start.
    await Promise.all(generation.map((g) => g.engine.close()));
    throw e;
  }
}

async function startGenerationBase(
  config: Config, modelDir: string, manifest: ModelManifest, adaptersDir: string, cache: AdapterCache,
  registries: Array<{ registry: AdapterRegistry; loader: AdapterLoader }>, log: Logger, hooks: ServiceHooks,
): Promise<GenerationBase> {
  const store = new AdapterStore({ dir: adaptersDir, log: log.child({ component: 'store', base: manifest.baseModel }) });
  const loader = new AdapterLoader(store, manifest, { allowBaseMismatch: config.allowBaseMismatch });
  const registry = new AdapterRegistry(store, loader, cache, log.child({ component: 'registry', base: manifest.baseModel }));
  registries.push({ registry, loader });
  await registry.init();
  const tokJson = JSON.parse(await readFile(path.join(modelDir, manifest.tokenizerFile), 'utf8')) as { model?: { vocab?: Record<string, number> | Array<[string, number]> }; added_tokens?: Array<{ content: string }> };
  const tokenizer = new Tokenizer(tokJson, {});
  const vocab = tokJson.model?.vocab;
  const pieces = [...(Array.isArray(vocab) ? vocab.map((v) => v[0]) : Object.keys(vocab ?? {})), ...(tokJson.added_tokens ?? []).map((t) => t.content)];
  const maxTokenChars = pieces.reduce((m, p) => Math.max(m, p.length), 1);
  const engine = await DecoderWorkerEngine.start({
    modelDir, manifest, threads: config.threads, executionProvider: config.executionProvider,
    restart: { firstDelayMs: config.workerRestartMs, maxDelayMs: Math.max(config.workerRestartMs, config.workerRestartMaxMs) },
  });
  const scheduler = new GenerationScheduler({
    engine, spec: manifest.generation!,
    kvBudgetBytes: Math.floor(config.kvCacheMb * 1024 * 1024),
    maxRunning: config.maxRunningSeqs, maxWaiting: config.maxWaitingSeqs, prefillChunk: config.prefillChunk,
    ...(hooks.generation ? { onStep: (r) => hooks.generation!.onStep(r) } : {}),
  });
  const glog = log.child({ component: 'generation', base: manifest.baseModel });
  const service = new GenerationService({
    manifest, tokenizer, scheduler, registry, maxTokenChars,
    onToken: (r) => hooks.generation?.onToken(r),
    onFinished: (r) => {
      hooks.generation?.onFinished({ adapterId: r.adapterId, promptTokens: r.result?.promptTokens ?? 0, completionTokens: r.result?.completionTokens ?? 0, reason: r.reason });
      // One line per finished generation: adapter, tokens in and out, time to first token, finish reason.
      glog.info({ adapter: r.adapterId ?? manifest.baseModel, promptTokens: r.result?.promptTokens, completionTokens: r.result?.completionTokens,
        ttftMs: r.result ? Math.round(r.result.ttftMs) : undefined, totalMs: Math.round(r.totalMs), finish: r.reason }, 'generation finished');
    },
  });
  return { manifest, store, registry, engine, scheduler, service };
}

/** One token through a decoder base (readiness waits for it). */
async function warmDecoder(g: GenerationBase): Promise<void> {
  const spec = g.manifest.generation!;
  const ids = [spec.bosId ?? spec.eosIds[0]!];
  await new Promise<void>((resolve, reject) => {
    g.scheduler.submit({
      promptIds: ids, adapter: null, adapterId: null, maxTokens: 1, picker: { sample: (l) => argmax(l) },
      sink: { onToken: () => false, onFinish: (reason, err) => (reason === 'error' ? reject(err) : resolve()) },
    });
  });
}
