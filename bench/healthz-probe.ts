/**
 * A `/healthz` prober in its own thread, so what it measures is the server's responsiveness and
 * not its own event loop's: a GET every `intervalMs` on a keep-alive pool, each timed from the
 * moment it was due to the end of its response (a probe that could not even be sent in time
 * counts as late). Used by test/event-loop.test.ts and the bench's healthz-stall figure.
 */
import http from 'node:http';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

export interface ProbeOptions { url: string; intervalMs: number }

/** Latencies of every probe, ms, and how many got a status other than 200. */
export interface ProbeResult { latencies: number[]; failures: number }

/** Starts probing `${url}/healthz`; `stop()` ends it and returns every latency. */
export function startHealthzProbe(opts: ProbeOptions): { stop(): Promise<ProbeResult> } {
  const w = new Worker(new URL(import.meta.url), { workerData: opts });
  const result = new Promise<ProbeResult>((resolve, reject) => {
    w.once('message', (m: ProbeResult) => resolve(m));
    w.once('error', reject);
  });
  return {
    async stop() {
      w.postMessage('stop');
      const r = await result;
      await w.terminate();
      return r;
    },
  };
}

/** p-th percentile (nearest rank) of `xs`; NaN when empty. */
export function percentileOf(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

function probeLoop(): void {
  const { url, intervalMs } = workerData as ProbeOptions;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  const target = new URL('/healthz', url);
  const latencies: number[] = [];
  let failures = 0;
  let inFlight = 0;
  let stopping = false;
  const t0 = performance.now();
  let k = 0;
  const finish = () => {
    if (stopping && inFlight === 0) {
      agent.destroy();
      parentPort!.postMessage({ latencies, failures } satisfies ProbeResult);
    }
  };
  const fire = () => {
    if (stopping) return;
    const due = t0 + k * intervalMs;
    k++;
    inFlight++;
    const done = (ok: boolean) => {
      inFlight--;
      latencies.push(performance.now() - due);
      if (!ok) failures++;
      finish();
    };
    http.get(target, { agent }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode === 200));
    }).on('error', () => done(false));
    setTimeout(fire, Math.max(0, t0 + k * intervalMs - performance.now()));
  };
  parentPort!.on('message', () => {
    stopping = true;
    finish();
  });
  fire();
}

if (!isMainThread && (workerData as ProbeOptions | undefined)?.intervalMs !== undefined) probeLoop();
