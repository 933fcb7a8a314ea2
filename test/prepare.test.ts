import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AdapterLoader } from '../src/adapter/loader.js';
import { AdapterStore } from '../src/adapter/store.js';
import { isAppError } from '../src/errors.js';
import { loadManifest } from '../src/model/manifest.js';
import { decodeModel, encodeModel } from '../src/model/onnx-graph.js';
import { prepareModel, type PrepareOptions } from '../src/model/prepare.js';
import { WorkerEngine } from '../src/runtime/engine.js';
import { Batcher, type RowRequest } from '../src/scheduler/batcher.js';
import { DEMO_ADAPTERS, DEMO_ADAPTER_IDS, DEMO_EXPORT, DEMO_MODEL_DIR, loadGolden, maxAbsDiff } from './helpers/demo.js';

const base = (out: string): PrepareOptions => ({
  modelPath: path.join(DEMO_EXPORT, 'model.onnx'),
  tokenizerPath: path.join(DEMO_EXPORT, 'tokenizer.json'),
  targets: ['query', 'value'],
  heads: ['classifier'],
  maxRank: 16,
  baseModel: 'adapterhost-demo-bert',
  task: 'sequence-classification',
  maxLength: 128,
  outDir: out,
});

describe('prepare', () => {
  let tmp: string;
  before(async () => { tmp = await mkdtemp(path.join(os.tmpdir(), 'ah-prepare-')); });
  after(async () => rm(tmp, { recursive: true, force: true }));

  it('a fresh prepare of the plain export reproduces the committed slotted model', async () => {
    const out = path.join(tmp, 'fresh');
    const m = await prepareModel(base(out));
    const committed = await loadManifest(DEMO_MODEL_DIR);
    assert.deepEqual(m.loraSlots, committed.loraSlots);
    assert.deepEqual(m.heads, committed.heads);
    const golden = loadGolden();
    const store = new AdapterStore({ dir: DEMO_ADAPTERS });
    await store.init();
    const loader = new AdapterLoader(store, committed);
    const engines = [
      await WorkerEngine.start({ modelDir: out, manifest: m, threads: 1, executionProvider: 'cpu' }),
      await WorkerEngine.start({ modelDir: DEMO_MODEL_DIR, manifest: committed, threads: 1, executionProvider: 'cpu' }),
    ];
    try {
      const rows: RowRequest[] = [];
      for (const id of DEMO_ADAPTER_IDS) {
        const w = await loader.load(id);
        for (const ids of golden.adapters[id]!.ids.slice(0, 2)) rows.push({ ids, adapter: w });
      }
      rows.push({ ids: golden.base.ids[0]!, adapter: null });
      const [a, b] = await Promise.all(engines.map((engine) => new Batcher({ engine, maxBatchRows: 64, maxWaitMs: 0, maxQueueRows: 100, padId: 0 }).submit(rows)));
      assert.equal(rows.length, 2 * DEMO_ADAPTER_IDS.length + 1);
      assert.equal(a!.length, rows.length, 'fresh model: one result per row');
      assert.equal(b!.length, rows.length, 'committed model: one result per row');
      a!.forEach((r, i) => {
        const c = b![i]!;
        // Rows with an adapter (each demo adapter has a head) have logits; the base row has none.
        const hasHead = rows[i]!.adapter !== null;
        if (hasHead) {
          assert.ok(r.logits && c.logits, `row ${i}: both models give logits`);
          assert.equal(r.logits.length, c.logits.length, `row ${i}: same number of labels`);
          assert.ok(maxAbsDiff(r.logits, c.logits) < 1e-6, `row ${i} logits`);
        } else {
          assert.equal(r.logits, null, `row ${i}: fresh model gives no logits without an adapter`);
          assert.equal(c.logits, null, `row ${i}: committed model gives no logits without an adapter`);
        }
        assert.ok(r.embedding && c.embedding, `row ${i}: both models give an embedding`);
        assert.equal(r.embedding.length, c.embedding.length);
        assert.ok(maxAbsDiff(r.embedding, c.embedding) < 1e-6, `row ${i} embedding`);
      });
    } finally {
      await Promise.all(engines.map((e) => e.close()));
    }
  });

  const refusals: Array<{ name: string; change: (o: PrepareOptions) => void | Promise<void>; expect: RegExp }> = [
    { name: 'target matching nothing', change: (o) => { o.targets = ['query', 'nonexistent']; }, expect: /target "nonexistent" matches no linear layer/ },
    { name: 'target that is not a linear layer', change: (o) => { o.targets = ['self']; }, expect: /attention\.self .*is not a linear layer/ },
    { name: 'head matching nothing', change: (o) => { o.heads = ['score']; }, expect: /head "score" matches no Gemm layer/ },
    { name: 'max rank 0', change: (o) => { o.maxRank = 0; }, expect: /max rank/ },
    { name: 'not an ONNX file', change: async (o) => { const p = path.join(tmp, 'junk.onnx'); await writeFile(p, 'not a model'); o.modelPath = p; }, expect: /not an ONNX model|has no graph/ },
    {
      name: 'opset below 13',
      change: async (o) => {
        const m = decodeModel(await readFile(o.modelPath));
        m.opsetImport = [{ domain: '', version: 11 }];
        const p = path.join(tmp, 'old.onnx');
        await writeFile(p, encodeModel(m));
        o.modelPath = p;
      },
      expect: /opset 11; prepare needs opset 13/,
    },
    { name: 'an already prepared model', change: (o) => { o.modelPath = path.join(DEMO_MODEL_DIR, 'model.onnx'); }, expect: /already has an "adapter_index" input/ },
  ];
  for (const row of refusals) {
    it(`refuses: ${row.name}`, async () => {
      const o = base(path.join(tmp, 'x'));
      await row.change(o);
      await assert.rejects(prepareModel(o), (e: unknown) => {
        assert.ok(isAppError(e, 'INVALID_MODEL'), String(e));
        assert.match((e as Error).message, row.expect);
        return true;
      });
    });
  }
});
