/**
 * Adapters that are not the demo's full shape, in real mixed batches on the real engine:
 * one that targets only some layers and modules (its other slots get exact zeros in the banks,
 * and it computes what the same adapter with explicit zero B matrices computes), one without a
 * classification head (embeddings only; NO_CLASSIFICATION_HEAD on predict), and one without
 * `id2label` (labels LABEL_i).
 */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AdapterLoader } from '../src/adapter/loader.js';
import type { AdapterWeights } from '../src/adapter/lora-weights.js';
import { AdapterStore } from '../src/adapter/store.js';
import { loadManifest, type ModelManifest } from '../src/model/manifest.js';
import type { BatchInput } from '../src/runtime/batch.js';
import { WorkerEngine, type Engine } from '../src/runtime/engine.js';
import { buildFeeds } from '../src/runtime/feeds.js';
import { Batcher } from '../src/scheduler/batcher.js';
import { DEMO_MODEL_DIR, loadGolden, maxAbsDiff } from './helpers/demo.js';
import { copyAdapters } from './helpers/http-harness.js';
import { decodeModel, demoFiles, encodeModel, GERMAN, postJson, startRel, type RelServer, type Tensor } from './helpers/reliability-kit.js';

const PREFIX = 'base_model.model.';
const KEPT = 'encoder.layer.1.attention.self.query';

/** The variants of lang this file serves, written as adapter dirs. */
function variants(): Record<string, { config: Record<string, unknown>; tensors: Map<string, Tensor> }> {
  const lang = demoFiles('lang');
  const cfg = JSON.parse(lang.config.toString('utf8')) as Record<string, unknown>;
  const all = decodeModel(lang.model);
  const only = (keep: (name: string) => boolean) => new Map([...all].filter(([n]) => keep(n)));
  // Only layer 1's query: the other seven slots are not targeted.
  const partial = only((n) => n.includes(KEPT) || n.includes('classifier'));
  // Every slot present, but B zero outside layer 1's query: what `partial` must compute.
  const zeroB = new Map([...all].map(([n, t]) => [n, n.includes('lora_B') && !n.includes(KEPT) ? { ...t, data: new Float32Array(t.data.length) } : t]));
  const noId2label = { ...cfg };
  delete noId2label.id2label;
  return {
    partial: { config: { ...cfg, target_modules: ['query'], layers_to_transform: [1] }, tensors: partial },
    'zero-b': { config: cfg, tensors: zeroB },
    headless: { config: { ...cfg, modules_to_save: null, task_type: 'FEATURE_EXTRACTION', id2label: undefined }, tensors: only((n) => !n.includes('classifier')) },
    'no-labels': { config: noId2label, tensors: all },
  };
}

async function writeVariants(dir: string): Promise<void> {
  for (const [id, v] of Object.entries(variants())) {
    await mkdir(path.join(dir, id));
    await writeFile(path.join(dir, id, 'adapter_config.json'), JSON.stringify(v.config));
    await writeFile(path.join(dir, id, 'adapter_model.safetensors'), encodeModel(v.tensors));
  }
}

/** The real engine, with every batch it runs kept for inspection. */
class RecordingEngine implements Engine {
  readonly batches: BatchInput[] = [];
  constructor(private readonly inner: WorkerEngine) {}
  run(batch: BatchInput) {
    this.batches.push(batch);
    return this.inner.run(batch);
  }
  close() { return this.inner.close(); }
}

