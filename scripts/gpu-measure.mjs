#!/usr/bin/env node
// Measures the demo encoder and the demo decoder on each execution provider given (default:
// cpu,webgpu): ms per encoder batch, ms per prefill and per decode step, and the estimated bytes
// that cross between host and device per run (from the engines' own transfer reports). Run by
// scripts/gpu-check.sh after `npm run build`; prints one JSON object. Plain JS over dist/ so it
// needs no build of its own. Numbers from a software Vulkan device (lavapipe) say nothing about
// GPU speed: the script labels the device it ran on and gpu-check.sh records it.
//
//   node scripts/gpu-measure.mjs [--providers cpu,webgpu] [--reps 20] [--rows 8] [--steps 32]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => import(path.join(ROOT, 'dist', p));
const { values } = parseArgs({ options: { providers: { type: 'string', default: 'cpu,webgpu' }, reps: { type: 'string', default: '20' }, rows: { type: 'string', default: '8' }, steps: { type: 'string', default: '32' } } });
const providers = values.providers.split(',').map((s) => s.trim()).filter(Boolean);
const reps = Number(values.reps), rows = Number(values.rows), steps = Number(values.steps);

const { loadManifest } = await dist('src/model/manifest.js');
const { AdapterStore } = await dist('src/adapter/store.js');
const { AdapterLoader } = await dist('src/adapter/loader.js');
const { WorkerEngine } = await dist('src/runtime/engine.js');
const { DecoderRunner } = await dist('src/generation/decoder-runner.js');
const { SequenceKv } = await dist('src/generation/kv-cache.js');
const { argmax } = await dist('src/generation/greedy.js');

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : NaN; };
const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

async function adapters(modelDir, adaptersDir) {
  const manifest = await loadManifest(path.join(ROOT, modelDir));
  const store = new AdapterStore({ dir: path.join(ROOT, adaptersDir) });
  await store.init();
  const loader = new AdapterLoader(store, manifest);
  const list = [];
  for (const id of (await store.list()).sort()) list.push(await loader.load(id));
  return { manifest, list };
}

async function encoder(ep) {
  const modelDir = path.join(ROOT, 'models/demo');
  const { manifest, list } = await adapters('models/demo', 'adapters');
  const engine = await WorkerEngine.start({ modelDir, manifest, threads: 2, executionProvider: ep });
  try {
    const seqLen = 32;
    const batch = {
      batch: rows, seqLen,
      inputIds: Int32Array.from({ length: rows * seqLen }, (_, i) => 100 + ((i * 7919) % 3000)),
      lengths: Int32Array.from({ length: rows }, (_, r) => seqLen - (r % 8)),
      adapters: list, rowAdapter: Int32Array.from({ length: rows }, (_, r) => (r % (list.length + 1)) - 1),
    };
    for (let i = 0; i < 3; i++) await engine.run(batch); // warm-up (shader compilation on WebGPU)
    const ms = [], up = [], down = [];
    for (let i = 0; i < reps; i++) {
      const out = await engine.run(batch);
      ms.push(out.runMs + out.feedMs);
      up.push(out.transfer?.hostToDevice ?? 0);
      down.push(out.transfer?.deviceToHost ?? 0);
    }
    return { rows, seqLen, adapters: list.length, msPerBatchMedian: median(ms), hostToDeviceBytesPerBatch: mean(up), deviceToHostBytesPerBatch: mean(down) };
  } finally {
    await engine.close();
  }
}

async function decoder(ep) {
  const modelDir = path.join(ROOT, 'models/demo-llm');
  const { manifest, list } = await adapters('models/demo-llm', 'adapters-llm');
  const runner = await DecoderRunner.create(modelDir, manifest, { threads: 2, executionProvider: ep });
  const g = manifest.generation;
  try {
    const run = async (record) => {
      const seqs = Array.from({ length: rows }, (_, r) => ({ kv: new SequenceKv(g), next: Array.from({ length: 24 }, (_, t) => 10 + ((r * 31 + t * 17) % 4000)), adapter: (r % (list.length + 1)) - 1 }));
      const t0 = performance.now();
      const first = await runner.step(seqs.map((s) => ({ kv: s.kv, tokens: s.next, adapter: s.adapter })), list);
      const prefillMs = performance.now() - t0;
      const per = [];
      let out = first;
      for (let i = 0; i < steps; i++) {
        seqs.forEach((s, r) => { s.next = [argmax(out.logits[r])]; });
        const t1 = performance.now();
        out = await runner.step(seqs.map((s) => ({ kv: s.kv, tokens: s.next, adapter: s.adapter })), list);
        per.push({ ms: performance.now() - t1, t: out.transfer });
      }
      await runner.syncToHost();
      for (const s of seqs) s.kv.clear();
      if (!record) return null;
      return {
        rows, promptTokens: 24, decodeSteps: steps, adapters: list.length, prefillMs, msPerDecodeStepMedian: median(per.map((p) => p.ms)),
        prefill: first.transfer,
        decodeHostToDeviceBytesPerStep: mean(per.map((p) => p.t.hostToDevice)), decodeDeviceToHostBytesPerStep: mean(per.map((p) => p.t.deviceToHost)),
        decodeStepsKvOnDevice: per.filter((p) => p.t.kvOnDevice).length, decodeStepsBanksReused: per.filter((p) => p.t.banksReused).length,
      };
    };
    await run(false); // warm-up
    return await run(true);
  } finally {
    await runner.close();
  }
}

const result = { date: new Date().toISOString(), reps, providers: {} };
for (const ep of providers) {
  try {
    result.providers[ep] = { encoder: await encoder(ep), decoder: await decoder(ep) };
  } catch (e) {
    result.providers[ep] = { error: e.message };
  }
}
console.log(JSON.stringify(result, null, 2));
