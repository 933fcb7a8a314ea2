/**
 * Request bodies and auth at the HTTP edge: fields naming URLs/paths are refused and never
 * fetched, malformed and ill-typed bodies are 4xx, limits hold, unknown adapters are a 404
 * (never the base), admin rights are only for admin routes, and a property test over random
 * JSON bodies never sees a 500 or a hang.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import {
  assertLangServes, deleteAdapter, demoFiles, GERMAN, postJson, predict, putAdapter, request, startRel, TOKEN, type Reply, type RelServer,
} from './helpers/reliability-kit.js';
import { propertyParams } from './helpers/property-seed.js';

const isError = (r: Reply, status: number | number[], code?: string | string[]) => {
  const statuses = Array.isArray(status) ? status : [status];
  assert.ok(statuses.includes(r.status), `status ${r.status}, expected ${statuses.join('|')}: ${r.text.slice(0, 300)}`);
  assert.deepEqual(Object.keys(r.body ?? {}), ['error'], r.text.slice(0, 300));
  assert.equal(typeof r.body.error.message, 'string');
  if (code !== undefined) {
    const codes = Array.isArray(code) ? code : [code];
    assert.ok(codes.includes(r.body.error.code), `code ${r.body.error.code}, expected ${codes.join('|')}`);
  }
};

/**
 * A body whose Content-Encoding does not decode: body-parser passes on zlib's error wrapped by
 * http-errors (status 400, expose true) but without a `type`; src/http/errors.ts (fromBodyParser)
 * maps such 4xx errors to 400 BAD_REQUEST (they were once a 500 INTERNAL).
 */

const rawPost = (url: string, route: string, body: string | Buffer, headers: Record<string, string> = {}) =>
  request(url, { method: 'POST', path: route, headers: { 'content-type': 'application/json', ...headers }, body });

