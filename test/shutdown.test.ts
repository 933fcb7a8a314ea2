/** Readiness and graceful shutdown: in-process (state, drain) and a real child process (SIGTERM). */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { ENGINE_GATE_ENV, ENGINE_GATE_MARK } from './helpers/engine-gate.js';
import { copyAdapters, deferred, getJson, MODEL_DIR, metricValue, postJson, ROOT, scrape, startTestServer } from './helpers/http-harness.js';

test('readyz: 503 NOT_READY until warm-up passes, then 200; healthz 200 throughout', async () => {
  const gate = deferred();
  const t = await startTestServer({}, { beforeWarmup: () => gate.promise, waitReady: false });
  try {
    const early = await getJson(`${t.url}/readyz`);
    assert.equal(early.status, 503);
    assert.equal(early.body.error.code, 'NOT_READY');
    assert.equal((await getJson(`${t.url}/healthz`)).body.status, 'ok');
    gate.resolve();
    await t.s.ready;
    const ready = await getJson(`${t.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { status: 'ready' });
  } finally {
    gate.resolve();
    await t.stop();
  }
});

test('drain: in-flight requests finish; readyz and new work get 503 SHUTTING_DOWN', async () => {
  const t = await startTestServer({ maxWaitMs: 0, maxBatch: 64 });
  // A gated engine: the first batch is held in the engine until the gate opens, so the others
  // wait in the batcher behind it, however slow the machine (no timing involved).
  const engine = t.s.services.engine;
  const run = engine.run.bind(engine);
  const gate = deferred();
  let held = 0;
  engine.run = async (batch) => { held++; await gate.promise; return run(batch); };
  // A second listener on the same app: still reachable after the main one stops accepting.
  const side = http.createServer(t.s.app);
  await new Promise<void>((r) => side.listen(0, '127.0.0.1', () => r()));
  const sideUrl = `http://127.0.0.1:${(side.address() as AddressInfo).port}`;
  try {
    const inflight = Array.from({ length: 5 }, (_, i) => postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: `message number ${i}` }));
    await waitFor(() => held === 1 && t.s.services.batcher.queuedRows >= 4);
    const closing = t.s.close();
    assert.equal(t.s.state.draining, true);
    const readyz = await getJson(`${sideUrl}/readyz`);
    assert.equal(readyz.status, 503);
    assert.equal(readyz.body.error.code, 'SHUTTING_DOWN');
    assert.equal((await getJson(`${sideUrl}/healthz`)).status, 200);
    const late = await postJson(`${sideUrl}/v1/predict`, { adapter_id: 'spam', inputs: 'too late' });
    assert.equal(late.status, 503);
    assert.equal(late.body.error.code, 'SHUTTING_DOWN');
    let closed = false;
    void closing.then(() => { closed = true; });
    await new Promise((r) => setImmediate(r));
    assert.equal(closed, false, 'close waits for the work in flight');
    gate.resolve();
    for (const r of await Promise.all(inflight)) assert.equal(r.status, 200);
    assert.ok(held >= 2, 'the queued rows ran after the held batch');
    await closing;
  } finally {
    gate.resolve();
    side.close();
    await t.stop();
  }
});

