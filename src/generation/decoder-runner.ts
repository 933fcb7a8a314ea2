import ort from 'onnxruntime-node';
import path from 'node:path';
import { AppError } from '../errors.js';
import type { ModelManifest } from '../model/manifest.js';
import type { AdapterPayload } from '../runtime/batch.js';
import { buildDecoderFeeds, type StepRow } from '../runtime/decoder-feeds.js';

/** What one decoder step returns. */
export interface StepOutput {
  /** Per row: the logits after its last new token, `[vocab]`. */
  logits: Float32Array[];
  runMs: number;
  feedMs: number;
}

export interface DecoderRunnerOptions {
  threads: number;
  executionProvider: string;
}

/**
 * Runs a prepared decoder one step at a time: every step is one ORT run over rows that may use
 * different adapters, have different cache lengths, and feed a prompt chunk or a single token.
 * The KV cache of each row is read from and appended to its {@link StepRow.kv}.
 * Runs on the thread that calls it (the serving path calls it inside the inference worker).
 */
export class DecoderRunner {
  private constructor(private readonly session: ort.InferenceSession, readonly manifest: ModelManifest) {}

  static async create(modelDir: string, manifest: ModelManifest, opts: DecoderRunnerOptions): Promise<DecoderRunner> {
    if (manifest.task !== 'text-generation' || !manifest.generation) {
      throw new AppError('INVALID_MODEL', `${manifest.baseModel} is not a text-generation model (task ${manifest.task})`);
    }
    const session = await ort.InferenceSession.create(path.resolve(modelDir, manifest.modelFile), {
      executionProviders: [opts.executionProvider],
      intraOpNumThreads: opts.threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
    return new DecoderRunner(session, manifest);
  }

  /** One run: feeds every row's new tokens, appends their keys/values to the row's cache, returns each row's last logits. */
  async step(rows: readonly StepRow[], adapters: readonly AdapterPayload[]): Promise<StepOutput> {
    const g = this.manifest.generation!;
    for (const r of rows) {
      if (r.tokens.length === 0) throw new AppError('INTERNAL', 'a step row must feed at least one token');
      if (r.kv.length + r.tokens.length > g.maxPositions) throw new AppError('INTERNAL', `a sequence would exceed ${g.maxPositions} positions`);
    }
    const t0 = performance.now();
    const { feeds: raw, shape } = buildDecoderFeeds(this.manifest, rows, adapters);
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, f] of Object.entries(raw)) feeds[name] = new ort.Tensor(f.type, f.data, f.dims);
    const t1 = performance.now();
    const res = await this.session.run(feeds);
    const runMs = performance.now() - t1;
    const total = shape.past + shape.fresh;
    for (let l = 0; l < g.layers; l++) {
      const key = res[g.presentKeys[l]!]!.data as Float32Array;
      const value = res[g.presentValues[l]!]!.data as Float32Array;
      rows.forEach((r, i) => r.kv.append(l, { key, value }, i, total, total - r.tokens.length, r.tokens.length));
    }
    rows.forEach((r) => r.kv.commit(r.tokens.length));
    const all = res[g.logits]!.data as Float32Array; // [batch, fresh, vocab]
    const V = g.vocabSize;
    const logits = rows.map((_, i) => all.slice(((i + 1) * shape.fresh - 1) * V, (i + 1) * shape.fresh * V));
    for (const t of Object.values(res)) t.dispose?.();
    return { logits, runMs, feedMs: t1 - t0 };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
