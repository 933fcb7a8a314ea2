/**
 * Resident memory per cached adapter ÷ the adapter's bytes, measured in a child process with
 * --expose-gc (RSS and arrayBuffers deltas after loading K adapters into the cache).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BenchContext, Figure } from '../context.js';
import { MiB, spread } from '../measure.js';
import { fmt, missNote, type Row } from '../report.js';

const run = promisify(execFile);
const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'memory-child.js');

/** Runs memory-child.js with --expose-gc and parses its JSON line. */
export async function memoryChild<T>(args: string[], env: Record<string, string> = {}): Promise<T> {
  const { stdout } = await run(process.execPath, ['--expose-gc', CHILD, ...args], { maxBuffer: 1 << 20, env: { ...process.env, ...env } });
  return JSON.parse(stdout.trim().split('\n').pop()!) as T;
}

export interface AdapterMemory {
  count: number;
  fileBytes: number;
  weightBytes: number;
  delta: { rss: number; arrayBuffers: number; external: number; heapUsed: number };
}

export interface SessionMemory { slottedRss: number; mergedRss: number[]; fileBytes: number }

/** K adapters per child; a fresh child per repeat. */
const K = 150;

/** Per repeat: bytes per cached adapter (RSS delta ÷ K) and the file bytes per adapter. */
export async function adapterMemory(ctx: BenchContext, reps: number): Promise<AdapterMemory[]> {
  const m = await ctx.model();
  await ctx.adapters(K + 3);
  const out = (ctx.memo.get('adapter-memory') as AdapterMemory[] | undefined) ?? [];
  ctx.memo.set('adapter-memory', out);
  for (let i = out.length; i < reps; i++) out.push(await memoryChild<AdapterMemory>(['adapters', m.adaptersDir, m.slottedDir, '0', String(K)]));
  return out.slice(0, reps);
}

export const memoryPerAdapter: Figure = async (ctx) => {
  const reps = Math.max(3, Math.ceil(ctx.s.reps / 2));
  const runs = await adapterMemory(ctx, reps);
  const rss = spread(runs.map((r) => r.delta.rss / r.count / r.fileBytes));
  const ab = spread(runs.map((r) => r.delta.arrayBuffers / r.count / r.fileBytes));
  const heap = spread(runs.map((r) => r.delta.heapUsed / r.count));
  const file = runs[0]!.fileBytes;
  // The same load with glibc's mmap threshold pinned at its default (no dynamic raise after a large
  // free): shows how much of the RSS above the weights is allocator behaviour.
  const m = await ctx.model();
  const pinned = await memoryChild<AdapterMemory>(['adapters', m.adaptersDir, m.slottedDir, '0', String(K)], { MALLOC_MMAP_THRESHOLD_: '131072' });
  const pinnedRatio = pinned.delta.rss / pinned.count / pinned.fileBytes;
  const notes = [
    `${K} adapters loaded into an AdapterCache (big enough for all) in a fresh \`node --expose-gc\` child, garbage collected before and after; ${reps} children. Adapter bytes = adapter_config.json + adapter_model.safetensors = ${fmt(file / 1024)} KiB (F32; the loaded weights are ${fmt(runs[0]!.weightBytes / 1024)} KiB).`,
    `Per adapter: RSS +${fmt((rss.median * file) / 1024)} KiB (${fmt(rss.median)}× the file), arrayBuffers +${fmt((ab.median * file) / 1024)} KiB (${fmt(ab.median)}×: the one SharedArrayBuffer of weights), JS heap +${fmt(heap.median / 1024)} KiB (the AdapterWeights objects, the LRU entry).`,
  ];
  const row: Row = {
    figure: 'memory-per-adapter', label: 'resident memory per cached adapter ÷ adapter file bytes (RSS)', model: ctx.modelName,
    target: { op: '<=', value: 1.3 }, unit: '×', value: rss,
    detail: `arrayBuffers ÷ file ${fmt(ab.median)}; ${fmt(file / 1024)} KiB per adapter; RSS +${fmt((rss.median * file * K) / MiB)} MiB for ${K}`,
  };
  if (rss.median - ab.median > 0.1) notes.push(`The ${fmt(rss.median - ab.median)}× above the weights is allocator memory that the loader's temporaries leave behind (each load allocates the file Buffer and readSafetensors' slice() copy of every tensor, ~2× the adapter, before the transposed copy); glibc keeps much of it after GC. Evidence: the same child with MALLOC_MMAP_THRESHOLD_=131072 (glibc then mmaps every allocation above 128 KiB and returns it on free, instead of raising the threshold after the first large free and serving later ~${fmt(file / 1024)} KiB blocks from its heap) measures ${fmt(pinnedRatio)}×.`);
  const miss = missNote(row, `The weights themselves are ${fmt(ab.median)}× the file; the rest is memory that the loader's temporaries (the file Buffer, readSafetensors' slice() copy of every tensor before the transposed copy) leave in the allocator, which RSS keeps after GC. Transposing straight from the file bytes into the SharedArrayBuffer would halve the temporaries.`);
  if (miss) notes.push(miss);
  return {
    title: 'Resident memory per cached adapter',
    rows: [row],
    notes, data: { runs, K, mmapThresholdPinned: pinned },
  };
};
