/**
 * Hostile prompts and parameters on `/v1/completions` and `/v1/chat/completions`, table-driven,
 * through the real HTTP server with the tiny decoder: each case is sent with the official
 * `openai` SDK when its body is JSON the SDK can send, as raw bytes otherwise (invalid JSON or
 * UTF-8, nesting thousands deep, bodies past the cap). Every bad case is a 4xx in OpenAI's error
 * shape naming the problem (`param` where a field is at fault), never a 500; the edge values that
 * are valid are served. After the table, nothing is running, waiting, reserved, held or leased.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { metricSum, request, scrape } from './helpers/reliability-kit.js';
import { schedulerIdle, startGen, waitFor, type GenServer } from './helpers/generation-kit.js';

type Route = 'completions' | 'chat';
interface Case {
  name: string;
  route: Route;
  /** A JSON body (sent with the SDK), or exact bytes (sent raw). */
  body: Record<string, unknown> | { raw: string | Buffer };
  /** Expected status; 200 cases must be served with a completion. */
  status: number;
  param?: string | null;
  message?: RegExp;
}

const C = { model: 'tiny-all', prompt: 'hello there', max_tokens: 4 };
const H = { model: 'tiny-all', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 4 };
const c = (over: Record<string, unknown>) => ({ ...C, ...over });
const h = (over: Record<string, unknown>) => ({ ...H, ...over });
const hMsg = (msg: Record<string, unknown>) => h({ messages: [{ role: 'user', content: 'x', ...msg }] });
const raw = (s: string | Buffer) => ({ raw: s });
const utf8With = (bytes: number[]) => raw(Buffer.concat([Buffer.from('{"model":"tiny-all","max_tokens":4,"prompt":"ab'), Buffer.from(bytes), Buffer.from('cd"}')]));
const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

