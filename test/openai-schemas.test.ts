import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import fc from 'fast-check';
import { AppError } from '../src/errors.js';
import { OPENAI_SAMPLING_DEFAULTS, parseChatRequest, parseCompletionRequest } from '../src/http/openai-schemas.js';
import { openAiErrorBody, paramOf } from '../src/http/openai-errors.js';
import { propertyParams } from './helpers/property-seed.js';

type Parse = (body: unknown) => unknown;

/** Parses, expecting a BAD_REQUEST; returns it. */
function refusal(parse: Parse, body: unknown): AppError {
  try {
    parse(body);
  } catch (e) {
    assert.ok(e instanceof AppError, `expected AppError, got ${String(e)}`);
    assert.equal(e.code, 'BAD_REQUEST');
    assert.equal(e.status, 400);
    return e;
  }
  assert.fail(`expected a 400 for ${JSON.stringify(body)}`);
}

const user = (content: unknown) => ({ role: 'user', content });
const cmp = (extra: Record<string, unknown>) => ({ model: 'm', prompt: 'Ciao', ...extra });
const chat = (extra: Record<string, unknown>) => ({ model: 'm', messages: [user('Ciao')], ...extra });

test('completions: the smallest request gets OpenAI defaults', () => {
  assert.deepEqual(parseCompletionRequest({ model: 'translate-it', prompt: 'Hello' }), {
    model: 'translate-it',
    prompt: 'Hello',
    maxTokens: null,
    sampling: { ...OPENAI_SAMPLING_DEFAULTS },
    stop: [],
    stream: false,
    includeUsage: false,
  });
});

test('completions: every supported field, normalized', () => {
  const r = parseCompletionRequest({
    model: 'm', prompt: ['one prompt'], max_tokens: 16, temperature: 0, top_p: 0.9, top_k: 40, seed: -7,
    presence_penalty: -2, frequency_penalty: 2, stop: '\n', n: 1, stream: true, stream_options: { include_usage: true }, user: 'u-1',
  });
  assert.deepEqual(r, {
    model: 'm', prompt: 'one prompt', maxTokens: 16,
    sampling: { temperature: 0, topP: 0.9, topK: 40, presencePenalty: -2, frequencyPenalty: 2, seed: -7 },
    stop: ['\n'], stream: true, includeUsage: true,
  });
});

test('the values that ask for nothing are accepted (what clients and frameworks send)', () => {
  const offCompletions = { logprobs: null, echo: false, suffix: null, best_of: 1, logit_bias: {}, n: null, stream: null, stream_options: null, user: null, temperature: null, top_p: null, max_tokens: null, seed: null, stop: null };
  const r = parseCompletionRequest(cmp(offCompletions));
  assert.deepEqual(r.sampling, OPENAI_SAMPLING_DEFAULTS);
  assert.deepEqual(r.stop, []);
  const offChat = { logprobs: false, top_logprobs: 0, logit_bias: {}, tools: [], tool_choice: 'none', parallel_tool_calls: true, functions: [], function_call: 'none', response_format: { type: 'text' }, modalities: ['text'], audio: null, prediction: null, reasoning_effort: null, web_search_options: null, max_completion_tokens: null };
  assert.equal(parseChatRequest(chat(offChat)).maxTokens, null);
  // An assistant message copied back from a response, with its empty extras.
  const back = { role: 'assistant', content: 'Salve', refusal: null, annotations: [], tool_calls: [], function_call: null, audio: null, name: 'bot' };
  assert.deepEqual(parseChatRequest(chat({ messages: [user('Ciao'), back, user('Grazie')] })).messages.map((m) => m.role), ['user', 'assistant', 'user']);
});

