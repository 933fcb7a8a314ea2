import type { LivePoint } from '../live.js';
import { formatNumber } from '../format.js';
import { METRICS_EVERY_MS } from '../use-polling.js';
import { TimeChart, type ChartSeries } from './chart.js';

const SOLID: number[] = [];
const DASHED = [6, 4];
const DOTTED = [2, 3];
const C1 = '#1d4ed8';
const C2 = '#b45309';
const C3 = '#047857';

/**
 * Live metrics from `GET /metrics`: the latest values as text, and the last minutes as
 * time series (requests/s and tokens/s, p50 and p99 latency, cache hit rate and KV cache use,
 * queue depth and running / waiting sequences).
 */
export function MetricsPanel({ points, error }: { points: readonly LivePoint[]; error: string | null }) {
  const last = points[points.length - 1];
  const x = points.map((p) => p.t);
  const col = <K extends keyof LivePoint>(k: K) => points.map((p) => p[k] as number | null);
  const s = (label: string, values: Array<number | null>, dash: number[], color: string): ChartSeries => ({ label, values, dash, color });
  const now: Array<[string, string]> = [
    ['Inference requests/s', formatNumber(last?.requestsPerS ?? null)],
    ['Generated tokens/s', formatNumber(last?.tokensPerS ?? null)],
    ['Latency p50', last?.p50Ms != null ? `${formatNumber(last.p50Ms)} ms` : '– (no requests)'],
    ['Latency p99', last?.p99Ms != null ? `${formatNumber(last.p99Ms)} ms` : '– (no requests)'],
    ['Adapter cache hit rate', last?.cacheHitPct != null ? `${formatNumber(last.cacheHitPct)} %` : '– (no lookups)'],
    ['Queue depth (rows)', formatNumber(last?.queueDepth ?? null, 0)],
    ['Sequences running / waiting', last ? `${last.running} / ${last.waiting}` : '–'],
    ['KV cache use', last?.kvPct != null ? `${formatNumber(last.kvPct)} %` : '–'],
  ];
  return (
    <div class="metrics">
      {error && <p class="error" role="alert">Reading /metrics failed: {error}</p>}
      <dl class="now" id="metrics-now" aria-live="off">
        {now.map(([k, v]) => (
          <div key={k}><dt>{k}</dt><dd>{v}</dd></div>
        ))}
      </dl>
      <p class="hint">Every {METRICS_EVERY_MS / 1000} s from <a href="/metrics">/metrics</a>; each point covers the interval since the one before (the last {Math.round((points.length * METRICS_EVERY_MS) / 60000) || '<1'} min shown). Latency and requests count the inference routes only.</p>
      <div class="charts">
        <TimeChart id="chart-throughput" title="Throughput" unit="/s" x={x} series={[s('requests', col('requestsPerS'), SOLID, C1), s('tokens', col('tokensPerS'), DASHED, C2)]} />
        <TimeChart id="chart-latency" title="Request latency" unit="ms" x={x} series={[s('p50', col('p50Ms'), SOLID, C1), s('p99', col('p99Ms'), DASHED, C2)]} />
        <TimeChart id="chart-cache" title="Adapter cache hits and KV cache use" unit="%" x={x} series={[s('cache hits', col('cacheHitPct'), SOLID, C1), s('KV cache', col('kvPct'), DASHED, C2)]} />
        <TimeChart id="chart-queue" title="Queue and sequences" unit="count" x={x} series={[s('queue rows', col('queueDepth'), SOLID, C1), s('running', col('running'), DASHED, C2), s('waiting', col('waiting'), DOTTED, C3)]} />
      </div>
    </div>
  );
}
