/**
 * Choosing the next token from one row of logits: a pure function of (logits, parameters,
 * generator state). Order, as in Hugging Face's warpers and vLLM: presence/frequency penalties,
 * then temperature, then top-k, then top-p (nucleus) over the renormalised top-k set, then one
 * draw from a seeded generator. Temperature 0 is exact greedy (argmax after penalties).
 */

/** One request's sampling parameters (OpenAI's, plus `top_k`). */
export interface SamplingParams {
  /** 0 = greedy (exact argmax, first index on ties); otherwise logits are divided by it. */
  temperature: number;
  /** Nucleus sampling: keep the fewest most likely tokens whose mass reaches it; 1 = off. In (0, 1]. */
  topP: number;
  /** Keep only the `topK` most likely tokens; 0 = off. */
  topK: number;
  /** Subtracted once from the logit of every token already generated (OpenAI's `presence_penalty`). */
  presencePenalty: number;
  /** Subtracted from a token's logit once per time it was generated (OpenAI's `frequency_penalty`). */
  frequencyPenalty: number;
  /** Seed of the generator; the same seed (and parameters and logits) gives the same tokens. Null: the sampler's fallback seed. */
  seed: number | null;
}

/** Greedy decoding: temperature 0, no top-k/top-p, no penalties. */
export const GREEDY: SamplingParams = Object.freeze({ temperature: 0, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0, seed: null });

/**
 * xoshiro128** (Blackman & Vigna), seeded from a 53-bit integer through splitmix32. Small,
 * fast, and the same stream on every platform.
 */
export class Xoshiro128 {
  private s: Uint32Array; // [4]

  constructor(seed: number) {
    // Both halves of a safe integer (negative seeds wrap as two's complement would).
    let x = (seed >>> 0) ^ Math.imul((Math.floor(seed / 0x1_0000_0000) >>> 0) ^ 0x9e3779b9, 0x85ebca6b);
    this.s = new Uint32Array(4);
    for (let i = 0; i < 4; i++) {
      // splitmix32
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if ((this.s[0]! | this.s[1]! | this.s[2]! | this.s[3]!) === 0) this.s[0] = 1;
  }

  /** The next 32 random bits, as an unsigned integer. */
  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2] ^= s[0]!;
    s[3] ^= s[1]!;
    s[1] ^= s[2]!;
    s[0] ^= s[3]!;
    s[2] ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** A uniform double in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Index of the largest value, the first one on ties (as torch.argmax). NaN never wins. */
function argmaxOf(x: Float32Array): number {
  let best = 0;
  let bestV = -Infinity;
  for (let i = 0; i < x.length; i++) {
    if (x[i]! > bestV) { bestV = x[i]!; best = i; }
  }
  return best;
}

/**
 * The indices of the `k` largest values of `x`, largest first (lower index first on ties), by a
 * size-k min-heap: O(V log k), no sort of the whole vocabulary when k is small.
 */
export function topIndices(x: Float32Array, k: number): Int32Array {
  const n = x.length;
  k = Math.min(k, n);
  if (k <= 0) return new Int32Array(0);
  if (k * 8 >= n) {
    // Most of the vocabulary: a plain sort is simpler and no slower.
    const all = Int32Array.from({ length: n }, (_, i) => i);
    all.sort((a, b) => x[b]! - x[a]! || a - b);
    return all.slice(0, k);
  }
  // Heap root = the worst kept candidate (smallest value; on equal values, the larger index).
  const heap = new Int32Array(k); // [k] token ids
  const worse = (a: number, b: number) => x[a]! < x[b]! || (x[a] === x[b] && a > b);
  const siftDown = (i: number, size: number) => {
    for (;;) {
      const l = 2 * i + 1;
      if (l >= size) return;
      const r = l + 1;
      const c = r < size && worse(heap[r]!, heap[l]!) ? r : l;
      if (!worse(heap[c]!, heap[i]!)) return;
      const t = heap[c]!; heap[c] = heap[i]!; heap[i] = t;
      i = c;
    }
  };
  for (let i = 0; i < k; i++) heap[i] = i;
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(i, k);
  for (let i = k; i < n; i++) {
    // Later indices lose ties, so only a strictly larger value replaces the root.
    if (x[i]! > x[heap[0]!]!) { heap[0] = i; siftDown(0, k); }
  }
  const out = Array.from(heap);
  out.sort((a, b) => x[b]! - x[a]! || a - b);
  return Int32Array.from(out);
}

/** Checks parameters; a RangeError names the first bad one (the HTTP schemas check them first). */
function validate(p: SamplingParams): void {
  const bad = (name: string, why: string) => { throw new RangeError(`SamplingParams.${name} ${why}`); };
  if (!(Number.isFinite(p.temperature) && p.temperature >= 0)) bad('temperature', `must be a finite number ≥ 0, got ${p.temperature}`);
  if (!(p.topP > 0 && p.topP <= 1)) bad('topP', `must be in (0, 1], got ${p.topP}`);
  if (!(Number.isInteger(p.topK) && p.topK >= 0)) bad('topK', `must be an integer ≥ 0, got ${p.topK}`);
  if (!Number.isFinite(p.presencePenalty)) bad('presencePenalty', `must be finite, got ${p.presencePenalty}`);
  if (!Number.isFinite(p.frequencyPenalty)) bad('frequencyPenalty', `must be finite, got ${p.frequencyPenalty}`);
  if (p.seed !== null && !Number.isSafeInteger(p.seed)) bad('seed', `must be a safe integer or null, got ${p.seed}`);
}

/**
 * One sequence's sampler: its parameters and its own generator. `sample` never mutates the
 * logits it is given; greedy (temperature 0) never draws from the generator.
 */
export class Sampler {
  readonly params: Readonly<SamplingParams>;
  private readonly rng: Xoshiro128;
  /** Scratch copy of the row after penalties (NaN → −∞). */
  private work: Float32Array = new Float32Array(0); // [vocab]
  private buffers: NucleusScratch | null = null;

