// The sampler's many-draw tests (seeded streams over an 8,192-token row, the draw distribution,
// a wide nucleus): about 3 s plain and far longer instrumented, so the sampler's mutation run
// (npm run mutation) uses sampler.test.ts alone; these run in npm test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sampler, type SamplingParams } from '../src/generation/sampler.js';
import { params, randomLogits, run } from './helpers/sampler-kit.js';

test('same seed → same tokens; different seeds → different tokens; the fallback seed when seed is null', () => {
  const x = randomLogits(8192, 11, 2);
  const table: SamplingParams[] = [
    params({ temperature: 1 }),
    params({ temperature: 0.7, topK: 50 }),
    params({ temperature: 1.3, topP: 0.95 }),
    params({ temperature: 1, topK: 200, topP: 0.9, frequencyPenalty: 0.5 }),
  ];
  for (const p of table) {
    const name = JSON.stringify(p);
    const a = run(new Sampler({ ...p, seed: 1234 }, 1), x, 64);
    const b = run(new Sampler({ ...p, seed: 1234 }, 2), x, 64);
    const c = run(new Sampler({ ...p, seed: 1235 }, 1), x, 64);
    assert.deepEqual(a, b, `${name}: same seed, fallback ignored`);
    assert.notDeepEqual(a, c, `${name}: different seeds`);
    const f1 = run(new Sampler({ ...p, seed: null }, 77), x, 64);
    const f2 = run(new Sampler({ ...p, seed: null }, 77), x, 64);
    const f3 = run(new Sampler({ ...p, seed: null }, 78), x, 64);
    assert.deepEqual(f1, f2, `${name}: same fallback`);
    assert.notDeepEqual(f1, f3, `${name}: different fallbacks`);
    assert.deepEqual(run(new Sampler({ ...p, seed: 77 }, 0), x, 64), f1, `${name}: seed 77 = fallback 77`);
  }
});

/** Draw counts per token over `draws` samples of a fixed row. */
function histogram(p: SamplingParams, logits: number[], draws: number): number[] {
  const s = new Sampler(p, 0);
  const x = Float32Array.from(logits);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[s.sample(x, [])]!++;
  return counts;
}

/** Pearson's chi-square statistic of `counts` against `probs` (cells of probability 0 must be empty). */
function chiSquare(counts: number[], probs: number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  let chi = 0;
  counts.forEach((c, i) => {
    const e = probs[i]! * total;
    if (e === 0) assert.equal(c, 0, `token ${i} has probability 0 but was drawn ${c} times`);
    else chi += (c - e) ** 2 / e;
  });
  return chi;
}

function softmax(x: number[], t: number): number[] {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp((v - m) / t));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}

test('draws follow the (filtered, renormalised) softmax: chi-square over 20k draws', () => {
  const logits = [0, 1, 2, 0.5];
  const rows: Array<[string, Partial<SamplingParams>, number[]]> = [
    ['T = 1', { temperature: 1 }, softmax(logits, 1)],
    ['T = 0.5', { temperature: 0.5 }, softmax(logits, 0.5)],
    ['T = 2', { temperature: 2 }, softmax(logits, 2)],
    // top-k 2 keeps tokens 2 and 1, renormalised.
    ['top-k 2', { temperature: 1, topK: 2 }, (() => { const p = softmax([1, 2], 1); return [0, p[0]!, p[1]!, 0]; })()],
    // softmax(T=1) ≈ [0.078, 0.213, 0.579, 0.129]: top-p 0.7 keeps 2 (mass before 0 < 0.7) and 1 (0.579 < 0.7), not 3 (0.792).
    ['top-p 0.7', { temperature: 1, topP: 0.7 }, (() => { const p = softmax([1, 2], 1); return [0, p[0]!, p[1]!, 0]; })()],
    // top-k 3 drops token 0; top-p 0.95 over the renormalised three (0.231, 0.629, 0.140) keeps all three (0.860 < 0.95).
    ['top-k 3 then top-p 0.95', { temperature: 1, topK: 3, topP: 0.95 }, (() => { const p = softmax([1, 2, 0.5], 1); return [0, p[0]!, p[1]!, p[2]!]; })()],
    // The same top-p 0.95 over the whole vocabulary would keep token 0 too; top-p 0.85 keeps 2, 1, 3 (0.792 < 0.85) without top-k.
    ['top-p 0.85', { temperature: 1, topP: 0.85 }, (() => { const p = softmax([1, 2, 0.5], 1); return [0, p[0]!, p[1]!, p[2]!]; })()],
  ];
  // 3 degrees of freedom at most: p = 0.001 critical value 16.27.
  for (const [name, p, probs] of rows) {
    const counts = histogram(params({ ...p, seed: 2024 }), logits, 20_000);
    const chi = chiSquare(counts, probs);
    assert.ok(chi < 16.27, `${name}: chi-square ${chi.toFixed(2)} for counts ${counts.join('/')} against ${probs.map((v) => v.toFixed(3)).join('/')}`);
  }
});

test('top-p without top-k on a wide, flat nucleus: only nucleus tokens, the lowest indices on ties', () => {
  // 1000 equally likely tokens hold ~all the mass; top-p 0.5 keeps ~500 of them, the first by index.
  const x = new Float32Array(8192).fill(-30);
  for (let i = 0; i < 1000; i++) x[(i * 7) % 8192] = 5;
  const s = new Sampler(params({ temperature: 1, topP: 0.5, seed: 8 }), 0);
  const seen = new Set<number>();
  for (let i = 0; i < 1500; i++) seen.add(s.sample(x, []));
  for (const t of seen) assert.equal(x[t], 5, `drew a token outside the nucleus: ${t}`);
  assert.ok(seen.size > 300 && seen.size <= 501, `distinct tokens drawn: ${seen.size}`);
  // Ties are ordered by index, so the nucleus is the lowest-index half of the 1000.
  const high = [...Array(1000).keys()].map((i) => (i * 7) % 8192).sort((a, b) => a - b);
  const cutoff = high[500]!;
  for (const t of seen) assert.ok(t <= cutoff, `token ${t} is past the nucleus cut at ${cutoff}`);
});
