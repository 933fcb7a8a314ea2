/**
 * Start-up and pinning, end to end through the real CLI (`node dist/src/cli.js serve`): --pin
 * loads an adapter at start and keeps it under cache pressure and across a replace; a broken
 * adapter on disk is reported and skipped while the rest serve, and can be deleted; a failed
 * warm-up exits non-zero; flags win over a real environment.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { metricValue } from './helpers/http-harness.js';
import {
  assertLangServes, cacheMiB, CLI, deleteAdapter, demoFiles, GERMAN, demoMemoryBytes, MODEL_DIR, predict, putAdapter, request, ROOT, scrape, spawnServe, tempStore, TOKEN, variant,
  type ChildServer,
} from './helpers/reliability-kit.js';

const adapterInfo = async (url: string, id: string) => (await request(url, { path: `/v1/adapters/${id}` })).body;
const logLines = (c: ChildServer) => c.stdout().flatMap((l) => { try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; } });
const stop = async (c: ChildServer | null) => { if (c) { c.proc.kill('SIGKILL'); await c.exit; } };

test('--pin: loaded at start, never evicted under pressure, re-pinned after a replace; ADAPTER_TOO_LARGE at upload', async () => {
  const dir = await tempStore('pin');
  let c: ChildServer | null = null;
  try {
    // lang and es-topic fit one at a time, not together; spam and topic (over twice es-topic) never.
    const mem = await demoMemoryBytes();
    const cacheBytes = mem.lang + mem['es-topic'] / 2;
    assert.ok(mem.topic > cacheBytes && mem.lang + mem['es-topic'] > cacheBytes, 'the sizes this test relies on');
    c = await spawnServe(['--adapters-dir', dir, '--admin-token', TOKEN, '--pin', 'lang', '--cache-mb', String(cacheMiB(cacheBytes))]);
    const lang0 = await adapterInfo(c.url, 'lang');
    assert.equal(lang0.pinned, true);
    assert.equal(lang0.cached, true, 'a pinned adapter is loaded at start, before any request');
    assert.equal((await adapterInfo(c.url, 'spam')).pinned, false);
    const m0 = await scrape(c.url);
    const misses0 = metricValue(m0, 'adapterhost_adapter_cache_misses_total');
    const before = await predict(c.url, 'lang', GERMAN);
    assert.equal(before.status, 200);
    assert.equal(metricValue(await scrape(c.url), 'adapterhost_adapter_cache_misses_total'), misses0, 'the first request on a pinned adapter is no miss');

    // Pressure: a copy of lang and es-topic do not fit together, so each evicts the other.
    assert.equal((await putAdapter(c.url, 'lang-b', variant('lang', { biasShift: 0.01 }))).status, 201);
    for (let i = 0; i < 3; i++) {
      for (const id of ['lang-b', 'es-topic']) assert.equal((await predict(c.url, id, 'hello there')).status, 200, id);
    }
    const m1 = await scrape(c.url);
    assert.ok(metricValue(m1, 'adapterhost_adapter_cache_evictions_total') >= 5, 'the cache was under pressure');
    assert.equal((await adapterInfo(c.url, 'lang')).cached, true, 'lang survived the pressure');
    const missesBefore = metricValue(m1, 'adapterhost_adapter_cache_misses_total');
    assert.equal((await predict(c.url, 'lang', GERMAN)).status, 200);
    assert.equal(metricValue(await scrape(c.url), 'adapterhost_adapter_cache_misses_total'), missesBefore, 'lang is still served from memory');

    // An unpinned adapter bigger than the whole cache is refused at upload, before it is stored.
    const big = await putAdapter(c.url, 'big', demoFiles('topic'));
    assert.equal(big.status, 422, big.text);
    assert.equal(big.body.error.code, 'ADAPTER_TOO_LARGE');
    assert.match(big.body.error.message, /adapter "big" needs \d+ bytes in memory, more than the whole adapter cache/);
    assert.ok(!(await readdir(dir)).includes('big'), 'nothing stored');

    // Replacing the pinned id: even with weights bigger than the cache (pinned adapters are outside
    // its budget), it is accepted, loaded at once and pinned again.
    const r = await putAdapter(c.url, 'lang', variant('topic', { revision: 'lang-now-topic' }));
    assert.equal(r.status, 200, r.text);
    const lang1 = await adapterInfo(c.url, 'lang');
    assert.equal(lang1.pinned, true);
    assert.equal(lang1.cached, true, 're-pinned: loaded before any request');
    assert.ok(lang1.bytes_in_memory > 0.2 * 1024 * 1024, 'bigger than the cache');
    const missesAt = metricValue(await scrape(c.url), 'adapterhost_adapter_cache_misses_total');
    const after = await predict(c.url, 'lang', 'What a lovely fortune.');
    assert.equal(after.status, 200);
    const topicLabels = Object.values((JSON.parse(demoFiles('topic').config.toString('utf8')) as { id2label: Record<string, string> }).id2label).sort();
    assert.deepEqual((after.body.predictions[0] as Array<{ label: string }>).map((x) => x.label).sort(), topicLabels, 'the new version serves');
    assert.equal(metricValue(await scrape(c.url), 'adapterhost_adapter_cache_misses_total'), missesAt, 'the new version was pinned in memory, not loaded on demand');
    for (const id of ['lang-b', 'es-topic']) assert.equal((await predict(c.url, id, 'hello')).status, 200);
    assert.equal((await adapterInfo(c.url, 'lang')).cached, true);
  } finally {
    await stop(c);
    await rm(dir, { recursive: true, force: true });
  }
});

test('a broken adapter on disk: reported and skipped at start, the rest serve, and it can be deleted', async () => {
  const dir = await tempStore('broken');
  let c: ChildServer | null = null;
  try {
    // A config that is not JSON; a weights file cut inside its header.
    await mkdir(path.join(dir, 'garbled'));
    await writeFile(path.join(dir, 'garbled', 'adapter_config.json'), '{ "peft_type": "LORA", ');
    await cp(path.join(dir, 'spam', 'adapter_model.safetensors'), path.join(dir, 'garbled', 'adapter_model.safetensors'));
    await cp(path.join(dir, 'lang'), path.join(dir, 'misfit'), { recursive: true });
    await writeFile(path.join(dir, 'misfit', 'adapter_model.safetensors'), demoFiles('lang').model.subarray(0, 200));

    c = await spawnServe(['--adapters-dir', dir, '--admin-token', TOKEN]);
    const refused = logLines(c).filter((l) => l.msg === 'adapter on disk refused; skipped');
    assert.deepEqual(refused.map((l) => l.adapter).sort(), ['garbled', 'misfit']);
    for (const l of refused) assert.equal(typeof l.err, 'string');
    assert.match(String(refused.find((l) => l.adapter === 'garbled')!.err), /JSON/i);
    const scanned = logLines(c).find((l) => l.msg === 'adapter store scanned');
    assert.equal(scanned?.broken, 2);

    const list = (await request(c.url, { path: '/v1/adapters' })).body.data as Array<{ id: string }>;
    assert.ok(!list.some((a) => a.id === 'garbled' || a.id === 'misfit'), 'not listed');
    for (const id of ['garbled', 'misfit']) {
      const r = await predict(c.url, id, GERMAN);
      assert.equal(r.status, 404, r.text);
      assert.equal(r.body.error.code, 'ADAPTER_NOT_FOUND');
    }
    await assertLangServes(c.url);
    assert.equal((await predict(c.url, 'spam', 'hello')).status, 200);

    for (const id of ['garbled', 'misfit']) assert.equal((await deleteAdapter(c.url, id)).status, 204, `${id} can be deleted`);
    assert.deepEqual((await readdir(dir)).filter((n) => n === 'garbled' || n === 'misfit'), []);
    assert.equal((await deleteAdapter(c.url, 'garbled')).status, 404, 'and is gone');
    // The id is free for a good upload.
    assert.equal((await putAdapter(c.url, 'misfit', demoFiles('lang'))).status, 201);
    assert.equal((await predict(c.url, 'misfit', GERMAN)).status, 200);
  } finally {
    await stop(c);
    await rm(dir, { recursive: true, force: true });
  }
});

/** `node dist/src/cli.js serve ...` to its exit: code, log lines, stderr. */
function serveToExit(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ code: number | null; log: Array<Record<string, unknown>>; stderr: string }> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--threads', '1', ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const log: Array<Record<string, unknown>> = [];
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  createInterface({ input: proc.stdout }).on('line', (l) => { try { log.push(JSON.parse(l) as Record<string, unknown>); } catch { /* not JSON */ } });
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) => proc.once('close', (code) => { clearTimeout(timer); resolve({ code, log, stderr }); }));
}

