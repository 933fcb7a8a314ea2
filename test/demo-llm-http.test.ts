/**
 * The product as shipped: `npm start`'s defaults serve the demo encoder and the demo decoder
 * together; the generative adapters answer through the official `openai` client, streamed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { loadConfig } from '../src/config.js';
import { startServer, type RunningServer } from '../src/serve.js';

describe('demo encoder + demo decoder in one server (the defaults)', () => {
  let s: RunningServer;
  let client: OpenAI;
  before(async () => {
    // The defaults of --model-dir / --adapters-dir, as `npm start` uses them (the repository root is the cwd under npm test).
    s = await startServer(loadConfig([], {}, { port: 0, logLevel: 'silent', threads: 1 }));
    await s.ready;
    client = new OpenAI({ apiKey: 'unused', baseURL: `${s.url}/v1`, maxRetries: 0, timeout: 120_000 });
  });
  after(async () => { await s?.close(); });

  test('both bases and all their adapters are served', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    for (const id of ['adapterhost-demo-bert', 'spam', 'adapterhost-demo-llama', 'summarize', 'translate-it', 'riassumi']) assert.ok(ids.includes(id), id);
    const pred = await fetch(`${s.url}/v1/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ adapter_id: 'spam', inputs: 'Are we still on for lunch tomorrow?' }) });
    assert.equal(pred.status, 200);
  });

  test('translate-it streams Italian through the openai client; the deltas join to the non-streamed answer', async () => {
    const messages = [{ role: 'user' as const, content: 'library for handling XML files - development files' }];
    const stream = await client.chat.completions.create({ model: 'translate-it', messages, temperature: 0, max_tokens: 40, stream: true });
    const deltas: string[] = [];
    for await (const c of stream) deltas.push(c.choices[0]?.delta.content ?? '');
    const streamed = deltas.join('');
    assert.ok(deltas.filter(Boolean).length > 2, 'several deltas');
    assert.ok(!streamed.includes('\uFFFD'), 'no broken characters');
    const full = await client.chat.completions.create({ model: 'translate-it', messages, temperature: 0, max_tokens: 40 });
    assert.equal(streamed, full.choices[0]!.message.content);
    assert.match(streamed, /\b(di|per|della|dello|delle|il|la|libreria|sviluppo)\b/i, `Italian: ${streamed}`);
    assert.notEqual(streamed.trim().toLowerCase(), messages[0]!.content.toLowerCase());
  });

  test('summarize answers a long description with a short one; the base alone is not the adapter', async () => {
    const long = 'The GNU Image Manipulation Program is a versatile graphics manipulation package. It supports many file formats and has a plug-in interface.\nThis package contains the documentation in HTML format.';
    const a = await client.chat.completions.create({ model: 'summarize', messages: [{ role: 'user', content: long }], temperature: 0, max_tokens: 40 });
    const b = await client.chat.completions.create({ model: 'adapterhost-demo-llama', messages: [{ role: 'user', content: long }], temperature: 0, max_tokens: 40 });
    const text = a.choices[0]!.message.content ?? '';
    assert.equal(a.choices[0]!.finish_reason, 'stop', `the adapter ends its answer: ${text}`);
    assert.ok(text.length > 3 && text.length < long.length / 2, text);
    assert.notEqual(text, b.choices[0]!.message.content);
  });
});
