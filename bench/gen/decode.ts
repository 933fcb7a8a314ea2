/**
 * In-thread decoding for the generation figures that time single engine runs: a batch of streams
 * is prefilled in one step (untimed), then decodes `n` tokens one step at a time (timed), greedy.
 * Works over the slotted model's DecoderRunner and over the plain export (PlainDecoder).
 */
import ort from 'onnxruntime-node';
import { argmax } from '../../src/generation/greedy.js';
import { SequenceKv } from '../../src/generation/kv-cache.js';
import type { ModelManifest } from '../../src/model/manifest.js';
import type { AdapterPayload } from '../../src/runtime/batch.js';
import { buildDecoderFeeds, type StepRow } from '../../src/runtime/decoder-feeds.js';
import { appendPresents, lastLogits } from '../../src/runtime/decoder-outputs.js';

/** What both decoders offer: one step over rows, each row's last logits back. */
export interface Stepper {
  readonly manifest: ModelManifest;
  step(rows: readonly StepRow[], adapters: readonly AdapterPayload[]): Promise<{ logits: Float32Array[]; runMs?: number; feedMs?: number }>;
}

export interface DecodeResult {
  /** Per stream: the generated tokens (the first comes from the prefill). */
  tokens: number[][];
  prefillMs: number;
  /** Time of the `n - 1` decode steps. */
  decodeMs: number;
  /** Decode tokens per second over all streams. */
  tokensPerSecond: number;
  /** Per stream, ms from the start of decoding to each token after the first. */
  at: number[];
}

/** Prefills `prompts` together, then greedy-decodes until each stream has `n` tokens; `rowAdapter[i]` indexes `adapters` (-1: none). */
export async function decode(d: Stepper, prompts: readonly number[][], rowAdapter: readonly number[], adapters: readonly AdapterPayload[], n: number): Promise<DecodeResult> {
  const g = d.manifest.generation!;
  const kvs = prompts.map(() => new SequenceKv(g));
  const tokens = prompts.map(() => [] as number[]);
  const t0 = performance.now();
  let { logits } = await d.step(prompts.map((p, i) => ({ kv: kvs[i]!, tokens: p, adapter: rowAdapter[i]! })), adapters);
  logits.forEach((l, i) => tokens[i]!.push(argmax(l)));
  const t1 = performance.now();
  const at: number[] = [];
  for (let s = 1; s < n; s++) {
    ({ logits } = await d.step(prompts.map((_, i) => ({ kv: kvs[i]!, tokens: [tokens[i]!.at(-1)!], adapter: rowAdapter[i]! })), adapters));
    logits.forEach((l, i) => tokens[i]!.push(argmax(l)));
    at.push(performance.now() - t1);
  }
  const t2 = performance.now();
  for (const kv of kvs) kv.clear();
  const decodeMs = t2 - t1;
  return { tokens, prefillMs: t1 - t0, decodeMs, tokensPerSecond: (prompts.length * (n - 1)) / (decodeMs / 1000), at };
}

/**
 * The plain optimum export (no LoRA slots) run the way DecoderRunner runs the slotted one: the
 * same feeds without the adapter inputs, the same KV-cache handling.
 */
export class PlainDecoder implements Stepper {
  private constructor(private readonly session: ort.InferenceSession, readonly manifest: ModelManifest) {}

  static async create(modelPath: string, slotted: ModelManifest, threads: number, executionProvider = 'cpu'): Promise<PlainDecoder> {
    const session = await ort.InferenceSession.create(modelPath, { executionProviders: [executionProvider], intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
    return new PlainDecoder(session, { ...slotted, loraSlots: [] });
  }

  async step(rows: readonly StepRow[]): Promise<{ logits: Float32Array[]; runMs: number; feedMs: number }> {
    const g = this.manifest.generation!;
    const t0 = performance.now();
    const { feeds: raw, shape } = buildDecoderFeeds(this.manifest, rows, []);
    const feeds: Record<string, ort.Tensor> = {};
    const inputs = new Set(this.session.inputNames);
    for (const [name, f] of Object.entries(raw)) if (inputs.has(name)) feeds[name] = new ort.Tensor(f.type, f.data, f.dims);
    const t1 = performance.now();
    const res = await this.session.run(feeds);
    const runMs = performance.now() - t1;
    appendPresents(g, res, rows, shape);
    const logits = lastLogits(res[g.logits]!.data as Float32Array, shape, g.vocabSize);
    for (const t of Object.values(res)) t.dispose?.();
    return { logits, runMs, feedMs: t1 - t0 };
  }

  async close(): Promise<void> { await this.session.release(); }
}

/** Something that decodes a fixed set of streams one step at a time (ours or a peer). */
export interface StepSource {
  /** Streams advanced by one step. */
  rows: number;
  /** Prefills the prompts (untimed). */
  start(): Promise<void>;
  /** One decode step: every stream gets one more token. */
  step(): Promise<void>;
  /** Frees the streams; returns each stream's tokens. */
  end(): Promise<number[][]>;
  /** Per decode step, where the engine reports them: ms building feeds, ms in the ORT run. */
  feedMs?: number[];
  runMs?: number[];
}

/** Streams of a Stepper (DecoderRunner or PlainDecoder), greedy. */
export function stepperSource(d: Stepper, prompts: readonly number[][], rowAdapter: readonly number[], adapters: readonly AdapterPayload[]): StepSource {
  const g = d.manifest.generation!;
  const kvs = prompts.map(() => new SequenceKv(g));
  const tokens = prompts.map(() => [] as number[]);
  const feedMs: number[] = [], runMs: number[] = [];
  const run = async (feed: (i: number) => readonly number[], record: boolean) => {
    const r = await d.step(prompts.map((_, i) => ({ kv: kvs[i]!, tokens: feed(i), adapter: rowAdapter[i]! })), adapters);
    r.logits.forEach((l, i) => tokens[i]!.push(argmax(l)));
    if (record && r.feedMs !== undefined && r.runMs !== undefined) { feedMs.push(r.feedMs); runMs.push(r.runMs); }
  };
  return {
    rows: prompts.length, feedMs, runMs,
    start: () => run((i) => prompts[i]!, false),
    step: () => run((i) => [tokens[i]!.at(-1)!], true),
    end: async () => { for (const kv of kvs) kv.clear(); return tokens; },
  };
}

/**
 * Runs the sources in lockstep: all start (untimed), then `steps` rounds in which every source
 * takes one step, the order reversed each round, with `settleMs` idle before each timed step.
 * A side's value is rows ÷ its median step time (tokens/s): load that comes and goes on the
 * machine hits both sides of a ratio within moments, and a median ignores the steps it hit hard.
 */
export async function lockstep<K extends string>(sources: Record<K, StepSource>, steps: number, settleMs = 0): Promise<{ tps: Record<K, number>; tokens: Record<K, number[][]>; sources: Record<K, StepSource> }> {
  const keys = Object.keys(sources) as K[];
  const times = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (const k of keys) await sources[k].start();
  for (let s = 0; s < steps; s++) {
    for (const k of s % 2 ? [...keys].reverse() : keys) {
      if (settleMs) await new Promise((r) => setTimeout(r, settleMs));
      const t0 = performance.now();
      await sources[k].step();
      times[k].push(performance.now() - t0);
    }
  }
  const tps = {} as Record<K, number>;
  const tokens = {} as Record<K, number[][]>;
  for (const k of keys) {
    const sorted = [...times[k]].sort((a, b) => a - b);
    tps[k] = sources[k].rows / (sorted[sorted.length >> 1]! / 1000);
    tokens[k] = await sources[k].end();
  }
  return { tps, tokens, sources };
}
