/**
 * Generation figures on the synthetic SmolLM2-135M-shaped decoder (seeded random weights, slotted
 * by the real `prepare --task text-generation`): mixed-adapter decode vs one adapter, adapter vs no
 * adapter vs the plain export, continuous batching vs one-at-a-time and static batching, time to
 * first token under load, KV bytes per token. Greedy decoding everywhere; the synthetic model never
 * picks an end-of-sequence token, so every stream generates exactly what it asks for.
 */
import { setMaxListeners } from 'node:events';
import { AdapterLoader } from '../../src/adapter/loader.js';
import { AdapterStore } from '../../src/adapter/store.js';
import { DecoderRunner } from '../../src/generation/decoder-runner.js';
import { KV_BLOCK_TOKENS, SequenceKv } from '../../src/generation/kv-cache.js';
import type { Figure } from '../context.js';
import { lockstep, PlainDecoder, stepperSource } from '../gen/decode.js';
import { ALL_ADAPTERS, ensureQvSlotted, QV_ADAPTERS } from '../gen/models.js';
import { gen, prompts, RecordingEngine, rounds, scheduler, sleep, startDecoderEngine, submit, type Gen, type GenRequest, type SeqResult } from '../gen/shared.js';
import { interleave, ratios, spread } from '../measure.js';
import { fmt, missNote, type Row } from '../report.js';
import { mulberry32, percentile, Zipf } from '../workload.js';

/** Idle ms before a run on another session (its intra-op threads stop spinning; see AlternateOptions.settleMs). */
const SETTLE_MS = 60;
const STREAMS = 8;

