import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AdapterLoader } from '../src/adapter/loader.js';
import { AdapterStore } from '../src/adapter/store.js';
import { isAppError } from '../src/errors.js';
import { loadManifest } from '../src/model/manifest.js';
import { decodeModel, encodeModel, intAttr, type NodeProto, type TensorProto } from '../src/model/onnx-graph.js';
import { prepareModel, type PrepareOptions } from '../src/model/prepare.js';
import { WorkerEngine } from '../src/runtime/engine.js';
import { Batcher, type RowRequest } from '../src/scheduler/batcher.js';
import { TextTokenizer } from '../src/model/tokenizer.js';
import ort from 'onnxruntime-node';
import { mulberry32, TINY_BERT, writeSyntheticBert } from '../bench/synthetic-bert.js';
import { DEMO_ADAPTERS, DEMO_ADAPTER_IDS, DEMO_EXPORT, DEMO_MODEL_DIR, loadGolden, maxAbsDiff, ROOT } from './helpers/demo.js';

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

  it('a fresh prepare of the plain export reproduces the committed slotted model and the PyTorch golden', async () => {
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
      // What PyTorch gave for each row (factory/train.py): logits with the adapter, embedding.
      const torch: Array<{ logits: number[] | null; embedding: number[] }> = [];
      for (const id of DEMO_ADAPTER_IDS) {
        const w = await loader.load(id);
        const g = golden.adapters[id]!;
        for (let k = 0; k < 2; k++) {
          rows.push({ ids: g.ids[k]!, adapter: w });
          torch.push({ logits: g.logits[k]!, embedding: g.embeddings[k]! });
        }
      }
      rows.push({ ids: golden.base.ids[0]!, adapter: null });
      torch.push({ logits: null, embedding: golden.base.embeddings[0]! });
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
        // The fresh model against PyTorch itself, not only against another prepare's output.
        const want = torch[i]!;
        if (want.logits) {
          const d = maxAbsDiff(r.logits!, want.logits);
          assert.ok(d < 1e-4, `row ${i}: fresh model |onnx − torch| logits = ${d}`);
        }
        const de = maxAbsDiff(r.embedding, want.embedding);
        assert.ok(de < 1e-4, `row ${i}: fresh model |onnx − torch| embedding = ${de}`);
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

// ---------------------------------------------------------------------------------------

/** A float initializer's values (raw_data little-endian or float_data). */
function floatsOf(t: TensorProto): Float32Array {
  if (t.rawData && t.rawData.length > 0) return new Float32Array(Uint8Array.from(t.rawData).buffer);
  return Float32Array.from(t.floatData ?? []);
}

describe('prepare on Gemm-form linear layers (a LoRA slot on a Gemm, checked numerically)', () => {
  const LABELS = 3;
  const H = TINY_BERT.hidden;
  const R = 4;
  let tmp: string;
  let plainPath: string;
  let tokenizerPath: string;
  let feeds: Record<string, ort.Tensor>;
  const sessions: ort.InferenceSession[] = [];
  const session = async (file: string) => {
    const s = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
    sessions.push(s);
    return s;
  };
  const int64 = (values: number[], dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), dims);

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'ah-prepare-gemm-'));
    ({ modelPath: plainPath, tokenizerPath } = await writeSyntheticBert({ dir: path.join(tmp, 'plain'), ...TINY_BERT, numLabels: LABELS, seed: 5 }));
    const tok = await TextTokenizer.load(tokenizerPath);
    const rows = ['Free money, click here now!', 'are we still meeting tomorrow?'].map((t) => tok.encode(t, TINY_BERT.maxPos, false));
    const seq = Math.max(...rows.map((r) => r.length));
    const ids = rows.flatMap((r) => [...r, ...Array<number>(seq - r.length).fill(tok.padId)]);
    const mask = rows.flatMap((r) => [...r.map(() => 1), ...Array<number>(seq - r.length).fill(0)]);
    feeds = { input_ids: int64(ids, [2, seq]), attention_mask: int64(mask, [2, seq]), token_type_ids: int64(ids.map(() => 0), [2, seq]) };
  });
  after(async () => {
    await Promise.all(sessions.map((s) => s.release()));
    await rm(tmp, { recursive: true, force: true });
  });

  /** The plain model with its classifier Gemm rewritten to transB = 0 (weight stored [hidden, labels]): same function. */
  async function transB0(): Promise<string> {
    const model = decodeModel(await readFile(plainPath));
    const gemm = (model.graph!.node as NodeProto[]).find((n) => n.name === '/classifier/Gemm')!;
    assert.equal(intAttr(gemm, 'transB', 0), 1, 'the export writes the classifier as Gemm with transB = 1');
    const init = (model.graph!.initializer as TensorProto[]).find((t) => t.name === gemm.input[1])!;
    const w = floatsOf(init); // [L, H]
    const wt = new Float32Array(H * LABELS); // [H, L]
    for (let l = 0; l < LABELS; l++) for (let j = 0; j < H; j++) wt[j * LABELS + l] = w[l * H + j]!;
    init.dims = [H, LABELS];
    init.floatData = [];
    init.rawData = new Uint8Array(wt.buffer);
    gemm.attribute = gemm.attribute.filter((a) => a.name !== 'transB');
    const out = path.join(tmp, 'plain-transb0.onnx');
    await writeFile(out, encodeModel(model));
    return out;
  }

  for (const form of ['transB = 1 (as torch exports a Linear on [batch, hidden])', 'transB = 0']) {
    it(`a slot on a Gemm with ${form}: logits = plain + (x·A[idx])·B[idx], row by row`, async () => {
      const modelPath = form.startsWith('transB = 0') ? await transB0() : plainPath;
      const outDir = path.join(tmp, form.startsWith('transB = 0') ? 'slotted-0' : 'slotted-1');
      const m = await prepareModel({
        modelPath, tokenizerPath, targets: ['classifier'], heads: [], maxRank: R, baseModel: 'synthetic-gemm',
        task: 'sequence-classification', maxLength: TINY_BERT.maxPos, outDir,
      });
      assert.equal(m.loraSlots.length, 1);
      const slot = m.loraSlots[0]!;
      assert.deepEqual([slot.module, slot.dIn, slot.dOut], ['classifier', H, LABELS], 'd_in / d_out read the right way round for this transB');
      const plain = await (await session(modelPath)).run(feeds);
      const x = plain.sentence_embedding!.data as Float32Array; // [2, H]: the classifier's input
      const base = plain.logits!.data as Float32Array; // [2, L]
      // Bank 0 all zeros, bank 1 random; row 0 takes bank 1, row 1 bank 0.
      const random = mulberry32(99);
      const A = new Float32Array(2 * H * R); // [2, H, R]
      const B = new Float32Array(2 * R * LABELS); // [2, R, L]
      for (let i = H * R; i < A.length; i++) A[i] = random() - 0.5;
      for (let i = R * LABELS; i < B.length; i++) B[i] = random() - 0.5;
      const out = await (await session(path.join(outDir, 'model.onnx'))).run({
        ...feeds,
        adapter_index: int64([1, 0], [2]),
        [slot.inputA]: new ort.Tensor('float32', A, [2, H, R]),
        [slot.inputB]: new ort.Tensor('float32', B, [2, R, LABELS]),
      });
      const got = out.logits!.data as Float32Array;
      assert.equal(got.length, 2 * LABELS);
      const want = Float32Array.from(base);
      for (let l = 0; l < LABELS; l++) {
        let d = 0;
        for (let k = 0; k < R; k++) {
          let xa = 0;
          for (let j = 0; j < H; j++) xa += x[j]! * A[H * R + j * R + k]!;
          d += xa * B[R * LABELS + k * LABELS + l]!;
        }
        want[l] = want[l]! + d;
      }
      assert.ok(maxAbsDiff(got.subarray(LABELS), base.subarray(LABELS)) < 1e-5, 'row 1 (zero bank): the plain logits');
      assert.ok(maxAbsDiff(got.subarray(0, LABELS), base.subarray(0, LABELS)) > 1e-2, 'row 0: the slot changes the logits');
      assert.ok(maxAbsDiff(got, want) < 1e-4, `row 0: plain + (x·A)·B; got ${[...got]}, want ${[...want]}`);
    });
  }

  it('a Gemm with transA, alpha or beta is refused with a message naming it', async () => {
    const model = decodeModel(await readFile(plainPath));
    const gemm = (model.graph!.node as NodeProto[]).find((n) => n.name === '/classifier/Gemm')!;
    gemm.attribute = gemm.attribute.map((a) => (a.name === 'alpha' ? { ...a, f: 2 } : a)) as typeof gemm.attribute;
    const p = path.join(tmp, 'alpha2.onnx');
    await writeFile(p, encodeModel(model));
    await assert.rejects(
      prepareModel({ modelPath: p, tokenizerPath, targets: ['classifier'], heads: [], maxRank: R, baseModel: 'x', task: 'sequence-classification', maxLength: 64, outDir: path.join(tmp, 'no') }),
      (e: unknown) => isAppError(e, 'INVALID_MODEL') && /classifier \(Gemm node "\/classifier\/Gemm"\) uses transA\/alpha\/beta/.test((e as Error).message),
    );
  });
});

