import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CacheEvents } from './adapter/cache.js';
import type { BatchReport } from './scheduler/batcher.js';
import { createGenerationMetrics, type GenerationSources } from './generation/metrics.js';
import { createDeviceMetrics } from './runtime/device-metrics.js';
import type { ServiceHooks } from './services.js';

/**
 * The live objects the collect-time gauges read. `Services` satisfies it; it is narrow so the
 * metrics module depends on what it reads, not on how the services are built.
 */
export interface MetricsSources {
  cache: {
    readonly counters: { readonly hits: number; readonly misses: number };
    readonly bytesHeld: number;
    readonly maxBytes: number;
    readonly entries: number;
  };
  batcher: { readonly queuedRows: number };
  registry: {
    list(): ReadonlyArray<{ bytesOnDisk: number }>;
    has(id: string): boolean;
    readonly bytesOnDisk: number;
  };
  manifest: { readonly baseBytes: number };
  /** The supervised inference worker (absent in tests that build services by hand). */
  engine?: { readonly up: boolean; readonly restarts: number };
  /** The text-generation bases: their schedulers and adapter registries. */
  generation?: ReadonlyArray<{ scheduler: ReturnType<GenerationSources['schedulers']>[number]; registry: { has(id: string): boolean } }>;
}

/** One finished HTTP request, as the request middleware reports it. */
export interface HttpObservation {
  /** The express route pattern (`/v1/adapters/:id`), or `unmatched`: never the raw URL. */
  route: string;
  method: string;
  status: number;
  seconds: number;
}

export interface MetricsOptions {
  /** Process metrics (CPU, memory, event loop, GC) from prom-client; default true. */
  defaultMetrics?: boolean;
  /** The execution provider the engines run on (adapterhost_execution_provider_info); default 'cpu'. */
  executionProvider?: string;
}

/** The app's metrics: one prom-client Registry, never the global one. */
export interface Metrics {
  readonly registry: Registry;
  /** Plug into `createServices(config, log, metrics.hooks)`; they work before `attach`. */
  readonly hooks: Required<ServiceHooks> & { cache: Required<CacheEvents> };
  /** Connects the collect-time gauges to the live objects (call once services exist). */
  attach(sources: MetricsSources): void;
  observeRequest(o: HttpObservation): void;
  /** Counts one answered predict request and its inputs per adapter; ids the registry does not know are not labelled. */
  countPredictions(adapterId: string, inputs: number): void;
  /** Counts one answered request for `model` (an embeddings request); only adapter ids in a store are labelled. */
  countAdapterRequest(model: string): void;
  /** The exposition text and its content type. */
  render(): Promise<{ contentType: string; body: string }>;
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);

