/** Admin routes end to end: auth, upload (multipart, caps, pickle refusal), replace, delete. */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ADAPTERS_DIR, ADMIN_TOKEN, getJson, multipart, postJson, rawRequest, startTestServer, type Part, type TestServer } from './helpers/http-harness.js';

const GERMAN = 'Das ist ein schöner Tag und wir gehen heute in den Park.';
const SPAMMY = 'Win a free cruise now, click here to claim your prize!';

async function adapterParts(id: string): Promise<Part[]> {
  return [
    { name: 'adapter_config', filename: 'adapter_config.json', data: await readFile(path.join(ADAPTERS_DIR, id, 'adapter_config.json')) },
    { name: 'adapter_model', filename: 'adapter_model.safetensors', data: await readFile(path.join(ADAPTERS_DIR, id, 'adapter_model.safetensors')) },
  ];
}

async function put(url: string, id: string, parts: Part[], token: string | null = ADMIN_TOKEN): Promise<{ status: number; body: any; headers: Headers }> {
  const { body, contentType } = multipart(parts);
  const headers: Record<string, string> = { 'content-type': contentType };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${url}/v1/adapters/${id}`, { method: 'PUT', headers, body });
  return { status: res.status, body: res.status === 204 ? null : await res.json(), headers: res.headers };
}

describe('admin routes disabled without a token', () => {
  let t: TestServer;
  before(async () => { t = await startTestServer({ adminToken: '' }); });
  after(async () => { await t?.stop(); });

  test('PUT and DELETE are 403 ADMIN_DISABLED, whatever the header', async () => {
    for (const token of [null, 'anything-at-all-0123456789']) {
      const r = await put(t.url, 'x1', await adapterParts('spam'), token);
      assert.equal(r.status, 403);
      assert.equal(r.body.error.code, 'ADMIN_DISABLED');
      assert.match(r.body.error.message, /ADAPTERHOST_ADMIN_TOKEN/);
    }
    const d = await fetch(`${t.url}/v1/adapters/spam`, { method: 'DELETE' });
    assert.equal(d.status, 403);
    assert.equal((await getJson(`${t.url}/v1/adapters/spam`)).status, 200, 'nothing was deleted');
  });
});

describe('admin routes with a token', () => {
  let t: TestServer;
  before(async () => { t = await startTestServer({ adminToken: ADMIN_TOKEN }); });
  after(async () => { await t?.stop(); });

  test('missing header → 401 with a Bearer challenge; wrong token → 401; right token works', async () => {
    const parts = await adapterParts('spam');
    const missing = await put(t.url, 'auth-check', parts, null);
    assert.equal(missing.status, 401);
    assert.equal(missing.body.error.code, 'UNAUTHORIZED');
    assert.match(missing.headers.get('www-authenticate') ?? '', /^Bearer/);
    const wrong = await put(t.url, 'auth-check', parts, 'wrong-token-0123456789abcdef');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.code, 'UNAUTHORIZED');
    const short = await put(t.url, 'auth-check', parts, 'x');
    assert.equal(short.status, 401);
    const basic = await fetch(`${t.url}/v1/adapters/auth-check`, { method: 'DELETE', headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    assert.equal(basic.status, 401);
    const right = await put(t.url, 'auth-check', parts);
    assert.equal(right.status, 201, JSON.stringify(right.body));
  });

  test('upload lang as lang-copy, predict at once, replace with spam (200), delete (204), then 404', async () => {
    const langAnswer = await postJson(`${t.url}/v1/predict`, { adapter_id: 'lang', inputs: GERMAN });
    const created = await put(t.url, 'lang-copy', await adapterParts('lang'));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.created, true);
    assert.equal(created.body.adapter.id, 'lang-copy');
    assert.match(created.body.adapter.sha256, /^[0-9a-f]{64}$/);
    assert.equal(typeof created.body.adapter.stored_at, 'string');

    const copy = await postJson(`${t.url}/v1/predict`, { adapter_id: 'lang-copy', inputs: GERMAN });
    assert.equal(copy.status, 200);
    assert.equal(copy.body.predictions[0][0].label, 'de');
    assert.ok(copy.body.predictions[0].length > 1, 'every label is compared');
    assert.equal(copy.body.predictions[0].length, langAnswer.body.predictions[0].length);
    copy.body.predictions[0].forEach((p: { label: string; score: number }, i: number) => {
      assert.equal(p.label, langAnswer.body.predictions[0][i].label);
      assert.ok(Math.abs(p.score - langAnswer.body.predictions[0][i].score) < 1e-5);
    });
    const models = await getJson(`${t.url}/v1/models`);
    assert.ok(models.body.data.some((m: { id: string }) => m.id === 'lang-copy'));

    const replaced = await put(t.url, 'lang-copy', await adapterParts('spam'));
    assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
    assert.equal(replaced.body.created, false);
    const asSpam = await postJson(`${t.url}/v1/predict`, { adapter_id: 'lang-copy', inputs: SPAMMY });
    assert.deepEqual(asSpam.body.predictions[0].map((p: { label: string }) => p.label).sort(), ['ham', 'spam']);

    const del = await fetch(`${t.url}/v1/adapters/lang-copy`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(del.status, 204);
    const gone = await postJson(`${t.url}/v1/predict`, { adapter_id: 'lang-copy', inputs: GERMAN });
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.code, 'ADAPTER_NOT_FOUND');
    assert.equal((await getJson(`${t.url}/v1/adapters/lang-copy`)).status, 404);
    const again = await fetch(`${t.url}/v1/adapters/lang-copy`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(again.status, 404);
  });

  test('upload refusals: pickle, wrong parts, fields, wrong type, bad id, invalid adapter', async () => {
    const [config, model] = await adapterParts('spam');
    const pickleBytes = Buffer.concat([Buffer.from([0x80, 0x04, 0x95]), Buffer.alloc(64, 1)]);
    const zipBytes = Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(64, 1)]);
    const cases: Array<[string, Part[], number, string, RegExp?]> = [
      ['pickle by name', [config!, { ...model!, filename: 'adapter_model.bin' }], 422, 'INVALID_UPLOAD', /safetensors/],
      ['pickle by name (.pt)', [config!, { ...model!, filename: 'weights.pt' }], 422, 'INVALID_UPLOAD', /safetensors/],
      ['pickle by content', [config!, { ...model!, data: pickleBytes }], 422, 'INVALID_UPLOAD', /safetensors/],
      ['torch zip by content', [config!, { ...model!, data: zipBytes }], 422, 'INVALID_UPLOAD', /safetensors/],
      ['missing model part', [config!], 422, 'INVALID_UPLOAD', /adapter_model/],
      ['duplicate part', [config!, config!], 422, 'INVALID_UPLOAD', /twice/],
      ['unknown part', [config!, { ...model!, name: 'weights' }], 422, 'INVALID_UPLOAD', /unknown part/],
      ['three parts', [config!, model!, { ...config!, name: 'extra' }], 422, 'INVALID_UPLOAD'],
      ['model that is not safetensors', [config!, { ...model!, data: Buffer.from('{"not":"safetensors"}') }], 422, 'INVALID_SAFETENSORS'],
      ['config that is not JSON', [{ ...config!, data: Buffer.from('not json') }, model!], 422, 'INVALID_ADAPTER_CONFIG'],
    ];
    for (const [name, parts, status, code, message] of cases) {
      const r = await put(t.url, 'refused', parts);
      assert.equal(r.status, status, `${name}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code, name);
      if (message) assert.match(r.body.error.message, message, name);
    }
    // A text field instead of a file part.
    const boundary = 'xyzboundary';
    const fieldBody = `--${boundary}\r\nContent-Disposition: form-data; name="adapter_config"\r\n\r\n{}\r\n--${boundary}--\r\n`;
    const field = await fetch(`${t.url}/v1/adapters/refused`, {
      method: 'PUT', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': `multipart/form-data; boundary=${boundary}` }, body: fieldBody,
    });
    assert.equal(field.status, 422);
    assert.equal(((await field.json()) as { error: { code: string } }).error.code, 'INVALID_UPLOAD');

    const json = await fetch(`${t.url}/v1/adapters/refused`, { method: 'PUT', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: '{"url":"http://example.com/x.safetensors"}' });
    assert.equal(json.status, 415);

    const badId = await put(t.url, 'Bad..ID', [config!, model!]);
    assert.equal(badId.status, 400);
    assert.equal(badId.body.error.code, 'INVALID_ADAPTER_ID');
    assert.equal((await getJson(`${t.url}/v1/adapters/refused`)).status, 404, 'nothing refused became visible');
  });
});

describe('upload size cap', () => {
  let t: TestServer;
  before(async () => { t = await startTestServer({ adminToken: ADMIN_TOKEN, maxUploadMb: 0.01 }); });
  after(async () => { await t?.stop(); });

  test('413 past --max-upload-mb, with Content-Length and chunked', async () => {
    const { body, contentType } = multipart(await adapterParts('spam')); // ~70 KB > 10 KB cap
    const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': contentType };
    for (const chunked of [false, true]) {
      const r = await rawRequest(`${t.url}/v1/adapters/too-big`, { method: 'PUT', headers, body, chunked });
      assert.equal(r.status, 413, `chunked=${chunked}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'PAYLOAD_TOO_LARGE');
      assert.match(r.body.error.message, /10485 bytes/);
    }
    assert.equal((await getJson(`${t.url}/v1/adapters/too-big`)).status, 404);
    assert.equal((await getJson(`${t.url}/healthz`)).status, 200, 'the server is fine');
  });
});
