/**
 * Generation over HTTP with the official `openai` client and raw SSE: completions and chat,
 * streamed and not; concurrency (streams started at different times equal the same request
 * alone); cancellation frees the KV cache; a flood past the queue gets only 429s; wrong-kind
 * calls and bad parameters are 4xx in OpenAI's error shape. The decoder is the tiny random one
 * (test/fixtures/tiny-llama): the server path is what is under test here, fidelity is tested
 * against PyTorch in decoder.test.ts and golden-llm.test.ts.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { TINY_DIR } from './helpers/decoder.js';
import { MODEL_DIR, copyAdapters, postJson, startTestServer, type TestServer } from './helpers/http-harness.js';

const TINY_MODEL = path.join(TINY_DIR, 'slotted');
const TINY_ADAPTERS = path.join(TINY_DIR, 'adapters');
const MODELS = ['tiny-llama', 'tiny-all', 'tiny-qv'] as const;

async function start(over: Record<string, string | number> = {}): Promise<TestServer> {
  const dir = await copyAdapters('gen');
  return startTestServer({ modelDir: `${MODEL_DIR},${TINY_MODEL}`, adaptersDir: `${dir},${TINY_ADAPTERS}`, ...over }, { dir });
}

/** Reads a raw SSE response: the JSON chunks and whether it ended with [DONE]. */
async function readSse(res: Response): Promise<{ chunks: any[]; done: boolean; raw: string }> {
  const raw = await res.text();
  const events = raw.split('\n\n').filter(Boolean);
  const done = events[events.length - 1] === 'data: [DONE]';
  const chunks = events.filter((e) => e !== 'data: [DONE]').map((e) => {
    assert.ok(e.startsWith('data: '), `an SSE event is one data line: ${JSON.stringify(e.slice(0, 80))}`);
    return JSON.parse(e.slice(6));
  });
  return { chunks, done, raw };
}

