/**
 * Scores the demo decoder's generative adapters on held-out test packages, generating through
 * the TypeScript engine (greedy, the served code path), beside two baselines: the frozen base
 * with the same prompt and no adapter, and a trivial answer (summaries: the input's first
 * sentence cut to 12 words; translation: the English text copied).
 *
 * usage: node dist/bench/eval-generation.js <model dir> <adapters dir> <factory build dir> <out.json> [rows per task]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { AdapterLoader } from '../src/adapter/loader.js';
import { AdapterStore } from '../src/adapter/store.js';
import { DecoderRunner } from '../src/generation/decoder-runner.js';
import { generateGreedy } from '../src/generation/greedy.js';
import { loadManifest } from '../src/model/manifest.js';
import type { AdapterPayload } from '../src/runtime/batch.js';
import { bleu, chrF, firstSentence, rougeL } from './text-metrics.js';

interface TaskRow { split: string; pkg: string; input: string; target: string; prompt_ids: number[] }
interface TaskSpec { id: string; kind: 'summary' | 'translation' }
const TASKS: TaskSpec[] = [
  { id: 'summarize', kind: 'summary' },
  { id: 'translate-it', kind: 'translation' },
  { id: 'riassumi', kind: 'summary' },
];
const MAX_NEW_TOKENS = 48;
const BATCH = 16;

function scores(kind: TaskSpec['kind'], outs: string[], refs: string[]): Record<string, number> {
  const r = (x: number) => Math.round(x * 10) / 10;
  if (kind === 'summary') return { rougeL: r((100 * outs.reduce((a, o, i) => a + rougeL(o, refs[i]!), 0)) / outs.length) };
  return { chrF: r(chrF(outs, refs)), bleu: r(bleu(outs, refs)) };
}

async function main(): Promise<void> {
  const [modelDir, adaptersDir, buildDir, outFile, rowsArg] = process.argv.slice(2);
  if (!modelDir || !adaptersDir || !buildDir || !outFile) throw new Error('usage: eval-generation <model dir> <adapters dir> <build dir> <out.json> [rows]');
  const perTask = Number(rowsArg ?? 600);
  const manifest = await loadManifest(modelDir);
  const runner = await DecoderRunner.create(modelDir, manifest, { threads: 2, executionProvider: 'cpu' });
  const store = new AdapterStore({ dir: adaptersDir });
  await store.init();
  const loader = new AdapterLoader(store, manifest);
  const tok = new Tokenizer(JSON.parse(readFileSync(path.join(modelDir, manifest.tokenizerFile), 'utf8')), {});
  const decode = (ids: number[]) => (ids.length ? tok.decode(ids, { skip_special_tokens: true }).trim() : '');
  const gen = async (rows: TaskRow[], adapter: AdapterPayload | null) => {
    const out: string[] = [];
    for (let i = 0; i < rows.length; i += BATCH) {
      const res = await generateGreedy(runner, rows.slice(i, i + BATCH).map((r) => ({ promptIds: r.prompt_ids, adapter, maxNewTokens: MAX_NEW_TOKENS })));
      out.push(...res.map((x) => decode(x.tokens)));
    }
    return out;
  };
  const report: Record<string, unknown> = { engine: 'adapterhost DecoderRunner (onnxruntime-node, greedy)', maxNewTokens: MAX_NEW_TOKENS, tasks: {} };
  for (const t of TASKS) {
    const all = JSON.parse(readFileSync(path.join(buildDir, `task-${t.id}.json`), 'utf8')) as TaskRow[];
    const rows = all.filter((r) => r.split === 'test').slice(0, perTask);
    const refs = rows.map((r) => r.target);
    const t0 = Date.now();
    const adapterOut = await gen(rows, await loader.load(t.id));
    const baseOut = await gen(rows, null);
    const trivialOut = rows.map((r) => (t.kind === 'summary' ? firstSentence(r.input) : r.input));
    (report.tasks as Record<string, unknown>)[t.id] = {
      kind: t.kind,
      testRows: rows.length,
      testRowsAvailable: all.filter((r) => r.split === 'test').length,
      adapter: scores(t.kind, adapterOut, refs),
      base: scores(t.kind, baseOut, refs),
      trivial: scores(t.kind, trivialOut, refs),
      trivialIs: t.kind === 'summary' ? "the input's first sentence cut to 12 words" : 'the English text copied',
      samples: rows.slice(0, 4).map((r, i) => ({ pkg: r.pkg, input: r.input.slice(0, 300), reference: r.target, adapter: adapterOut[i], base: baseOut[i] })),
      seconds: Math.round((Date.now() - t0) / 1000),
    };
    console.log(t.id, JSON.stringify((report.tasks as Record<string, Record<string, unknown>>)[t.id]!, (k, v) => (k === 'samples' ? undefined : v)));
  }
  writeFileSync(outFile, `${JSON.stringify(report, null, 1)}\n`);
  await runner.close();
}

main().catch((e: unknown) => { console.error(e); process.exitCode = 1; });
