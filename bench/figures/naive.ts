/**
 * The naive alternatives, measured beside adapterhost in the same run:
 * 1. one merged model per adapter (merge.ts → one ONNX session each): memory per adapter,
 *    first request of an adapter not loaded yet, throughput under Zipf with the same memory;
 * 2. same-adapter batching only: throughput and latency under Zipf near saturation.
 */
import ort from 'onnxruntime-node';
import type { Figure } from '../context.js';
import { interleave, MiB, ratios, spread } from '../measure.js';
import { MergedModelServer, plainFeeds } from '../naive-merged.js';
import { fmt } from '../report.js';
import { SameAdapterBatcher } from '../same-adapter-batcher.js';
import { BATCH, closedLoop, makeStack, openLoop, sessionOptions, type Server } from '../stack.js';
import { makeWorkload, percentile } from '../workload.js';
import { adapterMemory, memoryChild, type SessionMemory } from './memory.js';

const CONCURRENCY = 2 * BATCH.maxBatchRows;

export const naiveMerged: Figure = async (ctx) => {
  const { seed, minTokens, maxTokens, mergedAdapters: n, mode } = ctx.s;
  const m = await ctx.model();
  const ids = await ctx.adapters(Math.max(n, 160));
  const paths = await ctx.merged(ids.slice(0, n));
  const notes: string[] = [];

  // --- Memory per adapter: RSS delta per merged session vs per cached adapter (fresh children).
  const sess = await memoryChild<SessionMemory>(['sessions', `${m.slottedDir}/${m.manifest.modelFile}`, ...paths.slice(0, 3)]);
  const ours = await adapterMemory(ctx, sess.mergedRss.length);
  const oursPer = ours.map((r) => r.delta.rss / r.count);
  const memRatio = spread(ratios(oursPer, sess.mergedRss));
  const mergedMiB = spread(sess.mergedRss.map((x) => x / MiB));
  notes.push(`Memory: each merged session adds ${fmt(mergedMiB.median)} MiB RSS [${fmt(mergedMiB.min)}–${fmt(mergedMiB.max)}] (model file ${fmt(sess.fileBytes / MiB)} MiB), measured as RSS deltas opening 3 merged models one after another in a fresh --expose-gc child (each ran one 8×24 batch); a cached adapter adds ${fmt(spread(oursPer).median / 1024)} KiB. The slotted base itself adds ${fmt(sess.slottedRss / MiB)} MiB once.`);

  // --- First request of an adapter not loaded yet: ours = cache miss (load) + one-row batch on the
  // shared engine; theirs = open the merged session + run one row (+ close it, untimed).
  const store = await ctx.store();
  const engine = await ctx.engine();
  const row = makeWorkload({ adapters: 1, zipfS: 0, count: 1, minTokens: maxTokens, maxTokens, vocab: m.shape.vocab, seed }).map((w) => w.ids)[0]!;
  const coldStack = makeStack({ store, manifest: m.manifest, engine, padId: ctx.padId, cacheBytes: 2 ** 40, ids });
  const coldReps = mode === 'full' ? 5 : 3;
  let next = 0;
  const cold = await interleave({
    ours: async () => {
      const i = 100 + next; // never loaded by this stack before
      const t0 = performance.now();
      await coldStack.request(i, row);
      return performance.now() - t0;
    },
    theirs: async () => {
      const t0 = performance.now();
      const s = await ort.InferenceSession.create(paths[next % paths.length]!, sessionOptions(ctx.s.executionProvider));
      await s.run(plainFeeds([row], ctx.padId));
      const ms = performance.now() - t0;
      await s.release();
      next++;
      return ms;
    },
  }, { reps: coldReps, warmup: 1 });
  const coldRatio = spread(ratios(cold.ours, cold.theirs));
  notes.push(`First request of an adapter not loaded yet (one ${maxTokens}-token row): ours ${fmt(spread(cold.ours).median)} ms (AdapterLoader.load through the cache, then the batch), merged ${fmt(spread(cold.theirs).median)} ms (InferenceSession.create of a ${fmt(sess.fileBytes / MiB)} MiB model, then the run); ${coldReps} interleaved repeats.`);

  // --- Throughput under Zipf s = 1 with the same memory: ours = the slotted base + all n adapters
  // cached; theirs = as many merged sessions as fit in those bytes (at least one), LRU.
  const budget = sess.slottedRss + n * spread(oursPer).median;
  const capacity = Math.max(1, Math.floor(budget / spread(sess.mergedRss).median));
  const oursStack = makeStack({ store, manifest: m.manifest, engine, padId: ctx.padId, cacheBytes: 2 ** 40, ids: ids.slice(0, n) });
  const merged = new MergedModelServer({ paths, capacity, maxBatchRows: BATCH.maxBatchRows, padId: ctx.padId, executionProvider: ctx.s.executionProvider });
  const rows = mode === 'full' ? 40 : 24;
  const work = (round: number) => makeWorkload({ adapters: n, zipfS: 1, count: rows, minTokens, maxTokens, vocab: m.shape.vocab, seed: seed + 300 + round });
  const thrReps = mode === 'full' ? 3 : 2;
  let thr;
  try {
    thr = await interleave({
      ours: (round) => closedLoop(oursStack, work(round), CONCURRENCY),
      theirs: (round) => closedLoop(merged, work(round), CONCURRENCY),
    }, { reps: thrReps, warmup: 0 });
  } finally {
    await merged.close();
  }
  const thrRatio = spread(ratios(thr.ours, thr.theirs));
  notes.push(`Throughput: Zipf s = 1 over ${n} adapters, ${rows} single-row requests per repeat (closed loop, ${CONCURRENCY} in flight), ${thrReps} interleaved repeats, both starting cold. Memory budget = ours (slotted base ${fmt(sess.slottedRss / MiB)} MiB + ${n} cached adapters ${fmt((n * spread(oursPer).median) / MiB)} MiB, RSS) = ${fmt(budget / MiB)} MiB → ${capacity} merged session(s) fit. The merged server groups rows by adapter (a session serves one adapter) and reopened sessions ${merged.loads} times (${fmt(merged.loadSeconds)} s of ${fmt(rows * thrReps / spread(thr.theirs).median)} s). Ours ${fmt(spread(thr.ours).median)} rows/s, merged ${fmt(spread(thr.theirs).median)} rows/s.`);

  return {
    title: 'Naive baseline: one merged model per adapter',
    rows: [
      {
        figure: 'naive-merged', label: 'vs merged-per-adapter: memory per adapter, ours ÷ theirs (RSS)', model: ctx.modelName,
        target: null, unit: '×', value: memRatio,
        detail: `ours ${fmt(spread(oursPer).median / 1024)} KiB, merged session ${fmt(mergedMiB.median)} MiB`,
      },
      {
        figure: 'naive-merged', label: 'vs merged-per-adapter: first request of an unloaded adapter, ours ÷ theirs (time)', model: ctx.modelName,
        target: null, unit: '×', value: coldRatio,
        detail: `ours ${fmt(spread(cold.ours).median)} ms, merged ${fmt(spread(cold.theirs).median)} ms`,
      },
      {
        figure: 'naive-merged', label: `vs merged-per-adapter: throughput, Zipf s=1, ${n} adapters, same memory, ours ÷ theirs`, model: ctx.modelName,
        target: null, unit: '×', value: thrRatio,
        detail: `ours ${fmt(spread(thr.ours).median)} rows/s, merged ${fmt(spread(thr.theirs).median)} rows/s (${capacity} session(s) fit, ${merged.loads} session opens)`,
      },
    ],
    notes, data: { sessions: sess, oursPerAdapter: oursPer, cold, throughput: thr, capacity, budget, loads: merged.loads, loadSeconds: merged.loadSeconds },
  };
};

