/** /metrics moves with the traffic: cache hits, misses, evictions, request counts, storage. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createMetrics } from '../src/metrics.js';
import { getJson, hasMetricFamily, metricValue, postJson, scrape, startTestServer, type TestServer } from './helpers/http-harness.js';

/** A labelled series is only emitted after its first observation: a "before" scrape may lack it. */
const ZERO_BEFORE = { absentIsZero: true };

describe('metrics', () => {
  let t: TestServer;
  before(async () => { t = await startTestServer(); });
  after(async () => { await t?.stop(); });

  test('exposition format, own registry, storage gauges', async () => {
    const res = await fetch(`${t.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const m = await res.text();
    assert.match(m, /# TYPE adapterhost_http_requests_total counter/);
    assert.match(m, /# TYPE process_cpu_user_seconds_total counter/, 'default metrics are collected');
    const adapters = (await getJson(`${t.url}/v1/adapters`)).body.data as Array<{ bytes_on_disk: number }>;
    const base = metricValue(m, 'adapterhost_base_model_bytes');
    assert.ok(base > 0);
    assert.equal(metricValue(m, 'adapterhost_adapters_on_disk'), adapters.length);
    assert.equal(metricValue(m, 'adapterhost_adapter_bytes_total'), adapters.reduce((s, a) => s + a.bytes_on_disk, 0));
    assert.equal(metricValue(m, 'adapterhost_full_finetune_equivalent_bytes'), base * adapters.length);
    const ratio = metricValue(m, 'adapterhost_storage_saving_ratio');
    assert.ok(Math.abs(ratio - (base * adapters.length) / (base + metricValue(m, 'adapterhost_adapter_bytes_total'))) < 1e-9);
    assert.ok(ratio > 1, 'adapters are cheaper than merged copies');
    assert.ok(metricValue(m, 'adapterhost_adapter_cache_max_bytes') > 0);
  });

  test('a request for an uncached adapter is a miss, the next one a hit', async () => {
    const m0 = await scrape(t.url);
    assert.equal((await getJson(`${t.url}/v1/adapters/topic`)).body.cached, false);
    assert.equal((await postJson(`${t.url}/v1/predict`, { adapter_id: 'topic', inputs: 'the election results' })).status, 200);
    const m1 = await scrape(t.url);
    assert.equal(metricValue(m1, 'adapterhost_adapter_cache_misses_total') - metricValue(m0, 'adapterhost_adapter_cache_misses_total'), 1);
    assert.equal(metricValue(m1, 'adapterhost_adapter_load_duration_seconds_count', { result: 'ok' }) - metricValue(m0, 'adapterhost_adapter_load_duration_seconds_count', { result: 'ok' }, ZERO_BEFORE), 1);
    assert.equal((await getJson(`${t.url}/v1/adapters/topic`)).body.cached, true);
    assert.equal((await postJson(`${t.url}/v1/predict`, { adapter_id: 'topic', inputs: 'the election results' })).status, 200);
    const m2 = await scrape(t.url);
    assert.equal(metricValue(m2, 'adapterhost_adapter_cache_hits_total') - metricValue(m1, 'adapterhost_adapter_cache_hits_total'), 1);
    assert.equal(metricValue(m2, 'adapterhost_adapter_cache_misses_total'), metricValue(m1, 'adapterhost_adapter_cache_misses_total'));
    assert.ok(metricValue(m2, 'adapterhost_adapter_cache_entries') >= 1);
    assert.ok(metricValue(m2, 'adapterhost_adapter_cache_bytes') > 0);
    assert.equal(metricValue(m2, 'adapterhost_predictions_total', { adapter: 'topic' }) - metricValue(m0, 'adapterhost_predictions_total', { adapter: 'topic' }, ZERO_BEFORE), 2);
    assert.ok(metricValue(m2, 'adapterhost_batch_rows_count') > 0);
    assert.ok(metricValue(m2, 'adapterhost_inference_duration_seconds_count') > 0);
    assert.ok(metricValue(m2, 'adapterhost_queue_wait_seconds_count') > 0);
  });

  test('requests_total counts what was sent, by route pattern (never the raw URL)', async () => {
    const m0 = await scrape(t.url);
    const key = { route: '/v1/adapters/:id', method: 'GET', status: '200' };
    const miss = { route: '/v1/adapters/:id', method: 'GET', status: '404' };
    for (let i = 0; i < 7; i++) assert.equal((await fetch(`${t.url}/v1/adapters/spam`)).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`${t.url}/v1/adapters/unknown-${i}`)).status, 404);
    for (let i = 0; i < 2; i++) await fetch(`${t.url}/no/such/path-${i}`);
    const m1 = await scrape(t.url);
    assert.equal(metricValue(m1, 'adapterhost_http_requests_total', key) - metricValue(m0, 'adapterhost_http_requests_total', key, ZERO_BEFORE), 7);
    assert.equal(metricValue(m1, 'adapterhost_http_requests_total', miss) - metricValue(m0, 'adapterhost_http_requests_total', miss, ZERO_BEFORE), 3);
    const unmatched = { route: 'unmatched', method: 'GET', status: '404' };
    assert.equal(metricValue(m1, 'adapterhost_http_requests_total', unmatched) - metricValue(m0, 'adapterhost_http_requests_total', unmatched, ZERO_BEFORE), 2);
    assert.doesNotMatch(m1, /unknown-0|path-0/, 'raw URLs never become labels');
    // Predictions for ids the registry does not hold are not labelled.
    await postJson(`${t.url}/v1/predict`, { adapter_id: 'made-up', inputs: 'x' });
    assert.doesNotMatch(await scrape(t.url), /adapter="made-up"/);
  });
});

describe('metrics with a cache that holds one adapter', () => {
  let t: TestServer;
  before(async () => {
    // Size the cache from the adapters' in-memory sizes: room for the larger of spam/lang, not both.
    const probe = await startTestServer();
    const sizes = (await getJson(`${probe.url}/v1/adapters`)).body.data as Array<{ id: string; bytes_in_memory: number }>;
    await probe.stop();
    const spam = sizes.find((a) => a.id === 'spam')!.bytes_in_memory;
    const lang = sizes.find((a) => a.id === 'lang')!.bytes_in_memory;
    const bytes = Math.max(spam, lang) + Math.min(spam, lang) / 2;
    t = await startTestServer({ cacheMb: bytes / (1024 * 1024) });
  });
  after(async () => { await t?.stop(); });

  test('alternating two adapters evicts', async () => {
    const m0 = await scrape(t.url);
    for (const id of ['spam', 'lang', 'spam', 'lang']) {
      assert.equal((await postJson(`${t.url}/v1/predict`, { adapter_id: id, inputs: 'hello there' })).status, 200);
    }
    const m1 = await scrape(t.url);
    assert.ok(metricValue(m1, 'adapterhost_adapter_cache_evictions_total') - metricValue(m0, 'adapterhost_adapter_cache_evictions_total') >= 3);
    assert.equal(metricValue(m1, 'adapterhost_adapter_cache_misses_total') - metricValue(m0, 'adapterhost_adapter_cache_misses_total'), 4);
    assert.ok(metricValue(m1, 'adapterhost_adapter_cache_bytes') <= metricValue(m1, 'adapterhost_adapter_cache_max_bytes'));
    assert.equal(metricValue(m1, 'adapterhost_adapter_cache_entries'), 1);
  });
});

test('two metrics instances in one process do not collide (no global registry)', async () => {
  const a = createMetrics();
  const b = createMetrics();
  a.observeRequest({ route: '/x', method: 'GET', status: 200, seconds: 0.01 });
  assert.equal(metricValue((await a.render()).body, 'adapterhost_http_requests_total', { route: '/x', method: 'GET', status: '200' }), 1);
  const bText = (await b.render()).body;
  assert.ok(hasMetricFamily(bText, 'adapterhost_http_requests_total'), 'b declares the counter');
  assert.throws(() => metricValue(bText, 'adapterhost_http_requests_total', { route: '/x', method: 'GET', status: '200' }), /absent/, 'b never saw the request');
  // Gauges read nothing before attach, and hooks already work.
  a.hooks.onBatch({ rows: 2, distinctAdapters: 2, queueWaits: [0.001, 0.002], runSeconds: 0.01, feedSeconds: 0.001, paddedTokens: 20, realTokens: 16 });
  const text = (await a.render()).body;
  assert.equal(metricValue(text, 'adapterhost_batch_padding_ratio_sum'), 1.25);
  assert.equal(metricValue(text, 'adapterhost_queue_depth'), 0);
  a.observeRequest({ route: '/x', method: 'BREW', status: 418, seconds: 0 });
  assert.equal(metricValue((await a.render()).body, 'adapterhost_http_requests_total', { route: '/x', method: 'OTHER', status: '418' }), 1);
});
