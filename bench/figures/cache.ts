/**
 * Figures through the whole in-process path (store → loader → AdapterCache → Batcher →
 * WorkerEngine): many adapters resident vs few, and more adapters in use than fit in the cache.
 */
import type { Figure } from '../context.js';
import { interleave, ratios, spread } from '../measure.js';
import { fmt } from '../report.js';
import { BATCH, closedLoop, makeStack } from '../stack.js';
import { makeWorkload, Zipf } from '../workload.js';

/** Single-row requests per measurement (closed loop). */
const ROWS = 48;
/** Requests in flight: two batches, so the next batch is queued while one runs. */
const CONCURRENCY = 2 * BATCH.maxBatchRows;

/** 1,000 adapters resident ÷ 8 resident, uniform popularity, cache big enough for all. */
export const residentMany: Figure = async (ctx) => {
  const { reps, warmup, seed, minTokens, maxTokens, manyAdapters } = ctx.s;
  const m = await ctx.model();
  const ids = await ctx.adapters(manyAdapters);
  const store = await ctx.store();
  const engine = await ctx.engine();
  const common = { store, manifest: m.manifest, engine, padId: ctx.padId, cacheBytes: 2 ** 40 };
  const many = makeStack({ ...common, ids });
  const few = makeStack({ ...common, ids: ids.slice(0, 8) });
  const t0 = performance.now();
  await many.preload(ids.keys());
  const preloadSeconds = (performance.now() - t0) / 1000;
  await few.preload([0, 1, 2, 3, 4, 5, 6, 7]);
  const work = (n: number, round: number) => makeWorkload({ adapters: n, zipfS: 0, count: ROWS, minTokens, maxTokens, vocab: m.shape.vocab, seed: seed + round });
  many.resetCounts();
  few.resetCounts();
  const out = await interleave({
    many: (round) => closedLoop(many, work(ids.length, round), CONCURRENCY),
    few: (round) => closedLoop(few, work(8, round), CONCURRENCY),
  }, { reps: reps + 2, warmup });
  const r = spread(ratios(out.many, out.few));
  const s = { many: spread(out.many), few: spread(out.few) };
  const distinct = (b: { runs: number; distinct: number }) => b.distinct / Math.max(1, b.runs);
  const mib = (many.cache.bytesHeld / 2 ** 20);
  const notes = [
    `Closed loop, ${CONCURRENCY} single-row requests in flight, ${ROWS} requests (${minTokens}–${maxTokens} tokens) per measurement, uniform popularity (Zipf s = 0), ${reps + 2} interleaved repeats; a fresh seeded workload each repeat, the same one for both sides.`,
    `All ${ids.length} adapters were loaded before measuring (${fmt(preloadSeconds)} s, ${fmt(mib)} MiB held by the cache); batches held ${fmt(distinct(many.batches))} distinct adapters on average with ${ids.length} resident vs ${fmt(distinct(few.batches))} with 8.`,
  ];
  if (r.median < 0.95) notes.push(`MISSED (${fmt(r.median)} < 0.95): ${fmt(s.many.median)} vs ${fmt(s.few.median)} rows/s. The difference is the number of distinct adapters per batch (bank copies in buildFeeds), not residency: a cache hit costs the same with 8 or ${ids.length} entries.`);
  return {
    title: `${ids.length} adapters resident ÷ 8 resident`,
    rows: [{
      figure: 'resident-many', label: `${ids.length} adapters resident ÷ 8 resident, throughput (uniform)`, model: ctx.modelName,
      target: { op: '>=', value: 0.95 }, unit: '×', value: r,
      detail: `${ids.length}: ${fmt(s.many.median)} rows/s, 8: ${fmt(s.few.median)} rows/s; distinct adapters per batch ${fmt(distinct(many.batches))} vs ${fmt(distinct(few.batches))}; cache ${fmt(mib)} MiB`,
    }],
    notes, data: { ...out, preloadSeconds, cacheMiB: mib },
  };
};

/** Adapters in use = 2 × cache capacity ÷ all in cache, Zipf s = 1. */
export const cachePressure: Figure = async (ctx) => {
  const { reps, warmup, seed, minTokens, maxTokens, zipfAdapters: n } = ctx.s;
  const m = await ctx.model();
  const ids = await ctx.adapters(n);
  const store = await ctx.store();
  const engine = await ctx.engine();
  const probe = makeStack({ store, manifest: m.manifest, engine, padId: ctx.padId, cacheBytes: 2 ** 40, ids });
  const perAdapter = (await probe.loader.load(ids[0]!)).bytes;
  const capacity = Math.floor(n / 2);
  const common = { store, manifest: m.manifest, engine, padId: ctx.padId, ids };
  const small = makeStack({ ...common, cacheBytes: capacity * perAdapter });
  const all = makeStack({ ...common, cacheBytes: 2 ** 40 });
  await all.preload(ids.keys());
  const zipfS = 1;
  const work = (round: number) => makeWorkload({ adapters: n, zipfS, count: ROWS, minTokens, maxTokens, vocab: m.shape.vocab, seed: seed + 100 + round });
  // Warm the small cache to its steady state before measuring.
  await closedLoop(small, makeWorkload({ adapters: n, zipfS, count: 4 * ROWS, minTokens, maxTokens, vocab: m.shape.vocab, seed: seed + 99 }), CONCURRENCY);
  small.resetCounts();
  all.resetCounts();
  const out = await interleave({
    small: (round) => closedLoop(small, work(round), CONCURRENCY),
    all: (round) => closedLoop(all, work(round), CONCURRENCY),
  }, { reps: reps + 2, warmup });
  const c = small.cache.counters;
  const hitRate = c.hits / Math.max(1, c.hits + c.misses);
  const ideal = new Zipf(n, zipfS, Math.random).mass(capacity);
  const r = spread(ratios(out.small, out.all));
  const s = { small: spread(out.small), all: spread(out.all) };
  const notes = [
    `${n} adapters in use, Zipf s = ${zipfS}; the small cache holds ${capacity} adapters (${fmt((capacity * perAdapter) / 2 ** 20)} MiB, byte-bounded), the other all ${n} (preloaded). Closed loop, ${CONCURRENCY} in flight, ${ROWS} requests per measurement, ${reps + 2} interleaved repeats.`,
    `Hit rate with the small cache: ${(hitRate * 100).toFixed(1)} % (${c.hits} hits, ${c.misses} misses, ${c.evictions} evictions); the ${capacity} most popular adapters carry ${(ideal * 100).toFixed(1)} % of the traffic, the best a static choice could do. A miss costs one AdapterLoader.load (~${fmt(perAdapter / 2 ** 20)} MiB read, parsed and transposed), overlapped with the running batch.`,
  ];
  if (r.median < 0.5) notes.push(`MISSED (${fmt(r.median)} < 0.5): ${fmt(s.small.median)} vs ${fmt(s.all.median)} rows/s.`);
  return {
    title: 'Twice as many adapters in use as fit in the cache ÷ all cached',
    rows: [{
      figure: 'cache-pressure', label: `adapters in use = 2× cache capacity ÷ all cached, throughput (Zipf s=1)`, model: ctx.modelName,
      target: { op: '>=', value: 0.5 }, unit: '×', value: r,
      detail: `hit rate ${(hitRate * 100).toFixed(1)} % (top-${capacity} mass ${(ideal * 100).toFixed(1)} %); ${fmt(s.small.median)} vs ${fmt(s.all.median)} rows/s; ${c.evictions} evictions`,
    }],
    notes, data: { ...out, hitRate, counters: { ...c }, capacity, perAdapterBytes: perAdapter },
  };
};
