/**
 * The generation part of docs/benchmarks.md: a section between two markers, written from the
 * latest measurement of every generation figure. Those live in docs/benchmarks-generation.json
 * (each with the facts of the run that measured it), so a run of some figures (`--only gen-…`)
 * updates them and keeps the others; a run of encoder figures rewrites the page around the section.
 */
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type { FigureResult, RunInfo } from '../report.js';
import { markdownTable, passes } from '../report.js';

export const BEGIN = '<!-- generation:begin (written by npm run bench -- --write-docs from the gen-* figures) -->';
export const END = '<!-- generation:end -->';

/** A figure's latest measurement and the run that made it. */
export interface StoredFigure { result: FigureResult; run: Pick<RunInfo, 'date' | 'mode' | 'command' | 'cpu' | 'cores' | 'node' | 'onnxruntime' | 'generationThreads' | 'executionProvider' | 'loadAverage' | 'models'> }

/** Merges this run's generation figures into the stored ones (by id, in `order`) and writes the file. */
export async function storeFigures(file: string, info: RunInfo, figures: FigureResult[], order: string[]): Promise<StoredFigure[]> {
  const old: StoredFigure[] = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as StoredFigure[]) : [];
  const { date, mode, command, cpu, cores, node, onnxruntime, generationThreads, executionProvider, loadAverage, models } = info;
  const byId = new Map(old.map((f) => [f.result.id, f]));
  for (const f of figures) byId.set(f.id, { result: f, run: { date, mode, command, cpu, cores, node, onnxruntime, generationThreads, ...(executionProvider ? { executionProvider } : {}), loadAverage, models } });
  const out = order.flatMap((id) => { const f = byId.get(id); return f ? [f] : []; });
  await writeFile(file, `${JSON.stringify(out, null, 1)}\n`);
  return out;
}

const load = (l: RunInfo['loadAverage']) => `load ${l.start.map((x) => x.toFixed(1)).join('/')} → ${l.end.map((x) => x.toFixed(1)).join('/')}`;

/** The section (markers included) from the stored generation figures. */
export function generationSection(stored: StoredFigure[], method: string): string {
  const figures = stored.map((s) => s.result);
  const rows = figures.flatMap((f) => f.rows);
  const misses = rows.filter((r) => passes(r) === false);
  const latest = stored.reduce((a, b) => (a.run.date > b.run.date ? a : b));
  const info = latest.run;
  return [
    BEGIN,
    '## Generation',
    '',
    `- Machine: ${info.cpu}, ${info.cores} cores; Node ${info.node}, onnxruntime-node ${info.onnxruntime} (${(info.executionProvider ?? 'cpu').toUpperCase()} provider); ${info.generationThreads ?? 1} intra-op thread(s) for every engine of these figures, ours and llama.cpp alike`,
    ...stored.map((s) => `- \`${s.result.id}\`: measured ${s.run.date} (${s.run.mode}, \`${s.run.command}\`, ${load(s.run.loadAverage)}), ${s.result.seconds.toFixed(0)} s`),
    ...Object.entries(info.models).filter(([k]) => k.startsWith('synthetic SmolLM2')).map(([k, v]) => `- Model "${k}": ${v}`),
    '',
    markdownTable(rows),
    '',
    misses.length === 0 ? 'Every generation target was met in this run.' : `Missed in this run (✗): ${misses.map((r) => r.label).join('; ')}. The notes below say why.`,
    '',
    method,
    '',
    '### Notes on each generation figure',
    '',
    ...figures.flatMap((f) => [`#### ${f.title} (${f.seconds.toFixed(0)} s)`, '', ...f.notes.map((n) => `- ${n}`), '']),
    END,
  ].join('\n');
}

/** The hand-written soak section (bench/soak-generation.ts runs), which --write-docs keeps as it is. */
export const SOAK_BEGIN = '<!-- soak-generation:begin';
export const SOAK_END = '<!-- soak-generation:end -->';

/** The block of `page` from the line starting with `begin` through `end`, or null. */
export function blockOf(page: string, begin: string, end: string): string | null {
  const a = page.indexOf(begin);
  const b = a >= 0 ? page.indexOf(end, a) : -1;
  return b > a ? page.slice(a, b + end.length) : null;
}

/** The section of an existing page, or null. */
export function sectionOf(page: string): string | null {
  const a = page.indexOf(BEGIN);
  const b = page.indexOf(END);
  return a >= 0 && b > a ? page.slice(a, b + END.length) : null;
}

/** `page` with its section replaced by `section` (appended when it has none). */
export function spliceSection(page: string, section: string): string {
  const old = sectionOf(page);
  if (old) return page.replace(old, () => section);
  return `${page.trimEnd()}\n\n${section}\n`;
}
