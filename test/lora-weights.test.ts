import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdapterLoader } from '../src/adapter/loader.js';
import { layOutAdapter, mapAdapterToSlots, parsePeftKey, planAdapter, sameBase } from '../src/adapter/lora-weights.js';
import { writeSafetensors } from '../src/adapter/safetensors.js';
import type { AdapterStore } from '../src/adapter/store.js';
import { parsePeftConfig } from '../src/adapter/peft-config.js';
import type { DecodedTensor } from '../src/adapter/safetensors.js';
import { isAppError } from '../src/errors.js';
import type { ModelManifest } from '../src/model/manifest.js';

/** A tiny base: 2 layers × (query, value) with d_in 4 → d_out 3 (query) / 4 (value), head on 4. */
const manifest: ModelManifest = {
  format: 'adapterhost.model/v1', baseModel: 'tiny-bert', aliases: ['org/tiny-bert'], task: 'sequence-classification',
  modelFile: 'model.onnx', tokenizerFile: 'tokenizer.json', maxLength: 16, hiddenSize: 4, maxRank: 4, targets: ['query', 'value'],
  inputs: { inputIds: 'input_ids', attentionMask: 'attention_mask', tokenTypeIds: null, adapterIndex: 'adapter_index' },
  embeddingOutput: 'sentence_embedding', baseBytes: 1000,
  loraSlots: [0, 1].flatMap((l) => [
    { module: `encoder.layer.${l}.attention.self.query`, dIn: 4, dOut: 3, inputA: `q${l}A`, inputB: `q${l}B` },
    { module: `encoder.layer.${l}.attention.self.value`, dIn: 4, dOut: 4, inputA: `v${l}A`, inputB: `v${l}B` },
  ]),
  heads: [{ module: 'classifier', dIn: 4, inputWeight: 'hw', inputBias: 'hb', output: 'logits' }],
};

const t = (shape: number[], f: (i: number) => number = (i) => i + 1): DecodedTensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, dtype: 'F32', data: Float32Array.from({ length: n }, (_, i) => f(i)) };
};

function validTensors(r = 2): Map<string, DecodedTensor> {
  const m = new Map<string, DecodedTensor>();
  for (const s of manifest.loraSlots) {
    m.set(`base_model.model.${s.module}.lora_A.weight`, t([r, s.dIn]));
    m.set(`base_model.model.${s.module}.lora_B.weight`, t([s.dOut, r]));
  }
  m.set('base_model.model.classifier.weight', t([2, 4]));
  m.set('base_model.model.classifier.bias', t([2]));
  return m;
}
const cfgJson = (over: Record<string, unknown> = {}) => ({
  peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['query', 'value'], modules_to_save: ['classifier'], bias: 'none',
  base_model_name_or_path: 'tiny-bert', task_type: 'SEQ_CLS', id2label: { 0: 'no', 1: 'yes' }, ...over,
});
const map = (tensors = validTensors(), over: Record<string, unknown> = {}, opts = {}) =>
  mapAdapterToSlots('x', 'v1', manifest, parsePeftConfig(cfgJson(over), { maxRank: manifest.maxRank }), tensors, opts);

describe('PEFT key forms', () => {
  const rows: Array<[string, ReturnType<typeof parsePeftKey>]> = [
    ['base_model.model.encoder.layer.0.attention.self.query.lora_A.weight', { module: 'encoder.layer.0.attention.self.query', part: 'A' }],
    ['base_model.model.encoder.layer.0.attention.self.query.lora_B.default.weight', { module: 'encoder.layer.0.attention.self.query', part: 'B' }],
    ['encoder.layer.1.attention.self.value.lora_A.weight', { module: 'encoder.layer.1.attention.self.value', part: 'A' }],
    ['base_model.model.classifier.weight', { module: 'classifier', part: 'weight' }],
    ['base_model.model.classifier.modules_to_save.default.bias', { module: 'classifier', part: 'bias' }],
    ['base_model.model.something.lora_embedding_A', null],
    ['base_model.model.classifier.modules_to_save.weight', { module: 'classifier', part: 'weight' }],
    ['base_model.model.encoder.layer.0.attention.self.query.lora_A.weight.bak', null],
    ['base_model.model.classifier.weight.bak', null],
    ['base_model.model.classifier.biases', null],
  ];
  for (const [key, want] of rows) it(key, () => assert.deepEqual(parsePeftKey(key), want));
});

