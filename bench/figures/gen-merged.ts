/**
 * Generation against the naive way: one merged model per adapter at the memory adapterhost uses
 * (the slotted base plus 20 adapters), the same Poisson / Zipf-over-20 workload as gen-batching.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Figure } from '../context.js';
import { MergedDecoderServer } from '../gen/merged-decoder.js';
import { QV_ADAPTERS } from '../gen/models.js';
import { gen, RecordingEngine, startDecoderEngine } from '../gen/shared.js';
import { interleave, MiB, ratios, spread } from '../measure.js';
import { fmt, type Row } from '../report.js';
import { runPolicy, workload } from './generation.js';

export const genMerged: Figure = async (ctx) => {
  const g = await gen(ctx);
  const count = g.quick ? 32 : 64;
  const meanGapMs = 100;
  const adapterDirs = QV_ADAPTERS.map((id) => path.join(g.dec.adaptersDir, id));
  // Memory by file bytes: ours holds the slotted model and the 20 adapters; a merged model is a plain export's size.
  const slottedBytes = (await stat(path.join(g.dec.slottedDir, g.dec.manifest.modelFile))).size;
  const adapterBytes = (await Promise.all(adapterDirs.map((d) => stat(path.join(d, 'adapter_model.safetensors'))))).reduce((a, s) => a + s.size, 0);
  const mergedBytes = (await stat(g.dec.plainPath)).size;
  const capacity = Math.max(1, Math.floor((slottedBytes + adapterBytes) / mergedBytes));
  const merged = new MergedDecoderServer({
    plainPath: g.dec.plainPath, manifest: g.dec.manifest, adapterDirs, mergedDir: path.join(path.dirname(g.dec.slottedDir), 'merged'),
    capacity, maxRows: 16, threads: g.threads, executionProvider: g.executionProvider,
  });
  const draw = (round: number) => workload(g, ctx.s.seed + 500 + round, count, meanGapMs);
  for (let r = 0; r < g.reps; r++) await merged.prepare(draw(r));
  if (merged.mergeSeconds > 0) ctx.log(`  gen-merged: wrote merged models in ${fmt(merged.mergeSeconds)} s (once, kept under build/bench)`);
  const engine = new RecordingEngine(await startDecoderEngine(g));
  const switches: number[] = [];
  let out;
  try {
    out = await interleave({
      ours: async (round) => (await runPolicy(g, engine, draw(round), 'continuous')).tps,
      merged: async (round) => {
        const r = await merged.run(draw(round));
        switches.push(r.switches);
        return r.tps;
      },
    }, { reps: g.reps, warmup: 0, onRound: (r, v) => ctx.log(`  gen-merged round ${r}: ${JSON.stringify(v)}`) });
  } finally {
    await engine.close();
    await merged.close();
  }
  const row: Row = {
    figure: 'gen-merged', label: `continuous batching over 20 adapters (Poisson, Zipf) ÷ one merged model per adapter at the same memory (${capacity} open), tokens/s`, model: g.name,
    target: null, unit: '×', value: spread(ratios(out.ours, out.merged)),
    detail: `ours ${fmt(spread(out.ours).median)} tok/s, merged ${fmt(spread(out.merged).median)} tok/s; ${merged.loads} session opens, ${fmt(merged.loadSeconds)} s`,
  };
  const notes = [
    `The workload of gen-batching (${count} requests per repeat, Poisson arrivals every ${meanGapMs} ms on average, Zipf s = 1 over the 20 r=8 q,v adapters, prompts 16–48 tokens, ${g.quick ? '8–40' : '8–64'} new tokens; a fresh seeded draw per repeat, the same for both sides), ${g.reps} interleaved repeats, ${g.threads} threads each. Ours: the real GenerationScheduler and DecoderWorkerEngine (continuous batching, ≤ 16 rows, rows of different adapters in one step). Merged: one merged model per adapter (W + s·B·A written into a copy of the plain export by bench/merge.ts), one ONNX session each, served first come, first served by adapter with continuous batching among the rows of the adapter being served (bench/gen/merged-decoder.ts); a step never mixes adapters.`,
    `Same memory, by model file bytes: the slotted model ${fmt(slottedBytes / MiB)} MiB + 20 adapters ${fmt(adapterBytes / MiB)} MiB against ${fmt(mergedBytes / MiB)} MiB per merged model → ${capacity} merged session(s) open at once, so moving to another adapter closes one and opens the next (${fmt(merged.loadSeconds / Math.max(1, merged.loads))} s per open on average). Adapter switches per repeat: ${switches.join(', ')}; the merged models were written beforehand and are not timed.`,
  ];
  return { title: 'Generation: one merged model per adapter', rows: [row], notes, data: { ...out, switches, capacity, loads: merged.loads, loadSeconds: merged.loadSeconds, slottedBytes, adapterBytes, mergedBytes } };
};
