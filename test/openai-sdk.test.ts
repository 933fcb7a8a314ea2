/**
 * Every OpenAI-compatible route through the official `openai` SDK against the real server
 * (issue 14 item 5): models.list, models.retrieve (base, alias-free adapters, unknown ids),
 * embeddings.create (the SDK's default base64 and explicit floats), and the error shape the SDK
 * parses (status, `code`, message).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { DEMO_ADAPTERS, getJson, startTestServer, type TestServer } from './helpers/http-harness.js';

describe('OpenAI SDK against the real server', () => {
  let t: TestServer;
  let client: OpenAI;
  let base: string;
  before(async () => {
    t = await startTestServer({ maxWaitMs: 2 });
    base = t.s.services.manifest.baseModel;
    // No retries: a 5xx or 429 must show, not be retried away.
    client = new OpenAI({ apiKey: 'not-needed', baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 30_000 });
  });
  after(async () => { await t?.stop(); });

  test('models.list: the base first, then every adapter with the base as parent', async () => {
    const models: OpenAI.Models.Model[] = [];
    for await (const m of client.models.list()) models.push(m);
    assert.equal(models[0]!.id, base);
    assert.deepEqual(models.slice(1).map((m) => m.id).sort(), [...(await getJson(`${t.url}/v1/adapters`)).body.data.map((a: { id: string }) => a.id)].sort());
    for (const m of models) {
      assert.equal(m.object, 'model');
      assert.equal(m.owned_by, 'adapterhost');
      assert.equal(typeof m.created, 'number');
    }
  });

  test('models.retrieve: the base and each demo adapter', async () => {
    const b = await client.models.retrieve(base);
    assert.equal(b.id, base);
    assert.equal(b.object, 'model');
    assert.equal((b as unknown as { parent: unknown }).parent, null);
    for (const id of DEMO_ADAPTERS) {
      const m = await client.models.retrieve(id);
      assert.equal(m.id, id);
      assert.equal(m.object, 'model');
      assert.equal((m as unknown as { parent: unknown }).parent, base);
    }
  });

  test('models.retrieve of an unknown model: NotFoundError, status 404, code MODEL_NOT_FOUND', async () => {
    for (const id of ['nope', 'org/model', 'lang2']) {
      await assert.rejects(client.models.retrieve(id), (e: unknown) => {
        assert.ok(e instanceof OpenAI.NotFoundError, String(e));
        assert.equal(e.status, 404);
        assert.equal(e.code, 'MODEL_NOT_FOUND');
        assert.match(e.message, /neither a base model \(adapterhost-demo-bert\) nor an adapter/);
        return true;
      });
    }
  });

  test('embeddings.create: the SDK\'s default (base64) equals explicit floats, unit length, one per input', async () => {
    for (const model of [base, 'lang']) {
      const input = ['Das Leben ist schön.', 'hello world'];
      const def = await client.embeddings.create({ model, input });
      const floats = await client.embeddings.create({ model, input, encoding_format: 'float' });
      assert.equal(def.object, 'list');
      assert.equal(def.model, model);
      assert.equal(def.data.length, 2);
      assert.ok(def.usage.prompt_tokens > 0);
      assert.equal(def.usage.total_tokens, def.usage.prompt_tokens);
      def.data.forEach((d, i) => {
        assert.equal(d.index, i);
        assert.equal(d.object, 'embedding');
        assert.equal(d.embedding.length, t.s.services.manifest.hiddenSize);
        assert.deepEqual(d.embedding, floats.data[i]!.embedding);
        assert.ok(Math.abs(Math.hypot(...d.embedding) - 1) < 1e-4);
      });
    }
    const one = await client.embeddings.create({ model: 'spam', input: 'a single string' });
    assert.equal(one.data.length, 1);
  });

  test('embeddings.create errors: unknown model → NotFoundError MODEL_NOT_FOUND; dimensions → BadRequestError', async () => {
    await assert.rejects(client.embeddings.create({ model: 'no-such-model', input: 'x' }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError, String(e));
      assert.equal(e.code, 'MODEL_NOT_FOUND');
      return true;
    });
    await assert.rejects(client.embeddings.create({ model: base, input: 'x', dimensions: 8 }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.status, 400);
      assert.equal(e.code, 'BAD_REQUEST');
      assert.match(e.message, /dimensions/);
      return true;
    });
  });
});
