/**
 * Figures through the real HTTP server (src/serve.ts startServer, in this process): the
 * overhead of HTTP over the batcher at low load on the demo model, and a soak with a small
 * cache on the synthetic model watching RSS and open file descriptors.
 */
import { readdirSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdapterLoader } from '../../src/adapter/loader.js';
import { loadConfig } from '../../src/config.js';
import { startServer, type RunningServer } from '../../src/serve.js';
import type { Figure } from '../context.js';
import { percentileOf, startHealthzProbe } from '../healthz-probe.js';
import { MiB, spread } from '../measure.js';
import { fmt, missNote, type Row } from '../report.js';
import { silentLog } from '../stack.js';
import { makeText, mulberry32, percentile, Zipf } from '../workload.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** Requests per side per repeat (sequential, alternating HTTP and batcher). */
const PER_ROUND = 40;

/** POSTs JSON over a keep-alive agent; resolves with the status and parsed body. */
function post(agent: http.Agent, url: URL, body: unknown): Promise<{ status: number; body: unknown }> {
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': data.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        } catch (e) {
          reject(e as Error);
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** GET over the keep-alive agent, body drained; resolves with the status. */
function get(agent: http.Agent, url: URL): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    }).on('error', reject);
  });
}

async function start(overrides: Parameters<typeof loadConfig>[2]): Promise<RunningServer> {
  const config = loadConfig([], {}, { port: 0, host: '127.0.0.1', logLevel: 'silent', ...overrides });
  const s = await startServer(config, { log: silentLog });
  await s.ready;
  return s;
}

/** End-to-end HTTP p50 − batcher p50, sequential single-input requests, demo model. */
export const httpOverhead: Figure = async (ctx) => {
  const { reps, warmup, seed } = ctx.s;
  const server = await start({ modelDir: path.join(ROOT, 'models/demo'), adaptersDir: path.join(ROOT, 'adapters') });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const url = new URL('/v1/predict', server.url);
  const { services } = server;
  const adapter = 'spam';
  const rand = mulberry32(seed);
  const texts = Array.from({ length: PER_ROUND }, () => makeText(rand, 8 + Math.floor(rand() * 8)));
  const ids = texts.map((t) => services.tokenizer.encode(t, services.manifest.maxLength, true));
  const out = { http: [] as number[], engine: [] as number[], diff: [] as number[], healthz: [] as number[] };
  const healthUrl = new URL('/healthz', server.url);
  try {
    const time = async (fn: () => Promise<unknown>) => {
      const t0 = performance.now();
      await fn();
      return performance.now() - t0;
    };
    const viaHttp = async (i: number) => {
      const r = await post(agent, url, { adapter_id: adapter, inputs: texts[i] });
      if (r.status !== 200) throw new Error(`POST /v1/predict answered ${r.status}: ${JSON.stringify(r.body)}`);
    };
    const viaBatcher = async (i: number) => {
      const lease = await services.registry.acquire(adapter);
      try {
        await services.batcher.submit([{ ids: ids[i]!, adapter: lease.weights }]);
      } finally {
        lease.release();
      }
    };
    const viaHealthz = () => get(agent, healthUrl);
    for (let round = 0; round < warmup + reps + 4; round++) {
      const t = { http: [] as number[], engine: [] as number[], healthz: [] as number[] };
      for (let i = 0; i < PER_ROUND; i++) {
        if (i % 2) { t.engine.push(await time(() => viaBatcher(i))); t.http.push(await time(() => viaHttp(i))); }
        else { t.http.push(await time(() => viaHttp(i))); t.engine.push(await time(() => viaBatcher(i))); }
        if (i % 4 === 0) t.healthz.push(await time(viaHealthz));
      }
      if (round < warmup) continue;
      const h = percentile(t.http, 50);
      const e = percentile(t.engine, 50);
      out.http.push(h);
      out.engine.push(e);
      out.diff.push(h - e);
      out.healthz.push(percentile(t.healthz, 50));
    }
  } finally {
    agent.destroy();
    await server.close();
  }
  const d = spread(out.diff);
  const s = { http: spread(out.http), engine: spread(out.engine), healthz: spread(out.healthz) };
  const notes = [
    `Demo model (${services.manifest.loraSlots.length / 2} layers, hidden ${services.manifest.hiddenSize}), adapter "${adapter}", ${PER_ROUND} sequential single-text requests per side per repeat, alternating HTTP and batcher request by request, ${out.diff.length} repeats; the figure is p50(HTTP) − p50(batcher) per repeat.`,
    `HTTP: POST /v1/predict to startServer on 127.0.0.1 over a keep-alive node:http agent in the same process (the client's own cost counts against the server). Batcher: the same token ids and a lease from the same registry, submitted to the server's own Batcher (engine run, worker hand-off, result slicing). The difference is express, JSON parse/validation, tokenizing, softmax and sorting, and the response.`,
    `p50 HTTP ${fmt(s.http.median)} ms, p50 batcher ${fmt(s.engine.median)} ms; a bare GET /healthz round trip on the same connection (HTTP transport, express, request id, metrics middleware, the client) takes ${fmt(s.healthz.median)} ms p50, so ~${fmt(Math.max(0, d.median - s.healthz.median))} ms of the difference is the predict route's own work.`,
  ];
  const row: Row = {
    figure: 'http-overhead', label: 'HTTP /v1/predict p50 − batcher p50, sequential single input', model: 'demo',
    target: { op: '<=', value: 2 }, unit: 'ms', value: d,
    detail: `p50 HTTP ${fmt(s.http.median)} ms, batcher ${fmt(s.engine.median)} ms; GET /healthz round trip ${fmt(s.healthz.median)} ms`,
  };
  const miss = missNote(row, `${fmt(s.healthz.median)} ms of it is a bare round trip on the same connection (node:http client and server in one process on ${os.availableParallelism()} cores, express routing, request-id and metrics middleware); the rest is the predict route (JSON body parse and zod, tokenizing, softmax and sort, res.json). A client in another process or machine would not compete with the server for the event loop.`);
  if (miss) notes.push(miss);
  return {
    title: 'End-to-end HTTP − engine latency at low load',
    rows: [row],
    notes, data: out,
  };
};

