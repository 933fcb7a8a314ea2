import type { SequenceKv } from '../generation/kv-cache.js';
import type { ModelManifest } from '../model/manifest.js';
import type { AdapterPayload } from './batch.js';
import type { RawFeed } from './feeds.js';
import { buildLoraBanks } from './lora-banks.js';

/** One row of a decoder step: the sequence's cache and the tokens it feeds now (a prompt chunk, or one token). */
export interface StepRow {
  kv: SequenceKv;
  /** New tokens (≥ 1); their positions follow the cache's length. */
  tokens: readonly number[];
  /** Index into the step's adapters, or -1 for the base alone. */
  adapter: number;
}

/** The shape of a step: `past` cached positions and `fresh` new positions per row (both left-padded). */
export interface StepShape { batch: number; past: number; fresh: number }

/**
 * The new tokens of a step over `past` (left-padded) cached positions: ids and position ids
 * `[batch, fresh]`, left-padded to the longest chunk, and the attention mask `[batch, past + fresh]`
 * with the new tokens' part set; the caller marks each row's real past positions.
 */
export function stepTokens(rows: readonly StepRow[], past: number, padId: number): { ids: BigInt64Array; pos: BigInt64Array; mask: BigInt64Array; fresh: number } {
  const batch = rows.length;
  let fresh = 1;
  for (const r of rows) fresh = Math.max(fresh, r.tokens.length);
  const total = past + fresh;
  const ids = new BigInt64Array(batch * fresh).fill(BigInt(padId)); // [batch, fresh]
  const pos = new BigInt64Array(batch * fresh); // [batch, fresh]
  const mask = new BigInt64Array(batch * total); // [batch, past + fresh]
  rows.forEach((r, i) => {
    const s = r.tokens.length;
    const padNew = fresh - s;
    for (let t = 0; t < s; t++) {
      ids[i * fresh + padNew + t] = BigInt(r.tokens[t]!);
      pos[i * fresh + padNew + t] = BigInt(r.kv.length + t);
    }
    for (let t = past + padNew; t < total; t++) mask[i * total + t] = 1n;
  });
  return { ids, pos, mask, fresh };
}

/**
 * Feeds of one decoder run in optimum's layout. Rows of different cache lengths and different
 * numbers of new tokens share the run: the past is left-padded to the longest cache and the
 * new tokens to the longest chunk; padding has attention_mask 0, so no real token sees it, and
 * every real token keeps its own position id. Hence a row's logits do not depend on the others.
 * `banks: false` leaves out the LoRA banks and adapter_index (the caller brings them, see LoraBankCache).
 */
export function buildDecoderFeeds(
  manifest: ModelManifest, rows: readonly StepRow[], adapters: readonly AdapterPayload[], opts: { banks?: boolean } = {},
): { feeds: Record<string, RawFeed>; shape: StepShape } {
  const g = manifest.generation!;
  const batch = rows.length;
  let past = 0;
  for (const r of rows) past = Math.max(past, r.kv.length);
  const { ids, pos, mask, fresh } = stepTokens(rows, past, g.padId);
  const total = past + fresh;
  rows.forEach((r, i) => { for (let t = past - r.kv.length; t < past; t++) mask[i * total + t] = 1n; });
  const feeds: Record<string, RawFeed> = {
    [manifest.inputs.inputIds]: { type: 'int64', data: ids, dims: [batch, fresh] },
    [manifest.inputs.attentionMask]: { type: 'int64', data: mask, dims: [batch, total] },
    [g.positionIds]: { type: 'int64', data: pos, dims: [batch, fresh] },
  };
  const per = g.kvHeads * past * g.headDim;
  for (let l = 0; l < g.layers; l++) {
    const K = new Float32Array(batch * per); // [batch, kv_heads, past, head_dim]
    const V = new Float32Array(batch * per);
    rows.forEach((r, i) => r.kv.copyInto(l, K, V, i, past));
    feeds[g.pastKeys[l]!] = { type: 'float32', data: K, dims: [batch, g.kvHeads, past, g.headDim] };
    feeds[g.pastValues[l]!] = { type: 'float32', data: V, dims: [batch, g.kvHeads, past, g.headDim] };
  }
  if (opts.banks !== false) {
    const { feeds: banks } = buildLoraBanks(manifest.loraSlots, manifest.inputs.adapterIndex, adapters, rows.map((r) => r.adapter));
    Object.assign(feeds, banks);
  }
  return { feeds, shape: { batch, past, fresh } };
}