/** Polls until `cond` holds; fails after `ms`. */
async function waitFor(cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Child { proc: ChildProcess; url: string; exit: Promise<number | null>; dir: string; stderr(): string }

/**
 * The real CLI with the engine gate preloaded (test/helpers/engine-gate.ts): after the warm-up,
 * every inference run waits until `gateFile` exists, so work stays in flight as long as a test
 * needs, on any machine.
 */
async function spawnServer(args: string[], gateFile: string): Promise<Child> {
  const dir = await copyAdapters();
  const preload = pathToFileURL(path.join(ROOT, 'dist', 'test', 'helpers', 'engine-gate.js')).href;
  const proc = spawn(process.execPath, ['--import', preload, path.join(ROOT, 'dist/src/cli.js'), 'serve', '--port', '0', '--model-dir', MODEL_DIR, '--adapters-dir', dir, '--threads', '1', '--log-level', 'info', ...args], {
    cwd: ROOT, env: { PATH: process.env.PATH ?? '', [ENGINE_GATE_ENV]: gateFile }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const lines = createInterface({ input: proc.stdout! });
  let ready = false;
  const url = await new Promise<string>((resolve, reject) => {
    let found: string | null = null;
    lines.on('line', (line) => {
      let o: { url?: string; msg?: string };
      try { o = JSON.parse(line) as typeof o; } catch { return; }
      if (o.url && o.msg?.startsWith('listening')) found = o.url;
      if (o.msg === 'ready' && found) { ready = true; resolve(found); }
    });
    void exit.then((code) => { if (!ready) reject(new Error(`server exited (${code}) before it was ready: ${stderr}`)); });
  });
  return { proc, url, exit, dir, stderr: () => stderr };
}

/** Rows of the batch the gate holds, once one is held. */
const heldRows = (c: Child): number | null => {
  const m = new RegExp(`${ENGINE_GATE_MARK}rows=(\\d+)`).exec(c.stderr());
  return m ? Number(m[1]) : null;
};

test('SIGTERM with 20 requests in flight: all answered, readyz unavailable, exit code 0', async () => {
  const gateFile = path.join(os.tmpdir(), `adapterhost-engine-gate-${process.pid}-a`);
  const c = await spawnServer(['--max-wait-ms', '0', '--max-batch', '64'], gateFile);
  try {
    const inflight = Array.from({ length: 20 }, (_, i) => postJson(`${c.url}/v1/predict`, { adapter_id: i % 2 ? 'spam' : 'lang', inputs: `request ${i}` }));
    // The server holds all 20: one batch in the (held) engine, the rest queued behind it.
    await waitFor(async () => {
      const n = heldRows(c);
      return n !== null && metricValue(await scrape(c.url), 'adapterhost_queue_depth') >= 20 - n;
    });
    c.proc.kill('SIGTERM');
    await waitFor(async () => (await fetch(`${c.url}/readyz`).then((r) => r.status, () => 'refused')) !== 200);
    const readyz = await fetch(`${c.url}/readyz`).then((r) => r.status, () => 'refused');
    assert.ok(readyz === 503 || readyz === 'refused', `readyz after SIGTERM: ${readyz}`);
    let exited = false;
    void c.exit.then(() => { exited = true; });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(exited, false, 'the process waits for the held work');
    await writeFile(gateFile, '');
    const results = await Promise.all(inflight);
    assert.deepEqual(results.map((r) => r.status), Array(20).fill(200));
    for (const r of results) assert.equal(r.body.predictions.length, 1);
    assert.equal(await c.exit, 0);
  } finally {
    c.proc.kill('SIGKILL');
    await rm(c.dir, { recursive: true, force: true });
    await rm(gateFile, { force: true });
  }
});

test('SIGTERM: work that outlasts --shutdown-grace-ms ends the process with code 1', async () => {
  const gateFile = path.join(os.tmpdir(), `adapterhost-engine-gate-${process.pid}-b`); // never created: the run is held for good
  const c = await spawnServer(['--max-wait-ms', '0', '--max-batch', '64', '--shutdown-grace-ms', '200'], gateFile);
  try {
    const stuck = postJson(`${c.url}/v1/predict`, { adapter_id: 'spam', inputs: 'slow' }).catch(() => null);
    await waitFor(() => heldRows(c) === 1);
    c.proc.kill('SIGTERM');
    assert.equal(await c.exit, 1);
    await stuck;
  } finally {
    c.proc.kill('SIGKILL');
    await rm(c.dir, { recursive: true, force: true });
  }
});

test('invalid configuration: every problem printed, exit code 2', async () => {
  const proc = spawn(process.execPath, [path.join(ROOT, 'dist/src/cli.js'), 'serve', '--port', 'abc', '--max-batch', '0'], { cwd: ROOT, env: { PATH: process.env.PATH ?? '' } });
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const code = await new Promise<number | null>((r) => proc.once('exit', r));
  assert.equal(code, 2);
  assert.match(stderr, /--port/);
  assert.match(stderr, /--max-batch/);
});
