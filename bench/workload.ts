/**
 * Seeded workloads: which adapter each request uses (Zipf popularity), when it arrives
 * (Poisson, open loop), and what it says (token ids or text of a length drawn from a range).
 * The same options and seed always give the same requests, so the two sides of a ratio see
 * identical work.
 */
import { mulberry32 } from './synthetic-bert.js';

export { mulberry32 };

/**
 * Zipf popularity over `n` items: item k (0-based) is drawn with probability ∝ 1/(k+1)^s.
 * s = 0 is uniform; s = 1 is the classic Zipf; s = 1.5 concentrates most traffic on a few.
 */
export class Zipf {
  private readonly cdf: Float64Array; // [n], cumulative, last = 1

  constructor(readonly n: number, readonly s: number, private readonly rand: () => number) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`Zipf: n must be a positive integer, got ${n}`);
    if (!(s >= 0)) throw new RangeError(`Zipf: s must be ≥ 0, got ${s}`);
    this.cdf = new Float64Array(n);
    let sum = 0;
    for (let k = 0; k < n; k++) this.cdf[k] = sum += 1 / (k + 1) ** s;
    for (let k = 0; k < n; k++) this.cdf[k]! /= sum;
  }

  /** Probability of item k. */
  p(k: number): number {
    return this.cdf[k]! - (k > 0 ? this.cdf[k - 1]! : 0);
  }

  /** Share of draws that fall on the `top` most popular items. */
  mass(top: number): number {
    return top <= 0 ? 0 : this.cdf[Math.min(top, this.n) - 1]!;
  }

  /** One draw (binary search on the CDF). */
  next(): number {
    const u = this.rand();
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.cdf[mid]! > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/** One request of a workload. */
export interface WorkItem {
  /** Arrival time from the start, ms (0 for closed-loop workloads). */
  at: number;
  /** Adapter index, 0 … adapters-1 (0 is the most popular). */
  adapter: number;
  /** Token ids, `[CLS] … [SEP]`. */
  ids: number[];
}

/** Options of {@link makeWorkload}. */
export interface WorkloadOptions {
  /** Number of adapters (1 … 1000+). */
  adapters: number;
  /** Zipf exponent of adapter popularity (0: uniform). */
  zipfS: number;
  /** Number of requests (closed loop), or … */
  count?: number;
  /** … Poisson arrivals at `rate` requests/s for `durationS` seconds (open loop). */
  rate?: number;
  durationS?: number;
  /** Token count range, inclusive, specials included. */
  minTokens: number;
  maxTokens: number;
  /** Token ids are drawn from [firstId, vocab) for the words; cls/sep wrap them. */
  vocab: number;
  firstId?: number;
  clsId?: number;
  sepId?: number;
  seed: number;
}

/**
 * Builds a workload. With `count`, all requests are available at once (`at` = 0); with `rate`
 * and `durationS`, inter-arrival gaps are exponential with mean 1/rate (a Poisson process).
 * Independent streams per aspect, so changing the adapter count does not change the lengths.
 */
export function makeWorkload(o: WorkloadOptions): WorkItem[] {
  const pickRand = mulberry32(o.seed);
  const lenRand = mulberry32(o.seed ^ 0x5bd1e995);
  const tokRand = mulberry32(o.seed ^ 0x27d4eb2f);
  const gapRand = mulberry32(o.seed ^ 0x165667b1);
  const zipf = new Zipf(o.adapters, o.zipfS, pickRand);
  const firstId = o.firstId ?? 5;
  const cls = o.clsId ?? 2;
  const sep = o.sepId ?? 3;
  const one = (at: number): WorkItem => {
    const len = o.minTokens + Math.floor(lenRand() * (o.maxTokens - o.minTokens + 1));
    const ids = [cls];
    for (let i = 0; i < len - 2; i++) ids.push(firstId + Math.floor(tokRand() * (o.vocab - firstId)));
    ids.push(sep);
    return { at, adapter: zipf.next(), ids };
  };
  const out: WorkItem[] = [];
  if (o.count !== undefined) {
    for (let i = 0; i < o.count; i++) out.push(one(0));
    return out;
  }
  if (!(o.rate! > 0) || !(o.durationS! > 0)) throw new RangeError('makeWorkload: give count, or rate and durationS');
  let t = 0;
  for (;;) {
    t += (-Math.log(1 - gapRand()) / o.rate!) * 1000;
    if (t >= o.durationS! * 1000) break;
    out.push(one(t));
  }
  return out;
}

const WORDS = (
  'the of and to a in is it you that he was for on are with as his they be at one have this from or had by not but what ' +
  'some we can out other were all there when up use your how said an each she which do their time if will way about many ' +
  'then them write would like so these her long make thing see him two has look more day could go come did number sound ' +
  'free offer win money click please meeting tomorrow call thanks order account service email message today week'
).split(' ');

/** A text of about `words` common English words (for the HTTP figures). */
export function makeText(rand: () => number, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(WORDS[Math.floor(rand() * WORDS.length)]!);
  return out.join(' ');
}

/** Percentile (0 … 100) of `xs` by linear interpolation; NaN for an empty list. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = ((s.length - 1) * p) / 100;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return s[lo]! + (s[hi]! - s[lo]!) * (i - lo);
}