// ---------------------------------------------------------------------------------------

describe('adapterhost prepare (the CLI, end to end)', () => {
  const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');
  let tmp: string;
  before(async () => { tmp = await mkdtemp(path.join(os.tmpdir(), 'ah-prepare-cli-')); });
  after(async () => rm(tmp, { recursive: true, force: true }));

  const cli = (args: string[]) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });

  it('prepares the demo export into a model directory the server loads (same slots and heads as the committed one)', async () => {
    const out = path.join(tmp, 'demo');
    const r = await cli(['prepare', '--model', path.join(DEMO_EXPORT, 'model.onnx'), '--tokenizer', path.join(DEMO_EXPORT, 'tokenizer.json'),
      '--targets', 'query,value', '--heads', 'classifier', '--name', 'adapterhost-demo-bert', '--max-length', '128', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const made = await loadManifest(out);
    const committed = await loadManifest(DEMO_MODEL_DIR);
    assert.equal(r.stdout, `prepared adapterhost-demo-bert: ${committed.loraSlots.length} LoRA slots (query, value), 1 head slot(s), max rank 16 → ${out}\n`);
    assert.deepEqual(made.loraSlots, committed.loraSlots);
    assert.deepEqual(made.heads, committed.heads);
    assert.equal(made.maxLength, 128);
    assert.deepEqual(await readFile(path.join(out, 'tokenizer.json')), await readFile(path.join(DEMO_EXPORT, 'tokenizer.json')));
    // The engine starts on it and a demo adapter runs.
    const engine = await WorkerEngine.start({ modelDir: out, manifest: made, threads: 1, executionProvider: 'cpu' });
    try {
      const store = new AdapterStore({ dir: DEMO_ADAPTERS });
      await store.init();
      const g = loadGolden().adapters.lang!;
      const [row] = await new Batcher({ engine, maxBatchRows: 1, maxWaitMs: 0, maxQueueRows: 1, padId: 0 }).submit([{ ids: g.ids[0]!, adapter: await new AdapterLoader(store, made).load('lang') }]);
      assert.ok(maxAbsDiff(row!.logits!, g.logits[0]!) < 1e-4, 'lang on the CLI-prepared model gives the PyTorch logits');
    } finally {
      await engine.close();
    }
  });

  it('missing options: exit 1, every problem and the usage on stderr, nothing written', async () => {
    const out = path.join(tmp, 'never');
    const r = await cli(['prepare', '--model', path.join(DEMO_EXPORT, 'model.onnx'), '--out', out]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--tokenizer is required/);
    assert.match(r.stderr, /--name is required/);
    assert.match(r.stderr, /--targets is required/);
    assert.match(r.stderr, /usage:/);
    assert.equal(r.stdout, '');
    await assert.rejects(readFile(path.join(out, 'model.json')));
  });

  it('a target that matches nothing: exit 1 with the model\'s problem, nothing written', async () => {
    const out = path.join(tmp, 'never2');
    const r = await cli(['prepare', '--model', path.join(DEMO_EXPORT, 'model.onnx'), '--tokenizer', path.join(DEMO_EXPORT, 'tokenizer.json'),
      '--targets', 'query,nonexistent', '--name', 'x', '--out', out]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^adapterhost: cannot prepare .*target "nonexistent" matches no linear layer/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    await assert.rejects(readFile(path.join(out, 'model.json')));
  });

  it('an unknown command: exit 2 with the usage', async () => {
    const r = await cli(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /usage:/);
  });
});
