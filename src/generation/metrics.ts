import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { StepReport } from './scheduler.js';
import type { ReportedFinish } from './service.js';

/** What the generation gauges read at scrape time: each decoder base's scheduler and adapter ids. */
export interface GenerationSources {
  schedulers(): ReadonlyArray<{ readonly stats: { running: number; paused: number; waiting: number; kvBytes: number; kvReservedBytes: number; kvBudgetBytes: number; maxRunning: number; runningAdapters: string[]; waitingAdapters: string[] } }>;
  /** True for ids that may become label values (adapters in a store, or a base's name). */
  knownModel(id: string): boolean;
  /** Most adapters one step may mix (the max running sequences). */
  maxLora: number;
}

export interface GenerationMetrics {
  onStep(r: StepReport): void;
  onToken(r: { adapterId: string | null; first: boolean; gapMs: number }): void;
  onFinished(r: { adapterId: string | null; promptTokens: number; completionTokens: number; reason: ReportedFinish }): void;
  attach(src: GenerationSources): void;
}

const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const COUNTS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/**
 * Generation metrics with the semantics the Gateway API Inference Extension reads from model
 * servers (vLLM's names, adapterhost_ prefix): waiting and running requests, KV-cache usage, and a
 * LoRA info gauge listing running and waiting adapters. Adapter labels are bounded as elsewhere:
 * only ids in a store (or "base").
 */
export function createGenerationMetrics(registry: Registry): GenerationMetrics {
  const registers = [registry];
  let src: GenerationSources | null = null;
  const label = (id: string | null) => (id === null ? 'base' : src?.knownModel(id) ? id : 'other');
  const sum = (f: (s: ReturnType<GenerationSources['schedulers']>[number]['stats']) => number) => (src?.schedulers() ?? []).reduce((a, s) => a + f(s.stats), 0);

  const ttft = new Histogram({ name: 'adapterhost_time_to_first_token_seconds', help: 'Time from a generation request to its first token.', buckets: SECONDS, registers });
  const itl = new Histogram({ name: 'adapterhost_inter_token_latency_seconds', help: 'Time between two tokens of one sequence.', buckets: SECONDS, registers });
  const promptTokens = new Counter({ name: 'adapterhost_prompt_tokens_total', help: 'Prompt tokens of finished generation requests, per adapter ("base": none).', labelNames: ['adapter'] as const, registers });
  const genTokens = new Counter({ name: 'adapterhost_generation_tokens_total', help: 'Generated tokens, per adapter ("base": none).', labelNames: ['adapter'] as const, registers });
  const finished = new Counter({ name: 'adapterhost_generation_requests_total', help: 'Finished generation requests by finish reason (stop, length, cancelled: the client went away, stalled: cancelled after --stream-stall-ms without reading, shutdown: cut short by a graceful shutdown, error).', labelNames: ['reason'] as const, registers });
  const cancellations = new Counter({ name: 'adapterhost_generation_cancellations_total', help: 'Sequences cancelled (the client disconnected).', registers });
  const stepRows = new Histogram({ name: 'adapterhost_generation_step_rows', help: 'Sequences in one decoder step.', labelNames: ['kind'] as const, buckets: COUNTS, registers });
  const stepAdapters = new Histogram({ name: 'adapterhost_generation_step_distinct_adapters', help: 'Distinct adapters in one decoder step.', labelNames: ['kind'] as const, buckets: COUNTS, registers });
  const stepSeconds = new Histogram({ name: 'adapterhost_generation_step_seconds', help: 'ORT run time of one decoder step.', labelNames: ['kind'] as const, buckets: SECONDS, registers });
  new Gauge({ name: 'adapterhost_num_requests_running', help: 'Generation sequences running (vLLM: num_requests_running).', registers, collect() { this.set(sum((s) => s.running)); } });
  new Gauge({ name: 'adapterhost_num_requests_paused', help: 'Running generation sequences paused because their stream\'s client reads slower than tokens come (they keep their KV cache, sit out decode steps).', registers, collect() { this.set(sum((s) => s.paused)); } });
  new Gauge({ name: 'adapterhost_num_requests_waiting', help: 'Generation sequences waiting for admission (vLLM: num_requests_waiting).', registers, collect() { this.set(sum((s) => s.waiting)); } });
  new Gauge({ name: 'adapterhost_kv_cache_usage_perc', help: 'KV cache reserved by admitted sequences ÷ the budget, 0–1 (vLLM: kv_cache_usage_perc).', registers,
    collect() { const b = sum((s) => s.kvBudgetBytes); this.set(b > 0 ? sum((s) => s.kvReservedBytes) / b : 0); } });
  new Gauge({ name: 'adapterhost_kv_cache_bytes', help: 'KV cache bytes held by running sequences.', registers, collect() { this.set(sum((s) => s.kvBytes)); } });
  new Gauge({ name: 'adapterhost_kv_cache_reserved_bytes', help: 'KV cache bytes reserved at admission (prompt + max tokens).', registers, collect() { this.set(sum((s) => s.kvReservedBytes)); } });
  new Gauge({ name: 'adapterhost_kv_cache_budget_bytes', help: 'KV cache budget (--kv-cache-mb) over all decoder bases.', registers, collect() { this.set(sum((s) => s.kvBudgetBytes)); } });
  const loraInfo = new Gauge({
    name: 'adapterhost_lora_requests_info', help: 'Running and waiting adapters (vLLM: lora_requests_info); the value is the scrape time.',
    labelNames: ['max_lora', 'running_lora_adapters', 'waiting_lora_adapters'] as const, registers,
    collect() {
      this.reset();
      const all = src?.schedulers() ?? [];
      const running = [...new Set(all.flatMap((s) => s.stats.runningAdapters))].filter((id) => src!.knownModel(id)).sort().join(',');
      const waiting = [...new Set(all.flatMap((s) => s.stats.waitingAdapters))].filter((id) => src!.knownModel(id)).sort().join(',');
      this.set({ max_lora: String(src?.maxLora ?? 0), running_lora_adapters: running, waiting_lora_adapters: waiting }, Date.now() / 1000);
    },
  });
  void loraInfo;
  return {
    attach(s) { src = s; },
    onStep(r) {
      stepRows.observe({ kind: r.kind }, r.rows);
      stepAdapters.observe({ kind: r.kind }, r.distinctAdapters);
      stepSeconds.observe({ kind: r.kind }, r.runMs / 1000);
    },
    onToken(r) {
      if (r.first) ttft.observe(r.gapMs / 1000);
      else itl.observe(r.gapMs / 1000);
    },
    onFinished(r) {
      finished.inc({ reason: r.reason });
      if (r.reason === 'cancelled') cancellations.inc();
      promptTokens.inc({ adapter: label(r.adapterId) }, r.promptTokens);
      genTokens.inc({ adapter: label(r.adapterId) }, r.completionTokens);
    },
  };
}
