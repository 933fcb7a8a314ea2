/**
 * The web console's pure logic, in node: reading Prometheus text (a real scrape of the real
 * server too), rates and latency quantiles between two scrapes, the savings sentence, SSE framing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatBytes, formatRatio, savings, savingsSentence } from '../web/src/format.js';
import { histogramQuantile, livePoint, requestsPerAdapter, type Scrape } from '../web/src/live.js';
import { parseLine, parseMetrics, sum } from '../web/src/prom.js';
import { SseParser } from '../web/src/sse.js';
import { getJson, postJson, rawRequest, scrape, startTestServer } from './helpers/http-harness.js';
import express from 'express';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { consoleRoutes } from '../src/http/routes-console.js';
import { errorHandler, routeNotFound } from '../src/http/errors.js';

describe('Prometheus text', () => {
  test('samples, labels with escapes, special values; comments and junk skipped', () => {
    assert.deepEqual(parseLine('a_total 3'), { name: 'a_total', labels: {}, value: 3 });
    assert.deepEqual(parseLine('b{route="/v1/predict",method="POST"} 1.5e3 1700000000'), { name: 'b', labels: { route: '/v1/predict', method: 'POST' }, value: 1500 });
    assert.deepEqual(parseLine('c{x="a\\"b\\\\c\\nd",y="{,}"} 1'), { name: 'c', labels: { x: 'a"b\\c\nd', y: '{,}' }, value: 1 });
    assert.equal(parseLine('d{le="+Inf"} +Inf')?.value, Infinity);
    assert.ok(Number.isNaN(parseLine('e NaN')!.value));
    for (const junk of ['', '# HELP a x', '# TYPE a counter', 'novalue', 'f{x="unterminated} 1', 'g notanumber']) assert.equal(parseLine(junk), null, junk);
  });

  test('a real scrape: the per-adapter request counter follows predict and embeddings requests', async () => {
    const t = await startTestServer();
    try {
      await postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: ['one', 'two'] });
      await postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: 'three' });
      await postJson(`${t.url}/v1/embeddings`, { model: 'lang', input: 'x' });
      await postJson(`${t.url}/v1/embeddings`, { model: 'adapterhost-demo-bert', input: 'x' });
      const samples = parseMetrics(await scrape(t.url));
      const served = requestsPerAdapter(samples);
      assert.equal(served.get('spam'), 2, 'requests, not inputs');
      assert.equal(served.get('lang'), 1);
      assert.equal(served.size, 2, `only adapters are labelled: ${[...served.keys()].join(', ')}`);
      assert.equal(sum(samples, 'adapterhost_predictions_total', (l) => l.adapter === 'spam'), 3, 'inputs are counted apart');
      assert.equal(sum(samples, 'adapterhost_http_requests_total', (l) => l.route === '/v1/predict'), 2);
    } finally {
      await t.stop();
    }
  });
});

describe('live numbers between two scrapes', () => {
  const scrapeAt = (t: number, text: string): Scrape => ({ t, samples: parseMetrics(text) });
  const histogram = (route: string, counts: number[]) => {
    const les = ['0.01', '0.1', '1', '+Inf'];
    return les.map((le, i) => `adapterhost_http_request_duration_seconds_bucket{le="${le}",route="${route}"} ${counts[i]}`).join('\n');
  };

  test('histogramQuantile interpolates inside the bucket, as PromQL does', () => {
    const b = [{ le: 0.01, count: 0 }, { le: 0.1, count: 10 }, { le: 1, count: 20 }, { le: Infinity, count: 20 }];
    assert.equal(histogramQuantile(0.5, b), 0.1);
    assert.ok(Math.abs(histogramQuantile(0.25, b)! - 0.055) < 1e-12);
    assert.ok(Math.abs(histogramQuantile(0.99, b)! - (0.1 + 0.9 * 0.98)) < 1e-12);
    assert.equal(histogramQuantile(0.5, [{ le: 1, count: 0 }, { le: Infinity, count: 0 }]), null);
    assert.equal(histogramQuantile(0.99, [{ le: 1, count: 1 }, { le: Infinity, count: 5 }]), 1, 'the +Inf bucket answers the largest finite bound');
  });

  test('rates, quantiles of the interval only, cache hit rate, gauges; the console\'s own routes are not counted', () => {
    const a = scrapeAt(10_000, [
      'adapterhost_http_requests_total{route="/v1/predict",method="POST",status="200"} 100',
      'adapterhost_http_requests_total{route="/metrics",method="GET",status="200"} 50',
      histogram('/v1/predict', [100, 100, 100, 100]),
      histogram('/metrics', [50, 50, 50, 50]),
      'adapterhost_time_to_first_token_seconds_count 3',
      'adapterhost_inter_token_latency_seconds_count 30',
      'adapterhost_adapter_cache_hits_total 10',
      'adapterhost_adapter_cache_misses_total 5',
    ].join('\n'));
    const b = scrapeAt(12_000, [
      'adapterhost_http_requests_total{route="/v1/predict",method="POST",status="200"} 108',
      'adapterhost_http_requests_total{route="/v1/chat/completions",method="POST",status="200"} 2',
      'adapterhost_http_requests_total{route="/metrics",method="GET",status="200"} 90',
      histogram('/v1/predict', [100, 104, 108, 108]),
      histogram('/v1/chat/completions', [0, 0, 2, 2]),
      histogram('/metrics', [90, 90, 90, 90]),
      'adapterhost_time_to_first_token_seconds_count 4',
      'adapterhost_inter_token_latency_seconds_count 69',
      'adapterhost_adapter_cache_hits_total 13',
      'adapterhost_adapter_cache_misses_total 6',
      'adapterhost_queue_depth 7',
      'adapterhost_num_requests_running 2',
      'adapterhost_num_requests_waiting 1',
      'adapterhost_kv_cache_usage_perc 0.25',
      'adapterhost_kv_cache_budget_bytes 1000',
    ].join('\n'));
    const p = livePoint(a, b);
    assert.equal(p.t, 12);
    assert.equal(p.requestsPerS, 5, '10 inference requests in 2 s; /metrics polls are not counted');
    assert.equal(p.tokensPerS, 20, '40 tokens in 2 s');
    // In the interval: 4 requests ≤ 0.1 s, 6 in (0.1, 1]. The earlier 100 fast ones do not count.
    assert.ok(Math.abs(p.p50Ms! - (100 + 900 * (1 / 6)) ) < 1e-9, `p50 ${p.p50Ms}`);
    assert.ok(Math.abs(p.p99Ms! - (100 + 900 * (5.9 / 6))) < 1e-9, `p99 ${p.p99Ms}`);
    assert.equal(p.cacheHitPct, 75);
    assert.deepEqual([p.queueDepth, p.running, p.waiting, p.kvPct], [7, 2, 1, 25]);
  });

  test('no traffic reads as nothing to say, and a restarted server (counters went down) as unknown', () => {
    const a = scrapeAt(0, `adapterhost_http_requests_total{route="/v1/predict",method="POST",status="200"} 5\n${histogram('/v1/predict', [5, 5, 5, 5])}`);
    const same = livePoint(a, { ...a, t: 2000 });
    assert.deepEqual([same.requestsPerS, same.p50Ms, same.p99Ms, same.cacheHitPct, same.kvPct], [0, null, null, null, null]);
    const restarted = livePoint(a, scrapeAt(2000, `adapterhost_http_requests_total{route="/v1/predict",method="POST",status="200"} 1\n${histogram('/v1/predict', [1, 1, 1, 1])}`));
    assert.deepEqual([restarted.requestsPerS, restarted.p50Ms], [null, null]);
  });
});

describe('savings and formats', () => {
  test('the saving in words and numbers', () => {
    const s = savings(1_000_000, [10_000, 20_000, 30_000, 40_000]);
    assert.deepEqual(s, { count: 4, fullCopiesBytes: 4_000_000, sharedBytes: 1_100_000, ratio: 4_000_000 / 1_100_000 });
    assert.equal(savingsSentence(s), '4 adapters: 1.1 MB instead of 4.0 MB for 4 merged copies, 3.6× less storage (73 % saved).');
    assert.match(savingsSentence(savings(1_000_000, Array(1000).fill(1000))), /^1,000 adapters: 2\.0 MB instead of 1\.0 GB for 1,000 merged copies, 500× less storage \(99\.8 % saved\)\.$/);
    assert.match(savingsSentence(savings(1_000_000, [5_000])), /no saving with a single adapter/);
    assert.equal(savingsSentence(savings(1_000_000, [])), 'No adapters yet: the base alone.');
  });

  test('bytes and ratios', () => {
    assert.equal(formatBytes(945_287), '945 kB');
    assert.equal(formatBytes(35_885_839), '35.9 MB');
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatRatio(0.0263), '0.0263 (38× smaller)');
    assert.equal(formatRatio(0), '–');
  });
});

describe('SSE framing', () => {
  test('events split anywhere, CRLF, multi-line data, [DONE]', () => {
    const p = new SseParser();
    const wire = 'data: {"a":1}\r\n\r\ndata: {"b":\ndata: 2}\n\n: comment\n\ndata: [DONE]\n\n';
    const out: string[] = [];
    for (let i = 0; i < wire.length; i += 3) out.push(...p.push(wire.slice(i, i + 3)));
    assert.deepEqual(out, ['{"a":1}', '{"b":\n2}', '[DONE]']);
  });
});

describe('console routes', () => {
  /** The console routes alone over `dir`, with the app's 404 and error handler. */
  async function serve(dir: string): Promise<{ url: string; close(): Promise<void> }> {
    const app = express();
    app.use(consoleRoutes(dir));
    app.use(routeNotFound());
    app.use(errorHandler());
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { url, close: () => new Promise((r) => server.close(() => r())) };
  }

  test('without a built console, / is a 404 that says how to build it', async () => {
    const s = await serve(path.join(os.tmpdir(), 'adapterhost-no-console-here'));
    try {
      const r = await getJson(`${s.url}/`);
      assert.equal(r.status, 404);
      assert.equal(r.body.error.code, 'ROUTE_NOT_FOUND');
      assert.match(r.body.error.message, /npm run build/);
    } finally {
      await s.close();
    }
  });

  test('only the files of the folder, by name: no index.html under /console, no traversal, no unknown types', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-console-files-'));
    await writeFile(path.join(dir, 'index.html'), '<!doctype html><title>t</title>');
    await writeFile(path.join(dir, 'app-ABCDEFGH.js'), 'export {};');
    await writeFile(path.join(dir, 'notes.txt'), 'not served');
    const s = await serve(dir);
    try {
      assert.equal((await rawRequest(`${s.url}/`, { method: 'GET' })).status, 200);
      const js = await rawRequest(`${s.url}/console/app-ABCDEFGH.js`, { method: 'GET' });
      assert.equal(js.status, 200);
      assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
      assert.equal(js.headers['cache-control'], 'public, max-age=31536000, immutable');
      assert.match(String(js.headers['content-security-policy']), /^default-src 'none'/);
      for (const p of ['/console/index.html', '/console/notes.txt', '/console/..%2Fapp-ABCDEFGH.js', '/console/%2E%2E%2Fpackage.json', '/console/']) {
        assert.equal((await rawRequest(`${s.url}${p}`, { method: 'GET' })).status, 404, p);
      }
    } finally {
      await s.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
