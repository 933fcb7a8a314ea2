// Shared by sampler.test.ts and sampler-draws.test.ts.
import { GREEDY, Sampler, Xoshiro128, type SamplingParams } from '../../src/generation/sampler.js';

export const params = (p: Partial<SamplingParams>): SamplingParams => ({ ...GREEDY, ...p });

/** Logits drawn from a seeded generator: `n` values in [-scale, scale). */
export function randomLogits(n: number, seed: number, scale = 8): Float32Array {
  const g = new Xoshiro128(seed);
  return Float32Array.from({ length: n }, () => (g.nextFloat() * 2 - 1) * scale);
}

/** `steps` tokens from one sampler over a fixed row (each step's token joins `generated`). */
export function run(s: Sampler, logits: Float32Array, steps: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < steps; i++) out.push(s.sample(logits, out));
  return out;
}
