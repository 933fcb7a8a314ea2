/**
 * What the generation figures share: the synthetic decoder (made once), its adapter loader, the
 * thread count every engine gets, repeat counts, and the helpers that run sequences through the
 * real scheduler and worker engine.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdapterLoader } from '../../src/adapter/loader.js';
import { AdapterStore } from '../../src/adapter/store.js';
import type { AppError } from '../../src/errors.js';
import { DecoderWorkerEngine, type DecoderEngine, type DecoderStepResult } from '../../src/generation/decoder-engine.js';
import type { WorkerStepRow } from '../../src/generation/decoder-worker.js';
import { argmax } from '../../src/generation/greedy.js';
import { GenerationScheduler, type FinishReason, type SchedulerOptions } from '../../src/generation/scheduler.js';
import type { AdapterPayload } from '../../src/runtime/batch.js';
import type { BenchContext } from '../context.js';
import { mulberry32 } from '../workload.js';
import { ensureDecoder, type BenchDecoder, type DecoderSize } from './models.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export interface Gen {
  dec: BenchDecoder;
  loader: AdapterLoader;
  /** Intra-op threads of every engine (ours and the peers), fixed for the run. */
  threads: number;
  /** Execution provider of our engines (the peers run on the CPU). */
  executionProvider: string;
  /** Measured repeats of the generation figures (fewer than the encoder's in quick mode: each is seconds of decoding). */
  reps: number;
  warmup: number;
  quick: boolean;
  load(ids: string[]): Promise<AdapterPayload[]>;
  /** A short model name for the table. */
  name: string;
}

/** The decoder and loader, made on first use and shared by every generation figure of the run. */
export function gen(ctx: BenchContext): Promise<Gen> {
  let p = ctx.memo.get('gen') as Promise<Gen> | undefined;
  if (!p) {
    p = (async () => {
      const quick = ctx.s.mode === 'quick';
      const size: DecoderSize = quick ? 'smollm2-135m' : 'smollm2-360m';
      const dec = await ensureDecoder(path.join(ROOT, 'build', 'bench'), ROOT, size, ctx.log);
      const store = new AdapterStore({ dir: dec.adaptersDir });
      await store.init();
      const loader = new AdapterLoader(store, dec.manifest);
      const cache = new Map<string, Promise<AdapterPayload>>();
      return {
        dec, loader, quick,
        threads: ctx.s.threads ?? os.availableParallelism(),
        executionProvider: ctx.s.executionProvider,
        reps: ctx.s.genReps ?? (quick ? 3 : ctx.s.reps),
        warmup: 1,
        load: (ids) => Promise.all(ids.map((id) => { let a = cache.get(id); if (!a) cache.set(id, a = loader.load(id)); return a; })),
        name: size === 'smollm2-135m' ? 'synthetic SmolLM2-135M' : 'synthetic SmolLM2-360M',
      };
    })();
    ctx.memo.set('gen', p);
  }
  return p;
}

/** `count` prompts of `len` random token ids (10 and up: ids below are the specials). */
export function prompts(seed: number, count: number, len: number | [number, number], vocab: number): number[][] {
  const rand = mulberry32(seed);
  return Array.from({ length: count }, () => {
    const n = typeof len === 'number' ? len : len[0] + Math.floor(rand() * (len[1] - len[0] + 1));
    return Array.from({ length: n }, () => 10 + Math.floor(rand() * (vocab - 10)));
  });
}

/** A DecoderEngine that records what each step reports (KV bytes and tokens held). */
export class RecordingEngine implements DecoderEngine {
  readonly steps: Array<{ rows: number; decode: boolean; kvBytes: number; kvTokens: number; runMs: number; feedMs: number }> = [];
  constructor(private readonly inner: DecoderEngine) {}
  async step(rows: WorkerStepRow[], adapters: AdapterPayload[]): Promise<DecoderStepResult> {
    const r = await this.inner.step(rows, adapters);
    this.steps.push({ rows: rows.length, decode: rows.every((x) => x.tokens.length === 1), kvBytes: r.kvBytes, kvTokens: r.kvTokens, runMs: r.runMs, feedMs: r.feedMs });
    return r;
  }
  free(seqs: number[]): void { this.inner.free(seqs); }
  close(): Promise<void> { return this.inner.close(); }
}

export async function startDecoderEngine(g: Gen): Promise<DecoderWorkerEngine> {
  return DecoderWorkerEngine.start({ modelDir: g.dec.slottedDir, manifest: g.dec.manifest, threads: g.threads, executionProvider: g.executionProvider });
}

export function scheduler(g: Gen, engine: DecoderEngine, over: Partial<SchedulerOptions> = {}): GenerationScheduler {
  return new GenerationScheduler({
    engine, spec: g.dec.manifest.generation!, kvBudgetBytes: 2 ** 31, maxRunning: 16, maxWaiting: 10_000, prefillChunk: 512, ...over,
  });
}

/** One request of a generation workload. */
export interface GenRequest { at: number; prompt: number[]; adapter: number; maxTokens: number }

export interface SeqResult { submitted: number; first: number; done: number; tokens: number[]; reason: FinishReason; error?: AppError }

const greedy = { sample: (l: Float32Array) => argmax(l) };

/** Submits one greedy sequence; resolves when it ends, with its token times (performance.now()). */
export function submit(s: GenerationScheduler, prompt: readonly number[], adapter: AdapterPayload | null, adapterId: string | null, maxTokens: number, signal?: AbortSignal): { first: Promise<number>; done: Promise<SeqResult> } {
  const tokens: number[] = [];
  const submitted = performance.now();
  let first = 0;
  let firstResolve!: (t: number) => void;
  const firstP = new Promise<number>((r) => { firstResolve = r; });
  const done = new Promise<SeqResult>((resolve) => {
    s.submit({
      promptIds: prompt, adapter, adapterId, maxTokens, picker: greedy, ...(signal ? { signal } : {}),
      sink: {
        onToken: (t) => { if (tokens.length === 0) { first = performance.now(); firstResolve(first); } tokens.push(t); return false; },
        onFinish: (reason, error) => { if (!first) firstResolve(first = performance.now()); resolve({ submitted, first, done: performance.now(), tokens, reason, ...(error ? { error } : {}) }); },
      },
    });
  });
  return { first: firstP, done };
}

/** `warmup + reps` rounds of `measure` (each returns per-side tokens/s); per side the measured rounds' values. */
export async function rounds<K extends string>(g: Gen, id: string, measure: () => Promise<Record<K, number>>, log: (m: string) => void): Promise<Record<K, number[]>> {
  let out: Record<K, number[]> | null = null;
  for (let r = 0; r < g.warmup + g.reps; r++) {
    const v = await measure();
    log(`  ${id} round ${r - g.warmup}: ${Object.entries(v).map(([k, x]) => `${k} ${(x as number).toFixed(2)}`).join(', ')} tok/s`);
    if (r < g.warmup) continue;
    out ??= Object.fromEntries(Object.keys(v).map((k) => [k, [] as number[]])) as Record<K, number[]>;
    for (const k of Object.keys(v) as K[]) out[k].push(v[k]);
  }
  return out!;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
