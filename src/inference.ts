import { AppError } from './errors.js';
import type { AdapterLease } from './adapter/cache.js';
import type { AdapterRegistry } from './adapter/registry.js';
import type { ModelManifest } from './model/manifest.js';
import type { TokenIds } from './model/tokenizer.js';
import type { Batcher } from './scheduler/batcher.js';

/** A label with its probability. */
export interface LabelScore { label: string; score: number }

export interface InferenceLimits {
  /** Most inputs in one request. */
  maxInputs: number;
  /** Most tokens per input (with special tokens); never above the model's maxLength. */
  maxTokens: number;
  /** Most characters per input, checked before tokenizing. */
  maxInputChars: number;
}

/** Tokenizes a request's inputs (an AsyncTokenizer: long inputs off the HTTP thread). */
export interface InputEncoder {
  encodeAll(texts: string[], maxTokens: number, truncate: boolean): Promise<TokenIds[]>;
}

export interface InferenceDeps {
  manifest: ModelManifest;
  encoder: InputEncoder;
  batcher: Batcher;
  registry: AdapterRegistry;
  limits: InferenceLimits;
}

export interface EmbedResult { embeddings: Float32Array[]; promptTokens: number }

/** Text in, labels or embeddings out: tokenize, lease the adapter, batch, release. */
export class InferenceService {
  constructor(private readonly d: InferenceDeps) {}

  private async tokenize(inputs: string[], truncate: boolean): Promise<TokenIds[]> {
    const { maxInputs, maxTokens, maxInputChars } = this.d.limits;
    if (inputs.length === 0) throw new AppError('BAD_REQUEST', '"inputs" must hold at least one text');
    if (inputs.length > maxInputs) throw new AppError('TOO_MANY_INPUTS', `${inputs.length} inputs in one request; the limit is ${maxInputs}`);
    inputs.forEach((t, i) => {
      if (t.length > maxInputChars) throw new AppError('INPUT_TOO_LONG', `input ${i} has ${t.length} characters; the limit is ${maxInputChars} characters per input`);
    });
    return this.d.encoder.encodeAll(inputs, Math.min(maxTokens, this.d.manifest.maxLength), truncate);
  }

  private async run(adapterId: string | null, ids: number[][]) {
    let lease: AdapterLease | null = null;
    if (adapterId !== null) lease = await this.d.registry.acquire(adapterId);
    try {
      const adapter = lease?.weights ?? null;
      return { adapter, rows: await this.d.batcher.submit(ids.map((x) => ({ ids: x, adapter }))) };
    } finally {
      lease?.release();
    }
  }

  /** Classifies each input with the adapter's head; labels sorted by score, highest first. */
  async predict(adapterId: string, inputs: string[], truncate = false): Promise<LabelScore[][]> {
    const info = this.d.registry.get(adapterId);
    if (!info.hasHead) throw new AppError('NO_CLASSIFICATION_HEAD', `adapter "${adapterId}" has no classification head (modules_to_save); use /v1/embeddings`);
    const ids = await this.tokenize(inputs, truncate);
    const { adapter, rows } = await this.run(adapterId, ids);
    const labels = adapter?.labels ?? null;
    return rows.map((r) => {
      if (!r.logits) throw new AppError('NO_CLASSIFICATION_HEAD', `adapter "${adapterId}" has no classification head`);
      return softmax(r.logits)
        .map((score, i) => ({ label: labels?.[i] ?? `LABEL_${i}`, score }))
        .sort((a, b) => b.score - a.score);
    });
  }

  /** Mean-pooled, L2-normalised embeddings with the adapter (or the base when `model` is the base's name). */
  async embed(model: string, inputs: string[], truncate = false): Promise<EmbedResult> {
    if (!this.d.manifest.embeddingOutput) throw new AppError('BAD_REQUEST', `base model ${this.d.manifest.baseModel} has no embedding output`);
    const isBase = model === this.d.manifest.baseModel || this.d.manifest.aliases.includes(model);
    if (!isBase && !this.d.registry.has(model)) {
      throw new AppError('MODEL_NOT_FOUND', `model "${model.slice(0, 80)}" is neither the base model "${this.d.manifest.baseModel}" nor an adapter (GET /v1/models lists them)`);
    }
    const ids = await this.tokenize(inputs, truncate);
    const { rows } = await this.run(isBase ? null : model, ids);
    return { embeddings: rows.map((r) => normalize(r.embedding!)), promptTokens: ids.reduce((s, x) => s + x.length, 0) };
  }
}

/** Numerically stable softmax. */
export function softmax(logits: Float32Array): number[] {
  let m = -Infinity;
  for (const v of logits) if (v > m) m = v;
  const e = Array.from(logits, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function normalize(v: Float32Array): Float32Array {
  let n = 0;
  for (const x of v) n += x * x;
  n = Math.sqrt(n) || 1;
  return v.map((x) => x / n);
}
