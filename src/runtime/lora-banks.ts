import type { LoraSlot } from '../model/manifest.js';
import type { AdapterPayload } from './batch.js';
import type { RawFeed } from './feeds.js';

/**
 * The BGMV feeds of one run: for every LoRA slot a bank of the run's distinct adapters, padded
 * to their largest rank (zero padding is exact), and `adapter_index [batch]` picking each row's
 * entry. Rows without an adapter (-1) point at an all-zero entry.
 */
export function buildLoraBanks(
  slots: readonly LoraSlot[], adapterIndexInput: string, adapters: readonly AdapterPayload[], rowAdapter: ArrayLike<number>,
): { feeds: Record<string, RawFeed>; k: number } {
  const { index, k } = buildAdapterIndex(adapters.length, rowAdapter);
  const feeds: Record<string, RawFeed> = { [adapterIndexInput]: index };
  let R = 1;
  for (const a of adapters) for (const s of a.slots) if (s && s.rank > R) R = s.rank;
  slots.forEach((slot, si) => {
    const A = new Float32Array(k * slot.dIn * R); // [k, d_in, R]
    const B = new Float32Array(k * R * slot.dOut); // [k, R, d_out]
    adapters.forEach((ad, j) => {
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
  return { feeds, k };
}

/**
 * `adapter_index [batch]`: each row's entry in the bank; rows without an adapter (-1) point at
 * the all-zero entry after the adapters', which the bank has only when some row needs it (`k`).
 */
export function buildAdapterIndex(adapterCount: number, rowAdapter: ArrayLike<number>): { index: RawFeed; k: number; needZero: boolean } {
  const batch = rowAdapter.length;
  let needZero = false;
  for (let r = 0; r < batch; r++) if (rowAdapter[r]! < 0) needZero = true;
  const index = new BigInt64Array(batch); // [batch]
  for (let r = 0; r < batch; r++) index[r] = BigInt(rowAdapter[r]! < 0 ? adapterCount : rowAdapter[r]!);
  return { index: { type: 'int64', data: index, dims: [batch] }, k: adapterCount + (needZero ? 1 : 0), needZero };
}
