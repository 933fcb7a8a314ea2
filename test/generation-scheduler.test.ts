import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isAppError, type AppError } from '../src/errors.js';
import { DecoderWorkerEngine } from '../src/generation/decoder-engine.js';
import { argmax, generateGreedy } from '../src/generation/greedy.js';
import { GenerationScheduler, type FinishReason, type StepReport } from '../src/generation/scheduler.js';
import type { AdapterPayload } from '../src/runtime/batch.js';
import { TINY_DIR, openDecoder } from './helpers/decoder.js';

const greedy = { sample: (l: Float32Array) => argmax(l) };

function collect() {
  const tokens: number[] = [];
  let resolve!: (r: { tokens: number[]; reason: FinishReason; error?: AppError }) => void;
  const done = new Promise<{ tokens: number[]; reason: FinishReason; error?: AppError }>((r) => { resolve = r; });
  return { tokens, done, sink: { onToken: (t: number) => { tokens.push(t); return false; }, onFinish: (reason: FinishReason, error?: AppError) => resolve({ tokens, reason, ...(error ? { error } : {}) }) } };
}

describe('generation scheduler (continuous batching, tiny decoder in a worker)', () => {
  let dec: Awaited<ReturnType<typeof openDecoder>>;
  let engine: DecoderWorkerEngine;
  let adapters: Record<string, AdapterPayload>;
  const steps: StepReport[] = [];
  const make = (over: Partial<ConstructorParameters<typeof GenerationScheduler>[0]> = {}) => new GenerationScheduler({
    engine, spec: dec.manifest.generation!, kvBudgetBytes: 8 << 20, maxRunning: 16, maxWaiting: 64, prefillChunk: 64,
    onStep: (r) => steps.push(r), ...over,
  });
  before(async () => {
    dec = await openDecoder(path.join(TINY_DIR, 'slotted'), path.join(TINY_DIR, 'adapters'));
    engine = await DecoderWorkerEngine.start({ modelDir: path.join(TINY_DIR, 'slotted'), manifest: dec.manifest, threads: 1, executionProvider: 'cpu' });
    adapters = { 'tiny-all': await dec.loader.load('tiny-all'), 'tiny-qv': await dec.loader.load('tiny-qv') };
  });
  after(async () => { await engine.close(); await dec.runner.close(); });

  const prompt = (n: number, salt: number) => [1, 3, ...Array.from({ length: n }, (_, i) => 5 + ((i * 37 + salt * 101) % 8000)), 4, 10];

  it('sequences joining at different times, over two adapters and the base, each get what they get alone', async () => {
    const s = make();
    const jobs = Array.from({ length: 9 }, (_, i) => ({
      promptIds: prompt(3 + ((i * 7) % 20), i), adapterId: [null, 'tiny-all', 'tiny-qv'][i % 3] as string | null, maxTokens: 6 + (i % 5),
    }));
    const results: Array<Promise<{ tokens: number[]; reason: FinishReason }>> = [];
    steps.length = 0;
    for (const [i, j] of jobs.entries()) {
      const c = collect();
      s.submit({ ...j, adapter: j.adapterId ? adapters[j.adapterId]! : null, picker: greedy, sink: c.sink });
      results.push(c.done);
      if (i % 3 === 2) await new Promise((r) => setTimeout(r, 15)); // later arrivals join running sequences
    }
    const got = await Promise.all(results);
    for (const [i, j] of jobs.entries()) {
      const [alone] = await generateGreedy(dec.runner, [{ promptIds: j.promptIds, adapter: j.adapterId ? adapters[j.adapterId]! : null, maxNewTokens: j.maxTokens }]);
      assert.deepEqual(got[i]!.tokens, alone!.tokens, `job ${i}`);
      assert.equal(got[i]!.reason, alone!.finish === 'stop' ? 'stop' : 'length');
    }
    assert.ok(steps.some((r) => r.kind === 'decode' && r.distinctAdapters >= 2), 'some decode step mixed adapters');
    assert.ok(steps.some((r) => r.kind === 'decode' && r.rows >= 4), 'decode steps batch several sequences');
    assert.equal(s.stats.kvReservedBytes, 0);
    assert.equal(s.stats.running + s.stats.waiting, 0);
  });

  it('a long prompt is prefilled in chunks with decode steps in between', async () => {
    const s = make({ prefillChunk: 16 });
    steps.length = 0;
    const a = collect();
    s.submit({ promptIds: prompt(4, 1), adapter: null, adapterId: null, maxTokens: 30, picker: greedy, sink: a.sink });
    while (a.tokens.length < 2) await new Promise((r) => setTimeout(r, 1));
    const b = collect();
    s.submit({ promptIds: prompt(100, 2), adapter: adapters['tiny-all']!, adapterId: 'tiny-all', maxTokens: 3, picker: greedy, sink: b.sink });
    await Promise.all([a.done, b.done]);
    const prefills = steps.filter((r) => r.kind === 'prefill' && r.tokens > 10);
    assert.ok(prefills.length >= 6, `the 104-token prompt took ${prefills.length} chunks of ≤ 16`);
    assert.ok(prefills.every((r) => r.tokens <= 16));
    const first = steps.indexOf(prefills[0]!);
    const last = steps.indexOf(prefills[prefills.length - 1]!);
    const between = steps.slice(first, last).filter((r) => r.kind === 'decode').length;
    assert.ok(between >= prefills.length - 1, `decode steps between chunks: ${between}`);
  });

  it('cancelling mid-stream stops within a step and frees the KV reservation', async () => {
    const s = make();
    const ac = new AbortController();
    const c = collect();
    s.submit({ promptIds: prompt(10, 3), adapter: null, adapterId: null, maxTokens: 200, picker: greedy, sink: c.sink, signal: ac.signal });
    while (c.tokens.length < 3) await new Promise((r) => setTimeout(r, 1));
    assert.ok(s.stats.kvReservedBytes > 0);
    ac.abort();
    const r = await c.done;
    assert.equal(r.reason, 'cancelled');
    assert.ok(r.tokens.length < 200);
    assert.equal(s.stats.kvReservedBytes, 0);
    assert.equal(s.stats.kvBytes, 0);
  });

  it('a paused sequence (slow reader) sits out decode steps, keeps its cache, and resumes on poke with the same tokens', async () => {
    const s = make();
    let hold = false;
    const slow = collect();
    const sink = { ...slow.sink, onToken: (t: number) => { slow.tokens.push(t); if (slow.tokens.length === 3) hold = true; return false; }, paused: () => hold };
    const fast = collect();
    const p1 = prompt(6, 11), p2 = prompt(9, 12);
    s.submit({ promptIds: p1, adapter: adapters['tiny-all']!, adapterId: 'tiny-all', maxTokens: 12, picker: greedy, sink });
    s.submit({ promptIds: p2, adapter: null, adapterId: null, maxTokens: 12, picker: greedy, sink: fast.sink });
    const other = await fast.done;
    assert.equal(other.tokens.length, 12, 'the other stream ran to the end');
    assert.equal(slow.tokens.length, 3, 'the paused one did not advance');
    assert.equal(s.stats.running, 1);
    assert.ok(s.stats.kvReservedBytes > 0, 'it keeps its reservation while paused');
    hold = false;
    s.poke();
    const r = await slow.done;
    const [alone] = await generateGreedy(dec.runner, [{ promptIds: p1, adapter: adapters['tiny-all']!, maxNewTokens: 12 }]);
    assert.deepEqual(r.tokens, alone!.tokens);
  });

  it('cancelling a waiting sequence releases no reservation it never held', async () => {
    const one = make().reserveFor(12 + 30);
    const s = make({ kvBudgetBytes: one, maxWaiting: 5 });
    const a = collect(), b = collect(), c = collect();
    const ac = new AbortController();
    const job = (i: number) => ({ promptIds: prompt(8, i), adapter: null, adapterId: null, maxTokens: 30, picker: greedy });
    s.submit({ ...job(1), sink: a.sink });
    s.submit({ ...job(2), sink: b.sink, signal: ac.signal });
    s.submit({ ...job(3), sink: c.sink });
    assert.deepEqual([s.stats.running, s.stats.waiting, s.stats.kvReservedBytes], [1, 2, one]);
    ac.abort();
    assert.equal((await b.done).reason, 'cancelled');
    assert.equal(s.stats.kvReservedBytes, one, 'still exactly the running sequence');
    assert.ok(s.stats.running <= 1, 'the budget still holds one sequence');
    assert.equal((await a.done).tokens.length, 30);
    assert.equal((await c.done).tokens.length, 30);
    assert.equal(s.stats.kvReservedBytes, 0);
  });

  it('admission waits for KV budget; past the queue limit QUEUE_FULL; what can never fit is refused up front', async () => {
    const one = make().reserveFor(12 + 20);
    const s = make({ kvBudgetBytes: one * 2, maxWaiting: 3 });
    const runs = Array.from({ length: 5 }, () => collect());
    const submit = (i: number) => s.submit({ promptIds: prompt(8, i), adapter: null, adapterId: null, maxTokens: 20, picker: greedy, sink: runs[i]!.sink });
    for (let i = 0; i < 5; i++) submit(i);
    assert.deepEqual([s.stats.running, s.stats.waiting], [2, 3], 'two fit the budget, three wait');
    assert.throws(() => s.submit({ promptIds: prompt(8, 9), adapter: null, adapterId: null, maxTokens: 20, picker: greedy, sink: collect().sink }),
      (e: unknown) => isAppError(e, 'QUEUE_FULL'));
    const done = await Promise.all(runs.map((r) => r.done));
    assert.ok(done.every((d) => d.reason === 'length' && d.tokens.length === 20));
    assert.throws(() => s.submit({ promptIds: prompt(8, 1), adapter: null, adapterId: null, maxTokens: 250, picker: greedy, sink: collect().sink }),
      (e: unknown) => isAppError(e, 'BAD_REQUEST') && /context is 256/.test((e as Error).message));
    const tight = make({ kvBudgetBytes: one });
    assert.throws(() => tight.submit({ promptIds: prompt(8, 1), adapter: null, adapterId: null, maxTokens: 100, picker: greedy, sink: collect().sink }),
      (e: unknown) => isAppError(e, 'BAD_REQUEST') && /KV cache/.test((e as Error).message));
  });
});
