/** The inference endpoints end to end: the real app, the demo model, a copy of adapters/. */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { createApp } from '../src/http/app.js';
import { createMetrics } from '../src/metrics.js';
import type { Services } from '../src/services.js';
import { Tokenizer } from '@huggingface/tokenizers';
import { ADAPTERS_DIR, DEMO_ADAPTERS, MODEL_DIR, getJson, postJson, rawRequest, startTestServer, scrape, testConfig, type TestServer } from './helpers/http-harness.js';

const GERMAN = 'Das ist ein schöner Tag und wir gehen heute in den Park.';
const TEXTS = [
  GERMAN,
  'Win a free cruise now, click here to claim your prize!',
  'The committee will vote on the new budget tomorrow.',
  'Hola, ¿cómo estás? Hoy hace muy buen tiempo.',
  'My laptop keeps crashing when I open the compiler.',
  'Can we move our meeting to Thursday afternoon?',
  'Il gatto dorme sul divano tutto il giorno.',
  'The theory of relativity changed modern physics.',
  'Roses are red, violets are blue.',
  'Dzisiaj jest bardzo zimno na dworze.',
];

async function labelsOf(id: string): Promise<string[]> {
  const cfg = JSON.parse(await readFile(path.join(ADAPTERS_DIR, id, 'adapter_config.json'), 'utf8')) as { id2label: Record<string, string> };
  return Object.entries(cfg.id2label).sort((a, b) => Number(a[0]) - Number(b[0])).map(([, v]) => v);
}

type Pred = Array<{ label: string; score: number }>;

function assertClose(a: Pred, b: Pred, what: string): void {
  assert.equal(a.length, b.length, what);
  const bl = new Map(b.map((x) => [x.label, x.score]));
  for (const x of a) assert.ok(Math.abs(x.score - bl.get(x.label)!) < 1e-5, `${what}: ${x.label} ${x.score} vs ${bl.get(x.label)}`);
}