/** Latency buckets from 0.5 ms to 10 s (inference on CPU sits in the low milliseconds). */
const SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const COUNTS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/** Builds the metrics; hooks are live at once, gauges read the sources given to `attach`. */
export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const device = createDeviceMetrics(registry, opts.executionProvider ?? 'cpu');
  let src: MetricsSources | null = null;

  const httpRequests = new Counter({
    name: 'adapterhost_http_requests_total', help: 'HTTP requests by route pattern, method and status.',
    labelNames: ['route', 'method', 'status'] as const, registers,
  });
  const httpDuration = new Histogram({
    name: 'adapterhost_http_request_duration_seconds', help: 'HTTP request duration by route pattern.',
    labelNames: ['route'] as const, buckets: SECONDS, registers,
  });
  const queueWait = new Histogram({
    name: 'adapterhost_queue_wait_seconds', help: 'Time each input row waited in the batcher queue.', buckets: SECONDS, registers,
  });
  const inferenceDuration = new Histogram({
    name: 'adapterhost_inference_duration_seconds', help: 'ONNX Runtime session.run time per batch.', buckets: SECONDS, registers,
  });
  const feedBuild = new Histogram({
    name: 'adapterhost_feed_build_seconds', help: 'Time to build one batch\'s input tensors (adapter banks included).', buckets: SECONDS, registers,
  });
  const batchRows = new Histogram({
    name: 'adapterhost_batch_rows', help: 'Input rows per inference run.', buckets: COUNTS, registers,
  });
  const batchAdapters = new Histogram({
    name: 'adapterhost_batch_distinct_adapters', help: 'Distinct adapters mixed in one inference run.', buckets: COUNTS, registers,
  });
  const batchPadding = new Histogram({
    name: 'adapterhost_batch_padding_ratio', help: 'Padded tokens ÷ real tokens per run (1 = no padding).',
    buckets: [1, 1.05, 1.1, 1.25, 1.5, 2, 3, 5, 10, 20], registers,
  });
  new Gauge({
    name: 'adapterhost_queue_depth', help: 'Input rows waiting in the batcher queue.', registers,
    collect() { this.set(src?.batcher.queuedRows ?? 0); },
  });

  // Hits and misses are plain counters on the cache; the Prometheus counters follow them by delta.
  let seenHits = 0;
  let seenMisses = 0;
  new Counter({
    name: 'adapterhost_adapter_cache_hits_total', help: 'Adapter requests served from memory.', registers,
    collect() {
      const n = src?.cache.counters.hits ?? 0;
      if (n > seenHits) this.inc(n - seenHits);
      seenHits = Math.max(seenHits, n);
    },
  });
  new Counter({
    name: 'adapterhost_adapter_cache_misses_total', help: 'Adapter requests that had to load from disk.', registers,
    collect() {
      const n = src?.cache.counters.misses ?? 0;
      if (n > seenMisses) this.inc(n - seenMisses);
      seenMisses = Math.max(seenMisses, n);
    },
  });
  const evictions = new Counter({
    name: 'adapterhost_adapter_cache_evictions_total', help: 'Adapters evicted from the LRU to stay within the byte budget.', registers,
  });
  new Gauge({
    name: 'adapterhost_adapter_cache_bytes', help: 'Bytes of adapter weights held in memory (LRU, pinned, and evicted-but-leased).', registers,
    collect() { this.set(src?.cache.bytesHeld ?? 0); },
  });
  new Gauge({
    name: 'adapterhost_adapter_cache_max_bytes', help: 'Byte budget of the adapter LRU.', registers,
    collect() { this.set(src?.cache.maxBytes ?? 0); },
  });
  new Gauge({
    name: 'adapterhost_adapter_cache_entries', help: 'Adapters held in memory (LRU + pinned).', registers,
    collect() { this.set(src?.cache.entries ?? 0); },
  });
  const loadDuration = new Histogram({
    name: 'adapterhost_adapter_load_duration_seconds', help: 'Adapter load from disk (read, validate, map onto slots).',
    labelNames: ['result'] as const, buckets: SECONDS, registers,
  });

  // Storage: what serving adapters saves against one merged model copy per adapter.
  new Gauge({
    name: 'adapterhost_adapters_on_disk', help: 'Servable adapters in the store.', registers,
    collect() { this.set(src?.registry.list().length ?? 0); },
  });
  new Gauge({
    name: 'adapterhost_base_model_bytes', help: 'Bytes of the base model file.', registers,
    collect() { this.set(src?.manifest.baseBytes ?? 0); },
  });
  new Gauge({
    name: 'adapterhost_adapter_bytes_total', help: 'Bytes of all servable adapters on disk.', registers,
    collect() { this.set(src?.registry.bytesOnDisk ?? 0); },
  });
  new Gauge({
    name: 'adapterhost_full_finetune_equivalent_bytes', help: 'Base bytes × adapters: one merged model copy per adapter.', registers,
    collect() { this.set(src ? src.manifest.baseBytes * src.registry.list().length : 0); },
  });
  new Gauge({
    name: 'adapterhost_storage_saving_ratio', help: 'Full-finetune-equivalent bytes ÷ (base + adapter bytes).', registers,
    collect() {
      if (!src) return this.set(0);
      const full = src.manifest.baseBytes * src.registry.list().length;
      const held = src.manifest.baseBytes + src.registry.bytesOnDisk;
      this.set(held > 0 ? full / held : 0);
    },
  });
  // The inference worker: deaths (counted as they happen), restarts (attempts), up or not.
  const workerCrashes = new Counter({
    name: 'adapterhost_worker_crashes_total', help: 'Times the inference worker died (error, exit, out of memory) and was scheduled for a restart.', registers,
  });
  let seenRestarts = 0;
  new Counter({
    name: 'adapterhost_worker_restarts_total', help: 'Restarts of the inference worker (attempts, failed ones included; back-off doubles per crash in a row).', registers,
    collect() {
      const n = src?.engine?.restarts ?? 0;
      if (n > seenRestarts) this.inc(n - seenRestarts);
      seenRestarts = Math.max(seenRestarts, n);
    },
  });
  new Gauge({
    name: 'adapterhost_worker_up', help: '1 while the inference worker runs and takes work, 0 while it is down or restarting.', registers,
    collect() { this.set(src?.engine ? (src.engine.up ? 1 : 0) : 0); },
  });
  const predictions = new Counter({
    name: 'adapterhost_predictions_total', help: 'Inputs classified, per adapter (only adapters in the registry are labelled).',
    labelNames: ['adapter'] as const, registers,
  });

  const adapterRequests = new Counter({
    name: 'adapterhost_adapter_requests_total',
    help: 'Requests served per adapter: answered /v1/predict and /v1/embeddings requests, finished generation requests (any finish reason). Only adapters in a store are labelled; base-model requests are not counted here.',
    labelNames: ['adapter'] as const, registers,
  });
  const isAdapter = (id: string) => Boolean(src?.registry.has(id) || src?.generation?.some((g) => g.registry.has(id)));
  const countAdapterRequest = (id: string | null) => { if (id !== null && isAdapter(id)) adapterRequests.inc({ adapter: id }); };

  const generation = createGenerationMetrics(registry);
  return {
    registry,
    hooks: {
      generation: {
        ...generation,
        onStep(r) {
          generation.onStep(r);
          if (r.transfer) device.onDecoderStep(r.transfer);
        },
        onFinished(r) {
          generation.onFinished(r);
          countAdapterRequest(r.adapterId);
        },
      },
      cache: {
        onLoad(_id, seconds, ok) { loadDuration.observe({ result: ok ? 'ok' : 'error' }, seconds); },
        onEvict() { evictions.inc(); },
      },
      engine: {
        onDown() { workerCrashes.inc(); },
        onUp() {},
      },
      onBatch(r: BatchReport) {
        batchRows.observe(r.rows);
        batchAdapters.observe(r.distinctAdapters);
        for (const w of r.queueWaits) queueWait.observe(w);
        inferenceDuration.observe(r.runSeconds);
        feedBuild.observe(r.feedSeconds);
        if (r.realTokens > 0) batchPadding.observe(r.paddedTokens / r.realTokens);
        if (r.transfer) device.onEncoderRun(r.transfer);
      },
    },
    attach(sources) {
      src = sources;
      const gen = sources.generation ?? [];
      generation.attach({
        schedulers: () => gen.map((g) => g.scheduler),
        knownModel: (id) => gen.some((g) => g.registry.has(id)),
        maxLora: Math.max(0, ...gen.map((g) => g.scheduler.stats.maxRunning)),
      });
    },
    observeRequest(o) {
      const method = METHODS.has(o.method) ? o.method : 'OTHER';
      httpRequests.inc({ route: o.route, method, status: String(o.status) });
      httpDuration.observe({ route: o.route }, o.seconds);
    },
    countPredictions(adapterId, inputs) {
      // The label set stays bounded: only ids the registry holds (uploaded by an admin) become labels.
      if (src?.registry.has(adapterId)) predictions.inc({ adapter: adapterId }, inputs);
      countAdapterRequest(adapterId);
    },
    countAdapterRequest,
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
