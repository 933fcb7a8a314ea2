/**
 * Results: one row per figure (a ratio with its spread, checked against its target), printed
 * as one table, saved as `.bench/results.json` and `.bench/results.md`, and (with
 * --write-docs) written into `docs/benchmarks.md` with the machine and short notes.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Spread } from './measure.js';

/** A target a figure's median must meet. */
export interface Target {
  op: '>=' | '<=';
  value: number;
}

/** One line of the table. */
export interface Row {
  /** The figure it belongs to (what `--only` selects). */
  figure: string;
  /** What is divided by what. */
  label: string;
  /** `demo` or the synthetic model's name. */
  model: string;
  target: Target | null;
  /** How the value reads: `×` for a ratio, `ms`, `MiB`, `fds`. */
  unit: string;
  /** Spread over repeats; the median is what the target checks. */
  value: Spread;
  /** The sides' own numbers, hit rates and the like. */
  detail: string;
}

/** What a figure returns. */
export interface FigureResult {
  id: string;
  title: string;
  rows: Row[];
  /** Short notes for the docs: what was run, and for a miss: why, with numbers, and what would fix it. */
  notes: string[];
  /** Raw measurements, kept in results.json. */
  data: Record<string, unknown>;
  seconds: number;
}

/** Facts about the machine and run, printed above the table. */
export interface RunInfo {
  date: string;
  mode: 'quick' | 'full';
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  onnxruntime: string;
  threads: number;
  /** Intra-op threads of the generation figures' engines (ours and llama.cpp), when they ran. */
  generationThreads?: number;
  /** The execution provider of the run's ORT sessions (--execution-provider). */
  executionProvider?: string;
  loadAverage: { start: number[]; end: number[] };
  models: Record<string, string>;
  command: string;
  totalSeconds: number;
  setupSeconds: number;
}

export const passes = (r: Row): boolean | null => {
  if (!r.target || !Number.isFinite(r.value.median)) return r.target ? false : null;
  return r.target.op === '>=' ? r.value.median >= r.target.value : r.value.median <= r.target.value;
};

