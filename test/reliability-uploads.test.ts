/**
 * Bad uploads through PUT /v1/adapters/:id: broken safetensors, refused adapter configs,
 * malformed multipart bodies, bodies over the cap. Each is a 4xx naming the problem; after
 * each, `lang` still predicts and the store on disk is byte-for-byte what it was.
 */
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  adapterParts, assertLangServes, decodeModel, deleteAdapter, demoFiles, encodeModel, leftovers, multipart, putAdapter, putParts, request, sleep, snapshot,
  spawnServe, startRel, tempStore, TOKEN, type AdapterFiles, type Part, type RelServer, type Tensor,
} from './helpers/reliability-kit.js';

const LANG = demoFiles('lang');
const LANG_CFG = JSON.parse(LANG.config.toString('utf8')) as Record<string, unknown>;
const LANG_TENSORS = decodeModel(LANG.model);
const Q0 = 'base_model.model.encoder.layer.0.attention.self.query';
const V1 = 'base_model.model.encoder.layer.1.attention.self.value';
const BIAS = 'base_model.model.classifier.bias';
const HEAD_W = 'base_model.model.classifier.weight';

// ---------------------------------------------------------------------------------------
// Crafting files

interface RawEntry { name: string; dtype: string; shape: number[]; bytes: Buffer }

const f32 = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const langEntries = (): RawEntry[] => [...LANG_TENSORS].map(([name, t]) => ({ name, dtype: 'F32', shape: [...t.shape], bytes: Buffer.from(f32(t.data)) }));

/** Pads a header to 8 bytes with spaces and frames it: u64 length (or `headerLength`), header, data. */
function frame(header: string, data: Buffer, headerLength?: bigint): Buffer {
  const json = Buffer.from(header, 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLength ?? BigInt(padded));
  return Buffer.concat([len, json, Buffer.alloc(padded - json.length, 0x20), data]);
}

/**
 * Lays `entries` out in order. `lead` zero bytes before the first tensor, `gapAt` puts 8 zero
 * bytes before entry i, `overlapAt` starts entry i 4 bytes inside the previous one.
 */
function pack(entries: RawEntry[], opts: { lead?: number; gapAt?: number; overlapAt?: number; edit?: (h: Record<string, any>) => void } = {}): Buffer {
  const header: Record<string, any> = { __metadata__: { format: 'pt' } };
  const spans: Array<[number, Buffer]> = [];
  let pos = opts.lead ?? 0;
  entries.forEach((e, i) => {
    if (i === opts.gapAt) pos += 8;
    if (i === opts.overlapAt) pos -= 4;
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [pos, pos + e.bytes.length] };
    spans.push([pos, e.bytes]);
    pos += e.bytes.length;
  });
  const data = Buffer.alloc(pos);
  for (const [at, b] of spans) b.copy(data, at);
  opts.edit?.(header);
  return frame(JSON.stringify(header), data);
}

const withModel = (model: Buffer): AdapterFiles => ({ config: LANG.config, model });
const withConfig = (edit: (c: Record<string, unknown>) => void, model: Buffer = LANG.model): AdapterFiles => {
  const c = structuredClone(LANG_CFG);
  edit(c);
  return { config: Buffer.from(JSON.stringify(c)), model };
};
const withTensors = (edit: (t: Map<string, Tensor>) => void): Buffer => {
  const t = new Map([...LANG_TENSORS].map(([k, v]) => [k, { ...v, shape: [...v.shape], data: Float32Array.from(v.data) }]));
  edit(t);
  return encodeModel(t);
};

// ---------------------------------------------------------------------------------------
// Cases

interface Case { name: string; parts: Part[]; status: number; code: string | string[]; message: RegExp }

const files = (f: AdapterFiles): Part[] => adapterParts(f);

