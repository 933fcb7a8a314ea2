import type { AdapterPayload } from '../runtime/batch.js';
import type { DecoderRunner } from './decoder-runner.js';
import { SequenceKv } from './kv-cache.js';

/** Index of the largest value (the first one on ties, as torch.argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

export interface GreedyRequest {
  promptIds: readonly number[];
  /** The adapter's weights, or null for the base alone. */
  adapter: AdapterPayload | null;
  maxNewTokens: number;
}

export interface GreedyResult {
  tokens: number[];
  /** Every step's logits when `keepLogits` was asked for. */
  logits: Float32Array[];
  finish: 'stop' | 'length';
}

/**
 * Greedy decoding of several requests together, one ORT run per step: all prompts are prefilled
 * in one run, then every running row advances one token per run, and a row leaves as soon as it
 * emits an end-of-sequence token or reaches `maxNewTokens`. Rows may use different adapters.
 * (The server's continuous-batching scheduler builds on the same {@link DecoderRunner.step}.)
 */
export async function generateGreedy(runner: DecoderRunner, reqs: readonly GreedyRequest[], keepLogits = false): Promise<GreedyResult[]> {
  const g = runner.manifest.generation!;
  const eos = new Set(g.eosIds);
  const adapters: AdapterPayload[] = [];
  const adapterIdx = reqs.map((r) => {
    if (!r.adapter) return -1;
    let i = adapters.indexOf(r.adapter);
    if (i < 0) i = adapters.push(r.adapter) - 1;
    return i;
  });
  const state = reqs.map((r, i) => ({ i, kv: new SequenceKv(g), next: [...r.promptIds], out: { tokens: [] as number[], logits: [] as Float32Array[], finish: 'length' as GreedyResult['finish'] } }));
  let running = state.filter((s) => reqs[s.i]!.maxNewTokens > 0);
  while (running.length > 0) {
    const { logits } = await runner.step(running.map((s) => ({ kv: s.kv, tokens: s.next, adapter: adapterIdx[s.i]! })), adapters);
    const still: typeof running = [];
    running.forEach((s, j) => {
      const row = logits[j]!;
      if (keepLogits) s.out.logits.push(row);
      const tok = argmax(row);
      s.out.tokens.push(tok);
      if (eos.has(tok)) { s.out.finish = 'stop'; return; }
      if (s.out.tokens.length >= reqs[s.i]!.maxNewTokens || s.kv.length + 1 > g.maxPositions) return;
      s.next = [tok];
      still.push(s);
    });
    running = still;
  }
  for (const s of state) s.kv.clear();
  return state.map((s) => s.out);
}
