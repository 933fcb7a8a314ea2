/**
 * The benchmark's models, made once and reused: a synthetic BERT (plain export + slotted by
 * the real `prepareModel`), random r=8 q/v adapters, and merged models for the naive baseline.
 * Everything lives under `.bench/models/<key>/` with a `stamp.json` of the parameters that made
 * it; a run with the same parameters reuses the files, a different one rewrites them.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ModelManifest } from '../src/model/manifest.js';
import { loadManifest } from '../src/model/manifest.js';
import { prepareModel } from '../src/model/prepare.js';
import { writeMergedModel } from './merge.js';
import { writeRandomAdapter } from './random-adapters.js';
import { BERT_BASE, DISTILBERT_SHAPES, writeSyntheticBert, type BertShape } from './synthetic-bert.js';

/** Which synthetic model a run uses. */
export type ModelSize = 'distilbert' | 'base';

export const SHAPES: Record<ModelSize, BertShape> = { distilbert: DISTILBERT_SHAPES, base: BERT_BASE };

/** Labels of every synthetic adapter's classifier head. */
export const NUM_LABELS = 2;
/** Parameters of the random adapters (the figures' "r=8 on query/value"). */
export const ADAPTER_PARAMS = { rank: 8, alpha: 16, targets: ['query', 'value'], numLabels: NUM_LABELS, dtype: 'F32' as const };
const MODEL_SEED = 42;
const ADAPTER_SEED = 1000;
/** Largest sequence the benchmark model accepts (it only uses short inputs). */
const MAX_LENGTH = 128;

/** A prepared synthetic model and where its pieces are. */
export interface BenchModel {
  size: ModelSize;
  shape: BertShape;
  /** The plain export (no slots), for the "no slots" and merged baselines. */
  plainPath: string;
  /** Folder with the slotted model.onnx, model.json, tokenizer.json. */
  slottedDir: string;
  manifest: ModelManifest;
  /** The adapter store folder (`a0000`, `a0001`, …). */
  adaptersDir: string;
  /** Merged models go here (`<id>.onnx`). */
  mergedDir: string;
  /** Seconds spent (re)making files in this run (0 when everything was reused). */
  madeSeconds: number;
}

export const adapterId = (i: number) => `a${String(i).padStart(4, '0')}`;

async function readStamp(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return null;
  }
}

/** Makes (or reuses) the synthetic model of `size` under `root` and returns its paths. */
export async function ensureModel(root: string, size: ModelSize, log: (m: string) => void): Promise<BenchModel> {
  const t0 = performance.now();
  const shape = SHAPES[size];
  const dir = path.join(root, 'models', size);
  const plainDir = path.join(dir, 'plain');
  const slottedDir = path.join(dir, 'slotted');
  const stampFile = path.join(dir, 'stamp.json');
  const stamp = JSON.stringify({ shape, numLabels: NUM_LABELS, seed: MODEL_SEED, maxLength: MAX_LENGTH, targets: ['query', 'value'], heads: ['classifier'], maxRank: 16 });
  if ((await readStamp(stampFile)) !== stamp || !existsSync(path.join(slottedDir, 'model.json'))) {
    log(`making the synthetic ${size} model (${shape.layers} layers, hidden ${shape.hidden}) in ${dir}`);
    await rm(dir, { recursive: true, force: true });
    const { modelPath, tokenizerPath } = await writeSyntheticBert({ dir: plainDir, ...shape, numLabels: NUM_LABELS, seed: MODEL_SEED });
    await prepareModel({
      modelPath, tokenizerPath, targets: ['query', 'value'], heads: ['classifier'], maxRank: 16,
      baseModel: `synthetic-bert-${size}`, task: 'sequence-classification', maxLength: MAX_LENGTH, outDir: slottedDir,
    });
    await writeFile(stampFile, stamp);
  }
  const manifest = await loadManifest(slottedDir);
  return {
    size, shape, plainPath: path.join(plainDir, 'model.onnx'), slottedDir, manifest,
    adaptersDir: path.join(dir, 'adapters'), mergedDir: path.join(dir, 'merged'),
    madeSeconds: (performance.now() - t0) / 1000,
  };
}

/** Makes sure adapters `a0000` … `a{count-1}` exist with {@link ADAPTER_PARAMS}; returns their ids. */
export async function ensureAdapters(m: BenchModel, count: number, log: (msg: string) => void): Promise<string[]> {
  const t0 = performance.now();
  const stampFile = path.join(m.adaptersDir, '.stamp.json'); // hidden: the store skips it
  const stamp = JSON.stringify({ ...ADAPTER_PARAMS, seed: ADAPTER_SEED, base: m.manifest.baseModel });
  if ((await readStamp(stampFile)) !== stamp) {
    await rm(m.adaptersDir, { recursive: true, force: true });
    await mkdir(m.adaptersDir, { recursive: true });
    await writeFile(stampFile, stamp);
  }
  const ids = Array.from({ length: count }, (_, i) => adapterId(i));
  let made = 0;
  for (let i = 0; i < count; i++) {
    const dir = path.join(m.adaptersDir, ids[i]!);
    if (existsSync(path.join(dir, 'adapter_model.safetensors'))) continue;
    await writeRandomAdapter({ dir, manifest: m.manifest, ...ADAPTER_PARAMS, seed: ADAPTER_SEED + i });
    made++;
  }
  if (made > 0) log(`wrote ${made} random adapters in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  m.madeSeconds += (performance.now() - t0) / 1000;
  return ids;
}

/** Makes sure a merged model exists for each id (naive baseline); returns their paths. */
export async function ensureMerged(m: BenchModel, ids: string[], log: (msg: string) => void): Promise<string[]> {
  const t0 = performance.now();
  await mkdir(m.mergedDir, { recursive: true });
  const plainStat = await stat(m.plainPath);
  const out: string[] = [];
  let made = 0;
  for (const id of ids) {
    const file = path.join(m.mergedDir, `${id}.onnx`);
    const adapterStat = await stat(path.join(m.adaptersDir, id, 'adapter_model.safetensors'));
    const newest = Math.max(plainStat.mtimeMs, adapterStat.mtimeMs);
    const fresh = await stat(file).then((s) => s.mtimeMs >= newest, () => false);
    if (!fresh) {
      await writeMergedModel({ plainModelPath: m.plainPath, adapterDir: path.join(m.adaptersDir, id), outPath: file });
      made++;
    }
    out.push(file);
  }
  if (made > 0) log(`wrote ${made} merged models in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  m.madeSeconds += (performance.now() - t0) / 1000;
  return out;
}
