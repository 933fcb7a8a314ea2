/**
 * Issue 14 item 4: request bodies full of long texts (within every cap) must not stall the HTTP
 * thread. /healthz is probed from another thread every 10 ms while 1 MB predict bodies run.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { percentileOf, startHealthzProbe } from '../bench/healthz-probe.js';
import { startTestServer, type TestServer } from './helpers/http-harness.js';

/**
 * Loose on purpose (the target is 50 ms; CI shares 2 cores with other work): before the
 * fix, one of these bodies held the event loop for 0.6–2.7 s and the p99 was 0.8–2.6 s.
 */
const P99_BOUND_MS = 300;

const SENTENCE = 'The committee will vote on the new budget tomorrow and everyone is invited. ';
/** 64 × 16,000 characters ≈ 1 MB: under --max-body-kb 1024, --max-inputs 64, --max-input-chars 20000. */
const NATURAL = SENTENCE.repeat(Math.ceil(16_000 / SENTENCE.length)).slice(0, 16_000);
/** Few tokens, many characters: fits the token cap, so it must be tokenized whole (only the thread helps). */
const PADDED = `Roses are red, violets are blue.${' '.repeat(16_000)}`.slice(0, 16_000);

function body(text: string, truncate: boolean): string {
  return JSON.stringify({ adapter_id: 'spam', inputs: Array.from({ length: 64 }, () => text), truncate });
}

async function underLoad(t: TestServer, bodies: string[]): Promise<{ statuses: number[]; p99: number; max: number; n: number }> {
  const probe = startHealthzProbe({ url: t.url, intervalMs: 10 });
  await new Promise((r) => setTimeout(r, 100));
  const statuses = await Promise.all(bodies.map((b) => fetch(`${t.url}/v1/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: b }).then(async (r) => { await r.arrayBuffer(); return r.status; })));
  const { latencies, failures } = await probe.stop();
  assert.equal(failures, 0, 'every /healthz probe answered 200');
  return { statuses, p99: percentileOf(latencies, 99), max: Math.max(...latencies), n: latencies.length };
}

describe('long inputs do not stall the HTTP thread', () => {
  let t: TestServer;
  before(async () => { t = await startTestServer({ maxWaitMs: 0 }); });
  after(async () => { await t?.stop(); });

  test('1 MB bodies of inputs that fit the token cap (tokenized whole, off the HTTP thread): /healthz p99 stays low', async (ctx) => {
    const b = body(PADDED, false);
    assert.ok(Buffer.byteLength(b) < 1024 * 1024);
    const thread0 = t.s.services.encoder.counters.thread;
    const r = await underLoad(t, [b, b, b, b]);
    assert.deepEqual(r.statuses, [200, 200, 200, 200]);
    assert.equal(t.s.services.encoder.counters.thread, thread0 + 4, 'tokenized in the tokenizer thread');
    ctx.diagnostic(`/healthz p99 ${r.p99.toFixed(1)} ms, max ${r.max.toFixed(1)} ms over ${r.n} probes`);
    assert.ok(r.p99 < P99_BOUND_MS, `/healthz p99 ${r.p99.toFixed(1)} ms (max ${r.max.toFixed(1)} ms, ${r.n} probes)`);
  });

  test('1 MB bodies of long natural text with truncate: only what the cap uses is tokenized; /healthz p99 stays low', async (ctx) => {
    const b = body(NATURAL, true);
    const c0 = { ...t.s.services.encoder.counters };
    const r = await underLoad(t, [b]);
    assert.deepEqual(r.statuses, [200]);
    const chars = t.s.services.encoder.counters.threadChars - c0.threadChars;
    // 64 inputs, each cut to a prefix of ~128 × 6 characters instead of 16,000.
    assert.ok(chars <= 64 * 128 * 6, `tokenized ${chars} characters of ${64 * 16_000}`);
    ctx.diagnostic(`/healthz p99 ${r.p99.toFixed(1)} ms, max ${r.max.toFixed(1)} ms over ${r.n} probes`);
    assert.ok(r.p99 < P99_BOUND_MS, `/healthz p99 ${r.p99.toFixed(1)} ms (max ${r.max.toFixed(1)} ms, ${r.n} probes)`);
  });
});
