import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { GenerationSpec } from './manifest.js';
import { toNumber, type GraphProto } from './onnx-graph.js';

/** The projections of a Llama-style block that `prepare` slots by default for a decoder. */
export const DECODER_PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

type Layout = Omit<GenerationSpec, 'maxPositions' | 'bosId' | 'eosIds' | 'padId' | 'chatTemplate' | 'bosToken' | 'eosToken' | 'defaultTemperature'>;

function dimsOf(v: { type?: { tensorType?: { shape?: { dim?: Array<{ dimValue?: unknown; dimParam?: string | null }> | null } | null } | null } | null }): Array<number | string> {
  return (v.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimParam ? d.dimParam : toNumber(d.dimValue)));
}

/**
 * Reads the KV-cache layout of a `text-generation-with-past` export (optimum's names):
 * inputs `input_ids`, `attention_mask`, `position_ids`, `past_key_values.{i}.key|value`
 * `[batch, kv_heads, past, head_dim]`; outputs `logits [batch, seq, vocab]`, `present.{i}.key|value`.
 * Every mismatch is added to `problems`.
 */
export function readDecoderLayout(graph: GraphProto, problems: string[]): Layout | null {
  const inputs = new Map(graph.input.map((i) => [i.name ?? '', i] as const));
  const outputs = new Map(graph.output.map((o) => [o.name ?? '', o] as const));
  const before = problems.length;
  if (!inputs.has('position_ids')) problems.push('decoder graph has no "position_ids" input (export with optimum --task text-generation-with-past, or name it so in torch.onnx.export)');
  const logits = outputs.get('logits');
  if (!logits) problems.push('decoder graph has no "logits" output');
  let layers = 0;
  while (inputs.has(`past_key_values.${layers}.key`)) layers++;
  if (layers === 0) {
    problems.push('decoder graph has no past_key_values.{i}.key inputs: it has no KV cache (export with --task text-generation-with-past, not text-generation)');
    return null;
  }
  const names = { pastKeys: [] as string[], pastValues: [] as string[], presentKeys: [] as string[], presentValues: [] as string[] };
  let kvHeads = 0;
  let headDim = 0;
  for (let i = 0; i < layers; i++) {
    const pk = `past_key_values.${i}.key`, pv = `past_key_values.${i}.value`;
    const ok = `present.${i}.key`, ov = `present.${i}.value`;
    if (!inputs.has(pv)) problems.push(`decoder graph has ${pk} but no ${pv} input`);
    if (!outputs.has(ok) || !outputs.has(ov)) problems.push(`decoder graph has no ${ok} / ${ov} outputs for layer ${i}`);
    for (const n of [pk, pv]) {
      const d = inputs.get(n) ? dimsOf(inputs.get(n)!) : [];
      if (d.length !== 4 || typeof d[1] !== 'number' || typeof d[3] !== 'number') {
        problems.push(`${n} must be [batch, kv_heads, past, head_dim] with fixed kv_heads and head_dim (got [${d.join(', ')}])`);
        continue;
      }
      if (kvHeads === 0) { kvHeads = d[1]; headDim = d[3]; } else if (d[1] !== kvHeads || d[3] !== headDim) problems.push(`${n} is [${d.join(', ')}]; other layers have ${kvHeads} KV heads of ${headDim}`);
    }
    names.pastKeys.push(pk); names.pastValues.push(pv); names.presentKeys.push(ok); names.presentValues.push(ov);
  }
  if (inputs.has(`past_key_values.${layers}.value`)) problems.push(`decoder graph has past_key_values.${layers}.value but no .key`);
  const elem = inputs.get('past_key_values.0.key')?.type?.tensorType?.elemType;
  if (elem !== undefined && elem !== 1) problems.push(`past_key_values are of ONNX element type ${elem}; only float32 KV caches are supported`);
  const ld = logits ? dimsOf(logits) : [];
  const vocabSize = typeof ld[2] === 'number' ? ld[2] : 0;
  if (logits && (ld.length !== 3 || vocabSize <= 0)) problems.push(`logits must be [batch, seq, vocab] with a fixed vocab (got [${ld.join(', ')}])`);
  if (problems.length > before) return null;
  return { positionIds: 'position_ids', logits: 'logits', ...names, layers, kvHeads, headDim, kvDtype: 'float32', vocabSize };
}

interface TokenizerFiles { added_tokens?: Array<{ id: number; content: string }> }
interface TokenizerConfig { bos_token?: unknown; eos_token?: unknown; pad_token?: unknown; chat_template?: unknown }
interface GenerationConfig { bos_token_id?: unknown; eos_token_id?: unknown; pad_token_id?: unknown; do_sample?: unknown; temperature?: unknown }

const tokenString = (t: unknown): string | null => (typeof t === 'string' ? t : t && typeof (t as { content?: unknown }).content === 'string' ? (t as { content: string }).content : null);

async function readJson<T>(file: string): Promise<T | null> {
  if (!existsSync(file)) return null;
  return JSON.parse(await readFile(file, 'utf8')) as T;
}

/**
 * The special tokens and chat template of a decoder, from the Hugging Face files beside
 * tokenizer.json: `tokenizer_config.json` (bos/eos/pad tokens, chat_template) and
 * `generation_config.json` (eos_token_id may list several ids, e.g. end-of-text and end-of-turn;
 * `do_sample: false` makes greedy the default for requests that give no temperature).
 */
export async function readSpecialTokens(tokenizerPath: string, problems: string[]): Promise<Pick<GenerationSpec, 'bosId' | 'eosIds' | 'padId' | 'chatTemplate' | 'bosToken' | 'eosToken' | 'defaultTemperature'>> {
  const dir = path.dirname(tokenizerPath);
  const tok = (await readJson<TokenizerFiles>(tokenizerPath)) ?? {};
  const cfg = (await readJson<TokenizerConfig>(path.join(dir, 'tokenizer_config.json'))) ?? {};
  const gen = (await readJson<GenerationConfig>(path.join(dir, 'generation_config.json'))) ?? {};
  const idOf = new Map((tok.added_tokens ?? []).map((t) => [t.content, t.id] as const));
  const bosToken = tokenString(cfg.bos_token);
  const eosToken = tokenString(cfg.eos_token);
  const padToken = tokenString(cfg.pad_token);
  const ids = (v: unknown): number[] => (typeof v === 'number' ? [v] : Array.isArray(v) ? v.filter((x): x is number => Number.isInteger(x)) : []);
  const eosIds = [...new Set([...(eosToken !== null && idOf.has(eosToken) ? [idOf.get(eosToken)!] : []), ...ids(gen.eos_token_id)])];
  if (eosIds.length === 0) problems.push(`no end-of-sequence token: set eos_token in ${path.join(dir, 'tokenizer_config.json')} (an added token of tokenizer.json) or eos_token_id in generation_config.json`);
  const bosId = ids(gen.bos_token_id)[0] ?? (bosToken !== null ? idOf.get(bosToken) ?? null : null);
  const padId = ids(gen.pad_token_id)[0] ?? (padToken !== null ? idOf.get(padToken) : undefined) ?? eosIds[0] ?? 0;
  const t = gen.temperature;
  const defaultTemperature = gen.do_sample === false ? 0 : typeof t === 'number' && t >= 0 && t <= 2 ? t : null;
  return { bosId, eosIds, padId, chatTemplate: typeof cfg.chat_template === 'string' ? cfg.chat_template : null, bosToken, eosToken, defaultTemperature };
}
