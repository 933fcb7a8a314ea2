import { AppError, clip, echo, throwIfProblems } from '../errors.js';
import type { ModelManifest } from '../model/manifest.js';
import { isTargeted, rankFor, scaleFor, type LoraAdapterConfig } from './peft-config.js';
import type { DecodedTensor } from './safetensors.js';

/** One module's LoRA weights, laid out for the graph's banks. */
export interface SlotWeights {
  rank: number;
  /** [d_in, r]: PEFT's lora_A [r, d_in] transposed. */
  a: Float32Array;
  /** [r, d_out]: PEFT's lora_B [d_out, r] transposed, with the scale (alpha/r or alpha/√r) folded in. */
  b: Float32Array;
}

/** One head's weights (a `modules_to_save` Linear). */
export interface HeadWeights {
  labels: number;
  /** [d_in, labels]: the PyTorch weight [labels, d_in] transposed. */
  weight: Float32Array;
  /** [labels] */
  bias: Float32Array;
}

/** An adapter ready to serve: everything fixed at load time, nothing left to compute per request. */
export interface AdapterWeights {
  id: string;
  /** Changes when the adapter on disk is replaced (requests keep the version they started with). */
  version: string;
  labels: string[] | null;
  /** Aligned with `manifest.loraSlots`; null where this adapter does not touch the module. */
  slots: Array<SlotWeights | null>;
  /** Aligned with `manifest.heads`; null where this adapter has no head. */
  heads: Array<HeadWeights | null>;
  maxRank: number;
  /** Bytes of weights held in memory. */
  bytes: number;
}

/** Options for mapping an adapter onto the base. */
export interface MapOptions {
  /** Accept an adapter whose base_model_name_or_path names another base (dimensions are still checked). */
  allowBaseMismatch?: boolean;
}

const PREFIX = 'base_model.model.';

type ParsedKey = { module: string; part: 'A' | 'B' | 'weight' | 'bias' } | null;

/**
 * PEFT's key forms, with or without the `base_model.model.` prefix and the adapter-name infix:
 * `<m>.lora_A.weight`, `<m>.lora_A.default.weight`, `<m>.weight` / `<m>.bias` for heads,
 * `<m>.modules_to_save.default.weight`.
 */
export function parsePeftKey(key: string): ParsedKey {
  const k = key.startsWith(PREFIX) ? key.slice(PREFIX.length) : key;
  const lora = /^(.+)\.lora_(A|B)(?:\.[A-Za-z0-9_-]+)?\.weight$/.exec(k);
  if (lora) return { module: lora[1]!, part: lora[2] as 'A' | 'B' };
  const saved = /^(.+?)(?:\.modules_to_save(?:\.[A-Za-z0-9_-]+)?)?\.(weight|bias)$/.exec(k);
  if (saved) return { module: saved[1]!, part: saved[2] as 'weight' | 'bias' };
  return null;
}

/** Base-name comparison that tolerates a hub owner prefix or a local path (`org/name`, `./name`). */
export function sameBase(adapterBase: string, manifest: ModelManifest): boolean {
  const names = [manifest.baseModel, ...manifest.aliases];
  const tail = (s: string) => s.replace(/\/+$/, '').split('/').pop() ?? s;
  return names.some((n) => n === adapterBase || tail(n) === tail(adapterBase));
}

/** One module's LoRA tensors, checked against its slot: what {@link layOutAdapter} copies. */
interface PlannedSlot {
  rank: number;
  /** PEFT's lora_A, [r, d_in] (a view of the file where it could be). */
  a: Float32Array;
  /** PEFT's lora_B, [d_out, r]. */
  b: Float32Array;
}

/** One head's tensors, checked against the base. */
interface PlannedHead {
  labels: number;
  /** [labels, d_in] */
  weight: Float32Array;
  /** [labels], or null for no bias. */
  bias: Float32Array | null;
}

/**
 * An adapter that passed every check against the base, not yet laid out: its tensors are
 * still the decoded (often: views of the file) ones. {@link layOutAdapter} turns it into
 * bank-ready weights; an upload only needs the checks and {@link AdapterPlan.bytes}.
 */
export interface AdapterPlan {
  id: string;
  cfg: LoraAdapterConfig;
  manifest: ModelManifest;
  /** Aligned with `manifest.loraSlots`. */
  slots: Array<PlannedSlot | null>;
  /** Aligned with `manifest.heads`. */
  heads: Array<PlannedHead | null>;
  maxRank: number;
  /** Bytes the laid-out weights will take. */
  bytes: number;
}

/** A tensor's shape for a message: short whatever the file holds. */
const dims = (shape: readonly number[]): string => clip(`[${shape.join(',')}]`);

/**
 * Checks an adapter's tensors against the base's slots: every problem is collected and reported
 * at once (INCOMPATIBLE_ADAPTER). Allocates nothing for the weights.
 */
