/**
 * Measuring ratios on a shared, noisy machine: every side of a comparison runs in the same
 * process, after warm-up, interleaved (A, B, A, B, …), several times; a figure is the spread of
 * the per-repeat ratios, never an absolute number compared with a fixed target.
 */

/** min / median / max of a sample. */
export interface Spread {
  min: number;
  median: number;
  max: number;
  n: number;
}

export function spread(xs: readonly number[]): Spread {
  if (xs.length === 0) return { min: NaN, median: NaN, max: NaN, n: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { min: s[0]!, median, max: s[s.length - 1]!, n: s.length };
}

/** Element-wise a[i] / b[i]. */
export const ratios = (a: readonly number[], b: readonly number[]): number[] => a.map((x, i) => x / b[i]!);

/** One side of a comparison: runs once and returns its measurement (e.g. rows/s). */
export type Side = () => Promise<number>;

/** Options of {@link interleave}. */
export interface InterleaveOptions {
  /** Measured repeats per side. */
  reps: number;
  /** Unmeasured rounds first (JIT, ORT arena growth, page cache). */
  warmup: number;
  /** Called between rounds (progress). */
  onRound?: (round: number, values: Record<string, number>) => void;
}

/**
 * Runs the sides in turn, `warmup` unmeasured rounds then `reps` measured ones, each round
 * visiting every side once in the given order. Returns each side's measurements in round order,
 * so `ratios(out.a, out.b)` pairs measurements taken moments apart.
 */
export async function interleave<K extends string>(sides: Record<K, Side>, o: InterleaveOptions): Promise<Record<K, number[]>> {
  const keys = Object.keys(sides) as K[];
  const out = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (let round = 0; round < o.warmup + o.reps; round++) {
    const values: Record<string, number> = {};
    for (const k of keys) values[k] = await sides[k]();
    if (round >= o.warmup) for (const k of keys) out[k].push(values[k]!);
    o.onRound?.(round - o.warmup, values);
  }
  return out;
}

/** Runs `fn` `n` times and returns items per second (`itemsPerCall` × n ÷ seconds). */
export async function throughput(n: number, itemsPerCall: number, fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn();
  return (n * itemsPerCall) / ((performance.now() - t0) / 1000);
}

/** Collects garbage when the process runs with --expose-gc (a few passes: weak refs, finalizers). */
export async function collectGarbage(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return;
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
}

export const MiB = 2 ** 20;
