import type { ModelManifest } from '../model/manifest.js';
import type { BatchInput } from './batch.js';
import { buildAdapterIndex, buildLoraBanks } from './lora-banks.js';

/** A feed before it becomes an ort.Tensor (kept ORT-free so it can be unit-tested). */
export interface RawFeed { type: 'int64' | 'float32'; data: BigInt64Array | Float32Array; dims: number[] }

/**
 * Builds the graph inputs for one batch: token tensors, the LoRA banks ({@link buildLoraBanks})
 * and, for every head slot, a bank of the batch's heads padded to its largest label count.
 * `banks: false` leaves out the LoRA banks and adapter_index (the caller brings them, see LoraBankCache).
 */
export function buildFeeds(manifest: ModelManifest, b: BatchInput, opts: { banks?: boolean } = {}): Record<string, RawFeed> {
  const { batch, seqLen } = b;
  const ids = new BigInt64Array(batch * seqLen); // [batch, seq]
  const mask = new BigInt64Array(batch * seqLen); // [batch, seq]
  for (let r = 0; r < batch; r++) {
    const len = b.lengths[r]!;
    for (let t = 0; t < seqLen; t++) {
      ids[r * seqLen + t] = BigInt(b.inputIds[r * seqLen + t]!);
      if (t < len) mask[r * seqLen + t] = 1n;
    }
  }
  const feeds: Record<string, RawFeed> = {
    [manifest.inputs.inputIds]: { type: 'int64', data: ids, dims: [batch, seqLen] },
    [manifest.inputs.attentionMask]: { type: 'int64', data: mask, dims: [batch, seqLen] },
  };
  if (manifest.inputs.tokenTypeIds) feeds[manifest.inputs.tokenTypeIds] = { type: 'int64', data: new BigInt64Array(batch * seqLen), dims: [batch, seqLen] };

  let k = buildAdapterIndex(b.adapters.length, b.rowAdapter).k;
  if (opts.banks !== false) {
    const built = buildLoraBanks(manifest.loraSlots, manifest.inputs.adapterIndex, b.adapters, b.rowAdapter);
    Object.assign(feeds, built.feeds);
    k = built.k;
  }
  let L = 1;
  for (const a of b.adapters) for (const h of a.heads) if (h && h.labels > L) L = h.labels;
  manifest.heads.forEach((head, hi) => {
    const W = new Float32Array(k * head.dIn * L); // [k, d_in, L]
    const C = new Float32Array(k * L); // [k, L]
    b.adapters.forEach((ad, j) => {
      const h = ad.heads[hi];
      if (!h) return;
      if (h.labels === L) W.set(h.weight, j * head.dIn * L);
      else for (let i = 0; i < head.dIn; i++) W.set(h.weight.subarray(i * h.labels, (i + 1) * h.labels), (j * head.dIn + i) * L);
      C.set(h.bias, j * L);
    });
    feeds[head.inputWeight] = { type: 'float32', data: W, dims: [k, head.dIn, L] };
    feeds[head.inputBias] = { type: 'float32', data: C, dims: [k, L] };
  });
  return feeds;
}

/** The largest label count in the batch (the width of the logits output). */
export function batchLabels(b: BatchInput): number {
  let L = 1;
  for (const a of b.adapters) for (const h of a.heads) if (h && h.labels > L) L = h.labels;
  return L;
}
