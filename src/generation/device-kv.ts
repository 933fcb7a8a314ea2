import ort from 'onnxruntime-node';
import { AppError } from '../errors.js';
import type { ModelManifest } from '../model/manifest.js';
import { stepTokens, type StepRow, type StepShape } from '../runtime/decoder-feeds.js';
import type { DeviceCopier } from '../runtime/device-io.js';
import type { SequenceKv } from './kv-cache.js';

interface Held {
  /** The rows of the step that produced the tensors, in order. */
  rows: SequenceKv[];
  /** Positions per row in the tensors (the step's past + fresh, padding included). */
  total: number;
  /** The step's attention mask `[batch, total]`: which positions of each row are real. */
  mask: BigInt64Array;
  /** The step's `present.*` outputs, on the device, by past input name. */
  past: Record<string, ort.Tensor>;
}

/**
 * The KV cache of the last decoder step, kept on the WebGPU device. The session returns every
 * `present.*` output as a `gpu-buffer` tensor, and while the next step runs the same sequences
 * in the same order those tensors are fed straight back as `past_key_values.*` (padding and all;
 * the mask keeps padding invisible): nothing of the cache crosses to or from the host. When the
 * rows change (a sequence joins, finishes or pauses), {@link sync} downloads the tensors once and
 * copies each row's device-only positions into its host {@link SequenceKv}; that step then runs
 * from the host caches as before.
 */
export class DeviceKv {
  private held: Held | null = null;

  constructor(private readonly manifest: ModelManifest, private readonly copier: DeviceCopier) {}

  /** True when `rows` are the held step's sequences, in its order, each still holding its device positions. */
  continues(rows: readonly StepRow[]): boolean {
    const h = this.held;
    if (!h || h.rows.length !== rows.length) return false;
    return rows.every((r, i) => r.kv === h.rows[i] && r.kv.deviceTokens > 0);
  }

  /** Feeds of a step that {@link continues} the held one: the held tensors as the past, new ids, positions and mask. */
  feeds(rows: readonly StepRow[]): { feeds: Record<string, ort.Tensor>; shape: StepShape; mask: BigInt64Array } {
    const h = this.held!;
    const m = this.manifest;
    const g = m.generation!;
    const batch = rows.length;
    const past = h.total;
    const { ids, pos, mask, fresh } = stepTokens(rows, past, g.padId);
    const total = past + fresh;
    // the past is the held tensors': their positions are real where the held step's mask says so
    rows.forEach((_, i) => mask.set(h.mask.subarray(i * past, (i + 1) * past), i * total));
    const feeds: Record<string, ort.Tensor> = {
      [m.inputs.inputIds]: new ort.Tensor('int64', ids, [batch, fresh]),
      [m.inputs.attentionMask]: new ort.Tensor('int64', mask, [batch, total]),
      [g.positionIds]: new ort.Tensor('int64', pos, [batch, fresh]),
      ...h.past,
    };
    return { feeds, shape: { batch, past, fresh }, mask };
  }

  /**
   * After a step: holds its `present.*` device tensors for the next step (releasing the ones it
   * replaces) and marks each row's new positions as device-only.
   */
  keep(rows: readonly StepRow[], shape: StepShape, mask: BigInt64Array, res: Record<string, ort.Tensor>): void {
    const g = this.manifest.generation!;
    const past: Record<string, ort.Tensor> = {};
    for (let l = 0; l < g.layers; l++) {
      past[g.pastKeys[l]!] = res[g.presentKeys[l]!]!;
      past[g.pastValues[l]!] = res[g.presentValues[l]!]!;
    }
    this.release();
    this.held = { rows: rows.map((r) => r.kv), total: shape.past + shape.fresh, mask, past };
    for (const r of rows) r.kv.addDeviceTokens(r.tokens.length);
  }

  /**
   * Copies the device-only positions of every held row into its host cache (rows cleared since
   * are skipped) and releases the device tensors. Returns the bytes downloaded.
   */
  async sync(): Promise<number> {
    const h = this.held;
    if (!h) return 0;
    const g = this.manifest.generation!;
    const todo = h.rows.map((kv) => (kv.deviceTokens > 0 ? kv : null));
    let bytes = 0;
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    if (todo.some((kv) => kv !== null)) {
      for (let l = 0; l < g.layers; l++) {
        keys.push(await this.copier.download(h.past[g.pastKeys[l]!]!));
        values.push(await this.copier.download(h.past[g.pastValues[l]!]!));
        bytes += keys[l]!.byteLength + values[l]!.byteLength;
      }
    }
    todo.forEach((kv, i) => {
      if (!kv) return;
      const pending = kv.takeDeviceTokens();
      const real: number[] = [];
      for (let t = 0; t < h.total; t++) if (h.mask[i * h.total + t] === 1n) real.push(t);
      if (real.length !== kv.length + pending) throw new AppError('INTERNAL', `device KV of row ${i}: ${real.length} real positions, expected ${kv.length + pending}`);
      const mine = real.slice(kv.length);
      for (let a = 0; a < mine.length;) {
        let b = a + 1;
        while (b < mine.length && mine[b] === mine[b - 1]! + 1) b++;
        for (let l = 0; l < g.layers; l++) kv.append(l, { key: keys[l]!, value: values[l]! }, i, h.total, mine[a]!, b - a);
        kv.commit(b - a);
        a = b;
      }
    });
    this.release();
    return bytes;
  }

  /** Releases the held device tensors (their positions are lost unless {@link sync} ran first). */
  release(): void {
    if (!this.held) return;
    for (const t of Object.values(this.held.past)) t.dispose();
    this.held = null;
  }
}
