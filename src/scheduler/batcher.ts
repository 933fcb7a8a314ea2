import { AppError } from '../errors.js';
import type { AdapterPayload, BatchInput, BatchOutput } from '../runtime/batch.js';
import type { Engine } from '../runtime/engine.js';
import type { AdapterWeights } from '../adapter/lora-weights.js';

/** One input row: its token ids and the adapter it runs with (null: the base alone). */
export interface RowRequest {
  ids: number[];
  adapter: AdapterWeights | null;
}

/** One row's answer. */
export interface RowResult {
  /** The adapter head's logits (its own label count), or null when it has no head. */
  logits: Float32Array | null;
  /** The pooled embedding, or null when the model has none. */
  embedding: Float32Array | null;
}

/** What the batcher reports per run (for metrics). */
export interface BatchReport {
  rows: number;
  distinctAdapters: number;
  /** Each row's wait in the queue, seconds. */
  queueWaits: number[];
  runSeconds: number;
  feedSeconds: number;
  paddedTokens: number;
  realTokens: number;
  /** Estimated bytes the run moved between host and device (WebGPU; absent on the CPU provider). */
  transfer?: { hostToDevice: number; deviceToHost: number };
}

export interface BatcherOptions {
  engine: Engine;
  /** Most rows in one run. */
  maxBatchRows: number;
  /** How long the oldest row may wait for company, ms. */
  maxWaitMs: number;
  /** Most rows waiting; past it submit() fails with QUEUE_FULL (429 + Retry-After). */
  maxQueueRows: number;
  padId: number;
  onBatch?(r: BatchReport): void;
}

interface Pending {
  row: RowRequest;
  enqueued: number;
  resolve(r: RowResult): void;
  reject(e: Error): void;
}

/** Rows whose lengths fall in one bucket pad little when batched together. */
const bucketOf = (len: number) => Math.ceil(len / 16);

/**
 * Micro-batcher: gathers rows from concurrent requests into one engine run where rows may use
 * different adapters (the mixed-adapter batch), grouping by length to limit padding. The oldest
 * row always goes in the next batch, so nothing starves. One run at a time; rows that arrive
 * meanwhile form the next batch.
 */
export class Batcher {
  private queue: Pending[] = [];
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly opts: BatcherOptions) {}

  get queuedRows(): number {
    return this.queue.length;
  }

  get busy(): boolean {
    return this.running || this.queue.length > 0;
  }

  /** Admits all rows of a request or none (QUEUE_FULL); admitted rows are never dropped. */
  submit(rows: RowRequest[]): Promise<RowResult[]> {
    if (this.closed) return Promise.reject(new AppError('SHUTTING_DOWN', 'the server is shutting down'));
    if (this.queue.length + rows.length > this.opts.maxQueueRows) {
      return Promise.reject(new AppError('QUEUE_FULL', `the inference queue is full (${this.queue.length} rows waiting, limit ${this.opts.maxQueueRows}); retry shortly`, { headers: { 'Retry-After': '1' } }));
    }
    const now = performance.now();
    const promises = rows.map((row) => new Promise<RowResult>((resolve, reject) => this.queue.push({ row, enqueued: now, resolve, reject })));
    this.schedule();
    return Promise.all(promises);
  }

  /** Stops admitting; resolves when every admitted row has its answer. */
  async drain(): Promise<void> {
    this.closed = true;
    // Rows waiting for company get none now: send them without waiting out maxWaitMs.
    this.schedule();
    if (!this.busy) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    const full = this.queue.length >= this.opts.maxBatchRows;
    const waited = performance.now() - this.queue[0]!.enqueued;
    if (full || waited >= this.opts.maxWaitMs || this.closed) {
      if (this.timer) { clearTimeout(this.timer); this.timer = null; }
      void this.runOne();
    } else if (!this.timer) {
      this.timer = setTimeout(() => { this.timer = null; this.schedule(); }, Math.max(0, this.opts.maxWaitMs - waited));
    }
  }

  /** Picks the oldest row plus rows of similar length, up to maxBatchRows. */
  private take(): Pending[] {
    const max = this.opts.maxBatchRows;
    if (this.queue.length <= max) {
      const all = this.queue;
      this.queue = [];
      return all;
    }
    const head = this.queue[0]!;
    const b0 = bucketOf(head.row.ids.length);
    const order = this.queue
      .map((p, i) => ({ p, i, d: Math.abs(bucketOf(p.row.ids.length) - b0) }))
      .sort((x, y) => x.d - y.d || x.i - y.i);
    const chosen = new Set(order.slice(0, max).map((o) => o.i));
    const picked: Pending[] = [];
    const rest: Pending[] = [];
    this.queue.forEach((p, i) => (chosen.has(i) ? picked : rest).push(p));
    this.queue = rest;
    return picked;
  }

  private async runOne(): Promise<void> {
    this.running = true;
    const picked = this.take();
    const start = performance.now();
    try {
      const { input, adapters } = this.pack(picked);
      const out = await this.opts.engine.run(input);
      this.deliver(picked, out);
      let real = 0;
      for (let i = 0; i < input.batch; i++) real += input.lengths[i]!;
      this.opts.onBatch?.({
        rows: input.batch, distinctAdapters: adapters, queueWaits: picked.map((p) => (start - p.enqueued) / 1000),
        runSeconds: out.runMs / 1000, feedSeconds: out.feedMs / 1000, paddedTokens: input.batch * input.seqLen, realTokens: real,
        ...(out.transfer ? { transfer: out.transfer } : {}),
      });
    } catch (e) {
      for (const p of picked) p.reject(e as Error);
    } finally {
      this.running = false;
      if (this.queue.length) this.schedule();
      else if (this.idleWaiters.length) this.idleWaiters.splice(0).forEach((r) => r());
    }
  }

  private pack(picked: Pending[]): { input: BatchInput; adapters: number } {
    const batch = picked.length;
    const seqLen = Math.max(...picked.map((p) => p.row.ids.length));
    const inputIds = new Int32Array(batch * seqLen).fill(this.opts.padId); // [batch, seq]
    const lengths = new Int32Array(batch); // [batch]
    const rowAdapter = new Int32Array(batch); // [batch]
    const index = new Map<AdapterWeights, number>();
    const adapters: AdapterPayload[] = [];
    picked.forEach((p, r) => {
      inputIds.set(p.row.ids, r * seqLen);
      lengths[r] = p.row.ids.length;
      const a = p.row.adapter;
      if (!a) { rowAdapter[r] = -1; return; }
      let j = index.get(a);
      if (j === undefined) {
        j = adapters.length;
        index.set(a, j);
        adapters.push({ id: a.id, version: a.version, slots: a.slots, heads: a.heads });
      }
      rowAdapter[r] = j;
    });
    return { input: { batch, seqLen, inputIds, lengths, adapters, rowAdapter }, adapters: adapters.length };
  }

  private deliver(picked: Pending[], out: BatchOutput): void {
    picked.forEach((p, r) => {
      const headLabels = p.row.adapter?.heads[0]?.labels ?? 0;
      const logits = out.logits && headLabels > 0 ? out.logits.slice(r * out.labels, r * out.labels + headLabels) : null;
      const embedding = out.embeddings ? out.embeddings.slice(r * out.hidden, (r + 1) * out.hidden) : null;
      p.resolve({ logits, embedding });
    });
  }
}