describe('mapping an adapter onto the slots', () => {
  it('transposes A and B, folds alpha/r into B, transposes the head', () => {
    const w = map();
    const s = w.slots[0]!; // query layer 0: A [2,4] = 1..8, B [3,2] = 1..6, scale 4/2 = 2
    assert.equal(s.rank, 2);
    assert.deepEqual([...s.a], [1, 5, 2, 6, 3, 7, 4, 8]); // [d_in=4, r=2]
    assert.deepEqual([...s.b], [2, 6, 10, 4, 8, 12]); // [r=2, d_out=3] = Bᵀ·2
    assert.deepEqual([...w.heads[0]!.weight], [1, 5, 2, 6, 3, 7, 4, 8]); // [d_in, L]
    assert.deepEqual(w.labels, ['no', 'yes']);
    assert.ok(w.slots.every((x) => x && x.a.buffer instanceof SharedArrayBuffer));
    assert.equal(w.bytes, 4 * (2 * (4 + 3) * 2 + 2 * (4 + 4) * 2 + 2 * 5));
  });
  it('rsLoRA folds alpha/sqrt(r)', () => {
    const w = map(validTensors(4), { r: 4, use_rslora: true, lora_alpha: 4 });
    assert.equal(w.slots[0]!.b[0], 1 * 2); // B[0,0]=1, scale 4/√4 = 2
  });
  it('rank_pattern and alpha_pattern are honoured per module', () => {
    const m = validTensors(2);
    for (const s of manifest.loraSlots.filter((x) => x.module.endsWith('value'))) {
      m.set(`base_model.model.${s.module}.lora_A.weight`, t([1, 4]));
      m.set(`base_model.model.${s.module}.lora_B.weight`, t([4, 1]));
    }
    const w = map(m, { rank_pattern: { value: 1 }, alpha_pattern: { value: 3 } });
    assert.equal(w.slots[1]!.rank, 1);
    assert.equal(w.slots[1]!.b[0], 3); // scale 3/1
    assert.equal(w.slots[0]!.b[0], 2); // query keeps alpha/r = 2
  });
  it('an adapter targeting only query leaves value slots empty', () => {
    const m = validTensors();
    for (const k of [...m.keys()]) if (k.includes('value')) m.delete(k);
    const w = map(m, { target_modules: ['query'] });
    assert.ok(w.slots[0] && !w.slots[1]);
  });
  it('a hub-style base name with owner matches an alias', () => {
    assert.doesNotThrow(() => map(validTensors(), { base_model_name_or_path: 'someone/tiny-bert' }));
  });
  it('sameBase: the name or any alias, exactly or by its last path part; trailing slashes ignored', () => {
    const m = { ...manifest, aliases: ['org/tiny-bert', 'tb-alias'] };
    for (const ok of ['tiny-bert', 'someone/tiny-bert', './tiny-bert', 'models/tiny-bert//', 'tb-alias', 'x/tb-alias']) assert.equal(sameBase(ok, m), true, ok);
    for (const no of ['tiny-bert-large', 'tiny', 'tiny-bert/x', '']) assert.equal(sameBase(no, m), false, no);
  });
  it('the head: bias copied as is, labels and maxRank from the tensors', () => {
    const w = map();
    assert.deepEqual([...w.heads[0]!.bias], [1, 2]);
    assert.equal(w.heads[0]!.labels, 2);
    assert.equal(w.maxRank, 2);
    const m = validTensors(2);
    m.set('base_model.model.encoder.layer.1.attention.self.value.lora_A.weight', t([3, 4]));
    m.set('base_model.model.encoder.layer.1.attention.self.value.lora_B.weight', t([4, 3]));
    assert.equal(map(m, { rank_pattern: { 'layer.1.attention.self.value': 3 } }).maxRank, 3, 'the largest rank of any slot');
  });
  it('a head without a bias gets a zero bias', () => {
    const m = validTensors();
    m.delete('base_model.model.classifier.bias');
    assert.deepEqual([...map(m).heads[0]!.bias], [0, 0]);
  });
  it('head-less adapters (no modules_to_save) are accepted, partial ones too', () => {
    const m = validTensors();
    m.delete('base_model.model.classifier.weight');
    m.delete('base_model.model.classifier.bias');
    const w = map(m, { modules_to_save: null, id2label: null });
    assert.deepEqual(w.heads, [null]);
    assert.ok(w.slots.every(Boolean));
    for (const k of [...m.keys()]) if (k.includes('value')) m.delete(k);
    const partial = map(m, { modules_to_save: null, id2label: null, target_modules: ['query'] });
    assert.deepEqual(partial.slots.map(Boolean), [true, false, true, false]);
    assert.deepEqual(partial.heads, [null]);
  });
  it('modules_to_save naming another module: a missing head is not asked for; a nested head module is matched by its last part', () => {
    const m = validTensors();
    m.delete('base_model.model.classifier.weight');
    m.delete('base_model.model.classifier.bias');
    assert.deepEqual(map(m, { modules_to_save: ['score'], id2label: null }).heads, [null]);
    const nested = { ...manifest, heads: [{ ...manifest.heads[0]!, module: 'bert.classifier' }] };
    assert.throws(() => mapAdapterToSlots('x', 'v1', nested, parsePeftConfig(cfgJson({ id2label: null }), { maxRank: 4 }), m),
      (e: unknown) => isAppError(e, 'INCOMPATIBLE_ADAPTER') && /^adapter "x" does not fit base model tiny-bert/.test((e as Error).message) && /modules_to_save names bert\.classifier but the file has no bert\.classifier\.weight/.test((e as Error).message));
  });
  it('a text-generation base refuses modules_to_save', () => {
    const decoder = { ...manifest, task: 'text-generation' as const, heads: [] };
    const m = validTensors();
    m.delete('base_model.model.classifier.weight');
    m.delete('base_model.model.classifier.bias');
    assert.throws(() => mapAdapterToSlots('x', 'v1', decoder, parsePeftConfig(cfgJson({ id2label: null, modules_to_save: ['classifier', 'score'] }), { maxRank: 4 }), m),
      (e: unknown) => isAppError(e, 'INCOMPATIBLE_ADAPTER') && /modules_to_save \(classifier, score\) is not supported on a text-generation base/.test((e as Error).message));
    assert.doesNotThrow(() => mapAdapterToSlots('x', 'v1', decoder, parsePeftConfig(cfgJson({ id2label: null, modules_to_save: null }), { maxRank: 4 }), m));
    m.set('base_model.model.classifier.weight', t([2, 4]));
    assert.throws(() => mapAdapterToSlots('x', 'v1', decoder, parsePeftConfig(cfgJson({ id2label: null, modules_to_save: null }), { maxRank: 4 }), m), /is not a head of the base \(heads: none\)/);
  });
  for (const [where, key, index, value] of [
    ['lora_A', 'base_model.model.encoder.layer.0.attention.self.query.lora_A.weight', 3, Number.NaN],
    ['lora_B', 'base_model.model.encoder.layer.1.attention.self.value.lora_B.weight', 5, Number.POSITIVE_INFINITY],
    ['the head weight', 'base_model.model.classifier.weight', 7, Number.NEGATIVE_INFINITY],
    ['the head bias', 'base_model.model.classifier.bias', 1, Number.NaN],
  ] as const) {
    it(`layOutAdapter: a non-finite value in ${where} is INVALID_SAFETENSORS`, () => {
      const m = validTensors();
      m.get(key)!.data[index] = value;
      const plan = planAdapter('x', manifest, parsePeftConfig(cfgJson(), { maxRank: 4 }), m);
      assert.throws(() => layOutAdapter(plan, 'v1'), (e: unknown) => isAppError(e, 'INVALID_SAFETENSORS') && /adapter "x": a weight is NaN or infinite/.test((e as Error).message));
    });
  }

  const bad: Array<{ name: string; tensors?: (m: Map<string, DecodedTensor>) => void; cfg?: Record<string, unknown>; expect: RegExp }> = [
    { name: 'unknown key', tensors: (m) => m.set('base_model.model.foo.bar', t([1])), expect: /not a LoRA .* key/ },
    { name: 'module without a slot', tensors: (m) => { m.set('base_model.model.encoder.layer.0.attention.self.key.lora_A.weight', t([2, 4])); }, expect: /self\.key has no LoRA slot/ },
    { name: 'A without B', tensors: (m) => m.delete('base_model.model.encoder.layer.0.attention.self.query.lora_B.weight'), expect: /has lora_A but no lora_B/ },
    { name: 'A with wrong d_in', tensors: (m) => m.set('base_model.model.encoder.layer.0.attention.self.query.lora_A.weight', t([2, 5])), expect: /lora_A is \[2,5\] but the base layer has d_in 4/ },
    { name: 'B with wrong d_out', tensors: (m) => m.set('base_model.model.encoder.layer.0.attention.self.query.lora_B.weight', t([4, 2])), expect: /lora_B is \[4,2\] but the base layer has d_out 3/ },
    { name: 'A/B rank mismatch', tensors: (m) => m.set('base_model.model.encoder.layer.0.attention.self.query.lora_B.weight', t([3, 1])), expect: /lora_A rank 2 and lora_B rank 1 differ/ },
    { name: 'tensor rank above the base max', tensors: (m) => { m.set('base_model.model.encoder.layer.0.attention.self.query.lora_A.weight', t([5, 4])); m.set('base_model.model.encoder.layer.0.attention.self.query.lora_B.weight', t([3, 5])); }, expect: /rank 5 exceeds the base model's maximum rank 4/ },
    { name: 'tensor rank differs from config r', cfg: { r: 3 }, expect: /tensors have rank 2 but the config says 3/ },
    { name: 'targeted module without tensors', tensors: (m) => { m.delete('base_model.model.encoder.layer.1.attention.self.value.lora_A.weight'); m.delete('base_model.model.encoder.layer.1.attention.self.value.lora_B.weight'); }, expect: /layer\.1\.attention\.self\.value is targeted .* has no lora_A\/lora_B/ },
    { name: 'tensors for a module target_modules does not select', cfg: { target_modules: ['query'] }, expect: /value has LoRA tensors but target_modules does not select it/ },
    { name: 'head with wrong hidden size', tensors: (m) => m.set('base_model.model.classifier.weight', t([2, 5])), expect: /head classifier: weight is \[2,5\], expected \[labels, 4\]/ },
    { name: 'head bias of wrong length', tensors: (m) => m.set('base_model.model.classifier.bias', t([3])), expect: /bias is \[3\], expected \[2\]/ },
    { name: 'label count differs from the head', cfg: { id2label: { 0: 'a', 1: 'b', 2: 'c' } }, expect: /2 outputs but id2label has 3 labels/ },
    { name: 'modules_to_save head missing', tensors: (m) => { m.delete('base_model.model.classifier.weight'); m.delete('base_model.model.classifier.bias'); }, expect: /modules_to_save names classifier but the file has no classifier.weight/ },
    { name: 'another base model', cfg: { base_model_name_or_path: 'bert-base-uncased' }, expect: /"bert-base-uncased" is not this server's base model "tiny-bert"/ },
    { name: 'no tensors at all', tensors: (m) => m.clear(), cfg: { modules_to_save: null }, expect: /no LoRA tensors for any slot/ },
    { name: 'module without a slot names the prepared targets', tensors: (m) => { m.set('base_model.model.encoder.layer.0.attention.self.key.lora_B.weight', t([3, 2])); }, expect: /has no LoRA slot in the base \(prepared targets: query, value\)/ },
    { name: 'a saved module that is not a head', tensors: (m) => m.set('base_model.model.pooler.dense.weight', t([4, 4])), expect: /tensor "base_model\.model\.pooler\.dense\.weight": module pooler\.dense is not a head of the base \(heads: classifier\)/ },
    { name: 'the same tensor twice (with and without the adapter-name infix)', tensors: (m) => m.set('base_model.model.encoder.layer.0.attention.self.query.lora_A.default.weight', t([2, 4])), expect: /module encoder\.layer\.0\.attention\.self\.query has two A tensors \(second: "base_model\.model\.encoder\.layer\.0\.attention\.self\.query\.lora_A\.default\.weight"\)/ },
    { name: 'B without A', tensors: (m) => m.delete('base_model.model.encoder.layer.1.attention.self.value.lora_A.weight'), expect: /value has lora_B but no lora_A/ },
    { name: 'A that is 1-D', tensors: (m) => m.set('base_model.model.encoder.layer.0.attention.self.query.lora_A.weight', t([8])), expect: /query: lora_A and lora_B must be 2-D \(lora_A is \[8\], lora_B is \[3,2\]\)/ },
    { name: 'B that is 3-D', tensors: (m) => m.set('base_model.model.encoder.layer.0.attention.self.query.lora_B.weight', t([3, 2, 1])), expect: /must be 2-D \(lora_A is \[2,4\], lora_B is \[3,2,1\]\)/ },
    { name: 'head weight that is 3-D', tensors: (m) => m.set('base_model.model.classifier.weight', t([2, 4, 1])), expect: /head classifier: weight is \[2,4,1\], expected \[labels, 4\]/ },
    { name: 'head weight that is 1-D', tensors: (m) => m.set('base_model.model.classifier.weight', t([4])), expect: /head classifier: weight is \[4\], expected \[labels, 4\]/ },
    { name: 'head bias that is 2-D', tensors: (m) => m.set('base_model.model.classifier.bias', t([2, 1])), expect: /bias is \[2,1\], expected \[2\]/ },
    { name: 'head bias without a weight', tensors: (m) => m.delete('base_model.model.classifier.weight'), expect: /head classifier has a bias but no weight/ },
    { name: 'head with no outputs', tensors: (m) => { m.set('base_model.model.classifier.weight', t([0, 4])); m.set('base_model.model.classifier.bias', t([0])); }, cfg: { id2label: null }, expect: /head classifier has no outputs/ },
    { name: 'a missing head, modules_to_save naming it among others', tensors: (m) => { m.delete('base_model.model.classifier.weight'); m.delete('base_model.model.classifier.bias'); }, cfg: { modules_to_save: ['score', 'classifier'] }, expect: /modules_to_save names classifier but the file has no classifier\.weight/ },
  ];
  for (const row of bad) {
    it(`refuses: ${row.name}`, () => {
      const m = validTensors();
      row.tensors?.(m);
      assert.throws(() => map(m, row.cfg ?? {}), (e: unknown) => {
        assert.ok(isAppError(e, 'INCOMPATIBLE_ADAPTER'), String(e));
        assert.match((e as Error).message, row.expect);
        return true;
      });
    });
  }
  it('reports every problem at once', () => {
    const m = validTensors();
    m.set('base_model.model.foo', t([1]));
    m.delete('base_model.model.encoder.layer.0.attention.self.query.lora_B.weight');
    assert.throws(() => map(m, { base_model_name_or_path: 'other' }), (e: unknown) => isAppError(e) && e.problems.length === 3);
  });
  it('allowBaseMismatch accepts another base name but still checks dimensions', () => {
    assert.doesNotThrow(() => map(validTensors(), { base_model_name_or_path: 'other' }, { allowBaseMismatch: true }));
    const m = validTensors();
    m.set('base_model.model.encoder.layer.0.attention.self.query.lora_A.weight', t([2, 7]));
    assert.throws(() => map(m, { base_model_name_or_path: 'other' }, { allowBaseMismatch: true }), /d_in 4/);
  });
});

// ---------------------------------------------------------------------------------------
// Memory: an upload is checked without laying anything out; a load writes straight from the
// file bytes into the one SharedArrayBuffer.

/**
 * Runs `fn` counting what it allocates: SharedArrayBuffers, and Float32Arrays with memory of
 * their own (a copy or a decode), i.e. not views of `files` and not of a SharedArrayBuffer.
 */
function countAllocations<T>(fn: () => T, files: ArrayBufferLike[] = []): { value: T; sharedArrayBuffers: number; copies: number } {
  const g = globalThis as Record<string, unknown>;
  const saved = { SharedArrayBuffer: g.SharedArrayBuffer, Float32Array: g.Float32Array };
  const counts = { sharedArrayBuffers: 0, copies: 0 };
  g.SharedArrayBuffer = class extends SharedArrayBuffer {
    constructor(n: number) { super(n); counts.sharedArrayBuffers++; }
  };
  g.Float32Array = class extends Float32Array {
    constructor(...args: any[]) {
      super(...(args as [number]));
      if (!(this.buffer instanceof SharedArrayBuffer) && !files.includes(this.buffer)) counts.copies++;
    }
  };
  try {
    return { value: fn(), ...counts };
  } finally {
    Object.assign(g, saved);
  }
}

/** The valid tensors as a safetensors file (F32 unless `dtype`), with the config as JSON bytes. */
function adapterFiles(over: Record<string, unknown> = {}, dtype: 'F32' | 'F16' = 'F32') {
  const tensors = Object.fromEntries([...validTensors()].map(([k, v]) => [k, { dtype, shape: v.shape, data: v.data }]));
  return { config: Buffer.from(JSON.stringify(cfgJson(over))), model: Buffer.from(writeSafetensors(tensors)) };
}

/** A store that serves one adapter's files from memory, into the loader's read buffer when it passes one. */
function memoryStore(files: { config: Buffer; model: Buffer }, reads: Buffer[] = []): AdapterStore {
  return {
    async read(_id: string, opts: { modelBuffer?: (size: number) => Buffer } = {}) {
      const model = opts.modelBuffer ? opts.modelBuffer(files.model.length) : Buffer.alloc(files.model.length);
      files.model.copy(model);
      reads.push(model);
      return { config: files.config, model, meta: null, bytesOnDisk: files.config.length + files.model.length };
    },
  } as unknown as AdapterStore;
}

describe('memory: check without a layout, load without copies', () => {
  it('planAdapter checks everything and allocates nothing; layOutAdapter allocates one SharedArrayBuffer', () => {
    const cfg = parsePeftConfig(cfgJson(), { maxRank: manifest.maxRank });
    const tensors = validTensors();
    const plan = countAllocations(() => planAdapter('x', manifest, cfg, tensors));
    assert.equal(plan.sharedArrayBuffers, 0);
    assert.equal(plan.copies, 0);
    const laid = countAllocations(() => layOutAdapter(plan.value, 'v1'));
    assert.equal(laid.sharedArrayBuffers, 1);
    assert.equal(laid.copies, 0);
    assert.equal(laid.value.bytes, plan.value.bytes);
    const plain = (w: ReturnType<typeof map>) => JSON.stringify(w, (_k, v: unknown) => (v instanceof Float32Array ? [...v] : v));
    assert.equal(plain(laid.value), plain(map()));
  });

  it('AdapterLoader.check (uploads) validates fully without laying the weights out', () => {
    const files = adapterFiles();
    const loader = new AdapterLoader(memoryStore(files), manifest);
    const c = countAllocations(() => loader.check('x', files), [files.model.buffer]);
    assert.equal(c.sharedArrayBuffers, 0, 'no SharedArrayBuffer');
    assert.equal(c.copies, 0, 'no copy of any tensor');
    // The same count sees copies where there must be some: F16 is decoded.
    const half = adapterFiles({}, 'F16');
    assert.ok(countAllocations(() => loader.check('x', half), [half.model.buffer]).copies > 0);
    assert.equal(c.value.bytes, map().bytes);
    // …and refuses what a load would refuse.
    const nan = adapterFiles();
    nan.model.writeFloatLE(NaN, nan.model.length - 4);
    assert.throws(() => loader.check('x', nan), (e: unknown) => isAppError(e, 'INVALID_SAFETENSORS') && /lora_B\.weight" element 7 is NaN/.test((e as Error).message));
    assert.throws(() => loader.check('x', adapterFiles({ r: 3 })), (e: unknown) => isAppError(e, 'INCOMPATIBLE_ADAPTER'));
  });

  it('AdapterLoader.load: F32 straight from the read buffer into the SharedArrayBuffer; the read buffer is reused and never aliased', async () => {
    const files = adapterFiles();
    const reads: Buffer[] = [];
    const loader = new AdapterLoader(memoryStore(files, reads), manifest);
    await loader.load('x'); // first load: allocates its read buffer
    const w = await loader.load('x');
    // What load() does once the bytes are read (validate, synchronous), counted.
    const again = countAllocations(() => loader.validate('x', { config: files.config, model: reads[1]! }, 'v'), [reads[1]!.buffer]);
    assert.equal(again.sharedArrayBuffers, 1, 'one SharedArrayBuffer per load');
    assert.equal(again.copies, 0, 'no copy of any F32 tensor between the file bytes and the SharedArrayBuffer');
    assert.equal(reads[1]!.buffer, reads[0]!.buffer, 'the second load reads into the first one\'s buffer');
    assert.deepEqual(w, { ...map(), version: w.version });
    // Nothing of the read buffer is kept: scribbling over it changes no weight.
    const before = w.slots.map((s) => (s ? [...s.a, ...s.b] : null));
    reads[1]!.fill(0xff);
    assert.deepEqual(w.slots.map((s) => (s ? [...s.a, ...s.b] : null)), before);
  });

  it('AdapterLoader.load: NaN found during the layout is reported with its tensor and element', async () => {
    const files = adapterFiles();
    files.model.writeFloatLE(Infinity, files.model.length - 8);
    const loader = new AdapterLoader(memoryStore(files), manifest);
    await assert.rejects(loader.load('x'), (e: unknown) => isAppError(e, 'INVALID_SAFETENSORS') && /lora_B\.weight" element 6 is Infinity/.test((e as Error).message));
  });

  it('AdapterLoader.load: F16 adapters load (decoded once, then laid out)', async () => {
    const files = adapterFiles({}, 'F16');
    const w = await new AdapterLoader(memoryStore(files), manifest).load('x');
    assert.deepEqual([...w.slots[0]!.a], [...map().slots[0]!.a]);
  });
});