/** POSTs a prepared JSON body over a fresh connection; resolves with the status (body drained). */
function postRaw(url: URL, data: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': data.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

/**
 * /healthz p99 while 1 MB predict bodies (64 inputs × 16,000 characters, within every default
 * cap) run: 3 bodies of inputs that fit the token cap (tokenized whole, in the tokenizer thread)
 * and 1 of long natural text with truncate (cut to what the cap uses), all at once, per repeat.
 * /healthz is probed every 10 ms from another thread, each probe timed from when it was due.
 */
export const healthzStall: Figure = async (ctx) => {
  const { reps, warmup } = ctx.s;
  const server = await start({ modelDir: path.join(ROOT, 'models/demo'), adaptersDir: path.join(ROOT, 'adapters') });
  const url = new URL('/v1/predict', server.url);
  const sentence = 'The committee will vote on the new budget tomorrow and everyone is invited. ';
  const natural = sentence.repeat(Math.ceil(16_000 / sentence.length)).slice(0, 16_000);
  const padded = `Roses are red, violets are blue.${' '.repeat(16_000)}`.slice(0, 16_000);
  const body = (text: string, truncate: boolean) => Buffer.from(JSON.stringify({ adapter_id: 'spam', inputs: Array.from({ length: 64 }, () => text), truncate }));
  const bodies = [body(padded, false), body(padded, false), body(padded, false), body(natural, true)];
  const out = { p99: [] as number[], p50: [] as number[], max: [] as number[], probes: [] as number[], seconds: [] as number[] };
  try {
    for (let round = 0; round < warmup + reps; round++) {
      const probe = startHealthzProbe({ url: server.url, intervalMs: 10 });
      await new Promise((r) => setTimeout(r, 100));
      const t0 = performance.now();
      const statuses = await Promise.all(bodies.map((b) => postRaw(url, b)));
      const seconds = (performance.now() - t0) / 1000;
      const { latencies, failures } = await probe.stop();
      if (statuses.some((s) => s !== 200) || failures) throw new Error(`statuses ${statuses.join(',')}, ${failures} failed probes`);
      if (round < warmup) continue;
      out.p99.push(percentileOf(latencies, 99));
      out.p50.push(percentileOf(latencies, 50));
      out.max.push(Math.max(...latencies));
      out.probes.push(latencies.length);
      out.seconds.push(seconds);
    }
  } finally {
    await server.close();
  }
  const s = { p50: spread(out.p50), max: spread(out.max), seconds: spread(out.seconds) };
  const row: Row = {
    figure: 'healthz-stall', label: '/healthz p99 while four 1 MB predict bodies run', model: 'demo',
    target: { op: '<=', value: 50 }, unit: 'ms', value: spread(out.p99),
    detail: `p50 ${fmt(s.p50.median)} ms, max ${fmt(s.max.median)} ms; the bodies took ${fmt(s.seconds.median)} s`,
  };
  const notes = [
    `Per repeat (${out.p99.length}): 3 bodies of 64 inputs that fit the token cap but are 16,000 characters each (tokenized whole, in the tokenizer thread) and 1 of 64 long natural texts with "truncate": true (tokenized only as far as the cap needs), sent at once; /healthz probed every 10 ms from a worker thread of the bench process, each probe timed from when it was due.`,
  ];
  const miss = missNote(row, `The HTTP thread still parses each 1 MB body (JSON.parse, zod) and hands it to the tokenizer thread, a few ms of CPU per body; on ${os.availableParallelism()} cores shared with the tokenizer and inference threads it waits for a core.`);
  if (miss) notes.push(miss);
  return { title: '/healthz while long inputs are tokenized', rows: [row], notes, data: out };
};

const openFds = () => readdirSync('/proc/self/fd').length;

/** A mixed workload through HTTP with a small cache for `soakSeconds`: RSS and fd growth 25 % → 100 %. */
export const soak: Figure = async (ctx) => {
  const { soakSeconds, seed, zipfAdapters: n } = ctx.s;
  const m = await ctx.model();
  const ids = await ctx.adapters(n);
  const probe = await new AdapterLoader(await ctx.store(), m.manifest).load(ids[0]!);
  const cacheAdapters = Math.max(4, Math.floor(n / 8));
  const cacheMb = (cacheAdapters * probe.bytes) / MiB;
  const server = await start({ modelDir: m.slottedDir, adaptersDir: m.adaptersDir, cacheMb, maxBatch: ctx.s.batchRows });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const url = new URL('/v1/predict', server.url);
  const rand = mulberry32(seed + 7);
  const zipf = new Zipf(n, 1, rand);
  const samples: Array<{ t: number; rss: number; heap: number; arrayBuffers: number; fds: number }> = [];
  const sample = (t: number) => {
    const u = process.memoryUsage();
    samples.push({ t, rss: u.rss, heap: u.heapUsed, arrayBuffers: u.arrayBuffers, fds: openFds() });
  };
  const t0 = performance.now();
  const end = t0 + soakSeconds * 1000;
  let done = 0;
  let errors = 0;
  const timer = setInterval(() => sample((performance.now() - t0) / 1000), 500);
  const lane = async () => {
    while (performance.now() < end) {
      const r = await post(agent, url, { adapter_id: ids[zipf.next()], inputs: makeText(rand, 8 + Math.floor(rand() * 10)) }).catch(() => ({ status: 0 }));
      if (r.status === 200) done++;
      else errors++;
    }
  };
  const counters = server.services.cache.counters;
  try {
    sample(0);
    await Promise.all(Array.from({ length: 2 * ctx.s.batchRows }, lane));
    sample((performance.now() - t0) / 1000);
  } finally {
    clearInterval(timer);
    agent.destroy();
    await server.close();
  }
  const at = (frac: number) => samples.find((x) => x.t >= frac * soakSeconds) ?? samples[samples.length - 1]!;
  const q = at(0.25);
  const last = samples[samples.length - 1]!;
  const rssGrowth = (last.rss - q.rss) / MiB;
  // RSS rises and falls with garbage collection (each load leaves a file Buffer behind until the
  // next GC); a leak raises the floor. Floor = lowest RSS in the second and in the last quarter.
  const floorOf = (a: number, b: number) => Math.min(...samples.filter((x) => x.t >= a * soakSeconds && x.t <= b * soakSeconds).map((x) => x.rss)) / MiB;
  const floor2 = floorOf(0.25, 0.5);
  const floor4 = floorOf(0.75, 1);
  const abMax = Math.max(...samples.map((x) => x.arrayBuffers)) / MiB;
  const fdGrowth = last.fds - q.fds;
  // Spread of RSS over the second half: how much it moves anyway.
  const tail = samples.filter((x) => x.t >= 0.25 * soakSeconds).map((x) => x.rss / MiB);
  const rssSpread = spread(tail);
  const fdSpread = spread(samples.filter((x) => x.t >= 0.25 * soakSeconds).map((x) => x.fds));
  const notes = [
    `${soakSeconds} s through startServer (synthetic model, HTTP /v1/predict, ${2 * ctx.s.batchRows} clients in a closed loop), Zipf s = 1 over ${n} adapters with a cache of ${fmt(cacheMb)} MiB (~${cacheAdapters} adapters): ${done} requests, ${errors} errors, ${counters.misses} misses, ${counters.evictions} evictions.`,
    `From the 25 % mark to the end: RSS ${fmt(q.rss / MiB)} → ${fmt(last.rss / MiB)} MiB (${rssGrowth >= 0 ? '+' : ''}${fmt(rssGrowth)} MiB; min–max after 25 %: ${fmt(rssSpread.min)}–${fmt(rssSpread.max)} MiB), heap ${fmt(q.heap / MiB)} → ${fmt(last.heap / MiB)} MiB, open fds ${q.fds} → ${last.fds} (${fdGrowth >= 0 ? '+' : ''}${fdGrowth}; min–max ${fdSpread.min}–${fdSpread.max}). The bench process also holds the bench's own worker and sessions, unchanged during the soak.`,
    `RSS moves with garbage collection: arrayBuffers reached ${fmt(abMax)} MiB between collections (every miss reads a ~${fmt((cacheMb * MiB) / cacheAdapters / 1024)} KiB file into a Buffer that lives until the next GC) while RSS stayed within ${fmt(rssSpread.max - rssSpread.min)} MiB, because freed blocks are reused. The post-GC floor (lowest RSS in the second quarter vs the last quarter) moved ${floor4 - floor2 >= 0 ? '+' : ''}${fmt(floor4 - floor2)} MiB (${fmt(floor2)} → ${fmt(floor4)} MiB): ${Math.abs(floor4 - floor2) < 16 ? 'no sign of a leak' : 'check for a leak with a longer --soak-seconds'}.`,
  ];
  return {
    title: `Soak (${soakSeconds} s, evictions happening)`,
    rows: [
      {
        figure: 'soak', label: `soak: RSS growth, 25 % mark → end (${soakSeconds} s, small cache; post-GC floor)`, model: ctx.modelName,
        target: null, unit: 'MiB', value: { min: rssSpread.min - floor2, median: floor4 - floor2, max: rssSpread.max - floor2, n: tail.length },
        detail: `${done} requests, ${counters.evictions} evictions, ${errors} errors; RSS at the marks ${fmt(q.rss / MiB)} → ${fmt(last.rss / MiB)} MiB (${rssGrowth >= 0 ? '+' : ''}${fmt(rssGrowth)}), floor ${fmt(floor2)} → ${fmt(floor4)} MiB`,
      },
      {
        figure: 'soak', label: `soak: open file descriptors growth, 25 % mark to the end`, model: ctx.modelName,
        target: { op: '<=', value: 0 }, unit: 'fds', value: { min: fdSpread.min - q.fds, median: fdGrowth, max: fdSpread.max - q.fds, n: tail.length },
        detail: `${q.fds} → ${last.fds} open fds`,
      },
    ],
    notes, data: { samples, done, errors, counters: { ...counters }, cacheMb },
  };
};
