import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AdapterLoader } from '../src/adapter/loader.js';
import type { AdapterWeights } from '../src/adapter/lora-weights.js';
import { AdapterStore } from '../src/adapter/store.js';
import { loadManifest, type ModelManifest } from '../src/model/manifest.js';
import { TextTokenizer } from '../src/model/tokenizer.js';
import { WorkerEngine } from '../src/runtime/engine.js';
import { Batcher, type RowRequest } from '../src/scheduler/batcher.js';
import { DEMO_ADAPTERS, DEMO_ADAPTER_IDS, DEMO_MODEL_DIR, loadGolden, maxAbsDiff } from './helpers/demo.js';
import path from 'node:path';

const golden = loadGolden();

describe('engine on the committed demo model (real onnxruntime-node)', () => {
  let manifest: ModelManifest;
  let engine: WorkerEngine;
  let solo: Batcher;
  let mixed: Batcher;
  const weights = new Map<string, AdapterWeights>();

  before(async () => {
    manifest = await loadManifest(DEMO_MODEL_DIR);
    engine = await WorkerEngine.start({ modelDir: DEMO_MODEL_DIR, manifest, threads: 2, executionProvider: 'cpu' });
    const store = new AdapterStore({ dir: DEMO_ADAPTERS });
    await store.init();
    const loader = new AdapterLoader(store, manifest);
    for (const id of DEMO_ADAPTER_IDS) weights.set(id, await loader.load(id));
    solo = new Batcher({ engine, maxBatchRows: 1, maxWaitMs: 0, maxQueueRows: 1000, padId: 0 });
    mixed = new Batcher({ engine, maxBatchRows: 256, maxWaitMs: 20, maxQueueRows: 1000, padId: 0 });
  });
  after(async () => engine.close());

  it('tokenizes the golden texts to the ids PyTorch saw', async () => {
    const tok = await TextTokenizer.load(path.join(DEMO_MODEL_DIR, manifest.tokenizerFile));
    assert.ok(Object.keys(golden.adapters).length > 0, 'the golden file has adapters');
    for (const [id, g] of Object.entries(golden.adapters)) {
      assert.ok(g.texts.length > 0, `${id}: golden texts`);
      assert.equal(g.ids.length, g.texts.length, `${id}: one ids row per text`);
      g.texts.forEach((t, i) => assert.deepEqual(tok.encode(t, 64, true), g.ids[i], `${id} text ${i}`));
    }
  });

  for (const id of DEMO_ADAPTER_IDS) {
    it(`adapter ${id}: logits equal PyTorch (unmerged and merged W + s·A·B) within 1e-4`, async () => {
      const g = golden.adapters[id]!;
      assert.ok(g.ids.length > 0, 'golden rows');
      assert.equal(g.logits.length, g.ids.length, 'one golden logits row per input');
      assert.equal(g.merged_logits.length, g.ids.length, 'one golden merged row per input');
      assert.equal(g.embeddings.length, g.ids.length, 'one golden embedding per input');
      const rows = await mixed.submit(g.ids.map((ids) => ({ ids, adapter: weights.get(id)! })));
      assert.equal(rows.length, g.ids.length, 'one result per row');
      rows.forEach((r, i) => {
        assert.ok(r.logits, 'has logits');
        assert.equal(r.logits.length, g.labels.length);
        const d = maxAbsDiff(r.logits, g.logits[i]!);
        assert.ok(d < 1e-4, `row ${i}: |onnx - torch| = ${d}`);
        const dm = maxAbsDiff(r.logits, g.merged_logits[i]!);
        assert.ok(dm < 1e-4, `row ${i}: |onnx - merged| = ${dm}`);
        const de = maxAbsDiff(r.embedding!, g.embeddings[i]!);
        assert.ok(de < 1e-4, `row ${i}: embedding diff ${de}`);
      });
    });
  }

  it('base model alone (no adapter) gives the PyTorch base embeddings', async () => {
    assert.ok(golden.base.ids.length > 0, 'golden base rows');
    assert.equal(golden.base.embeddings.length, golden.base.ids.length);
    const rows = await mixed.submit(golden.base.ids.map((ids) => ({ ids, adapter: null })));
    assert.equal(rows.length, golden.base.ids.length, 'one result per row');
    rows.forEach((r, i) => {
      assert.equal(r.logits, null);
      assert.ok(maxAbsDiff(r.embedding!, golden.base.embeddings[i]!) < 1e-4);
    });
  });

  it('a mixed batch (different adapters, ranks 4/8/16, rank_pattern, no adapter) gives each row what it gets alone', async () => {
    const rows: RowRequest[] = [];
    for (const id of DEMO_ADAPTER_IDS) for (const ids of golden.adapters[id]!.ids.slice(0, 3)) rows.push({ ids, adapter: weights.get(id)! });
    for (const ids of golden.base.ids.slice(0, 3)) rows.push({ ids, adapter: null });
    // interleave so neighbours differ
    rows.sort((a, b) => (a.ids.length % 3) - (b.ids.length % 3));
    const together = await mixed.submit(rows);
    const alone = await Promise.all(rows.map((r) => solo.submit([r]).then((x) => x[0]!)));
    assert.equal(rows.length, 3 * (DEMO_ADAPTER_IDS.length + 1), 'three rows per adapter and three without');
    assert.equal(together.length, rows.length, 'one result per row');
    together.forEach((t, i) => {
      const a = alone[i]!;
      if (a.logits) assert.ok(maxAbsDiff(t.logits!, a.logits) < 1e-5, `row ${i} logits`);
      else assert.equal(t.logits, null);
      assert.ok(maxAbsDiff(t.embedding!, a.embedding!) < 1e-5, `row ${i} embedding`);
    });
  });

  it('an adapter changes the output (LoRA is applied, not ignored)', async () => {
    const ids = golden.adapters.lang!.ids[0]!;
    const [withA] = await solo.submit([{ ids, adapter: weights.get('lang')! }]);
    const [without] = await solo.submit([{ ids, adapter: null }]);
    assert.ok(maxAbsDiff(withA!.embedding!, without!.embedding!) > 1e-3);
  });
});
