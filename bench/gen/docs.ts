/**
 * The generation part of docs/benchmarks.md: a section between two markers, written from the
 * generation figures of a run. A run of only generation figures (`--only gen-…`) replaces just
 * that section; a run of encoder figures rewrites the page around it and keeps the section of the
 * last run that had generation figures.
 */
import type { FigureResult, RunInfo } from '../report.js';
import { markdownTable, passes } from '../report.js';

export const BEGIN = '<!-- generation:begin (written by npm run bench -- --write-docs from the gen-* figures) -->';
export const END = '<!-- generation:end -->';

/** The section (markers included) for the generation figures of a run. */
export function generationSection(info: RunInfo, figures: FigureResult[], method: string): string {
  const rows = figures.flatMap((f) => f.rows);
  const misses = rows.filter((r) => passes(r) === false);
  return [
    BEGIN,
    '## Generation',
    '',
    `- Run: ${info.date}, mode ${info.mode}, \`${info.command}\`; ${info.cpu}, ${info.cores} cores; load average ${info.loadAverage.start.map((x) => x.toFixed(2)).join(' / ')} at start, ${info.loadAverage.end.map((x) => x.toFixed(2)).join(' / ')} at the end`,
    `- Node ${info.node}, onnxruntime-node ${info.onnxruntime} (CPU), ${info.generationThreads ?? 1} intra-op thread(s) for every engine of these figures, ours and llama.cpp alike`,
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
