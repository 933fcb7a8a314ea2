import type { HeadWeights, SlotWeights } from '../adapter/lora-weights.js';

/** The weights of one adapter as the worker sees them (views on SharedArrayBuffers). */
export interface AdapterPayload {
  /** The adapter's id and version when known (AdapterWeights carry them): the decoder keeps a step's LoRA banks while they repeat. */
  id?: string;
  version?: string;
  slots: Array<SlotWeights | null>;
  heads: Array<HeadWeights | null>;
}

/** One padded batch, as sent to the worker. */
export interface BatchInput {
  batch: number;
  seqLen: number;
  /** [batch, seqLen] token ids, right-padded with the pad id. */
  inputIds: Int32Array;
  /** [batch] real lengths (the attention mask is 1 below it). */
  lengths: Int32Array;
  /** The distinct adapters in this batch. */
  adapters: AdapterPayload[];
  /** [batch] index into `adapters`, or -1 for the base model alone. */
  rowAdapter: Int32Array;
}

/** What one run returns. */
export interface BatchOutput {
  /** [batch, labels] head logits (padded labels are garbage: slice to the adapter's count), or null without a head. */
  logits: Float32Array | null;
  labels: number;
  /** [batch, hidden] pooled embeddings, or null when the model has none. */
  embeddings: Float32Array | null;
  hidden: number;
  /** Time spent in session.run, ms. */
  runMs: number;
  /** Time spent building feeds, ms. */
  feedMs: number;
  /** Estimated bytes moved between host and device by the run (zero on the CPU provider). */
  transfer?: { hostToDevice: number; deviceToHost: number };
}
