import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError, throwIfProblems } from '../errors.js';

/** One LoRA slot: a linear layer of the base whose A/B banks are graph inputs. */
export interface LoraSlot {
  /** Module path as PEFT names it, e.g. `encoder.layer.0.attention.self.query`. */
  module: string;
  dIn: number;
  dOut: number;
  /** Graph input holding the A bank, float32 `[k, d_in, r]` (PEFT's lora_A transposed). */
  inputA: string;
  /** Graph input holding the B bank, float32 `[k, r, d_out]` (PEFT's lora_B transposed, scale folded in). */
  inputB: string;
}

/** One head slot (a PEFT `modules_to_save` linear layer, e.g. `classifier`). */
export interface HeadSlot {
  module: string;
  dIn: number;
  /** Graph input for the weight bank, float32 `[k, d_in, labels]` (the PyTorch weight transposed). */
  inputWeight: string;
  /** Graph input for the bias bank, float32 `[k, labels]`. */
  inputBias: string;
  /** Graph output this head writes, `[batch, labels]`. */
  output: string;
}

export type ModelTask = 'sequence-classification' | 'feature-extraction';

/** `model.json`: what `prepare` wrote next to the slotted `model.onnx`. */
export interface ModelManifest {
  format: 'adapterhost.model/v1';
  /** The base model's name; adapters' `base_model_name_or_path` must match it (or its aliases). */
  baseModel: string;
  /** Other names the base is known by (e.g. the hub id it was exported from). */
  aliases: string[];
  task: ModelTask;
  modelFile: string;
  tokenizerFile: string;
  /** Largest sequence (tokens, with specials) the model accepts. */
  maxLength: number;
  hiddenSize: number;
  /** Largest LoRA rank an adapter may have. */
  maxRank: number;
  /** Target patterns prepare was given (PEFT `target_modules` semantics). */
  targets: string[];
  inputs: { inputIds: string; attentionMask: string; tokenTypeIds: string | null; adapterIndex: string };
  /** Output with the pooled sentence embedding `[batch, hidden]`, if the model has one. */
  embeddingOutput: string | null;
  loraSlots: LoraSlot[];
  heads: HeadSlot[];
  /** Bytes of the base model's weights (the ONNX file). */
  baseBytes: number;
}

const posInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

/** Reads and checks `model.json` in `dir`. */
export async function loadManifest(dir: string): Promise<ModelManifest> {
  const file = path.join(dir, 'model.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new AppError('INVALID_MODEL', `cannot read model manifest ${file}: ${(e as Error).message}`, { cause: e });
  }
  const m = raw as ModelManifest;
  const problems: string[] = [];
  if (m?.format !== 'adapterhost.model/v1') problems.push(`format must be "adapterhost.model/v1"`);
  if (typeof m?.baseModel !== 'string' || m.baseModel === '') problems.push('baseModel must be a non-empty string');
  for (const k of ['maxLength', 'hiddenSize', 'maxRank', 'baseBytes'] as const) {
    if (!posInt(m?.[k])) problems.push(`${k} must be a positive integer`);
  }
  if (!Array.isArray(m?.loraSlots)) problems.push('loraSlots must be an array');
  if (!Array.isArray(m?.heads)) problems.push('heads must be an array');
  throwIfProblems('INVALID_MODEL', `invalid model manifest ${file}`, problems);
  return { ...m, aliases: m.aliases ?? [] };
}
