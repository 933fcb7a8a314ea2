/**
 * The generation benchmarks' models, made once and cached under build/bench/decoder-<size>/:
 * a synthetic Llama decoder with seeded random weights (factory/bench-decoder/make.py, the offline
 * PyTorch maker: optimum-layout ONNX export, HF-named weights, random PEFT adapters), slotted by
 * the real `prepareModel --task text-generation`, and the same weights and adapters as GGUF for
 * the llama.cpp peer (bench/gen/gguf.ts). A `stamp.json` of the parameters guards the cache.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadManifest, type ModelManifest } from '../../src/model/manifest.js';
import { prepareModel } from '../../src/model/prepare.js';
import { writeLlamaGguf, writeLoraGguf, type LlamaShape } from './gguf.js';

const run = promisify(execFile);

export type DecoderSize = 'smollm2-135m' | 'smollm2-360m';

/** SmolLM2-135M's shape (quick and default), SmolLM2-360M's with --full. */
export const DECODER_SHAPES: Record<DecoderSize, LlamaShape> = {
  'smollm2-135m': { vocab: 49152, hidden: 576, layers: 30, heads: 9, kvHeads: 3, inter: 1536, maxPos: 2048, ropeTheta: 10000, rmsEps: 1e-5 },
  'smollm2-360m': { vocab: 49152, hidden: 960, layers: 32, heads: 15, kvHeads: 5, inter: 2560, maxPos: 2048, ropeTheta: 10000, rmsEps: 1e-5 },
};

/** The adapters: 20 on q_proj, v_proj (r = 8, alpha 16) and 2 on all seven projections (r = 16, alpha 32). */
export const QV_ADAPTERS = Array.from({ length: 20 }, (_, i) => `qv${String(i).padStart(2, '0')}`);
export const ALL_ADAPTERS = ['all00', 'all01'];
const ALL7 = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const ADAPTER_SPECS = [
  ...QV_ADAPTERS.map((id, i) => ({ id, targets: ['q_proj', 'v_proj'], r: 8, alpha: 16, seed: 2000 + i })),
  ...ALL_ADAPTERS.map((id, i) => ({ id, targets: ALL7, r: 16, alpha: 32, seed: 3000 + i })),
];
export const adapterAlpha = (id: string) => ADAPTER_SPECS.find((a) => a.id === id)!.alpha;
/** Positions the slotted model accepts (prompt + generated). */
const MAX_POSITIONS = 1024;
const SEED = 135;
/** Std of the projections' random weights: at HF's 0.02 the embedding dominates and greedy decoding repeats one token. */
const PROJ_STD = 0.05;

export interface BenchDecoder {
  size: DecoderSize;
  shape: LlamaShape;
  /** The optimum-layout export without slots. */
  plainPath: string;
  slottedDir: string;
  manifest: ModelManifest;
  adaptersDir: string;
  /** The same weights for llama.cpp: model.gguf and lora/<id>.gguf. */
  ggufPath: string;
  loraGguf: (id: string) => string;
  /** HF-named safetensors of the base weights. */
  weightsPath: string;
  madeSeconds: number;
}

/** Makes (or reuses) the synthetic decoder of `size` under `root` (build/bench). */
export async function ensureDecoder(root: string, repoRoot: string, size: DecoderSize, log: (m: string) => void): Promise<BenchDecoder> {
  const t0 = performance.now();
  const s = DECODER_SHAPES[size];
  const dir = path.join(root, `decoder-${size}`);
  const stampFile = path.join(dir, 'stamp.json');
  const stamp = JSON.stringify({ s, SEED, PROJ_STD, ADAPTER_SPECS, MAX_POSITIONS, v: 2 });
  const slottedDir = path.join(dir, 'slotted');
  const ggufPath = path.join(dir, 'gguf', 'model.gguf');
  const loraGguf = (id: string) => path.join(dir, 'gguf', `lora-${id}.gguf`);
  if ((await readFile(stampFile, 'utf8').catch(() => null)) !== stamp || !existsSync(path.join(slottedDir, 'model.json'))) {
    log(`making the synthetic ${size} decoder (${s.layers} layers, hidden ${s.hidden}, vocab ${s.vocab}) in ${dir}: PyTorch export, prepare, GGUF (a few minutes, once)`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const spec = {
      shape: { vocab: s.vocab, hidden: s.hidden, layers: s.layers, heads: s.heads, kv_heads: s.kvHeads, inter: s.inter, max_pos: s.maxPos, rope_theta: s.ropeTheta, rms_eps: s.rmsEps },
      seed: SEED, proj_std: PROJ_STD, base_name: `synthetic-${size}`, adapters: ADAPTER_SPECS, tokenizer_dir: path.join(repoRoot, 'test/fixtures/tiny-llama/export'),
    };
    await run('/usr/bin/python3', [path.join(repoRoot, 'factory/bench-decoder/make.py'), dir, JSON.stringify(spec)], { maxBuffer: 1 << 24 });
    await prepareModel({
      modelPath: path.join(dir, 'export', 'model.onnx'), tokenizerPath: path.join(dir, 'export', 'tokenizer.json'),
      targets: [], heads: [], maxRank: 16, baseModel: `synthetic-${size}`, task: 'text-generation', maxLength: MAX_POSITIONS, outDir: slottedDir,
    });
    await mkdir(path.dirname(ggufPath), { recursive: true });
    await writeLlamaGguf(ggufPath, path.join(dir, 'weights.safetensors'), s);
    for (const a of ADAPTER_SPECS) await writeLoraGguf(loraGguf(a.id), path.join(dir, 'adapters', a.id, 'adapter_model.safetensors'), a.alpha, s);
    await writeFile(stampFile, stamp);
  }
  return {
    size, shape: s, plainPath: path.join(dir, 'export', 'model.onnx'), slottedDir, manifest: await loadManifest(slottedDir),
    adaptersDir: path.join(dir, 'adapters'), ggufPath, loraGguf, weightsPath: path.join(dir, 'weights.safetensors'),
    madeSeconds: (performance.now() - t0) / 1000,
  };
}

/**
 * The same export slotted for q_proj and v_proj only (60 slots instead of 210), for the figure
 * that shows what slots cost when a deployment's adapters touch fewer projections. Made once.
 */
export async function ensureQvSlotted(d: BenchDecoder): Promise<{ dir: string; manifest: ModelManifest }> {
  const dir = path.join(path.dirname(d.slottedDir), 'slotted-qv');
  if (!existsSync(path.join(dir, 'model.json'))) {
    await prepareModel({
      modelPath: d.plainPath, tokenizerPath: path.join(path.dirname(d.plainPath), 'tokenizer.json'),
      targets: ['q_proj', 'v_proj'], heads: [], maxRank: 16, baseModel: `synthetic-${d.size}`, task: 'text-generation', maxLength: MAX_POSITIONS, outDir: dir,
    });
  }
  return { dir, manifest: await loadManifest(dir) };
}

