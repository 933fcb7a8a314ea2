/**
 * Live numbers from two successive `/metrics` scrapes: rates over the interval between them
 * (requests/s, generated tokens/s), latency quantiles from the histogram buckets that moved in
 * it (as PromQL's histogram_quantile does), the cache hit rate in it, and the gauges as they are.
 * Pure, no DOM: the node tests import it too.
 */
import { has, sum, type Sample } from './prom.js';

/** One scrape: when it was taken (ms) and what it said. */
export interface Scrape { t: number; samples: Sample[] }

/** The routes that do inference work (the console's own polling of /metrics and /v1/adapters is not counted). */
export const INFERENCE_ROUTES: ReadonlySet<string> = new Set(['/v1/predict', '/v1/embeddings', '/v1/completions', '/v1/chat/completions']);

const inference = (l: Record<string, string>) => INFERENCE_ROUTES.has(l.route ?? '');

export interface LivePoint {
  /** Unix seconds of the later scrape. */
  t: number;
  /** Inference requests finished per second (HTTP, all statuses). */
  requestsPerS: number | null;
  /** Tokens generated per second, counted as they are sampled. */
  tokensPerS: number | null;
  /** Median and 99th-percentile latency of the inference requests finished in the interval, ms; null with none. */
  p50Ms: number | null;
  p99Ms: number | null;
  /** Adapter cache hits ÷ lookups in the interval, %; null with no lookups. */
  cacheHitPct: number | null;
  /** Input rows waiting in the encoder's batcher. */
  queueDepth: number;
  /** Generation sequences waiting for admission, and running. */
  waiting: number;
  running: number;
  /** KV cache reserved ÷ budget, %; null when no text-generation base is loaded. */
  kvPct: number | null;
}

/**
 * The φ-quantile of a histogram given as cumulative bucket counts (upper bound `le` → count),
 * interpolated linearly inside the bucket it falls in; null when the histogram is empty. A
 * quantile in the +Inf bucket answers the largest finite bound.
 */
export function histogramQuantile(phi: number, buckets: ReadonlyArray<{ le: number; count: number }>): number | null {
  const b = [...buckets].sort((x, y) => x.le - y.le);
  const total = b.length > 0 ? b[b.length - 1]!.count : 0;
  if (!(total > 0)) return null;
  const rank = phi * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const { le, count } of b) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      const inBucket = count - prevCount;
      if (inBucket <= 0) return le;
      return prevLe + (le - prevLe) * ((rank - prevCount) / inBucket);
    }
    prevLe = le === Infinity ? prevLe : le;
    prevCount = count;
  }
  return prevLe;
}

/** The inference routes' latency buckets, summed over routes: `le` → cumulative count. */
function latencyBuckets(samples: readonly Sample[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== 'adapterhost_http_request_duration_seconds_bucket' || !inference(s.labels)) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    m.set(le, (m.get(le) ?? 0) + s.value);
  }
  return m;
}

/** A counter's increase; null when it went down (the server restarted between the scrapes). */
const delta = (a: number, b: number): number | null => (b >= a ? b - a : null);

/** The live point for the interval between `prev` and `cur`. */
export function livePoint(prev: Scrape, cur: Scrape): LivePoint {
  const dt = (cur.t - prev.t) / 1000;
  const rate = (f: (s: readonly Sample[]) => number): number | null => {
    const d = delta(f(prev.samples), f(cur.samples));
    return d === null || !(dt > 0) ? null : d / dt;
  };
  const requests = (s: readonly Sample[]) => sum(s, 'adapterhost_http_requests_total', inference);
  const tokens = (s: readonly Sample[]) => sum(s, 'adapterhost_time_to_first_token_seconds_count') + sum(s, 'adapterhost_inter_token_latency_seconds_count');

  const b0 = latencyBuckets(prev.samples);
  const b1 = latencyBuckets(cur.samples);
  const moved = [...b1].map(([le, count]) => ({ le, count: count - (b0.get(le) ?? 0) }));
  const reset = moved.some((x) => x.count < 0);
  const q = (phi: number) => {
    const v = reset ? null : histogramQuantile(phi, moved);
    return v === null ? null : v * 1000;
  };

  const hits = delta(sum(prev.samples, 'adapterhost_adapter_cache_hits_total'), sum(cur.samples, 'adapterhost_adapter_cache_hits_total'));
  const misses = delta(sum(prev.samples, 'adapterhost_adapter_cache_misses_total'), sum(cur.samples, 'adapterhost_adapter_cache_misses_total'));
  const lookups = hits === null || misses === null ? 0 : hits + misses;

  const budget = sum(cur.samples, 'adapterhost_kv_cache_budget_bytes');
  return {
    t: cur.t / 1000,
    requestsPerS: rate(requests),
    tokensPerS: rate(tokens),
    p50Ms: q(0.5),
    p99Ms: q(0.99),
    cacheHitPct: lookups > 0 ? (100 * hits!) / lookups : null,
    queueDepth: sum(cur.samples, 'adapterhost_queue_depth'),
    waiting: sum(cur.samples, 'adapterhost_num_requests_waiting'),
    running: sum(cur.samples, 'adapterhost_num_requests_running'),
    kvPct: has(cur.samples, 'adapterhost_kv_cache_usage_perc') && budget > 0 ? 100 * sum(cur.samples, 'adapterhost_kv_cache_usage_perc') : null,
  };
}

/** Requests served per adapter (`adapterhost_adapter_requests_total`), by adapter id. */
export function requestsPerAdapter(samples: readonly Sample[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const s of samples) {
    if (s.name === 'adapterhost_adapter_requests_total' && s.labels.adapter !== undefined) m.set(s.labels.adapter, (m.get(s.labels.adapter) ?? 0) + s.value);
  }
  return m;
}