export function planAdapter(
  id: string, manifest: ModelManifest, cfg: LoraAdapterConfig,
  tensors: ReadonlyMap<string, DecodedTensor>, opts: MapOptions = {},
): AdapterPlan {
  const problems: string[] = [];
  if (cfg.baseModelNameOrPath && !opts.allowBaseMismatch && !sameBase(cfg.baseModelNameOrPath, manifest)) {
    problems.push(`base_model_name_or_path ${echo(cfg.baseModelNameOrPath)} is not this server's base model "${manifest.baseModel}"`);
  }
  if (manifest.task === 'text-generation' && cfg.modulesToSave.length > 0) {
    problems.push(`modules_to_save (${cfg.modulesToSave.join(', ')}) is not supported on a text-generation base: the graph has no slot for a replaced module (train the adapter without modules_to_save, or merge it)`);
  }
  const slotIndex = new Map(manifest.loraSlots.map((s, i) => [s.module, i]));
  const headIndex = new Map(manifest.heads.map((h, i) => [h.module, i]));
  const found = new Map<string, { A?: DecodedTensor; B?: DecodedTensor; weight?: DecodedTensor; bias?: DecodedTensor }>();
  for (const [key, t] of tensors) {
    const p = parsePeftKey(key);
    if (!p) { problems.push(`tensor ${echo(key)} is not a LoRA (lora_A/lora_B) or modules_to_save key`); continue; }
    const isLora = p.part === 'A' || p.part === 'B';
    if (isLora && !slotIndex.has(p.module)) {
      problems.push(`tensor ${echo(key)}: module ${clip(p.module)} has no LoRA slot in the base (prepared targets: ${manifest.targets.join(', ')})`);
      continue;
    }
    if (!isLora && !headIndex.has(p.module)) {
      problems.push(`tensor ${echo(key)}: module ${clip(p.module)} is not a head of the base (heads: ${manifest.heads.map((h) => h.module).join(', ') || 'none'})`);
      continue;
    }
    const entry = found.get(p.module) ?? {};
    if (entry[p.part]) problems.push(`module ${p.module} has two ${p.part} tensors (second: ${echo(key)})`);
    entry[p.part] = t;
    found.set(p.module, entry);
  }

  const slots: Array<PlannedSlot | null> = manifest.loraSlots.map(() => null);
  let maxRank = 0;
  let floats = 0;
  manifest.loraSlots.forEach((slot, i) => {
    const e = found.get(slot.module);
    const targeted = isTargeted(cfg, slot.module);
    if (!e) {
      if (targeted) problems.push(`module ${slot.module} is targeted by target_modules but has no lora_A/lora_B tensors`);
      return;
    }
    if (!e.A || !e.B) { problems.push(`module ${slot.module} has lora_${e.A ? 'A' : 'B'} but no lora_${e.A ? 'B' : 'A'}`); return; }
    if (!targeted) problems.push(`module ${slot.module} has LoRA tensors but target_modules does not select it`);
    if (e.A.shape.length !== 2 || e.B.shape.length !== 2) { problems.push(`module ${slot.module}: lora_A and lora_B must be 2-D (lora_A is ${dims(e.A.shape)}, lora_B is ${dims(e.B.shape)})`); return; }
    const [r, dIn] = e.A.shape as [number, number];
    const [dOut, rB] = e.B.shape as [number, number];
    if (dIn !== slot.dIn) problems.push(`module ${slot.module}: lora_A is ${dims(e.A.shape)} but the base layer has d_in ${slot.dIn} (expected [r, ${slot.dIn}])`);
    if (dOut !== slot.dOut) problems.push(`module ${slot.module}: lora_B is ${dims(e.B.shape)} but the base layer has d_out ${slot.dOut} (expected [${slot.dOut}, r])`);
    if (r !== rB) problems.push(`module ${slot.module}: lora_A rank ${r} and lora_B rank ${rB} differ`);
    if (r > manifest.maxRank) problems.push(`module ${slot.module}: rank ${r} exceeds the base model's maximum rank ${manifest.maxRank}`);
    if (targeted && r !== rankFor(cfg, slot.module)) problems.push(`module ${slot.module}: tensors have rank ${r} but the config says ${rankFor(cfg, slot.module)}`);
    if (dIn !== slot.dIn || dOut !== slot.dOut || r !== rB || r > manifest.maxRank || r < 1) return;
    slots[i] = { rank: r, a: e.A.data, b: e.B.data };
    maxRank = Math.max(maxRank, r);
    floats += r * (slot.dIn + slot.dOut);
  });

  const heads: Array<PlannedHead | null> = manifest.heads.map(() => null);
  manifest.heads.forEach((head, i) => {
    const e = found.get(head.module);
    const wanted = cfg.modulesToSave.some((m) => head.module === m || head.module.endsWith(`.${m}`));
    if (!e) {
      if (wanted) problems.push(`modules_to_save names ${head.module} but the file has no ${head.module}.weight`);
      return;
    }
    if (!e.weight) { problems.push(`head ${head.module} has a bias but no weight`); return; }
    const [labels, dIn] = e.weight.shape;
    if (e.weight.shape.length !== 2 || dIn !== head.dIn) { problems.push(`head ${head.module}: weight is ${dims(e.weight.shape)}, expected [labels, ${head.dIn}]`); return; }
    if (e.bias && (e.bias.shape.length !== 1 || e.bias.shape[0] !== labels)) problems.push(`head ${head.module}: bias is ${dims(e.bias.shape)}, expected [${labels}]`);
    if (cfg.labels && cfg.labels.length !== labels) problems.push(`head ${head.module} has ${labels} outputs but id2label has ${cfg.labels.length} labels`);
    if (!labels) problems.push(`head ${head.module} has no outputs`);
    heads[i] = { labels: labels!, weight: e.weight.data, bias: e.bias?.data ?? null };
    floats += labels! * (dIn! + 1);
  });
  if (!slots.some(Boolean) && !heads.some(Boolean)) problems.push('the adapter has no LoRA tensors for any slot of this base');
  throwIfProblems('INCOMPATIBLE_ADAPTER', `adapter "${id}" does not fit base model ${manifest.baseModel}`, problems);
  return { id, cfg, manifest, slots, heads, maxRank: Math.max(maxRank, 1), bytes: floats * 4 };
}

