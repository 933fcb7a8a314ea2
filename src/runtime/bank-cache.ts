import ort from 'onnxruntime-node';
import type { LoraSlot } from '../model/manifest.js';
import type { AdapterPayload } from './batch.js';
import type { DeviceCopier } from './device-io.js';
import { buildAdapterIndex, buildLoraBanks } from './lora-banks.js';

/**
 * The identity of a run's bank: its adapters in order (id@version, plus each slot's rank and end
 * values, so that weights replaced by hand under an unchanged version are not served stale) and
 * whether it has the zero entry. Null when an adapter has no id.
 */
export function bankKey(adapters: readonly AdapterPayload[], needZero: boolean): string | null {
  const parts: string[] = [];
  for (const a of adapters) {
    if (a.id === undefined || a.version === undefined) return null;
    const probe = a.slots.map((s) => (s ? `${s.rank}:${s.a[0]}:${s.a[s.a.length - 1]}:${s.b[0]}:${s.b[s.b.length - 1]}` : '-')).join(',');
    parts.push(`${a.id}@${a.version}#${probe}`);
  }
  return `${parts.join('\u0000')}|${needZero ? 'zero' : ''}`;
}

/** What {@link LoraBankCache.feeds} did for one step. */
export interface BankFeeds {
  feeds: Record<string, ort.Tensor>;
  /** True when the banks of the previous step were used again (not rebuilt, not uploaded). */
  reused: boolean;
  /** Bytes copied to the device for the banks this step (0 on the CPU provider and on reuse). */
  uploadedBytes: number;
}

/**
 * The LoRA banks of consecutive runs (decoder steps, encoder batches): while a run's adapters (ids, versions, order,
 * and whether a row runs the base alone) are those of the step before, the banks are neither
 * rebuilt nor, on WebGPU, copied to the device again — only `adapter_index` is new. With a
 * {@link DeviceCopier} the banks are kept as device tensors; without one, as host tensors.
 * One entry: the previous step's banks are dropped (and their device memory released) when the
 * adapters change.
 */
export class LoraBankCache {
  private key: string | null = null;
  private banks: Record<string, ort.Tensor> = {};

  constructor(
    private readonly slots: readonly LoraSlot[],
    private readonly indexInput: string,
    private readonly copier: DeviceCopier | null,
  ) {}

  async feeds(adapters: readonly AdapterPayload[], rowAdapter: ArrayLike<number>): Promise<BankFeeds> {
    const { index, needZero } = buildAdapterIndex(adapters.length, rowAdapter);
    const key = bankKey(adapters, needZero);
    const indexTensor = new ort.Tensor('int64', index.data as BigInt64Array, index.dims);
    if (key !== null && key === this.key) return { feeds: { ...this.banks, [this.indexInput]: indexTensor }, reused: true, uploadedBytes: 0 };
    this.drop();
    const { feeds: raw } = buildLoraBanks(this.slots, this.indexInput, adapters, rowAdapter);
    const banks: Record<string, ort.Tensor> = {};
    let uploadedBytes = 0;
    for (const [name, f] of Object.entries(raw)) {
      if (name === this.indexInput) continue;
      if (this.copier) {
        banks[name] = await this.copier.upload(f);
        uploadedBytes += f.data.byteLength;
      } else {
        banks[name] = new ort.Tensor(f.type, f.data, f.dims);
      }
    }
    this.banks = banks;
    this.key = key;
    return { feeds: { ...banks, [this.indexInput]: indexTensor }, reused: false, uploadedBytes };
  }

  /** Releases the held banks (device memory on WebGPU). */
  drop(): void {
    for (const t of Object.values(this.banks)) t.dispose();
    this.banks = {};
    this.key = null;
  }
}