  /**
   * @param params the request's parameters (validated: a RangeError names a bad one)
   * @param fallbackSeed the generator's seed when `params.seed` is null (the scheduler picks one per request)
   */
  constructor(params: SamplingParams, fallbackSeed: number) {
    validate(params);
    this.params = { ...params };
    this.rng = new Xoshiro128(params.seed ?? fallbackSeed);
  }

  /** True when the sampler is exact argmax. */
  get greedy(): boolean {
    return this.params.temperature === 0;
  }

  /**
   * The next token id.
   * @param logits one row of logits over the vocabulary (not modified) // [vocab]
   * @param generated the tokens this sequence generated so far (the prompt excluded), for the penalties
   */
  sample(logits: Float32Array, generated: readonly number[]): number {
    const x = this.penalized(logits, generated);
    const p = this.params;
    if (p.temperature === 0) return argmaxOf(x);
    const n = x.length;
    const invT = 1 / p.temperature;
    const top = argmaxOf(x);
    const max = x[top]!;
    if (max === Infinity) return top;
    // w[i] = exp((x[i] − max) / T), the unnormalised probability, filled for every token drawn from.
    const sc = this.scratch(n);
    const w = sc.w;

    let cand: Int32Array | null = null;
    if (p.topK > 0 && p.topK < n) {
      cand = topIndices(x, p.topK);
      for (const i of cand) w[i] = Math.exp((x[i]! - max) * invT);
      if (p.topP < 1) cand = nucleusOfSorted(cand, w, p.topP);
    } else if (p.topP < 1) {
      cand = nucleusOfVocab(x, p.topP, invT, sc);
    }

    if (cand === null) {
      // Whole vocabulary: one pass for the weights and their mass, one for the draw.
      let z = 0;
      for (let i = 0; i < n; i++) z += (w[i] = Math.exp((x[i]! - max) * invT));
      if (!(z > 0 && Number.isFinite(z))) return top;
      const target = this.rng.nextFloat() * z;
      let acc = 0;
      let last = top;
      for (let i = 0; i < n; i++) {
        if (w[i]! > 0) last = i;
        acc += w[i]!;
        if (acc > target) return i;
      }
      return last; // rounding: the mass summed a hair short
    }
    if (cand.length === 0) return top;
    let z = 0;
    for (const i of cand) z += w[i]!;
    if (!(z > 0 && Number.isFinite(z))) return top;
    const target = this.rng.nextFloat() * z;
    let acc = 0;
    let last = top;
    for (const i of cand) {
      if (w[i]! > 0) last = i;
      acc += w[i]!;
      if (acc > target) return i;
    }
    return last;
  }

  /** Reused per-vocabulary buffers (a sampler serves one sequence, one step at a time). */
  private scratch(n: number): NucleusScratch {
    if (this.buffers?.w.length !== n) this.buffers = { w: new Float64Array(n), bucket: new Int32Array(n) };
    return this.buffers;
  }

