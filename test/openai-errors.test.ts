import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { AppError, type ErrorCode } from '../src/errors.js';
import { openAiErrorBody, openAiErrorType, paramOf, withParam } from '../src/http/openai-errors.js';

/** [catalog code, status, OpenAI type, OpenAI code] */
const SHAPES: Array<[ErrorCode, number, string, string]> = [
  ['BAD_REQUEST', 400, 'invalid_request_error', 'bad_request'],
  ['INVALID_JSON', 400, 'invalid_request_error', 'invalid_json'],
  ['UNAUTHORIZED', 401, 'authentication_error', 'unauthorized'],
  ['FORBIDDEN', 403, 'permission_error', 'forbidden'],
  ['MODEL_NOT_FOUND', 404, 'invalid_request_error', 'model_not_found'],
  ['ADAPTER_NOT_FOUND', 404, 'invalid_request_error', 'model_not_found'],
  ['PAYLOAD_TOO_LARGE', 413, 'invalid_request_error', 'payload_too_large'],
  ['INCOMPATIBLE_ADAPTER', 422, 'invalid_request_error', 'incompatible_adapter'],
  ['QUEUE_FULL', 429, 'rate_limit_error', 'queue_full'],
  ['INTERNAL', 500, 'server_error', 'internal'],
  ['NOT_READY', 503, 'server_error', 'not_ready'],
  ['SHUTTING_DOWN', 503, 'server_error', 'shutting_down'],
];

test('error bodies: OpenAI\'s shape, type by status, code from the catalog (model_not_found for unknown models)', () => {
  for (const [code, status, type, oaCode] of SHAPES) {
    const e = new AppError(code, `something about ${code}`);
    assert.equal(e.status, status, code);
    assert.deepEqual(openAiErrorBody(e), { error: { message: `something about ${code}`, type, code: oaCode, param: null } }, code);
  }
  assert.equal(openAiErrorType(418), 'invalid_request_error');
  assert.equal(openAiErrorType(502), 'server_error');
});

test('withParam records the field for param, on that error only', () => {
  const e = withParam(new AppError('BAD_REQUEST', '"temperature" must be a number'), 'temperature');
  assert.equal(paramOf(e), 'temperature');
  assert.equal(openAiErrorBody(e).error.param, 'temperature');
  assert.equal(paramOf(new AppError('BAD_REQUEST', 'other')), null);
});

test('the official openai SDK surfaces status, message, code, type and param', async () => {
  let next: AppError = new AppError('INTERNAL', 'unset');
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(next.status, { 'content-type': 'application/json', ...next.headers });
      res.end(JSON.stringify(openAiErrorBody(next)));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const client = new OpenAI({ apiKey: 'x', baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, maxRetries: 0 });
    const rows: Array<[AppError, number, string, string | null, abstract new (...a: never[]) => InstanceType<typeof OpenAI.APIError>]> = [
      [withParam(new AppError('BAD_REQUEST', 'invalid chat completions request: "n" must be 1 (got 2)'), 'n'), 400, 'bad_request', 'n', OpenAI.BadRequestError],
      [new AppError('MODEL_NOT_FOUND', 'no model or adapter named "nope"'), 404, 'model_not_found', null, OpenAI.NotFoundError],
      [new AppError('QUEUE_FULL', 'the queue is full (64 waiting); retry later', { headers: { 'Retry-After': '1' } }), 429, 'queue_full', null, OpenAI.RateLimitError],
      [new AppError('NOT_READY', 'the model is still loading'), 503, 'not_ready', null, OpenAI.InternalServerError],
    ];
    for (const [err, status, code, param, cls] of rows) {
      next = err;
      await assert.rejects(client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => {
        assert.ok(e instanceof cls, `${String(e)} should be a ${cls.name}`);
        assert.equal(e.status, status);
        assert.equal(e.code, code);
        assert.equal(e.param, param);
        assert.equal(e.type, openAiErrorType(status));
        assert.ok(e.message.includes(err.message), `${e.message} should carry ${err.message}`);
        if (status === 429) assert.equal(e.headers?.get('retry-after'), '1');
        return true;
      });
    }
  } finally {
    await new Promise((r) => server.close(r));
  }
});
