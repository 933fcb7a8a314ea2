/**
 * HTTP semantics (issue 14 items 6, 7, 13): 405 with Allow on known paths, deliberate OPTIONS and
 * HEAD, `Expect: 100-continue` checked against the admin token before the 100, and expected 5xx
 * outcomes logged without an error-level line.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { ADAPTERS_DIR, ADMIN_TOKEN, deferred, metricValue, multipart, rawRequest, scrape, startTestServer, type TestServer } from './helpers/http-harness.js';

describe('405, OPTIONS and HEAD', () => {
  let t: TestServer;
  before(async () => { t = await startTestServer({ adminToken: ADMIN_TOKEN }); });
  after(async () => { await t?.stop(); });

  const cases: Array<[method: string, path: string, allow: string]> = [
    ['GET', '/v1/predict', 'POST, OPTIONS'],
    ['PUT', '/v1/embeddings', 'POST, OPTIONS'],
    ['DELETE', '/v1/adapters', 'GET, HEAD, OPTIONS'],
    ['POST', '/v1/adapters/lang', 'GET, HEAD, PUT, DELETE, OPTIONS'],
    ['PATCH', '/v1/adapters/lang', 'GET, HEAD, PUT, DELETE, OPTIONS'],
    ['POST', '/healthz', 'GET, HEAD, OPTIONS'],
    ['DELETE', '/readyz', 'GET, HEAD, OPTIONS'],
    ['POST', '/metrics', 'GET, HEAD, OPTIONS'],
    ['POST', '/v1/models', 'GET, HEAD, OPTIONS'],
    ['DELETE', '/v1/models/lang', 'GET, HEAD, OPTIONS'],
  ];
  for (const [method, p, allow] of cases) {
    test(`${method} ${p} → 405 METHOD_NOT_ALLOWED, Allow: ${allow}`, async () => {
      const r = await rawRequest(`${t.url}${p}`, { method, headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') });
      assert.equal(r.status, 405, JSON.stringify(r.body));
      assert.equal(r.headers.allow, allow);
      assert.equal(r.body.error.code, 'METHOD_NOT_ALLOWED');
      assert.match(r.body.error.message, new RegExp(`^${method} is not allowed on ${p.replace(/\//g, '\\/')}`));
      assert.match(String(r.headers['content-type']), /^application\/json/);
    });
  }

  test('OPTIONS on a known path → 204 with Allow and no body; on an unknown path → 404 in JSON', async () => {
    const r = await rawRequest(`${t.url}/v1/adapters/lang`, { method: 'OPTIONS' });
    assert.equal(r.status, 204);
    assert.equal(r.headers.allow, 'GET, HEAD, PUT, DELETE, OPTIONS');
    assert.equal(r.body, null);
    const p = await rawRequest(`${t.url}/v1/predict`, { method: 'OPTIONS' });
    assert.equal(p.status, 204);
    assert.equal(p.headers.allow, 'POST, OPTIONS');
    const unknown = await rawRequest(`${t.url}/v2/nothing`, { method: 'OPTIONS' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'ROUTE_NOT_FOUND');
  });

  test('HEAD: GET without a body where GET exists; 405 (no body) where it does not', async () => {
    for (const p of ['/healthz', '/readyz', '/v1/models', '/v1/adapters/lang', '/metrics']) {
      const get = await rawRequest(`${t.url}${p}`, { method: 'GET' });
      const head = await rawRequest(`${t.url}${p}`, { method: 'HEAD' });
      assert.equal(head.status, get.status, p);
      assert.equal(head.body, null, p);
      assert.equal(head.headers['content-type'], get.headers['content-type'], p);
    }
    const r = await rawRequest(`${t.url}/v1/predict`, { method: 'HEAD' });
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'POST, OPTIONS');
  });

  test('unknown paths stay 404 ROUTE_NOT_FOUND; 405s are counted under the route pattern', async () => {
    const r = await rawRequest(`${t.url}/v1/nothing/here`, { method: 'DELETE' });
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, 'ROUTE_NOT_FOUND');
    const text = await scrape(t.url);
    assert.ok(metricValue(text, 'adapterhost_http_requests_total', { route: '/v1/predict', method: 'GET', status: '405' }) >= 1);
    assert.ok(metricValue(text, 'adapterhost_http_requests_total', { route: '/v1/adapters/:id', method: 'OPTIONS', status: '204' }) >= 1);
  });
});

/** What a raw connection received: everything, as text, until it closed or `ms` passed. */
interface RawExchange { text: string; closed: boolean }

/**
 * Sends `head` (request line and headers) and waits for the server's first bytes; `onFirst`
 * decides from them whether to send `body`. Resolves when the connection closes, or `ms` after
 * the last byte arrived.
 */
function expectContinue(url: string, head: string, body: Buffer, ms = 1500): Promise<RawExchange> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname);
    let text = '';
    let sentBody = false;
    let timer: NodeJS.Timeout | null = null;
    const finish = (closed: boolean) => {
      if (timer) clearTimeout(timer);
      sock.destroy();
      resolve({ text, closed });
    };
    const arm = () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => finish(false), ms);
    };
    sock.on('connect', () => {
      sock.write(head);
      arm();
    });
    sock.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (!sentBody && text.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
        sentBody = true;
        sock.write(body);
      }
      arm();
    });
    sock.on('end', () => finish(true));
    sock.on('error', (e) => (text ? finish(true) : reject(e)));
  });
}

