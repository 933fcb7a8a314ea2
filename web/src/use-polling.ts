import { useEffect, useRef, useState } from 'preact/hooks';
import { metricsText, readiness } from './api.js';
import { livePoint, requestsPerAdapter, type LivePoint, type Scrape } from './live.js';
import { parseMetrics } from './prom.js';

/** How often the console scrapes /metrics, and how much history the charts keep (5 minutes). */
export const METRICS_EVERY_MS = 2000;
export const HISTORY_POINTS = 150;

export interface LiveMetrics {
  points: LivePoint[];
  /** Requests served per adapter id (adapterhost_adapter_requests_total). */
  served: Map<string, number>;
  /** The last scrape's failure, shown as it is; null when the last one worked. */
  error: string | null;
  /** null: ready; a string: why not (from /readyz); undefined: not asked yet. */
  readiness: string | null | undefined;
}

/** /readyz is asked every this many scrapes (it needs no 2-second resolution). */
const READYZ_EVERY = 5;

/**
 * Scrapes `GET /metrics` every `everyMs` (and `GET /readyz` every few scrapes) and turns
 * successive scrapes into live points. A hidden tab skips its scrapes.
 */
export function useLiveMetrics(everyMs = METRICS_EVERY_MS): LiveMetrics {
  const [state, setState] = useState<LiveMetrics>({ points: [], served: new Map(), error: null, readiness: undefined });
  const prev = useRef<Scrape | null>(null);
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let n = 0;
    let ready: string | null | undefined;
    const tick = async () => {
      if (document.hidden) {
        timer = setTimeout(tick, everyMs);
        return;
      }
      if (n++ % READYZ_EVERY === 0) {
        try { ready = await readiness(); } catch (e) { ready = `the server does not answer (${String(e)})`; }
      }
      try {
        const cur: Scrape = { t: Date.now(), samples: parseMetrics(await metricsText()) };
        const before = prev.current;
        prev.current = cur;
        if (!stopped) {
          setState((s) => ({
            points: before ? [...s.points, livePoint(before, cur)].slice(-HISTORY_POINTS) : s.points,
            served: requestsPerAdapter(cur.samples),
            error: null,
            readiness: ready,
          }));
        }
      } catch (e) {
        if (!stopped) setState((s) => ({ ...s, error: e instanceof Error ? e.message : String(e), readiness: ready }));
      }
      if (!stopped) timer = setTimeout(tick, everyMs);
    };
    void tick();
    return () => { stopped = true; clearTimeout(timer); };
  }, [everyMs]);
  return state;
}
