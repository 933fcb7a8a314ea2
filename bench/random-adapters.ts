/**
 * Random PEFT LoRA adapters for a prepared base: real `adapter_config.json` +
 * `adapter_model.safetensors` directories, as `peft` saves them for a SEQ_CLS model, with
 * seeded random weights. Unlike a freshly initialised PEFT adapter, lora_B is NONZERO, so
 * every adapter really changes the base's outputs (benchmarks and tests can tell them apart).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeSafetensors, type SafetensorsDType } from '../src/adapter/safetensors.js';
import type { ModelManifest } from '../src/model/manifest.js';
import { NormalRng } from './synthetic-bert.js';

/** Options of {@link writeRandomAdapter}. */
export interface RandomAdapterOptions {
  /** Adapter folder to create (or overwrite). */
  dir: string;
  /** The prepared base: which LoRA slots and heads exist, and its `baseModel` name. */
  manifest: ModelManifest;
  /** LoRA rank `r`. */
  rank: number;
  /** `lora_alpha` (the scale is alpha / r). */
  alpha: number;
  /** PEFT `target_modules` (list semantics: a module path equal to a key or ending with "." + key). */
  targets: string[];
  /** Outputs of each head (`modules_to_save`), e.g. the classifier's label count. */
  numLabels: number;
  /** Label names in index order (`id2label`); default `LABEL_0` … `LABEL_{n-1}`. */
  labels?: string[];
  /** PRNG seed: the same options give identical files. */
  seed: number;
  /** Stored encoding of every tensor (default F32). */
  dtype?: 'F32' | 'F16';
}

/** Std of lora_B: small but nonzero (PEFT initialises B to zero, which would be a no-op adapter). */
const B_STD = 0.02;
/** Std of head weights and biases (BERT's initializer_range). */
const HEAD_STD = 0.02;
const PREFIX = 'base_model.model.';

const matches = (module: string, keys: readonly string[]) => keys.some((k) => module === k || module.endsWith(`.${k}`));

/**
 * Writes a PEFT LoRA adapter for `opts.manifest`: lora_A `[r, d_in]` ~ N(0, 1/d_in) (the
 * scale of PEFT's Kaiming init), lora_B `[d_out, r]` ~ N(0, 0.02²), for every LoRA slot whose
 * module matches `targets`, and a random head (`<module>.weight [L, d_in]`, `.bias [L]`) for
 * every head of the manifest (saved as `modules_to_save`).
 */
export async function writeRandomAdapter(opts: RandomAdapterOptions): Promise<void> {
  const { manifest, rank, alpha, targets, numLabels, seed, dtype = 'F32' } = opts;
  const problems: string[] = [];
  if (!Number.isInteger(rank) || rank < 1) problems.push(`rank must be a positive integer, got ${rank}`);
  if (!(alpha > 0)) problems.push(`alpha must be positive, got ${alpha}`);
  if (!Number.isInteger(numLabels) || numLabels < 1) problems.push(`numLabels must be a positive integer, got ${numLabels}`);
  if (opts.labels && opts.labels.length !== numLabels) problems.push(`labels has ${opts.labels.length} names but numLabels is ${numLabels}`);
  const slots = manifest.loraSlots.filter((s) => matches(s.module, targets));
  for (const t of targets) if (!manifest.loraSlots.some((s) => matches(s.module, [t]))) problems.push(`target "${t}" matches no LoRA slot of ${manifest.baseModel}`);
  if (problems.length > 0) throw new RangeError(`cannot write random adapter: ${problems.join('; ')}`);

  const rng = new NormalRng(seed);
  const tensors: Record<string, { dtype: SafetensorsDType; shape: number[]; data: Float32Array }> = {};
  for (const s of slots) {
    tensors[`${PREFIX}${s.module}.lora_A.weight`] = { dtype, shape: [rank, s.dIn], data: rng.fill(new Float32Array(rank * s.dIn), 1 / Math.sqrt(s.dIn)) }; // [r, d_in]
    tensors[`${PREFIX}${s.module}.lora_B.weight`] = { dtype, shape: [s.dOut, rank], data: rng.fill(new Float32Array(s.dOut * rank), B_STD) }; // [d_out, r]
  }
  for (const h of manifest.heads) {
    tensors[`${PREFIX}${h.module}.weight`] = { dtype, shape: [numLabels, h.dIn], data: rng.fill(new Float32Array(numLabels * h.dIn), HEAD_STD) }; // [L, d_in]
    tensors[`${PREFIX}${h.module}.bias`] = { dtype, shape: [numLabels], data: rng.fill(new Float32Array(numLabels), HEAD_STD) }; // [L]
  }
  const labels = opts.labels ?? Array.from({ length: numLabels }, (_, i) => `LABEL_${i}`);
  const hasHead = manifest.heads.length > 0;
  const config = {
    peft_type: 'LORA',
    task_type: hasHead ? 'SEQ_CLS' : 'FEATURE_EXTRACTION',
    base_model_name_or_path: manifest.baseModel,
    r: rank,
    lora_alpha: alpha,
    lora_dropout: 0.1,
    target_modules: targets,
    modules_to_save: hasHead ? manifest.heads.map((h) => h.module) : null,
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: false,
    init_lora_weights: true,
    inference_mode: true,
    ...(hasHead ? { id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])), label2id: Object.fromEntries(labels.map((l, i) => [l, i])) } : {}),
  };
  await mkdir(opts.dir, { recursive: true });
  await writeFile(path.join(opts.dir, 'adapter_config.json'), `${JSON.stringify(config, null, 2)}\n`);
  await writeFile(path.join(opts.dir, 'adapter_model.safetensors'), writeSafetensors(tensors, { format: 'pt' }));
}