const safetensorsCases: Case[] = (() => {
  const valid = LANG.model;
  const headerLen = Number(valid.readBigUInt64LE(0));
  const header = valid.subarray(8, 8 + headerLen).toString('utf8').trimEnd();
  const data = valid.subarray(8 + headerLen);
  const firstKey = Object.keys(JSON.parse(header) as object).find((k) => k !== '__metadata__')!;
  const dupHeader = header.replace(/^\{/, `{${JSON.stringify(firstKey)}:${JSON.stringify((JSON.parse(header) as Record<string, unknown>)[firstKey])},`);
  const zip = Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(200, 7), Buffer.from('PK\x05\x06', 'latin1'), Buffer.alloc(18)]);
  const i64 = langEntries().map((e) => (e.name === BIAS ? { ...e, dtype: 'I64', bytes: Buffer.alloc(e.shape[0]! * 8, 1) } : e));
  const C = 'INVALID_SAFETENSORS';
  return [
    { name: 'header length huge (2^40)', parts: files(withModel(frame(header, data, 1n << 40n))), status: 422, code: C, message: /header length .* over the limit/ },
    { name: 'header length past the end of the file', parts: files(withModel(frame(header, data, BigInt(valid.length)))), status: 422, code: C, message: /past the end of the file/ },
    { name: 'header not JSON', parts: files(withModel(frame('{this is not json}', data))), status: 422, code: C, message: /not valid JSON/ },
    { name: 'duplicate tensor keys', parts: files(withModel(frame(dupHeader, data))), status: 422, code: C, message: /duplicate key/ },
    { name: 'offsets with a gap', parts: files(withModel(pack(langEntries(), { gapAt: 3 }))), status: 422, code: C, message: /gap of 8 bytes/ },
    { name: 'overlapping offsets', parts: files(withModel(pack(langEntries(), { overlapAt: 3 }))), status: 422, code: C, message: /overlaps/ },
    { name: 'offsets not starting at 0', parts: files(withModel(pack(langEntries(), { lead: 16 }))), status: 422, code: C, message: /do not start at 0/ },
    { name: 'trailing bytes (a zip appended)', parts: files(withModel(Buffer.concat([valid, zip]))), status: 422, code: C, message: /trailing bytes/ },
    { name: 'shape × dtype ≠ bytes', parts: files(withModel(pack(langEntries(), { edit: (h) => { h[BIAS].shape = [8]; } }))), status: 422, code: C, message: /needs 32 bytes but data_offsets span \d+/ },
    { name: 'overflowing shape', parts: files(withModel(pack(langEntries(), { edit: (h) => { h[BIAS].shape = [2 ** 32, 2 ** 32, 2 ** 32]; } }))), status: 422, code: C, message: /overflows/ },
    { name: 'unsupported dtype I64', parts: files(withModel(pack(i64))), status: 422, code: C, message: /I64.*not supported/ },
    { name: 'NaN weight', parts: files(withModel(withTensors((t) => { t.get(`${Q0}.lora_B.weight`)!.data[5] = NaN; }))), status: 422, code: C, message: /lora_B.weight" element 5 is NaN/ },
    { name: 'Inf weight', parts: files(withModel(withTensors((t) => { t.get(HEAD_W)!.data[0] = Infinity; }))), status: 422, code: C, message: /classifier.weight" element 0 is Infinity/ },
    // Thousands of nested arrays used to overflow the stack while the problem was described: a 500.
    ...(['__metadata__', 'shape', 'dtype', 'data_offsets'] as const).map((field) => ({
      name: `${field} nested 5000 arrays deep`, parts: files(withModel(nested(field, 5000))), status: 422, code: C, message: /nests arrays or objects more than 16 levels deep/,
    })),
  ];
})();

/** The lang model with one header field (of the bias entry, or __metadata__) replaced by `depth` nested arrays. */
function nested(field: '__metadata__' | 'shape' | 'dtype' | 'data_offsets', depth: number): Buffer {
  const valid = LANG.model;
  const headerLen = Number(valid.readBigUInt64LE(0));
  const header = JSON.parse(valid.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, any>;
  if (field === '__metadata__') header.__metadata__ = 'NEST';
  else header[BIAS][field] = 'NEST';
  // Built as text: JSON.stringify itself overflows on such depth.
  const text = JSON.stringify(header).replace('"NEST"', `${'['.repeat(depth)}${']'.repeat(depth)}`);
  return frame(text, valid.subarray(8 + headerLen));
}

const configCases: Case[] = (() => {
  const CFG = ['INVALID_ADAPTER_CONFIG', 'INCOMPATIBLE_ADAPTER'];
  const keyModel = withTensors((t) => {
    for (let l = 0; l < 4; l++) {
      const m = `base_model.model.encoder.layer.${l}.attention.self.key`;
      t.set(`${m}.lora_A.weight`, { dtype: 'F32', shape: [4, 256], data: new Float32Array(4 * 256).fill(0.01) });
      t.set(`${m}.lora_B.weight`, { dtype: 'F32', shape: [256, 4], data: new Float32Array(256 * 4).fill(0.01) });
    }
  });
  return [
    { name: 'peft_type IA3', parts: files(withConfig((c) => { c.peft_type = 'IA3'; })), status: 422, code: 'INVALID_ADAPTER_CONFIG', message: /IA3/ },
    { name: 'rank 64 above the max 16', parts: files(withConfig((c) => { c.r = 64; })), status: 422, code: CFG, message: /64.*16|16.*64/ },
    { name: 'unknown target module "key"', parts: files(withConfig((c) => { c.target_modules = ['query', 'key', 'value']; }, keyModel)), status: 422, code: CFG, message: /key/ },
    { name: 'missing target_modules', parts: files(withConfig((c) => { delete c.target_modules; })), status: 422, code: 'INVALID_ADAPTER_CONFIG', message: /target_modules/ },
    {
      name: 'A/B shape mismatch', status: 422, code: 'INCOMPATIBLE_ADAPTER', message: /encoder\.layer\.0\.attention\.self\.query/,
      parts: files(withModel(withTensors((t) => { t.set(`${Q0}.lora_A.weight`, { dtype: 'F32', shape: [4, 128], data: new Float32Array(512).fill(0.01) }); }))),
    },
    { name: 'a missing tensor (lora_B)', parts: files(withModel(withTensors((t) => { t.delete(`${V1}.lora_B.weight`); }))), status: 422, code: 'INCOMPATIBLE_ADAPTER', message: /encoder\.layer\.1\.attention\.self\.value/ },
    { name: 'wrong base model', parts: files(withConfig((c) => { c.base_model_name_or_path = 'bert-base-uncased'; })), status: 422, code: 'INCOMPATIBLE_ADAPTER', message: /bert-base-uncased/ },
    { name: 'use_dora true', parts: files(withConfig((c) => { c.use_dora = true; })), status: 422, code: 'INVALID_ADAPTER_CONFIG', message: /use_dora/ },
    {
      name: 'label count ≠ head size', status: 422, code: CFG, message: /label/,
      parts: files(withConfig((c) => { c.id2label = { 0: 'a', 1: 'b', 2: 'c', 3: 'd', 4: 'e', 5: 'f' }; })),
    },
  ];
})();

const partCases: Case[] = (() => {
  const cfg: Part = { name: 'adapter_config', filename: 'adapter_config.json', data: LANG.config };
  const model: Part = { name: 'adapter_model', filename: 'adapter_model.safetensors', data: LANG.model };
  const pickle = Buffer.concat([Buffer.from([0x80, 0x04, 0x95, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x8c]), Buffer.alloc(300, 0x2e)]);
  const zip = Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(300, 1)]);
  const U = 'INVALID_UPLOAD';
  return [
    { name: 'pickle by name (adapter_model.bin)', parts: [cfg, { ...model, filename: 'adapter_model.bin' }], status: 422, code: U, message: /pickle/ },
    { name: 'pickle magic 0x80 0x04 under the right name', parts: [cfg, { ...model, data: pickle }], status: 422, code: U, message: /pickle/ },
    { name: 'a zip archive', parts: [cfg, { ...model, data: zip }], status: 422, code: U, message: /zip/ },
    { name: 'an extra part', parts: [cfg, model, { name: 'readme', filename: 'README.md', data: 'hello' }], status: 422, code: U, message: /part|more than two/ },
    { name: 'a missing part', parts: [model], status: 422, code: U, message: /missing part adapter_config/ },
    { name: 'a non-file field', parts: [{ name: 'adapter_config', data: LANG.config }, model], status: 422, code: U, message: /non-file|not a file/ },
  ];
})();

