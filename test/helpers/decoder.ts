import { readFileSync } from 'node:fs';
import path from 'node:path';
import { AdapterLoader } from '../../src/adapter/loader.js';
import { AdapterStore } from '../../src/adapter/store.js';
import { DecoderRunner } from '../../src/generation/decoder-runner.js';
import { loadManifest, type ModelManifest } from '../../src/model/manifest.js';
import { ROOT } from './demo.js';

export const TINY_DIR = path.join(ROOT, 'test/fixtures/tiny-llama');
export const DEMO_LLM_DIR = path.join(ROOT, 'models/demo-llm');
export const DEMO_LLM_ADAPTERS = path.join(ROOT, 'adapters-llm');

/** One prompt's PyTorch reference (factory/decoder/peft_io.py `golden_entry`). */
export interface GoldenRun {
  prompt_ids: number[];
  tokens: number[];
  /** Per step: logits of the probe ids. */
  probe_logits: number[][];
  /** Per step: the largest logit. */
  top_logits: number[];
  /** The first step's logits, whole vocabulary. */
  first_logits: number[];
}

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** A decoder, its runner and an adapter loader over an adapters directory. */
export async function openDecoder(modelDir: string, adaptersDir: string): Promise<{ manifest: ModelManifest; runner: DecoderRunner; loader: AdapterLoader }> {
  const manifest = await loadManifest(modelDir);
  const runner = await DecoderRunner.create(modelDir, manifest, { threads: 1, executionProvider: 'cpu' });
  const store = new AdapterStore({ dir: adaptersDir });
  await store.init();
  return { manifest, runner, loader: new AdapterLoader(store, manifest) };
}

/**
 * Largest difference between an engine run and a golden run over every step it checks
 * (the probe ids at every step, the whole vocabulary at the first); asserts the step counts agree.
 */
export function goldenDiff(probeIds: readonly number[], golden: GoldenRun, logits: readonly Float32Array[]): number {
  if (logits.length !== golden.probe_logits.length) throw new Error(`engine ran ${logits.length} steps, golden has ${golden.probe_logits.length}`);
  if (golden.first_logits.length !== logits[0]!.length) throw new Error(`golden first_logits has ${golden.first_logits.length} values, vocab is ${logits[0]!.length}`);
  let d = 0;
  logits.forEach((row, s) => {
    probeIds.forEach((v, k) => { d = Math.max(d, Math.abs(row[v]! - golden.probe_logits[s]![k]!)); });
    let top = -Infinity;
    for (const x of row) if (x > top) top = x;
    d = Math.max(d, Math.abs(top - golden.top_logits[s]!));
  });
  golden.first_logits.forEach((v, k) => { d = Math.max(d, Math.abs(logits[0]![k]! - v)); });
  return d;
}