  /**
   * The row after presence/frequency penalties, NaN read as −∞: the logits themselves when
   * there is nothing to change, else a copy in a scratch buffer.
   */
  private penalized(logits: Float32Array, generated: readonly number[]): Float32Array {
    const { presencePenalty: pp, frequencyPenalty: fp } = this.params;
    const penalize = (pp !== 0 || fp !== 0) && generated.length > 0;
    let nan = false;
    for (let i = 0; i < logits.length; i++) if (logits[i] !== logits[i]) { nan = true; break; }
    if (!penalize && !nan) return logits;
    if (this.work.length !== logits.length) this.work = new Float32Array(logits.length);
    const x = this.work;
    x.set(logits);
    if (nan) for (let i = 0; i < x.length; i++) if (Number.isNaN(x[i])) x[i] = -Infinity;
    if (penalize) {
      const counts = new Map<number, number>();
      for (const t of generated) counts.set(t, (counts.get(t) ?? 0) + 1);
      for (const [t, c] of counts) {
        if (t >= 0 && t < x.length) x[t] = x[t]! - (pp + fp * c);
      }
    }
    return x;
  }
}

/**
 * The nucleus of candidates sorted best first, `w` their unnormalised probabilities (indexed by
 * token id): a token is kept when the mass ranked above it is under `topP` of the candidates'
 * total, so at least one is kept, and the one that crosses `topP` too.
 */
function nucleusOfSorted(cand: Int32Array, w: Float64Array, topP: number): Int32Array {
  let z = 0;
  for (const i of cand) z += w[i]!;
  if (!(z > 0 && Number.isFinite(z))) return cand.subarray(0, 1);
  const limit = topP * z;
  let acc = 0;
  let keep = 0;
  while (keep < cand.length && acc < limit) acc += w[cand[keep++]!]!;
  return cand.subarray(0, keep);
}

/** Buffers {@link nucleusOfVocab} may reuse, each as long as the vocabulary. */
export interface NucleusScratch {
  /** Unnormalised probabilities. */
  w: Float64Array; // [vocab]
  /** Each token's value bucket (−1: probability 0). */
  bucket: Int32Array; // [vocab]
}

/** Value buckets {@link nucleusOfVocab} spreads the vocabulary over. */
const NUCLEUS_BUCKETS = 2048;

/**
 * The nucleus over a whole row without sorting it: tokens are bucketed by logit (bucket 0 holds
 * the largest), bucket masses summed from the top until they reach `topP`; every token of the
 * buckets above that boundary is kept (in index order: any fixed order draws the same
 * distribution), and only the boundary bucket is sorted to find where the mass crosses.
 * O(V + b log b) for a boundary bucket of b tokens, where a full sort would be O(V log V).
 */
export function nucleusOfVocab(x: Float32Array, topP: number, invT: number, scratch?: NucleusScratch): Int32Array {
  const n = x.length;
  let max = -Infinity;
  let min = Infinity;
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    if (v > max) max = v;
    if (v < min && v > -Infinity) min = v;
  }
  if (max === -Infinity || max === Infinity) return Int32Array.of(argmaxOf(x));
  const w = scratch?.w ?? new Float64Array(n);
  const bucket = scratch?.bucket ?? new Int32Array(n);
  let z = 0;
  for (let i = 0; i < n; i++) z += (w[i] = Math.exp((x[i]! - max) * invT));
  if (!(z > 0 && Number.isFinite(z))) return Int32Array.of(argmaxOf(x));
  const limit = topP * z;
  const span = max - min;
  const scale = span > 0 ? (NUCLEUS_BUCKETS - 1) / span : 0;
  const mass = new Float64Array(NUCLEUS_BUCKETS); // [buckets]
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    if (v === -Infinity) { bucket[i] = -1; continue; }
    const b = Math.min(NUCLEUS_BUCKETS - 1, Math.floor((max - v) * scale));
    bucket[i] = b;
    mass[b] += w[i]!;
  }
  let boundary = 0;
  let before = 0; // mass of the buckets above the boundary
  while (boundary < NUCLEUS_BUCKETS - 1 && before + mass[boundary]! < limit) before += mass[boundary++]!;
  const kept: number[] = [];
  const edge: number[] = [];
  for (let i = 0; i < n; i++) {
    const b = bucket[i]!;
    if (b < 0 || b > boundary) continue;
    (b < boundary ? kept : edge).push(i);
  }
  edge.sort((a, b) => x[b]! - x[a]! || a - b);
  let acc = before;
  for (let j = 0; j < edge.length && acc < limit; j++) {
    kept.push(edge[j]!);
    acc += w[edge[j]!]!;
  }
  return Int32Array.from(kept);
}
