/**
 * The graph inputs of one batch, element by element (src/runtime/feeds.ts, lora-banks.ts): token
 * tensors and mask, the LoRA banks padded to the batch's largest rank, heads padded to its
 * largest label count, `adapter_index` with the zero entry for base rows. The numbers these
 * feeds produce through the real model are checked in test/engine.test.ts and
 * test/adapter-forms.test.ts; here every position is checked against a direct definition.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HeadWeights, SlotWeights } from '../src/adapter/lora-weights.js';
import type { ModelManifest } from '../src/model/manifest.js';
import type { AdapterPayload, BatchInput } from '../src/runtime/batch.js';
import { batchLabels, buildFeeds, type RawFeed } from '../src/runtime/feeds.js';
import { buildAdapterIndex } from '../src/runtime/lora-banks.js';

const D_IN = [3, 2];
const D_OUT = [2, 4];
const HEAD_IN = 3;

function manifest(tokenTypeIds: string | null = 'token_type_ids'): ModelManifest {
  return {
    loraSlots: D_IN.map((dIn, i) => ({ module: `m${i}`, dIn, dOut: D_OUT[i]!, inputA: `A${i}`, inputB: `B${i}` })),
    heads: [{ module: 'classifier', dIn: HEAD_IN, inputWeight: 'W', inputBias: 'C', output: 'logits' }],
    inputs: { inputIds: 'input_ids', attentionMask: 'attention_mask', tokenTypeIds, adapterIndex: 'adapter_index' },
  } as unknown as ModelManifest;
}

/** Values that say where they came from: base + position. */
const seq = (n: number, base: number) => Float32Array.from({ length: n }, (_, i) => base + i);
const slot = (si: number, rank: number, base: number): SlotWeights => ({ rank, a: seq(D_IN[si]! * rank, base), b: seq(rank * D_OUT[si]!, base + 50) });
const head = (labels: number, base: number): HeadWeights => ({ labels, weight: seq(HEAD_IN * labels, base), bias: seq(labels, base + 90) });

function batch(adapters: AdapterPayload[], rowAdapter: number[], lengths: number[], seqLen: number): BatchInput {
  const inputIds = new Int32Array(rowAdapter.length * seqLen);
  for (let r = 0; r < rowAdapter.length; r++) for (let t = 0; t < seqLen; t++) inputIds[r * seqLen + t] = t < lengths[r]! ? 1000 * (r + 1) + t : 0;
  return { batch: rowAdapter.length, seqLen, inputIds, lengths: Int32Array.from(lengths), adapters, rowAdapter: Int32Array.from(rowAdapter) };
}

const at = (f: RawFeed, ...idx: number[]) => {
  let o = 0;
  for (let d = 0; d < idx.length; d++) o = o * f.dims[d]! + idx[d]!;
  return f.data[o]!;
};

test('token feeds: ids as int64, mask 1 below each length, token types zero; dims [batch, seq]', () => {
  const b = batch([], [-1, -1], [3, 1], 4);
  const f = buildFeeds(manifest(), b);
  assert.deepEqual(f.input_ids!.dims, [2, 4]);
  assert.equal(f.input_ids!.type, 'int64');
  assert.deepEqual([...f.input_ids!.data], [1000n, 1001n, 1002n, 0n, 2000n, 0n, 0n, 0n]);
  assert.deepEqual([...f.attention_mask!.data], [1n, 1n, 1n, 0n, 1n, 0n, 0n, 0n]);
  assert.deepEqual(f.attention_mask!.dims, [2, 4]);
  assert.deepEqual([...f.token_type_ids!.data], Array(8).fill(0n));
  assert.deepEqual(f.token_type_ids!.dims, [2, 4]);
  assert.equal(buildFeeds(manifest(null), b).token_type_ids, undefined, 'no token_type_ids input when the model has none');
  assert.deepEqual(Object.keys(buildFeeds(manifest(null), b)).sort(), ['A0', 'A1', 'B0', 'B1', 'C', 'W', 'adapter_index', 'attention_mask', 'input_ids']);
});

for (const order of ['small rank first', 'large rank first'] as const) test(`LoRA banks (${order}): padded to the largest rank with exact zeros; a skipped slot and the base entry are zeros`, () => {
  // Adapter 0: rank 2 on slot 0 only. Adapter 1: rank 3 on both slots. Rows: 0, base, 1, 0.
  const small: AdapterPayload = { slots: [slot(0, 2, 1), null], heads: [null] };
  const large: AdapterPayload = { slots: [slot(0, 3, 200), slot(1, 3, 300)], heads: [null] };
  const [a0, a1] = order === 'small rank first' ? [small, large] : [large, small];
  const f = buildFeeds(manifest(), batch([a0, a1], [0, -1, 1, 0], [1, 1, 1, 1], 1));
  const R = 3;
  const k = 3; // two adapters and the zero entry
  assert.deepEqual([...f.adapter_index!.data], [0n, 2n, 1n, 0n]);
  assert.deepEqual(f.adapter_index!.dims, [4]);
  for (const si of [0, 1]) {
    const A = f[`A${si}`]!;
    const B = f[`B${si}`]!;
    assert.deepEqual(A.dims, [k, D_IN[si], R]);
    assert.deepEqual(B.dims, [k, R, D_OUT[si]]);
    [a0, a1].forEach((ad, j) => {
      const w = ad.slots[si];
      for (let i = 0; i < D_IN[si]!; i++) {
        for (let r = 0; r < R; r++) assert.equal(at(A, j, i, r), w && r < w.rank ? w.a[i * w.rank + r]! : 0, `A${si}[${j},${i},${r}]`);
      }
      for (let r = 0; r < R; r++) {
        for (let o = 0; o < D_OUT[si]!; o++) assert.equal(at(B, j, r, o), w && r < w.rank ? w.b[r * D_OUT[si]! + o]! : 0, `B${si}[${j},${r},${o}]`);
      }
    });
    const per = D_IN[si]! * R;
    assert.ok((A.data as Float32Array).subarray(2 * per).every((v) => Object.is(v, 0)), 'the base entry of A is +0');
    assert.ok((B.data as Float32Array).subarray(2 * R * D_OUT[si]!).every((v) => Object.is(v, 0)), 'the base entry of B is +0');
  }
});

