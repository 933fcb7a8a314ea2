/**
 * A seeded mixed workload over 24 adapters with a cache that holds about 6 of them and a small
 * queue, while other adapters are uploaded and deleted in the background: every 200 equals the
 * single-request answer, overload is a 429/503 (never a 500), the cache stays within its
 * budget, and the request metrics add up.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  cacheMiB, deleteAdapter, demoMemoryBytes, metricSum, predict, putAdapter, rng, scrape, sleep, startRel, TOKEN, variant, type DemoId, type RelServer,
} from './helpers/reliability-kit.js';

const TEXTS = [
  'Das ist ein schöner Tag und wir gehen heute in den Park.',
  'Win a free cruise now, click here to claim your prize!',
  'Hola, ¿cómo estás? Hoy hace muy buen tiempo.',
  'The theory of relativity changed modern physics.',
  'Il gatto dorme sul divano tutto il giorno.',
  'Can we move our meeting to Thursday afternoon?',
];
const BASES: DemoId[] = ['lang', 'spam', 'topic', 'es-topic'];
const IDS = Array.from({ length: 24 }, (_, k) => `load-${k}`);
const baseOf = (k: number) => BASES[k % 4]!;
type Pred = Array<{ label: string; score: number }>;

const QUEUE_LIMIT = 12;
const MAX_BATCH = 8;
const REQUESTS = 360;
const CONCURRENCY = 24;

let t: RelServer;
/** expected[id][text index] = the answer to a request of that one input. */
const expected = new Map<string, Pred[]>();

before(async () => {
  // Room for about 6 of the 24: one and a half copies of each of the four demo adapters.
  const mem = await demoMemoryBytes();
  t = await startRel({ adminToken: TOKEN, cacheMb: cacheMiB(1.5 * BASES.reduce((n, id) => n + mem[id], 0)), queueLimit: QUEUE_LIMIT, maxBatch: MAX_BATCH, maxWaitMs: 2 });
  // 24 distinct adapters: copies of the four demo adapters, each with its own head bias.
  for (let k = 0; k < IDS.length; k++) {
    const r = await putAdapter(t.url, IDS[k]!, variant(baseOf(k), { biasShift: 0.05 * (k + 1), revision: IDS[k]! }));
    assert.equal(r.status, 201, r.text);
  }
  for (const id of IDS) {
    const answers: Pred[] = [];
    for (const text of TEXTS) {
      const r = await predict(t.url, id, text);
      assert.equal(r.status, 200, r.text);
      answers.push(r.body.predictions[0] as Pred);
    }
    expected.set(id, answers);
  }
});
after(async () => { await t?.stop(); });

function assertSame(got: Pred, want: Pred, what: string): void {
  assert.equal(got.length, want.length, what);
  const w = new Map(want.map((x) => [x.label, x.score]));
  for (const x of got) {
    const s = w.get(x.label);
    assert.ok(s !== undefined && Math.abs(x.score - s) < 1e-5, `${what}: ${x.label} ${x.score} vs ${s}`);
  }
}

/**
 * Under cache pressure loads finish while others are pending. src/adapter/cache.ts keeps loads in
 * progress outside the LRU, so a pending load is never evicted and its waiters always get its
 * result (it once loaded through lru-cache's fetch(), whose evicted placeholders made those
 * waiters a 500; see reliability-faults.test.ts, "cache misses racing evictions and deletes").
 */

