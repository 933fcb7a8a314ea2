import os from 'node:os';
import ort from 'onnxruntime-node';
import { ensureModel, ensureAdapters, ensureMerged } from './models.js';
const log = (m: string) => console.log(m);
const t0 = performance.now();
const m = await ensureModel('.bench', 'distilbert', log);
console.log('model', (performance.now() - t0) / 1000);
const ids = await ensureAdapters(m, 8, log);
console.log('adapters', (performance.now() - t0) / 1000);
await ensureMerged(m, ids.slice(0, 2), log);
console.log('merged', (performance.now() - t0) / 1000);
const opts = { intraOpNumThreads: os.availableParallelism(), interOpNumThreads: 1, graphOptimizationLevel: 'all' as const };
for (const f of [m.plainPath, `${m.mergedDir}/a0000.onnx`]) {
  const t = performance.now();
  const s = await ort.InferenceSession.create(f, opts);
  console.log('create', f, (performance.now() - t).toFixed(0), 'ms rss', Math.round(process.memoryUsage().rss / 2 ** 20));
  for (const [b, seq] of [[8, 16], [8, 32], [16, 16], [1, 16]] as const) {
    const n = b * seq;
    const feeds = { input_ids: new ort.Tensor('int64', new BigInt64Array(n).fill(5n), [b, seq]), attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [b, seq]), token_type_ids: new ort.Tensor('int64', new BigInt64Array(n), [b, seq]) };
    await s.run(feeds);
    const t1 = performance.now();
    for (let i = 0; i < 5; i++) await s.run(feeds);
    console.log(b, seq, ((performance.now() - t1) / 5).toFixed(1), 'ms/run');
  }
}
