/**
 * Figures through the whole in-process path (store → loader → AdapterCache → Batcher →
 * WorkerEngine): many adapters resident vs few, and more adapters in use than fit in the cache.
 */
import type { Figure } from '../context.js';
import { interleave, ratios, spread } from '../measure.js';
import { fmt, missNote, type Row } from '../report.js';
import { BATCH, closedLoop, makeStack } from '../stack.js';
import { makeWorkload, Zipf } from '../workload.js';

/** Single-row requests per measurement (closed loop): short, so that many alternations fit. */
const ROWS = 32;
/** Measured repeats for `reps` in the settings: short, noisy measurements, so four times as many plus one. */
const roundsFor = (reps: number) => 4 * reps + 1;
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
  }, { reps: roundsFor(reps), warmup });
  const r = spread(ratios(out.many, out.few));
  const s = { many: spread(out.many), few: spread(out.few) };
  const distinct = (b: { runs: number; distinct: number }) => b.distinct / Math.max(1, b.runs);
  const perBytes = (st: typeof many) => st.cache.bytesHeld / Math.max(1, st.cache.entries);
  const mib = (many.cache.bytesHeld / 2 ** 20);
  const notes = [
    `Closed loop, ${CONCURRENCY} single-row requests in flight, ${ROWS} requests (${minTokens}–${maxTokens} tokens) per measurement, uniform popularity (Zipf s = 0), ${roundsFor(reps)} interleaved repeats; a fresh seeded workload each repeat, the same one for both sides.`,
    `All ${ids.length} adapters were loaded before measuring (${fmt(preloadSeconds)} s, ${fmt(mib)} MiB held by the cache); batches held ${fmt(distinct(many.batches))} distinct adapters on average with ${ids.length} resident vs ${fmt(distinct(few.batches))} with 8.`,
  ];
  const row: Row = {
    figure: 'resident-many', label: `${ids.length} adapters resident ÷ 8 resident, throughput (uniform)`, model: ctx.modelName,
    target: { op: '>=', value: 0.95 }, unit: '×', value: r,
    detail: `${ids.length}: ${fmt(s.many.median)} rows/s, 8: ${fmt(s.few.median)} rows/s; distinct adapters per batch ${fmt(distinct(many.batches))} vs ${fmt(distinct(few.batches))}; cache ${fmt(mib)} MiB`,
  };
  const miss = missNote(row, `A cache hit costs the same with 8 or ${ids.length} entries (lru-cache is a hash map); what changes is the number of distinct adapters per batch (${fmt(distinct(many.batches))} vs ${fmt(distinct(few.batches))}), i.e. more bank copies in buildFeeds (~${fmt((perBytes(many) * distinct(many.batches)) / 2 ** 20)} MiB per run instead of ~${fmt((perBytes(many) * distinct(few.batches)) / 2 ** 20)} MiB) and ${fmt(mib)} MiB of weights that no longer fit any CPU cache. Reusing bank buffers between runs would take the allocation out.`);
  if (miss) notes.push(miss);
  return {
    title: `${ids.length} adapters resident ÷ 8 resident`,
    rows: [row],
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
  }, { reps: roundsFor(reps), warmup });
  const c = small.cache.counters;
  const hitRate = c.hits / Math.max(1, c.hits + c.misses);
  const ideal = new Zipf(n, zipfS, Math.random).mass(capacity);
  const r = spread(ratios(out.small, out.all));
  const s = { small: spread(out.small), all: spread(out.all) };
  const notes = [
    `${n} adapters in use, Zipf s = ${zipfS}; the small cache holds ${capacity} adapters (${fmt((capacity * perAdapter) / 2 ** 20)} MiB, byte-bounded), the other all ${n} (preloaded). Closed loop, ${CONCURRENCY} in flight, ${ROWS} requests per measurement, ${roundsFor(reps)} interleaved repeats.`,
    `Hit rate with the small cache: ${(hitRate * 100).toFixed(1)} % (${c.hits} hits, ${c.misses} misses, ${c.evictions} evictions); the ${capacity} most popular adapters carry ${(ideal * 100).toFixed(1)} % of the traffic, the best a static choice could do. A miss costs one AdapterLoader.load (~${fmt(perAdapter / 2 ** 20)} MiB read, parsed and transposed), overlapped with the running batch.`,
  ];
  const row: Row = {
    figure: 'cache-pressure', label: `adapters in use = 2× cache capacity ÷ all cached, throughput (Zipf s=1)`, model: ctx.modelName,
    target: { op: '>=', value: 0.5 }, unit: '×', value: r,
    detail: `hit rate ${(hitRate * 100).toFixed(1)} % (top-${capacity} mass ${(ideal * 100).toFixed(1)} %); ${fmt(s.small.median)} vs ${fmt(s.all.median)} rows/s; ${c.evictions} evictions`,
  };
  const miss = missNote(row, `Each miss runs AdapterLoader.load on the main thread (file read on the libuv pool, then parse and transpose); on a 2-core machine that CPU work competes with the inference worker's intra-op threads. Loading on a separate worker thread, or from a pre-transposed on-disk layout that needs no copy, would shrink it.`);
  if (miss) notes.push(miss);
  return {
    title: 'Twice as many adapters in use as fit in the cache ÷ all cached',
    rows: [row],
    notes, data: { ...out, hitRate, counters: { ...c }, capacity, perAdapterBytes: perAdapter },
  };
};