const CASES: Case[] = [
  // The context
  { name: 'prompt longer than the context: both numbers', route: 'completions', body: c({ prompt: 'word '.repeat(400) }), status: 400, message: /the prompt has \d{3} tokens; the model's context is 256 tokens/ },
  { name: 'chat longer than the context: both numbers', route: 'chat', body: h({ messages: [{ role: 'user', content: 'word '.repeat(400) }] }), status: 400, message: /the prompt has \d{3} tokens; the model's context is 256 tokens/ },
  { name: 'prompt far longer than the context: refused before tokenizing', route: 'completions', body: c({ prompt: 'x'.repeat(500_000) }), status: 400, message: /500000 characters, more than the model's context of 256 tokens/ },
  { name: 'truncation is not offered (unknown field)', route: 'completions', body: c({ prompt: 'word '.repeat(400), truncate_prompt_tokens: 100 }), status: 400, param: 'truncate_prompt_tokens', message: /unknown field "truncate_prompt_tokens"/ },
  // max_tokens
  { name: 'max_tokens 0', route: 'completions', body: c({ max_tokens: 0 }), status: 400, param: 'max_tokens', message: /"max_tokens" must be a positive integer \(got 0\)/ },
  { name: 'max_tokens negative', route: 'completions', body: c({ max_tokens: -5 }), status: 400, param: 'max_tokens' },
  { name: 'max_tokens huge: what is left of the context', route: 'completions', body: c({ max_tokens: 1e9 }), status: 400, message: /max_tokens is 1000000000 but the prompt has \d+ tokens and the model's context is 256: at most \d+ can be generated/ },
  { name: 'max_tokens past a safe integer', route: 'completions', body: c({ max_tokens: 2 ** 60 }), status: 400, param: 'max_tokens' },
  { name: 'max_tokens non-integer', route: 'completions', body: c({ max_tokens: 2.5 }), status: 400, param: 'max_tokens' },
  { name: 'max_tokens as a string', route: 'completions', body: c({ max_tokens: '10' }), status: 400, param: 'max_tokens' },
  { name: 'max_tokens NaN (not JSON)', route: 'completions', body: raw('{"model":"tiny-all","prompt":"x","max_tokens":NaN}'), status: 400, message: /not valid JSON/ },
  { name: 'max_completion_tokens 0', route: 'chat', body: h({ max_completion_tokens: 0 }), status: 400, param: 'max_completion_tokens' },
  // Sampling
  { name: 'temperature negative', route: 'completions', body: c({ temperature: -0.1 }), status: 400, param: 'temperature', message: /from 0 to 2 \(got -0.1\)/ },
  { name: 'temperature above 2', route: 'chat', body: h({ temperature: 2.01 }), status: 400, param: 'temperature' },
  { name: 'temperature as a string', route: 'completions', body: c({ temperature: 'hot' }), status: 400, param: 'temperature', message: /got "hot"/ },
  { name: 'temperature Infinity (1e999)', route: 'completions', body: raw('{"model":"tiny-all","prompt":"x","temperature":1e999}'), status: 400, param: 'temperature', message: /got Infinity/ },
  { name: 'temperature NaN (not JSON)', route: 'chat', body: raw('{"model":"tiny-all","messages":[{"role":"user","content":"x"}],"temperature":NaN}'), status: 400, message: /not valid JSON/ },
  { name: 'temperature nested 100 000 deep', route: 'completions', body: raw(`{"model":"tiny-all","prompt":"x","temperature":${deep(100_000)}}`), status: 400, param: 'temperature' },
  { name: 'temperature a hair above 0 is served (no NaN from 1/T)', route: 'completions', body: c({ temperature: 1e-300 }), status: 200 },
  { name: 'top_p 0', route: 'completions', body: c({ top_p: 0 }), status: 400, param: 'top_p' },
  { name: 'top_p above 1', route: 'chat', body: h({ top_p: 1.5 }), status: 400, param: 'top_p' },
  { name: 'top_p as a string', route: 'completions', body: c({ top_p: '0.5' }), status: 400, param: 'top_p' },
  { name: 'top_k negative', route: 'completions', body: c({ top_k: -1 }), status: 400, param: 'top_k' },
  { name: 'top_k non-integer', route: 'completions', body: c({ top_k: 2.5 }), status: 400, param: 'top_k' },
  { name: 'top_k past a safe integer', route: 'completions', body: c({ top_k: 1e20 }), status: 400, param: 'top_k' },
  { name: 'top_k larger than the vocabulary is served (no cut)', route: 'completions', body: c({ temperature: 1, top_k: 1_000_000 }), status: 200 },
  { name: 'presence_penalty out of range', route: 'completions', body: c({ presence_penalty: 3 }), status: 400, param: 'presence_penalty' },
  { name: 'frequency_penalty out of range', route: 'chat', body: h({ frequency_penalty: -2.5 }), status: 400, param: 'frequency_penalty' },
  { name: 'logit_bias is not applied', route: 'completions', body: c({ logit_bias: { 50: 100 } }), status: 400, param: 'logit_bias' },
  // stop
  { name: 'stop: too many strings', route: 'completions', body: c({ stop: ['a', 'b', 'c', 'd', 'e'] }), status: 400, param: 'stop', message: /holds 5 strings; at most 4/ },
  { name: 'stop: an empty string', route: 'completions', body: c({ stop: ['a', ''] }), status: 400, param: 'stop[1]', message: /must not be empty/ },
  { name: 'stop: the empty string alone', route: 'chat', body: h({ stop: '' }), status: 400, param: 'stop' },
  { name: 'stop: a very long string', route: 'completions', body: c({ stop: ['x'.repeat(10_000)] }), status: 400, param: 'stop[0]', message: /10000 characters long; at most 256/ },
  { name: 'stop: numbers', route: 'completions', body: c({ stop: [1, 2] }), status: 400, param: 'stop' },
  { name: 'stop: a lone surrogate is served', route: 'completions', body: raw('{"model":"tiny-all","prompt":"x","max_tokens":4,"stop":["\\ud800"]}'), status: 200 },
  // seed, n, logprobs
  { name: 'seed past a safe integer', route: 'completions', body: c({ seed: 2 ** 64 }), status: 400, param: 'seed' },
  { name: 'seed non-integer', route: 'chat', body: h({ seed: 1.5 }), status: 400, param: 'seed' },
  { name: 'seed as a string', route: 'completions', body: c({ seed: '7' }), status: 400, param: 'seed' },
  { name: 'seed negative is served', route: 'completions', body: c({ temperature: 1, seed: -1 }), status: 200 },
  { name: 'seed the largest safe integer is served', route: 'completions', body: c({ temperature: 1, seed: Number.MAX_SAFE_INTEGER }), status: 200 },
  { name: 'n 2', route: 'completions', body: c({ n: 2 }), status: 400, param: 'n', message: /one choice per request/ },
  { name: 'n 0', route: 'chat', body: h({ n: 0 }), status: 400, param: 'n' },
  { name: 'n 1 is served', route: 'chat', body: h({ n: 1 }), status: 200 },
  { name: 'logprobs 5 (completions)', route: 'completions', body: c({ logprobs: 5 }), status: 400, param: 'logprobs', message: /log probabilities are not returned/ },
  { name: 'logprobs -1 (completions)', route: 'completions', body: c({ logprobs: -1 }), status: 400, param: 'logprobs' },
  { name: 'logprobs true (chat)', route: 'chat', body: h({ logprobs: true }), status: 400, param: 'logprobs' },
  { name: 'top_logprobs 30 (chat)', route: 'chat', body: h({ top_logprobs: 30 }), status: 400, param: 'top_logprobs' },
  { name: 'logprobs false (chat) is served', route: 'chat', body: h({ logprobs: false }), status: 200 },
  { name: 'echo / suffix / best_of', route: 'completions', body: c({ echo: true, suffix: 'x', best_of: 3 }), status: 400, param: 'echo', message: /\(1\).*\(2\).*\(3\)/ },
  // Chat messages
  { name: 'messages empty', route: 'chat', body: h({ messages: [] }), status: 400, param: 'messages', message: /at least one message/ },
  { name: 'messages not an array', route: 'chat', body: h({ messages: { role: 'user', content: 'x' } }), status: 400, param: 'messages' },
  { name: 'unknown role', route: 'chat', body: hMsg({ role: 'wizard' }), status: 400, param: 'messages[0].role', message: /got "wizard"/ },
  { name: 'tool role', route: 'chat', body: hMsg({ role: 'tool' }), status: 400, param: 'messages[0].role', message: /tool messages are not supported/ },
  { name: 'content as an object', route: 'chat', body: hMsg({ content: { text: 'x' } }), status: 400, param: 'messages[0].content' },
  { name: 'content null', route: 'chat', body: hMsg({ content: null }), status: 400, param: 'messages[0].content' },
  { name: 'an image part', route: 'chat', body: hMsg({ content: [{ type: 'image_url', image_url: { url: 'http://127.0.0.1:1/x.png' } }] }), status: 400, param: 'messages[0].content[0].type', message: /"image_url" parts are not supported/ },
  { name: 'an audio part', route: 'chat', body: hMsg({ content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] }), status: 400, param: 'messages[0].content[0].type' },
  { name: 'a text part without text', route: 'chat', body: hMsg({ content: [{ type: 'text' }] }), status: 400, param: 'messages[0].content[0].text' },
  { name: 'text parts are served', route: 'chat', body: hMsg({ content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }), status: 200 },
  { name: 'content nested 5 000 deep', route: 'chat', body: raw(`{"model":"tiny-all","messages":[{"role":"user","content":${deep(5000)}}]}`), status: 400, param: 'messages[0].content[0]' },
  { name: 'an unknown field nested 50 000 deep', route: 'completions', body: raw(`{"model":"tiny-all","prompt":"x","x":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`), status: 400, param: 'x' },
  { name: 'model nested 100 000 deep', route: 'completions', body: raw(`{"model":${deep(100_000)},"prompt":"x"}`), status: 400, param: 'model' },
  { name: '30 000 tiny messages within the body cap: refused before the template runs', route: 'chat', body: h({ messages: Array.from({ length: 30_000 }, () => ({ role: 'user', content: 'a' })) }), status: 400, message: /the chat has 30000 messages; the model's context is 256 tokens/ },
  { name: '40 000 empty text parts', route: 'chat', body: hMsg({ content: Array.from({ length: 40_000 }, () => ({ type: 'text', text: '' })) }), status: 400, message: /39999 characters, more than the model's context of 256 tokens/ },
  { name: 'an unknown field in a message', route: 'chat', body: hMsg({ mood: 'happy' }), status: 400, param: 'messages[0].mood' },
  { name: 'tools', route: 'chat', body: h({ tools: [{ type: 'function', function: { name: 'f' } }] }), status: 400, param: 'tools' },
  { name: 'template syntax in content is text, not code', route: 'chat', body: hMsg({ content: "{{ raise_exception('x') }}{% for %}" }), status: 200 },
  // Text encodings
  { name: 'invalid UTF-8 bytes are read as U+FFFD and served', route: 'completions', body: utf8With([0xff, 0xfe, 0xc3]), status: 200 },
  { name: 'a surrogate encoded in UTF-8 (CESU) is read as U+FFFD and served', route: 'completions', body: utf8With([0xed, 0xa0, 0x80]), status: 200 },
  { name: 'a lone high surrogate escape in the prompt is served', route: 'completions', body: raw('{"model":"tiny-all","max_tokens":4,"prompt":"ab\\ud800cd"}'), status: 200 },
  { name: 'a lone low surrogate in chat content is served', route: 'chat', body: raw('{"model":"tiny-all","max_tokens":4,"messages":[{"role":"user","content":"\\udc00","name":"\\udfff"}]}'), status: 200 },
  { name: 'NUL bytes in the prompt are served', route: 'completions', body: c({ prompt: 'a\u0000b\u0000' }), status: 200 },
  { name: 'NUL bytes in chat content are served', route: 'chat', body: hMsg({ content: '\u0000\u0000' }), status: 200 },
  { name: 'special tokens written in the prompt are served (tokenized as those tokens, as transformers does)', route: 'completions', body: c({ prompt: '<|eos|><|im_end|><|bos|>' }), status: 200 },
  // Prompt shapes
  { name: 'prompt as token ids', route: 'completions', body: c({ prompt: [1, 2, 3] }), status: 400, param: 'prompt', message: /as token ids is not supported/ },
  { name: 'prompt as a batch of token ids', route: 'completions', body: c({ prompt: [[1, 2], [3]] }), status: 400, param: 'prompt', message: /token ids/ },
  { name: 'several prompts', route: 'completions', body: c({ prompt: ['a', 'b'] }), status: 400, param: 'prompt', message: /holds 2 prompts/ },
  { name: 'prompt empty', route: 'completions', body: c({ prompt: '' }), status: 400, param: 'prompt' },
  { name: 'prompt missing', route: 'completions', body: { model: 'tiny-all' }, status: 400, param: 'prompt', message: /"prompt" is required/ },
  { name: 'prompt an object', route: 'completions', body: c({ prompt: { text: 'x' } }), status: 400, param: 'prompt' },
  // Models
  { name: 'model naming a classifier adapter', route: 'completions', body: c({ model: 'spam' }), status: 400, message: /"spam" is a sequence-classification model .* cannot generate text/ },
  { name: 'model naming the classifier base', route: 'chat', body: h({ model: 'adapterhost-demo-bert' }), status: 400, message: /cannot generate text/ },
  { name: 'model unknown', route: 'completions', body: c({ model: 'no-such-model' }), status: 404, message: /"no-such-model" does not exist/ },
  { name: 'model a lone surrogate', route: 'completions', body: raw('{"model":"\\ud800","prompt":"x"}'), status: 404 },
  { name: 'model 500 000 characters', route: 'completions', body: c({ model: 'm'.repeat(500_000) }), status: 404 },
  { name: 'model missing', route: 'chat', body: { messages: H.messages }, status: 400, param: 'model', message: /"model" is required/ },
  { name: 'model a number', route: 'completions', body: c({ model: 42 }), status: 400, param: 'model' },
  // The body
  { name: 'an unknown field', route: 'completions', body: c({ foo: 1 }), status: 400, param: 'foo', message: /unknown field "foo"/ },
  { name: 'stream not a boolean', route: 'completions', body: c({ stream: 'yes' }), status: 400, param: 'stream' },
  { name: 'stream_options without stream', route: 'chat', body: h({ stream_options: { include_usage: true } }), status: 400, param: 'stream_options' },
  { name: 'a bad parameter on a stream is a plain JSON 400', route: 'completions', body: c({ stream: true, temperature: 9 }), status: 400, param: 'temperature' },
  { name: 'user not a string', route: 'completions', body: c({ user: 5 }), status: 400, param: 'user' },
  { name: 'body an array', route: 'completions', body: raw('[]'), status: 400, message: /must be a JSON object/ },
  { name: 'body not JSON', route: 'chat', body: raw('{"model": "tiny-all", "messages": ['), status: 400, message: /not valid JSON/ },
  { name: 'body past the cap', route: 'completions', body: raw(`{"model":"tiny-all","prompt":"${'x'.repeat(1100 * 1024)}"}`), status: 413, message: /the limit is 1048576 bytes/ },
];

describe('bad input on the generation routes (table)', () => {
  let t: GenServer;
  let client: OpenAI;
  before(async () => {
    t = await startGen();
    client = new OpenAI({ apiKey: 'unused', baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 60_000 });
  });
  after(async () => { await t?.stop(); });

  /** Sends a case; the status, the OpenAI error (if any) and the served text. */
  async function send(k: Case): Promise<{ status: number; error: { message: string; type: string; code: string; param: string | null } | null; text: string | null }> {
    if ('raw' in k.body) {
      const r = await request(t.url, { method: 'POST', path: `/v1/${k.route === 'chat' ? 'chat/completions' : 'completions'}`, headers: { 'content-type': 'application/json' }, body: k.body.raw as string | Buffer });
      if (r.status !== 200) return { status: r.status, error: r.body?.error ?? null, text: null };
      return { status: 200, error: null, text: k.route === 'chat' ? r.body.choices[0].message.content : r.body.choices[0].text };
    }
    try {
      if (k.route === 'chat') {
        const out = await client.chat.completions.create(k.body as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming);
        return { status: 200, error: null, text: out.choices[0]!.message.content };
      }
      const out = await client.completions.create(k.body as unknown as OpenAI.CompletionCreateParamsNonStreaming);
      return { status: 200, error: null, text: out.choices[0]!.text };
    } catch (e) {
      if (!(e instanceof OpenAI.APIError) || e.status === undefined) throw e;
      const err = e.error as { message: string; type: string; code: string; param: string | null };
      return { status: e.status, error: err, text: null };
    }
  }

  for (const k of CASES) {
    test(`${k.route}: ${k.name} → ${k.status}`, async () => {
      const r = await send(k);
      assert.equal(r.status, k.status, `status ${r.status}: ${JSON.stringify(r.error)?.slice(0, 300)}`);
      if (k.status === 200) {
        assert.equal(typeof r.text, 'string', 'served with a completion');
        return;
      }
      assert.ok(r.error, 'an OpenAI error object');
      assert.equal(typeof r.error.message, 'string');
      assert.equal(r.error.type, r.status === 404 || r.status < 500 ? 'invalid_request_error' : 'server_error');
      assert.equal(typeof r.error.code, 'string');
      if (k.param !== undefined) assert.equal(r.error.param, k.param, r.error.message);
      if (k.message) assert.match(r.error.message, k.message);
      assert.ok(r.error.message.length <= 2000, 'the message stays short whatever was sent');
    });
  }

  test('after the table: nothing running, waiting, reserved, held or leased; the server still serves', async () => {
    await waitFor(() => schedulerIdle(t.sched) && t.s.services.cache.leases === 0 && (t.s.state.generations?.size ?? 0) === 0, 20_000, 'everything freed');
    const m = await scrape(t.url);
    for (const name of ['adapterhost_num_requests_running', 'adapterhost_num_requests_waiting', 'adapterhost_kv_cache_bytes', 'adapterhost_kv_cache_reserved_bytes']) assert.equal(metricSum(m, name), 0, name);
    assert.equal(metricSum(m, 'adapterhost_http_requests_total', { status: '500' }, { absentIsZero: true }), 0, 'no 500 at all');
    const ok = await client.completions.create({ model: 'tiny-qv', prompt: 'still here', max_tokens: 3, temperature: 0 });
    assert.equal(ok.choices.length, 1);
  });
});
