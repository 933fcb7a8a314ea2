/**
 * Streams under stress, through the real HTTP server with the tiny decoder: clients that stop
 * reading (their sequences pause, then are cancelled after --stream-stall-ms, while other streams
 * run), a flood past the queue, 200 streams dropped at random points, and a KV budget too small
 * for the load. After each: nothing running, waiting, reserved, held or leased.
 * Seeded: each seeded test prints its seed; `SEED=n` replays it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import OpenAI from 'openai';
import { metricSum, scrape } from './helpers/reliability-kit.js';
import {
  LONG_ALIAS, parseSse, rawStream, schedulerIdle, seeded, sleep, startGen, testSeed, TINY_MODELS, waitFor, type GenServer,
} from './helpers/generation-kit.js';

/** Everything a generation holds is back: scheduler, metrics, adapter leases, open responses. */
async function assertAllFreed(t: GenServer): Promise<void> {
  await waitFor(() => schedulerIdle(t.sched) && t.s.services.cache.leases === 0 && (t.s.state.generations?.size ?? 0) === 0, 20_000, 'everything freed');
  const m = await scrape(t.url);
  for (const name of ['adapterhost_num_requests_running', 'adapterhost_num_requests_waiting', 'adapterhost_num_requests_paused', 'adapterhost_kv_cache_bytes', 'adapterhost_kv_cache_reserved_bytes']) {
    assert.equal(metricSum(m, name), 0, name);
  }
}

const decodeRows = async (url: string) => metricSum(await scrape(url), 'adapterhost_generation_step_rows_sum', { kind: 'decode' }, { absentIsZero: true });

describe('clients that stop reading', () => {
  test('20 streams that read nothing pause (bounded buffers) while other streams run to the end; after --stream-stall-ms they are cancelled and freed', async () => {
    const t = await startGen({ streamStallMs: 3000 }, { longAlias: true });
    try {
      /** 10 reading streams at once; their parsed bodies and the wall time they took (printed, not asserted). */
      const readers = async () => {
        const t0 = performance.now();
        const out = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
          const s = rawStream(t.url, '/v1/completions', { model: TINY_MODELS[i % 3], prompt: `a reader ${i}`, max_tokens: 30, temperature: 0, stream: true, stream_options: { include_usage: true } });
          return parseSse((await s.body()).raw);
        }));
        return { out, ms: performance.now() - t0 };
      };
      await readers(); // loads the adapters
      const alone = await readers();
      const rss0 = process.memoryUsage().rss;
      const idle = Array.from({ length: 20 }, (_, i) => rawStream(t.url, '/v1/completions', { model: LONG_ALIAS, prompt: `nobody reads stream ${i}`, max_tokens: 200, temperature: 0, stream: true }, { paused: true }));
      assert.deepEqual(await Promise.all(idle.map((s) => s.status)), Array(20).fill(200));
      // Each fills the loopback socket buffers, then 64 KiB of Node's buffer: its sequence pauses.
      await waitFor(() => t.sched.stats.paused === 20, 60_000, '20 paused sequences');
      const pausedMetric = metricSum(await scrape(t.url), 'adapterhost_num_requests_paused');
      assert.ok(pausedMetric > 0, `the paused gauge shows them (${pausedMetric})`);
      // What the server buffers for them is bounded by the pause threshold (plus one chunk), not by the tokens left.
      let buffered = 0;
      for (const r of t.s.state.generations ?? []) buffered += r.writableLength;
      assert.ok(buffered <= 20 * (64 * 1024 + LONG_ALIAS.length + 1024), `server-side buffers of the idle streams: ${buffered} bytes`);
      const rss1 = process.memoryUsage().rss;
      console.log(`# 20 idle streams paused: ${buffered} bytes buffered server-side; RSS ${(rss0 / 2 ** 20).toFixed(0)} → ${(rss1 / 2 ** 20).toFixed(0)} MiB`);
      assert.ok(rss1 - rss0 < 256 * 2 ** 20, 'RSS stays bounded');

      // Other streams flow while the 20 sit out: every decode row of this phase belongs to them
      // (a paused sequence never runs), and each runs to its end.
      const rows0 = await decodeRows(t.url);
      const beside = await readers();
      const others = beside.out;
      const rows1 = await decodeRows(t.url);
      console.log(`# 10 reading streams: ${alone.ms.toFixed(0)} ms alone, ${beside.ms.toFixed(0)} ms beside the 20 paused ones`);
      assert.deepEqual(others.map((o) => o.text), alone.out.map((o) => o.text), 'the same text as without the paused streams');
      for (const o of others) {
        assert.ok(o.done, 'a reading stream ends with [DONE]');
        assert.ok(o.finish === 'stop' || o.finish === 'length', String(o.finish));
      }
      const tokens = others.reduce((a, o) => a + o.chunks[o.chunks.length - 1].usage.completion_tokens, 0);
      assert.equal(rows1 - rows0, tokens - others.length, 'decode rows in this phase = the readers\' tokens after their first (the paused sequences did not step)');
      // The idle ones stall out: cancelled (reported as "stalled"), their KV freed, their connections closed.
      await waitFor(async () => metricSum(await scrape(t.url), 'adapterhost_generation_requests_total', { reason: 'stalled' }, { absentIsZero: true }) === 20, 60_000, '20 stalled');
      // A client that reads nothing does not see its connection close until it reads again.
      for (const s of idle) s.read();
      const ends = await Promise.all(idle.map((s) => s.body()));
      assert.ok(ends.every((e) => !e.complete), 'the stalled responses were cut off, not ended');
      await assertAllFreed(t);
    } finally {
      await t.stop();
    }
  });
});