/** Same-adapter batching vs mixed, open loop (Poisson) near saturation, Zipf s = 1 over 100 adapters. */
export const sameAdapter: Figure = async (ctx) => {
  const { seed, minTokens, maxTokens, openLoopSeconds, mode } = ctx.s;
  const n = 100;
  const m = await ctx.model();
  const ids = await ctx.adapters(n);
  const store = await ctx.store();
  const engine = await ctx.engine();
  const mixed = makeStack({ store, manifest: m.manifest, engine, padId: ctx.padId, cacheBytes: 2 ** 40, ids });
  await mixed.preload(ids.keys());
  let sameBatches = 0;
  let sameRows = 0;
  const sameBatcher = new SameAdapterBatcher({ engine, maxBatchRows: BATCH.maxBatchRows, padId: ctx.padId, onBatch: (r) => { sameBatches++; sameRows += r; } });
  const same: Server = {
    async request(adapter, rowIds) {
      const lease = await mixed.cache.acquire(ids[adapter]!);
      try {
        await sameBatcher.submit({ ids: rowIds, adapter: lease.weights });
      } finally {
        lease.release();
      }
    },
  };
  const vocab = m.shape.vocab;
  // Before each repeat: the mixed batcher's saturation (closed loop), then both sides get the same
  // Poisson arrivals at 0.9 × that rate. Re-measured per repeat because the machine's speed drifts.
  await closedLoop(mixed, makeWorkload({ adapters: n, zipfS: 1, count: 16, minTokens, maxTokens, vocab, seed: seed + 399 }), CONCURRENCY);
  const reps = mode === 'full' ? 3 : 2;
  const lat = { mixed: [] as number[][], same: [] as number[][] };
  const rates: number[] = [];
  const saturations: number[] = [];
  const arrivals = (round: number) => makeWorkload({ adapters: n, zipfS: 1, rate: rates[round]!, durationS: openLoopSeconds, minTokens, maxTokens, vocab, seed: seed + 500 + round });
  const mixedAgg = { rows: 0, runs: 0 };
  const out = await interleave({
    mixed: async (round) => {
      const sat = await closedLoop(mixed, makeWorkload({ adapters: n, zipfS: 1, count: 96, minTokens, maxTokens, vocab, seed: seed + 400 + round }), CONCURRENCY);
      saturations.push(sat);
      rates.push(0.9 * sat);
      const before = { ...mixed.batches };
      const r = await openLoop(mixed, arrivals(round));
      mixedAgg.rows += mixed.batches.rows - before.rows;
      mixedAgg.runs += mixed.batches.runs - before.runs;
      lat.mixed.push(r.latencies);
      return r.throughput;
    },
    same: async (round) => {
      const r = await openLoop(same, arrivals(round));
      lat.same.push(r.latencies);
      return r.throughput;
    },
  }, { reps, warmup: 0 });
  const rate = spread(rates).median;
  const saturation = spread(saturations).median;
  const p = (side: number[][], q: number) => side.map((l) => percentile(l, q));
  const thr = spread(ratios(out.mixed, out.same));
  const p50 = spread(ratios(p(lat.same, 50), p(lat.mixed, 50)));
  const p99 = spread(ratios(p(lat.same, 99), p(lat.mixed, 99)));
  const med = (xs: number[]) => spread(xs).median;
  const rowsPerBatch = { mixed: mixedAgg.rows / Math.max(1, mixedAgg.runs), same: sameRows / Math.max(1, sameBatches) };
  const notes = [
    `Zipf s = 1 over ${n} adapters (all cached), single-row requests of ${minTokens}–${maxTokens} tokens, Poisson arrivals at 0.9 × the mixed batcher's closed-loop saturation, re-measured before each repeat (saturation ${saturations.map(fmt).join(', ')} rows/s → ${rates.map(fmt).join(', ')} req/s offered), ${openLoopSeconds} s per run, ${reps} interleaved repeats with the same arrivals for both sides. Throughput = requests ÷ (last answer − first arrival); latency from the scheduled arrival.`,
    `Mixed: ${fmt(med(out.mixed))} req/s, p50 ${fmt(med(p(lat.mixed, 50)))} ms, p99 ${fmt(med(p(lat.mixed, 99)))} ms, ${fmt(rowsPerBatch.mixed)} rows per batch. Same-adapter only: ${fmt(med(out.same))} req/s, p50 ${fmt(med(p(lat.same, 50)))} ms, p99 ${fmt(med(p(lat.same, 99)))} ms, ${fmt(rowsPerBatch.same)} rows per batch${med(out.same) < 0.95 * med(out.mixed) ? `: with ${n} adapters few queued rows share an adapter, so its batches stay small, its capacity is lower, and it falls behind the arrivals` : `; here it kept up with the arrivals (the machine's speed drifted between the saturation estimate and the run, so the offered load was not near saturation for both), and the comparison says little`}.`,
  ];
  return {
    title: 'Naive baseline: same-adapter batching only',
    rows: [
      {
        figure: 'same-adapter', label: `vs same-adapter batching: throughput near saturation, mixed ÷ same (Zipf s=1, ${n} adapters)`, model: ctx.modelName,
        target: null, unit: '×', value: thr,
        detail: `mixed ${fmt(med(out.mixed))} req/s, same ${fmt(med(out.same))} req/s at ${fmt(rate)} req/s offered; rows/batch ${fmt(rowsPerBatch.mixed)} vs ${fmt(rowsPerBatch.same)}`,
      },
      {
        figure: 'same-adapter', label: 'vs same-adapter batching: p50 latency, same ÷ mixed', model: ctx.modelName,
        target: null, unit: '×', value: p50,
        detail: `p50 mixed ${fmt(med(p(lat.mixed, 50)))} ms, same ${fmt(med(p(lat.same, 50)))} ms`,
      },
      {
        figure: 'same-adapter', label: 'vs same-adapter batching: p99 latency, same ÷ mixed', model: ctx.modelName,
        target: null, unit: '×', value: p99,
        detail: `p99 mixed ${fmt(med(p(lat.mixed, 99)))} ms, same ${fmt(med(p(lat.same, 99)))} ms`,
      },
    ],
    notes, data: { throughput: out, saturations, rates, p50: { mixed: p(lat.mixed, 50), same: p(lat.same, 50) }, p99: { mixed: p(lat.mixed, 99), same: p(lat.same, 99) }, rowsPerBatch },
  };
};
