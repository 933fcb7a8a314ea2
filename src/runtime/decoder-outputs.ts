import type ort from 'onnxruntime-node';
import type { GenerationSpec } from '../model/manifest.js';
import type { StepRow, StepShape } from './decoder-feeds.js';

/** Each row's logits at its last position: `[batch, fresh, vocab]` → one `[vocab]` copy per row (rows are left-padded, so the last position is real). */
export function lastLogits(all: Float32Array, shape: StepShape, vocab: number): Float32Array[] {
  return Array.from({ length: shape.batch }, (_, i) => all.slice(((i + 1) * shape.fresh - 1) * vocab, (i + 1) * shape.fresh * vocab));
}

/** Appends each row's new keys/values from a step's host `present.*` outputs to its cache, then commits them. */
export function appendPresents(g: GenerationSpec, res: ort.InferenceSession.OnnxValueMapType, rows: readonly StepRow[], shape: StepShape): void {
  const total = shape.past + shape.fresh;
  for (let l = 0; l < g.layers; l++) {
    const key = res[g.presentKeys[l]!]!.data as Float32Array; // [batch, kv_heads, total, head_dim]
    const value = res[g.presentValues[l]!]!.data as Float32Array;
    rows.forEach((r, i) => r.kv.append(l, { key, value }, i, total, total - r.tokens.length, r.tokens.length));
  }
  rows.forEach((r) => r.kv.commit(r.tokens.length));
}