describe('a flood of streams past the queue', () => {
  test('150 streams at once: only 200 or 429 with Retry-After; every accepted stream ends with [DONE]', async () => {
    const t = await startGen({ maxRunningSeqs: 4, maxWaitingSeqs: 8 });
    const client = new OpenAI({ apiKey: 'unused', baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 120_000 });
    try {
      const results = await Promise.all(Array.from({ length: 150 }, async (_, i) => {
        const body = { model: TINY_MODELS[i % 3]!, prompt: `flood ${i}`, max_tokens: 12, temperature: 0, stream: true as const };
        if (i % 2) {
          // The SDK: a 429 is a RateLimitError carrying Retry-After; an accepted stream yields a finish reason.
          try {
            let finish: string | null = null;
            for await (const c of await client.completions.create(body)) finish = c.choices[0]?.finish_reason ?? finish;
            return { status: 200, retry: null, done: finish !== null, code: null };
          } catch (e) {
            if (!(e instanceof OpenAI.APIError)) throw e;
            return { status: e.status ?? 0, retry: e.headers?.get('retry-after') ?? null, done: false, code: e.code };
          }
        }
        const s = rawStream(t.url, '/v1/completions', body);
        const status = await s.status;
        const retry = (await s.headers)['retry-after'] ?? null;
        const { raw } = await s.body();
        if (status !== 200) return { status, retry, done: false, code: JSON.parse(raw).error.code };
        return { status, retry: null, done: parseSse(raw).done, code: null };
      }));
      const odd = results.filter((r) => r.status !== 200 && r.status !== 429);
      assert.deepEqual(odd, [], 'no status but 200 and 429');
      const refused = results.filter((r) => r.status === 429);
      console.log(`# flood: ${results.length - refused.length} accepted, ${refused.length} refused`);
      assert.ok(refused.length > 0, 'the flood overflowed the queue');
      for (const r of refused) {
        assert.equal(r.retry, '1', 'a 429 says when to retry');
        assert.equal(r.code, 'queue_full');
      }
      assert.ok(results.filter((r) => r.status === 200).every((r) => r.done), 'every accepted stream completed');
      await assertAllFreed(t);
    } finally {
      await t.stop();
    }
  });
});

