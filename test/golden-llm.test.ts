/**
 * The demo decoder and its three generative adapters against PyTorch (factory/decoder/adapters.py
 * writes test/fixtures/golden-llm.json): through the engine with the KV cache, every step's logits
 * within 1e-4 and the 32 greedy tokens identical, for the unmerged model and the merged copy
 * (W + s·B·A); and one mixed batch of every adapter and the base equal to each row alone.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateGreedy, type GreedyRequest } from '../src/generation/greedy.js';
import { DEMO_LLM_ADAPTERS, DEMO_LLM_DIR, goldenDiff, openDecoder, readJson, type GoldenRun } from './helpers/decoder.js';
import { ROOT } from './helpers/demo.js';

interface DemoGolden {
  base_model: string;
  probe_ids: number[];
  adapters: Record<string, { unmerged: GoldenRun[]; merged: GoldenRun[] }>;
  base: GoldenRun[];
}
const golden = readJson<DemoGolden>(path.join(ROOT, 'test/fixtures/golden-llm.json'));
const IDS = ['summarize', 'translate-it', 'riassumi'];

describe('demo decoder against PyTorch (KV cache, greedy)', () => {
  let dec: Awaited<ReturnType<typeof openDecoder>>;
  before(async () => { dec = await openDecoder(DEMO_LLM_DIR, DEMO_LLM_ADAPTERS); });
  after(async () => dec.runner.close());

  it('the golden file covers the base and every demo adapter, 32 greedy steps each', () => {
    assert.equal(golden.base_model, dec.manifest.baseModel);
    assert.deepEqual(Object.keys(golden.adapters).sort(), [...IDS].sort());
    for (const id of IDS) {
      for (const kind of ['unmerged', 'merged'] as const) {
        assert.equal(golden.adapters[id]![kind].length, 3, `${id} ${kind}: 3 prompts`);
        for (const g of golden.adapters[id]![kind]) assert.equal(g.tokens.length, 32);
      }
    }
    assert.ok(golden.base.length >= 2);
  });

  for (const id of IDS) {
    it(`${id}: every step within 1e-4 of PyTorch (unmerged and merged), greedy tokens identical`, async () => {
      const adapter = await dec.loader.load(id);
      const g = golden.adapters[id]!;
      const runs = await generateGreedy(dec.runner, g.unmerged.map((u) => ({ promptIds: u.prompt_ids, adapter, maxNewTokens: 32 })), true);
      assert.equal(runs.length, 3, 'one run per golden prompt');
      assert.equal(g.merged.length, runs.length);
      runs.forEach((r, i) => {
        // Greedy stops at an end-of-sequence token; PyTorch's reference ran 32 steps regardless.
        const n = r.tokens.length;
        assert.ok(n > 0, `${id} prompt ${i}: generated something`);
        assert.equal(r.logits.length, n, `${id} prompt ${i}: one logits row per step`);
        assert.deepEqual(r.tokens, g.unmerged[i]!.tokens.slice(0, n), `${id} prompt ${i}: tokens`);
        assert.ok(n === 32 || dec.manifest.generation!.eosIds.includes(r.tokens[n - 1]!));
        const trim = (x: GoldenRun): GoldenRun => ({ ...x, probe_logits: x.probe_logits.slice(0, n), top_logits: x.top_logits.slice(0, n) });
        const du = goldenDiff(golden.probe_ids, trim(g.unmerged[i]!), r.logits);
        const dm = goldenDiff(golden.probe_ids, trim(g.merged[i]!), r.logits);
        assert.ok(du < 1e-4, `${id} prompt ${i}: unmerged differs by ${du}`);
        assert.ok(dm < 1e-4, `${id} prompt ${i}: merged differs by ${dm}`);
        assert.deepEqual(g.merged[i]!.tokens.slice(0, n), r.tokens, 'the merged copy decodes the same tokens');
      });
    });
  }

  it('the base alone equals PyTorch', async () => {
    const runs = await generateGreedy(dec.runner, golden.base.map((b) => ({ promptIds: b.prompt_ids, adapter: null, maxNewTokens: 32 })), true);
    assert.ok(golden.base.length >= 2);
    assert.equal(runs.length, golden.base.length, 'one run per golden prompt');
    runs.forEach((r, i) => {
      const n = r.tokens.length;
      assert.ok(n > 0, `base prompt ${i}: generated something`);
      assert.equal(r.logits.length, n, `base prompt ${i}: one logits row per step`);
      assert.deepEqual(r.tokens, golden.base[i]!.tokens.slice(0, n));
      const g = { ...golden.base[i]!, probe_logits: golden.base[i]!.probe_logits.slice(0, n), top_logits: golden.base[i]!.top_logits.slice(0, n) };
      assert.ok(goldenDiff(golden.probe_ids, g, r.logits) < 1e-4);
    });
  });

  it('one batch of all three adapters and the base, prompts of different lengths, equals each row alone', async () => {
    const reqs: GreedyRequest[] = [];
    for (const id of IDS) reqs.push({ promptIds: golden.adapters[id]!.unmerged[0]!.prompt_ids, adapter: await dec.loader.load(id), maxNewTokens: 16 });
    reqs.push({ promptIds: golden.base[0]!.prompt_ids, adapter: null, maxNewTokens: 16 });
    assert.ok(new Set(reqs.map((r) => r.promptIds.length)).size > 1, 'prompt lengths differ');
    const together = await generateGreedy(dec.runner, reqs, true);
    assert.equal(together.length, reqs.length, 'one run per request');
    for (const [i, r] of reqs.entries()) {
      const [alone] = await generateGreedy(dec.runner, [r], true);
      assert.deepEqual(together[i]!.tokens, alone!.tokens);
      assert.ok(together[i]!.logits.length > 0, `row ${i}: has steps`);
      assert.equal(together[i]!.logits.length, alone!.logits.length, `row ${i}: same number of steps`);
      together[i]!.logits.forEach((row, s) => {
        let d = 0;
        for (let v = 0; v < row.length; v++) d = Math.max(d, Math.abs(row[v]! - alone!.logits[s]![v]!));
        assert.ok(d < 1e-4, `row ${i} step ${s}: ${d}`);
      });
    }
  });
});
