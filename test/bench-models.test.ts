import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Tokenizer } from '@huggingface/tokenizers';
import ort from 'onnxruntime-node';
import { mapAdapterToSlots } from '../src/adapter/lora-weights.js';
import { parsePeftConfig, scaleFor } from '../src/adapter/peft-config.js';
import { readSafetensors } from '../src/adapter/safetensors.js';
import type { ModelManifest } from '../src/model/manifest.js';
import { decodeModel, type NodeProto, type TensorProto } from '../src/model/onnx-graph.js';
import { prepareModel } from '../src/model/prepare.js';
import { TextTokenizer } from '../src/model/tokenizer.js';
import { writeMergedModel } from '../bench/merge.js';
import { writeRandomAdapter } from '../bench/random-adapters.js';
import { TINY_BERT, writeSyntheticBert } from '../bench/synthetic-bert.js';

const LABELS = 3;
const TEXTS = ['Free money, click here now!', 'are we still meeting tomorrow at 10?'];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** A float initializer's values (raw_data little-endian or float_data). */
function floatsOf(t: TensorProto): Float32Array {
  if (t.rawData && t.rawData.length > 0) return new Float32Array(Uint8Array.from(t.rawData).buffer);
  return Float32Array.from(t.floatData ?? []);
}

const int64 = (values: number[], dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), dims);
const f32 = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);

