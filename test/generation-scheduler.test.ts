import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { AppError, isAppError } from '../src/errors.js';
import { DecoderWorkerEngine } from '../src/generation/decoder-engine.js';
import { argmax, generateGreedy } from '../src/generation/greedy.js';
import { GenerationScheduler, type FinishReason, type SequenceSink, type StepReport, type TokenPicker } from '../src/generation/scheduler.js';
import type { AdapterPayload } from '../src/runtime/batch.js';
import { TINY_DIR, openDecoder } from './helpers/decoder.js';
import { RecordingEngine } from './helpers/recording-engine.js';

const greedy = { sample: (l: Float32Array) => argmax(l) };

function collect() {
  const tokens: number[] = [];
  let resolve!: (r: { tokens: number[]; reason: FinishReason; error?: AppError }) => void;
  const done = new Promise<{ tokens: number[]; reason: FinishReason; error?: AppError }>((r) => { resolve = r; });
  return { tokens, done, sink: { onToken: (t: number) => { tokens.push(t); return false; }, onFinish: (reason: FinishReason, error?: AppError) => resolve({ tokens, reason, ...(error ? { error } : {}) }) } };
}

type Finished = { tokens: number[]; reason: FinishReason; error?: AppError };

/**
 * A sink that keeps its tokens and how it finished. `onToken` sees the tokens so far (this one
 * included) and returns true to stop, or throws; `onFinish` runs after the finish is recorded.
 */
function track(o: { onToken?: (tokens: readonly number[]) => boolean; onFinish?: () => void; paused?: () => boolean } = {}) {
  const tokens: number[] = [];
  let finished: Finished | null = null;
  let resolve!: (r: Finished) => void;
  const done = new Promise<Finished>((r) => { resolve = r; });
  const sink: SequenceSink = {
    onToken: (t) => { tokens.push(t); return o.onToken ? o.onToken(tokens) : false; },
    onFinish: (reason, error) => { finished = { tokens, reason, ...(error ? { error } : {}) }; o.onFinish?.(); resolve(finished); },
    ...(o.paused ? { paused: o.paused } : {}),
  };
  return { tokens, done, sink, get finished(): Finished | null { return finished; } };
}

/** An error's code, status, message and headers, for exact comparison. */
const plain = (e: AppError | undefined) => e && { code: e.code, status: e.status, message: e.message, headers: { ...e.headers } };

/** What `f` threw, as {@link plain} (or a string saying it threw something else, or nothing). */
function errorOf(f: () => void): ReturnType<typeof plain> | string {
  try { f(); } catch (e) { return e instanceof AppError ? plain(e) : `not an AppError: ${String(e)}`; }
  return 'did not throw';
}

/** Lets already-queued microtasks run (no timers, no I/O) until `cond` holds or `max` turns passed; returns cond(). */
async function turnsUntil(cond: () => boolean, max = 1000): Promise<boolean> {
  for (let i = 0; i < max && !cond(); i++) await null;
  return cond();
}

/** What `p` resolved to once every queued microtask has run (before the event loop's next turn), or 'pending'. */
function settledNow<T>(p: Promise<T>): Promise<T | 'pending'> {
  return Promise.race([p, new Promise<'pending'>((r) => setImmediate(() => r('pending')))]);
}

/**
 * For one test, setTimeout records its delay and never fires. The scheduler's only timer is the
 * fallback that rechecks a sleeping loop; with it gone a missing wake-up cannot hide behind it,
 * and `sleeps` counts how often the loop went to sleep (`slept` resolves on the first time).
 */
function trapTimers(t: TestContext): { sleeps: number[]; slept: Promise<void> } {
  const sleeps: number[] = [];
  let first!: () => void;
  const slept = new Promise<void>((r) => { first = r; });
  const fake = (_f: () => void, ms?: number) => {
    sleeps.push(ms ?? 0);
    first();
    const h = { unref: () => h, ref: () => h, hasRef: () => false };
    return h;
  };
  t.mock.method(globalThis, 'setTimeout', fake as unknown as typeof setTimeout);
  return { sleeps, slept };
}

