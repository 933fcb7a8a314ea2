import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AppError } from '../src/errors.js';
import { parseSafetensorsHeader, readSafetensors, writeSafetensors, type SafetensorsDType } from '../src/adapter/safetensors.js';
import { propertyParams } from './helpers/property-seed.js';

const SEED = 20240611;
const NUM_RUNS = 400;
const LIMITS = { maxHeaderBytes: 4096, maxTensors: 16 };

/** Reads `bytes`; anything but success or an INVALID_SAFETENSORS refusal fails the property. */
function readOrRefuse(bytes: Uint8Array): 'ok' | 'refused' {
  let result: ReturnType<typeof readSafetensors>;
  try {
    result = readSafetensors(bytes, LIMITS);
  } catch (e) {
    if (e instanceof AppError && e.code === 'INVALID_SAFETENSORS' && e.problems.length > 0) return 'refused';
    throw e;
  }
  // Whatever is accepted must be internally consistent: tensors tile the data section exactly.
  const { header, tensors } = result;
  let covered = 0;
  for (const t of header.tensors) {
    assert.equal(t.begin, covered);
    covered = t.end;
    const d = tensors.get(t.name);
    assert.ok(d);
    assert.equal(d.data.length, t.shape.reduce((p, n) => p * n, 1));
    assert.ok(d.data.every(Number.isFinite));
  }
  assert.equal(header.dataOffset + covered, bytes.length);
  return 'ok';
}

/** 8-byte length prefix + header bytes + data bytes. */
function frame(header: Uint8Array, data: Uint8Array, lengthDelta = 0): Uint8Array {
  const out = new Uint8Array(8 + header.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(Math.max(0, header.length + lengthDelta)), true);
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

const utf8 = (s: string) => new TextEncoder().encode(s);

const dtypeArb = fc.constantFrom<SafetensorsDType>('F32', 'F16', 'BF16');
const nameArb = fc.string({ unit: 'binary', maxLength: 10 }).filter((n) => n !== '__metadata__');

/** Values each dtype can hold without overflowing to ±Inf. */
function valueArb(dtype: SafetensorsDType): fc.Arbitrary<number> {
  if (dtype === 'F32') return fc.float({ noNaN: true, noDefaultInfinity: true });
  const max = dtype === 'F16' ? 65504 : Math.fround(3.38e38);
  return fc.float({ min: -max, max, noNaN: true });
}

const tensorArb = fc
  .tuple(dtypeArb, fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }))
  .chain(([dtype, shape]) => {
    const n = shape.reduce((p, d) => p * d, 1);
    return fc.array(valueArb(dtype), { minLength: n, maxLength: n }).map((values) => ({ dtype, shape, data: Float32Array.from(values) }));
  });

const tensorSetArb = fc.dictionary(nameArb, tensorArb, { maxKeys: 6, noNullPrototype: true });
const metadataArb = fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3, noNullPrototype: true });

/** Something shaped roughly like a header entry, often valid, often slightly off. */
const entryishArb = fc.oneof(
  fc.record({
    dtype: fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'F64', ''),
    shape: fc.array(fc.integer({ min: -2, max: 5 }), { maxLength: 3 }),
    data_offsets: fc.tuple(fc.integer({ min: -4, max: 40 }), fc.integer({ min: -4, max: 40 })),
  }),
  fc.jsonValue({ maxDepth: 3 }),
);

test('arbitrary bytes are read or refused with INVALID_SAFETENSORS, nothing else', { timeout: 60_000 }, (t) => {
  const bytesArb = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    // A well-framed length, so the JSON checks get exercised rather than the length check.
    fc.tuple(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 40 }), fc.integer({ min: -3, max: 3 })).map(([h, d, delta]) => frame(h, d, delta)),
    fc.tuple(fc.string({ unit: 'binary', maxLength: 200 }), fc.uint8Array({ maxLength: 40 })).map(([h, d]) => frame(utf8(h), d)),
    fc.tuple(fc.jsonValue(), fc.uint8Array({ maxLength: 40 })).map(([j, d]) => frame(utf8(JSON.stringify(j) ?? ''), d)),
    fc
      .tuple(fc.dictionary(fc.oneof(nameArb, fc.constant('__metadata__')), entryishArb, { maxKeys: 4 }), fc.nat(48), fc.nat(7))
      .map(([entries, dataLength, pad]) => frame(utf8(JSON.stringify(entries) + ' '.repeat(pad)), new Uint8Array(dataLength))),
  );
  fc.assert(
    fc.property(bytesArb, (bytes) => {
      readOrRefuse(bytes);
    }),
    propertyParams(t, SEED, NUM_RUNS),
  );
});