test('mixed workload over 24 adapters, cache for ~6, small queue, uploads and deletes beside it', async (ctx) => {
  const cache = t.s.services.cache;
  const maxBytes = cache.maxBytes;
  // The working set really is bigger than the cache.
  const inMemory = (await Promise.all(IDS.map(async (id) => (await (await fetch(`${t.url}/v1/adapters/${id}`)).json()) as { bytes_in_memory: number })))
    .map((a) => a.bytes_in_memory);
  const largest = Math.max(...inMemory);
  const working = inMemory.reduce((a, b) => a + b, 0);
  assert.ok(working > 3 * maxBytes, `working set ${working} B vs cache ${maxBytes} B`);

  // Watch the cache: the LRU tier never over budget; the gauge (which also counts adapters that
  // running batches still hold after eviction) within budget + what the queue can hold.
  let lruMax = 0;
  let gaugeMax = 0;
  let watching = true;
  const lruWatch = (async () => {
    while (watching) {
      lruMax = Math.max(lruMax, cache.lruBytes);
      await sleep(1);
    }
  })();
  const gaugeWatch = (async () => {
    while (watching) {
      gaugeMax = Math.max(gaugeMax, metricSum(await scrape(t.url), 'adapterhost_adapter_cache_bytes'));
      await sleep(25);
    }
  })();

  // Background: uploads and deletes of other ids, for as long as the workload runs.
  const bg: number[] = [];
  let background = true;
  const bgLoop = (async () => {
    for (let i = 0; background; i++) {
      const id = `bg-${i % 3}`;
      const put = await putAdapter(t.url, id, variant(baseOf(i), { biasShift: -0.01 * (i + 1), revision: `bg${i}` }));
      bg.push(put.status);
      if (i % 2 === 1) bg.push((await deleteAdapter(t.url, id)).status);
    }
    for (let j = 0; j < 3; j++) await deleteAdapter(t.url, `bg-${j}`);
  })();

  const before = await scrape(t.url);
  const predictsBefore = metricSum(before, 'adapterhost_http_requests_total', { route: '/v1/predict' });
  const okBefore = metricSum(before, 'adapterhost_http_requests_total', { route: '/v1/predict', status: '200' });
  const inputsBefore = metricSum(before, 'adapterhost_predictions_total');

  const random = rng(424242);
  const plan = Array.from({ length: REQUESTS }, () => {
    // Skewed towards a few hot adapters, with a long tail that keeps missing the cache.
    const k = random() < 0.5 ? Math.floor(random() * 4) : Math.floor(random() * IDS.length);
    const n = 1 + Math.floor(random() * 3);
    return { id: IDS[k]!, texts: Array.from({ length: n }, () => Math.floor(random() * TEXTS.length)) };
  });
  const statuses = new Map<number, number>();
  let okInputs = 0;
  let next = 0;
  const started = Date.now();
  const worker = async () => {
    while (next < plan.length) {
      const job = plan[next++]!;
      const r = await predict(t.url, job.id, job.texts.map((i) => TEXTS[i]!));
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status === 200) {
        okInputs += job.texts.length;
        assert.equal(r.body.adapter_id, job.id);
        assert.equal(r.body.predictions.length, job.texts.length, 'one prediction per input');
        (r.body.predictions as Pred[]).forEach((p, i) => assertSame(p, expected.get(job.id)![job.texts[i]!]!, `${job.id} / text ${job.texts[i]}`));
      } else {
        assert.ok(r.status === 429 || r.status === 503, `overload is 429/503, got ${r.status}: ${r.text}`);
        assert.ok(['QUEUE_FULL', 'NOT_READY', 'SHUTTING_DOWN'].includes(r.body.error.code), r.text);
        assert.ok(Number(r.headers['retry-after']) >= 1, 'Retry-After');
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  } finally {
    background = false;
    await bgLoop;
    watching = false;
    await Promise.all([lruWatch, gaugeWatch]);
  }
  const seconds = (Date.now() - started) / 1000;
  ctx.diagnostic(`${REQUESTS} requests in ${seconds.toFixed(1)} s: ${JSON.stringify([...statuses].sort())}; background ${JSON.stringify(bg)}`);
  ctx.diagnostic(`cache: budget ${maxBytes} B, LRU max ${lruMax} B, gauge max ${gaugeMax} B; evictions ${cache.counters.evictions}, misses ${cache.counters.misses}`);

  assert.ok((statuses.get(200) ?? 0) > REQUESTS / 4, 'most of the work was served');
  assert.ok((statuses.get(429) ?? 0) > 0, 'the small queue pushed back at least once');
  assert.ok(bg.every((s) => s === 200 || s === 201 || s === 204), `background uploads/deletes: ${bg.join(',')}`);
  assert.ok(bg.length >= 2, 'the background ran beside the workload');
  assert.ok(cache.counters.evictions > 0, 'the cache had to evict');
  assert.ok(lruMax <= maxBytes, `LRU bytes ${lruMax} > budget ${maxBytes}`);
  assert.ok(gaugeMax <= maxBytes + (QUEUE_LIMIT + MAX_BATCH) * largest, `adapterhost_adapter_cache_bytes ${gaugeMax}`);

  await sleep(50); // the request metric is recorded as each response finishes
  const afterText = await scrape(t.url);
  const sent = [...statuses.values()].reduce((a, b) => a + b, 0);
  assert.equal(sent, REQUESTS);
  assert.equal(metricSum(afterText, 'adapterhost_http_requests_total', { route: '/v1/predict' }) - predictsBefore, REQUESTS, 'predict requests counted once each');
  assert.equal(metricSum(afterText, 'adapterhost_http_requests_total', { route: '/v1/predict', status: '200' }) - okBefore, statuses.get(200) ?? 0);
  assert.equal(metricSum(afterText, 'adapterhost_predictions_total') - inputsBefore, okInputs, 'inputs predicted');
  // Still exact after the storm.
  const calm = await predict(t.url, IDS[5]!, TEXTS[2]!);
  assert.equal(calm.status, 200);
  assertSame(calm.body.predictions[0] as Pred, expected.get(IDS[5]!)![2]!, 'after the load');
});