/** A number with about three significant digits. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  if (a >= 10) return x.toFixed(2);
  if (a >= 1) return x.toFixed(2);
  if (a >= 0.01) return x.toFixed(3);
  return x.toPrecision(2);
}

const unitAfter = (u: string) => (u === '×' ? '' : ` ${u}`);
const targetText = (r: Row) => (r.target ? `${r.target.op === '>=' ? '≥' : '≤'} ${r.target.value}${unitAfter(r.unit)}` : '—');
const valueText = (r: Row) => `${fmt(r.value.median)}${unitAfter(r.unit)} [${fmt(r.value.min)}–${fmt(r.value.max)}]`;
const okText = (r: Row) => ({ true: '✓', false: '✗', null: '' })[String(passes(r)) as 'true' | 'false' | 'null'];

/** The table in Markdown (also what the console shows). */
export function markdownTable(rows: Row[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [
    '| figure | model | target | measured: median [min–max] | | detail |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${esc(r.label)} | ${r.model} | ${targetText(r)} | ${valueText(r)} | ${okText(r)} | ${esc(r.detail)} |`),
  ];
  return lines.join('\n');
}

/** A compact console table: label, target, value, ok (details are in results.md). */
export function consoleTable(rows: Row[]): string {
  const cols = rows.map((r) => [r.label, r.model, targetText(r), valueText(r), okText(r)]);
  const head = ['figure', 'model', 'target', 'median [min–max]', 'ok'];
  const widths = head.map((h, i) => Math.max(h.length, ...cols.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(widths[i]!)).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...cols.map(line)].join('\n');
}

function infoLines(info: RunInfo): string[] {
  return [
    `- Machine: ${info.cpu}, ${info.cores} cores, ${info.memoryGiB} GiB RAM; load average ${info.loadAverage.start.map((x) => x.toFixed(2)).join(' / ')} at start, ${info.loadAverage.end.map((x) => x.toFixed(2)).join(' / ')} at the end (1/5/15 min)`,
    `- Node ${info.node}, onnxruntime-node ${info.onnxruntime}, ${(info.executionProvider ?? 'cpu').toUpperCase()} execution provider, ${info.threads} intra-op threads, graph optimization "all"`,
    `- Date: ${info.date}; mode: ${info.mode}; command: \`${info.command}\`; total ${info.totalSeconds.toFixed(0)} s (model and adapter files made or reused: ${info.setupSeconds.toFixed(0)} s)`,
    ...Object.entries(info.models).map(([k, v]) => `- Model "${k}": ${v}`),
  ];
}

/** results.md: run facts, the table, and every figure's notes. */
export function resultsMarkdown(info: RunInfo, figures: FigureResult[]): string {
  const rows = figures.flatMap((f) => f.rows);
  return [
    '# adapterhost benchmark results',
    '',
    ...infoLines(info),
    '',
    markdownTable(rows),
    '',
    ...figures.flatMap((f) => [`## ${f.title} (${f.seconds.toFixed(0)} s)`, '', ...f.notes.map((n) => `- ${n}`), '']),
  ].join('\n');
}

export async function writeResults(dir: string, info: RunInfo, figures: FigureResult[]): Promise<{ json: string; md: string }> {
  await mkdir(dir, { recursive: true });
  const json = path.join(dir, 'results.json');
  const md = path.join(dir, 'results.md');
  await writeFile(json, `${JSON.stringify({ info, rows: figures.flatMap((f) => f.rows.map((r) => ({ ...r, pass: passes(r) }))), figures }, null, 2)}\n`);
  await writeFile(md, `${resultsMarkdown(info, figures)}\n`);
  return { json, md };
}

/** docs/benchmarks.md: how to run, what each figure means, the table of this run, the notes. */
export function docsMarkdown(info: RunInfo, figures: FigureResult[], method: string): string {
  const rows = figures.flatMap((f) => f.rows);
  const misses = rows.filter((r) => passes(r) === false);
  return [
    '# Benchmarks',
    '',
    '<!-- Generated by `npm run bench -- --write-docs`; edit bench/report.ts or bench/run.ts, not this file. -->',
    '',
    'Every number below is a **ratio measured in one run**: both sides run in the same process, after',
    'warm-up, interleaved (A, B, A, B, …), several times. The table shows the median ratio and its',
    'spread [min–max] over the repeats. Absolute speeds depend on the machine and on whatever else it',
    'runs; ratios taken moments apart mostly do not.',
    '',
    '## This run',
    '',
    ...infoLines(info),
    '',
    markdownTable(rows),
    '',
    misses.length === 0 ? 'Every target was met in this run.' : `Missed in this run (✗): ${misses.map((r) => r.label).join('; ')}. The notes below say why.`,
    '',
    method,
    '',
    '## Notes on each figure',
    '',
    ...figures.flatMap((f) => [`### ${f.title}`, '', ...f.notes.map((n) => `- ${n}`), '']),
  ].join('\n');
}

/**
 * The note a missed row gets: the miss with its numbers, whether the target lies inside the
 * spread of this run (then noise can explain it), and `why`: what limits it and what would fix
 * it. Null when the row meets its target (or has none).
 */
export function missNote(r: Row, why: string): string | null {
  if (passes(r) !== false || !r.target) return null;
  const { min, median, max } = r.value;
  const inside = r.target.op === '>=' ? max >= r.target.value : min <= r.target.value;
  const noise = inside
    ? ` The target lies inside this run's spread [${fmt(min)}–${fmt(max)}]: repeats disagreed by more than the miss, so rerun (--only ${r.figure} --reps 9) before treating it as real.`
    : '';
  return `**Missed:** ${r.label}: ${fmt(median)}${unitAfter(r.unit)}, target ${targetText(r)}.${noise} ${why}`;
}
