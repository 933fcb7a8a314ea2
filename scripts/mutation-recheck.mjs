#!/usr/bin/env node
// Runs mutants from a StrykerJS-style JSON report plainly, one at a time, without
// instrumentation. Each mutant is written into a copy of its source file inside a scratch copy
// of the repository (the working tree is never touched); the test files run through tsx in the
// order given, stopping at the first that fails; the mutant is classed as `killed` (a test
// failed), `survived` (all passed) or `hang` (no answer within the limit: a real timeout).
//
// Uses:
// - `Timeout` (the default): on a loaded machine a mutant that only made a test slower passes
//   for a timeout in a Stryker run; this tells hangs from slow runs.
// - `Survived,NoCoverage`: after tests were written for a run's survivors, which of them the
//   test files now kill, without rerunning the whole module (the run's killed mutants stay
//   killed: tests were only added).
// - `Pending`: every mutant of a report from scripts/mutation-list.mjs (a module too slow to
//   run instrumented here).
// `--out F` writes the report back with each rerun mutant's new status (Killed / Survived /
// Timeout); `--shard i/n` takes every n-th mutant from the i-th (0-based), for parallel runs,
// and `--merge <report.json> <shard outputs...> --out F` joins their outputs (each mutant takes
// the status from the shard that reran it).
// Usage: node scripts/mutation-recheck.mjs <report.json> <test files, comma-separated> [seconds]
//          [statuses] [--out F] [--shard i/n]
//        node scripts/mutation-recheck.mjs --merge <report.json> <shard.json> [...] --out F
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args.splice(i, 2)[1];
};
const out = flag('--out');
if (args[0] === '--merge') {
  const [base, ...shards] = args.slice(1).map((f) => JSON.parse(readFileSync(f, 'utf8')));
  if (!out || !base || shards.length === 0) {
    console.error('usage: node scripts/mutation-recheck.mjs --merge <report.json> <shard.json> [...] --out F');
    process.exit(2);
  }
  for (const [file, f] of Object.entries(base.files)) {
    f.mutants.forEach((m, i) => {
      const changed = shards.map((r) => r.files[file].mutants[i].status).find((st) => st !== m.status);
      if (changed) m.status = changed;
    });
  }
  writeFileSync(out, JSON.stringify(base));
  process.exit(0);
}
const [shardIndex, shardCount] = (flag('--shard') ?? '0/1').split('/').map(Number);
const [reportFile, testList, seconds = '90', statuses = 'Timeout'] = args;
if (!reportFile || !testList) {
  console.error('usage: node scripts/mutation-recheck.mjs <report.json> <test files, comma-separated> [seconds] [statuses] [--out F] [--shard i/n]');
  process.exit(2);
}
const wanted = new Set(statuses.split(','));
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

/** Runs the test files in order; the first failure or hang decides. */
function verdictOf() {
  for (const testFile of testList.split(',')) {
    // The file runs as a script (node:test runs its tests and sets the exit code), not under
    // `--test`, whose per-file child would outlive a SIGKILL of the runner when a mutant hangs.
    const r = spawnSync(process.execPath, ['--import', 'tsx', testFile], {
      cwd: scratch, timeout: Number(seconds) * 1000, killSignal: 'SIGKILL', stdio: 'ignore',
    });
    if (r.error || r.signal) return 'hang';
    if (r.status !== 0) return 'killed';
  }
  return 'survived';
}

const STATUS = { killed: 'Killed', survived: 'Survived', hang: 'Timeout' };
const report = JSON.parse(readFileSync(reportFile, 'utf8'));
const counts = { killed: 0, survived: 0, hang: 0 };
let seen = 0;
for (const [file, f] of Object.entries(report.files)) {
  const target = path.join(scratch, file);
  for (const m of f.mutants.filter((x) => wanted.has(x.status))) {
    if (seen++ % shardCount !== shardIndex) continue;
    const a = offsetOf(f.source, m.location.start);
    const b = offsetOf(f.source, m.location.end);
    writeFileSync(target, f.source.slice(0, a) + m.replacement + f.source.slice(b));
    const verdict = verdictOf();
    counts[verdict]++;
    console.log(`${verdict.padEnd(8)} ${m.status.padEnd(10)} ${file}:${m.location.start.line}:${m.location.start.column} ${m.mutatorName}: ${JSON.stringify(m.replacement.slice(0, 80))}`);
    m.status = STATUS[verdict];
  }
  writeFileSync(target, f.source);
}
rmSync(scratch, { recursive: true, force: true });
if (out) writeFileSync(out, JSON.stringify(report));
console.log(JSON.stringify(counts));