/**
 * Lays a checked adapter out for the graph's banks: one SharedArrayBuffer (the worker thread
 * reads it without a copy), A and the head transposed and the scale folded into B while being
 * copied straight from the decoded tensors, with no copy in between. Every value copied is
 * also checked to be finite, in the same pass (so a loader may skip readSafetensors' own scan):
 * a NaN or ±Inf throws INVALID_SAFETENSORS.
 */
export function layOutAdapter(plan: AdapterPlan, version: string): AdapterWeights {
  const { manifest, cfg } = plan;
  const mem = new Float32Array(new SharedArrayBuffer(plan.bytes));
  let off = 0;
  const take = (n: number) => { const v = mem.subarray(off, off + n); off += n; return v; };
  // v - v is 0 for every finite v and NaN for NaN and ±Inf.
  let nonFinite = false;
  const slots: Array<SlotWeights | null> = manifest.loraSlots.map((slot, i) => {
    const s = plan.slots[i];
    if (!s) return null;
    const r = s.rank;
    const dIn = slot.dIn;
    const dOut = slot.dOut;
    const scale = scaleFor(cfg, slot.module);
    const A = s.a; // [r, d_in]
    const B = s.b; // [d_out, r]
    const a = take(dIn * r); // [d_in, r]
    for (let k = 0; k < r; k++) {
      for (let j = 0; j < dIn; j++) {
        const v = A[k * dIn + j]!;
        if (v - v !== 0) nonFinite = true;
        a[j * r + k] = v;
      }
    }
    const b = take(r * dOut); // [r, d_out]
    for (let o = 0; o < dOut; o++) {
      for (let k = 0; k < r; k++) {
        const v = B[o * r + k]!;
        if (v - v !== 0) nonFinite = true;
        b[k * dOut + o] = v * scale;
      }
    }
    return { rank: r, a, b };
  });
  const heads: Array<HeadWeights | null> = manifest.heads.map((head, i) => {
    const h = plan.heads[i];
    if (!h) return null;
    const L = h.labels;
    const dIn = head.dIn;
    const w = take(dIn * L); // [d_in, L]
    for (let l = 0; l < L; l++) {
      for (let j = 0; j < dIn; j++) {
        const v = h.weight[l * dIn + j]!;
        if (v - v !== 0) nonFinite = true;
        w[j * L + l] = v;
      }
    }
    const bias = take(L); // [L]; zeros when the head has no bias
    if (h.bias) {
      for (let l = 0; l < L; l++) if (h.bias[l]! - h.bias[l]! !== 0) nonFinite = true;
      bias.set(h.bias);
    }
    return { labels: L, weight: w, bias };
  });
  if (nonFinite) throw new AppError('INVALID_SAFETENSORS', `adapter "${plan.id}": a weight is NaN or infinite`);
  return { id: plan.id, version, labels: cfg.labels, slots, heads, maxRank: plan.maxRank, bytes: plan.bytes };
}

/**
 * Checks an adapter's tensors against the base's slots and builds its bank-ready weights
 * ({@link planAdapter}, then {@link layOutAdapter}).
 */
export function mapAdapterToSlots(
  id: string, version: string, manifest: ModelManifest, cfg: LoraAdapterConfig,
  tensors: ReadonlyMap<string, DecodedTensor>, opts: MapOptions = {},
): AdapterWeights {
  return layOutAdapter(planAdapter(id, manifest, cfg, tensors, opts), version);
}