describe('generation over HTTP (openai SDK, SSE)', () => {
  let t: TestServer;
  let client: OpenAI;
  before(async () => {
    t = await start();
    client = new OpenAI({ apiKey: 'unused', baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 60_000 });
  });
  after(async () => { await t?.stop(); });

  test('chat, not streamed: OpenAI shape, usage, finish_reason; equal to the streamed deltas joined', async () => {
    const req = { model: 'tiny-all', messages: [{ role: 'user' as const, content: 'Una libreria per città e perché' }], max_tokens: 12, temperature: 0 };
    const full = await client.chat.completions.create(req);
    assert.equal(full.object, 'chat.completion');
    assert.equal(full.model, 'tiny-all');
    assert.equal(full.choices.length, 1);
    assert.equal(full.choices[0]!.message.role, 'assistant');
    assert.ok(['stop', 'length'].includes(full.choices[0]!.finish_reason));
    assert.ok(full.usage!.prompt_tokens > 5);
    assert.equal(full.usage!.total_tokens, full.usage!.prompt_tokens + full.usage!.completion_tokens);
    const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    let first = true;
    for await (const c of stream) {
      if (c.usage) usage = c.usage;
      const ch = c.choices[0];
      if (!ch) continue;
      if (first) { assert.equal(ch.delta.role, 'assistant'); first = false; }
      text += ch.delta.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    assert.equal(text, full.choices[0]!.message.content);
    assert.equal(finish, full.choices[0]!.finish_reason);
    assert.deepEqual(usage, full.usage);
    // generation_config.json says do_sample: false, so a request without temperature is greedy too.
    const { temperature: _t, ...noTemperature } = req;
    const dflt = await client.chat.completions.create(noTemperature);
    assert.equal(dflt.choices[0]!.message.content, full.choices[0]!.message.content);
    const sampled = await client.chat.completions.create({ ...noTemperature, temperature: 1.5, seed: 5 });
    assert.notEqual(sampled.choices[0]!.message.content, full.choices[0]!.message.content, 'an explicit temperature still samples');
  });

  test('completions: streamed and not agree, with a seed for sampled text (same seed, same text)', async () => {
    const req = { model: 'tiny-qv', prompt: 'Debian package', max_tokens: 10, temperature: 0.9, top_p: 0.95, seed: 1234 };
    const a = await client.completions.create(req);
    const b = await client.completions.create(req);
    assert.equal(a.object, 'text_completion');
    assert.equal(a.choices[0]!.text, b.choices[0]!.text, 'same seed, same text');
    const stream = await client.completions.create({ ...req, stream: true });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.text ?? '';
    assert.equal(text, a.choices[0]!.text);
    const other = await client.completions.create({ ...req, seed: 99 });
    const greedy = await client.completions.create({ ...req, temperature: 0 });
    assert.ok(other.choices[0]!.text !== a.choices[0]!.text || greedy.choices[0]!.text !== a.choices[0]!.text, 'seeds and temperature change sampled text');
  });

  test('raw SSE: data-only chunks, finish chunk, usage chunk, [DONE]; no broken characters', async () => {
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-llama', messages: [{ role: 'user', content: 'è già più' }], max_tokens: 20, temperature: 0, stream: true, stream_options: { include_usage: true } }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const { chunks, done } = await readSse(res);
    assert.ok(done, 'ends with data: [DONE]');
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && typeof c.id === 'string' && c.id === chunks[0].id));
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.equal(typeof last.usage.completion_tokens, 'number');
    const fin = chunks[chunks.length - 2].choices[0];
    assert.ok(['stop', 'length'].includes(fin.finish_reason));
    for (const c of chunks.slice(0, -2)) {
      const s: string = c.choices[0].delta.content;
      assert.ok(!/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s), 'no lone surrogates in a delta');
    }
  });

  test('8+ concurrent greedy streams over the adapters and the base, started at different times, each equal the request alone', async () => {
    const reqs = Array.from({ length: 9 }, (_, i) => ({ model: MODELS[i % 3]!, prompt: `Package number ${i} provides ${'x '.repeat(i)}`, max_tokens: 8 + (i % 4), temperature: 0 }));
    const alone: string[] = [];
    for (const r of reqs) alone.push((await client.completions.create(r)).choices[0]!.text);
    const together = await Promise.all(reqs.map(async (r, i) => {
      await new Promise((res) => setTimeout(res, i * 7));
      let text = '';
      for await (const c of await client.completions.create({ ...r, stream: true })) text += c.choices[0]?.text ?? '';
      return text;
    }));
    assert.deepEqual(together, alone);
  });

  test('cancelling mid-stream frees the sequence and its KV cache', async () => {
    const sched = t.s.services.generation[0]!.scheduler;
    assert.equal(sched.stats.kvReservedBytes, 0);
    const ac = new AbortController();
    const res = await fetch(`${t.url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal,
      body: JSON.stringify({ model: 'tiny-all', prompt: 'A long story', max_tokens: 200, temperature: 0, stream: true }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    assert.ok(sched.stats.running === 1 && sched.stats.kvReservedBytes > 0, 'the sequence is running');
    ac.abort();
    const t0 = Date.now();
    while ((sched.stats.running > 0 || sched.stats.kvReservedBytes > 0) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
    assert.equal(sched.stats.running, 0);
    assert.equal(sched.stats.kvReservedBytes, 0);
    assert.equal(sched.stats.kvBytes, 0);
  });

  test('errors: unknown model 404, classifier adapter 400, bad parameter 400 naming it, n > 1, context overflow naming both numbers', async () => {
    await assert.rejects(client.chat.completions.create({ model: 'no-such-adapter', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal((e as InstanceType<typeof OpenAI.APIError>).code, 'model_not_found');
      return true;
    });
    await assert.rejects(client.completions.create({ model: 'spam', prompt: 'x' }), (e: unknown) => e instanceof OpenAI.BadRequestError && /cannot generate text/.test((e as Error).message));
    await assert.rejects(client.chat.completions.create({ model: 'tiny-all', messages: [{ role: 'user', content: 'x' }], temperature: 7 }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal((e as InstanceType<typeof OpenAI.APIError>).param, 'temperature');
      return true;
    });
    await assert.rejects(client.chat.completions.create({ model: 'tiny-all', messages: [{ role: 'user', content: 'x' }], n: 2 }), (e: unknown) => e instanceof OpenAI.BadRequestError && /\bn\b/.test((e as Error).message));
    const long = await postJson(`${t.url}/v1/completions`, { model: 'tiny-llama', prompt: 'word '.repeat(400) });
    assert.equal(long.status, 400);
    assert.match(long.body.error.message, /\d+ tokens; the model's context is 256/);
    const huge = await postJson(`${t.url}/v1/chat/completions`, { model: 'tiny-all', messages: [{ role: 'user', content: 'x'.repeat(300_000) }] });
    assert.equal(huge.status, 400);
    assert.match(huge.body.error.message, /300\d{3} characters, more than the model's context of 256 tokens can hold/);
    const over = await postJson(`${t.url}/v1/completions`, { model: 'tiny-llama', prompt: 'hello', max_tokens: 300 });
    assert.equal(over.status, 400);
    assert.match(over.body.error.message, /max_tokens is 300/);
    const predict = await postJson(`${t.url}/v1/predict`, { adapter_id: 'tiny-all', inputs: 'x' });
    assert.equal(predict.status, 400);
    assert.match(predict.body.error.message, /text-generation adapter/);
  });

  test('models list both bases and their adapters, each adapter with its parent', async () => {
    const models: OpenAI.Models.Model[] = [];
    for await (const m of client.models.list()) models.push(m);
    const tiny = models.filter((m) => (m as unknown as { root: string }).root === 'tiny-llama');
    assert.deepEqual(tiny.map((m) => m.id), ['tiny-llama', 'tiny-all', 'tiny-qv']);
    assert.equal((await client.models.retrieve('tiny-qv') as unknown as { parent: string }).parent, 'tiny-llama');
  });

  test('metrics: running/waiting, KV cache, tokens per adapter, TTFT', async () => {
    const text = await (await fetch(`${t.url}/metrics`)).text();
    for (const name of ['adapterhost_num_requests_running 0', 'adapterhost_num_requests_waiting 0', 'adapterhost_kv_cache_usage_perc 0']) assert.ok(text.includes(name), name);
    assert.match(text, /adapterhost_generation_tokens_total\{adapter="tiny-all"\} [1-9]/);
    assert.match(text, /adapterhost_time_to_first_token_seconds_count [1-9]/);
    assert.match(text, /adapterhost_lora_requests_info\{max_lora="32",running_lora_adapters="",waiting_lora_adapters=""\}/);
    assert.match(text, /adapterhost_generation_cancellations_total [1-9]/);
  });
});

describe('generation flood past the queue', () => {
  test('only 200s and 429s with Retry-After, no 500; every accepted stream ends with [DONE]', async () => {
    const t = await start({ maxRunningSeqs: 1, maxWaitingSeqs: 2 });
    try {
      const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
        const res = await fetch(`${t.url}/v1/completions`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: MODELS[i % 3], prompt: 'flood', max_tokens: 6, temperature: 0, stream: true }),
        });
        if (res.status !== 200) return { status: res.status, retry: res.headers.get('retry-after'), done: false };
        return { status: 200, retry: null, done: (await readSse(res)).done };
      }));
      const statuses = new Set(results.map((r) => r.status));
      assert.deepEqual([...statuses].filter((s) => s !== 200 && s !== 429), []);
      assert.ok(results.some((r) => r.status === 429), 'the flood overflowed the queue');
      assert.ok(results.filter((r) => r.status === 429).every((r) => r.retry !== null));
      assert.ok(results.filter((r) => r.status === 200).every((r) => r.done));
    } finally {
      await t.stop();
    }
  });
});

describe('generation during a graceful shutdown', () => {
  test('readiness drops, new requests get 503, a running stream finishes with [DONE]', async () => {
    const t = await start();
    try {
      const res = await fetch(`${t.url}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny-all', prompt: 'shutdown', max_tokens: 60, temperature: 0, stream: true }),
      });
      const reader = res.body!.getReader();
      let raw = new TextDecoder().decode((await reader.read()).value);
      const closing = t.s.close();
      assert.equal(t.s.state.draining, true);
      // A new request gets 503 (on a kept-alive connection) or no connection at all (the listener is closed).
      const late = await postJson(`${t.url}/v1/completions`, { model: 'tiny-all', prompt: 'late' }).then((r) => r.status, () => 'refused');
      assert.ok(late === 503 || late === 'refused', String(late));
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        raw += new TextDecoder().decode(value);
      }
      assert.ok(raw.trimEnd().endsWith('data: [DONE]'), 'the running stream completed');
      assert.match(raw, /"finish_reason":"(length|stop)"/);
      await closing;
    } finally {
      await t.stop();
    }
  });
});