test('chat: content parts joined with newlines, developer read as system, max_completion_tokens wins', () => {
  const r = parseChatRequest({
    model: 'm',
    messages: [
      { role: 'developer', content: 'Be brief.' },
      { role: 'system', content: [{ type: 'text', text: 'Translate' }, { type: 'text', text: 'to Italian.' }] },
      { role: 'user', content: 'Good night', name: 'anna' },
    ],
    max_tokens: 100,
    max_completion_tokens: 8,
  });
  assert.deepEqual(r.messages, [
    { role: 'system', content: 'Be brief.' },
    { role: 'system', content: 'Translate\nto Italian.' },
    { role: 'user', content: 'Good night' },
  ]);
  assert.equal(r.maxTokens, 8);
  assert.equal(parseChatRequest(chat({ max_tokens: 5 })).maxTokens, 5);
  assert.equal(parseChatRequest(chat({ messages: [user([])] })).messages[0]!.content, '');
});

test('stream_options: usage only when streaming; without stream it is a 400', () => {
  assert.equal(parseChatRequest(chat({ stream: true, stream_options: { include_usage: false } })).includeUsage, false);
  assert.equal(parseChatRequest(chat({ stream: true, stream_options: {} })).includeUsage, false);
  assert.equal(parseChatRequest(chat({ stream: true })).includeUsage, false);
  for (const stream of [undefined, false, null]) {
    const e = refusal(parseChatRequest, chat({ stream, stream_options: { include_usage: true } }));
    assert.equal(paramOf(e), 'stream_options');
  }
});

test('defaults for absent sampling fields (a base\'s generation config); the request still wins', () => {
  const d = { temperature: 0, topK: 50 };
  assert.deepEqual(parseCompletionRequest(cmp({}), d).sampling, { ...OPENAI_SAMPLING_DEFAULTS, temperature: 0, topK: 50 });
  assert.deepEqual(parseChatRequest(chat({ temperature: 0.7, top_k: 0 }), d).sampling, { ...OPENAI_SAMPLING_DEFAULTS, temperature: 0.7, topK: 0 });
});

