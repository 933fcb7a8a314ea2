// The store's crash test on its own file: it kills 15 child processes (about 40 s), and the
// mutation run of the store (npm run mutation) would rerun it for every mutant; store.test.ts
// holds the rest of the store's tests.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AdapterStore } from '../src/adapter/store.js';
import { isAppError } from '../src/errors.js';
import { mulberry32 } from '../bench/synthetic-bert.js'; // seeded: the kill moments are the same on every run
import { checkVersionFiles } from './helpers/crash-put.js';

const roots: string[] = [];
after(async () => {
  for (const r of roots) await fs.rm(r, { recursive: true, force: true });
});

async function setup(): Promise<{ store: AdapterStore }> {
  const root = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'adapterhost-store-crash-')));
  roots.push(root);
  const store = new AdapterStore({ dir: path.join(root, 'store'), log: { warn: () => undefined } });
  await store.init();
  return { store };
}

const entries = async (dir: string): Promise<string[]> => (await fs.readdir(dir)).sort();
const hidden = async (dir: string): Promise<string[]> => (await entries(dir)).filter((n) => n.startsWith('.'));

test('survives SIGKILL at random moments during puts: always nothing or one whole version', async (t) => {
  const { store } = await setup();
  const dir = store.dir;
  // crash-put.js beside the compiled tests; crash-put.ts through tsx when run from source (npm run mutation).
  const helper = fileURLToPath(new URL(`./helpers/crash-put.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));
  const rand = mulberry32(0x5eed);
  let lastDone: number | null = null;
  let interrupted = 0;
  for (let run = 0; run < 15; run++) {
    const first = (run + 1) * 1000;
    const delay = 5 + Math.floor(rand() * 196);
    const done = await runAndKill(helper, [dir, 'crashy', String(first)], delay);
    if (done.length > 0) lastDone = done[done.length - 1];
    if ((await hidden(dir)).length > 0) interrupted++;

    const fresh = new AdapterStore({ dir, log: { warn: () => undefined } });
    await fresh.init();
    assert.deepEqual(await hidden(dir), [], `run ${run}: init() leaves no .tmp-/.old- dirs`);
    let got;
    try {
      got = await fresh.read('crashy');
    } catch (e) {
      assert.ok(isAppError(e, 'ADAPTER_NOT_FOUND'), `run ${run}: ${String(e)}`);
      assert.equal(lastDone, null, `run ${run}: a completed put (v${lastDone}) was lost`);
      continue;
    }
    assert.ok(got.meta, `run ${run}: sidecar present`);
    const check = checkVersionFiles(got);
    assert.ok('version' in check, `run ${run}: ${'problem' in check ? check.problem : ''}`);
    assert.ok(lastDone === null || check.version >= lastDone, `run ${run}: found v${check.version}, but v${lastDone} had completed`);
    assert.ok(check.version < first + 1000, `run ${run}: v${check.version} was never written`);
    assert.deepEqual(await entries(dir), ['crashy']);
  }
  assert.notEqual(lastDone, null, 'at least one put completed');
  t.diagnostic(`kills that left a temp/old dir for init() to clean: ${interrupted}/15`);
});

/** Starts the helper, waits for `ready`, kills it with SIGKILL after `delayMs`; returns the versions it reported done. */
function runAndKill(script: string, args: string[], delayMs: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(script.endsWith('.ts') ? ['--import', 'tsx'] : []), script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (timer === undefined && out.includes('ready\n')) timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
    });
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      if (timer === undefined) return reject(new Error(`crash-put exited before ready (code ${code}, signal ${signal})`));
      if (signal !== 'SIGKILL') return reject(new Error(`crash-put ended by itself (code ${code})`));
      resolve([...out.matchAll(/^done (\d+)$/gm)].map((m) => Number(m[1])));
    });
  });
}

