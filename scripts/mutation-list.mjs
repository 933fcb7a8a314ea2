#!/usr/bin/env node
// Writes a StrykerJS-style JSON report listing every mutant Stryker's own instrumenter makes in
// the given source files, each with status "Pending" and 1-based locations, for
// scripts/mutation-recheck.mjs to run plainly (no instrumentation, no type check). For a module
// whose tests are too slow instrumented for `npm run mutation` on this machine (the sampler:
// its test file takes 1.2 s plain and 31 s instrumented).
// Usage: node scripts/mutation-list.mjs src/generation/sampler.ts > reports/mutation/sampler-plain.json
import { Instrumenter } from '@stryker-mutator/instrumenter';
import { readFileSync } from 'node:fs';

const quiet = () => undefined;
const log = { debug: quiet, info: quiet, trace: quiet, warn: console.warn, error: console.error, isDebugEnabled: () => false, isTraceEnabled: () => false, isInfoEnabled: () => false, isWarnEnabled: () => true };
const files = {};
for (const name of process.argv.slice(2)) {
  const source = readFileSync(name, 'utf8');
  const { mutants } = await new Instrumenter(log).instrument([{ name, content: source, mutate: true }], { plugins: null, excludedMutations: [], ignorers: [], noHeader: false });
  const at = (p) => ({ line: p.line + 1, column: p.column + 1 });
  files[name] = {
    language: 'typescript', source,
    mutants: mutants.map((m) => ({ id: m.id, mutatorName: m.mutatorName, replacement: m.replacement, status: 'Pending', location: { start: at(m.location.start), end: at(m.location.end) } })),
  };
}
console.log(JSON.stringify({ schemaVersion: '1', thresholds: { high: 80, low: 60 }, files }));
