import type { DecoderEngine, DecoderStepResult } from '../../src/generation/decoder-engine.js';
import type { WorkerStepRow } from '../../src/generation/decoder-worker.js';
import type { AdapterPayload } from '../../src/runtime/batch.js';

/** Sequence ids each RecordingEngine may hand the wrapped engine (see {@link RecordingEngine}). */
const ID_SPAN = 1_000_000;
let instances = 0;

/**
 * A {@link DecoderEngine} around a real one (the tiny decoder's worker): it records every step the
 * scheduler asks for and what came back, and can make one step fail, for the failure paths.
 * It does not own the engine it wraps: close() leaves it running (the suite closes it).
 * Schedulers number their sequences from 1, so each RecordingEngine moves its scheduler's ids to
 * a range of its own in the wrapped engine: a test that fails with sequences still running cannot
 * mix its caches into the next test's (the records keep the scheduler's ids).
 */
export class RecordingEngine implements DecoderEngine {
  /** Per step asked for: each row's sequence id and token count, and how many adapters came with it. */
  readonly steps: Array<{ rows: Array<{ seq: number; tokens: number; adapter: number }>; adapters: number }> = [];
  /** What each step that ran returned, in order. */
  readonly results: DecoderStepResult[] = [];
  readonly freed: number[] = [];
  /** The next step rejects with this (once), without reaching the wrapped engine. */
  failNext: Error | null = null;

  private readonly idBase = ++instances * ID_SPAN;

  constructor(private readonly inner: DecoderEngine) {}

  async step(rows: WorkerStepRow[], adapters: AdapterPayload[]): Promise<DecoderStepResult> {
    this.steps.push({ rows: rows.map((r) => ({ seq: r.seq, tokens: r.tokens.length, adapter: r.adapter })), adapters: adapters.length });
    const fail = this.failNext;
    if (fail) {
      this.failNext = null;
      throw fail;
    }
    const res = await this.inner.step(rows.map((r) => ({ ...r, seq: this.idBase + r.seq })), adapters);
    this.results.push(res);
    return res;
  }

  free(seqs: number[]): void {
    this.freed.push(...seqs);
    this.inner.free(seqs.map((s) => this.idBase + s));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
