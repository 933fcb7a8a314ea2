/**
 * SIGTERM during 16 running streams, in a real child process (`dist/src/cli.js serve`): streams
 * whose clients read finish on their own; streams still running when the grace period nears its
 * end are cut short with a clean finish (finish_reason "length", then [DONE]); connections whose
 * clients never read their end are dropped; the process exits 0 within the grace period.
 * The streams use the tiny decoder under a very long alias, so that a client that does not read
 * pauses its sequence (see generation-kit.ts): which streams are still running at the cut is then
 * the test's choice, not the machine's speed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { shutdownTimes } from '../src/serve.js';
import { copyAdapters, MODEL_DIR, ROOT } from './helpers/http-harness.js';
import { metricSum, scrape } from './helpers/reliability-kit.js';
import { LONG_ALIAS, parseSse, rawStream, sleep, TINY_ADAPTERS, tinyWithLongAlias, waitFor } from './helpers/generation-kit.js';

const GRACE_MS = 10_000;

test('SIGTERM during 16 running streams: readers finish, the rest end with finish_reason "length" (or are dropped unread), exit 0 within the grace period', async () => {
  const enc = await copyAdapters('gen-term');
  const tiny = await tinyWithLongAlias();
  const proc = spawn(process.execPath, [path.join(ROOT, 'dist/src/cli.js'), 'serve', '--port', '0', '--threads', '1', '--log-level', 'info',
    '--model-dir', MODEL_DIR, '--adapters-dir', enc, '--model-dir', tiny, '--adapters-dir', TINY_ADAPTERS,
    '--shutdown-grace-ms', String(GRACE_MS), '--stream-stall-ms', '600000'], { cwd: ROOT, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const logs: Array<{ msg?: string; url?: string; finish?: string }> = [];
  const lines = createInterface({ input: proc.stdout! });
  lines.on('line', (line) => { try { logs.push(JSON.parse(line) as (typeof logs)[number]); } catch { /* not JSON */ } });
  const finishes = (reason: string) => logs.filter((l) => l.msg === 'generation finished' && l.finish === reason).length;
  try {
    await waitFor(() => logs.some((l) => l.msg === 'ready') || proc.exitCode !== null, 60_000, 'ready');
    const url = logs.find((l) => l.msg?.startsWith('listening'))?.url;
    assert.ok(url, `the server is listening: ${stderr}`);
    // 16 streams, none read yet: each fills its socket buffers and pauses, still running.
    const streams = Array.from({ length: 16 }, (_, i) => rawStream(url, i % 2 ? '/v1/chat/completions' : '/v1/completions', i % 2
      ? { model: LONG_ALIAS, messages: [{ role: 'user', content: `stream ${i}` }], max_tokens: 200, temperature: 0, stream: true }
      : { model: LONG_ALIAS, prompt: `stream ${i}`, max_tokens: 200, temperature: 0, stream: true }, { paused: true }));
    assert.deepEqual(await Promise.all(streams.map((s) => s.status)), Array(16).fill(200));
    await waitFor(async () => metricSum(await scrape(url), 'adapterhost_num_requests_paused') === 16, 60_000, '16 paused streams');
    assert.equal(metricSum(await scrape(url), 'adapterhost_num_requests_running'), 16);
    const readers = streams.slice(0, 6);
    const lateReaders = streams.slice(6, 12);
    const neverRead = streams.slice(12);

    const t0 = Date.now();
    proc.kill('SIGTERM');
    for (const s of readers) s.read();
    // The readers' sequences resume and end on their own; the other 10 are cut at the grace period's end.
    await waitFor(() => finishes('shutdown') >= 10, GRACE_MS + 5000, 'the cut');
    const cutAfterMs = Date.now() - t0;
    // They read a little later: their ends wait in the server's buffers meanwhile, and the drain
    // must not take a connection with unsent bytes for an idle one.
    await sleep(500);
    for (const s of lateReaders) s.read();
    const code = await exit;
    const exitAfterMs = Date.now() - t0;
    for (const s of neverRead) s.read();
    console.log(`# SIGTERM: cut after ${cutAfterMs} ms (planned ${shutdownTimes(GRACE_MS).cutMs}), exit ${code} after ${exitAfterMs} ms (grace ${GRACE_MS})`);
    assert.equal(code, 0, `exit code 0: ${stderr.slice(-2000)}`);
    // Exit code 0 also says it was within the grace period: at its end the server exits 1.

    for (const s of readers) {
      const sse = parseSse((await s.body()).raw);
      assert.ok(sse.done, 'a reader\'s stream ends with [DONE]');
      assert.ok(sse.finish === 'stop' || sse.finish === 'length', String(sse.finish));
      assert.deepEqual(sse.errors, []);
    }
    for (const s of lateReaders) {
      const sse = parseSse((await s.body()).raw);
      assert.ok(sse.done, 'a stream cut at shutdown still ends with [DONE]');
      assert.equal(sse.finish, 'length', 'cut short: finish_reason "length"');
      assert.deepEqual(sse.errors, [], 'no error chunk');
    }
    for (const s of neverRead) assert.equal((await s.body()).complete, false, 'a stream never read is dropped at the end');
    assert.equal(finishes('shutdown'), 10);
    assert.equal(finishes('stop') + finishes('length'), 6, 'the 6 readers ended on their own');
    assert.ok(logs.some((l) => l.msg === 'shut down cleanly'));
  } finally {
    proc.kill('SIGKILL');
    await rm(enc, { recursive: true, force: true });
    await rm(tiny, { recursive: true, force: true });
  }
});
