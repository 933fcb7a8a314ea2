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

/**
 * One side of a comparison: runs once and returns its measurement (e.g. rows/s). `round`
 * counts from 0 over warm-up and measured rounds alike, so both sides of a round can use the
 * same fresh inputs.
 */
export type Side = (round: number) => Promise<number>;

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
    for (const k of keys) values[k] = await sides[k](round);
    if (round >= o.warmup) for (const k of keys) out[k].push(values[k]!);
    o.onRound?.(round - o.warmup, values);
  }
  return out;
}

/** Options of {@link alternate}. */
export interface AlternateOptions extends InterleaveOptions {
  /** Single runs per side per round, alternated A, B, A, B, … */
  runs: number;
  /** Items (rows) one run serves: a side's value is items ÷ its median run time in the round. */
  items: number;
  /**
   * Idle ms before each run (untimed). Sides on DIFFERENT ONNX sessions need it: after a run,
   * a session's intra-op threads spin for a while waiting for more work, and on a small machine
   * they steal the cores of whichever session runs next; without a pause, a side that always
   * follows its own session would look faster than it is.
   */
  settleMs?: number;
}

/**
 * Like {@link interleave}, but each round alternates single runs (A, B, A, B, …, `runs` each)
 * and reduces each side to items ÷ its MEDIAN run time in the round, so a run slowed by another
 * process on the machine moves the figure far less than it would move a mean.
 */
export async function alternate<K extends string>(sides: Record<K, () => Promise<unknown>>, o: AlternateOptions): Promise<Record<K, number[]>> {
  const keys = Object.keys(sides) as K[];
  const out = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (let round = 0; round < o.warmup + o.reps; round++) {
    const times = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
    for (let i = 0; i < o.runs; i++) {
      for (const k of i % 2 ? [...keys].reverse() : keys) {
        if (o.settleMs) await new Promise((r) => setTimeout(r, o.settleMs));
        const t0 = performance.now();
        await sides[k]();
        times[k].push((performance.now() - t0) / 1000);
      }
    }
    const values: Record<string, number> = {};
    for (const k of keys) values[k] = o.items / spread(times[k]).median;
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
