/**
 * Naive baseline 2: a micro-batcher whose batches hold rows of ONE adapter only (what a server
 * without mixed-adapter batches can do). The queue is grouped by adapter; each run takes the
 * oldest row's adapter and up to maxBatchRows of its rows, oldest first. Same engine, same
 * feeds (a bank of one), same settings as the real Batcher, so the only difference measured is
 * the batching rule.
 */
import type { AdapterWeights } from '../src/adapter/lora-weights.js';
import type { BatchInput } from '../src/runtime/batch.js';
import type { Engine } from '../src/runtime/engine.js';
import type { RowRequest } from '../src/scheduler/batcher.js';

interface Pending {
  row: RowRequest;
  resolve(): void;
  reject(e: Error): void;
}

/** Options: the subset of the real Batcher's. */
export interface SameAdapterBatcherOptions {
  engine: Engine;
  maxBatchRows: number;
  padId: number;
  onBatch?(rows: number): void;
}

export class SameAdapterBatcher {
  /** Rows per adapter, oldest first; Map iteration order is the order adapters first queued. */
  private readonly groups = new Map<AdapterWeights | null, Pending[]>();
  /** All rows in arrival order, to find the oldest (entries already taken are skipped lazily). */
  private readonly order: Pending[] = [];
  private readonly taken = new WeakSet<Pending>();
  private running = false;

  constructor(private readonly opts: SameAdapterBatcherOptions) {}

  submit(row: RowRequest): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const p: Pending = { row, resolve, reject };
      const g = this.groups.get(row.adapter);
      if (g) g.push(p);
      else this.groups.set(row.adapter, [p]);
      this.order.push(p);
      if (!this.running) void this.runOne();
    });
  }

  /** The oldest waiting row's adapter, and up to maxBatchRows of that adapter's rows. */
  private take(): Pending[] {
    while (this.order.length && this.taken.has(this.order[0]!)) this.order.shift();
    const oldest = this.order[0];
    if (!oldest) return [];
    const group = this.groups.get(oldest.row.adapter)!;
    const picked = group.splice(0, this.opts.maxBatchRows);
    if (group.length === 0) this.groups.delete(oldest.row.adapter);
    for (const p of picked) this.taken.add(p);
    return picked;
  }

  private async runOne(): Promise<void> {
    this.running = true;
    try {
      for (let picked = this.take(); picked.length; picked = this.take()) {
        try {
          const out = await this.opts.engine.run(this.pack(picked));
          this.opts.onBatch?.(picked.length);
          // The per-row copies the real Batcher makes when it delivers, so both sides do the same work.
          picked.forEach((p, r) => {
            out.logits?.slice(r * out.labels, (r + 1) * out.labels);
            out.embeddings?.slice(r * out.hidden, (r + 1) * out.hidden);
            p.resolve();
          });
        } catch (e) {
          for (const p of picked) p.reject(e as Error);
        }
      }
    } finally {
      this.running = false;
    }
  }

  private pack(picked: Pending[]): BatchInput {
    const batch = picked.length;
    const seqLen = Math.max(...picked.map((p) => p.row.ids.length));
    const inputIds = new Int32Array(batch * seqLen).fill(this.opts.padId); // [batch, seq]
    const lengths = new Int32Array(batch); // [batch]
    picked.forEach((p, r) => {
      inputIds.set(p.row.ids, r * seqLen);
      lengths[r] = p.row.ids.length;
    });
    const a = picked[0]!.row.adapter;
    return {
      batch, seqLen, inputIds, lengths,
      adapters: a ? [{ slots: a.slots, heads: a.heads }] : [],
      rowAdapter: new Int32Array(batch).fill(a ? 0 : -1), // [batch]
    };
  }
}