/** [name, route, body, param, message pattern] */
const REFUSALS: Array<[string, 'cmp' | 'chat', unknown, string | null, RegExp]> = [
  ['model missing', 'cmp', { prompt: 'x' }, 'model', /"model" is required/],
  ['model not a string', 'cmp', cmp({ model: 3 }), 'model', /"model" must be a string/],
  ['model empty', 'chat', chat({ model: '' }), 'model', /"model" must not be empty/],
  ['prompt missing', 'cmp', { model: 'm' }, 'prompt', /"prompt" is required/],
  ['prompt empty', 'cmp', cmp({ prompt: '' }), 'prompt', /"prompt" must not be empty/],
  ['prompt as token ids', 'cmp', cmp({ prompt: [1, 2, 3] }), 'prompt', /token ids is not supported/],
  ['prompt as token id batches', 'cmp', cmp({ prompt: [[1, 2], [3]] }), 'prompt', /token ids is not supported/],
  ['several prompts', 'cmp', cmp({ prompt: ['a', 'b'] }), 'prompt', /holds 2 prompts; one prompt per request/],
  ['prompt a number', 'cmp', cmp({ prompt: 5 }), 'prompt', /"prompt" must be a string/],
  ['max_tokens 0', 'cmp', cmp({ max_tokens: 0 }), 'max_tokens', /"max_tokens" must be a positive integer \(got 0\)/],
  ['max_tokens fractional', 'cmp', cmp({ max_tokens: 1.5 }), 'max_tokens', /positive integer/],
  ['max_tokens a string', 'cmp', cmp({ max_tokens: '16' }), 'max_tokens', /"max_tokens" must be a positive integer \(got "16"\)/],
  ['max_completion_tokens negative', 'chat', chat({ max_completion_tokens: -1 }), 'max_completion_tokens', /positive integer/],
  ['temperature above 2', 'cmp', cmp({ temperature: 2.5 }), 'temperature', /"temperature" must be a number from 0 to 2 \(got 2.5\)/],
  ['temperature negative', 'chat', chat({ temperature: -0.1 }), 'temperature', /from 0 to 2/],
  ['temperature a string', 'chat', chat({ temperature: 'hot' }), 'temperature', /"temperature" must be a number from 0 to 2 \(got "hot"\)/],
  ['temperature NaN', 'chat', chat({ temperature: NaN }), 'temperature', /"temperature" must be a number/],
  ['temperature Infinity', 'chat', chat({ temperature: Infinity }), 'temperature', /"temperature" must be a number/],
  ['top_p 0', 'cmp', cmp({ top_p: 0 }), 'top_p', /"top_p" must be a number greater than 0 and at most 1/],
  ['top_p above 1', 'cmp', cmp({ top_p: 1.01 }), 'top_p', /"top_p"/],
  ['top_k negative', 'cmp', cmp({ top_k: -1 }), 'top_k', /"top_k" must be an integer ≥ 0/],
  ['top_k fractional', 'chat', chat({ top_k: 2.5 }), 'top_k', /"top_k"/],
  ['seed fractional', 'cmp', cmp({ seed: 1.5 }), 'seed', /"seed" must be an integer/],
  ['seed unsafe', 'cmp', cmp({ seed: 2 ** 60 }), 'seed', /"seed" must be an integer/],
  ['seed a string', 'chat', chat({ seed: '42' }), 'seed', /"seed"/],
  ['presence_penalty out of range', 'cmp', cmp({ presence_penalty: 2.1 }), 'presence_penalty', /"presence_penalty" must be a number from -2 to 2/],
  ['frequency_penalty out of range', 'chat', chat({ frequency_penalty: -3 }), 'frequency_penalty', /"frequency_penalty" must be a number from -2 to 2/],
  ['stop: five strings', 'cmp', cmp({ stop: ['a', 'b', 'c', 'd', 'e'] }), 'stop', /"stop" holds 5 strings; at most 4/],
  ['stop: an empty string', 'cmp', cmp({ stop: ['a', ''] }), 'stop[1]', /"stop\[1\]" must not be empty/],
  ['stop: an empty single string', 'chat', chat({ stop: '' }), 'stop', /"stop" must not be empty/],
  ['stop: too long', 'chat', chat({ stop: ['x'.repeat(257)] }), 'stop[0]', /257 characters long; at most 256/],
  ['stop: a number', 'chat', chat({ stop: 7 }), 'stop', /"stop" must be a string or an array/],
  ['stop: numbers in the array', 'chat', chat({ stop: ['a', 1] }), 'stop', /"stop" must be a string or an array/],
  ['n = 2', 'cmp', cmp({ n: 2 }), 'n', /"n" must be 1 \(got 2\): one choice per request/],
  ['n = 0', 'chat', chat({ n: 0 }), 'n', /"n" must be 1/],
  ['stream not a boolean', 'chat', chat({ stream: 'yes' }), 'stream', /"stream" must be true or false/],
  ['stream_options unknown key', 'chat', chat({ stream: true, stream_options: { include_usage: true, extra: 1 } }), 'stream_options.extra', /unknown field "stream_options.extra"/],
  ['stream_options.include_usage not a boolean', 'chat', chat({ stream: true, stream_options: { include_usage: 'yes' } }), 'stream_options.include_usage', /"stream_options.include_usage" must be true or false/],
  ['user not a string', 'cmp', cmp({ user: 5 }), 'user', /"user" must be a string/],
  ['unknown field', 'cmp', cmp({ temprature: 0.5 }), 'temprature', /unknown field "temprature"/],
  ['chat field on completions', 'cmp', cmp({ messages: [] }), 'messages', /unknown field "messages"/],
  ['completions field on chat', 'chat', chat({ prompt: 'x' }), 'prompt', /unknown field "prompt"/],
  ['logprobs on completions', 'cmp', cmp({ logprobs: 5 }), 'logprobs', /"logprobs" is not supported/],
  ['echo true', 'cmp', cmp({ echo: true }), 'echo', /"echo" is not supported/],
  ['suffix', 'cmp', cmp({ suffix: 'end' }), 'suffix', /"suffix" is not supported/],
  ['best_of 3', 'cmp', cmp({ best_of: 3 }), 'best_of', /"best_of" is not supported/],
  ['logit_bias', 'cmp', cmp({ logit_bias: { '50256': -100 } }), 'logit_bias', /"logit_bias" is not supported/],
  ['logprobs on chat', 'chat', chat({ logprobs: true }), 'logprobs', /"logprobs" is not supported/],
  ['top_logprobs', 'chat', chat({ top_logprobs: 3 }), 'top_logprobs', /"top_logprobs" is not supported/],
  ['tools', 'chat', chat({ tools: [{ type: 'function', function: { name: 'f' } }] }), 'tools', /"tools" is not supported/],
  ['tool_choice', 'chat', chat({ tool_choice: 'auto' }), 'tool_choice', /"tool_choice" is not supported/],
  ['response_format json', 'chat', chat({ response_format: { type: 'json_object' } }), 'response_format', /"response_format" is not supported/],
  ['messages missing', 'chat', { model: 'm' }, 'messages', /"messages" is required/],
  ['messages empty', 'chat', chat({ messages: [] }), 'messages', /"messages" must hold at least one message/],
  ['messages not an array', 'chat', chat({ messages: 'hi' }), 'messages', /"messages" must be an array/],
  ['a message not an object', 'chat', chat({ messages: ['hi'] }), 'messages[0]', /"messages\[0\]" must be an object/],
  ['role missing', 'chat', chat({ messages: [{ content: 'x' }] }), 'messages[0].role', /"messages\[0\].role" is required/],
  ['role unknown', 'chat', chat({ messages: [{ role: 'robot', content: 'x' }] }), 'messages[0].role', /must be "system", "user" or "assistant" \(got "robot"\)/],
  ['tool role', 'chat', chat({ messages: [user('x'), { role: 'tool', content: '42' }] }), 'messages[1].role', /tool messages are not supported/],
  ['content missing', 'chat', chat({ messages: [{ role: 'user' }] }), 'messages[0].content', /"messages\[0\].content" is required/],
  ['content null', 'chat', chat({ messages: [{ role: 'assistant', content: null }] }), 'messages[0].content', /must be a string or an array of text parts/],
  ['image part', 'chat', chat({ messages: [user([{ type: 'text', text: 'what is it?' }, { type: 'image_url', image_url: { url: 'https://x/y.png' } }])] }), 'messages[0].content[1].type', /"image_url" parts are not supported: only "text" parts/],
  ['audio part', 'chat', chat({ messages: [user([{ type: 'input_audio', input_audio: {} }])] }), 'messages[0].content[0].type', /"input_audio" parts are not supported/],
  ['text part without text', 'chat', chat({ messages: [user([{ type: 'text' }])] }), 'messages[0].content[0].text', /is required/],
  ['text part with an extra field', 'chat', chat({ messages: [user([{ type: 'text', text: 'x', cache_control: {} }])] }), 'messages[0].content[0].cache_control', /is not a field of a text part/],
  ['tool calls in a message', 'chat', chat({ messages: [{ role: 'assistant', content: 'x', tool_calls: [{ id: 'c' }] }] }), 'messages[0].tool_calls', /"messages\[0\].tool_calls" is not supported/],
  ['unknown message field', 'chat', chat({ messages: [{ role: 'user', content: 'x', mood: 'happy' }] }), 'messages[0].mood', /unknown field "messages\[0\].mood"/],
];