test('a mutated valid file is read or refused with INVALID_SAFETENSORS, nothing else', { timeout: 60_000 }, (t) => {
  const mutationArb = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('header' as const), at: fc.nat(), value: fc.constantFrom(...utf8('{}[]",: 0123456789-eE.\\u')) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  );
  let refused = 0;
  fc.assert(
    fc.property(tensorSetArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (tensors, mutations) => {
      let bytes = writeSafetensors(tensors);
      const headerEnd = 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
      for (const m of mutations) {
        if (m.kind === 'set' && bytes.length > 0) bytes[m.at % bytes.length] = m.value;
        // Mutations inside the JSON text reach the header checks far more often than random bytes.
        else if (m.kind === 'header' && headerEnd > 8 && bytes.length >= headerEnd) bytes[8 + (m.at % (headerEnd - 8))] = m.value;
        else if (m.kind === 'truncate') bytes = bytes.slice(0, m.at % (bytes.length + 1));
        else if (m.kind === 'append') {
          const grown = new Uint8Array(bytes.length + m.bytes.length);
          grown.set(bytes);
          grown.set(m.bytes, bytes.length);
          bytes = grown;
        }
      }
      if (readOrRefuse(bytes) === 'refused') refused++;
    }),
    propertyParams(t, SEED, NUM_RUNS),
  );
  assert.ok(refused > NUM_RUNS / 4, `most mutations should be refused (refused ${refused})`);
});

test('random valid tensor sets round-trip through writeSafetensors/readSafetensors', { timeout: 60_000 }, (t) => {
  fc.assert(
    fc.property(tensorSetArb, metadataArb, (tensors, metadata) => {
      const file = writeSafetensors(tensors, metadata);
      assert.equal(readOrRefuse(file), 'ok');
      const { header, tensors: read } = readSafetensors(file, LIMITS);
      assert.equal((header.dataOffset) % 8, 0);
      assert.deepEqual(Object.entries(header.metadata), Object.entries(metadata));
      assert.deepEqual(
        header.tensors.map((t) => t.name),
        Object.keys(tensors).sort(),
      );
      for (const [name, want] of Object.entries(tensors)) {
        const got = read.get(name);
        assert.ok(got);
        assert.equal(got.dtype, want.dtype);
        assert.deepEqual(got.shape, want.shape);
        assert.equal(got.data.length, want.data.length);
        for (let i = 0; i < want.data.length; i++) {
          const x = want.data[i];
          const y = got.data[i];
          if (want.dtype === 'F32') assert.ok(Object.is(x, y), `${name}[${i}]: ${x} → ${y}`);
          // Half keeps 11 significant bits (subnormal step 2^-24); bfloat16 keeps 8 (step 2^-133).
          else if (want.dtype === 'F16') assert.ok(Math.abs(x - y) <= Math.max(Math.abs(x) * 2 ** -11, 2 ** -25), `${name}[${i}]: ${x} → ${y}`);
          else assert.ok(Math.abs(x - y) <= Math.max(Math.abs(x) * 2 ** -8, 2 ** -134), `${name}[${i}]: ${x} → ${y}`);
        }
      }
    }),
    propertyParams(t, SEED, NUM_RUNS),
  );
});

/** The header's problems as one string ('' when it is accepted). */
function headerProblems(text: string): string {
  const file = frame(utf8(text), new Uint8Array(0));
  try {
    parseSafetensorsHeader(file, file.length);
    return '';
  } catch (e) {
    if (e instanceof AppError && e.code === 'INVALID_SAFETENSORS') return e.problems.join('\n');
    throw e;
  }
}

/** Writes every UTF-16 unit of a key as a \uXXXX escape: same key, different bytes. */
function escapeAll(key: string): string {
  return `"${[...Array(key.length).keys()].map((i) => `\\u${key.charCodeAt(i).toString(16).padStart(4, '0')}`).join('')}"`;
}

test('the duplicate-key scan has no false positives and finds injected duplicates', { timeout: 60_000 }, (t) => {
  const objectArb = fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }), { minKeys: 1, maxKeys: 5, noNullPrototype: true });
  fc.assert(
    fc.property(objectArb, fc.nat(), fc.jsonValue({ maxDepth: 2 }), fc.boolean(), (obj, pick, value, escaped) => {
      assert.doesNotMatch(headerProblems(JSON.stringify(obj)), /duplicate key/);
      const keys = Object.keys(obj);
      const key = keys[pick % keys.length];
      const again = `${escaped ? escapeAll(key) : JSON.stringify(key)}:${JSON.stringify(value)}`;
      const text = `${JSON.stringify(obj).slice(0, -1)},${again}}`;
      assert.match(headerProblems(text), new RegExp(`duplicate key ${escapeRegExp(JSON.stringify(key))} at the top level`));
    }),
    propertyParams(t, SEED, NUM_RUNS),
  );
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
