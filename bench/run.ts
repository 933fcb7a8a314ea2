/**
 * `npm run bench`: every figure of docs/benchmarks.md as a ratio measured in one run.
 *
 *   npm run bench                       quick: DistilBERT-size synthetic model, a few minutes
 *   npm run bench -- --full             BERT-base (12 layers), more repeats
 *   npm run bench -- --only mixed-batch,cold-load
 *   npm run bench -- --soak-seconds 120 --write-docs
 *
 * Prints one table, writes .bench/results.json and .bench/results.md, and with --write-docs
 * rewrites docs/benchmarks.md.
 */
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchContext, type BenchSettings, type Figure } from './context.js';
import { adapterOverhead, mixedBatch } from './figures/batch.js';
import { cachePressure, residentMany } from './figures/cache.js';
import { healthzStall, httpOverhead, soak } from './figures/http.js';
import { genBatching, genAdapterOverhead, genMixed, genTtft } from './figures/generation.js';
import { genSse } from './figures/gen-http.js';
import { genMerged } from './figures/gen-merged.js';
import { blockOf, generationSection, sectionOf, SOAK_BEGIN, SOAK_END, spliceSection, storeFigures } from './gen/docs.js';
import { genLlamaCpp } from './figures/llamacpp.js';
import { coldLoad } from './figures/load.js';
import { memoryPerAdapter } from './figures/memory.js';
import { naiveMerged, sameAdapter } from './figures/naive.js';
import { SHAPES } from './models.js';
import { consoleTable, docsMarkdown, writeResults, type FigureResult, type RunInfo } from './report.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Every figure, in run order; `--only` takes these ids. */
const FIGURES: Record<string, Figure> = {
  'mixed-batch': mixedBatch,
  'adapter-overhead': adapterOverhead,
  'resident-many': residentMany,
  'cache-pressure': cachePressure,
  'cold-load': coldLoad,
  'http-overhead': httpOverhead,
  'healthz-stall': healthzStall,
  'memory-per-adapter': memoryPerAdapter,
  'naive-merged': naiveMerged,
  'same-adapter': sameAdapter,
  soak,
  'gen-mixed': genMixed,
  'gen-adapter-overhead': genAdapterOverhead,
  'gen-batching': genBatching,
  'gen-ttft': genTtft,
  'gen-merged': genMerged,
  'gen-sse': genSse,
  'gen-llamacpp': genLlamaCpp,
};

/** The generation figures (synthetic decoder, bench/gen/); the others use the synthetic BERT. */
const GENERATION = new Set(Object.keys(FIGURES).filter((f) => f.startsWith('gen-')));

const USAGE = `usage: npm run bench -- [--quick | --full] [--only <figure>[,<figure>…]] [--write-docs]
                          [--soak-seconds N] [--reps N] [--seed N] [--threads N]
                          [--execution-provider cpu|webgpu]
figures: ${Object.keys(FIGURES).join(', ')}`;

