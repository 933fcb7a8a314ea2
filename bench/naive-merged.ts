/**
 * Naive baseline 1 served: one merged model (`merge.ts`) per adapter, each its own ONNX
 * session, at most `capacity` sessions open (an LRU: opening one more closes the least
 * recently used). A merged session can only serve its own adapter, so batches group rows of
 * one adapter (oldest adapter first), as any server built this way must.
 */
import ort from 'onnxruntime-node';
import { OpenLru } from './open-lru.js';
import { sessionOptions, type Server } from './stack.js';

/** Token tensors of a plain (unslotted) export: input_ids, attention_mask, token_type_ids `[batch, seq]`. */
export function plainFeeds(rows: ReadonlyArray<readonly number[]>, padId: number): Record<string, ort.Tensor> {
  const batch = rows.length;
  const seq = Math.max(...rows.map((r) => r.length));
  const ids = new BigInt64Array(batch * seq).fill(BigInt(padId)); // [batch, seq]
  const mask = new BigInt64Array(batch * seq); // [batch, seq]
  rows.forEach((r, b) => r.forEach((id, t) => { ids[b * seq + t] = BigInt(id); mask[b * seq + t] = 1n; }));
  return {
    input_ids: new ort.Tensor('int64', ids, [batch, seq]),
    attention_mask: new ort.Tensor('int64', mask, [batch, seq]),
    token_type_ids: new ort.Tensor('int64', new BigInt64Array(batch * seq), [batch, seq]),
  };
}

interface Pending { adapter: number; ids: number[]; resolve(): void; reject(e: Error): void }

/** Options of {@link MergedModelServer}. */
export interface MergedServerOptions {
  /** Merged model file per adapter index. */
  paths: readonly string[];
  /** Most sessions open at once (from the memory budget). */
  capacity: number;
  maxBatchRows: number;
  padId: number;
  /** The execution provider of every session (the run's). */
  executionProvider: string;
}

export class MergedModelServer implements Server {
  private readonly open: OpenLru<ort.InferenceSession>;
  private queue: Pending[] = [];
  private running = false;

  constructor(private readonly o: MergedServerOptions) {
    this.open = new OpenLru(o.capacity, (s) => s.release());
  }

  /** Sessions opened (first loads and reloads after an eviction). */
  get loads(): number { return this.open.loads; }
  /** Seconds spent opening sessions. */
  get loadSeconds(): number { return this.open.loadSeconds; }

  request(adapter: number, ids: number[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ adapter, ids, resolve, reject });
      if (!this.running) void this.loop();
    });
  }

  /** Opens (or touches) the adapter's session, closing the least recently used one past capacity. */
  session(adapter: number): Promise<ort.InferenceSession> {
    return this.open.get(adapter, () => ort.InferenceSession.create(this.o.paths[adapter]!, sessionOptions(this.o.executionProvider)));
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length) {
        const a = this.queue[0]!.adapter;
        const picked: Pending[] = [];
        const rest: Pending[] = [];
        for (const p of this.queue) (p.adapter === a && picked.length < this.o.maxBatchRows ? picked : rest).push(p);
        this.queue = rest;
        try {
          const s = await this.session(a);
          const out = await s.run(plainFeeds(picked.map((p) => p.ids), this.o.padId));
          void out;
          picked.forEach((p) => p.resolve());
        } catch (e) {
          picked.forEach((p) => p.reject(e as Error));
        }
      }
    } finally {
      this.running = false;
    }
  }

  close(): Promise<void> {
    return this.open.closeAll();
  }
}
