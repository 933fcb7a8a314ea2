import type { ModelManifest } from '../model/manifest.js';
import type { BatchInput } from './batch.js';

/** A feed before it becomes an ort.Tensor (kept ORT-free so it can be unit-tested). */
export interface RawFeed { type: 'int64' | 'float32'; data: BigInt64Array | Float32Array; dims: number[] }

/**
 * Builds the graph inputs for one batch: token tensors plus, for every slot, a bank of the
 * batch's distinct adapters padded to the batch's largest rank (zero padding is exact), and
 * `adapter_index` picking each row's entry. Rows without an adapter point at an all-zero entry.
 */
export function buildFeeds(manifest: ModelManifest, b: BatchInput): Record<string, RawFeed> {
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

  const needZero = b.rowAdapter.some((x) => x < 0);
  const k = b.adapters.length + (needZero ? 1 : 0);
  const zeroIdx = b.adapters.length;
  const index = new BigInt64Array(batch); // [batch]
  for (let r = 0; r < batch; r++) index[r] = BigInt(b.rowAdapter[r]! < 0 ? zeroIdx : b.rowAdapter[r]!);
  feeds[manifest.inputs.adapterIndex] = { type: 'int64', data: index, dims: [batch] };

  let R = 1;
  let L = 1;
  for (const a of b.adapters) {
    for (const s of a.slots) if (s && s.rank > R) R = s.rank;
    for (const h of a.heads) if (h && h.labels > L) L = h.labels;
  }
  manifest.loraSlots.forEach((slot, si) => {
    const A = new Float32Array(k * slot.dIn * R); // [k, d_in, R]
    const B = new Float32Array(k * R * slot.dOut); // [k, R, d_out]
    b.adapters.forEach((ad, j) => {
      const w = ad.slots[si];
      if (!w) return;
      const r = w.rank;
      if (r === R) A.set(w.a, j * slot.dIn * R);
      else for (let i = 0; i < slot.dIn; i++) A.set(w.a.subarray(i * r, (i + 1) * r), (j * slot.dIn + i) * R);
      B.set(w.b, j * R * slot.dOut); // rows r..R-1 stay zero
    });
    feeds[slot.inputA] = { type: 'float32', data: A, dims: [k, slot.dIn, R] };
    feeds[slot.inputB] = { type: 'float32', data: B, dims: [k, R, slot.dOut] };
  });
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
