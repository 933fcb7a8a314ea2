import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Repository root: tests usually run compiled from dist/test/..., and from test/... through tsx
 * (mutation testing, `npm run mutation`).
 */
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, path.basename(path.resolve(HERE, '../..')) === 'dist' ? '../../..' : '../..');
export const DEMO_MODEL_DIR = path.join(ROOT, 'models/demo');
export const DEMO_EXPORT = path.join(ROOT, 'models/demo-export');
export const DEMO_ADAPTERS = path.join(ROOT, 'adapters');
export const DEMO_ADAPTER_IDS = ['spam', 'lang', 'topic', 'es-topic', 'sentiment'] as const;

export interface GoldenAdapter {
  texts: string[];
  ids: number[][];
  logits: number[][];
  merged_logits: number[][];
  embeddings: number[][];
  labels: string[];
}
export interface Golden {
  base_model: string;
  adapters: Record<string, GoldenAdapter>;
  base: { texts: string[]; ids: number[][]; embeddings: number[][] };
}

/** PyTorch reference outputs written by factory/train.py. */
export function loadGolden(): Golden {
  return JSON.parse(readFileSync(path.join(ROOT, 'test/fixtures/golden.json'), 'utf8')) as Golden;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}