function settings(argv: string[]): { s: BenchSettings; only: string[]; writeDocs: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' }, full: { type: 'boolean' }, only: { type: 'string' }, 'write-docs': { type: 'boolean' },
      'soak-seconds': { type: 'string' }, reps: { type: 'string' }, seed: { type: 'string' }, threads: { type: 'string' }, 'execution-provider': { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) { console.log(USAGE); process.exit(0); }
  if (values.quick && values.full) throw new Error('--quick and --full exclude each other');
  const full = values.full === true;
  const only = values.only ? values.only.split(',').map((x) => x.trim()).filter(Boolean) : [];
  const unknown = only.filter((f) => !FIGURES[f]);
  if (unknown.length) throw new Error(`unknown figure(s) ${unknown.join(', ')}\n${USAGE}`);
  const num = (v: string | undefined, def: number, name: string) => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${v}`);
    return n;
  };
  const s: BenchSettings = {
    mode: full ? 'full' : 'quick',
    size: full ? 'base' : 'distilbert',
    root: path.join(ROOT, '.bench'),
    reps: Math.round(num(values.reps, full ? 7 : 5, 'reps')),
    warmup: 1,
    seed: Math.round(num(values.seed, 1234, 'seed')),
    soakSeconds: num(values['soak-seconds'], 60, 'soak-seconds'),
    batchRows: 8,
    minTokens: 16,
    maxTokens: 24,
    manyAdapters: 1000,
    zipfAdapters: 200,
    mergedAdapters: full ? 30 : 20,
    openLoopSeconds: full ? 15 : 8,
    threads: Math.round(num(values.threads, 1, 'threads')),
    ...(values.reps !== undefined ? { genReps: Math.round(num(values.reps, 3, 'reps')) } : {}),
    executionProvider: values['execution-provider'] ?? 'cpu',
  };
  if (!['cpu', 'webgpu'].includes(s.executionProvider)) throw new Error(`--execution-provider must be cpu or webgpu, got ${s.executionProvider}\n${USAGE}`);
  return { s, only, writeDocs: values['write-docs'] === true };
}

function ortVersion(): string {
  try {
    const req = createRequire(import.meta.url);
    return (JSON.parse(readFileSync(req.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const argv = process.argv.slice(2);
  const { s, only, writeDocs } = settings(argv);
  const load0 = os.loadavg();
  const log = (m: string) => process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${m}\n`);
  const ctx = new BenchContext(s, log);
  const figures: FigureResult[] = [];
  const ids = only.length ? only : Object.keys(FIGURES);
  try {
    for (const id of ids) {
      log(`${id} …`);
      const f0 = performance.now();
      const r = await FIGURES[id]!(ctx);
      const result: FigureResult = { id, ...r, seconds: (performance.now() - f0) / 1000 };
      figures.push(result);
      log(`${id}: ${result.rows.map((row) => `${row.value.median.toFixed(3)} ${row.unit}`).join(', ')} (${result.seconds.toFixed(0)} s)`);
    }
  } finally {
    await ctx.close();
  }
  const shape = SHAPES[s.size];
  const encoderRan = ids.some((id) => !GENERATION.has(id));
  const model = encoderRan ? await ctx.model() : null;
  const genModel = ids.some((id) => GENERATION.has(id)) ? await (await import('./gen/shared.js')).gen(ctx) : null;
  const info: RunInfo = {
    date: new Date().toISOString(),
    mode: s.mode,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    onnxruntime: ortVersion(),
    threads: os.availableParallelism(),
    generationThreads: s.threads ?? 1,
    executionProvider: s.executionProvider,
    loadAverage: { start: load0, end: os.loadavg() },
    models: {
      ...(genModel ? { [genModel.name]: `${genModel.dec.shape.layers} layers, hidden ${genModel.dec.shape.hidden}, ${genModel.dec.shape.heads} heads (${genModel.dec.shape.kvHeads} KV), MLP ${genModel.dec.shape.inter}, vocab ${genModel.dec.shape.vocab}, tied embeddings; seeded random weights by factory/bench-decoder/make.py (PyTorch, optimum with-past export), slotted by prepareModel --task text-generation (all 7 projections, max rank 16); 20 random PEFT adapters r=8 alpha 16 on q_proj,v_proj and 2 r=16 alpha 32 on all seven; F32 (${(genModel.dec.manifest.baseBytes / 2 ** 20).toFixed(0)} MiB slotted); the same weights as GGUF F32 for llama.cpp` } : {}),
      ...(model ? { [ctx.modelName]: `${shape.layers} layers, hidden ${shape.hidden}, ${shape.heads} heads, FFN ${shape.intermediate}, vocab ${shape.vocab}; seeded random weights written by bench/synthetic-bert.ts, slotted by prepareModel (targets query,value; head classifier; max rank 16); random PEFT adapters r=8, alpha 16 on query/value with a 2-label head, F32 (${(model.manifest.baseBytes / 2 ** 20).toFixed(0)} MiB slotted model)` } : {}),
      demo: 'the committed models/demo (slotted) with adapters/ (spam, lang, topic, es-topic)',
    },
    command: `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
    totalSeconds: (performance.now() - t0) / 1000,
    setupSeconds: (model?.madeSeconds ?? 0) + (genModel?.dec.madeSeconds ?? 0),
  };
  const rows = figures.flatMap((f) => f.rows);
  console.log('');
  console.log(consoleTable(rows));
  const { json, md } = await writeResults(s.root, info, figures);
  console.log(`\nwrote ${path.relative(ROOT, json)} and ${path.relative(ROOT, md)} (${info.totalSeconds.toFixed(0)} s in all)`);
  if (writeDocs) {
    const docs = path.join(ROOT, 'docs', 'benchmarks.md');
    const page = existsSync(docs) ? readFileSync(docs, 'utf8') : '';
    const encoderFigures = figures.filter((f) => !GENERATION.has(f.id));
    const genFigures = figures.filter((f) => GENERATION.has(f.id));
    const section = genFigures.length
      ? generationSection(await storeFigures(path.join(ROOT, 'docs', 'benchmarks-generation.json'), info, genFigures, [...GENERATION]),
        readFileSync(path.join(ROOT, 'bench', 'gen', 'METHOD.md'), 'utf8').trim())
      : sectionOf(page);
    let out = page;
    if (encoderFigures.length) {
      const method = readFileSync(path.join(ROOT, 'bench', 'METHOD.md'), 'utf8').trim();
      out = `${docsMarkdown(info, encoderFigures, method)}\n`;
    }
    if (section) out = spliceSection(out, section);
    // The soak figures are written by hand from long runs: a rewritten page keeps them.
    const soak = blockOf(page, SOAK_BEGIN, SOAK_END);
    if (soak && !out.includes(soak)) out = `${out.trimEnd()}\n\n${soak}\n`;
    await writeFile(docs, out);
    console.log(`wrote ${path.relative(ROOT, docs)}${encoderFigures.length ? '' : ' (its generation section only)'}`);
  }
}

main().then(
  () => process.exit(0), // the ORT worker and sockets are closed; exit even if a handle lingers
  (e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
