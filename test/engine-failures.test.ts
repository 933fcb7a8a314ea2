/**
 * Inference engine failures, on the real worker and session: a run that ORT refuses, a worker
 * that dies with runs queued in it, a model that no longer loads when the worker restarts, a
 * model that never loads. Every row waiting on the engine is rejected with a typed error, none
 * hangs, and the engine serves again once the cause is gone. (The HTTP view of a crash, 503
 * WORKER_RESTARTING and readiness, is test/worker-restart.test.ts.)
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAppError } from '../src/errors.js';
import { loadManifest, type ModelManifest } from '../src/model/manifest.js';
import { WorkerEngine } from '../src/runtime/engine.js';
import { Batcher } from '../src/scheduler/batcher.js';
import { DEMO_MODEL_DIR, loadGolden, maxAbsDiff } from './helpers/demo.js';
import { waitFor } from './helpers/reliability-kit.js';

const golden = loadGolden();
const IDS = golden.base.ids[0]!;
const codeOf = (r: PromiseSettledResult<unknown>) => (r.status === 'rejected' && isAppError(r.reason) ? r.reason.code : r.status);

describe('engine failures', () => {
  let manifest: ModelManifest;
  let tmp: string;
  before(async () => {
    manifest = await loadManifest(DEMO_MODEL_DIR);
    tmp = await mkdtemp(path.join(os.tmpdir(), 'ah-engine-fail-'));
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  test('session.run throws (a token id past the vocabulary): every row of that batch rejected with INTERNAL, the worker lives on', async () => {
    const engine = await WorkerEngine.start({ modelDir: DEMO_MODEL_DIR, manifest, threads: 1, executionProvider: 'cpu' });
    try {
      const batcher = new Batcher({ engine, maxBatchRows: 64, maxWaitMs: 0, maxQueueRows: 100, padId: 0 });
      const [good] = await batcher.submit([{ ids: IDS, adapter: null }]);
      // One request whose rows share a batch: three good rows and one ORT refuses (Gather out of bounds).
      const bad = [...IDS.slice(0, -1), 10_000_000, IDS.at(-1)!];
      await assert.rejects(
        batcher.submit([{ ids: IDS, adapter: null }, { ids: bad, adapter: null }, { ids: IDS, adapter: null }, { ids: IDS, adapter: null }]),
        (e: unknown) => isAppError(e, 'INTERNAL') && /^inference failed: .*(indices|out of|bounds)/i.test((e as Error).message),
      );
      // Separate requests in one batch with the bad row: all of them fail, none hangs.
      const settled = await Promise.allSettled([IDS, bad, IDS].map((ids) => batcher.submit([{ ids, adapter: null }])));
      assert.equal(batcher.queuedRows, 0);
      const codes = settled.map(codeOf);
      assert.ok(codes[1] === 'INTERNAL', `the bad row fails: ${codes}`);
      assert.ok(codes.every((c) => c === 'INTERNAL' || c === 'fulfilled'), `only INTERNAL or answers: ${codes}`);
      // Not a crash: no restart, same answers as before.
      assert.equal(engine.up, true);
      assert.equal(engine.restarts, 0);
      const [again] = await batcher.submit([{ ids: IDS, adapter: null }]);
      assert.ok(maxAbsDiff(again!.embedding!, good!.embedding!) < 1e-6);
    } finally {
      await engine.close();
    }
  });

  test('the worker dies with runs queued in it: every pending run rejected with WORKER_RESTARTING, then it heals', async () => {
    const engine = await WorkerEngine.start({ modelDir: DEMO_MODEL_DIR, manifest, threads: 1, executionProvider: 'cpu', restart: { firstDelayMs: 20 } });
    try {
      const batcher = new Batcher({ engine, maxBatchRows: 1, maxWaitMs: 0, maxQueueRows: 100, padId: 0 });
      const [good] = await batcher.submit([{ ids: IDS, adapter: null }]);
      engine.crashForTest('exit', 'next-run');
      // Five requests, one row per batch: the first batch kills the worker, the rest are queued behind it.
      const settled = await Promise.allSettled(Array.from({ length: 5 }, () => batcher.submit([{ ids: IDS, adapter: null }])));
      assert.deepEqual(settled.map(codeOf), Array(5).fill('WORKER_RESTARTING'));
      assert.equal(batcher.queuedRows, 0);
      await waitFor(() => engine.up, 30_000, 'the worker restarts');
      const [again] = await batcher.submit([{ ids: IDS, adapter: null }]);
      assert.ok(maxAbsDiff(again!.embedding!, good!.embedding!) < 1e-6);
    } finally {
      await engine.close();
    }
  });

  test('the model no longer loads when the worker restarts: runs fail fast (never hang), restarts keep being tried, it heals once the file is back', async () => {
    const dir = path.join(tmp, 'model');
    await cp(DEMO_MODEL_DIR, dir, { recursive: true });
    const probe = { batch: 1, seqLen: IDS.length, inputIds: Int32Array.from(IDS), lengths: Int32Array.of(IDS.length), adapters: [], rowAdapter: Int32Array.of(-1) };
    const downs: string[] = [];
    const engine = await WorkerEngine.start({
      modelDir: dir, manifest, threads: 1, executionProvider: 'cpu', probe,
      restart: { firstDelayMs: 20, maxDelayMs: 50 }, events: { onDown: (i) => downs.push(i.reason) },
    });
    try {
      const batcher = new Batcher({ engine, maxBatchRows: 64, maxWaitMs: 0, maxQueueRows: 100, padId: 0 });
      await batcher.submit([{ ids: IDS, adapter: null }]);
      const modelFile = path.join(dir, manifest.modelFile);
      await cp(modelFile, path.join(tmp, 'model.onnx.bak'));
      await writeFile(modelFile, 'not an onnx model any more');
      engine.crashForTest('throw', 'now');
      await waitFor(() => engine.restarts >= 3, 30_000, 'three restart attempts');
      assert.equal(engine.up, false);
      assert.ok(downs.slice(1).every((r) => /^restart failed: .*cannot load/.test(r)), `restart failures name the model: ${downs.join(' | ')}`);
      const settled = await Promise.allSettled(Array.from({ length: 4 }, () => batcher.submit([{ ids: IDS, adapter: null }])));
      assert.deepEqual(settled.map(codeOf), Array(4).fill('WORKER_RESTARTING'));
      await cp(path.join(tmp, 'model.onnx.bak'), modelFile);
      await waitFor(() => engine.up, 30_000, 'the worker comes back once the model loads');
      const [ok] = await batcher.submit([{ ids: IDS, adapter: null }]);
      assert.ok(maxAbsDiff(ok!.embedding!, golden.base.embeddings[0]!) < 1e-4, 'PyTorch base embedding');
    } finally {
      await engine.close();
    }
  });

  test('a model that cannot load at start: WorkerEngine.start rejects with INVALID_MODEL (no worker left behind)', async () => {
    const dir = path.join(tmp, 'broken');
    await cp(DEMO_MODEL_DIR, dir, { recursive: true });
    await writeFile(path.join(dir, manifest.modelFile), Buffer.alloc(1024, 7));
    await assert.rejects(
      WorkerEngine.start({ modelDir: dir, manifest, threads: 1, executionProvider: 'cpu' }),
      (e: unknown) => isAppError(e, 'INVALID_MODEL') && /cannot load .*model\.onnx/.test((e as Error).message),
    );
  });
});