describe('adapters of several bases', () => {
  test('an upload goes to the base its config names; an unknown base is a 422 naming the loaded bases; /v1/adapters says base and task', async () => {
    const { cp, mkdtemp, readFile, rm } = await import('node:fs/promises');
    const os = await import('node:os');
    const genDir = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-gen-store-'));
    await cp(TINY_ADAPTERS, genDir, { recursive: true });
    const dir = await copyAdapters('gen-up');
    const token = 'test-admin-token-0123456789';
    const t = await startTestServer({ modelDir: `${MODEL_DIR},${TINY_MODEL}`, adaptersDir: `${dir},${genDir}`, adminToken: token }, { dir });
    try {
      const cfg = JSON.parse(await readFile(path.join(TINY_ADAPTERS, 'tiny-qv/adapter_config.json'), 'utf8'));
      const weights = await readFile(path.join(TINY_ADAPTERS, 'tiny-qv/adapter_model.safetensors'));
      const put = (id: string, config: unknown) => {
        const form = new FormData();
        form.append('adapter_config', new Blob([JSON.stringify(config)]), 'adapter_config.json');
        form.append('adapter_model', new Blob([weights]), 'adapter_model.safetensors');
        return fetch(`${t.url}/v1/adapters/${id}`, { method: 'PUT', headers: { authorization: `Bearer ${token}` }, body: form });
      };
      const ok = await put('my-gen', cfg);
      assert.equal(ok.status, 201, await ok.clone().text());
      const listed = (await (await fetch(`${t.url}/v1/adapters/my-gen`)).json()) as { base: string; task: string };
      assert.equal(listed.base, 'tiny-llama');
      assert.equal(listed.task, 'text-generation');
      const spam = (await (await fetch(`${t.url}/v1/adapters/spam`)).json()) as { base: string; task: string };
      assert.equal(spam.base, 'adapterhost-demo-bert');
      const gen = await postJson(`${t.url}/v1/completions`, { model: 'my-gen', prompt: 'hi', max_tokens: 3, temperature: 0 });
      assert.equal(gen.status, 200);
      const bad = await put('other-gen', { ...cfg, base_model_name_or_path: 'some-org/not-loaded' });
      assert.equal(bad.status, 422);
      assert.match(((await bad.json()) as { error: { message: string } }).error.message, /names no base this server has loaded \(adapterhost-demo-bert, tiny-llama\)/);
      const clash = await put('spam', cfg);
      assert.equal(clash.status, 409, 'an id of one base cannot be taken by another');
      const del = await fetch(`${t.url}/v1/adapters/my-gen`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
      assert.equal(del.status, 204);
      assert.equal((await postJson(`${t.url}/v1/completions`, { model: 'my-gen', prompt: 'hi' })).status, 404);
    } finally {
      await t.stop();
      await rm(genDir, { recursive: true, force: true });
    }
  });
});

describe('start-up with several bases', () => {
  test('an adapter id in two bases\' stores is refused at start-up, and no decoder worker is left running', async () => {
    const { cp, mkdtemp, rm } = await import('node:fs/promises');
    const os = await import('node:os');
    const { startServer } = await import('../src/serve.js');
    const { loadConfig } = await import('../src/config.js');
    const genDir = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-gen-dup-'));
    await cp(path.join(TINY_ADAPTERS, 'tiny-qv'), path.join(genDir, 'spam'), { recursive: true });
    const dir = await copyAdapters('gen-dup');
    try {
      await assert.rejects(
        startServer(loadConfig([], {}, { modelDir: `${MODEL_DIR},${TINY_MODEL}`, adaptersDir: `${dir},${genDir}`, port: 0, logLevel: 'silent', threads: 1 })),
        (e: unknown) => /adapter id "spam" is in the stores of two bases/.test((e as Error).message),
      );
    } finally {
      await rm(genDir, { recursive: true, force: true });
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a decoder worker that dies', () => {
  test('running streams end with a 503 error chunk, the worker restarts, and generation serves again with the same answers', async () => {
    const t = await start({ workerRestartMs: 50 });
    try {
      const gen = t.s.services.generation[0]!;
      const req = { model: 'tiny-all', prompt: 'before and after', max_tokens: 8, temperature: 0 };
      const before = await postJson(`${t.url}/v1/completions`, req);
      assert.equal(before.status, 200);
      const res = await fetch(`${t.url}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...req, max_tokens: 200, stream: true }),
      });
      const reader = res.body!.getReader();
      let raw = new TextDecoder().decode((await reader.read()).value);
      gen.engine.crashForTest();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        raw += new TextDecoder().decode(value);
      }
      assert.match(raw, /"code":"worker_restarting"/, 'the stream carries the 503 error object');
      assert.ok(raw.trimEnd().endsWith('data: [DONE]'));
      assert.equal(gen.engine.crashes, 1);
      const t0 = Date.now();
      while (!gen.engine.up && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 20));
      assert.ok(gen.engine.up, 'the worker came back');
      assert.equal(gen.scheduler.stats.kvReservedBytes, 0, 'the dead sequences released their reservations');
      const after = await postJson(`${t.url}/v1/completions`, req);
      assert.equal(after.status, 200);
      assert.equal(after.body.choices[0].text, before.body.choices[0].text);
      assert.equal((await fetch(`${t.url}/healthz`)).status, 200);
    } finally {
      await t.stop();
    }
  });
});