describe('partial-target and head-less adapters in one mixed batch (engine)', () => {
  let dir: string;
  let manifest: ModelManifest;
  let engine: RecordingEngine;
  const w = new Map<string, AdapterWeights>();

  before(async () => {
    dir = await copyAdapters('forms');
    await writeVariants(dir);
    manifest = await loadManifest(DEMO_MODEL_DIR);
    engine = new RecordingEngine(await WorkerEngine.start({ modelDir: DEMO_MODEL_DIR, manifest, threads: 1, executionProvider: 'cpu' }));
    const store = new AdapterStore({ dir });
    await store.init();
    const loader = new AdapterLoader(store, manifest);
    for (const id of ['lang', 'partial', 'zero-b', 'headless', 'no-labels']) w.set(id, await loader.load(id));
  });
  after(async () => {
    await engine?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('the loader maps them: partial fills one slot, headless has no head, no-labels has no labels', () => {
    const kept = manifest.loraSlots.findIndex((s) => s.module === KEPT);
    assert.ok(kept >= 0, `the model has a slot for ${KEPT}`);
    assert.deepEqual(w.get('partial')!.slots.map((s) => s !== null), manifest.loraSlots.map((_, i) => i === kept));
    assert.deepEqual(w.get('headless')!.heads, manifest.heads.map(() => null));
    assert.ok(w.get('headless')!.slots.every((s) => s !== null));
    assert.equal(w.get('no-labels')!.labels, null);
  });

  test('one batch: skipped slots and the missing head are exact zeros; each row computes what it should', async () => {
    const g = loadGolden().adapters.lang!;
    const ids = g.ids.slice(0, 2);
    assert.equal(ids.length, 2);
    const order = ['partial', 'lang', null, 'headless', 'zero-b', 'no-labels'] as const;
    const rows = order.flatMap((id) => ids.map((x) => ({ ids: x, adapter: id === null ? null : w.get(id)! })));
    const before = engine.batches.length;
    const batcher = new Batcher({ engine, maxBatchRows: 64, maxWaitMs: 0, maxQueueRows: 100, padId: 0 });
    const out = await batcher.submit(rows);
    assert.equal(engine.batches.length - before, 1, 'all rows ran in one batch');
    assert.equal(out.length, rows.length);
    const at = (id: string | null, k: number) => out[order.indexOf(id as never) * ids.length + k]!;

    // The banks the worker got: the entries of adapters that skip a slot or a head are zeros.
    const batch = engine.batches.at(-1)!;
    const feeds = buildFeeds(manifest, batch);
    const entryOf = (id: string) => {
      const j = batch.adapters.findIndex((a) => a.slots === w.get(id)!.slots);
      assert.ok(j >= 0, `${id} is in the batch`);
      return j;
    };
    const isZero = (f: { data: Float32Array | BigInt64Array; dims: number[] }, j: number) => {
      const per = f.dims.slice(1).reduce((a, b) => a * b, 1);
      return (f.data as Float32Array).subarray(j * per, (j + 1) * per).every((v) => Object.is(v, 0));
    };
    const kept = manifest.loraSlots.findIndex((s) => s.module === KEPT);
    manifest.loraSlots.forEach((s, i) => {
      const A = feeds[s.inputA]!;
      const B = feeds[s.inputB]!;
      assert.equal(isZero(A, entryOf('partial')) && isZero(B, entryOf('partial')), i !== kept, `partial, slot ${s.module}: zero exactly when not targeted`);
      assert.equal(isZero(B, entryOf('lang')), false, `lang fills ${s.module}`);
      assert.ok(isZero(A, batch.adapters.length) && isZero(B, batch.adapters.length), `the base rows' entry is zero for ${s.module}`);
    });
    for (const h of manifest.heads) {
      assert.ok(isZero(feeds[h.inputWeight]!, entryOf('headless')) && isZero(feeds[h.inputBias]!, entryOf('headless')), 'the head-less adapter gets a zero head');
      assert.equal(isZero(feeds[h.inputWeight]!, entryOf('lang')), false);
    }

    for (let k = 0; k < ids.length; k++) {
      // partial = lang with B zero outside layer 1's query, row for row.
      assert.ok(maxAbsDiff(at('partial', k).logits!, at('zero-b', k).logits!) < 1e-5, `row ${k}: partial logits = zero-b logits`);
      assert.ok(maxAbsDiff(at('partial', k).embedding!, at('zero-b', k).embedding!) < 1e-5, `row ${k}: partial embedding = zero-b embedding`);
      assert.ok(maxAbsDiff(at('partial', k).embedding!, at('lang', k).embedding!) > 1e-4, `row ${k}: the skipped slots matter`);
      assert.ok(maxAbsDiff(at('partial', k).embedding!, at(null, k).embedding!) > 1e-5, `row ${k}: the one slot it has is applied`);
      // No head: no logits, and the encoder is lang's.
      assert.equal(at('headless', k).logits, null, `row ${k}: headless has no logits`);
      assert.ok(maxAbsDiff(at('headless', k).embedding!, at('lang', k).embedding!) < 1e-5, `row ${k}: headless embedding = lang's`);
      assert.equal(at(null, k).logits, null);
      // lang itself is unaffected by its neighbours: PyTorch's numbers.
      assert.ok(maxAbsDiff(at('lang', k).logits!, g.logits[k]!) < 1e-4, `row ${k}: lang = PyTorch`);
      assert.ok(maxAbsDiff(at('no-labels', k).logits!, g.logits[k]!) < 1e-4, `row ${k}: no-labels = lang's weights`);
    }
  });
});

describe('head-less and label-less adapters over HTTP', () => {
  let t: RelServer;
  before(async () => {
    const dir = await copyAdapters('forms-http');
    await writeVariants(dir);
    t = await startRel({}, { dir });
  });
  after(async () => { await t?.stop(); });

  test('predict with a head-less adapter → 422 NO_CLASSIFICATION_HEAD; its embeddings serve', async () => {
    const r = await postJson(t.url, '/v1/predict', { adapter_id: 'headless', inputs: [GERMAN] });
    assert.equal(r.status, 422, r.text);
    assert.equal(r.body.error.code, 'NO_CLASSIFICATION_HEAD');
    assert.match(r.body.error.message, /adapter "headless" has no classification head.*\/v1\/embeddings/);
    const e = await postJson(t.url, '/v1/embeddings', { model: 'headless', input: [GERMAN] });
    assert.equal(e.status, 200, e.text);
    const l = await postJson(t.url, '/v1/embeddings', { model: 'lang', input: [GERMAN] });
    assert.ok(maxAbsDiff(e.body.data[0].embedding, l.body.data[0].embedding) < 1e-5, 'the same encoder as lang');
    const info = await postJson(t.url, '/v1/predict', { adapter_id: 'partial', inputs: [GERMAN] });
    assert.equal(info.status, 200, 'a partial adapter with a head predicts');
  });

  test('an adapter without id2label answers LABEL_i, with lang\'s scores', async () => {
    const [n, l] = await Promise.all([
      postJson(t.url, '/v1/predict', { adapter_id: 'no-labels', inputs: [GERMAN, 'Bonjour à tous'] }),
      postJson(t.url, '/v1/predict', { adapter_id: 'lang', inputs: [GERMAN, 'Bonjour à tous'] }),
    ]);
    assert.equal(n.status, 200, n.text);
    const langLabels = Object.values((JSON.parse(demoFiles('lang').config.toString('utf8')) as { id2label: Record<string, string> }).id2label);
    for (let i = 0; i < 2; i++) {
      const got = n.body.predictions[i] as Array<{ label: string; score: number }>;
      const want = l.body.predictions[i] as Array<{ label: string; score: number }>;
      assert.equal(got.length, langLabels.length);
      assert.deepEqual(got.map((x) => x.label).sort(), langLabels.map((_, k) => `LABEL_${k}`).sort());
      for (const x of got) {
        const name = langLabels[Number(x.label.slice('LABEL_'.length))]!;
        assert.ok(Math.abs(x.score - want.find((y) => y.label === name)!.score) < 1e-5, `${x.label} is ${name}`);
      }
    }
  });
});
