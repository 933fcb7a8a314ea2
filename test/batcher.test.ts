/**
 * The micro-batcher's own decisions, exactly: how rows are packed (padding, lengths, one bank
 * entry per distinct adapter, -1 for the base), which rows a batch takes when more wait than
 * fit, how results are cut back per row, admission (QUEUE_FULL), failures and drain. The engine
 * here is a scripted stand-in that records each batch and answers with values that name their
 * row, and that a test can hold (a gate) so what waits where never depends on timing. The real
 * engine behind the batcher is covered by test/engine.test.ts and test/adapter-forms.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AdapterWeights } from '../src/adapter/lora-weights.js';
import { isAppError } from '../src/errors.js';
import type { BatchInput, BatchOutput } from '../src/runtime/batch.js';
import type { Engine } from '../src/runtime/engine.js';
import { Batcher, type BatchReport, type BatcherOptions, type RowRequest } from '../src/scheduler/batcher.js';

const HIDDEN = 3;
const PAD = 7;

/** Records batches; logits[r, l] = 100·(first id of row r) + l, embedding[r, h] = first id + h/10. */
class ScriptedEngine implements Engine {
  readonly batches: BatchInput[] = [];
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;
  fail: Error | null = null;
  transfer: BatchOutput['transfer'] | undefined;
  hold(): void { this.gate = new Promise((r) => { this.open = r; }); }
  release(): void { this.open?.(); this.gate = null; }
  async run(b: BatchInput): Promise<BatchOutput> {
    this.batches.push(b);
    if (this.gate) await this.gate;
    if (this.fail) throw this.fail;
    let L = 1;
    for (const a of b.adapters) for (const h of a.heads) if (h && h.labels > L) L = h.labels;
    const logits = new Float32Array(b.batch * L);
    const embeddings = new Float32Array(b.batch * HIDDEN);
    for (let r = 0; r < b.batch; r++) {
      const first = b.inputIds[r * b.seqLen]!;
      for (let l = 0; l < L; l++) logits[r * L + l] = 100 * first + l;
      for (let h = 0; h < HIDDEN; h++) embeddings[r * HIDDEN + h] = first + h / 10;
    }
    return { logits, labels: L, embeddings, hidden: HIDDEN, runMs: 2, feedMs: 1, ...(this.transfer ? { transfer: this.transfer } : {}) };
  }
  async close(): Promise<void> {}
}

function adapter(id: string, labels: number | null): AdapterWeights {
  return {
    id, version: `${id}-v1`, labels: null, maxRank: 1, bytes: 1, slots: [null],
    heads: [labels === null ? null : { labels, weight: new Float32Array(labels), bias: new Float32Array(labels) }],
  };
}

const tick = () => new Promise((r) => setImmediate(r));
const row = (ids: number[], a: AdapterWeights | null = null): RowRequest => ({ ids, adapter: a });

function make(opts: Partial<BatcherOptions> = {}) {
  const engine = new ScriptedEngine();
  const reports: BatchReport[] = [];
  const batcher = new Batcher({ engine, maxBatchRows: 64, maxWaitMs: 0, maxQueueRows: 100, padId: PAD, onBatch: (r) => reports.push(r), ...opts });
  return { engine, batcher, reports };
}