test('a failed warm-up exits with code 1 and never reports ready', async () => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-warmup-'));
  const dir = await tempStore('warmup');
  try {
    // The manifest names a head output the graph does not have: the session loads, the warm-up run fails.
    await cp(MODEL_DIR, tmp, { recursive: true });
    const manifest = JSON.parse(await readFile(path.join(tmp, 'model.json'), 'utf8')) as { heads: Array<{ output: string }> };
    manifest.heads[0]!.output = 'no_such_output';
    await writeFile(path.join(tmp, 'model.json'), JSON.stringify(manifest));
    const r = await serveToExit(['--model-dir', tmp, '--adapters-dir', dir]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.log.some((l) => l.msg === 'warm-up inference failed; not serving' && l.level === 60), 'a fatal log line says why');
    assert.ok(!r.log.some((l) => l.msg === 'ready'), 'never ready');
  } finally {
    await rm(tmp, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }
});

test('flags win over the environment; the environment fills what flags leave out', async () => {
  const dir = await tempStore('env');
  let c: ChildServer | null = null;
  try {
    c = await spawnServe(['--adapters-dir', dir, '--max-inputs', '5'], {
      env: { ADAPTERHOST_MAX_INPUTS: '3', ADAPTERHOST_PIN: 'spam', ADAPTERHOST_ADAPTERS_DIR: '/nonexistent/adapters', ADAPTERHOST_MAX_INPUT_CHARS: '100' },
    });
    const five = await predict(c.url, 'lang', ['a', 'b', 'c', 'd', 'e']);
    assert.equal(five.status, 200, `--max-inputs 5 beats ADAPTERHOST_MAX_INPUTS=3: ${five.text}`);
    const six = await predict(c.url, 'lang', ['a', 'b', 'c', 'd', 'e', 'f']);
    assert.equal(six.body.error.code, 'TOO_MANY_INPUTS');
    assert.match(six.body.error.message, /the limit is 5/);
    assert.equal((await adapterInfo(c.url, 'spam')).pinned, true, 'ADAPTERHOST_PIN applies when no --pin is given');
    const long = await predict(c.url, 'lang', 'x'.repeat(101));
    assert.equal(long.body.error.code, 'INPUT_TOO_LONG', 'ADAPTERHOST_MAX_INPUT_CHARS applies');
    await assertLangServes(c.url); // served from --adapters-dir, not the environment's path
  } finally {
    await stop(c);
    await rm(dir, { recursive: true, force: true });
  }
});
