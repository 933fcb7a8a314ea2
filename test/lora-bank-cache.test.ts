/**
 * The decoder keeps a step's LoRA banks while its adapters repeat (any provider; on the CPU it
 * saves rebuilding them, on WebGPU also the upload): reused only for the same ids, versions,
 * order and zero entry, and a replaced adapter (same id, new version) is never served stale.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AdapterLoader } from '../src/adapter/loader.js';
import type { AdapterWeights } from '../src/adapter/lora-weights.js';
import { AdapterStore } from '../src/adapter/store.js';
import { DecoderRunner } from '../src/generation/decoder-runner.js';
import { SequenceKv } from '../src/generation/kv-cache.js';
import { loadManifest, type ModelManifest } from '../src/model/manifest.js';
import type { AdapterPayload } from '../src/runtime/batch.js';
import { bankKey } from '../src/runtime/bank-cache.js';
import { TINY_DIR } from './helpers/decoder.js';
import { maxAbsDiff } from './helpers/demo.js';

describe('bankKey', () => {
  const a = { id: 'a', version: '1', slots: [], heads: [] };
  const b = { id: 'b', version: '1', slots: [], heads: [] };
  it('names the adapters in order, their versions and the zero entry', () => {
    assert.equal(bankKey([a, b], false), bankKey([a, b], false));
    assert.notEqual(bankKey([a, b], false), bankKey([b, a], false));
    assert.notEqual(bankKey([a], false), bankKey([a], true));
    assert.notEqual(bankKey([a], false), bankKey([{ ...a, version: '2' }], false));
    assert.equal(bankKey([a, { slots: [], heads: [] }], false), null, 'an adapter without an id is never cached');
    const slot = (x: number) => ({ rank: 1, a: Float32Array.of(1, x), b: Float32Array.of(2, 3) });
    assert.notEqual(bankKey([{ ...a, slots: [slot(1)] }], false), bankKey([{ ...a, slots: [slot(5)] }], false), 'other weights under the same version');
  });
});

describe('decoder LoRA banks across steps (CPU provider)', () => {
  const slotted = path.join(TINY_DIR, 'slotted');
  let manifest: ModelManifest;
  let runner: DecoderRunner;
  let v1: AdapterWeights;
  let v2: AdapterWeights;

  before(async () => {
    manifest = await loadManifest(slotted);
    const store = new AdapterStore({ dir: path.join(TINY_DIR, 'adapters') });
    await store.init();
    v1 = await new AdapterLoader(store, manifest).load('tiny-all');
    // the same id replaced by other weights: B doubled
    v2 = { ...v1, version: `${v1.version}-replaced`, slots: v1.slots.map((s) => s && { ...s, b: s.b.map((x) => 2 * x) }) };
    runner = await DecoderRunner.create(slotted, manifest, { threads: 1, executionProvider: 'cpu' });
  });
  after(async () => runner?.close());

  const kv = () => new SequenceKv(manifest.generation!);
  const alone = async (adapter: AdapterPayload, tokens: number[]) => {
    const r = await DecoderRunner.create(slotted, manifest, { threads: 1, executionProvider: 'cpu' });
    try { return (await r.step([{ kv: kv(), tokens, adapter: 0 }], [adapter])).logits[0]!; } finally { await r.close(); }
  };

  it('reused while the adapters repeat, rebuilt when they change; outputs equal a fresh runner', async () => {
    const s = kv();
    const first = await runner.step([{ kv: s, tokens: [1, 5, 6], adapter: 0 }], [v1]);
    const second = await runner.step([{ kv: s, tokens: [7], adapter: 0 }], [v1]);
    assert.equal(first.transfer.banksReused, false);
    assert.equal(second.transfer.banksReused, true);
    const withBase = await runner.step([{ kv: s, tokens: [8], adapter: 0 }, { kv: kv(), tokens: [1, 9], adapter: -1 }], [v1]);
    assert.equal(withBase.transfer.banksReused, false, 'a row without an adapter adds the zero entry');
    const replaced = await runner.step([{ kv: kv(), tokens: [1, 5, 6], adapter: 0 }], [v2]);
    assert.equal(replaced.transfer.banksReused, false, 'a new version of the same id is rebuilt');
    const ref2 = await alone(v2, [1, 5, 6]);
    const ref1 = await alone(v1, [1, 5, 6]);
    assert.ok(maxAbsDiff(ref1, ref2) > 1e-3, 'the replaced weights change the output');
    assert.ok(maxAbsDiff(replaced.logits[0]!, ref2) < 1e-6, 'served with the new weights');
    assert.ok(maxAbsDiff(first.logits[0]!, ref1) < 1e-6);
    for (const t of [first, second, withBase, replaced]) assert.deepEqual([t.transfer.hostToDevice, t.transfer.deviceToHost, t.transfer.kvOnDevice], [0, 0, false], 'nothing crosses to a device on the CPU');
  });

  it('payloads without an id are rebuilt every step', async () => {
    const plain: AdapterPayload = { slots: v1.slots, heads: v1.heads };
    const s = kv();
    await runner.step([{ kv: s, tokens: [1, 5], adapter: 0 }], [plain]);
    const again = await runner.step([{ kv: s, tokens: [6], adapter: 0 }], [plain]);
    assert.equal(again.transfer.banksReused, false);
  });
});
