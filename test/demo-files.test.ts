/**
 * The committed demo files stay within the project's budget: the demo bases and adapters under
 * models/ and adapters/ are 150 MB at most (a clone ships them all). The wider demo encoder of
 * issue 17 put them at about 143 MB, so a change that adds a model must make room first.
 */
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT } from './helpers/demo.js';

const BUDGET_BYTES = 150_000_000;

async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await bytesUnder(p);
    else if (e.isFile()) total += (await stat(p)).size;
  }
  return total;
}

test('models/ and adapters/ hold at most 150 MB', async () => {
  const models = await bytesUnder(path.join(ROOT, 'models'));
  const adapters = await bytesUnder(path.join(ROOT, 'adapters'));
  assert.ok(models > 1_000_000 && adapters > 100_000, `the demo files are there (${models} + ${adapters} bytes)`);
  assert.ok(models + adapters <= BUDGET_BYTES,
    `models/ ${models} + adapters/ ${adapters} = ${models + adapters} bytes, over the ${BUDGET_BYTES}-byte budget`);
});
