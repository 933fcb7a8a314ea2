import type { GenerationSpec } from '../model/manifest.js';

/** Tokens a sequence's cache grows by at a time (bounds the slack held per sequence). */
export const KV_BLOCK_TOKENS = 16;

/**
 * One sequence's KV cache: per layer a key and a value buffer laid out `[kv_heads, capacity, head_dim]`,
 * filled up to `length` tokens. It grows in blocks of {@link KV_BLOCK_TOKENS} tokens, so the
 * bytes held per token stay within one block of the exact `2 · layers · kv_heads · head_dim · 4`.
 */
export class SequenceKv {
  /** Positions this sequence holds (on the host, plus {@link deviceTokens} held only on the device). */
  length = 0;
  /**
   * The last of `length` positions that live only in a device-resident present tensor (WebGPU
   * runs keep the cache on the device between steps; see DeviceKv). The host buffers hold the first
   * `length - deviceTokens`; {@link takeDeviceTokens} hands the rest back to be copied in.
   */
  deviceTokens = 0;
  private capacity = 0;
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];

  constructor(private readonly spec: Pick<GenerationSpec, 'layers' | 'kvHeads' | 'headDim'>) {}

  /** Bytes one token takes across all layers (keys and values). */
  static bytesPerToken(spec: Pick<GenerationSpec, 'layers' | 'kvHeads' | 'headDim'>): number {
    return 2 * spec.layers * spec.kvHeads * spec.headDim * 4;
  }

  /** Bytes this sequence holds now (its capacity, not just its length). */
  get bytes(): number {
    return this.capacity * SequenceKv.bytesPerToken(this.spec);
  }

  private reserve(tokens: number): void {
    if (tokens <= this.capacity) return;
    const cap = Math.ceil(tokens / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS;
    const { layers, kvHeads, headDim } = this.spec;
    const grow = (old: Float32Array | undefined) => {
      const next = new Float32Array(kvHeads * cap * headDim); // [kv_heads, cap, head_dim]
      if (old) for (let h = 0; h < kvHeads; h++) next.set(old.subarray(h * this.capacity * headDim, (h * this.capacity + this.length) * headDim), h * cap * headDim);
      return next;
    };
    for (let l = 0; l < layers; l++) { this.keys[l] = grow(this.keys[l]); this.values[l] = grow(this.values[l]); }
    this.capacity = cap;
  }

  /**
   * Appends `count` positions of one row of a `present` output `[batch, kv_heads, total, head_dim]`,
   * starting at position `from` of that row.
   */
  append(layer: number, present: { key: Float32Array; value: Float32Array }, row: number, total: number, from: number, count: number): void {
    if (layer === 0) this.reserve(this.length + count);
    const { kvHeads, headDim } = this.spec;
    for (let h = 0; h < kvHeads; h++) {
      const src = ((row * kvHeads + h) * total + from) * headDim;
      const dst = (h * this.capacity + this.length) * headDim;
      this.keys[layer]!.set(present.key.subarray(src, src + count * headDim), dst);
      this.values[layer]!.set(present.value.subarray(src, src + count * headDim), dst);
    }
  }

  /** Marks `count` appended positions as held (after every layer's {@link append}). */
  commit(count: number): void {
    this.length += count;
  }

  /** Marks `count` new positions as held on the device only (their keys/values were not copied to the host). */
  addDeviceTokens(count: number): void {
    this.length += count;
    this.deviceTokens += count;
  }

  /** Forgets the device-only positions (so that {@link append} writes them next); returns how many there were. */
  takeDeviceTokens(): number {
    const n = this.deviceTokens;
    this.length -= n;
    this.deviceTokens = 0;
    return n;
  }

  /** Copies this cache into row `row` of a past feed `[batch, kv_heads, past, head_dim]`, right-aligned (left padding before it). */
  copyInto(layer: number, key: Float32Array, value: Float32Array, row: number, past: number): void {
    if (this.length === 0) return;
    if (this.deviceTokens > 0) throw new Error('SequenceKv.copyInto: positions are still on the device');
    const { kvHeads, headDim } = this.spec;
    const pad = past - this.length;
    for (let h = 0; h < kvHeads; h++) {
      const dst = ((row * kvHeads + h) * past + pad) * headDim;
      const src = h * this.capacity * headDim;
      key.set(this.keys[layer]!.subarray(src, src + this.length * headDim), dst);
      value.set(this.values[layer]!.subarray(src, src + this.length * headDim), dst);
    }
  }

  /** Drops everything (the sequence finished or was cancelled). */
  clear(): void {
    this.keys = []; this.values = []; this.capacity = 0; this.length = 0; this.deviceTokens = 0;
  }
}
