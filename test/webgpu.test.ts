/**
 * The WebGPU execution provider against the CPU provider, on whatever WebGPU device this machine
 * has (in CI: Mesa's lavapipe, software Vulkan; see .ci/run and docs/gpu.md). Kept small, since
 * lavapipe is slow: a few encoder rows, the tiny decoder fixture, a few demo-decoder steps.
 * Where no WebGPU adapter exists every test skips, saying why — except under CI=true, where that
 * is a failure.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AdapterLoader } from '../src/adapter/loader.js';
import type { AdapterWeights } from '../src/adapter/lora-weights.js';
import { AdapterStore } from '../src/adapter/store.js';
import { DecoderRunner, type StepOutput } from '../src/generation/decoder-runner.js';
import { generateGreedy, type GreedyRequest } from '../src/generation/greedy.js';
import { SequenceKv } from '../src/generation/kv-cache.js';
import { loadManifest, type ModelManifest } from '../src/model/manifest.js';
import { probeWebGpu } from '../src/runtime/device-io.js';
import { WorkerEngine } from '../src/runtime/engine.js';
import { Batcher, type RowRequest } from '../src/scheduler/batcher.js';
import { DEMO_LLM_ADAPTERS, DEMO_LLM_DIR, TINY_DIR, goldenDiff, readJson, type GoldenRun } from './helpers/decoder.js';
import { DEMO_ADAPTERS, DEMO_ADAPTER_IDS, DEMO_MODEL_DIR, ROOT, loadGolden, maxAbsDiff } from './helpers/demo.js';
import { MODEL_DIR, copyAdapters, postJson, startTestServer } from './helpers/http-harness.js';

const probe = await probeWebGpu();
const skip = probe.ok ? false : `no WebGPU adapter on this machine (${probe.reason}); install a Vulkan driver (docs/gpu.md)`;
const TOL = 1e-3;

describe('WebGPU is there when CI says it must be', () => {
  it('CI=true: the WebGPU fidelity tests ran (a Vulkan device was found)', { skip: process.env.CI === 'true' ? false : 'not CI' }, () => {
    assert.ok(probe.ok, `CI must run the WebGPU tests, but ${probe.ok ? '' : probe.reason}`);
  });
});

async function loadAll(dir: string, manifest: ModelManifest, ids: readonly string[]): Promise<Map<string, AdapterWeights>> {
  const store = new AdapterStore({ dir });
  await store.init();
  const loader = new AdapterLoader(store, manifest);
  const out = new Map<string, AdapterWeights>();
  for (const id of ids) out.set(id, await loader.load(id));
  return out;
}

describe('encoder: WebGPU equals the CPU provider', { skip }, () => {
  const golden = loadGolden();
  let manifest: ModelManifest;
  const engines: Record<'cpu' | 'webgpu', { engine: WorkerEngine; mixed: Batcher; solo: Batcher } | null> = { cpu: null, webgpu: null };
  let weights: Map<string, AdapterWeights>;
  let rows: RowRequest[];

  before(async () => {
    manifest = await loadManifest(DEMO_MODEL_DIR);
    weights = await loadAll(DEMO_ADAPTERS, manifest, DEMO_ADAPTER_IDS);
    for (const ep of ['cpu', 'webgpu'] as const) {
      const engine = await WorkerEngine.start({ modelDir: DEMO_MODEL_DIR, manifest, threads: 1, executionProvider: ep });
      engines[ep] = {
        engine,
        mixed: new Batcher({ engine, maxBatchRows: 64, maxWaitMs: 20, maxQueueRows: 100, padId: 0 }),
        solo: new Batcher({ engine, maxBatchRows: 1, maxWaitMs: 0, maxQueueRows: 100, padId: 0 }),
      };
    }
    // two rows of every adapter and two without one, interleaved
    rows = [];
    for (let i = 0; i < 2; i++) {
      for (const id of DEMO_ADAPTER_IDS) rows.push({ ids: golden.adapters[id]!.ids[i]!, adapter: weights.get(id)! });
      rows.push({ ids: golden.base.ids[i]!, adapter: null });
    }
  });
  after(async () => { await engines.cpu?.engine.close(); await engines.webgpu?.engine.close(); });

  it(`a mixed batch (5 adapters, ranks 8/16, no adapter): logits and embeddings within ${TOL} of the CPU`, async () => {
    const cpu = await engines.cpu!.mixed.submit(rows);
    const gpu = await engines.webgpu!.mixed.submit(rows);
    assert.equal(gpu.length, rows.length, 'one result per row');
    gpu.forEach((g, i) => {
      const c = cpu[i]!;
      if (c.logits) assert.ok(maxAbsDiff(g.logits!, c.logits) < TOL, `row ${i} logits differ by ${maxAbsDiff(g.logits!, c.logits)}`);
      else assert.equal(g.logits, null, `row ${i}: no adapter, no logits`);
      assert.ok(maxAbsDiff(g.embedding!, c.embedding!) < TOL, `row ${i} embedding differs by ${maxAbsDiff(g.embedding!, c.embedding!)}`);
    });
  });

  it('on WebGPU, every row of the mixed batch equals that row run alone', async () => {
    const together = await engines.webgpu!.mixed.submit(rows);
    const alone = await Promise.all(rows.map((r) => engines.webgpu!.solo.submit([r]).then((x) => x[0]!)));
    assert.equal(together.length, rows.length);
    together.forEach((t, i) => {
      const a = alone[i]!;
      if (a.logits) assert.ok(maxAbsDiff(t.logits!, a.logits) < 1e-4, `row ${i} logits`);
      assert.ok(maxAbsDiff(t.embedding!, a.embedding!) < 1e-4, `row ${i} embedding`);
    });
  });

  it('logits stay within 1e-3 of PyTorch on WebGPU (golden rows)', async () => {
    const id = 'lang';
    const g = golden.adapters[id]!;
    const out = await engines.webgpu!.mixed.submit(g.ids.slice(0, 3).map((ids) => ({ ids, adapter: weights.get(id)! })));
    assert.equal(out.length, 3);
    out.forEach((r, i) => assert.ok(maxAbsDiff(r.logits!, g.logits[i]!) < TOL, `row ${i}`));
  });
});

interface TinyGolden { probe_ids: number[]; base: GoldenRun[]; adapters: Record<string, GoldenRun[]> }

describe('decoder: WebGPU equals the CPU provider (KV cache kept on the device)', { skip }, () => {
  const slotted = path.join(TINY_DIR, 'slotted');
  let manifest: ModelManifest;
  let cpu: DecoderRunner;
  let gpu: DecoderRunner;
  let tiny: Map<string, AdapterWeights>;

  before(async () => {
    manifest = await loadManifest(slotted);
    tiny = await loadAll(path.join(TINY_DIR, 'adapters'), manifest, ['tiny-all', 'tiny-qv']);
    cpu = await DecoderRunner.create(slotted, manifest, { threads: 1, executionProvider: 'cpu' });
    gpu = await DecoderRunner.create(slotted, manifest, { threads: 1, executionProvider: 'webgpu' });
  });
  after(async () => { await cpu?.close(); await gpu?.close(); });

  it('greedy: rows of two adapters and the base, finishing at different steps: tokens identical, every step within 1e-3', async () => {
    const reqs: GreedyRequest[] = [
      { promptIds: [1, 17, 42, 99, 7], adapter: tiny.get('tiny-all')!, maxNewTokens: 6 },
      { promptIds: [1, 9, 3], adapter: tiny.get('tiny-qv')!, maxNewTokens: 3 },
      { promptIds: [1, 11, 12, 13], adapter: null, maxNewTokens: 5 },
    ];
    const a = await generateGreedy(cpu, reqs, true);
    const b = await generateGreedy(gpu, reqs, true);
    assert.equal(b.length, 3);
    b.forEach((r, i) => {
      assert.ok(r.tokens.length > 0, `row ${i} generated`);
      assert.deepEqual(r.tokens, a[i]!.tokens, `row ${i} tokens`);
      assert.equal(r.logits.length, a[i]!.logits.length);
      r.logits.forEach((l, s) => assert.ok(maxAbsDiff(l, a[i]!.logits[s]!) < TOL, `row ${i} step ${s}: ${maxAbsDiff(l, a[i]!.logits[s]!)}`));
    });
  });

  it('tiny golden (PyTorch): the base and each adapter within 1e-3, tokens identical', async () => {
    const golden = readJson<TinyGolden>(path.join(TINY_DIR, 'golden.json'));
    const runs: Array<{ g: GoldenRun; adapter: AdapterWeights | null }> = [
      { g: golden.base[0]!, adapter: null },
      ...Object.entries(golden.adapters).map(([id, g]) => ({ g: g[0]!, adapter: tiny.get(id)! })),
    ];
    assert.ok(runs.length >= 3, 'base and two adapters');
    const out = await generateGreedy(gpu, runs.map((r) => ({ promptIds: r.g.prompt_ids, adapter: r.adapter, maxNewTokens: r.g.tokens.length })), true);
    out.forEach((o, i) => {
      const g = runs[i]!.g;
      assert.deepEqual(o.tokens, g.tokens.slice(0, o.tokens.length), `run ${i} tokens`);
      const n = o.tokens.length;
      const d = goldenDiff(golden.probe_ids, { ...g, probe_logits: g.probe_logits.slice(0, n), top_logits: g.top_logits.slice(0, n) }, o.logits);
      assert.ok(d < TOL, `run ${i}: differs from PyTorch by ${d}`);
    });
  });

  it('continuous batching: rows join and leave; the cache moves to the host and back and logits still match the CPU', async () => {
    const ad = [tiny.get('tiny-all')!, tiny.get('tiny-qv')!];
    const mk = () => ({ a: new SequenceKv(manifest.generation!), b: new SequenceKv(manifest.generation!), c: new SequenceKv(manifest.generation!) });
    const kc = mk(), kg = mk();
    // [rows as (seq, tokens, adapter)] per step: a alone, a+b join (b's prompt chunk), a+b decode, a+b decode, b+c (a leaves, c joins), b+c decode
    type Row = [keyof typeof kc, number[], number];
    const steps: Row[][] = [
      [['a', [1, 5, 6, 7], 0]],
      [['a', [8], 0]],
      [['a', [9], 0], ['b', [1, 20, 21], 1]],
      [['a', [10], 0], ['b', [22], 1]],
      [['a', [11], 0], ['b', [23], 1]],
      [['b', [24], 1], ['c', [1, 30], -1]],
      [['b', [25], 1], ['c', [31], -1]],
      [['b', [26], 1], ['c', [32], -1]],
    ];
    const seen: StepOutput['transfer'][] = [];
    for (const [s, rows] of steps.entries()) {
      const oc = await cpu.step(rows.map(([q, t, x]) => ({ kv: kc[q], tokens: t, adapter: x })), ad);
      const og = await gpu.step(rows.map(([q, t, x]) => ({ kv: kg[q], tokens: t, adapter: x })), ad);
      seen.push(og.transfer);
      og.logits.forEach((l, i) => assert.ok(maxAbsDiff(l, oc.logits[i]!) < TOL, `step ${s} row ${i}: ${maxAbsDiff(l, oc.logits[i]!)}`));
      for (const q of ['a', 'b', 'c'] as const) assert.equal(kg[q].length, kc[q].length, `step ${s}: ${q} holds as many positions`);
    }
    assert.deepEqual(seen.map((t) => t.kvOnDevice), [false, true, false, true, true, false, true, true], 'the cache stays on the device while the rows do not change');
    assert.ok(seen[1]!.deviceToHost < seen[2]!.deviceToHost, 'a step whose rows changed downloads the caches');
    // the adapter list is always [tiny-all, tiny-qv]; the bank gains its zero entry when c (no adapter) joins
    assert.deepEqual(seen.map((t) => t.banksReused), [false, true, true, true, true, false, true, true], 'banks are uploaded again only when they change');
    seen.forEach((t, s) => { if (t.kvOnDevice && t.banksReused) assert.ok(t.hostToDevice < 1024, `step ${s}: only ids, positions, mask and index go up (${t.hostToDevice} bytes)`); });
    // after a sync the host cache holds what the CPU cache holds
    await gpu.syncToHost();
    for (const q of ['b', 'c'] as const) {
      assert.equal(kg[q].deviceTokens, 0);
      const L = kc[q].length;
      const K1 = new Float32Array(2 * L * 8), V1 = new Float32Array(2 * L * 8), K2 = new Float32Array(2 * L * 8), V2 = new Float32Array(2 * L * 8);
      kc[q].copyInto(1, K1, V1, 0, L);
      kg[q].copyInto(1, K2, V2, 0, L);
      assert.ok(maxAbsDiff(K1, K2) < TOL && maxAbsDiff(V1, V2) < TOL, `${q}: synced cache equals the CPU's`);
    }
  });
});

describe('demo decoder on WebGPU against PyTorch', { skip }, () => {
  it('translate-it, first golden prompt: 12 greedy steps, tokens identical, logits within 1e-3', async () => {
    const golden = readJson<{ probe_ids: number[]; adapters: Record<string, { unmerged: GoldenRun[] }> }>(path.join(ROOT, 'test/fixtures/golden-llm.json'));
    const manifest = await loadManifest(DEMO_LLM_DIR);
    const adapter = (await loadAll(DEMO_LLM_ADAPTERS, manifest, ['translate-it'])).get('translate-it')!;
    const gpu = await DecoderRunner.create(DEMO_LLM_DIR, manifest, { threads: 1, executionProvider: 'webgpu' });
    try {
      const g = golden.adapters['translate-it']!.unmerged[0]!;
      const [r] = await generateGreedy(gpu, [{ promptIds: g.prompt_ids, adapter, maxNewTokens: 12 }], true);
      const n = r!.tokens.length;
      assert.ok(n > 0);
      assert.deepEqual(r!.tokens, g.tokens.slice(0, n));
      const d = goldenDiff(golden.probe_ids, { ...g, probe_logits: g.probe_logits.slice(0, n), top_logits: g.top_logits.slice(0, n) }, r!.logits);
      assert.ok(d < TOL, `differs from PyTorch by ${d}`);
    } finally {
      await gpu.close();
    }
  });
});

describe('the server with --execution-provider webgpu', { skip }, () => {
  it('serves predict and completions, and its metrics name the provider and the bytes that crossed per run', async () => {
    const dir = await copyAdapters('webgpu');
    const t = await startTestServer({ modelDir: `${MODEL_DIR},${path.join(TINY_DIR, 'slotted')}`, adaptersDir: `${dir},${path.join(TINY_DIR, 'adapters')}`, executionProvider: 'webgpu' }, { dir });
    try {
      const p = await postJson(`${t.url}/v1/predict`, { adapter_id: 'lang', inputs: ['Das Leben ist schön.', 'Bonjour, comment allez-vous ?'] });
      assert.equal(p.status, 200, JSON.stringify(p.body));
      assert.equal(p.body.predictions[0][0].label, 'de');
      const c = await postJson(`${t.url}/v1/completions`, { model: 'tiny-all', prompt: 'hello', max_tokens: 4, temperature: 0 });
      assert.equal(c.status, 200, JSON.stringify(c.body));
      assert.equal(c.body.usage.completion_tokens > 0, true);
      const m = await (await fetch(`${t.url}/metrics`)).text();
      assert.match(m, /adapterhost_execution_provider_info\{provider="webgpu"\} 1/);
      const sum = (engine: string, dir: string) => Number(new RegExp(`adapterhost_device_transfer_bytes_sum\\{engine="${engine}",direction="${dir}"\\} (\\d+)`).exec(m)?.[1] ?? NaN);
      for (const e of ['encoder', 'decoder']) for (const d of ['host_to_device', 'device_to_host']) assert.ok(sum(e, d) > 0, `${e} ${d}: ${sum(e, d)}`);
      assert.match(m, /adapterhost_decoder_steps_kv_on_device_total [1-9]/, 'decode steps of one sequence keep the cache on the device');
      assert.match(m, /adapterhost_decoder_steps_banks_reused_total [1-9]/);
    } finally {
      await t.stop();
    }
  });
});
