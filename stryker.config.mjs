// Mutation testing (StrykerJS): `npm run mutation` runs every module below; one or a few with
// `MUTATION_MODULES=sampler,safetensors npm run mutation`. Not part of `npm test` or CI: it
// reruns test files once per mutant. Scores and the survivors judged equivalent: docs/testing.md.
//
// The tap runner runs each test file as its own node process through tsx (no tsc per mutant),
// with coverage per test file, so a mutant reruns only the files that reach it. Code that only
// runs inside worker threads (the ORT session in src/runtime/worker.ts) is not seen by the
// coverage hook there; the modules here are tested from the main thread.

/** Module → the file(s) mutated and the test files that exercise them. */
const MODULES = {
  // The many-draw tests are in sampler-draws.test.ts (seconds plain, far longer instrumented): not rerun per mutant.
  // Even so its instrumented runs took ~30 s here; docs/testing.md says how it was run plainly instead.
  sampler: { mutate: ['src/generation/sampler.ts'], tests: ['test/sampler.test.ts'] },
  'lora-weights': { mutate: ['src/adapter/lora-weights.ts'], tests: ['test/lora-weights.test.ts'] },
  'peft-config': { mutate: ['src/adapter/peft-config.ts'], tests: ['test/peft-config.test.ts', 'test/peft-config.property.test.ts'] },
  safetensors: { mutate: ['src/adapter/safetensors.ts'], tests: ['test/safetensors.test.ts', 'test/safetensors.property.test.ts'] },
  cache: { mutate: ['src/adapter/cache.ts'], tests: ['test/cache.test.ts'] },
  // The SIGKILL crash test is in store-crash.test.ts (15 child processes, ~15–40 s): not rerun per mutant.
  store: { mutate: ['src/adapter/store.ts', 'src/adapter/adapter-id.ts'], tests: ['test/store.test.ts'] },
  feeds: { mutate: ['src/runtime/feeds.ts', 'src/runtime/lora-banks.ts'], tests: ['test/feeds.test.ts'] },
  batcher: { mutate: ['src/scheduler/batcher.ts'], tests: ['test/batcher.test.ts'] },
  // Its test starts the decoder worker; from source it runs decoder-worker.ts (src/runtime/spawn-worker.ts).
  'generation-scheduler': { mutate: ['src/generation/scheduler.ts'], tests: ['test/generation-scheduler.test.ts'] },
};

const runnable = Object.keys(MODULES).filter((m) => !MODULES[m].off);
const picked = (process.env.MUTATION_MODULES ?? runnable.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
for (const m of picked) {
  if (!(m in MODULES)) throw new Error(`MUTATION_MODULES: unknown module "${m}"; known: ${Object.keys(MODULES).join(', ')}`);
  if (MODULES[m].off) throw new Error(`MUTATION_MODULES: ${m} is left out: ${MODULES[m].off}`);
}
const name = picked.length === runnable.length ? 'all' : picked.join('+');

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'tap',
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.mutation.json',
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: 'perTest',
  mutate: picked.flatMap((m) => MODULES[m].mutate),
  tap: {
    // MUTATION_TESTS=a.test.ts,b.test.ts narrows the test files (e.g. leaving out slow property tests).
    testFiles: process.env.MUTATION_TESTS ? process.env.MUTATION_TESTS.split(',') : [...new Set(picked.flatMap((m) => MODULES[m].tests))],
    nodeArgs: ['--test-reporter=tap', '--import', 'tsx', '-r', '{{hookFile}}', '{{testFile}}'],
    forceBail: true,
  },
  // Two cores shared with other work: one test process at a time unless told otherwise.
  concurrency: Number(process.env.MUTATION_CONCURRENCY ?? 1),
  // A mutant that makes the tests run past net time × 2 + this counts as timed out (detected);
  // MUTATION_TIMEOUT_MS lowers it where many loop mutants hang (each costs the whole timeout), and
  // scripts/mutation-recheck.mjs reruns timed-out mutants plainly to tell hangs from slow runs.
  timeoutMS: Number(process.env.MUTATION_TIMEOUT_MS ?? 20_000),
  timeoutFactor: 2,
  // Instrumented code runs much slower than plain code (a coverage call per expression).
  dryRunTimeoutMinutes: 20,
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true },
  ignorePatterns: ['dist', 'build', 'factory', 'models/*-export', 'adapters-llm', 'reports', '.bench', '.gpu-check', 'docs', 'web', 'console'],
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
};