test('refusals: a 400 naming the field, recorded as the OpenAI param', () => {
  for (const [name, route, body, param, re] of REFUSALS) {
    const e = refusal(route === 'cmp' ? parseCompletionRequest : parseChatRequest, body);
    assert.match(e.message, re, name);
    assert.equal(paramOf(e), param, `${name}: param`);
    assert.equal(openAiErrorBody(e).error.param, param, `${name}: body param`);
    assert.equal(e.problems.length, 1, `${name}: one problem (${e.problems.join(' | ')})`);
  }
});

test('every problem is listed in one error; the param is the first', () => {
  const e = refusal(parseCompletionRequest, { model: 'm', prompt: [1, 2], temperature: 9, n: 3, wat: true, echo: true });
  assert.equal(e.problems.length, 5, e.problems.join(' | '));
  assert.match(e.message, /^invalid completions request: \(1\) /);
  for (const field of ['temperature', 'n', 'prompt', 'echo', 'wat']) assert.match(e.message, new RegExp(`"${field}"`));
  assert.equal(paramOf(e), 'temperature');
});

test('a body that is not an object is a 400 without a param', () => {
  for (const body of [null, 'text', 42, [], undefined]) {
    for (const parse of [parseCompletionRequest, parseChatRequest]) {
      const e = refusal(parse, body);
      assert.match(e.message, /the body must be a JSON object/);
      assert.equal(paramOf(e), null);
    }
  }
});