test('no base row: no zero entry; only base rows: one zero entry of rank 1', () => {
  const a: AdapterPayload = { slots: [slot(0, 2, 1), slot(1, 2, 5)], heads: [null] };
  const f = buildFeeds(manifest(), batch([a], [0, 0], [1, 1], 1));
  assert.deepEqual(f.A0!.dims, [1, 3, 2]);
  assert.deepEqual([...f.adapter_index!.data], [0n, 0n]);
  assert.deepEqual([...f.A0!.data], [...a.slots[0]!.a]);
  assert.deepEqual([...f.B1!.data], [...a.slots[1]!.b]);
  const g = buildFeeds(manifest(), batch([], [-1], [1], 1));
  assert.deepEqual(g.A0!.dims, [1, 3, 1]);
  assert.deepEqual(g.B1!.dims, [1, 1, 4]);
  assert.deepEqual([...g.adapter_index!.data], [0n]);
  assert.ok([g.A0!, g.B0!, g.A1!, g.B1!, g.W!, g.C!].every((x) => (x.data as Float32Array).every((v) => v === 0)));
});

test('buildAdapterIndex: -1 rows point past the adapters; the zero entry only when some row needs it', () => {
  assert.deepEqual(buildAdapterIndex(2, [1, -1, 0]), { index: { type: 'int64', data: BigInt64Array.of(1n, 2n, 0n), dims: [3] }, k: 3, needZero: true });
  assert.deepEqual(buildAdapterIndex(2, [1, 0]), { index: { type: 'int64', data: BigInt64Array.of(1n, 0n), dims: [2] }, k: 2, needZero: false });
  assert.deepEqual(buildAdapterIndex(0, [-1]), { index: { type: 'int64', data: BigInt64Array.of(0n), dims: [1] }, k: 1, needZero: true });
});

for (const order of ['fewer labels first', 'more labels first'] as const) test(`heads (${order}): padded to the largest label count (zeros beyond an adapter's labels); a head-less adapter gets zeros`, () => {
  const few: AdapterPayload = { slots: [null, null], heads: [head(2, 10)] };
  const none: AdapterPayload = { slots: [null, null], heads: [null] };
  const many: AdapterPayload = { slots: [null, null], heads: [head(4, 20)] };
  const [h2, h4] = order === 'fewer labels first' ? [few, many] : [many, few];
  const b = batch([h2, none, h4], [0, 1, 2, -1], [1, 1, 1, 1], 1);
  const f = buildFeeds(manifest(), b);
  const L = 4;
  assert.equal(batchLabels(b), L);
  assert.deepEqual(f.W!.dims, [4, HEAD_IN, L]);
  assert.deepEqual(f.C!.dims, [4, L]);
  [h2, none, h4].forEach((ad, j) => {
    const h = ad.heads[0];
    for (let i = 0; i < HEAD_IN; i++) {
      for (let l = 0; l < L; l++) assert.equal(at(f.W!, j, i, l), h && l < h.labels ? h.weight[i * h.labels + l]! : 0, `W[${j},${i},${l}]`);
    }
    for (let l = 0; l < L; l++) assert.equal(at(f.C!, j, l), h && l < h.labels ? h.bias[l]! : 0, `C[${j},${l}]`);
  });
  for (let i = 0; i < HEAD_IN * L; i++) assert.equal(at(f.W!, 3, Math.floor(i / L), i % L), 0, 'base entry');
  assert.equal(batchLabels(batch([none], [0], [1], 1)), 1, 'at least one label column');
  assert.equal(batchLabels(batch([few, few], [0, 1], [1, 1], 1)), 2);
});

test('banks: false leaves out the LoRA banks and adapter_index (the caller brings them); heads still get an entry per bank row', () => {
  const a: AdapterPayload = { slots: [slot(0, 2, 1), null], heads: [head(2, 10)] };
  const b = batch([a], [0, -1], [2, 1], 2);
  const f = buildFeeds(manifest(), b, { banks: false });
  assert.deepEqual(Object.keys(f).sort(), ['C', 'W', 'attention_mask', 'input_ids', 'token_type_ids']);
  assert.deepEqual(f.W!.dims, [2, HEAD_IN, 2], 'the adapter and the zero entry');
  const full = buildFeeds(manifest(), b);
  assert.deepEqual([...f.W!.data], [...full.W!.data]);
  assert.deepEqual([...f.input_ids!.data], [...full.input_ids!.data]);
});
