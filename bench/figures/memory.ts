/**
 * Resident memory per cached adapter ÷ the adapter's file bytes (target ≤ 1.05), measured in a
 * child process with --expose-gc (RSS and arrayBuffers deltas after loading K adapters into the
 * cache).
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
/** Adapters loaded into the cache before the first snapshot (see memory-child.ts). */
const WARMUP = 3;

/** Per repeat: bytes per cached adapter (RSS delta ÷ K) and the file bytes per adapter. */
export async function adapterMemory(ctx: BenchContext, reps: number): Promise<AdapterMemory[]> {
  const m = await ctx.model();
  await ctx.adapters(K + WARMUP);
  const out = (ctx.memo.get('adapter-memory') as AdapterMemory[] | undefined) ?? [];
  ctx.memo.set('adapter-memory', out);
  for (let i = out.length; i < reps; i++) out.push(await memoryChild<AdapterMemory>(['adapters', m.adaptersDir, m.slottedDir, '0', String(K), String(WARMUP)]));
  return out.slice(0, reps);
}

export const memoryPerAdapter: Figure = async (ctx) => {
  const reps = Math.max(3, Math.ceil(ctx.s.reps / 2));
  const runs = await adapterMemory(ctx, reps);
  const rss = spread(runs.map((r) => r.delta.rss / r.count / r.fileBytes));
  const ab = spread(runs.map((r) => r.delta.arrayBuffers / r.count / r.fileBytes));
  const heap = spread(runs.map((r) => r.delta.heapUsed / r.count));
  const file = runs[0]!.fileBytes;
  const notes = [
    `${K} adapters loaded into an AdapterCache (big enough for all) in a fresh \`node --expose-gc\` child, after ${WARMUP} warm-up adapters loaded into the same cache (JIT) and a burst of short-lived JS garbage (V8's young generation touching its pages, a one-off of any process), garbage collected before and after; ${reps} children. Adapter bytes = adapter_config.json + adapter_model.safetensors = ${fmt(file / 1024)} KiB (F32; the loaded weights are ${fmt(runs[0]!.weightBytes / 1024)} KiB).`,
    `Per adapter: RSS +${fmt((rss.median * file) / 1024)} KiB (${fmt(rss.median)}× the file), arrayBuffers +${fmt((ab.median * file) / 1024)} KiB (${fmt(ab.median)}×: the one SharedArrayBuffer of weights), JS heap +${fmt(heap.median / 1024)} KiB (the AdapterWeights objects, the LRU entry).`,
    'A load reads the weights file into one of the loader\'s reused read buffers, decodes aligned F32 tensors as views of it and transposes them straight into the adapter\'s SharedArrayBuffer: no per-load temporaries of the file\'s size are left to the C allocator (with a fresh Buffer per load and a copy of every tensor, this figure measured 1.24–1.27×).',
  ];
  const row: Row = {
    figure: 'memory-per-adapter', label: 'resident memory per cached adapter ÷ adapter file bytes (RSS)', model: ctx.modelName,
    target: { op: '<=', value: 1.05 }, unit: '×', value: rss,
    detail: `arrayBuffers ÷ file ${fmt(ab.median)}; ${fmt(file / 1024)} KiB per adapter; RSS +${fmt((rss.median * file * K) / MiB)} MiB for ${K}`,
  };
  const miss = missNote(row, `The weights themselves are ${fmt(ab.median)}× the file; the rest is JS heap per adapter and allocator memory that RSS keeps after GC.`);
  if (miss) notes.push(miss);
  return {
    title: 'Resident memory per cached adapter',
    rows: [row],
    notes, data: { runs, K, warmup: WARMUP },
  };
};