describe('bench models: synthetic BERT, prepare, random adapter, merge', () => {
  let tmp: string;
  let plainPath: string;
  let tokenizerPath: string;
  let slottedDir: string;
  let manifest: ModelManifest;
  let baseFeeds: Record<string, ort.Tensor>;
  let batch: number;
  const sessions: ort.InferenceSession[] = [];
  const session = async (file: string) => {
    const s = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
    sessions.push(s);
    return s;
  };

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'ah-bench-models-'));
    ({ modelPath: plainPath, tokenizerPath } = await writeSyntheticBert({ dir: path.join(tmp, 'plain'), ...TINY_BERT, numLabels: LABELS, seed: 7 }));
    slottedDir = path.join(tmp, 'slotted');
    manifest = await prepareModel({
      modelPath: plainPath, tokenizerPath, targets: ['query', 'value'], heads: ['classifier'], maxRank: 8,
      baseModel: 'synthetic-bert-tiny', task: 'sequence-classification', maxLength: TINY_BERT.maxPos, outDir: slottedDir,
    });
    // Two rows of different lengths: the shorter is padded, so the mask path is exercised.
    const tok = await TextTokenizer.load(tokenizerPath);
    const rows = TEXTS.map((t) => tok.encode(t, TINY_BERT.maxPos, false));
    const seq = Math.max(...rows.map((r) => r.length));
    batch = rows.length;
    const ids = rows.flatMap((r) => [...r, ...Array<number>(seq - r.length).fill(tok.padId)]);
    const mask = rows.flatMap((r) => [...r.map(() => 1), ...Array<number>(seq - r.length).fill(0)]);
    baseFeeds = { input_ids: int64(ids, [batch, seq]), attention_mask: int64(mask, [batch, seq]), token_type_ids: int64(ids.map(() => 0), [batch, seq]) };
  });
  after(async () => {
    await Promise.all(sessions.map((s) => s.release()));
    await rm(tmp, { recursive: true, force: true });
  });

  it('writes a torch-export-shaped graph, deterministically from the seed', async () => {
    const model = decodeModel(await readFile(plainPath));
    const names = new Set((model.graph!.node as NodeProto[]).map((n) => n.name));
    for (const n of ['/embeddings/LayerNorm/LayerNormalization', '/encoder/layer.1/attention/self/query/MatMul', '/encoder/layer.0/attention/output/dense/MatMul',
      '/encoder/layer.0/intermediate/dense/MatMul', '/encoder/layer.1/output/dense/MatMul', '/encoder/layer.1/output/LayerNorm/LayerNormalization', '/classifier/Gemm']) {
      assert.ok(names.has(n), `missing node ${n}`);
    }
    assert.equal(Number(model.irVersion), 8);
    assert.equal(Number(model.opsetImport[0]!.version), 17);
    const again = await writeSyntheticBert({ dir: path.join(tmp, 'again'), ...TINY_BERT, numLabels: LABELS, seed: 7 });
    assert.deepEqual(await readFile(again.modelPath), await readFile(plainPath));
    assert.equal(manifest.loraSlots.length, 2 * TINY_BERT.layers);
    assert.deepEqual(manifest.heads.map((h) => [h.module, h.dIn]), [['classifier', TINY_BERT.hidden]]);
  });

  it('writes a tokenizer.json that @huggingface/tokenizers and TextTokenizer load', async () => {
    const json = JSON.parse(await readFile(tokenizerPath, 'utf8')) as { model: { vocab: Record<string, number> } };
    assert.equal(Object.keys(json.model.vocab).length, TINY_BERT.vocab);
    const enc = new Tokenizer(json, {}).encode('Hello World');
    assert.equal(enc.tokens[0], '[CLS]');
    assert.equal(enc.tokens.at(-1), '[SEP]');
    assert.ok(!enc.tokens.includes('[UNK]'), `tokens: ${enc.tokens.join(' ')}`);
    const tok = await TextTokenizer.load(tokenizerPath);
    assert.equal(tok.padId, 0);
    assert.deepEqual(tok.encode('Hello World', 64, false), enc.ids);
  });

  it('slotted model with zero LoRA banks and the base head equals the plain model', async () => {
    const plainOut = await (await session(plainPath)).run(baseFeeds);
    assert.deepEqual(plainOut.logits!.dims, [batch, LABELS]);
    assert.deepEqual(plainOut.sentence_embedding!.dims, [batch, TINY_BERT.hidden]);

    const model = decodeModel(await readFile(plainPath));
    const inits = new Map((model.graph!.initializer as TensorProto[]).map((t) => [t.name, t]));
    const gemm = (model.graph!.node as NodeProto[]).find((n) => n.name === '/classifier/Gemm')!;
    const w = floatsOf(inits.get(gemm.input[1]!)!); // [L, hidden]
    const bias = floatsOf(inits.get(gemm.input[2]!)!); // [L]
    const H = TINY_BERT.hidden;
    const wt = new Float32Array(H * LABELS); // [hidden, L]
    for (let l = 0; l < LABELS; l++) for (let j = 0; j < H; j++) wt[j * LABELS + l] = w[l * H + j]!;

    const feeds: Record<string, ort.Tensor> = { ...baseFeeds, adapter_index: int64(Array<number>(batch).fill(0), [batch]) };
    for (const s of manifest.loraSlots) {
      feeds[s.inputA] = f32(new Float32Array(s.dIn), [1, s.dIn, 1]);
      feeds[s.inputB] = f32(new Float32Array(s.dOut), [1, 1, s.dOut]);
    }
    const head = manifest.heads[0]!;
    feeds[head.inputWeight] = f32(wt, [1, H, LABELS]);
    feeds[head.inputBias] = f32(bias, [1, LABELS]);
    const slottedOut = await (await session(path.join(slottedDir, 'model.onnx'))).run(feeds);
    assert.ok(maxAbsDiff(slottedOut.logits!.data as Float32Array, plainOut.logits!.data as Float32Array) < 1e-5);
    assert.ok(maxAbsDiff(slottedOut.sentence_embedding!.data as Float32Array, plainOut.sentence_embedding!.data as Float32Array) < 1e-5);
  });

  it('a merged model gives the same logits as the slotted model fed the adapter', async () => {
    const adapterDir = path.join(tmp, 'adapter');
    await writeRandomAdapter({ dir: adapterDir, manifest, rank: 4, alpha: 8, targets: ['query', 'value'], numLabels: LABELS, labels: ['ham', 'spam', 'other'], seed: 11 });
    const mergedPath = path.join(tmp, 'merged.onnx');
    await writeMergedModel({ plainModelPath: plainPath, adapterDir, outPath: mergedPath });

    const cfg = parsePeftConfig(await readFile(path.join(adapterDir, 'adapter_config.json')));
    assert.deepEqual(cfg.labels, ['ham', 'spam', 'other']);
    const file = await readFile(path.join(adapterDir, 'adapter_model.safetensors'));
    const { tensors } = readSafetensors(new Uint8Array(file.buffer, file.byteOffset, file.byteLength)); // a plain view, as the loader passes
    // The production loader accepts it (names, shapes, base model, labels all fit).
    const weights = mapAdapterToSlots('random', 'v1', manifest, cfg, tensors);
    assert.ok(weights.slots.every(Boolean));

    const r = 4;
    const feeds: Record<string, ort.Tensor> = { ...baseFeeds, adapter_index: int64(Array<number>(batch).fill(0), [batch]) };
    for (const s of manifest.loraSlots) {
      const A = tensors.get(`base_model.model.${s.module}.lora_A.weight`)!.data; // [r, d_in]
      const B = tensors.get(`base_model.model.${s.module}.lora_B.weight`)!.data; // [d_out, r]
      assert.ok(B.some((v) => v !== 0), 'lora_B must be nonzero');
      const scale = scaleFor(cfg, s.module);
      const a = new Float32Array(s.dIn * r); // [d_in, r]
      for (let k = 0; k < r; k++) for (let j = 0; j < s.dIn; j++) a[j * r + k] = A[k * s.dIn + j]!;
      const b = new Float32Array(r * s.dOut); // [r, d_out]
      for (let o = 0; o < s.dOut; o++) for (let k = 0; k < r; k++) b[k * s.dOut + o] = B[o * r + k]! * scale;
      feeds[s.inputA] = f32(a, [1, s.dIn, r]);
      feeds[s.inputB] = f32(b, [1, r, s.dOut]);
    }
    const head = manifest.heads[0]!;
    const H = TINY_BERT.hidden;
    const W = tensors.get('base_model.model.classifier.weight')!.data; // [L, hidden]
    const wt = new Float32Array(H * LABELS); // [hidden, L]
    for (let l = 0; l < LABELS; l++) for (let j = 0; j < H; j++) wt[j * LABELS + l] = W[l * H + j]!;
    feeds[head.inputWeight] = f32(wt, [1, H, LABELS]);
    feeds[head.inputBias] = f32(tensors.get('base_model.model.classifier.bias')!.data, [1, LABELS]);

    const slotted = await (await session(path.join(slottedDir, 'model.onnx'))).run(feeds);
    const merged = await (await session(mergedPath)).run(baseFeeds);
    const plain = await (await session(plainPath)).run(baseFeeds);
    assert.deepEqual(merged.logits!.dims, [batch, LABELS]);
    assert.ok(maxAbsDiff(merged.logits!.data as Float32Array, slotted.logits!.data as Float32Array) < 1e-4);
    assert.ok(maxAbsDiff(merged.sentence_embedding!.data as Float32Array, slotted.sentence_embedding!.data as Float32Array) < 1e-4);
    // The adapter really changes the encoder (B is nonzero), not only the head.
    assert.ok(maxAbsDiff(merged.sentence_embedding!.data as Float32Array, plain.sentence_embedding!.data as Float32Array) > 1e-3);
  });
});
