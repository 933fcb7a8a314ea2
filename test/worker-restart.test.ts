/**
 * Self-healing (issue 14): when the inference worker dies, /readyz answers 503 at once, requests
 * that were in it get 503 WORKER_RESTARTING (retryable, Retry-After), the worker restarts with
 * the model loaded again and readiness returns; repeated crashes back off (exponential, capped)
 * and are counted in metrics; /healthz answers throughout; no request gets a 500.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino, type Logger } from 'pino';
import { restartDelay } from '../src/runtime/engine.js';
import { getJson, metricValue, postJson, scrape, startTestServer } from './helpers/http-harness.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(2);
  }
}

interface LogLine { level: number; msg: string; component?: string; status?: number; restartInMs?: number; crashes?: number }

function capture(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { lines, log: pino({ level: 'info' }, { write: (l: string) => { lines.push(JSON.parse(l) as LogLine); } }) };
}

test('restartDelay: doubles per crash in a row, capped', () => {
  const p = { firstDelayMs: 100, maxDelayMs: 1000 };
  assert.deepEqual([1, 2, 3, 4, 5, 6, 20].map((n) => restartDelay(n, p)), [100, 200, 400, 800, 1000, 1000, 1000]);
});

test('the worker dies under load: readyz 503 at once, in-flight requests 503 (never 500), healthz up, then it heals', async (ctx) => {
  const { log, lines } = capture();
  const t = await startTestServer({ workerRestartMs: 300, maxWaitMs: 0, maxBatch: 8 }, { log });
  const { engine } = t.s.services;
  const text = 'Win a free cruise now, click here to claim your prize!';
  try {
    const expected = await postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: text });
    assert.equal(expected.status, 200);

    const results: Array<{ status: number; code?: string; retryAfter: string | null }> = [];
    const healthz: number[] = [];
    let stop = false;
    const client = async () => {
      while (!stop) {
        const r = await postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: text });
        results.push({ status: r.status, code: r.body?.error?.code, retryAfter: r.headers.get('retry-after') });
        if (r.status !== 200) await sleep(5);
      }
    };
    const prober = async () => {
      while (!stop) {
        healthz.push((await fetch(`${t.url}/healthz`)).status);
        await sleep(10);
      }
    };
    const load = [...Array.from({ length: 6 }, client), prober()];
    await waitFor(() => results.filter((r) => r.status === 200).length >= 10, 30_000, 'load running');

    // Dies at the start of its next run: that batch is in the worker when it goes.
    engine.crashForTest('exit', 'next-run');
    await waitFor(() => !engine.up, 10_000, 'the engine notices the death');
    const readyDown = await getJson(`${t.url}/readyz`);
    assert.equal(readyDown.status, 503, 'readyz is 503 as soon as the worker is gone');
    assert.equal(readyDown.body.error.code, 'WORKER_RESTARTING');
    assert.ok(Number(readyDown.headers.get('retry-after')) >= 1);
    const downAt = results.length;

    await waitFor(async () => (await getJson(`${t.url}/readyz`)).status === 200, 60_000, 'readiness returns');
    const upAt = results.length;
    await waitFor(() => results.slice(upAt).filter((r) => r.status === 200).length >= 10, 30_000, 'serving again');
    stop = true;
    await Promise.all(load);

    const statuses = new Map<number, number>();
    for (const r of results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    ctx.diagnostic(`predict statuses ${JSON.stringify([...statuses])}; ${healthz.length} healthz probes`);
    assert.deepEqual([...statuses.keys()].filter((s) => s !== 200 && s !== 503), [], 'only 200 and 503');
    const unavailable = results.filter((r) => r.status === 503);
    assert.ok(unavailable.length >= 1, 'the batch in the dying worker got 503');
    for (const r of unavailable) {
      assert.equal(r.code, 'WORKER_RESTARTING');
      assert.ok(Number(r.retryAfter) >= 1, 'retryable: Retry-After');
    }
    assert.ok(results.slice(0, downAt).some((r) => r.status === 200));
    assert.ok(healthz.length > 0 && healthz.every((s) => s === 200), 'healthz answered 200 throughout');

    // The restarted worker has the model loaded: the same answer as before the crash.
    const after = await postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: text });
    assert.equal(after.status, 200);
    assert.deepEqual(after.body.predictions[0].map((p: { label: string }) => p.label), expected.body.predictions[0].map((p: { label: string }) => p.label));
    assert.ok(Math.abs(after.body.predictions[0][0].score - expected.body.predictions[0][0].score) < 1e-5);

    const m = await scrape(t.url);
    assert.equal(metricValue(m, 'adapterhost_worker_crashes_total'), 1);
    assert.equal(metricValue(m, 'adapterhost_worker_restarts_total'), 1);
    assert.equal(metricValue(m, 'adapterhost_worker_up'), 1);
    // No 500 was ever counted (that series is never emitted); the 200 series proves the labels are spelled right.
    assert.ok(metricValue(m, 'adapterhost_http_requests_total', { route: '/v1/predict', method: 'POST', status: '200' }) >= 2);
    assert.equal(metricValue(m, 'adapterhost_http_requests_total', { route: '/v1/predict', method: 'POST', status: '500' }, { absentIsZero: true }), 0);

    // The crash is one error line; the 503s it causes are warnings, not errors.
    const errors = lines.filter((l) => l.level >= 50);
    assert.deepEqual(errors.map((l) => l.msg), ['inference worker died; restarting it']);
    assert.ok(lines.some((l) => l.level === 40 && l.status === 503), '503s logged at warn');
  } finally {
    await t.stop();
  }
});

test('repeated crashes back off exponentially up to the cap, each counted; readiness returns every time', async () => {
  const { log, lines } = capture();
  const t = await startTestServer({ workerRestartMs: 50, workerRestartMaxMs: 200 }, { log });
  const { engine } = t.s.services;
  try {
    const hows = ['exit', 'throw', 'exit', 'throw', 'exit'] as const;
    for (const how of hows) {
      engine.crashForTest(how, 'now');
      await waitFor(() => !engine.up, 10_000, `the engine notices the death (${how})`);
      assert.equal((await getJson(`${t.url}/readyz`)).status, 503);
      await waitFor(() => engine.up, 60_000, 'restarted');
      assert.equal((await getJson(`${t.url}/readyz`)).status, 200);
    }
    const delays = lines.filter((l) => l.msg === 'inference worker died; restarting it').map((l) => l.restartInMs);
    assert.deepEqual(delays, [50, 100, 200, 200, 200]);
    const m = await scrape(t.url);
    assert.equal(metricValue(m, 'adapterhost_worker_crashes_total'), hows.length);
    assert.equal(metricValue(m, 'adapterhost_worker_restarts_total'), hows.length);
    assert.equal((await postJson(`${t.url}/v1/predict`, { adapter_id: 'lang', inputs: 'Das Leben ist schön.' })).status, 200);
  } finally {
    await t.stop();
  }
});
