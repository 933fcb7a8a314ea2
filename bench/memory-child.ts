/**
 * Memory measurements in a fresh process run with --expose-gc (the bench starts it), so the
 * deltas are not blurred by the parent's heap, sessions and workers. Prints one JSON line.
 *
 *   node --expose-gc memory-child.js adapters <adaptersDir> <slottedDir> <first> <count> [warmup]
 *   node --expose-gc memory-child.js sessions <slottedModel> <mergedModel>…
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { AdapterCache } from '../src/adapter/cache.js';
import { AdapterLoader } from '../src/adapter/loader.js';
import { loadManifest } from '../src/model/manifest.js';
import { collectGarbage } from './measure.js';
import { adapterId } from './models.js';
import { plainFeeds } from './naive-merged.js';
import { openStore, sessionOptions } from './stack.js';

interface Snapshot { rss: number; arrayBuffers: number; external: number; heapUsed: number }

async function snapshot(): Promise<Snapshot> {
  await collectGarbage();
  const u = process.memoryUsage();
  return { rss: u.rss, arrayBuffers: u.arrayBuffers, external: u.external, heapUsed: u.heapUsed };
}

const delta = (a: Snapshot, b: Snapshot): Snapshot => ({
  rss: b.rss - a.rss, arrayBuffers: b.arrayBuffers - a.arrayBuffers, external: b.external - a.external, heapUsed: b.heapUsed - a.heapUsed,
});

/**
 * Runs short-lived JS garbage through V8's young generation until it has grown to its working
 * size and touched its pages: a one-off of every process (~3 MiB here) that otherwise lands in
 * whichever measurement comes first.
 */
function churnYoungGeneration(): void {
  let keep = 0;
  for (let i = 0; i < 200_000; i++) keep += new Array<number>(64).fill(i).length;
  if (keep < 0) console.log(keep);
}

/**
 * Loads `count` adapters into an AdapterCache big enough for all; reports the deltas. Before
 * the first snapshot it loads `warmup` others (ids first + count …) into the same cache (JIT
 * warm-up; kept, not dropped, so no freed weights wait in the C allocator for the measured
 * loads to reuse) and churns the young generation. Everything each measured load leaves
 * behind counts: its weights, its JS objects, and whatever its temporaries leave in the
 * allocator.
 */
async function adapters(adaptersDir: string, slottedDir: string, first: number, count: number, warmup: number) {
  const manifest = await loadManifest(slottedDir);
  const store = await openStore(adaptersDir);
  const loader = new AdapterLoader(store, manifest);
  const cache = new AdapterCache({ maxBytes: 2 ** 40, load: (id) => loader.load(id) });
  for (let i = 0; i < warmup; i++) (await cache.acquire(adapterId(first + count + i))).release();
  churnYoungGeneration();
  const held = cache.bytesHeld;
  const before = await snapshot();
  for (let i = 0; i < count; i++) (await cache.acquire(adapterId(first + i))).release();
  const after = await snapshot();
  let fileBytes = 0;
  for (let i = 0; i < count; i++) {
    for (const f of ['adapter_config.json', 'adapter_model.safetensors']) fileBytes += (await stat(path.join(adaptersDir, adapterId(first + i), f))).size;
  }
  return { count, fileBytes: fileBytes / count, weightBytes: (cache.bytesHeld - held) / count, delta: delta(before, after) };
}

/** Opens the slotted model, then each merged model, running one batch on each; RSS after each. */
async function sessions(slotted: string, merged: string[]) {
  const rows = Array.from({ length: 8 }, (_, r) => Array.from({ length: 24 }, (_, t) => 5 + ((r * 31 + t * 7) % 500)));
  const held: ort.InferenceSession[] = [];
  const open = async (file: string, feeds: Record<string, ort.Tensor>) => {
    const s = await ort.InferenceSession.create(file, sessionOptions('cpu')); // host memory is what this child measures
    await s.run(feeds);
    held.push(s);
  };
  const base = await snapshot();
  const plain = plainFeeds(rows, 0);
  // The slotted model also needs the adapter inputs: the no-adapter feeds are enough to size its arena.
  const manifest = await loadManifest(path.dirname(slotted));
  const { buildFeeds } = await import('../src/runtime/feeds.js');
  const raw = buildFeeds(manifest, { batch: 8, seqLen: 24, inputIds: Int32Array.from(rows.flat()), lengths: new Int32Array(8).fill(24), adapters: [], rowAdapter: new Int32Array(8).fill(-1) });
  const slottedFeeds: Record<string, ort.Tensor> = {};
  for (const [name, f] of Object.entries(raw)) slottedFeeds[name] = new ort.Tensor(f.type, f.data, f.dims);
  await open(slotted, slottedFeeds);
  const afterSlotted = await snapshot();
  const mergedDeltas: number[] = [];
  let prev = afterSlotted;
  for (const f of merged) {
    await open(f, plain);
    const now = await snapshot();
    mergedDeltas.push(now.rss - prev.rss);
    prev = now;
  }
  for (const s of held) await s.release();
  return { slottedRss: afterSlotted.rss - base.rss, mergedRss: mergedDeltas, fileBytes: (await stat(merged[0]!)).size };
}

async function main(): Promise<void> {
  const [mode, ...args] = process.argv.slice(2);
  let out: unknown;
  if (mode === 'adapters') out = await adapters(args[0]!, args[1]!, Number(args[2]), Number(args[3]), Number(args[4] ?? 3));
  else if (mode === 'sessions') out = await sessions(args[0]!, args.slice(1));
  else throw new Error('usage: memory-child adapters <adaptersDir> <slottedDir> <first> <count> [warmup] | sessions <slotted> <merged>…');
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`memory-child: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