describe('disconnects at random points', () => {
  test('200 streams dropped before the answer, after k chunks, or read to the end: every sequence and lease is freed', async () => {
    const seed = testSeed('random disconnects');
    const rand = seeded(seed);
    const t = await startGen({ maxRunningSeqs: 16 });
    try {
      const cancelled0 = metricSum(await scrape(t.url), 'adapterhost_generation_cancellations_total');
      const plans = Array.from({ length: 200 }, (_, i) => {
        const x = rand();
        const mode = x < 0.15 ? 'at-once' : x < 0.3 ? 'after-headers' : x < 0.8 ? 'after-chunks' : 'complete';
        return { i, mode, chunks: 1 + Math.floor(rand() * 40), delay: Math.floor(rand() * 600), model: TINY_MODELS[Math.floor(rand() * 3)]!, chat: rand() < 0.3, maxTokens: 20 + Math.floor(rand() * 200) };
      });
      const outcomes = await Promise.all(plans.map(async (p) => {
        await sleep(p.delay);
        const body = p.chat
          ? { model: p.model, messages: [{ role: 'user', content: `chat ${p.i}` }], max_tokens: p.maxTokens, temperature: 0.8, seed: p.i, stream: true }
          : { model: p.model, prompt: `stream ${p.i}`, max_tokens: p.maxTokens, temperature: 0.8, seed: p.i, stream: true };
        const s = rawStream(t.url, p.chat ? '/v1/chat/completions' : '/v1/completions', body);
        if (p.mode === 'at-once') { s.destroy(); return 'dropped'; }
        const status = await s.status.catch(() => 0);
        if (p.mode === 'after-headers') { s.destroy(); return 'dropped'; }
        if (p.mode === 'after-chunks') {
          let ended = false;
          void s.body().then(() => { ended = true; });
          await waitFor(() => ended || s.received() >= p.chunks, 60_000, `stream ${p.i}: ${p.chunks} chunks`);
          s.destroy();
          return 'dropped';
        }
        const sse = parseSse((await s.body()).raw);
        assert.equal(status, 200);
        assert.ok(sse.done && sse.finish !== null, `a complete stream ends with a finish reason and [DONE] (stream ${p.i})`);
        return 'complete';
      }));
      await assertAllFreed(t);
      const cancelled = metricSum(await scrape(t.url), 'adapterhost_generation_cancellations_total') - cancelled0;
      console.log(`# disconnects: ${outcomes.filter((o) => o === 'complete').length} complete, ${outcomes.filter((o) => o === 'dropped').length} dropped, ${cancelled} sequences cancelled`);
      assert.ok(cancelled > 0, 'some drops cancelled running sequences');
      // The server still serves, with the same answer as before the storm.
      const r = await fetch(`${t.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-all', prompt: 'after the storm', max_tokens: 5, temperature: 0 }) });
      assert.equal(r.status, 200);
    } finally {
      await t.stop();
    }
  });
});

describe('a KV budget too small for the load', () => {
  test('admission waits for budget (never exceeded, never exhausted mid-generation), a request that can never fit is a 400 naming both numbers, no 500', async () => {
    const seed = testSeed('kv budget');
    const rand = seeded(seed);
    // 0.05 MB: 204 tokens of the tiny decoder's KV, less than one whole context (256 tokens).
    const t = await startGen({ kvCacheMb: 0.05, maxRunningSeqs: 32 });
    try {
      const budget = t.sched.stats.kvBudgetBytes;
      const full = t.sched.reserveFor(256);
      assert.ok(full > budget, 'a whole context does not fit the budget');
      let maxReserved = 0;
      let maxHeld = 0;
      let maxWaiting = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const s = t.sched.stats;
          maxReserved = Math.max(maxReserved, s.kvReservedBytes);
          maxHeld = Math.max(maxHeld, s.kvBytes);
          maxWaiting = Math.max(maxWaiting, s.waiting);
          await sleep(1);
        }
      })();
      const errors0 = metricSum(await scrape(t.url), 'adapterhost_generation_requests_total', { reason: 'error' }, { absentIsZero: true });
      const results = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
        // Most ask for 20–120 tokens; some leave max_tokens out (they reserve the whole context: never fits).
        const maxTokens = rand() < 0.15 ? undefined : 20 + Math.floor(rand() * 100);
        const s = rawStream(t.url, '/v1/completions', { model: TINY_MODELS[i % 3], prompt: `budget ${i}`, temperature: 0.7, seed: i, stream: true, ...(maxTokens ? { max_tokens: maxTokens } : {}) });
        const status = await s.status;
        const { raw } = await s.body();
        return { status, maxTokens, raw };
      }));
      sampling = false;
      await sampler;
      for (const r of results) {
        if (r.maxTokens === undefined) {
          assert.equal(r.status, 400, r.raw.slice(0, 200));
          assert.match(JSON.parse(r.raw).error.message, new RegExp(`needs ${full} bytes of KV cache; the whole budget is ${budget} bytes`));
          continue;
        }
        assert.equal(r.status, 200, r.raw.slice(0, 200));
        const sse = parseSse(r.raw);
        assert.ok(sse.done, '[DONE]');
        assert.deepEqual(sse.errors, [], 'no error chunk');
        assert.ok(sse.finish === 'stop' || sse.finish === 'length', String(sse.finish));
      }
      console.log(`# kv budget ${budget} B: max reserved ${maxReserved} B, max held ${maxHeld} B, max waiting ${maxWaiting}`);
      assert.ok(maxReserved <= budget, 'reservations never exceed the budget');
      assert.ok(maxHeld <= budget, 'the caches held never exceed the budget');
      assert.ok(maxWaiting > 0, 'the budget made requests wait');
      assert.equal(metricSum(await scrape(t.url), 'adapterhost_generation_requests_total', { reason: 'error' }, { absentIsZero: true }), errors0, 'no sequence failed');
      await assertAllFreed(t);
    } finally {
      await t.stop();
    }
  });
});
