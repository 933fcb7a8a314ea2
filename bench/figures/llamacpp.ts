/**
 * The llama.cpp peer (node-llama-cpp 3.21.1, its prebuilt CPU binary) on the same synthetic weights:
 * first the proof that both engines give the same greedy tokens with and without adapters, then
 * single-stream decode (base, one adapter) and 8 streams over 8 adapters, same prompts, same
 * lengths, same thread count. llama.cpp applies a context's LoRA to all its sequences, so the 8
 * adapters are 8 contexts over the one loaded model (node-llama-cpp evaluates them concurrently).
 */
import { DecoderRunner } from '../../src/generation/decoder-runner.js';
import type { Figure } from '../context.js';
import { decode, lockstep, stepperSource } from '../gen/decode.js';
import { llamaGenerate, llamaSource, openLlamaPeer } from '../gen/llamacpp.js';
import { ALL_ADAPTERS, QV_ADAPTERS } from '../gen/models.js';
import { gen, prompts, rounds } from '../gen/shared.js';
import { ratios, spread } from '../measure.js';
import { fmt, missNote, type Row } from '../report.js';

const STREAMS = 8;
const SETTLE_MS = 100;

export const genLlamaCpp: Figure = async (ctx) => {
  const g = await gen(ctx);
  const n = g.quick ? 12 : 32;
  const parityTokens = 16;
  const runner = await DecoderRunner.create(g.dec.slottedDir, g.dec.manifest, { threads: g.threads, executionProvider: g.executionProvider });
  const peer = await openLlamaPeer(g.dec.ggufPath, g.threads);
  const notes: string[] = [];
  try {
    // 1. Same greedy tokens, before any timing.
    const pp = prompts(ctx.s.seed + 21, 3, [6, 24], g.dec.shape.vocab);
    const parity: Array<{ adapter: string; prompt: number; same: boolean; ours: number[]; theirs: number[] }> = [];
    for (const id of [null, QV_ADAPTERS[0]!, ALL_ADAPTERS[0]!]) {
      const ad = id ? await g.load([id]) : [];
      const c = await peer.context(id ? g.dec.loraGguf(id) : null);
      for (const [i, p] of pp.entries()) {
        const ours = (await decode(runner, [p], [id ? 0 : -1], ad, parityTokens)).tokens[0]!;
        const theirs = (await llamaGenerate(c, p, parityTokens)).tokens;
        parity.push({ adapter: id ?? '(base)', prompt: i, same: ours.join() === theirs.join(), ours, theirs });
      }
      await c.dispose();
    }
    const same = parity.filter((x) => x.same).length;
    ctx.log(`  gen-llamacpp parity: ${same}/${parity.length} identical`);
    notes.push(`Parity (checked before timing, every run): greedy ${parityTokens} tokens for ${pp.length} prompts (${pp.map((p) => p.length).join(', ')} tokens) × {base, ${QV_ADAPTERS[0]} (q,v r=8), ${ALL_ADAPTERS[0]} (all 7 projections r=16)}: ${same} of ${parity.length} token sequences identical between adapterhost (ORT, slotted model + PEFT adapter) and llama.cpp (GGUF F32 model + GGUF LoRA, F32 KV cache).`);
    if (same !== parity.length) notes.push(`**Parity failed** for ${parity.filter((x) => !x.same).map((x) => `${x.adapter}/prompt ${x.prompt}`).join(', ')}: the timings below compare engines that do not compute the same thing.`);

    // 2. Timing: same prompts, lengths and threads.
    const p1 = prompts(ctx.s.seed + 22, 1, 32, g.dec.shape.vocab)[0]!;
    const p8 = prompts(ctx.s.seed + 23, STREAMS, 32, g.dec.shape.vocab);
    const ad8 = await g.load(QV_ADAPTERS.slice(0, STREAMS));
    const base = await peer.context(null);
    const one = await peer.context(g.dec.loraGguf(QV_ADAPTERS[0]!));
    const ctx8: Array<typeof base> = [];
    for (let i = 0; i < STREAMS; i++) ctx8.push(await peer.context(g.dec.loraGguf(QV_ADAPTERS[i]!)));
    const settle = g.threads > 1 ? SETTLE_MS : 0;
    let out;
    try {
      out = await rounds(g, 'gen-llamacpp', async () => (await lockstep({
        oursBase: stepperSource(runner, [p1], [-1], []),
        theirsBase: llamaSource([base], [p1]),
        oursOne: stepperSource(runner, [p1], [0], ad8.slice(0, 1)),
        theirsOne: llamaSource([one], [p1]),
        ours8: stepperSource(runner, p8, p8.map((_, i) => i), ad8),
        theirs8: llamaSource(ctx8, p8),
      }, n - 1, settle)).tps, ctx.log);
    } finally {
      for (const c of [base, one, ...ctx8]) await c.dispose();
    }
    const d = (xs: number[]) => { const s = spread(xs); return `${fmt(s.median)} tok/s [${fmt(s.min)}–${fmt(s.max)}]`; };
    const rows: Row[] = [
      { figure: 'gen-llamacpp', label: 'single-stream decode tokens/s, base only: adapterhost ÷ llama.cpp', model: g.name, target: null, unit: '×', value: spread(ratios(out.oursBase, out.theirsBase)), detail: `ours ${d(out.oursBase)}, llama.cpp ${d(out.theirsBase)}` },
      { figure: 'gen-llamacpp', label: `${STREAMS} concurrent streams over ${STREAMS} adapters, throughput: adapterhost ÷ llama.cpp (a context per adapter)`, model: g.name, target: { op: '>=', value: 2 }, unit: '×', value: spread(ratios(out.ours8, out.theirs8)), detail: `ours ${d(out.ours8)}, llama.cpp ${d(out.theirs8)}` },
      { figure: 'gen-llamacpp', label: 'single stream with one adapter, decode tokens/s: adapterhost ÷ llama.cpp', model: g.name, target: null, unit: '×', value: spread(ratios(out.oursOne, out.theirsOne)), detail: `ours ${d(out.oursOne)}, llama.cpp ${d(out.theirsOne)}` },
    ];
    notes.push(
      `Timing: after a 32-token prompt (prefilled untimed), ${n - 1} greedy decode steps per side, all six sides in lockstep (one step of each in turn, order flipped every step${settle ? `, ${settle} ms idle before each` : ''}); a side's value is its streams ÷ its median step time (decode tokens/s). ${g.threads} thread(s) on both sides (ORT intraOpNumThreads; llama.cpp context threads {ideal, min}), ${g.reps} repeats after ${g.warmup} warm-up. ${STREAMS} streams: ours one slotted model whose every step mixes the ${STREAMS} adapters in one ORT run; theirs ${STREAMS} contexts (one LoRA each) over the one loaded model, whose next tokens node-llama-cpp evaluates concurrently.`,
      'llama.cpp setup: model and adapters written by bench/gen/gguf.ts from the same safetensors (q/k rows permuted to llama.cpp\'s interleaved RoPE, as convert_hf_to_gguf.py does; lora_B of q/k likewise), F32 weights, F32 KV cache (experimentalKvCacheKeyType/ValueType), flash attention off, getLlama({ gpu: false, build: "never" }): the prebuilt linux-x64 CPU binary from npm.',
    );
    const m = missNote(rows[1]!, 'llama.cpp runs the 8 contexts concurrently, each a batch of one; ours runs one 8-row step. On a CPU with few cores both are compute-bound at this size, so batching gains less than on a GPU, and llama.cpp\'s kernels are faster per token (first row).');
    if (m) notes.push(m);
    return { title: 'Generation: against llama.cpp (node-llama-cpp)', rows, notes, data: { ...out, parity } };
  } finally {
    await runner.close();
    await peer.close();
  }
};