// ---------------------------------------------------------------------------------------

describe('bad uploads are refused, the store and the other adapters untouched', () => {
  let t: RelServer;
  let snap: Record<string, string>;
  before(async () => {
    t = await startRel({ adminToken: TOKEN });
    snap = await snapshot(t.dir);
  });
  after(async () => { await t?.stop(); });

  const check = async (id: string) => {
    assert.equal((await request(t.url, { path: `/v1/adapters/${id}` })).status, 404, `${id} did not become visible`);
    await assertLangServes(t.url);
    assert.deepEqual(await snapshot(t.dir), snap, 'nothing on disk changed');
  };

  for (const [group, cases] of [['safetensors', safetensorsCases], ['adapter_config', configCases], ['multipart', partCases]] as const) {
    for (const c of cases) {
      test(`${group}: ${c.name} → ${c.status}`, async () => {
        const r = await putParts(t.url, 'refused', c.parts);
        assert.equal(r.status, c.status, r.text);
        const codes = Array.isArray(c.code) ? c.code : [c.code];
        assert.ok(codes.includes(r.body.error.code), `code ${r.body.error.code}, expected ${codes.join('|')}: ${r.text}`);
        assert.match(r.body.error.message, c.message);
        await check('refused');
      });
    }
  }

  test('the valid original is accepted (the cases above differ from it only in what they break)', async () => {
    const r = await putParts(t.url, 'control', adapterParts(LANG));
    assert.equal(r.status, 201, r.text);
    const p = await request(t.url, { method: 'DELETE', path: '/v1/adapters/control', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(p.status, 204);
    assert.deepEqual(await snapshot(t.dir), snap);
  });

  for (const type of ['application/json', 'text/plain']) {
    test(`wrong content type ${type} → 415`, async () => {
      const r = await request(t.url, {
        method: 'PUT', path: '/v1/adapters/refused', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': type },
        body: type === 'application/json' ? JSON.stringify({ adapter_config: LANG_CFG, url: 'http://127.0.0.1:1/x.safetensors' }) : 'adapter_config=...',
      });
      assert.equal(r.status, 415, r.text);
      assert.equal(r.body.error.code, 'UNSUPPORTED_MEDIA_TYPE');
      assert.match(r.body.error.message, /multipart\/form-data/);
      await check('refused');
    });
  }
});

// ---------------------------------------------------------------------------------------
// Error messages stay short whatever an upload holds.

describe('upload errors never echo unbounded input', () => {
  let t: RelServer;
  before(async () => { t = await startRel({ adminToken: TOKEN }); });
  after(async () => { await t?.stop(); });

  const valid = LANG.model;
  const headerLen = Number(valid.readBigUInt64LE(0));
  const header = () => JSON.parse(valid.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, any>;
  const data = valid.subarray(8 + headerLen);
  const withHeader = (edit: (h: Record<string, any>) => void) => { const h = header(); edit(h); return frame(JSON.stringify(h), data); };
  const cases: Array<[string, AdapterFiles, number, RegExp]> = [
    // labels × 1 × 1 × … : the right element count, so only the rank of the shape is wrong.
    ['a 200,000-dimension shape', withModel(withHeader((h) => { h[BIAS].shape = [...h[BIAS].shape, ...new Array(199_999).fill(1)]; })), 422, /shape has 200000 dimensions; at most 64/],
    ['a 64-dimension shape (accepted by the reader, refused by the mapping)', withModel(withHeader((h) => { h[BIAS].shape = [...h[BIAS].shape, ...new Array(63).fill(1)]; })), 422, /bias is \[\d+,1,1,1/],
    ['a 300,000-character tensor name', withModel(withHeader((h) => { h[`base_model.model.${'x'.repeat(300_000)}.lora_A.weight`] = h[BIAS]; delete h[BIAS]; })), 422, /x…/],
    ['a 500,000-character base_model_name_or_path', withConfig((c) => { c.base_model_name_or_path = 'b'.repeat(500_000); }), 422, /b…/],
    ['20,000 unknown config fields', withConfig((c) => { for (let i = 0; i < 20_000; i++) c[`field_${i}`] = i + 1; }), 422, /and \d+ more/],
  ];
  for (const [name, f, status, message] of cases) {
    test(`${name} → ${status}, a message under 4 KiB`, async () => {
      const r = await putParts(t.url, 'refused', adapterParts(f));
      assert.equal(r.status, status, r.text.slice(0, 500));
      assert.match(r.body.error.message, message);
      assert.ok(r.text.length < 4096, `the error is ${r.text.length} bytes`);
      await assertLangServes(t.url);
    });
  }
});

// ---------------------------------------------------------------------------------------
// Multipart framing a client controls: no handler may throw past the upload's own error.

/** A multipart body built from raw part headers, so a part can lack what the helper always writes. */
function rawMultipart(parts: Array<{ headers: string[]; data: Buffer | string }>, boundary = 'rawboundary'): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const p of parts) chunks.push(Buffer.from(`--${boundary}\r\n${p.headers.join('\r\n')}\r\n\r\n`), Buffer.from(p.data), Buffer.from('\r\n'));
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

describe('malformed part headers: a 4xx, and the process lives on', () => {
  let dir: string;
  let child: Awaited<ReturnType<typeof spawnServe>>;
  before(async () => {
    dir = await tempStore('rel-parts');
    child = await spawnServe(['--adapters-dir', dir, '--admin-token', TOKEN]);
  });
  after(async () => {
    child?.proc.kill('SIGKILL');
    await child?.exit;
    await rm(dir, { recursive: true, force: true });
  });

  const model = { headers: ['Content-Disposition: form-data; name="adapter_model"; filename="adapter_model.safetensors"', 'Content-Type: application/octet-stream'], data: LANG.model };
  const cases: Array<[string, string[]]> = [
    ['a file part with no name', ['Content-Disposition: form-data; filename="adapter_config.json"', 'Content-Type: application/json']],
    ['a file part with an empty name', ['Content-Disposition: form-data; name=""; filename="adapter_config.json"']],
    ['a file part with a bare name parameter', ['Content-Disposition: form-data; name; filename="adapter_config.json"']],
    ['an octet-stream part with no name and no filename', ['Content-Disposition: form-data', 'Content-Type: application/octet-stream']],
    ['a field with no name', ['Content-Disposition: form-data']],
    ['a part with no Content-Disposition', ['Content-Type: application/json']],
    ['a filename* with a broken encoding', ['Content-Disposition: form-data; name="adapter_config"; filename*=utf-8\'\'%E0%A4%A']],
  ];
  for (const [name, headers] of cases) {
    test(`${name} → 4xx`, async () => {
      const { body, contentType } = rawMultipart([{ headers, data: LANG.config }, model]);
      const r = await request(child.url, { method: 'PUT', path: '/v1/adapters/parts', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': contentType }, body });
      assert.ok(r.status >= 400 && r.status < 500, `${r.status} ${r.text.slice(0, 300)}`);
      assert.equal(child.proc.exitCode, null, `the server exited: ${child.stderr().slice(-500)}`);
      await assertLangServes(child.url);
    });
  }
  test('after all of them: still the same process, nothing stored', async () => {
    assert.equal(child.proc.exitCode, null);
    assert.equal((await request(child.url, { path: '/v1/adapters/parts' })).status, 404);
    assert.deepEqual(await leftovers(dir), []);
  });
});

// ---------------------------------------------------------------------------------------
// Encodings the server does not decode: 415, not bytes taken as they are.

describe('Content-Encoding and part encodings on uploads', () => {
  let t: RelServer;
  let snap: Record<string, string>;
  before(async () => {
    t = await startRel({ adminToken: TOKEN });
    snap = await snapshot(t.dir);
  });
  after(async () => { await t?.stop(); });

  const put = (body: Buffer, contentType: string, extra: Record<string, string> = {}) =>
    request(t.url, { method: 'PUT', path: '/v1/adapters/encoded', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': contentType, ...extra }, body });

  for (const encoding of ['br', 'gzip', 'deflate', 'x-custom', 'gzip, identity']) {
    test(`Content-Encoding: ${encoding} → 415 naming it`, async () => {
      const { body, contentType } = multipart(adapterParts(LANG));
      // A real gzip body for gzip; for the others the bytes do not matter: they are never read.
      const sent = encoding === 'gzip' ? gzipSync(body) : body;
      const r = await put(sent, contentType, { 'content-encoding': encoding });
      assert.equal(r.status, 415, r.text);
      assert.equal(r.body.error.code, 'UNSUPPORTED_MEDIA_TYPE');
      assert.match(r.body.error.message, /Content-Encoding .* not accepted/);
      assert.equal((await request(t.url, { path: '/v1/adapters/encoded' })).status, 404);
      assert.deepEqual(await snapshot(t.dir), snap);
    });
  }

  test('Content-Encoding: identity is the bytes as they are → 201', async () => {
    const { body, contentType } = multipart(adapterParts(LANG));
    const r = await put(body, contentType, { 'content-encoding': 'identity' });
    assert.equal(r.status, 201, r.text);
    assert.equal((await deleteAdapter(t.url, 'encoded')).status, 204);
  });

  for (const cte of ['base64', 'quoted-printable']) {
    test(`a part with Content-Transfer-Encoding: ${cte} → 415`, async () => {
      const { body, contentType } = rawMultipart([
        { headers: ['Content-Disposition: form-data; name="adapter_config"; filename="adapter_config.json"'], data: LANG.config },
        { headers: ['Content-Disposition: form-data; name="adapter_model"; filename="adapter_model.safetensors"', `Content-Transfer-Encoding: ${cte}`], data: LANG.model.toString('base64') },
      ]);
      const r = await put(body, contentType);
      assert.equal(r.status, 415, r.text);
      assert.match(r.body.error.message, new RegExp(`Content-Transfer-Encoding "${cte}"`));
      assert.deepEqual(await snapshot(t.dir), snap);
    });
  }
});

// ---------------------------------------------------------------------------------------
// Concurrent uploads are bounded: 429 with Retry-After past --max-concurrent-uploads.

/**
 * Starts an upload that sends its headers and the first `sent` bytes of `body`, then waits.
 * `finish()` sends the rest and resolves with the status; `abort()` cuts the connection.
 */
function stalledUpload(url: string, id: string, body: Buffer, contentType: string, sent: number) {
  const u = new URL(url);
  const sock = net.connect(Number(u.port), u.hostname);
  const got: Buffer[] = [];
  sock.on('data', (c: Buffer) => got.push(c));
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  sock.write([`PUT /v1/adapters/${id} HTTP/1.1`, `Host: ${u.host}`, `Authorization: Bearer ${TOKEN}`, `Content-Type: ${contentType}`, `Content-Length: ${body.length}`, 'Connection: close', '', ''].join('\r\n'));
  sock.write(body.subarray(0, sent));
  return {
    async finish(): Promise<number> {
      // write, not end: a client's FIN before the answer makes Node's server abort the request.
      sock.write(body.subarray(sent));
      await closed; // Connection: close: the server closes once it has answered
      return Number(/^HTTP\/1\.1 (\d+)/.exec(Buffer.concat(got).toString('latin1'))?.[1] ?? 0);
    },
    async abort(): Promise<void> {
      sock.destroy();
      await closed;
    },
  };
}

describe('concurrent uploads: at most --max-concurrent-uploads, then 429 with Retry-After', () => {
  let t: RelServer;
  before(async () => { t = await startRel({ adminToken: TOKEN, maxConcurrentUploads: 2 }); });
  after(async () => { await t?.stop(); });

  test('two stalled uploads hold both slots: a third is 429 at once, before its body is read; finished or aborted, they free their slots', async () => {
    const { body, contentType } = multipart(adapterParts(LANG));
    const half = Math.floor(body.length / 2);
    const a = stalledUpload(t.url, 'slot-a', body, contentType, half);
    const b = stalledUpload(t.url, 'slot-b', body, contentType, half);
    // Wait until the server holds both (their handlers run once the headers are in).
    let third = await putAdapter(t.url, 'slot-c', LANG);
    for (let i = 0; i < 100 && third.status !== 429; i++) {
      if (third.status === 201) assert.equal((await deleteAdapter(t.url, 'slot-c')).status, 204);
      await sleep(20);
      third = await putAdapter(t.url, 'slot-c', LANG);
    }
    assert.equal(third.status, 429, third.text);
    assert.equal(third.body.error.code, 'TOO_MANY_UPLOADS');
    assert.equal(third.headers['retry-after'], '1');
    assert.match(third.body.error.message, /2 adapter uploads are already in progress/);
    // Inference is not limited by uploads.
    await assertLangServes(t.url);

    assert.equal(await a.finish(), 201);
    await b.abort();
    // Both slots are free again: two uploads at once succeed.
    const [c, d] = await Promise.all([putAdapter(t.url, 'slot-c', LANG), putAdapter(t.url, 'slot-d', LANG)]);
    assert.equal(c.status, 201, c.text);
    assert.equal(d.status, 201, d.text);
    for (const id of ['slot-a', 'slot-c', 'slot-d']) assert.equal((await deleteAdapter(t.url, id)).status, 204);
    assert.equal((await request(t.url, { path: '/v1/adapters/slot-b' })).status, 404);
  });

  test('refusals that are cheap to decide (401, 415, 413 by Content-Length) never take a slot', async () => {
    for (let i = 0; i < 5; i++) {
      assert.equal((await putAdapter(t.url, 'x', LANG, 'wrong-token-wrong-token')).status, 401);
      const r = await request(t.url, { method: 'PUT', path: '/v1/adapters/x', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/plain' }, body: 'x' });
      assert.equal(r.status, 415);
    }
    const ok = await putAdapter(t.url, 'slot-e', LANG);
    assert.equal(ok.status, 201, ok.text);
    assert.equal((await deleteAdapter(t.url, 'slot-e')).status, 204);
  });
});

// ---------------------------------------------------------------------------------------
// Bodies over the cap: a child server (so its memory is its own), --max-upload-mb 2.

const CAP = 2 * 1024 * 1024;

/**
 * src/http/upload.ts keeps every busboy 'data' chunk as its own Buffer (`chunks.push(c)`), so
 * 64-byte chunks cost ~5-8× their size in Buffer objects and backing stores: a 2 MiB cap lets
 * one upload grow the server by 10-17 MiB (measured). Copying chunks into 64 KiB blocks fixes it.
 */

/** VmRSS of a process in bytes (Linux), or null where /proc is not there. */
async function rssOf(pid: number): Promise<number | null> {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** `status` 0: the connection failed before an answer could be read. */
interface Streamed { status: number; body: any; sentAtAnswer: number; total: number }

/**
 * Streams a multipart upload whose model part is `total` bytes of filler, in `chunk`-byte
 * writes (chunked encoding unless `contentLength`), over a raw socket: honours backpressure,
 * stops writing at the first byte of the answer, and still reads the answer when the server
 * closes its side (a write error after the server answered is expected, not a failure).
 */
function streamUpload(url: string, opts: { total: number; chunk: number; contentLength?: boolean }): Promise<Streamed> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const boundary = 'capboundary';
    const prefix = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="adapter_model"; filename="adapter_model.safetensors"\r\nContent-Type: application/octet-stream\r\n\r\n`);
    const total = prefix.length + opts.total;
    const head = [
      'PUT /v1/adapters/too-big HTTP/1.1', `Host: ${u.host}`, `Authorization: Bearer ${TOKEN}`,
      `Content-Type: multipart/form-data; boundary=${boundary}`,
      opts.contentLength ? `Content-Length: ${total}` : 'Transfer-Encoding: chunked', '', '',
    ].join('\r\n');
    const sock = net.connect(Number(u.port), u.hostname);
    sock.setNoDelay(true);
    const filler = Buffer.alloc(opts.chunk, 0x41);
    let sent = 0;
    let answeredAt = -1;
    const got: Buffer[] = [];
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no answer after ${sent} bytes`)); }, 30_000);
    const finish = () => {
      clearTimeout(timer);
      sock.destroy();
      const text = Buffer.concat(got).toString('utf8');
      const m = /^HTTP\/1\.1 (\d+)/.exec(text);
      if (!m) return reject(new Error(`no HTTP answer (${sent} bytes sent): ${JSON.stringify(text.slice(0, 200))}`));
      let body: unknown = null;
      try { body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)); } catch { /* not JSON */ }
      resolve({ status: Number(m[1]), body, sentAtAnswer: answeredAt, total });
    };
    sock.on('data', (c: Buffer) => {
      if (answeredAt < 0) answeredAt = sent;
      got.push(c);
      const text = Buffer.concat(got).toString('utf8');
      const sep = text.indexOf('\r\n\r\n');
      const len = /\r\ncontent-length: (\d+)/i.exec(text);
      if (sep >= 0 && len && Buffer.byteLength(text.slice(sep + 4)) >= Number(len[1])) finish();
    });
    sock.on('end', finish);
    // A write can fail (EPIPE/ECONNRESET) once the server has answered and closed; node then
    // destroys the socket before the answer is read. The caller retries: the race is the client's.
    sock.on('error', () => {
      if (answeredAt >= 0) return finish();
      clearTimeout(timer);
      sock.destroy();
      resolve({ status: 0, body: null, sentAtAnswer: sent, total });
    });
    const frame = (b: Buffer) => (opts.contentLength ? [b] : [Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
    let first = true;
    let writes = 0;
    const pump = () => {
      while (answeredAt < 0 && sent < total && !sock.destroyed) {
        const piece = first ? prefix : filler.subarray(0, Math.min(opts.chunk, total - sent));
        first = false;
        sent += piece.length;
        const parts = frame(piece);
        let ok = true;
        for (const p of parts) ok = sock.write(p) && ok;
        if (!ok) { sock.once('drain', pump); return; }
        // Tiny writes rarely fill the socket buffer: yield now and then so the answer is read
        // when it comes, instead of the whole body going into kernel buffers in one tick.
        if (opts.chunk < 1024 && ++writes % 16 === 0) { setImmediate(pump); return; }
      }
      if (answeredAt < 0 && sent >= total && !opts.contentLength) sock.write('0\r\n\r\n');
    };
    sock.once('connect', () => { sock.write(head); pump(); });
  });
}

describe('upload bodies over the cap: 413 early, memory bounded', () => {
  let dir: string;
  let child: Awaited<ReturnType<typeof spawnServe>>;
  let snap: Record<string, string>;
  before(async () => {
    dir = await tempStore('rel-cap');
    snap = await snapshot(dir);
    // Small young-generation semispaces: short-lived garbage is collected at once instead of
    // growing the heap, so RSS growth shows what the server keeps, not what it churns through.
    child = await spawnServe(['--adapters-dir', dir, '--admin-token', TOKEN, '--max-upload-mb', '2'], { nodeFlags: ['--max-semi-space-size=1'] });
  });
  after(async () => {
    child?.proc.kill('SIGKILL');
    await child?.exit;
    await rm(dir, { recursive: true, force: true });
  });

  const cases: Array<[string, { total: number; chunk: number; contentLength?: boolean }]> = [
    ['Content-Length over the cap (16 MiB declared)', { total: 16 * 1024 * 1024, chunk: 64 * 1024, contentLength: true }],
    ['chunked, no Content-Length (16 MiB)', { total: 16 * 1024 * 1024, chunk: 64 * 1024 }],
    ['200k tiny chunks of 64 bytes (12.8 MB)', { total: 200_000 * 64, chunk: 64 }],
  ];
  for (const [name, opts] of cases) {
    test(name, async (t) => {
      const rss0 = await rssOf(child.pid);
      let peak = rss0 ?? 0;
      const sampler = setInterval(() => { void rssOf(child.pid).then((r) => { if (r !== null && r > peak) peak = r; }); }, 5);
      let r: Streamed = { status: 0, body: null, sentAtAnswer: 0, total: 0 };
      try {
        for (let attempt = 0; attempt < 3 && r.status === 0; attempt++) r = await streamUpload(child.url, opts);
      } finally {
        clearInterval(sampler);
      }
      assert.equal(r.status, 413, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'PAYLOAD_TOO_LARGE');
      assert.match(r.body.error.message, /2097152 bytes/);
      assert.ok(r.sentAtAnswer < r.total, `answered before the whole body was sent (${r.sentAtAnswer} of ${r.total} bytes)`);
      if (rss0 !== null) {
        const grew = peak - rss0;
        t.diagnostic(`server RSS grew by ${(grew / 1048576).toFixed(1)} MiB; answered after ${r.sentAtAnswer} of ${r.total} bytes`);
        // 3× rather than 2×: RSS sampled from outside moves by a MiB or so on its own.
        assert.ok(grew <= 3 * CAP, `server RSS grew by ${(grew / 1048576).toFixed(1)} MiB for a ${CAP / 1048576} MiB cap`);
      }
      assert.equal((await request(child.url, { path: '/v1/adapters/too-big' })).status, 404);
      await assertLangServes(child.url);
      assert.deepEqual(await leftovers(dir), []);
      assert.deepEqual(await snapshot(dir), snap);
    });
  }
});