describe('Batcher', () => {
  test('packs one batch: right-padded ids, lengths, one entry per distinct adapter (first-seen order), -1 for the base', async () => {
    const { engine, batcher, reports } = make();
    const a = adapter('a', 2);
    const b = adapter('b', 4);
    const out = await batcher.submit([row([1, 2, 3], a), row([4], null), row([5, 6], b), row([8, 9, 10, 11], a)]);
    assert.equal(engine.batches.length, 1);
    const x = engine.batches[0]!;
    assert.equal(x.batch, 4);
    assert.equal(x.seqLen, 4);
    assert.deepEqual([...x.inputIds], [1, 2, 3, PAD, 4, PAD, PAD, PAD, 5, 6, PAD, PAD, 8, 9, 10, 11]);
    assert.deepEqual([...x.lengths], [3, 1, 2, 4]);
    assert.deepEqual([...x.rowAdapter], [0, -1, 1, 0]);
    assert.deepEqual(x.adapters.map((p) => [p.id, p.version]), [['a', 'a-v1'], ['b', 'b-v1']]);
    assert.equal(x.adapters[0]!.slots, a.slots, 'the payload shares the adapter\'s weights (no copy)');
    assert.equal(x.adapters[1]!.heads, b.heads);
    // Logits cut to each adapter's own label count out of the padded width (4); none for the base.
    assert.deepEqual(out.map((r) => (r.logits ? [...r.logits] : null)), [[100, 101], null, [500, 501, 502, 503], [800, 801]]);
    assert.deepEqual(out.map((r) => [...r.embedding!].map((v) => Math.round(v * 10) / 10)), [[1, 1.1, 1.2], [4, 4.1, 4.2], [5, 5.1, 5.2], [8, 8.1, 8.2]]);
    assert.equal(reports.length, 1);
    assert.deepEqual({ ...reports[0]!, queueWaits: reports[0]!.queueWaits.length },
      { rows: 4, distinctAdapters: 2, queueWaits: 4, runSeconds: 0.002, feedSeconds: 0.001, paddedTokens: 16, realTokens: 10 });
    assert.ok(reports[0]!.queueWaits.every((w) => w >= 0));
  });

  test('an adapter without a head gets null logits even when others in the batch have one', async () => {
    const { batcher } = make();
    const out = await batcher.submit([row([2], adapter('headless', null)), row([3], adapter('c', 3))]);
    assert.equal(out[0]!.logits, null);
    assert.deepEqual([...out[1]!.logits!], [300, 301, 302]);
  });

  test('more rows than fit: the oldest row goes first, with the rows nearest its length; ties in arrival order', async () => {
    const { engine, batcher } = make({ maxBatchRows: 3 });
    engine.hold();
    const first = batcher.submit([row([1])]); // runs at once and is held in the engine
    await tick();
    assert.equal(engine.batches.length, 1);
    // Waiting: lengths 40, 3, 20, 41, 5, 38 (buckets of 16 tokens: 3, 1, 2, 3, 1, 3).
    const lens = [40, 3, 20, 41, 5, 38];
    const waiting = lens.map((n, i) => batcher.submit([row(Array.from({ length: n }, () => 10 + i))]));
    assert.equal(batcher.queuedRows, 6);
    engine.release();
    await Promise.all([first, ...waiting]);
    const firstIds = engine.batches.map((b) => Array.from({ length: b.batch }, (_, r) => b.inputIds[r * b.seqLen]! - 10));
    // The oldest waiting row (40, bucket 3) takes the other bucket-3 rows (41, 38); then 3 takes 5 and 20.
    assert.deepEqual(firstIds.slice(1), [[0, 3, 5], [1, 2, 4]]);
    assert.deepEqual(engine.batches.slice(1).map((b) => b.seqLen), [41, 20]);
  });

  test('grouping is by 16-token bucket, not by nearest length; ties at the cut go to the earlier row', async () => {
    const { engine, batcher } = make({ maxBatchRows: 2 });
    engine.hold();
    const first = batcher.submit([row([1])]);
    await tick();
    // Oldest waiting: 17 tokens (bucket 2). 16 tokens is nearer in length but bucket 1; 32 is bucket 2.
    const a = [17, 16, 32].map((n, i) => batcher.submit([row(Array.from({ length: n }, () => 10 + i))]));
    engine.release();
    await Promise.all([first, ...a]);
    const ids = (b: BatchInput) => Array.from({ length: b.batch }, (_, r) => b.inputIds[r * b.seqLen]! - 10);
    assert.deepEqual(engine.batches.slice(1).map(ids), [[0, 2], [1]]);

    const second = make({ maxBatchRows: 2 });
    second.engine.hold();
    const held = second.batcher.submit([row([1])]);
    await tick();
    // Three rows in one bucket, two fit: the two that came first.
    const b = [40, 41, 38].map((n, i) => second.batcher.submit([row(Array.from({ length: n }, () => 10 + i))]));
    second.engine.release();
    await Promise.all([held, ...b]);
    assert.deepEqual(second.engine.batches.slice(1).map(ids), [[0, 1], [2]]);
  });

  test('the report: queue waits in seconds, no longer than the request took; the engine\'s transfer figures passed on', async () => {
    const { engine, batcher, reports } = make();
    engine.transfer = { hostToDevice: 123, deviceToHost: 45 };
    const t0 = performance.now();
    await batcher.submit([row([1]), row([2, 3])]);
    const took = (performance.now() - t0) / 1000;
    assert.equal(reports.length, 1);
    assert.equal(reports[0]!.queueWaits.length, 2);
    for (const w of reports[0]!.queueWaits) assert.ok(w >= 0 && w <= took, `wait ${w} s within the ${took} s the request took`);
    assert.deepEqual(reports[0]!.transfer, { hostToDevice: 123, deviceToHost: 45 });
    engine.transfer = undefined;
    await batcher.submit([row([4])]);
    assert.equal(reports[1]!.transfer, undefined);
  });

  test('a full batch runs at once; a partial one waits up to maxWaitMs, and drain() sends it without waiting', { timeout: 10_000 }, async () => {
    const { engine, batcher } = make({ maxBatchRows: 3, maxWaitMs: 60_000 });
    const full = batcher.submit([row([1]), row([2]), row([3])]);
    await tick();
    assert.equal(engine.batches.length, 1, 'maxBatchRows rows: no wait');
    await full;
    const partial = batcher.submit([row([4]), row([5])]);
    await tick();
    assert.equal(engine.batches.length, 1, 'two rows wait for company');
    assert.equal(batcher.queuedRows, 2);
    assert.equal(batcher.busy, true);
    await batcher.drain();
    assert.equal(engine.batches.length, 2);
    assert.equal((await partial).length, 2);
    assert.equal(batcher.busy, false);
  });

  test('the wait ends by itself: rows run once the oldest has waited maxWaitMs', async () => {
    const { engine, batcher } = make({ maxBatchRows: 8, maxWaitMs: 5 });
    const out = await batcher.submit([row([1]), row([2])]);
    assert.equal(out.length, 2);
    assert.equal(engine.batches.length, 1);
  });

  test('admission: all rows of a request or none; QUEUE_FULL (Retry-After) past maxQueueRows, exactly at the limit', async () => {
    const { engine, batcher } = make({ maxQueueRows: 4, maxBatchRows: 1 });
    engine.hold();
    const held = batcher.submit([row([1])]);
    await tick();
    assert.equal(batcher.queuedRows, 0, 'the first row is in the engine, not in the queue');
    const three = batcher.submit([row([2]), row([3]), row([4])]);
    await assert.rejects(batcher.submit([row([5]), row([6])]), (e: unknown) => {
      assert.ok(isAppError(e, 'QUEUE_FULL'));
      assert.equal(e.headers?.['Retry-After'], '1');
      assert.match(e.message, /3 rows waiting, limit 4/);
      return true;
    });
    assert.equal(batcher.queuedRows, 3, 'the refused request left nothing behind');
    const fourth = batcher.submit([row([7])]); // 3 + 1 = 4: still admitted
    assert.equal(batcher.queuedRows, 4);
    await assert.rejects(batcher.submit([row([8])]), (e: unknown) => isAppError(e, 'QUEUE_FULL'));
    engine.release();
    assert.equal((await three).length, 3);
    await Promise.all([held, fourth]);
    assert.equal(engine.batches.length, 5);
  });

  test('an engine failure rejects every row of that batch with its error; the next batch runs', async () => {
    const { engine, batcher } = make({ maxBatchRows: 2 });
    engine.hold();
    const boom = new Error('engine said no');
    const a = batcher.submit([row([1]), row([2])]);
    await tick();
    engine.fail = boom;
    const b = batcher.submit([row([3])]); // queued behind a
    engine.release();
    await assert.rejects(a, (e) => e === boom);
    await assert.rejects(b, (e) => e === boom);
    engine.fail = null;
    assert.equal((await batcher.submit([row([4])])).length, 1);
    assert.equal(batcher.busy, false);
  });

  test('drain: refuses new rows with SHUTTING_DOWN at once, resolves only after every admitted row has its answer', async () => {
    const { engine, batcher } = make({ maxBatchRows: 1 });
    engine.hold();
    const admitted = [batcher.submit([row([1])]), batcher.submit([row([2])])];
    await tick();
    let drained = false;
    const draining = batcher.drain().then(() => { drained = true; });
    await assert.rejects(batcher.submit([row([3])]), (e: unknown) => isAppError(e, 'SHUTTING_DOWN') && /shutting down/.test((e as Error).message));
    await tick();
    assert.equal(drained, false, 'rows are still in flight');
    engine.release();
    await draining;
    for (const p of admitted) assert.equal((await p).length, 1);
    assert.equal(engine.batches.length, 2);
    await batcher.drain(); // idle: resolves at once
  });
});
