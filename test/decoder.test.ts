import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, copyFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Tokenizer } from '@huggingface/tokenizers';
import { isAppError } from '../src/errors.js';
import { generateGreedy, type GreedyRequest } from '../src/generation/greedy.js';
import { SequenceKv } from '../src/generation/kv-cache.js';
import { loadManifest } from '../src/model/manifest.js';
import { prepareModel, type PrepareOptions } from '../src/model/prepare.js';
import { DEMO_EXPORT, ROOT } from './helpers/demo.js';
import { TINY_DIR, goldenDiff, openDecoder, readJson, type GoldenRun } from './helpers/decoder.js';

interface TinyGolden { probe_ids: number[]; base: GoldenRun[]; adapters: Record<string, GoldenRun[]> }
const golden = readJson<TinyGolden>(path.join(TINY_DIR, 'golden.json'));

const tinyOpts = (out: string): PrepareOptions => ({
  modelPath: path.join(TINY_DIR, 'export/model.onnx'),
  tokenizerPath: path.join(TINY_DIR, 'export/tokenizer.json'),
  targets: [], heads: [], maxRank: 16, baseModel: 'tiny-llama', task: 'text-generation', maxLength: 256, outDir: out,
});

describe('prepare for decoders', () => {
  let tmp: string;
  before(async () => { tmp = await mkdtemp(path.join(os.tmpdir(), 'ah-decoder-')); });
  after(async () => rm(tmp, { recursive: true, force: true }));

  it('a fresh prepare of the tiny plain export reproduces the committed slotted model byte for byte', async () => {
    const out = path.join(tmp, 'fresh');
    const m = await prepareModel(tinyOpts(out));
    const committed = await loadManifest(path.join(TINY_DIR, 'slotted'));
    assert.deepEqual(m, committed);
    assert.deepEqual(await readFile(path.join(out, 'model.onnx')), await readFile(path.join(TINY_DIR, 'slotted/model.onnx')));
    assert.equal(m.task, 'text-generation');
    assert.equal(m.loraSlots.length, 2 * 7, 'every projection of both layers is slotted by default');
    assert.deepEqual(m.targets, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    const g = m.generation!;
    assert.deepEqual([g.layers, g.kvHeads, g.headDim, g.vocabSize, g.maxPositions], [2, 2, 8, 8192, 256]);
    assert.deepEqual([g.bosId, g.eosIds, g.padId], [1, [2, 4], 0]);
    assert.match(g.chatTemplate ?? '', /<\|im_start\|>/);
    assert.deepEqual(g.pastKeys, ['past_key_values.0.key', 'past_key_values.1.key']);
    assert.deepEqual(g.presentValues, ['present.0.value', 'present.1.value']);
  });

  it('slots only the targets it is given', async () => {
    const m = await prepareModel({ ...tinyOpts(path.join(tmp, 'qv')), targets: ['q_proj', 'v_proj'] });
    assert.deepEqual(m.loraSlots.map((s) => s.module), [
      'model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj',
    ]);
  });

  const refusals: Array<{ name: string; change: (o: PrepareOptions) => void | Promise<void>; expect: RegExp }> = [
    {
      name: 'a graph without past inputs',
      change: (o) => { o.modelPath = path.join(DEMO_EXPORT, 'model.onnx'); o.tokenizerPath = path.join(TINY_DIR, 'export/tokenizer.json'); },
      expect: /no past_key_values\.\{i\}\.key inputs: it has no KV cache/,
    },
    { name: 'heads (modules_to_save) on a decoder', change: (o) => { o.heads = ['lm_head']; }, expect: /text-generation base has no head slots/ },
    { name: 'a decoder prepared as an encoder', change: (o) => { o.task = 'sequence-classification'; o.targets = ['q_proj']; }, expect: /past_key_values inputs: it is a decoder/ },
    { name: 'a target that is no projection', change: (o) => { o.targets = ['q_proj', 'rotary']; }, expect: /target "rotary" matches no linear layer/ },
    {
      name: 'no end-of-sequence token',
      change: async (o) => {
        const dir = path.join(tmp, 'noeos');
        await mkdir(dir, { recursive: true });
        await copyFile(path.join(TINY_DIR, 'export/tokenizer.json'), path.join(dir, 'tokenizer.json'));
        await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|bos|>' }));
        o.tokenizerPath = path.join(dir, 'tokenizer.json');
      },
      expect: /no end-of-sequence token/,
    },
  ];
  for (const row of refusals) {
    it(`refuses: ${row.name}`, async () => {
      const o = tinyOpts(path.join(tmp, 'x'));
      await row.change(o);
      await assert.rejects(prepareModel(o), (e: unknown) => {
        assert.ok(isAppError(e, 'INVALID_MODEL'), String(e));
        assert.match((e as Error).message, row.expect);
        return true;
      });
    });
  }
});

describe('decoder engine (tiny random decoder against PyTorch)', () => {
  let dec: Awaited<ReturnType<typeof openDecoder>>;
  before(async () => { dec = await openDecoder(path.join(TINY_DIR, 'slotted'), path.join(TINY_DIR, 'adapters')); });
  after(async () => dec.runner.close());

  const cases = () => [
    ...golden.base.map((g) => ({ id: null as string | null, g })),
    ...Object.entries(golden.adapters).flatMap(([id, runs]) => runs.map((g) => ({ id: id as string | null, g }))),
  ];
  const request = async (id: string | null, g: GoldenRun): Promise<GreedyRequest> => ({
    promptIds: g.prompt_ids, adapter: id ? await dec.loader.load(id) : null, maxNewTokens: g.tokens.length,
  });

  it('each prompt alone: every step with the KV cache equals PyTorch within 1e-4, greedy tokens identical', async () => {
    const all = cases();
    assert.equal(all.length, 6, 'base and two adapters, two prompts each');
    for (const { id, g } of all) {
      const [out] = await generateGreedy(dec.runner, [await request(id, g)], true);
      assert.deepEqual(out!.tokens, g.tokens, `${id ?? 'base'}: greedy tokens`);
      assert.ok(goldenDiff(golden.probe_ids, g, out!.logits) < 1e-4, `${id ?? 'base'}: logits`);
    }
  });

  it('one batch mixing adapters, no adapter, and prompts of different lengths gives each row what it gets alone', async () => {
    const all = cases();
    const reqs = await Promise.all(all.map(({ id, g }) => request(id, g)));
    assert.notEqual(reqs[0]!.promptIds.length, reqs[1]!.promptIds.length);
    const together = await generateGreedy(dec.runner, reqs, true);
    for (let i = 0; i < all.length; i++) {
      const [alone] = await generateGreedy(dec.runner, [reqs[i]!], true);
      assert.deepEqual(together[i]!.tokens, alone!.tokens);
      assert.equal(together[i]!.logits.length, alone!.logits.length);
      together[i]!.logits.forEach((row, s) => {
        let d = 0;
        for (let v = 0; v < row.length; v++) d = Math.max(d, Math.abs(row[v]! - alone!.logits[s]![v]!));
        assert.ok(d < 1e-4, `row ${i} step ${s}: ${d}`);
      });
      assert.ok(goldenDiff(golden.probe_ids, all[i]!.g, together[i]!.logits) < 1e-4);
    }
  });

  it('a prompt fed in chunks (chunked prefill) gives the same logits as one prefill', async () => {
    const g = golden.adapters['tiny-all']![1]!;
    const adapter = await dec.loader.load('tiny-all');
    const m = dec.manifest.generation!;
    const kv = new SequenceKv(m);
    const ids = g.prompt_ids;
    await dec.runner.step([{ kv, tokens: ids.slice(0, 5), adapter: 0 }], [adapter]);
    const { logits } = await dec.runner.step([{ kv, tokens: ids.slice(5), adapter: 0 }], [adapter]);
    assert.equal(kv.length, ids.length);
    assert.equal(logits.length, 1, 'one row of logits');
    assert.ok(g.first_logits.length > 0);
    assert.equal(logits[0]!.length, g.first_logits.length, 'the whole vocabulary is compared');
    let d = 0;
    g.first_logits.forEach((v, k) => { d = Math.max(d, Math.abs(logits[0]![k]! - v)); });
    assert.ok(d < 1e-4, `chunked prefill differs by ${d}`);
  });

  it('the KV cache holds within one block of 2 · layers · kv_heads · head_dim · 4 bytes per token', async () => {
    const m = dec.manifest.generation!;
    const per = SequenceKv.bytesPerToken(m);
    assert.equal(per, 2 * 2 * 2 * 8 * 4);
    const kv = new SequenceKv(m);
    assert.equal(kv.bytes, 0);
    const ids = golden.base[1]!.prompt_ids; // 12 tokens
    await dec.runner.step([{ kv, tokens: ids.slice(0, 5), adapter: -1 }], []);
    assert.deepEqual([kv.length, kv.bytes], [5, 16 * per], 'one block of 16 tokens');
    await dec.runner.step([{ kv, tokens: ids.slice(5), adapter: -1 }], []);
    await dec.runner.step([{ kv, tokens: ids.slice(0, 6), adapter: -1 }], []);
    assert.deepEqual([kv.length, kv.bytes], [18, 32 * per], 'grown by one block, not doubled');
    assert.ok(kv.bytes / (kv.length * per) <= 32 / 18);
    kv.clear();
    assert.equal(kv.bytes, 0);
  });

  it('a decoder adapter with modules_to_save (lm_head) is refused, naming the module', async () => {
    const { AdapterStore } = await import('../src/adapter/store.js');
    const { AdapterLoader } = await import('../src/adapter/loader.js');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ah-dec-mts-'));
    try {
      await mkdir(path.join(dir, 'with-head'));
      const cfg = JSON.parse(await readFile(path.join(TINY_DIR, 'adapters/tiny-qv/adapter_config.json'), 'utf8'));
      cfg.modules_to_save = ['lm_head'];
      await writeFile(path.join(dir, 'with-head/adapter_config.json'), JSON.stringify(cfg));
      const st = await readFile(path.join(TINY_DIR, 'adapters/tiny-qv/adapter_model.safetensors'));
      await writeFile(path.join(dir, 'with-head/adapter_model.safetensors'), st);
      const store = new AdapterStore({ dir });
      await store.init();
      await assert.rejects(new AdapterLoader(store, dec.manifest).load('with-head'), (e: unknown) => {
        assert.match((e as Error).message, /modules_to_save \(lm_head\) is not supported on a text-generation base/);
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('decoder tokenizer (byte-level BPE) parity', () => {
  const fixture = readJson<Array<{ text: string; ids: number[] }>>(path.join(ROOT, 'test/fixtures/tokenizer-parity-llm.json'));
  const tok = new Tokenizer(readJson(path.join(TINY_DIR, 'export/tokenizer.json')), {});

  it('@huggingface/tokenizers gives the ids of the factory\'s reference encoder, and decodes back exactly', () => {
    assert.ok(fixture.length >= 10);
    assert.ok(fixture.some((f) => /città|perché/.test(f.text)), 'the fixture has Italian accents');
    for (const { text, ids } of fixture) {
      const got = tok.encode(text, { add_special_tokens: false }).ids;
      assert.deepEqual(got, ids, JSON.stringify(text));
      if (got.length > 0) assert.equal(tok.decode(got, { skip_special_tokens: false }), text);
    }
  });
});
