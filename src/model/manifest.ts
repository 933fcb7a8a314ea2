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

export type ModelTask = 'sequence-classification' | 'feature-extraction' | 'text-generation';

/**
 * What serving a decoder needs beyond the encoder's manifest: the KV-cache layout of the
 * graph (optimum's `text-generation-with-past`: one graph for prefill and decode) and the
 * tokenizer's special tokens.
 */
export interface GenerationSpec {
  /** Graph input with each new token's position, `[batch, seq]`. */
  positionIds: string;
  /** Graph output with the next-token logits, `[batch, seq, vocab]`. */
  logits: string;
  /** Per layer: inputs `past_key_values.{i}.key|value` and outputs `present.{i}.key|value`, `[batch, kv_heads, len, head_dim]`. */
  pastKeys: string[];
  pastValues: string[];
  presentKeys: string[];
  presentValues: string[];
  layers: number;
  kvHeads: number;
  headDim: number;
  /** Element type of the KV cache (the graph's past inputs). */
  kvDtype: 'float32';
  vocabSize: number;
  /** Most positions (prompt + generated tokens) a sequence may have. */
  maxPositions: number;
  bosId: number | null;
  /** Tokens that end generation (the tokenizer's eos, and the chat template's end-of-turn token). */
  eosIds: number[];
  padId: number;
  /** The Jinja chat template from tokenizer_config.json, if the model has one. */
  chatTemplate: string | null;
  bosToken: string | null;
  eosToken: string | null;
  /** Sampling temperature when a request gives none: 0 (greedy) when generation_config.json says
   * `do_sample: false`, its `temperature` otherwise; null: OpenAI's default (1). */
  defaultTemperature: number | null;
}

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
  /** Present for `text-generation` bases only. */
  generation?: GenerationSpec;
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
  if (m?.task === 'text-generation') {
    const g = m.generation;
    if (!g) problems.push('a text-generation manifest needs a "generation" section (run prepare again)');
    else {
      for (const k of ['layers', 'kvHeads', 'headDim', 'vocabSize', 'maxPositions'] as const) if (!posInt(g[k])) problems.push(`generation.${k} must be a positive integer`);
      for (const k of ['pastKeys', 'pastValues', 'presentKeys', 'presentValues'] as const) {
        if (!Array.isArray(g[k]) || g[k].length !== g.layers) problems.push(`generation.${k} must list one name per layer`);
      }
      if (!Array.isArray(g.eosIds) || g.eosIds.length === 0) problems.push('generation.eosIds must name at least one token');
    }
  }
  throwIfProblems('INVALID_MODEL', `invalid model manifest ${file}`, problems);
  return { ...m, aliases: m.aliases ?? [] };
}