async function langUpload(): Promise<{ body: Buffer; contentType: string }> {
  return multipart([
    { name: 'adapter_config', filename: 'adapter_config.json', data: await readFile(path.join(ADAPTERS_DIR, 'lang', 'adapter_config.json')) },
    { name: 'adapter_model', filename: 'adapter_model.safetensors', data: await readFile(path.join(ADAPTERS_DIR, 'lang', 'adapter_model.safetensors')) },
  ]);
}

function putHead(t: TestServer, id: string, contentType: string, length: number, authorization?: string): string {
  const auth = authorization === undefined ? '' : `Authorization: ${authorization}\r\n`;
  return `PUT /v1/adapters/${id} HTTP/1.1\r\nHost: ${new URL(t.url).host}\r\nContent-Type: ${contentType}\r\nContent-Length: ${length}\r\nExpect: 100-continue\r\n${auth}\r\n`;
}

describe('Expect: 100-continue on uploads', () => {
  let t: TestServer;
  before(async () => { t = await startTestServer({ adminToken: ADMIN_TOKEN }); });
  after(async () => { await t?.stop(); });

  test('no token, a malformed header, a wrong token → 401 without a 100; the body is never read; the connection closes', async () => {
    const { body, contentType } = await langUpload();
    for (const authorization of [undefined, 'Basic dXNlcjpwYXNz', 'Bearer not-the-admin-token-at-all']) {
      const r = await expectContinue(t.url, putHead(t, 'expect-refused', contentType, body.length, authorization), body);
      assert.doesNotMatch(r.text, /100 Continue/, String(authorization));
      assert.match(r.text, /^HTTP\/1\.1 401 /, String(authorization));
      assert.match(r.text, /"code":"UNAUTHORIZED"/);
      assert.match(r.text, /\r\nconnection: close\r\n/i);
      assert.equal(r.closed, true, 'the server closed the connection');
    }
    assert.equal((await rawRequest(`${t.url}/v1/adapters/expect-refused`, { method: 'GET' })).status, 404, 'nothing was stored');
  });

  test('the gate sees the path as Express routes it: absolute-form, other case, %2e%2e → still 401 without a 100', async () => {
    const { body, contentType } = await langUpload();
    const host = new URL(t.url).host;
    for (const target of [`http://${host}/v1/adapters/expect-abs`, '/V1/Adapters/expect-case', '/v1/adapters/%2e%2e', '/v1/adapters/x?y=1']) {
      const head = putHead(t, 'unused', contentType, body.length).replace('PUT /v1/adapters/unused ', `PUT ${target} `);
      const r = await expectContinue(t.url, head, body);
      assert.doesNotMatch(r.text, /100 Continue/, target);
      assert.match(r.text, /^HTTP\/1\.1 401 /, target);
    }
  });

  test('a right token but an invalid id → 400 without a 100', async () => {
    const { body, contentType } = await langUpload();
    const r = await expectContinue(t.url, putHead(t, 'Bad..Id', contentType, body.length, `Bearer ${ADMIN_TOKEN}`), body);
    assert.doesNotMatch(r.text, /100 Continue/);
    assert.match(r.text, /^HTTP\/1\.1 400 /);
    assert.match(r.text, /"code":"INVALID_ADAPTER_ID"/);
  });

  test('the right token → 100 Continue, then the upload is stored (201)', async () => {
    const { body, contentType } = await langUpload();
    const r = await expectContinue(t.url, putHead(t, 'expect-ok', contentType, body.length, `Bearer ${ADMIN_TOKEN}`), body, 5000);
    assert.match(r.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 201 /);
    assert.equal((await rawRequest(`${t.url}/v1/adapters/expect-ok`, { method: 'GET' })).status, 200);
  });

  test('other requests with Expect still get their 100 (a JSON predict)', async () => {
    const body = Buffer.from(JSON.stringify({ adapter_id: 'lang', inputs: 'Das Leben ist schön.' }));
    const head = `POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`;
    const r = await expectContinue(t.url, head, body, 5000);
    assert.match(r.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
  });
});

test('Expect: 100-continue with admin routes disabled → 403 without a 100', async () => {
  const t = await startTestServer({});
  try {
    const { body, contentType } = await langUpload();
    const r = await expectContinue(t.url, putHead(t, 'x', contentType, body.length, `Bearer ${ADMIN_TOKEN}`), body);
    assert.doesNotMatch(r.text, /100 Continue/);
    assert.match(r.text, /^HTTP\/1\.1 403 /);
    assert.match(r.text, /"code":"ADMIN_DISABLED"/);
  } finally {
    await t.stop();
  }
});

test('expected 503s (readyz before warm-up) are logged below error level, without a stack (real faults stay errors: http.test.ts)', async () => {
  const lines: Array<{ level: number; msg: string; err?: { stack?: string }; status?: number; code?: string }> = [];
  const log = pino({ level: 'trace' }, { write: (l: string) => { lines.push(JSON.parse(l)); } });
  const gate = deferred();
  const t = await startTestServer({}, { log, beforeWarmup: () => gate.promise, waitReady: false });
  try {
    const early = await rawRequest(`${t.url}/readyz`, { method: 'GET' });
    assert.equal(early.status, 503);
    assert.equal(early.body.error.code, 'NOT_READY');
    gate.resolve();
    await t.s.ready;
    const about = lines.filter((l) => l.status === 503 || l.code === 'NOT_READY');
    assert.ok(about.length >= 1, 'the 503 is logged');
    for (const l of about) {
      assert.ok(l.level < 50, `logged at level ${l.level}: ${JSON.stringify(l)}`);
      assert.equal(l.err, undefined, 'no error object (stack) for an expected outcome');
    }
    assert.deepEqual(lines.filter((l) => l.level >= 50), [], 'nothing at error level');
  } finally {
    gate.resolve();
    await t.stop();
  }
});
