#!/usr/bin/env node
// Rechecks the mutants a StrykerJS run reported as timed out, one at a time and without
// instrumentation: on a loaded machine a mutant that only made a test slower can pass for a
// timeout. Each mutant is written into a copy of the source file inside a scratch copy of the
// repository (the working tree is never touched), the given test files run through tsx, and the
// mutant is classed as `killed` (a test failed), `survived` (all passed) or `hang` (no answer in
// the time limit: a real timeout). With a fourth argument `Survived` (or `Survived,Timeout`,
// `NoCoverage`) it rechecks those mutants instead: after tests were written for a run's
// survivors, this says which of them the test files now kill, without rerunning the whole module
// (mutants the run killed stay killed: tests were only added).
// Usage: node scripts/mutation-recheck.mjs reports/mutation/<name>.json test/a.test.ts[,test/b.test.ts] [seconds] [statuses]
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [reportFile, testList, seconds = '90', statuses = 'Timeout'] = process.argv.slice(2);
const wanted = new Set(statuses.split(','));
if (!reportFile || !testList) {
  console.error('usage: node scripts/mutation-recheck.mjs <report.json> <test files, comma-separated> [seconds] [statuses]');
  process.exit(2);
}
const root = process.cwd();
const scratch = mkdtempSync(path.join(os.tmpdir(), 'mutation-recheck-'));
for (const dir of ['src', 'test', 'bench']) cpSync(path.join(root, dir), path.join(scratch, dir), { recursive: true });
for (const f of ['package.json', 'tsconfig.json']) cpSync(path.join(root, f), path.join(scratch, f));
for (const link of ['node_modules', 'models', 'adapters']) symlinkSync(path.join(root, link), path.join(scratch, link));

/** Offset of a 1-based line and column in `text`. */
function offsetOf(text, { line, column }) {
  let at = 0;
  for (let l = 1; l < line; l++) at = text.indexOf('\n', at) + 1;
  return at + column - 1;
}

const report = JSON.parse(readFileSync(reportFile, 'utf8'));
const counts = { killed: 0, survived: 0, hang: 0 };
for (const [file, f] of Object.entries(report.files)) {
  const target = path.join(scratch, file);
  for (const m of f.mutants.filter((x) => wanted.has(x.status))) {
    const a = offsetOf(f.source, m.location.start);
    const b = offsetOf(f.source, m.location.end);
    writeFileSync(target, f.source.slice(0, a) + m.replacement + f.source.slice(b));
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', ...testList.split(',')], {
      cwd: scratch, timeout: Number(seconds) * 1000, killSignal: 'SIGKILL', stdio: 'ignore',
    });
    const verdict = r.error || r.signal ? 'hang' : r.status === 0 ? 'survived' : 'killed';
    counts[verdict]++;
    console.log(`${verdict.padEnd(8)} ${m.status.padEnd(10)} ${file}:${m.location.start.line}:${m.location.start.column} ${m.mutatorName}: ${JSON.stringify(m.replacement.slice(0, 80))}`);
  }
  writeFileSync(target, f.source);
}
rmSync(scratch, { recursive: true, force: true });
console.log(JSON.stringify(counts));
