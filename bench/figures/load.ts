/**
 * Adapter cold load (disk → ready weights: AdapterLoader.load) ÷ the raw floor: reading the
 * same files with fs.readFile and copying the bytes once.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { AdapterLoader } from '../../src/adapter/loader.js';
import type { Figure } from '../context.js';
import { ratios, spread } from '../measure.js';
import { fmt, missNote, type Row } from '../report.js';

/** Adapters loaded per measurement (each side reads the same ones). */
const PER_ROUND = 16;

export const coldLoad: Figure = async (ctx) => {
  const { reps, warmup } = ctx.s;
  const m = await ctx.model();
  const ids = await ctx.adapters(Math.max(PER_ROUND * 2, ctx.s.zipfAdapters));
  const store = await ctx.store();
  const loader = new AdapterLoader(store, m.manifest);
  const files = (id: string) => ['adapter_config.json', 'adapter_model.safetensors'].map((f) => path.join(m.adaptersDir, id, f));
  let bytes = 0;
  const floor = async (id: string) => {
    let n = 0;
    for (const f of files(id)) {
      const b = await readFile(f);
      const copy = new Uint8Array(b.length); // the one copy any loader needs (into its own memory)
      copy.set(b);
      n += copy.length;
    }
    bytes = n;
  };
  // Page cache warm for both sides: the figure compares CPU work, not the disk.
  for (const id of ids) await floor(id);
  // Per repeat: PER_ROUND adapters, each loaded both ways back to back (order alternating);
  // a side's value is its median ms per adapter in the repeat.
  const out = { load: [] as number[], floor: [] as number[] };
  const time = async (fn: () => Promise<unknown>) => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  };
  const rounds = reps + 4;
  for (let round = 0; round < warmup + rounds; round++) {
    const t = { load: [] as number[], floor: [] as number[] };
    for (let i = 0; i < PER_ROUND; i++) {
      const id = ids[(round * PER_ROUND + i) % ids.length]!;
      if (i % 2) { t.floor.push(await time(() => floor(id))); t.load.push(await time(() => loader.load(id))); }
      else { t.load.push(await time(() => loader.load(id))); t.floor.push(await time(() => floor(id))); }
    }
    if (round >= warmup) { out.load.push(spread(t.load).median); out.floor.push(spread(t.floor).median); }
  }
  const r = spread(ratios(out.load, out.floor));
  const s = { load: spread(out.load), floor: spread(out.floor) };
  const notes = [
    `${PER_ROUND} different adapters per measurement (${fmt(bytes / 2 ** 10)} KiB each: r=8 on ${m.manifest.loraSlots.length} q/v slots + head, F32), page cache warm for both sides; each adapter is loaded both ways back to back (order alternating), a repeat's value is the median ms per adapter, ${rounds} repeats. Load: AdapterLoader.load (store.read with O_NOFOLLOW opens and stat into a reused read buffer, sha256 check, config parse, safetensors parse with aligned F32 tensors as views of the file bytes, mapping onto slots with the scale folded in and A/B transposed straight into one SharedArrayBuffer). Floor: fs.readFile of both files + one copy.`,
    `Per adapter: load ${fmt(s.load.median)} ms, floor ${fmt(s.floor.median)} ms.`,
  ];
  const row: Row = {
    figure: 'cold-load', label: 'adapter cold load (AdapterLoader.load) ÷ readFile + one copy', model: ctx.modelName,
    target: { op: '<=', value: 5 }, unit: '×', value: r,
    detail: `load ${fmt(s.load.median)} ms, floor ${fmt(s.floor.median)} ms per ${fmt(bytes / 2 ** 10)} KiB adapter`,
  };
  const miss = missNote(row, 'Beyond the floor, a load opens three files with O_NOFOLLOW + fstat (config, weights, the sidecar probe), hashes both files (sha256, checked against the sidecar), scans every weight for NaN/Inf, then transposes each tensor from the file bytes (aligned F32 decoded as views, no copy) into the SharedArrayBuffer.');
  if (miss) notes.push(miss);
  return {
    title: 'Adapter cold load ÷ raw read + copy',
    rows: [row],
    notes, data: { ...out, bytes },
  };
};
