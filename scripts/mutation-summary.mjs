#!/usr/bin/env node
// Summarises StrykerJS JSON reports (reports/mutation/*.json, from `npm run mutation`): the
// mutation score per file (killed + timed out over all valid mutants, as Stryker counts it)
// and every survivor with its line and replacement, for judging which are equivalent.
// Usage: node scripts/mutation-summary.mjs reports/mutation/<name>.json [...]
import { readFileSync } from 'node:fs';

for (const file of process.argv.slice(2)) {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  for (const [path, f] of Object.entries(report.files)) {
    const by = {};
    for (const m of f.mutants) by[m.status] = (by[m.status] ?? 0) + 1;
    const detected = (by.Killed ?? 0) + (by.Timeout ?? 0);
    const valid = detected + (by.Survived ?? 0) + (by.NoCoverage ?? 0);
    console.log(`\n${path}: ${(100 * detected / valid).toFixed(1)} % (${detected}/${valid}) ${JSON.stringify(by)}`);
    const lines = f.source.split('\n');
    for (const m of f.mutants.filter((x) => x.status === 'Survived' || x.status === 'NoCoverage').sort((a, b) => a.location.start.line - b.location.start.line)) {
      const { line, column } = m.location.start;
      console.log(`  ${m.status === 'NoCoverage' ? 'NOCOV' : 'SURV '} ${line}:${column} ${m.mutatorName}: ${JSON.stringify((m.replacement ?? '').slice(0, 90))}  | ${lines[line - 1].trim().slice(0, 110)}`);
    }
  }
}
