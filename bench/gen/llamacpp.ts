/**
 * The llama.cpp peer through node-llama-cpp (prebuilt CPU binaries from npm, no GPU, no build):
 * one model, and one context per adapter set — llama.cpp applies a context's LoRA adapters to every
 * sequence of that context, so serving 8 adapters means 8 contexts whose rows never share a step.
 * Greedy decoding (temperature 0), F32 KV cache (as ours), flash attention off.
 */
import { getLlama, type Llama, type LlamaContext, type LlamaModel, type Token } from 'node-llama-cpp';
import type { StepSource } from './decode.js';

export interface LlamaPeer {
  llama: Llama;
  model: LlamaModel;
  threads: number;
  /** A context with `lora` (a GGUF LoRA path) or none; `sequences` streams of at most `contextSize` tokens. */
  context(lora: string | null, sequences?: number, contextSize?: number): Promise<LlamaContext>;
  close(): Promise<void>;
}

export async function openLlamaPeer(modelPath: string, threads: number): Promise<LlamaPeer> {
  const llama = await getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: 'error' as never, progressLogs: false, skipDownload: true });
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  return {
    llama, model, threads,
    context: (lora, sequences = 1, contextSize = 512) => model.createContext({
      sequences, contextSize, batchSize: 512, threads: { ideal: threads, min: threads }, flashAttention: false,
      experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
      ...(lora ? { lora: { adapters: [{ filePath: lora, scale: 1 }] } } : {}),
    }),
    close: async () => { await model.dispose(); await llama.dispose(); },
  };
}

/** One sequence's greedy generation: `n` tokens after `prompt`, with the time of each token (ms since the start). */
export async function llamaGenerate(ctx: LlamaContext, prompt: readonly number[], n: number): Promise<{ tokens: number[]; at: number[] }> {
  const seq = ctx.getSequence();
  try {
    const tokens: number[] = [];
    const at: number[] = [];
    const t0 = performance.now();
    for await (const t of seq.evaluate(prompt as Token[], { temperature: 0 })) {
      tokens.push(t as number);
      at.push(performance.now() - t0);
      if (tokens.length >= n) break;
    }
    return { tokens, at };
  } finally {
    seq.dispose();
  }
}

/** Greedy streams on llama.cpp contexts (stream i on `contexts[i]`), one token per stream per step. */
export function llamaSource(contexts: readonly LlamaContext[], prompts: readonly number[][]): StepSource {
  const seqs = contexts.map((c) => c.getSequence());
  const gens = seqs.map((s, i) => s.evaluate(prompts[i] as Token[], { temperature: 0 }));
  const tokens = prompts.map(() => [] as number[]);
  const next = () => Promise.all(gens.map(async (g, i) => {
    const r = await g.next();
    if (r.done) throw new Error('llama.cpp stream ended early');
    tokens[i]!.push(r.value as number);
  })).then(() => undefined);
  return {
    rows: prompts.length,
    start: next,
    step: next,
    end: async () => { await Promise.all(gens.map((g) => g.return())); for (const s of seqs) s.dispose(); return tokens; },
  };
}