describe('inference endpoints', () => {
  let t: TestServer;
  before(async () => { t = await startTestServer({ maxWaitMs: 5 }); });
  after(async () => { await t?.stop(); });

  test('predict with each demo adapter: its labels, sorted, summing to 1', async () => {
    for (const id of DEMO_ADAPTERS) {
      const expected = await labelsOf(id);
      const r = await postJson(`${t.url}/v1/predict`, { adapter_id: id, inputs: [TEXTS[0], TEXTS[1]] });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.adapter_id, id);
      assert.equal(r.body.predictions.length, 2);
      for (const p of r.body.predictions as Pred[]) {
        assert.deepEqual(p.map((x) => x.label).sort(), [...expected].sort(), id);
        for (let i = 1; i < p.length; i++) assert.ok(p[i - 1]!.score >= p[i]!.score, `${id}: sorted by score`);
        assert.ok(Math.abs(p.reduce((s, x) => s + x.score, 0) - 1) < 1e-6);
      }
    }
  });

  test('a single string input gives one list; German is "de" with lang', async () => {
    const r = await postJson(`${t.url}/v1/predict`, { adapter_id: 'lang', inputs: GERMAN });
    assert.equal(r.status, 200);
    assert.equal(r.body.predictions.length, 1);
    assert.equal(r.body.predictions[0][0].label, 'de');
  });

  test('concurrent requests over every demo adapter (10 texts each) equal their single answers', async () => {
    const jobs = DEMO_ADAPTERS.flatMap((id) => TEXTS.map((text) => ({ id, text })));
    const single: Pred[] = [];
    for (const j of jobs) {
      const r = await postJson(`${t.url}/v1/predict`, { adapter_id: j.id, inputs: j.text });
      assert.equal(r.status, 200);
      single.push(r.body.predictions[0]);
    }
    const before = await scrape(t.url);
    const all = await Promise.all(jobs.map((j) => postJson(`${t.url}/v1/predict`, { adapter_id: j.id, inputs: j.text })));
    all.forEach((r, i) => {
      assert.equal(r.status, 200);
      assert.equal(r.body.adapter_id, jobs[i]!.id);
      assertClose(r.body.predictions[0], single[i]!, `${jobs[i]!.id} / ${jobs[i]!.text}`);
    });
    // The concurrent phase really mixed adapters in one run.
    const mixed = (m: string) => {
      const count = Number(/adapterhost_batch_distinct_adapters_count (\S+)/.exec(m)![1]);
      const ones = Number(/adapterhost_batch_distinct_adapters_bucket\{le="1"\} (\S+)/.exec(m)![1]);
      return count - ones;
    };
    assert.ok(mixed(await scrape(t.url)) > mixed(before), 'some batch held more than one adapter');
  });

  test('embeddings: OpenAI shape, unit norm, base model name, base64', async () => {
    const models = await getJson(`${t.url}/v1/models`);
    const base = models.body.data[0].id as string;
    for (const model of [base, 'spam']) {
      const r = await postJson(`${t.url}/v1/embeddings`, { model, input: ['hello world', 'good morning'] });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.object, 'list');
      assert.equal(r.body.model, model);
      assert.equal(r.body.data.length, 2);
      r.body.data.forEach((d: { object: string; index: number; embedding: number[] }, i: number) => {
        assert.equal(d.object, 'embedding');
        assert.equal(d.index, i);
        const norm = Math.sqrt(d.embedding.reduce((s, x) => s + x * x, 0));
        assert.ok(Math.abs(norm - 1) < 1e-4, `norm ${norm}`);
      });
      assert.ok(r.body.usage.prompt_tokens > 0);
      assert.equal(r.body.usage.total_tokens, r.body.usage.prompt_tokens);

      const b = await postJson(`${t.url}/v1/embeddings`, { model, input: 'hello world', encoding_format: 'base64' });
      assert.equal(b.status, 200);
      const buf = Buffer.from(b.body.data[0].embedding as string, 'base64');
      const floats = Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(i * 4));
      const plain = r.body.data[0].embedding as number[];
      assert.equal(floats.length, plain.length);
      floats.forEach((x, i) => assert.ok(Math.abs(x - plain[i]!) < 1e-6));
    }
    const unknown = await postJson(`${t.url}/v1/embeddings`, { model: 'no-such-model', input: 'x' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'MODEL_NOT_FOUND');
  });

  test('GET /v1/models and /v1/adapters', async () => {
    const m = await getJson(`${t.url}/v1/models`);
    assert.equal(m.status, 200);
    assert.equal(m.body.object, 'list');
    const [base, ...rest] = m.body.data as Array<{ id: string; object: string; created: number; owned_by: string; parent: string | null }>;
    assert.equal(base!.parent, null);
    assert.equal(base!.object, 'model');
    assert.equal(base!.owned_by, 'adapterhost');
    assert.deepEqual(rest.map((x) => x.id).sort(), [...DEMO_ADAPTERS].sort());
    for (const x of rest) {
      assert.equal(x.parent, base!.id);
      assert.equal(typeof x.created, 'number');
    }

    const list = await getJson(`${t.url}/v1/adapters`);
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.data.map((a: { id: string }) => a.id).sort(), [...DEMO_ADAPTERS].sort());

    const spam = await getJson(`${t.url}/v1/adapters/spam`);
    assert.equal(spam.status, 200);
    const keys = ['id', 'task_type', 'rank', 'target_modules', 'modules', 'labels', 'has_head', 'base_model', 'bytes_on_disk',
      'bytes_in_memory', 'relative_to_base', 'cached', 'pinned', 'sha256', 'stored_at', 'base', 'task'];
    assert.deepEqual(Object.keys(spam.body).sort(), keys.sort());
    assert.equal(spam.body.id, 'spam');
    assert.equal(spam.body.base, 'adapterhost-demo-bert');
    assert.equal(spam.body.task, 'sequence-classification');
    assert.deepEqual(spam.body.labels, await labelsOf('spam'));
    assert.equal(spam.body.has_head, true);
    assert.ok(spam.body.rank > 0);
    assert.ok(spam.body.modules.length > 0);
    assert.ok(spam.body.bytes_on_disk > 0 && spam.body.bytes_in_memory > 0);
    assert.ok(spam.body.relative_to_base > 0 && spam.body.relative_to_base < 0.1);
    assert.equal(spam.body.base_model, base!.id);

    const missing = await getJson(`${t.url}/v1/adapters/nope`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'ADAPTER_NOT_FOUND');
  });

  // Table-driven error cases: every one is `{ error: { code, message } }` with its status.
  const tooManyInputs = Array.from({ length: 65 }, () => 'hi');
  const longText = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');
  const cases: Array<[string, () => Promise<{ status: number; body: any }>, number, string]> = [
    ['unknown adapter', () => postJson(`${t.url}/v1/predict`, { adapter_id: 'nope', inputs: 'x' }), 404, 'ADAPTER_NOT_FOUND'],
    ['missing adapter_id', () => postJson(`${t.url}/v1/predict`, { inputs: 'x' }), 400, 'ADAPTER_REQUIRED'],
    ['adapter id with a path', () => postJson(`${t.url}/v1/predict`, { adapter_id: '../models/demo', inputs: 'x' }), 400, 'INVALID_ADAPTER_ID'],
    ['unknown field url', () => postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: 'x', url: 'http://example.com/a' }), 400, 'BAD_REQUEST'],
    ['inputs of the wrong type', () => postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: 5 }), 400, 'BAD_REQUEST'],
    ['empty inputs', () => postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: [] }), 400, 'BAD_REQUEST'],
    ['a JSON array body', () => postJson(`${t.url}/v1/predict`, ['spam']), 400, 'BAD_REQUEST'],
    ['too many inputs', () => postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: tooManyInputs }), 400, 'TOO_MANY_INPUTS'],
    ['over-long input', () => postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: longText }), 400, 'INPUT_TOO_LONG'],
    ['embeddings dimensions', () => postJson(`${t.url}/v1/embeddings`, { model: 'spam', input: 'x', dimensions: 8 }), 400, 'BAD_REQUEST'],
    ['malformed JSON', async () => {
      const res = await fetch(`${t.url}/v1/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"adapter_id": "spam",' });
      return { status: res.status, body: await res.json() };
    }, 400, 'INVALID_JSON'],
    ['wrong content type', async () => {
      const res = await fetch(`${t.url}/v1/predict`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"adapter_id":"spam","inputs":"x"}' });
      return { status: res.status, body: await res.json() };
    }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['oversize JSON body', () => rawRequest(`${t.url}/v1/predict`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ adapter_id: 'spam', inputs: 'x'.repeat(1100 * 1024) })),
    }), 413, 'PAYLOAD_TOO_LARGE'],
    ['unknown route', () => getJson(`${t.url}/v2/nothing`), 404, 'ROUTE_NOT_FOUND'],
  ];
  for (const [name, send, status, code] of cases) {
    test(`error: ${name} → ${status} ${code}`, async () => {
      const r = await send();
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.equal(r.body.error.code, code);
      assert.equal(typeof r.body.error.message, 'string');
      assert.deepEqual(Object.keys(r.body), ['error']);
    });
  }

  test('truncate: true runs the first max − 1 tokens plus the closing special token, and answers as for that text', async () => {
    const { batcher, manifest, tokenizer } = t.s.services;
    const max = Math.min(t.s.services.config.maxTokens, manifest.maxLength);
    // The whole text's ids, from the tokenizer itself (not the server's bounded encode).
    const reference = new Tokenizer(JSON.parse(await readFile(path.join(MODEL_DIR, manifest.tokenizerFile), 'utf8')) as object, {});
    const whole = reference.encode(longText).ids;
    assert.ok(whole.length > max, `the text is over-long (${whole.length} > ${max})`);
    const expected = [...whole.slice(0, max - 1), whole[whole.length - 1]!];
    // The ids the engine is asked to run, seen at the batcher.
    const seen: number[][] = [];
    const submit = batcher.submit.bind(batcher);
    batcher.submit = (rows) => { for (const r of rows) seen.push([...r.ids]); return submit(rows); };
    try {
      const r = await postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: longText, truncate: true });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(seen, [expected], 'one row: the first max − 1 ids and the closing special token');
      assert.equal(tokenizer.encode(longText, max, true).length, max);
      // The same answer as the exact text those ids spell, sent without truncate.
      const cut = reference.decode(whole.slice(0, max - 1), { skip_special_tokens: true });
      assert.deepEqual(reference.encode(cut).ids, expected, 'the cut text encodes to the truncated ids');
      seen.length = 0;
      const plain = await postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: cut });
      assert.equal(plain.status, 200, JSON.stringify(plain.body));
      assert.deepEqual(seen, [expected]);
      assertClose(r.body.predictions[0], plain.body.predictions[0], 'truncated vs its text');
      // And not the answer of some other cut: a shorter prefix changes the scores.
      const shorter = await postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: reference.decode(whole.slice(0, max - 9), { skip_special_tokens: true }) });
      assert.notDeepEqual(shorter.body.predictions[0], r.body.predictions[0]);
    } finally {
      batcher.submit = submit;
    }
  });

  test('request ids: a well-formed X-Request-Id is echoed, a bad one replaced', async () => {
    const ok = await fetch(`${t.url}/healthz`, { headers: { 'x-request-id': 'abc.DEF-123_4' } });
    assert.equal(ok.headers.get('x-request-id'), 'abc.DEF-123_4');
    const bad = await fetch(`${t.url}/healthz`, { headers: { 'x-request-id': 'no spaces allowed' } });
    assert.notEqual(bad.headers.get('x-request-id'), 'no spaces allowed');
    assert.match(bad.headers.get('x-request-id') ?? '', /^[A-Za-z0-9._-]{1,64}$/);
    assert.equal(ok.headers.get('x-powered-by'), null);
  });
});

describe('backpressure', () => {
  let t: TestServer;
  before(async () => { t = await startTestServer({ queueLimit: 2, maxBatch: 1 }); });
  after(async () => { await t?.stop(); });

  test('a flood on a tiny queue gets 429 with Retry-After, never 500; the rest are right', async () => {
    const expected = await postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: TEXTS[1] });
    assert.equal(expected.status, 200);
    const all = await Promise.all(Array.from({ length: 30 }, () => postJson(`${t.url}/v1/predict`, { adapter_id: 'spam', inputs: TEXTS[1] })));
    const limited = all.filter((r) => r.status === 429);
    const ok = all.filter((r) => r.status === 200);
    assert.ok(limited.length > 0, 'some requests were refused');
    assert.ok(ok.length > 0, 'some requests were served');
    assert.equal(limited.length + ok.length, 30, `statuses: ${all.map((r) => r.status).join(',')}`);
    for (const r of limited) {
      assert.equal(r.body.error.code, 'QUEUE_FULL');
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
    }
    for (const r of ok) assertClose(r.body.predictions[0], expected.body.predictions[0], 'flood');
  });
});

test('an unexpected error is a generic 500 INTERNAL; details stay in the log', async () => {
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } });
  const services = {
    inference: { predict: async () => { throw new Error('secret detail /srv/adapters/x'); } },
    registry: { list: () => [] },
  } as unknown as Services;
  const app = createApp({ config: testConfig('/nonexistent'), services, metrics: createMetrics({ defaultMetrics: false }), log, state: { ready: true, draining: false } });
  const server = http.createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const r = await postJson(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/predict`, { adapter_id: 'spam', inputs: 'x' });
    assert.equal(r.status, 500);
    assert.equal(r.body.error.code, 'INTERNAL');
    assert.doesNotMatch(r.body.error.message, /secret|srv/);
    assert.ok(lines.some((l) => l.includes('secret detail')), 'the log has the details');
    // A real fault stays at error level, with the stack (expected 503s do not: http-semantics.test.ts).
    const fault = lines.map((l) => JSON.parse(l) as { level: number; err?: { stack?: string } }).find((l) => l.err?.stack?.includes('secret detail'));
    assert.equal(fault?.level, 50);
  } finally {
    server.close();
  }
});