describe('requests against a server with an admin token', () => {
  let t: RelServer;
  let base: string;
  // A local server standing in for anything a body might point at: it must never be called.
  let canaryHits = 0;
  let canary: http.Server;
  let canaryUrl: string;

  before(async () => {
    canary = http.createServer((_req, res) => { canaryHits++; res.end('{}'); });
    await new Promise<void>((r) => canary.listen(0, '127.0.0.1', () => r()));
    canaryUrl = `http://127.0.0.1:${(canary.address() as AddressInfo).port}`;
    t = await startRel({ adminToken: TOKEN, maxWaitMs: 0 });
    base = (await request(t.url, { path: '/v1/models' })).body.data[0].id as string;
  });
  after(async () => {
    await t?.stop();
    await new Promise<void>((r) => canary.close(() => r()));
  });

  test('url / path / file fields → 400 naming the field; the named URL is never fetched', async () => {
    const targets = [`${canaryUrl}/adapter_model.safetensors`, '/etc/passwd', `file:///etc/passwd`, '../../adapters/lang'];
    for (const field of ['url', 'path', 'file', 'adapter_url', 'adapter_path', 'model_url', 'weights_url']) {
      for (const target of targets) {
        const p = await postJson(t.url, '/v1/predict', { adapter_id: 'lang', inputs: 'x', [field]: target });
        isError(p, 400, 'BAD_REQUEST');
        assert.match(p.body.error.message, new RegExp(`unknown field "${field}"`));
        const e = await postJson(t.url, '/v1/embeddings', { model: 'lang', input: 'x', [field]: target });
        isError(e, 400, 'BAD_REQUEST');
        assert.match(e.body.error.message, new RegExp(`unknown field "${field}"`));
      }
    }
    // The URL in the id or model position: an invalid id / an unknown model, never a fetch.
    isError(await predict(t.url, `${canaryUrl}/x`, 'x'), 400, 'INVALID_ADAPTER_ID');
    isError(await postJson(t.url, '/v1/embeddings', { model: `${canaryUrl}/x`, input: 'x' }), 404, 'MODEL_NOT_FOUND');
    isError(await predict(t.url, 'lang', [{ url: `${canaryUrl}/x` }]), 400, 'BAD_REQUEST');
    // An upload that names a URL instead of carrying bytes.
    const put = await request(t.url, {
      method: 'PUT', path: '/v1/adapters/fetched', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ url: `${canaryUrl}/adapter_model.safetensors` }),
    });
    isError(put, 415, 'UNSUPPORTED_MEDIA_TYPE');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(canaryHits, 0, 'the server never fetched a URL from a request');
    await assertLangServes(t.url);
  });

  interface Malformed { name: string; body: string | Buffer; headers?: Record<string, string>; status?: number | number[]; code?: string; todo?: string }
  const malformed: Malformed[] = [
    { name: 'truncated object', body: '{"adapter_id": "lang",' },
    { name: 'unquoted keys', body: '{adapter_id: "lang", inputs: "x"}' },
    { name: 'single quotes', body: "{'adapter_id': 'lang', 'inputs': 'x'}" },
    { name: 'NaN literal', body: '{"adapter_id": "lang", "inputs": NaN}' },
    { name: 'trailing garbage', body: '{"adapter_id": "lang", "inputs": "x"} {"again": 1}' },
    { name: 'a bare string (strict JSON: objects and arrays only)', body: '"lang"' },
    { name: 'NUL bytes', body: Buffer.from([0x7b, 0x00, 0x00, 0x7d]) },
    // body-parser decodes leniently (U+FFFD for bad bytes): accepting that is fine, a 500 is not.
    { name: 'invalid UTF-8 in a string', body: Buffer.concat([Buffer.from('{"adapter_id":"lang","inputs":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]), status: [200, 400] },
    { name: 'empty body', body: '' },
    { name: '100k nested arrays', body: '['.repeat(100_000) + ']'.repeat(100_000) },
    { name: '100k nested objects', body: '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000) },
    { name: 'charset latin1', body: '{"adapter_id":"lang","inputs":"x"}', headers: { 'content-type': 'application/json; charset=latin1' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
    { name: 'unknown content-encoding', body: '{"adapter_id":"lang","inputs":"x"}', headers: { 'content-encoding': 'zstd' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
    { name: 'corrupt gzip', body: Buffer.from('not gzip at all'), headers: { 'content-encoding': 'gzip' } },
    { name: 'corrupt deflate', body: Buffer.from('not deflate either'), headers: { 'content-encoding': 'deflate' } },
    {
      name: 'a gzip bomb (20 MB of JSON in ~20 KB)', body: gzipSync(Buffer.from(`{"adapter_id":"lang","inputs":"${'a'.repeat(20_000_000)}"}`)),
      headers: { 'content-encoding': 'gzip' }, status: 413, code: 'PAYLOAD_TOO_LARGE',
    },
  ];
  for (const { name, body, headers, status = 400, code, todo } of malformed) {
    test(`malformed body: ${name} → ${status}`, { todo }, async () => {
      for (const route of ['/v1/predict', '/v1/embeddings']) {
        const r = await rawPost(t.url, route, body, headers);
        if (r.status === 200) assert.ok(Array.isArray(status) && status.includes(200), r.text.slice(0, 200));
        else isError(r, status, code);
      }
      await assertLangServes(t.url);
    });
  }

  const wrongTypes: Array<[string, string, unknown]> = [
    ['inputs: 5', '/v1/predict', { adapter_id: 'lang', inputs: 5 }],
    ['adapter_id: []', '/v1/predict', { adapter_id: [], inputs: 'x' }],
    ['adapter_id: 5', '/v1/predict', { adapter_id: 5, inputs: 'x' }],
    ['adapter_id: null', '/v1/predict', { adapter_id: null, inputs: 'x' }],
    ['adapter_id: {"id": "lang"}', '/v1/predict', { adapter_id: { id: 'lang' }, inputs: 'x' }],
    ['inputs: null', '/v1/predict', { adapter_id: 'lang', inputs: null }],
    ['inputs: [1, 2]', '/v1/predict', { adapter_id: 'lang', inputs: [1, 2] }],
    ['inputs: [["nested"]]', '/v1/predict', { adapter_id: 'lang', inputs: [['nested']] }],
    ['inputs: {"text": "x"}', '/v1/predict', { adapter_id: 'lang', inputs: { text: 'x' } }],
    ['inputs: []', '/v1/predict', { adapter_id: 'lang', inputs: [] }],
    ['truncate: "yes"', '/v1/predict', { adapter_id: 'lang', inputs: 'x', truncate: 'yes' }],
    ['a JSON array body', '/v1/predict', [{ adapter_id: 'lang', inputs: 'x' }]],
    ['__proto__ field', '/v1/predict', JSON.parse('{"adapter_id":"lang","inputs":"x","__proto__":{"admin":true}}')],
    ['input: 5', '/v1/embeddings', { model: 'lang', input: 5 }],
    ['model: []', '/v1/embeddings', { model: [], input: 'x' }],
    ['input: token arrays', '/v1/embeddings', { model: 'lang', input: [[101, 102]] }],
    ['encoding_format: "hex"', '/v1/embeddings', { model: 'lang', input: 'x', encoding_format: 'hex' }],
    ['dimensions: 8', '/v1/embeddings', { model: 'lang', input: 'x', dimensions: 8 }],
    ['input missing', '/v1/embeddings', { model: 'lang' }],
  ];
  test('wrong types → 400 naming the field', async () => {
    for (const [name, route, body] of wrongTypes) {
      const r = await postJson(t.url, route, body);
      assert.ok(r.status === 400, `${name}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.ok(['BAD_REQUEST', 'ADAPTER_REQUIRED', 'INVALID_ADAPTER_ID'].includes(r.body.error.code), `${name}: ${r.body.error.code}`);
      const field = /^(\w+)/.exec(name)![1]!;
      if (['inputs', 'adapter_id', 'truncate', 'input', 'model', 'encoding_format', 'dimensions'].includes(field)) {
        assert.match(r.body.error.message, new RegExp(field), `${name}: ${r.body.error.message}`);
      }
    }
    await assertLangServes(t.url);
  });

  test('an empty list is refused naming the field the client sent: "input" for embeddings, "inputs" for predict', async () => {
    const e = await postJson(t.url, '/v1/embeddings', { model: 'lang', input: [] });
    isError(e, 400, 'BAD_REQUEST');
    assert.match(e.body.error.message, /"input" must hold at least one text/);
    assert.doesNotMatch(e.body.error.message, /inputs/);
    const p = await predict(t.url, 'lang', []);
    isError(p, 400, 'BAD_REQUEST');
    assert.match(p.body.error.message, /"inputs" must hold at least one text/);
  });

  test('messages never echo unbounded input: 30,000 unknown fields, a 100,000-character id', async () => {
    const flood = Object.fromEntries(Array.from({ length: 30_000 }, (_, i) => [`field_${i}_${'x'.repeat(8)}`, 1]));
    const r = await postJson(t.url, '/v1/predict', { adapter_id: 'lang', inputs: 'hi', ...flood });
    isError(r, 400, 'BAD_REQUEST');
    assert.match(r.body.error.message, /unknown fields "field_0_x+", .* and 29990 more/);
    assert.ok(r.text.length < 2048, `${r.text.length} bytes of error`);
    const long = await postJson(t.url, '/v1/embeddings', { model: 'm'.repeat(100_000), input: 'hi' });
    assert.ok(long.status === 400 || long.status === 404, long.text.slice(0, 200));
    assert.ok(long.text.length < 2048, `${long.text.length} bytes of error`);
  });

  test('limits: 64 inputs pass, 65 are TOO_MANY_INPUTS; over-long in characters and in tokens are INPUT_TOO_LONG', async () => {
    const ok = await predict(t.url, 'lang', Array.from({ length: 64 }, (_, i) => `text ${i}`));
    assert.equal(ok.status, 200, ok.text.slice(0, 200));
    assert.equal(ok.body.predictions.length, 64);
    isError(await predict(t.url, 'lang', Array.from({ length: 65 }, () => 'x')), 400, 'TOO_MANY_INPUTS');
    isError(await postJson(t.url, '/v1/embeddings', { model: base, input: Array.from({ length: 65 }, () => 'x') }), 400, 'TOO_MANY_INPUTS');
    isError(await predict(t.url, 'lang', Array.from({ length: 10_000 }, () => 'x')), 400, 'TOO_MANY_INPUTS');

    const chars = await predict(t.url, 'lang', ['fine', 'also fine', 'y'.repeat(20_001)]);
    isError(chars, 400, 'INPUT_TOO_LONG');
    assert.match(chars.body.error.message, /input 2 has 20001 characters/);
    const words = Array.from({ length: 300 }, (_, i) => `w${i}`).join(' '); // ~1.5k characters, hundreds of tokens
    const tokens = await predict(t.url, 'lang', [words]);
    isError(tokens, 400, 'INPUT_TOO_LONG');
    assert.match(tokens.body.error.message, /tokens/);
    isError(await postJson(t.url, '/v1/embeddings', { model: 'lang', input: words }), 400, 'INPUT_TOO_LONG');
    // One body near the byte cap of many short inputs: refused by count, not parsed into work.
    isError(await predict(t.url, 'lang', Array.from({ length: 100_000 }, () => 'ab')), [400, 413]);
    await assertLangServes(t.url);
  });

  test('unknown adapter → 404 ADAPTER_NOT_FOUND, never a fallback to the base', async () => {
    for (const id of ['nope', 'lang2', 'spam-v2', base]) {
      const r = await predict(t.url, id, GERMAN);
      isError(r, 404, 'ADAPTER_NOT_FOUND');
      assert.equal(r.body.predictions, undefined);
    }
    const e = await postJson(t.url, '/v1/embeddings', { model: 'nope', input: 'x' });
    isError(e, 404, 'MODEL_NOT_FOUND');
    // A deleted adapter is unknown at once.
    assert.equal((await putAdapter(t.url, 'short-lived', demoFiles('lang'))).status, 201);
    assert.equal((await predict(t.url, 'short-lived', GERMAN)).status, 200);
    assert.equal((await deleteAdapter(t.url, 'short-lived')).status, 204);
    isError(await predict(t.url, 'short-lived', GERMAN), 404, 'ADAPTER_NOT_FOUND');
    isError(await postJson(t.url, '/v1/embeddings', { model: 'short-lived', input: 'x' }), 404, 'MODEL_NOT_FOUND');
  });

  test('admin auth: missing, malformed, wrong tokens → 401; the right one works', async () => {
    const lang = demoFiles('lang');
    isError(await putAdapter(t.url, 'auth-x', lang, null), 401, 'UNAUTHORIZED');
    for (const header of ['Bearer', 'Bearer ', `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`, TOKEN, `Bearer ${TOKEN} extra`,
      `Bearer ${TOKEN.slice(0, -1)}`, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.toUpperCase()}`, 'Bearer x']) {
      const r = await request(t.url, { method: 'DELETE', path: '/v1/adapters/lang', headers: { authorization: header } });
      isError(r, 401, 'UNAUTHORIZED');
      assert.match(String(r.headers['www-authenticate']), /^Bearer/);
    }
    assert.equal((await request(t.url, { path: '/v1/adapters/lang' })).status, 200, 'lang is still there');
    const right = await putAdapter(t.url, 'auth-x', lang);
    assert.equal(right.status, 201, right.text);
    assert.equal((await deleteAdapter(t.url, 'auth-x')).status, 204);
  });

  test('inference routes need no token, ignore one, and never take admin verbs', async () => {
    assert.equal((await predict(t.url, 'lang', GERMAN)).status, 200);
    for (const authorization of [`Bearer ${TOKEN}`, 'Bearer wrong', 'garbage']) {
      assert.equal((await postJson(t.url, '/v1/predict', { adapter_id: 'lang', inputs: GERMAN }, { authorization })).status, 200);
      assert.equal((await postJson(t.url, '/v1/embeddings', { model: 'lang', input: 'x' }, { authorization })).status, 200);
    }
    const auth = { authorization: `Bearer ${TOKEN}` };
    const attempts: Array<[string, string]> = [
      ['PUT', '/v1/predict'], ['DELETE', '/v1/predict'], ['PUT', '/v1/embeddings'], ['DELETE', '/v1/embeddings'],
      ['DELETE', '/v1/models/lang'], ['PUT', '/v1/models/lang'], ['PATCH', '/v1/adapters/lang'], ['POST', '/v1/adapters/lang'],
      ['POST', '/v1/adapters'], ['DELETE', '/v1/adapters'], ['POST', '/metrics'], ['DELETE', '/readyz'],
    ];
    for (const [method, route] of attempts) {
      const r = await request(t.url, { method, path: route, headers: { ...auth, 'content-type': 'application/json' }, body: '{}' });
      assert.ok(r.status === 404 || r.status === 405, `${method} ${route}: ${r.status}`);
    }
    assert.equal((await request(t.url, { path: '/v1/adapters/lang' })).status, 200, 'nothing was deleted or changed');
    await assertLangServes(t.url);
  });

  test('property: random JSON bodies to /v1/predict and /v1/embeddings → 200 or 4xx, never 500, never a hang', async (ctx) => {
    const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ maxLength: 20, unit: 'binary' }), fc.constantFrom(GERMAN, '', ' ', '[CLS]', '[SEP] [PAD]', '\u0000', '\ud800'));
    const value = fc.oneof(
      { weight: 3, arbitrary: text },
      { weight: 2, arbitrary: fc.array(text, { maxLength: 4 }) },
      { weight: 2, arbitrary: fc.constantFrom('lang', 'spam', 'topic', 'es-topic', base, 'nope', '../x', 'LANG', 'float', 'base64') },
      { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
      { weight: 1, arbitrary: fc.boolean() },
    );
    const key = fc.constantFrom('adapter_id', 'inputs', 'truncate', 'model', 'input', 'encoding_format', 'user', 'dimensions', 'url', 'path', 'file', '__proto__', 'constructor', 'toString', 'x');
    const inputs = fc.oneof(text, fc.array(text, { minLength: 1, maxLength: 4 }));
    // Mostly near-valid requests (each field optional, sometimes an extra one), some free-form.
    const near = <T extends Record<string, unknown>>(fields: { [K in keyof T]: fc.Arbitrary<T[K]> }, required: Array<keyof T>) =>
      fc.tuple(
        fc.oneof(fc.record(fields, { requiredKeys: required }), fc.record(fields, { requiredKeys: [] })),
        fc.dictionary(key, value, { maxKeys: 1 }),
        fc.integer({ min: 0, max: 3 }),
      ).map(([r, extra, roll]) => (roll === 0 ? { ...r, ...extra } : r));
    const nearPredict = near({ adapter_id: fc.constantFrom('lang', 'spam', 'topic', 'es-topic', base, 'nope'), inputs, truncate: fc.boolean() }, ['adapter_id', 'inputs']);
    const nearEmbed = near({ model: fc.constantFrom('lang', 'spam', base, 'nope'), input: inputs, encoding_format: fc.constantFrom('float', 'base64', 'hex'), user: text }, ['model', 'input']);
    const routes = fc.constantFrom('/v1/predict', '/v1/embeddings');
    const free = fc.oneof(fc.dictionary(key, value, { maxKeys: 5 }), fc.jsonValue({ maxDepth: 4 }));
    const request_ = fc.oneof(
      { weight: 2, arbitrary: nearPredict.map((b) => ['/v1/predict', b] as const) },
      { weight: 2, arbitrary: nearEmbed.map((b) => ['/v1/embeddings', b] as const) },
      { weight: 1, arbitrary: fc.tuple(routes, fc.oneof(nearPredict, nearEmbed)) },
      { weight: 2, arbitrary: fc.tuple(routes, free) },
    );
    let ok = 0;
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request_, async ([route, b]) => {
        const r = await request(t.url, { method: 'POST', path: route, headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) ?? 'null', timeoutMs: 10_000 });
        seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
        if (r.status === 200) {
          ok++;
          assert.ok(Array.isArray(route === '/v1/predict' ? r.body.predictions : r.body.data), r.text.slice(0, 200));
        } else {
          assert.ok(r.status >= 400 && r.status < 500, `${route} ${JSON.stringify(b).slice(0, 300)} → ${r.status} ${r.text.slice(0, 300)}`);
          assert.equal(typeof r.body?.error?.code, 'string');
        }
      }),
      { ...propertyParams(ctx, 20240607, 200), endOnFailure: true },
    );
    ctx.diagnostic(`statuses: ${JSON.stringify([...seen].sort())}`);
    assert.ok(ok > 0, `some random bodies were valid requests (statuses: ${JSON.stringify([...seen])})`);
    await assertLangServes(t.url);
  });

  test('property: random bytes as a JSON body → 400/413/415, never 500', async (ctx) => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 256 }), fc.constantFrom('/v1/predict', '/v1/embeddings'), async (bytes, route) => {
        const r = await rawPost(t.url, route, Buffer.from(bytes));
        assert.ok(r.status >= 400 && r.status < 500, `${route} ${Buffer.from(bytes).toString('hex').slice(0, 120)} → ${r.status} ${r.text.slice(0, 200)}`);
      }),
      { ...propertyParams(ctx, 7, 100), endOnFailure: true },
    );
  });
});

describe('requests against a server without an admin token', () => {
  let t: RelServer;
  before(async () => { t = await startRel({ adminToken: '' }); });
  after(async () => { await t?.stop(); });

  test('PUT and DELETE → 403 ADMIN_DISABLED with or without a token; inference works', async () => {
    const lang = demoFiles('lang');
    for (const token of [null, TOKEN, 'anything']) {
      isError(await putAdapter(t.url, 'nope', lang, token), 403, 'ADMIN_DISABLED');
      isError(await deleteAdapter(t.url, 'lang', token), 403, 'ADMIN_DISABLED');
    }
    assert.equal((await request(t.url, { path: '/v1/adapters/nope' })).status, 404);
    assert.equal((await request(t.url, { path: '/v1/adapters/lang' })).status, 200);
    await assertLangServes(t.url);
  });
});