/** Starts a server that records each JSON body and answers 400 with an OpenAI error body. */
async function recorder(): Promise<{ server: Server; url: string; bodies: unknown[] }> {
  const bodies: unknown[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify(openAiErrorBody(new AppError('BAD_REQUEST', 'recorded'))));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, bodies };
}

test('what the official openai SDK sends parses', async () => {
  const { server, url, bodies } = await recorder();
  try {
    const client = new OpenAI({ apiKey: 'x', baseURL: url, maxRetries: 0 });
    const calls: Array<() => Promise<unknown>> = [
      () => client.completions.create({ model: 'translate-it', prompt: 'Hello', max_tokens: 8, temperature: 0.2, top_p: 0.9, seed: 1, stop: ['\n'], presence_penalty: 0.5, frequency_penalty: 0.1, n: 1, user: 'u' }),
      () => client.completions.create({ model: 'translate-it', prompt: 'Hello', stream: true, stream_options: { include_usage: true } }),
      () => client.chat.completions.create({ model: 'translate-it', messages: [{ role: 'system', content: 'Traduci.' }, { role: 'user', content: [{ type: 'text', text: 'Good morning' }] }], max_completion_tokens: 12, stop: 'END', seed: 7 }),
      () => client.chat.completions.create({ model: 'translate-it', messages: [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: 'Hi' }], stream: true, stream_options: { include_usage: true }, temperature: 0 }),
    ];
    for (const call of calls) {
      await assert.rejects(call(), (e: unknown) => e instanceof OpenAI.BadRequestError && e.message.includes('recorded'));
    }
    assert.equal(bodies.length, calls.length);
    const [c1, c2, ch1, ch2] = bodies;
    assert.deepEqual(parseCompletionRequest(c1), {
      model: 'translate-it', prompt: 'Hello', maxTokens: 8,
      sampling: { temperature: 0.2, topP: 0.9, topK: 0, presencePenalty: 0.5, frequencyPenalty: 0.1, seed: 1 },
      stop: ['\n'], stream: false, includeUsage: false,
    });
    assert.deepEqual({ ...parseCompletionRequest(c2), sampling: null }, { model: 'translate-it', prompt: 'Hello', maxTokens: null, sampling: null, stop: [], stream: true, includeUsage: true });
    const r3 = parseChatRequest(ch1);
    assert.deepEqual(r3.messages, [{ role: 'system', content: 'Traduci.' }, { role: 'user', content: 'Good morning' }]);
    assert.equal(r3.maxTokens, 12);
    assert.deepEqual(r3.stop, ['END']);
    assert.equal(r3.sampling.seed, 7);
    const r4 = parseChatRequest(ch2);
    assert.equal(r4.messages[0]!.role, 'system');
    assert.equal(r4.sampling.temperature, 0);
    assert.equal(r4.includeUsage, true);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('any JSON body either parses or is a BAD_REQUEST (never another error)', (t) => {
  const keys = ['model', 'prompt', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'top_k', 'seed', 'stop', 'n', 'stream', 'stream_options', 'presence_penalty', 'frequency_penalty', 'logprobs', 'tools', 'response_format', 'user', 'other'];
  const value = fc.oneof(fc.jsonValue(), fc.constantFrom('m', 1, 0.5, [], {}, ['x'], [user('x')], [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'image_url' }] }]));
  fc.assert(fc.property(fc.dictionary(fc.constantFrom(...keys), value), fc.boolean(), (body, isChat) => {
    try {
      const r = (isChat ? parseChatRequest : parseCompletionRequest)(body);
      assert.equal(typeof r.model, 'string');
    } catch (e) {
      assert.ok(e instanceof AppError && e.code === 'BAD_REQUEST', String(e));
      assert.ok(e.problems.length >= 1);
    }
  }), propertyParams(t, 20261128, 500));
});