/** Prompt ids of exactly `n` tokens, none of them special. */
const flat = (n: number, salt: number) => Array.from({ length: n }, (_, i) => 5 + ((i * 37 + salt * 101) % 8000));
const shape = (r: StepReport) => [r.kind, r.rows, r.distinctAdapters, r.tokens];

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
    const jobs = Array.from({ length: 9 }, (_, i) => ({
      promptIds: prompt(3 + ((i * 7) % 20), i), adapterId: [null, 'tiny-all', 'tiny-qv'][i % 3] as string | null, maxTokens: 6 + (i % 5),
    }));
    const results: Array<Promise<{ tokens: number[]; reason: FinishReason }>> = [];
    const submitGroup = (g: number) => {
      for (const j of jobs.slice(3 * g, 3 * g + 3)) {
        const c = collect();
        s.submit({ ...j, adapter: j.adapterId ? adapters[j.adapterId]! : null, picker: greedy, sink: c.sink });
        results.push(c.done);
      }
    };
    // Later arrivals join running sequences: the next group of three is submitted right after a
    // decode step (not after a sleep, which a slow or fast machine could make miss the running ones).
    let nextGroup = 1;
    const s = make({ onStep: (r) => { steps.push(r); if (r.kind === 'decode' && nextGroup < 3) submitGroup(nextGroup++); } });
    steps.length = 0;
    submitGroup(0);
    const t0 = Date.now();
    while (results.length < jobs.length) {
      assert.ok(Date.now() - t0 < 30_000, 'each group was submitted after a decode step of the ones before');
      await new Promise((r) => setImmediate(r));
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

  // ---- Exact behaviour (issue 16: the mutants that survived against this file) ----------------
  // A RecordingEngine wraps the real worker engine: every step still runs the tiny decoder.

  const makeRec = (over: Partial<ConstructorParameters<typeof GenerationScheduler>[0]> = {}) => {
    const rec = new RecordingEngine(engine);
    const reports: StepReport[] = [];
    const ended: Array<{ adapterId: string | null; promptTokens: number; generated: number; reason: FinishReason }> = [];
    const s = make({ engine: rec, onStep: (r) => reports.push(r), onFinish: (f) => ended.push(f), ...over });
    return { s, rec, reports, ended };
  };
  /** Greedy over every id but the end-of-sequence ones: a sequence then always runs to its max_tokens. */
  const noEos: TokenPicker = {
    sample: (l) => {
      const eos = dec.manifest.generation!.eosIds;
      let best = -1;
      for (let i = 0; i < l.length; i++) if (!eos.includes(i) && (best < 0 || l[i]! > l[best]!)) best = i;
      return best;
    },
  };
  const job = (promptIds: number[], adapterId: string | null, maxTokens: number, sink: SequenceSink, picker: TokenPicker = noEos, signal?: AbortSignal) =>
    ({ promptIds, adapter: adapterId ? adapters[adapterId]! : null, adapterId, maxTokens, picker, sink, ...(signal ? { signal } : {}) });
  /** KV bytes one token takes in the tiny decoder (keys and values, every layer, float32). */
  const bpt = () => { const g = dec.manifest.generation!; return 2 * g.layers * g.kvHeads * g.headDim * 4; };
  const idleStats = (over: Record<string, unknown> = {}) => ({ running: 0, paused: 0, waiting: 0, kvReservedBytes: 0, kvBytes: 0, kvBudgetBytes: 8 << 20, maxRunning: 16, runningAdapters: [], waitingAdapters: [], ...over });

  it('reserveFor: whole 16-token blocks times the bytes one token takes', () => {
    assert.equal(bpt(), 256, 'tiny decoder: keys+values × 2 layers × 2 kv heads × 8 dims × 4 bytes');
    const s = make();
    assert.deepEqual([2, 15, 16, 17, 32, 33, 256].map((n) => s.reserveFor(n)), [16, 16, 16, 32, 32, 48, 256].map((t) => t * 256));
  });

  it('stats: adapter ids of running and waiting sequences (the base left out, each id once), exact reservations, back to idle after', async () => {
    const { s } = makeRec({ maxRunning: 3 });
    const ids = [null, 'tiny-all', 'tiny-all', null, 'tiny-qv', 'tiny-all', 'tiny-qv'];
    const runs = ids.map(() => track());
    ids.forEach((a, i) => s.submit(job(flat(9, i), a, 8, runs[i]!.sink))); // 9 + 8 = 17 positions: two blocks each
    assert.deepEqual(s.stats, {
      running: 3, paused: 0, waiting: 4, kvReservedBytes: 3 * 32 * 256, kvBytes: 0, kvBudgetBytes: 8 << 20, maxRunning: 3,
      runningAdapters: ['tiny-all'], waitingAdapters: ['tiny-qv', 'tiny-all'],
    });
    const done = await Promise.all(runs.map((r) => r.done));
    assert.deepEqual(done.map((d) => [d.reason, d.tokens.length]), ids.map(() => ['length', 8]));
    assert.deepEqual(s.stats, idleStats({ maxRunning: 3 }));
  });

  it('an empty prompt is refused with 400 BAD_REQUEST naming it', () => {
    const s = make();
    assert.deepEqual(errorOf(() => s.submit(job([], null, 5, track().sink))), { code: 'BAD_REQUEST', status: 400, message: 'the prompt is empty', headers: {} });
    assert.deepEqual([s.stats.running, s.stats.waiting], [0, 0]);
  });

  it('prompt + max_tokens exactly at the context is accepted and runs to the end; one token more is refused with 400', async () => {
    const { s } = makeRec();
    const a = track();
    s.submit(job(flat(250, 1), 'tiny-qv', 6, a.sink));
    assert.equal(s.stats.kvReservedBytes, 256 * 256);
    assert.deepEqual(errorOf(() => s.submit(job(flat(251, 2), null, 6, track().sink))), {
      code: 'BAD_REQUEST', status: 400, message: "the prompt (251 tokens) plus max_tokens (6) is 257 tokens; the model's context is 256", headers: {},
    });
    const r = await a.done;
    assert.deepEqual([r.reason, r.tokens.length, r.error], ['length', 6, undefined]);
  });

  it('past the waiting limit submit throws 429 QUEUE_FULL saying how many wait, with retry-after', async () => {
    const { s } = makeRec({ maxRunning: 1, maxWaiting: 2 });
    const runs = [0, 1, 2].map(() => track());
    runs.forEach((r, i) => s.submit(job(flat(5, i), null, 2, r.sink)));
    assert.deepEqual([s.stats.running, s.stats.waiting], [1, 2]);
    assert.deepEqual(errorOf(() => s.submit(job(flat(5, 3), null, 2, track().sink))), {
      code: 'QUEUE_FULL', status: 429, message: '2 generation requests are already waiting; retry later', headers: { 'retry-after': '1' },
    });
    const done = await Promise.all(runs.map((r) => r.done));
    assert.deepEqual(done.map((d) => [d.reason, d.tokens.length]), [['length', 2], ['length', 2], ['length', 2]]);
  });

  it('a signal aborted before submit: cancelled before any step, and the scheduler is idle at once', async () => {
    const { s, rec, ended } = makeRec();
    const a = track();
    s.submit(job(flat(5, 1), 'tiny-all', 10, a.sink, noEos, AbortSignal.abort()));
    assert.equal(await settledNow(s.drain().then(() => 'drained')), 'drained');
    assert.deepEqual(a.finished, { tokens: [], reason: 'cancelled' });
    assert.deepEqual(rec.steps, []);
    assert.deepEqual(ended, [{ adapterId: 'tiny-all', promptTokens: 5, generated: 0, reason: 'cancelled' }]);
    assert.deepEqual(s.stats, idleStats());
  });

  it('exactly maxRunning sequences run at once, never more', async () => {
    const { s, rec, reports } = makeRec({ maxRunning: 2 });
    const runs = [0, 1, 2, 3, 4].map(() => track());
    runs.forEach((r, i) => s.submit(job(flat(4 + i, i), i % 2 ? 'tiny-all' : null, 3, r.sink)));
    assert.deepEqual([s.stats.running, s.stats.waiting], [2, 3]);
    const done = await Promise.all(runs.map((r) => r.done));
    assert.deepEqual(done.map((d) => [d.reason, d.tokens.length]), runs.map(() => ['length', 3]));
    assert.equal(Math.max(...rec.steps.map((st) => st.rows.length)), 2);
    assert.equal(Math.max(...reports.filter((r) => r.kind === 'decode').map((r) => r.rows)), 2);
  });

  it('drain() on an idle scheduler resolves at once', async () => {
    const s = make();
    assert.equal(await settledNow(s.drain().then(() => 'drained')), 'drained');
  });

  it('drain() resolves once every sequence has finished, not before', async () => {
    const { s } = makeRec();
    const runs = [0, 1, 2].map(() => track());
    runs.forEach((r, i) => s.submit(job(flat(3 + i, i), null, 2 + i, r.sink)));
    const finishedAtDrain = s.drain().then(() => runs.filter((r) => r.finished !== null).length);
    await Promise.all(runs.map((r) => r.done));
    assert.equal(await settledNow(finishedAtDrain), 3);
    assert.equal(await settledNow(s.drain().then(() => 'drained')), 'drained', 'idle again');
  });

  it('a sequence submitted while the loop is winding down still runs, and drain() waits for it', async () => {
    // The loop ends when nothing is left; a submit can land after its last check but before it is
    // marked ended. Sweep the microtask turn at which B is submitted from A's onFinish across that window.
    for (let turns = 0; turns <= 12; turns++) {
      const { s } = makeRec();
      const b = track();
      const box: { drained?: Promise<boolean> } = {};
      const a = track({
        onFinish: () => {
          void (async () => {
            for (let i = 0; i < turns; i++) await null;
            s.submit(job(flat(3, 100 + turns), null, 1, b.sink));
            box.drained = s.drain().then(() => b.finished !== null);
          })();
        },
      });
      s.submit(job(flat(3, turns), null, 2, a.sink));
      await a.done;
      assert.equal(await turnsUntil(() => box.drained !== undefined), true);
      const drained = box.drained!;
      const order = await Promise.race([
        drained.then((bDone) => (bDone ? 'B, then drain' : 'drain before B')),
        b.done.then(() => settledNow(drained)).then((v) => (v === 'pending' ? 'B, drain pending' : 'B, then drain')),
      ]);
      assert.equal(order, 'B, then drain', `B submitted ${turns} microtask turns after A finished`);
      assert.deepEqual([b.finished?.reason, b.tokens.length], ['length', 1]);
    }
  });

  it('close(): a new submit gets 503 SHUTTING_DOWN with retry-after; running and waiting sequences still finish', async () => {
    const { s } = makeRec({ maxRunning: 1 });
    const a = track(), b = track();
    s.submit(job(flat(5, 81), null, 4, a.sink));
    s.submit(job(flat(6, 82), 'tiny-all', 4, b.sink));
    s.close();
    assert.deepEqual(errorOf(() => s.submit(job(flat(5, 83), null, 4, track().sink))), {
      code: 'SHUTTING_DOWN', status: 503, message: 'the server is shutting down', headers: { 'retry-after': '1' },
    });
    assert.deepEqual([s.stats.running, s.stats.waiting], [1, 1]);
    const done = [await a.done, await b.done];
    assert.deepEqual(done.map((d) => [d.reason, d.tokens.length]), [['length', 4], ['length', 4]]);
    assert.equal(await settledNow(s.drain().then(() => 'drained')), 'drained');
  });

  it('cutShort(): running sequences end with shutdown keeping their tokens, waiting ones get 503 SHUTTING_DOWN, submits are refused', async () => {
    const { s, rec, ended } = makeRec({ maxRunning: 1 });
    const a = track({ onToken: (toks) => { if (toks.length === 2) s.cutShort(); return false; } });
    const b = track();
    s.submit(job(flat(5, 91), 'tiny-all', 50, a.sink));
    s.submit(job(flat(6, 92), null, 50, b.sink));
    const ra = await a.done, rb = await b.done;
    assert.deepEqual([ra.reason, ra.tokens.length, ra.error], ['shutdown', 2, undefined]);
    assert.deepEqual([rb.reason, rb.tokens.length, plain(rb.error)], ['error', 0, {
      code: 'SHUTTING_DOWN', status: 503, message: 'the server is shutting down; retry on another instance', headers: { 'retry-after': '1' },
    }]);
    assert.deepEqual(ended, [
      { adapterId: null, promptTokens: 6, generated: 0, reason: 'error' },
      { adapterId: 'tiny-all', promptTokens: 5, generated: 2, reason: 'shutdown' },
    ]);
    assert.equal(rec.steps.length, 2, 'a prefill and a decode step, none after the cut');
    assert.deepEqual(errorOf(() => s.submit(job(flat(5, 93), null, 4, track().sink))), {
      code: 'SHUTTING_DOWN', status: 503, message: 'the server is shutting down', headers: { 'retry-after': '1' },
    });
    assert.deepEqual(s.stats, idleStats({ maxRunning: 1 }));
  });

  it('a paused sequence: counted in stats, the loop sleeps instead of stepping, and poke() resumes it', async (t) => {
    const trap = trapTimers(t);
    const { s, reports } = makeRec();
    let hold = false, pausedCalls = 0;
    let third!: () => void;
    const gotThird = new Promise<void>((r) => { third = r; });
    const a = track({ onToken: (toks) => { if (toks.length === 3) { hold = true; third(); } return false; }, paused: () => { pausedCalls++; return hold; } });
    s.submit(job(flat(6, 11), 'tiny-all', 8, a.sink)); // 14 positions: one block
    await gotThird;
    const asleep = await turnsUntil(() => trap.sleeps.length > 0);
    if (!asleep) hold = false; // a loop spinning instead of sleeping starves the event loop: let it finish so that this failure is reported
    assert.equal(asleep, true, 'the loop went to sleep');
    const stepsAsleep = reports.length;
    assert.deepEqual(s.stats, idleStats({ running: 1, paused: 1, kvReservedBytes: 16 * 256, kvBytes: reports.at(-1)!.kvBytes, runningAdapters: ['tiny-all'] }));
    assert.equal(reports.at(-1)!.kvBytes, 16 * 256, 'its cache, one block, is kept');
    assert.equal(a.tokens.length, 3);
    hold = false;
    const calls = pausedCalls;
    s.poke();
    assert.equal(await turnsUntil(() => pausedCalls > calls), true, 'poke() woke the loop');
    const r = await a.done;
    assert.deepEqual([r.reason, r.tokens.length], ['length', 8]);
    assert.equal(trap.sleeps.length, 1);
    assert.equal(reports.length, stepsAsleep + 5, 'five more decode steps after the poke');
  });

  it('while every running sequence is paused, a new submit or an abort wakes the loop', async (t) => {
    const trap = trapTimers(t);
    const { s, rec } = makeRec();
    const ac = new AbortController();
    let second!: () => void;
    const gotSecond = new Promise<void>((r) => { second = r; });
    let held = 0;
    const a = track({ onToken: (toks) => { held = toks.length; if (held === 2) second(); return false; }, paused: () => held >= 2 });
    s.submit(job(flat(5, 21), null, 10, a.sink, noEos, ac.signal));
    await gotSecond;
    const asleep = await turnsUntil(() => trap.sleeps.length === 1);
    if (!asleep) ac.abort(); // as above: end a spinning loop so that this failure is reported
    assert.equal(asleep, true, 'asleep: its only sequence is paused');
    const stepsBefore = rec.steps.length;
    const b = track();
    s.submit(job(flat(7, 22), 'tiny-qv', 3, b.sink));
    assert.equal(await turnsUntil(() => rec.steps.length > stepsBefore), true, 'the submit woke the loop');
    const rb = await b.done;
    assert.deepEqual([rb.reason, rb.tokens.length], ['length', 3]);
    assert.equal(await turnsUntil(() => trap.sleeps.length === 2), true, 'asleep again');
    assert.equal(a.tokens.length, 2);
    ac.abort();
    assert.equal(await turnsUntil(() => a.finished !== null), true, 'the abort woke the loop');
    assert.deepEqual(a.finished, { tokens: [a.tokens[0], a.tokens[1]], reason: 'cancelled' });
    assert.equal(await settledNow(s.drain().then(() => 'drained')), 'drained');
    assert.deepEqual(s.stats, idleStats());
  });

  it('a sink whose onToken throws gets its sequence cancelled at once, even on its last allowed token', async () => {
    const { s, ended } = makeRec();
    const boom = (): boolean => { throw new Error('the client went away'); };
    const a = track({ onToken: (toks) => (toks.length === 2 ? boom() : false) });
    const b = track({ onToken: boom });
    s.submit(job(flat(5, 31), null, 10, a.sink));
    s.submit(job(flat(5, 32), 'tiny-all', 1, b.sink));
    const done = [await a.done, await b.done];
    assert.deepEqual(done.map((d) => [d.reason, d.tokens.length]), [['cancelled', 2], ['cancelled', 1]]);
    assert.deepEqual(ended, [
      { adapterId: null, promptTokens: 5, generated: 2, reason: 'cancelled' },
      { adapterId: 'tiny-all', promptTokens: 5, generated: 1, reason: 'cancelled' },
    ]);
  });

  it('onToken returning true ends the sequence with stop; so does sampling either end-of-sequence id', async () => {
    const { s } = makeRec();
    const eos = dec.manifest.generation!.eosIds;
    assert.deepEqual(eos, [2, 4]);
    const eosThird = (id: number): TokenPicker => ({ sample: (l, gen) => (gen.length === 2 ? id : noEos.sample(l, gen)) });
    const a = track({ onToken: (toks) => toks.length === 3 });
    const b = track(), c = track();
    s.submit(job(flat(5, 41), null, 10, a.sink));
    s.submit(job(flat(5, 42), 'tiny-qv', 10, b.sink, eosThird(2)));
    s.submit(job(flat(5, 43), 'tiny-all', 10, c.sink, eosThird(4)));
    const done = [await a.done, await b.done, await c.done];
    assert.deepEqual(done.map((d) => [d.reason, d.tokens.length]), [['stop', 3], ['stop', 3], ['stop', 3]]);
    assert.deepEqual([b.tokens[2], c.tokens[2]], [2, 4]);
  });

  it('an engine step that throws ends every running sequence with 500 INTERNAL (an AppError as it is), and the scheduler serves on', async () => {
    const { s, rec } = makeRec();
    const a = track({ onToken: (toks) => { if (toks.length === 2) rec.failNext = new Error('step exploded'); return false; } });
    const b = track();
    s.submit(job(flat(5, 51), null, 10, a.sink));
    s.submit(job(flat(8, 52), 'tiny-all', 10, b.sink));
    const ra = await a.done, rb = await b.done;
    const internal = { code: 'INTERNAL', status: 500, message: 'generation failed: step exploded', headers: {} };
    assert.deepEqual([ra.reason, ra.tokens.length, plain(ra.error)], ['error', 2, internal]);
    assert.deepEqual([rb.reason, rb.tokens.length, plain(rb.error)], ['error', 0, internal]);
    assert.deepEqual(s.stats, idleStats());
    const seen = [...new Set(rec.steps.flatMap((st) => st.rows.map((r) => r.seq)))].sort();
    assert.deepEqual([...rec.freed].sort(), seen, 'every sequence the engine saw was freed');

    const pc = prompt(6, 53);
    const [alone] = await generateGreedy(dec.runner, [{ promptIds: pc, adapter: adapters['tiny-qv']!, maxNewTokens: 6 }]);
    const c = track();
    s.submit(job(pc, 'tiny-qv', 6, c.sink, greedy));
    const rc = await c.done;
    assert.deepEqual([rc.tokens, rc.reason], [alone!.tokens, alone!.finish === 'stop' ? 'stop' : 'length']);

    const restarting = new AppError('WORKER_RESTARTING', 'the decoder worker stopped (test); retry shortly', { headers: { 'retry-after': '1' } });
    const d = track({ onToken: () => { rec.failNext = restarting; return false; } });
    s.submit(job(flat(4, 54), null, 5, d.sink));
    const rd = await d.done;
    assert.deepEqual([rd.reason, rd.tokens.length], ['error', 1]);
    assert.equal(rd.error, restarting);
  });

  /** X (base, 4-token prompt) starts alone; A (tiny-all) and B (tiny-all, 5 tokens) join while its first step runs. Prefill chunk 16. */
  const budgetRun = async (t: TestContext, aPrompt: number) => {
    const trap = trapTimers(t);
    const { s, rec, reports, ended } = makeRec({ prefillChunk: 16 });
    const kvAtFinish: number[] = [];
    const sink = () => track({ onFinish: () => kvAtFinish.push(s.stats.kvBytes) });
    const x = sink(), a = sink(), b = sink();
    s.submit(job(flat(4, 61), null, 3, x.sink));
    s.submit(job(flat(aPrompt, 62), 'tiny-all', 2, a.sink));
    s.submit(job(flat(5, 63), 'tiny-all', 2, b.sink));
    await Promise.race([Promise.all([x.done, a.done, b.done]), trap.slept]);
    assert.deepEqual(trap.sleeps, [], 'the loop never slept: every round stepped');
    assert.deepEqual([x.finished?.reason, a.finished?.reason, b.finished?.reason], ['length', 'length', 'length']);
    assert.deepEqual(reports.map((r) => [r.runMs, r.kvBytes, r.transfer]), rec.results.map((r) => [r.runMs, r.kvBytes, r.transfer]), 'each report carries its step\'s numbers');
    assert.equal(rec.results.filter((r) => r.transfer === undefined).length, 0);
    return { reports, ended, kvAtFinish };
  };

  it('chunked prefill: a prompt exactly filling the chunk budget takes the whole step; the next prompt waits a round', async (t) => {
    const { reports, ended } = await budgetRun(t, 16);
    assert.deepEqual(reports.map(shape), [
      ['prefill', 1, 0, 4], ['decode', 1, 0, 1], // X alone
      ['prefill', 1, 1, 16], ['decode', 2, 1, 2], // A's whole prompt is the budget: B waits; X and A end
      ['prefill', 1, 1, 5], ['decode', 1, 1, 1], // B
    ]);
    assert.deepEqual(ended, [
      { adapterId: null, promptTokens: 4, generated: 3, reason: 'length' },
      { adapterId: 'tiny-all', promptTokens: 16, generated: 2, reason: 'length' },
      { adapterId: 'tiny-all', promptTokens: 5, generated: 2, reason: 'length' },
    ]);
  });

  it('chunked prefill: a prompt one token over the budget is split, its last token shares a step with the next prompt', async (t) => {
    const { reports, ended, kvAtFinish } = await budgetRun(t, 17);
    assert.deepEqual(reports.map(shape), [
      ['prefill', 1, 0, 4], ['decode', 1, 0, 1], // X alone
      ['prefill', 1, 1, 16], ['decode', 1, 0, 1], // A's first 16; X ends
      ['prefill', 2, 1, 6], ['decode', 2, 1, 2], // A's 17th with B's 5 (one adapter for both rows); A and B end
    ]);
    // Worker caches grow in 16-token blocks: X 4→6 tokens, A 16→18, B 5→6 (X freed before the last round).
    assert.deepEqual(reports.map((r) => r.kvBytes), [16, 16, 32, 32, 48, 48].map((tok) => tok * 256));
    assert.deepEqual(kvAtFinish, [32 * 256, 48 * 256, 0], 'stats.kvBytes drops to 0 only when the last sequence ends');
    assert.deepEqual(ended.map((e) => [e.promptTokens, e.generated]), [[4, 3], [17, 2], [5, 2]]);
  });

  it('rows sharing an adapter send it once: distinctAdapters counts adapters, not rows', async () => {
    const { s, rec, reports } = makeRec();
    const x = track();
    s.submit(job(flat(2, 71), null, 2, x.sink));
    const ids = ['tiny-all', null, 'tiny-all', 'tiny-qv'];
    const runs = ids.map(() => track());
    ids.forEach((a, i) => s.submit(job(flat(5, 72 + i), a, 2, runs[i]!.sink)));
    await Promise.all([x.done, ...runs.map((r) => r.done)]);
    assert.deepEqual(reports.map(shape), [['prefill', 1, 0, 2], ['decode', 1, 0, 1], ['prefill', 4, 2, 20], ['decode', 4, 2, 4]]);
    assert.deepEqual(rec.steps.map((st) => [st.rows.map((r) => r.adapter), st.adapters]), [[[-1], 0], [[-1], 0], [[0, -1, 0, 1], 2], [[0, -1, 0, 1], 2]]);
  });
});
