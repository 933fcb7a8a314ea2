/**
 * Seeds for the property tests (fast-check). CI runs each property with its fixed seed, so a
 * failure there reproduces exactly; `PROPERTY_SEED=random` draws a fresh seed per property and
 * `PROPERTY_SEED=<integer>` uses that one, to explore beyond the fixed runs locally
 * (`PROPERTY_SEED=random npm test`, or one file with node --test). Every property prints the
 * seed it ran with as a test diagnostic; rerun a failure with `PROPERTY_SEED=<that seed>`.
 */
import type { TestContext } from 'node:test';

export const PROPERTY_SEED_ENV = 'PROPERTY_SEED';

/** The seed a property runs with: `fixed` unless PROPERTY_SEED says otherwise. */
export function propertySeed(fixed: number, env: NodeJS.ProcessEnv = process.env): number {
  const v = env[PROPERTY_SEED_ENV]?.trim();
  if (v === undefined || v === '') return fixed;
  if (v === 'random') return Math.floor(Math.random() * 0x7fffffff);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`${PROPERTY_SEED_ENV} must be "random" or an integer, not ${JSON.stringify(v)}`);
  return n;
}

/** fast-check parameters for one property, the seed reported on `t`. */
export function propertyParams(t: TestContext, fixed: number, numRuns: number): { seed: number; numRuns: number } {
  const seed = propertySeed(fixed);
  t.diagnostic(`property seed ${seed}${seed === fixed ? ' (the fixed one)' : ''}; reproduce with ${PROPERTY_SEED_ENV}=${seed}`);
  return { seed, numRuns };
}