function decodeShape(g: Gen) {
  return { promptLen: g.quick ? 16 : 32, tokens: g.quick ? 12 : 48 };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const detail = (name: string, xs: number[], unit: string) => { const s = spread(xs); return `${name} ${fmt(s.median)} ${unit} [${fmt(s.min)}–${fmt(s.max)}]`; };

/** 8 streams over 8 different adapters ÷ 8 streams over one adapter, decode tokens/s (one ORT run per step). */
export const genMixed: Figure = async (ctx) => {
  const g = await gen(ctx);
  const { promptLen, tokens } = decodeShape(g);
  // One runner per side, as one server's engine: each keeps its own LoRA banks while its adapter set repeats
  // (a runner shared by both sides would rebuild them at every step as the sides alternate).
  const opts = { threads: g.threads, executionProvider: g.executionProvider };
  const runnerMixed = await DecoderRunner.create(g.dec.slottedDir, g.dec.manifest, opts);
  const runnerOne = await DecoderRunner.create(g.dec.slottedDir, g.dec.manifest, opts);
  const ad = await g.load(QV_ADAPTERS.slice(0, STREAMS));
  const ps = prompts(ctx.s.seed, STREAMS, promptLen, g.dec.shape.vocab);
  const ms = { mixed: { feed: [] as number[], run: [] as number[] }, one: { feed: [] as number[], run: [] as number[] } };
  let out;
  try {
    out = await rounds(g, 'gen-mixed', async () => {
      const r = await lockstep({
        mixed: stepperSource(runnerMixed, ps, range(STREAMS), ad),
        one: stepperSource(runnerOne, ps, range(STREAMS).map(() => 0), ad.slice(0, 1)),
      }, tokens - 1);
      for (const k of ['mixed', 'one'] as const) { ms[k].feed.push(...r.sources[k].feedMs!); ms[k].run.push(...r.sources[k].runMs!); }
      return r.tps;
    }, ctx.log);
  } finally {
    await runnerMixed.close();
    await runnerOne.close();
  }
  const row: Row = {
    figure: 'gen-mixed', label: `decode tokens/s, ${STREAMS} streams of ${STREAMS} different adapters ÷ ${STREAMS} streams of one adapter`, model: g.name,
    target: { op: '>=', value: 0.9 }, unit: '×', value: spread(ratios(out.mixed, out.one)),
    detail: `${detail('mixed', out.mixed, 'tok/s')}, ${detail('one', out.one, 'tok/s')}`,
  };
  const notes = [`${STREAMS} streams, ${promptLen}-token prompts prefilled together (untimed), then ${tokens - 1} decode steps per side in lockstep (mixed step, one-adapter step, alternating, order flipped each step); a side's value is ${STREAMS} ÷ its median step time; one DecoderRunner per side in this thread (${g.threads} intra-op threads each), so each keeps its LoRA banks while its adapters repeat, as the server's engine does over steady decode steps; adapters r=8 on q_proj, v_proj; ${g.reps} repeats after ${g.warmup} warm-up.`,
    `Per decode step (median ms): building the feeds ${fmt(spread(ms.mixed.feed).median)} mixed vs ${fmt(spread(ms.one.feed).median)} one adapter; the ORT run ${fmt(spread(ms.mixed.run).median)} vs ${fmt(spread(ms.one.run).median)}. A step's feeds hold a bank per LoRA slot — 210 slots, [k, d_in, R] and [k, R, d_out] with k the step's distinct adapters and R the largest rank — so ${STREAMS} adapters make every bank ${STREAMS}× larger, zeros included for the 150 slots (k, o, gate, up, down) these q,v adapters do not touch; they are built at a side's first step and reused after (src/runtime/bank-cache.ts), and ORT gathers each row's entry from them at every step.`];
  const miss = missNote(row, `The extra cost is the banks (the note above): k-entry banks at the largest rank for all 210 slots, which ORT gathers from at every step. Giving a slot that no adapter of the step touches a rank-1 bank would shrink them; today the slotted graph names every bank's rank axis with one dim_param, and ORT refuses banks of different ranks (docs/known-gaps.md).`);
  if (miss) notes.push(miss);
  return { title: 'Generation: mixed-adapter decode ÷ one-adapter decode', rows: [row], notes, data: out };
};

/** One adapter ÷ no adapter (slotted) ÷ the plain export, 8-stream decode tokens/s; also the r=16 all-projection adapter. */
export const genAdapterOverhead: Figure = async (ctx) => {
  const g = await gen(ctx);
  const { promptLen, tokens } = decodeShape(g);
  // One runner per side (each keeps its own LoRA banks while its adapters repeat, as the server's engine does).
  const ropts = { threads: g.threads, executionProvider: g.executionProvider };
  const [runnerQv, runnerNone, runnerAll7] = [
    await DecoderRunner.create(g.dec.slottedDir, g.dec.manifest, ropts),
    await DecoderRunner.create(g.dec.slottedDir, g.dec.manifest, ropts),
    await DecoderRunner.create(g.dec.slottedDir, g.dec.manifest, ropts),
  ];
  const plain = await PlainDecoder.create(g.dec.plainPath, g.dec.manifest, g.threads, g.executionProvider);
  const qvModel = await ensureQvSlotted(g.dec);
  const qvRunner = await DecoderRunner.create(qvModel.dir, qvModel.manifest, { threads: g.threads, executionProvider: g.executionProvider });
  const qvStore = new AdapterStore({ dir: g.dec.adaptersDir });
  await qvStore.init();
  const qvOnQvModel = await new AdapterLoader(qvStore, qvModel.manifest).load(QV_ADAPTERS[0]!);
  const [qv] = await g.load([QV_ADAPTERS[0]!]);
  const [all] = await g.load([ALL_ADAPTERS[0]!]);
  const ps = prompts(ctx.s.seed + 1, STREAMS, promptLen, g.dec.shape.vocab);
  const zeros = range(STREAMS).map(() => 0);
  const none = range(STREAMS).map(() => -1);
  const settle = g.threads > 1 ? SETTLE_MS : 0;
  const SIDES = ['qv', 'none', 'plain', 'all7', 'qvSlots'] as const;
  const ms = Object.fromEntries(SIDES.map((k) => [k, { feed: [] as number[], run: [] as number[] }])) as Record<(typeof SIDES)[number], { feed: number[]; run: number[] }>;
  let out;
  try {
    out = await rounds(g, 'gen-adapter-overhead', async () => {
      const r = await lockstep({
        qv: stepperSource(runnerQv, ps, zeros, [qv!]),
        none: stepperSource(runnerNone, ps, none, []),
        plain: stepperSource(plain, ps, none, []),
        all7: stepperSource(runnerAll7, ps, zeros, [all!]),
        qvSlots: stepperSource(qvRunner, ps, zeros, [qvOnQvModel]),
      }, tokens - 1, settle);
      for (const k of SIDES) { ms[k].feed.push(...r.sources[k].feedMs!); ms[k].run.push(...r.sources[k].runMs!); }
      return r.tps;
    }, ctx.log);
  } finally {
    for (const r of [runnerQv, runnerNone, runnerAll7]) await r.close();
    await plain.close();
    await qvRunner.close();
  }
  const noneVsPlain = spread(ratios(out.none, out.plain));
  const rows: Row[] = [
    { figure: 'gen-adapter-overhead', label: 'decode tokens/s, one adapter (q,v r=8) ÷ no adapter (slotted model)', model: g.name, target: { op: '>=', value: 0.95 }, unit: '×', value: spread(ratios(out.qv, out.none)), detail: `${detail('adapter', out.qv, 'tok/s')}, ${detail('none', out.none, 'tok/s')}` },
    { figure: 'gen-adapter-overhead', label: 'decode tokens/s, one adapter (q,v r=8) ÷ the plain export (no slots)', model: g.name, target: { op: '>=', value: 0.9 }, unit: '×', value: spread(ratios(out.qv, out.plain)), detail: `${detail('plain', out.plain, 'tok/s')}; slotted without adapter ÷ plain ${fmt(noneVsPlain.median)} [${fmt(noneVsPlain.min)}–${fmt(noneVsPlain.max)}]` },
    { figure: 'gen-adapter-overhead', label: 'decode tokens/s, one adapter (q,v r=8) on a model slotted for q,v only ÷ the plain export', model: g.name, target: null, unit: '×', value: spread(ratios(out.qvSlots, out.plain)), detail: `${detail('q,v-slotted', out.qvSlots, 'tok/s')} (60 slots instead of 210: prepare --targets q_proj,v_proj)` },
    { figure: 'gen-adapter-overhead', label: 'decode tokens/s, one adapter (all 7 projections, r=16) ÷ no adapter (slotted)', model: g.name, target: null, unit: '×', value: spread(ratios(out.all7, out.none)), detail: detail('all-7 adapter', out.all7, 'tok/s') },
  ];
  const notes = [
    `${STREAMS} streams of the same adapter (or none), ${promptLen}-token prompts prefilled untimed, ${tokens - 1} decode steps per side in lockstep (one step of each side in turn, order flipped each step; a side's value is ${STREAMS} ÷ its median step time); the slotted model (every one of the 210 projections has a LoRA slot; one session per side, so each keeps its LoRA banks while its adapters repeat) and the plain optimum export, in this thread, ${g.threads} intra-op thread(s)${settle ? `, ${settle} ms idle before every step (sessions' spinning threads)` : ''}, ${g.reps} repeats after ${g.warmup} warm-up.`,
    `Per decode step (median ms, feeds + ORT run): ${SIDES.map((k) => `${k} ${fmt(spread(ms[k].feed).median)} + ${fmt(spread(ms[k].run).median)}`).join(', ')}.`,
    `The slot cost without an adapter (slotted ÷ plain ${fmt(noneVsPlain.median)}×): per slot two Gathers (each row's A/B from the bank), two batched MatMuls over [b, 1, d]×[b, d, R] and an Add, 210 slots in all; with R = 1 zero bank for "no adapter".`,
  ];
  for (const [r, why] of [[rows[0]!, 'The LoRA matmuls are tiny (r=8), so the gap is per-slot op overhead: 4 extra ORT kernels × 60 active slots per step (and 150 slots with a 1-wide zero bank), each launched for [8, 1, d] tensors; at decode (1 token per row) the kernels are latency-bound, not FLOP-bound.'], [rows[1]!, `Slotted model: 210 slots × (2 Gather + 2 MatMul + Add) kernels per decode step on top of the plain graph, and 210 bank pairs built per step (the feed times above); at one token per row these small kernels are a larger share than at prefill. Preparing only the projections a deployment's adapters use (prepare --targets q_proj,v_proj: 60 slots) gave ${fmt(spread(ratios(out.qvSlots, out.plain)).median)}× the plain export in the same run.`]] as const) {
    const m = missNote(r, why);
    if (m) notes.push(m);
  }
  return { title: 'Generation: one adapter ÷ no adapter ÷ plain export', rows, notes, data: out };
};

/** A Poisson / Zipf workload of `count` requests. */
export function workload(g: Gen, seed: number, count: number, meanGapMs: number): GenRequest[] {
  const rand = mulberry32(seed);
  const zipf = new Zipf(QV_ADAPTERS.length, 1, rand);
  const ps = prompts(seed + 7, count, [16, 48], g.dec.shape.vocab);
  let at = 0;
  return ps.map((prompt) => {
    const r = { at, prompt, adapter: zipf.next(), maxTokens: g.quick ? 8 + Math.floor(rand() * 33) : 8 + Math.floor(rand() * 57) };
    at += -Math.log(1 - rand()) * meanGapMs;
    return r;
  });
}

type Policy = 'continuous' | 'static' | 'sequential';

/**
 * Runs the workload under a policy through the real scheduler and worker engine; returns useful
 * generated tokens/s (first arrival → last token). Static batching keeps every row of a batch
 * running until the batch's longest sequence ends (a row past its own max_tokens computes padding
 * tokens that nobody receives, as in a padded batched generate()).
 */
export async function runPolicy(g: Gen, engine: RecordingEngine, reqs: GenRequest[], policy: Policy): Promise<{ tps: number; cpuTps: number; results: SeqResult[] }> {
  const c0 = process.cpuUsage();
  const ad = await g.load(QV_ADAPTERS);
  const s = scheduler(g, engine, { maxRunning: policy === 'sequential' ? 1 : 16 });
  const t0 = performance.now();
  const arrived = (r: GenRequest) => performance.now() - t0 >= r.at;
  const results: Promise<SeqResult>[] = [];
  const useful = new Map<Promise<SeqResult>, number>();
  const go = (r: GenRequest, runFor = r.maxTokens) => { const p = submit(s, r.prompt, ad[r.adapter]!, QV_ADAPTERS[r.adapter]!, runFor).done; useful.set(p, r.maxTokens); return p; };
  if (policy === 'continuous') {
    for (const r of reqs) {
      const wait = r.at - (performance.now() - t0);
      if (wait > 0) await sleep(wait);
      results.push(go(r));
    }
  } else {
    // static: a batch of everything that has arrived (≤ 16) runs until its longest sequence ends; then the next.
    // sequential: the same with batches of one.
    const cap = policy === 'static' ? 16 : 1;
    let i = 0;
    while (i < reqs.length) {
      if (!arrived(reqs[i]!)) { await sleep(Math.max(0, reqs[i]!.at - (performance.now() - t0))); continue; }
      const members: GenRequest[] = [];
      while (i < reqs.length && members.length < cap && arrived(reqs[i]!)) members.push(reqs[i++]!);
      const longest = Math.max(...members.map((r) => r.maxTokens));
      const batch = members.map((r) => go(r, longest));
      results.push(...batch);
      await Promise.all(batch);
    }
  }
  const done = await Promise.all(results);
  await s.drain();
  const tokens = done.reduce((a, r, i) => a + Math.min(r.tokens.length, useful.get(results[i]!)!), 0);
  const c = process.cpuUsage(c0);
  return { tps: tokens / ((Math.max(...done.map((r) => r.done)) - t0) / 1000), cpuTps: tokens / ((c.user + c.system) / 1e6), results: done };
}

/** Continuous batching ÷ one request at a time ÷ static batching; KV bytes per token held. */
export const genBatching: Figure = async (ctx) => {
  const g = await gen(ctx);
  const count = g.quick ? 32 : 64;
  const seqCount = g.quick ? 4 : 16;
  const meanGapMs = 100;
  const engine = new RecordingEngine(await startDecoderEngine(g));
  const kv: number[] = [];
  const stepMs = { one: [] as number[], full: [] as number[], feedOne: [] as number[], feedFull: [] as number[] };
  const cpuTps = { continuous: [] as number[], static: [] as number[], sequential: [] as number[] };
  /** Share of the engine's ORT time spent in prefill steps, per policy run. */
  const prefillShare = { continuous: [] as number[], sequential: [] as number[] };
  const share = () => engine.steps.filter((x) => !x.decode).reduce((a, x) => a + x.runMs, 0) / engine.steps.reduce((a, x) => a + x.runMs, 0);
  const spec = g.dec.manifest.generation!;
  const exact = SequenceKv.bytesPerToken(spec);
  let out;
  try {
    out = await interleave({
      continuous: async (round) => {
        engine.steps.length = 0;
        const r = await runPolicy(g, engine, workload(g, ctx.s.seed + round, count, meanGapMs), 'continuous');
        const steps = engine.steps.filter((x) => x.kvTokens > 0);
        kv.push(steps.reduce((a, x) => a + x.kvBytes, 0) / steps.reduce((a, x) => a + x.kvTokens, 0) / exact);
        stepMs.full.push(...engine.steps.filter((x) => x.decode && x.rows >= 12).map((x) => x.runMs));
        stepMs.feedFull.push(...engine.steps.filter((x) => x.decode && x.rows >= 12).map((x) => x.feedMs));
        cpuTps.continuous.push(r.cpuTps);
        prefillShare.continuous.push(share());
        return r.tps;
      },
      static: async (round) => { const r = await runPolicy(g, engine, workload(g, ctx.s.seed + round, count, meanGapMs), 'static'); cpuTps.static.push(r.cpuTps); return r.tps; },
      sequential: async (round) => {
        engine.steps.length = 0;
        const r = await runPolicy(g, engine, workload(g, ctx.s.seed + round, count, meanGapMs).slice(0, seqCount), 'sequential');
        stepMs.one.push(...engine.steps.filter((x) => x.decode && x.rows === 1).map((x) => x.runMs));
        stepMs.feedOne.push(...engine.steps.filter((x) => x.decode && x.rows === 1).map((x) => x.feedMs));
        cpuTps.sequential.push(r.cpuTps);
        prefillShare.sequential.push(share());
        return r.tps;
      },
    }, { reps: g.reps, warmup: 0, onRound: (r, v) => ctx.log(`  gen-batching round ${r}: ${JSON.stringify(v)}`) });
  } finally {
    await engine.close();
  }
  const rows: Row[] = [
    { figure: 'gen-batching', label: 'continuous batching (≤ 16 streams, Poisson arrivals, Zipf over 20 adapters) ÷ one request at a time, tokens/s', model: g.name, target: { op: '>=', value: 4 }, unit: '×', value: spread(ratios(out.continuous, out.sequential)), detail: `${detail('continuous', out.continuous, 'tok/s')}, ${detail('one at a time', out.sequential, 'tok/s')}` },
    { figure: 'gen-batching', label: 'continuous batching ÷ static batching (a batch runs until its longest sequence ends), tokens/s', model: g.name, target: { op: '>=', value: 1.3 }, unit: '×', value: spread(ratios(out.continuous, out.static)), detail: detail('static', out.static, 'tok/s') },
    { figure: 'gen-batching', label: 'KV cache bytes held per token ÷ 2 · layers · KV heads · head dim · 4', model: g.name, target: { op: '<=', value: 1.2 }, unit: '×', value: spread(kv), detail: `exact ${exact} B/token (${spec.layers} layers, ${spec.kvHeads} KV heads, head dim ${spec.headDim}, F32); averaged over the continuous run's steps` },
  ];
  const notes = [
    `${count} requests per repeat (a fresh seeded draw per repeat, the same for every policy): prompts 16–48 tokens, ${g.quick ? '8–40' : '8–64'} new tokens, adapters Zipf (s = 1) over 20 r=8 q,v adapters, Poisson arrivals every ${meanGapMs} ms on average; throughput = generated tokens ÷ (first arrival → last token). All three run the real GenerationScheduler and DecoderWorkerEngine (${g.threads} threads): continuous with maxRunning 16; static submits every arrived request (≤ 16) and waits for the whole batch before the next; one-at-a-time is maxRunning 1 over the first ${seqCount} requests of the same draw (its tokens/s does not depend on how many it serves).`,
    `Static batching: every request that has arrived (≤ 16) forms a batch, and every row of it runs until the batch's longest sequence ends (a row past its own max_tokens keeps computing padding tokens nobody receives, as a padded batched generate() does); only each request's own tokens count. A gentler static variant that drops finished rows (newcomers still wait for the whole batch) measured 1.03× in a smoke run on this machine: on a CPU a step's cost grows almost linearly with its rows, so half-empty batches cost little.`,
    `ORT decode step time (ms, median) by rows: 1 row ${fmt(spread(stepMs.one).median)}, 12–16 rows ${fmt(spread(stepMs.full).median)} (${fmt(spread(stepMs.full).median / spread(stepMs.one).median)}× for up to 16× the tokens): the ceiling of any batching gain on this machine. Building a decode step's feeds in the worker (padded past copies, LoRA banks of the step's distinct adapters for all 210 slots): 1 row ${fmt(spread(stepMs.feedOne).median)} ms, 12–16 rows ${fmt(spread(stepMs.feedFull).median)} ms.`,
    `The same ratios in generated tokens per CPU-second of the process (decoder worker included; robust to other processes on a shared machine, and equal to wall-clock throughput on a dedicated core): continuous ÷ one at a time ${fmt(spread(ratios(cpuTps.continuous, cpuTps.sequential)).median)} [${fmt(spread(ratios(cpuTps.continuous, cpuTps.sequential)).min)}–${fmt(spread(ratios(cpuTps.continuous, cpuTps.sequential)).max)}], continuous ÷ static ${fmt(spread(ratios(cpuTps.continuous, cpuTps.static)).median)} [${fmt(spread(ratios(cpuTps.continuous, cpuTps.static)).min)}–${fmt(spread(ratios(cpuTps.continuous, cpuTps.static)).max)}].`,
    `Prefill steps took ${fmt(100 * spread(prefillShare.sequential).median)} % of the ORT time one request at a time and ${fmt(100 * spread(prefillShare.continuous).median)} % under continuous batching: prompt tokens cost the same compute in both (a prefill step is already a batch of tokens), so batching cannot shrink it: even free decode steps would cap the ratio to one-at-a-time at ${fmt(1 / spread(prefillShare.sequential).median)}×. The binding limit here is the decode step cost above.`,
    `KV bytes per token: the worker's caches (src/generation/kv-cache.ts) grow in blocks of 16 tokens; the figure is Σ bytes held ÷ Σ tokens held over every step of the continuous run. Not counted: each step's transient copies (the padded past feeds and the present outputs, built per step by buildDecoderFeeds and ORT).`,
  ];
  for (const [r, why] of [[rows[0]!, `Decode steps on this CPU are compute-bound sooner than on a GPU: a 12–16-row step costs ${fmt(spread(stepMs.full).median / spread(stepMs.one).median)}× a 1-row step (above), so batching gains far less than the rows suggest; prefill, which batching cannot shrink, takes a share of the work (above); each step also rebuilds every row's past as a padded copy and the LoRA banks of all 210 slots (buildDecoderFeeds), work that grows with rows.`], [rows[1]!, 'What continuous batching saves over static is the padding rows (a row past its own end still computes until the batch\'s longest ends) and newcomers waiting for a whole batch; arrivals here come faster than service, so batches are full, and lengths vary 1:4 or more, so the padding share is what the ratio measures.']] as const) {
    const m = missNote(r, why);
    if (m) notes.push(m);
  }
  const kvMiss = missNote(rows[2]!, `A sequence's cache grows in blocks of ${KV_BLOCK_TOKENS} tokens (src/generation/kv-cache.ts), so it holds up to ${KV_BLOCK_TOKENS - 1} unused positions; these sequences are short (20–64 positions, ~7 unused on average), which puts the average near 1.2. At chat lengths (a few hundred positions) the same slack is under 5 %; a block of 8 would halve it at the cost of twice the reallocations.`);
  if (kvMiss) notes.push(kvMiss);
  return { title: 'Generation: continuous batching', rows, notes, data: { ...out, kv, cpuTps, prefillShare } };
};

/** Time to first token of a request arriving while 15 streams decode ÷ on an idle scheduler (p50). */
export const genTtft: Figure = async (ctx) => {
  const g = await gen(ctx);
  const probes = g.quick ? 4 : 8;
  const engine = await startDecoderEngine(g);
  const ad = await g.load(QV_ADAPTERS);
  const s = scheduler(g, engine);
  const probeP = prompts(ctx.s.seed + 11, probes, 32, g.dec.shape.vocab);
  const bgP = prompts(ctx.s.seed + 12, 15, 32, g.dec.shape.vocab);
  const ttft = async (i: number) => { const h = submit(s, probeP[i]!, ad[i % 20]!, QV_ADAPTERS[i % 20]!, 1); const r = await h.done; return r.first - r.submitted; };
  let out;
  try {
    out = await interleave({
      idle: async () => { const xs: number[] = []; for (let i = 0; i < probes; i++) xs.push(await ttft(i)); return percentile(xs, 50); },
      loaded: async () => {
        const stop = new AbortController();
        setMaxListeners(32, stop.signal); // 15 streams listen on one signal
        const bg = bgP.map((p, i) => submit(s, p, ad[(i + 3) % 20]!, QV_ADAPTERS[(i + 3) % 20]!, 900, stop.signal));
        await Promise.all(bg.map((b) => b.first)); // all 15 are decoding
        const xs: number[] = [];
        for (let i = 0; i < probes; i++) { await sleep(Math.floor(mulberry32(i)() * 50)); xs.push(await ttft(i)); }
        stop.abort();
        await Promise.all(bg.map((b) => b.done));
        await s.drain();
        return percentile(xs, 50);
      },
    }, { reps: g.reps, warmup: g.warmup, onRound: (r, v) => ctx.log(`  gen-ttft round ${r}: ${JSON.stringify(v)}`) });
  } finally {
    await engine.close();
  }
  const row: Row = {
    figure: 'gen-ttft', label: 'time to first token while 15 streams decode ÷ on an idle server (p50)', model: g.name,
    target: { op: '<=', value: 3 }, unit: '×', value: spread(ratios(out.loaded, out.idle)),
    detail: `${detail('loaded', out.loaded, 'ms')}, ${detail('idle', out.idle, 'ms')}`,
  };
  const notes = [`${probes} probe requests per side per repeat (32-token prompt, an r=8 adapter, 1 token), one at a time; loaded: 15 streams (32-token prompts, other adapters) decoding when the probes arrive, probes spaced 0–50 ms; the real GenerationScheduler (one prefill step then one decode step per round) and DecoderWorkerEngine, ${g.threads} threads.`];
  const m = missNote(row, 'A probe that arrives mid-step waits for the 15-row decode step in flight (half a step on average), then its own prefill step gives its first token; on a CPU a 15-row decode step costs about as much as a 32-token prefill, so the ratio is bounded by how long one decode step is.');
  if (m) notes.push(m);
  return { title: 'Generation: time to first token under load', rows: [row], notes, data: out };
};
