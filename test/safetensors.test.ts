import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppError } from '../src/errors.js';
import {
  parseSafetensorsHeader,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
  type SafetensorsLimits,
} from '../src/adapter/safetensors.js';

/** A file from a raw header (bytes or text, written as is) and a data section (bytes or a length of zeros). */
function rawFile(header: string | Uint8Array, data: Uint8Array | number = 0, lengthField?: bigint): Uint8Array {
  const h = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

/** A header from tensor entries, JSON-encoded as given. */
function header(entries: Record<string, unknown>): string {
  return JSON.stringify(entries);
}

function entry(dtype: string, shape: unknown, offsets: unknown): Record<string, unknown> {
  return { dtype, shape, data_offsets: offsets };
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function f32(...values: number[]): Float32Array {
  return Float32Array.from(values);
}

function assertRefused(fn: () => unknown, expect: RegExp): AppError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof AppError, `expected AppError, got ${String(caught)}`);
  assert.equal(caught.code, 'INVALID_SAFETENSORS');
  assert.match(caught.message, expect);
  assert.ok(caught.problems.length >= 1);
  return caught;
}

test('a valid F32 file round-trips exactly, with metadata', () => {
  const a = f32(1, -2.5, 3.25, 0, -0, 1e-30, 3.4e38, Math.fround(0.1));
  const b = f32(7);
  const file = writeSafetensors({ 'layer.lora_B': { shape: [2, 4], data: a }, 'layer.lora_A': { shape: [], data: b } }, { format: 'pt' });
  const { header: h, tensors } = readSafetensors(file);
  assert.equal(h.headerLength % 8, 0, 'header padded to 8 bytes');
  assert.equal(h.dataOffset, 8 + h.headerLength);
  assert.equal(h.fileSize, file.length);
  assert.deepEqual(h.metadata, { format: 'pt' });
  assert.deepEqual(
    h.tensors.map((t) => [t.name, t.begin, t.end]),
    [
      ['layer.lora_A', 0, 4],
      ['layer.lora_B', 4, 36],
    ],
  );
  assert.deepEqual(tensors.get('layer.lora_B'), { shape: [2, 4], dtype: 'F32', data: a });
  assert.deepEqual(tensors.get('layer.lora_A'), { shape: [], dtype: 'F32', data: b });
});

test('F16 and BF16 round-trip within their precision', () => {
  const values = f32(1, -2, 0.1, 3.14159, 1000.5, -65504, 6e-5, 1e-7);
  const file = writeSafetensors({
    h: { dtype: 'F16', shape: [8], data: values },
    b: { dtype: 'BF16', shape: [2, 4], data: values },
  });
  const { tensors } = readSafetensors(file);
  const h = tensors.get('h');
  const b = tensors.get('b');
  assert.ok(h && b);
  assert.equal(h.dtype, 'F16');
  assert.equal(b.dtype, 'BF16');
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    // Half: 11 significant bits, subnormal step 2^-24. bfloat16: 8 significant bits.
    assert.ok(Math.abs(h.data[i] - v) <= Math.max(Math.abs(v) * 2 ** -11, 2 ** -25), `F16 ${v} → ${h.data[i]}`);
    assert.ok(Math.abs(b.data[i] - v) <= Math.abs(v) * 2 ** -8, `BF16 ${v} → ${b.data[i]}`);
  }
});

test('an F16 file made by hand decodes to known values', () => {
  // [6] little-endian halves: 1, -2, 65504 (max), 2^-24 (min subnormal), -0, 1/3 rounded
  const halves = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x3555];
  const data = new Uint8Array(halves.flatMap((h) => [h & 0xff, h >> 8]));
  const file = rawFile(header({ w: entry('F16', [2, 3], [0, 12]) }), data);
  const w = readSafetensors(file).tensors.get('w');
  assert.deepEqual(w?.shape, [2, 3]);
  assert.deepEqual([...(w?.data ?? [])], [1, -2, 65504, 2 ** -24, -0, 0.333251953125]);
});

test('a BF16 file made by hand decodes to known values', () => {
  const halves = [0x3f80, 0x4049, 0xbf00]; // 1, 3.140625, -0.5
  const data = new Uint8Array(halves.flatMap((h) => [h & 0xff, h >> 8]));
  const w = readSafetensors(rawFile(header({ w: entry('BF16', [3], [0, 6]) }), data)).tensors.get('w');
  assert.deepEqual([...(w?.data ?? [])], [1, 3.140625, -0.5]);
});

test('the writer rounds F16 and BF16 to nearest, ties to even', () => {
  const cases = f32(1 + 2 ** -11, 1 + 3 * 2 ** -11, 65519, 2 ** -25, 3 * 2 ** -26);
  const file = writeSafetensors({ h: { dtype: 'F16', shape: [5], data: cases } });
  assert.deepEqual([...(readSafetensors(file).tensors.get('h')?.data ?? [])], [1, 1 + 2 ** -9, 65504, 0, 2 ** -24]);
  const bcases = f32(1 + 2 ** -8, 1 + 3 * 2 ** -8);
  const bfile = writeSafetensors({ b: { dtype: 'BF16', shape: [2], data: bcases } });
  assert.deepEqual([...(readSafetensors(bfile).tensors.get('b')?.data ?? [])], [1, 1 + 2 ** -6]);
});

test('F32 data at an unaligned position in the buffer decodes correctly', () => {
  const file = writeSafetensors({ w: { shape: [3], data: f32(1.5, -2, 8) } });
  const shifted = new Uint8Array(file.length + 1).subarray(1);
  shifted.set(file);
  assert.equal(shifted.byteOffset % 4, 1);
  assert.deepEqual([...(readSafetensors(shifted).tensors.get('w')?.data ?? [])], [1.5, -2, 8]);
  // A 2-byte F16 tensor first makes the F32 tensor's data start 2 bytes off alignment.
  const mixed = writeSafetensors({ a: { dtype: 'F16', shape: [1], data: f32(1) }, b: { shape: [2], data: f32(3, 4) } });
  assert.deepEqual([...(readSafetensors(mixed).tensors.get('b')?.data ?? [])], [3, 4]);
});

test('accepted edge cases: empty header object, zero-size tensors, inner whitespace, space padding', () => {
  assert.deepEqual(readSafetensors(rawFile('{}')).tensors.size, 0);
  assert.deepEqual(readSafetensors(rawFile('{}      ')).header.headerLength, 8);
  const zero = rawFile(header({ a: entry('F32', [0, 4], [0, 0]), b: entry('F32', [1], [0, 4]) }), 4);
  assert.deepEqual(readSafetensors(zero).tensors.get('a'), { shape: [0, 4], dtype: 'F32', data: new Float32Array(0) });
  const spaced = rawFile('{ "w" : { "dtype" : "F32", "shape" : [ 1 ], "data_offsets" : [ 0, 4 ] } }   ', 4);
  assert.equal(readSafetensors(spaced).header.tensors[0]?.name, 'w');
  const escaped = rawFile(header({ 'a"b\\c': entry('F32', [1], [0, 4]) }), 4);
  assert.equal(readSafetensors(escaped).header.tensors[0]?.name, 'a"b\\c');
});

test('tensors come back in data order, whatever the header order', () => {
  const file = rawFile(header({ z: entry('F32', [1], [0, 4]), '1': entry('F32', [1], [8, 12]), a: entry('F32', [1], [4, 8]) }), 12);
  assert.deepEqual(
    readSafetensors(file).header.tensors.map((t) => t.name),
    ['z', 'a', '1'],
  );
});

const ok = entry('F32', [2], [0, 8]);
const zip = new Uint8Array([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00]);

/** One row per refusal: the bytes to read, what the message must say, and optional limits. */
const BAD: { name: string; bytes: () => Uint8Array; expect: RegExp; limits?: SafetensorsLimits }[] = [
  { name: 'file shorter than 8 bytes', bytes: () => new Uint8Array(5), expect: /5 bytes, shorter than the 8-byte header length/ },
  { name: 'empty file', bytes: () => new Uint8Array(0), expect: /shorter than the 8-byte/ },
  { name: 'huge header length (2^40)', bytes: () => rawFile('{}', 0, 2n ** 40n), expect: /header length 1099511627776 bytes is over the limit of 1048576/ },
  { name: 'header length u64 max', bytes: () => rawFile('{}', 0, 2n ** 64n - 1n), expect: /over the limit/ },
  { name: 'header over a configured cap', bytes: () => rawFile(header({ w: ok }), 8), expect: /over the limit of 16 bytes/, limits: { maxHeaderBytes: 16 } },
  { name: 'header past the end of the file', bytes: () => rawFile('{}', 0, 100n), expect: /header length 100 bytes runs past the end of the file/ },
  { name: 'empty header', bytes: () => rawFile(''), expect: /starting with '\{'.*empty header/ },
  { name: 'not JSON', bytes: () => rawFile('{"w": '), expect: /not valid JSON/ },
  { name: 'JSON with trailing garbage', bytes: () => rawFile('{}x'), expect: /not valid JSON/ },
  { name: '[] header', bytes: () => rawFile('[]'), expect: /must be a JSON object starting with '\{'.*found "\["/ },
  { name: 'a JSON string header', bytes: () => rawFile('"{}"'), expect: /JSON object starting with '\{'/ },
  { name: 'leading space', bytes: () => rawFile(' {}'), expect: /starting with '\{' at its first byte, found " "/ },
  { name: 'leading BOM', bytes: () => rawFile('\ufeff{}'), expect: /starting with '\{'/ },
  { name: 'trailing newline instead of space padding', bytes: () => rawFile('{}\n'), expect: /other than space padding/ },
  { name: 'invalid UTF-8', bytes: () => rawFile(concat(new TextEncoder().encode('{"'), new Uint8Array([0xff, 0xfe]), new TextEncoder().encode('":1}'))), expect: /not valid UTF-8/ },
  { name: 'overlong UTF-8', bytes: () => rawFile(concat(new TextEncoder().encode('{"'), new Uint8Array([0xc0, 0xaf]), new TextEncoder().encode('":1}'))), expect: /not valid UTF-8/ },
  { name: 'duplicate tensor names', bytes: () => rawFile(`{"w":${JSON.stringify(ok)},"w":${JSON.stringify(ok)}}`, 8), expect: /duplicate key "w" at the top level/ },
  { name: 'duplicate via escape', bytes: () => rawFile(`{"w":${JSON.stringify(ok)},"\\u0077":${JSON.stringify(ok)}}`, 8), expect: /duplicate key "w"/ },
  { name: 'duplicate field in an entry', bytes: () => rawFile('{"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}', 8), expect: /duplicate key "dtype" in tensor "w"/ },
  { name: 'duplicate metadata key', bytes: () => rawFile('{"__metadata__":{"a":"1","a":"2"}}'), expect: /duplicate key "a" in __metadata__/ },
  { name: 'duplicate __metadata__', bytes: () => rawFile('{"__metadata__":{},"__metadata__":{}}'), expect: /duplicate key "__metadata__"/ },
  { name: 'unknown tensor field', bytes: () => rawFile(header({ w: { ...ok, foo: 1 } }), 8), expect: /tensor "w" has unknown field "foo"/ },
  { name: 'missing tensor field', bytes: () => rawFile(header({ w: { dtype: 'F32', shape: [2] } }), 8), expect: /tensor "w" is missing field "data_offsets"/ },
  { name: 'tensor entry not an object', bytes: () => rawFile(header({ w: [1, 2] })), expect: /tensor "w" must be an object/ },
  { name: 'metadata not an object', bytes: () => rawFile(header({ __metadata__: 'x' })), expect: /__metadata__ must be an object of string values/ },
  { name: 'metadata value not a string', bytes: () => rawFile(header({ __metadata__: { n: 1 } })), expect: /__metadata__ value for "n" must be a string/ },
  { name: 'too many tensors (configured)', bytes: () => rawFile(header({ a: entry('F32', [0], [0, 0]), b: entry('F32', [0], [0, 0]), c: entry('F32', [0], [0, 0]) })), expect: /3 tensors, over the limit of 2/, limits: { maxTensors: 2 } },
  { name: 'offsets not starting at 0', bytes: () => rawFile(header({ w: entry('F32', [2], [4, 12]) }), 12), expect: /do not start at 0: the first tensor "w" begins at 4/ },
  { name: 'gap between tensors', bytes: () => rawFile(header({ a: entry('F32', [1], [0, 4]), b: entry('F32', [1], [8, 12]) }), 12), expect: /gap of 4 bytes before tensor "b"/ },
  { name: 'overlapping tensors', bytes: () => rawFile(header({ a: entry('F32', [2], [0, 8]), b: entry('F32', [2], [4, 12]) }), 12), expect: /tensor "b" \[4, 12\) overlaps tensor "a" \[0, 8\)/ },
  { name: 'identical offsets', bytes: () => rawFile(header({ a: ok, b: ok }), 8), expect: /overlaps/ },
  { name: 'trailing bytes (zip appended)', bytes: () => concat(writeSafetensors({ w: { shape: [2], data: f32(1, 2) } }), zip), expect: /8 trailing bytes after the last tensor/ },
  { name: 'trailing bytes, no tensors', bytes: () => rawFile('{}', 3), expect: /3 trailing bytes/ },
  { name: 'tensor past the end of the file', bytes: () => rawFile(header({ w: ok }), 4), expect: /tensor "w" ends at byte 8 of the data section, past the end of the file/ },
  { name: 'span ≠ shape × dtype', bytes: () => rawFile(header({ w: entry('F32', [2, 3], [0, 20]) }), 20), expect: /shape \[2,3\] of F32 needs 24 bytes but data_offsets span 20/ },
  { name: 'span ≠ shape × dtype (F16)', bytes: () => rawFile(header({ w: entry('F16', [2], [0, 8]) }), 8), expect: /of F16 needs 4 bytes/ },
  { name: 'overflowing shape', bytes: () => rawFile(header({ w: entry('F32', [2 ** 40, 2 ** 40], [0, 8]) }), 8), expect: /tensor "w" shape \[1099511627776,1099511627776\] overflows/ },
  { name: 'shape product past 2^53 in bytes', bytes: () => rawFile(header({ w: entry('F32', [2 ** 51], [0, 8]) }), 8), expect: /overflows/ },
  { name: 'negative dim', bytes: () => rawFile(header({ w: entry('F32', [-1, 2], [0, 8]) }), 8), expect: /tensor "w" shape must be an array of non-negative integers, got \[-1,2\]/ },
  { name: 'fractional dim', bytes: () => rawFile(header({ w: entry('F32', [1.5], [0, 8]) }), 8), expect: /shape must be an array of non-negative integers/ },
  { name: 'unsafe integer dim', bytes: () => rawFile('{"w":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}}', 8), expect: /shape must be an array/ },
  { name: 'shape not an array', bytes: () => rawFile(header({ w: entry('F32', '2', [0, 8]) }), 8), expect: /shape must be an array/ },
  { name: 'negative offset', bytes: () => rawFile(header({ w: entry('F32', [2], [-8, 0]) }), 8), expect: /data_offsets must be \[begin, end\]/ },
  { name: 'begin > end', bytes: () => rawFile(header({ w: entry('F32', [0], [8, 0]) }), 8), expect: /begin <= end, got \[8,0\]/ },
  { name: 'three offsets', bytes: () => rawFile(header({ w: entry('F32', [2], [0, 8, 9]) }), 8), expect: /data_offsets must be/ },
  { name: 'dtype I64', bytes: () => rawFile(header({ w: entry('I64', [1], [0, 8]) }), 8), expect: /tensor "w" has dtype "I64", which is not supported \(supported: F32, F16, BF16\)/ },
  { name: 'dtype F64', bytes: () => rawFile(header({ w: entry('F64', [1], [0, 8]) }), 8), expect: /dtype "F64", which is not supported \(supported: F32, F16, BF16\)/ },
  { name: 'dtype lower case', bytes: () => rawFile(header({ w: entry('f32', [2], [0, 8]) }), 8), expect: /dtype "f32", which is not supported/ },
  { name: 'NaN weight', bytes: () => writeSafetensors({ ok: { shape: [1], data: f32(1) }, w: { shape: [3], data: f32(1, NaN, 2) } }), expect: /tensor "w" element 1 is NaN \(1 non-finite values\)/ },
  { name: 'Inf weight', bytes: () => writeSafetensors({ w: { shape: [3], data: f32(1, 2, Infinity) } }), expect: /tensor "w" element 2 is Infinity/ },
  { name: '-Inf weight (F16)', bytes: () => writeSafetensors({ w: { dtype: 'F16', shape: [2], data: f32(-Infinity, 0) } }), expect: /tensor "w" element 0 is -Infinity/ },
  { name: 'NaN weight (BF16)', bytes: () => writeSafetensors({ w: { dtype: 'BF16', shape: [1], data: f32(NaN) } }), expect: /tensor "w" element 0 is NaN/ },
  { name: 'F16 overflow from the writer becomes Inf', bytes: () => writeSafetensors({ w: { dtype: 'F16', shape: [1], data: f32(70000) } }), expect: /Infinity/ },
];

for (const row of BAD) {
  test(`refuses: ${row.name}`, () => {
    assertRefused(() => readSafetensors(row.bytes(), row.limits), row.expect);
  });
}

test('refuses more than the default 10000 tensors', () => {
  const entries: Record<string, unknown> = {};
  for (let i = 0; i <= 10_000; i++) entries[`t${i}`] = entry('F32', [0], [0, 0]);
  assertRefused(() => readSafetensors(rawFile(header(entries))), /10001 tensors, over the limit of 10000/);
});

test('collects every header problem into one error', () => {
  const file = rawFile(header({ a: entry('I64', [1], [0, 8]), b: { ...entry('F32', [2], [8, 16]), extra: true }, c: entry('F32', [-1], [16, 24]) }), 24);
  const err = assertRefused(() => readSafetensors(file), /\(1\).*\(2\).*\(3\)/);
  assert.equal(err.problems.length, 3);
  assert.match(err.problems.join('\n'), /I64/);
  assert.match(err.problems.join('\n'), /unknown field "extra"/);
  assert.match(err.problems.join('\n'), /tensor "c" shape/);
});

test('duplicate keys and layout problems are reported together', () => {
  const file = rawFile(`{"a":${JSON.stringify(ok)},"a":${JSON.stringify(ok)}}`, 12);
  const err = assertRefused(() => readSafetensors(file), /duplicate key "a"/);
  assert.match(err.message, /4 trailing bytes/);
});

test('the problem list is capped for hostile headers', () => {
  const entries: Record<string, unknown> = {};
  for (let i = 0; i < 100; i++) entries[`t${i}`] = entry('I64', [1], [8 * i, 8 * i + 8]);
  const err = assertRefused(() => readSafetensors(rawFile(header(entries), 800)), /and 68 more problems/);
  assert.equal(err.problems.length, 33);
});

test('long names are clipped in messages', () => {
  const name = 'x'.repeat(10_000);
  const err = assertRefused(() => readSafetensors(rawFile(header({ [name]: entry('I64', [1], [0, 8]) }), 8)), /x…"/);
  assert.ok(err.message.length < 400);
});

test('a "__proto__" metadata key stays plain data', () => {
  const file = rawFile('{"__metadata__":{"__proto__":"x","k":"v"}}');
  const { metadata } = readSafetensors(file).header;
  assert.equal(Object.getPrototypeOf(metadata), Object.prototype);
  assert.deepEqual(Object.keys(metadata), ['__proto__', 'k']);
});

test('parseSafetensorsHeader needs only the header bytes', () => {
  const file = writeSafetensors({ w: { shape: [1000], data: new Float32Array(1000) } });
  const h = readSafetensors(file).header;
  const fromPrefix = parseSafetensorsHeader(file.subarray(0, h.dataOffset), file.length);
  assert.deepEqual(fromPrefix, h);
  assertRefused(() => parseSafetensorsHeader(file.subarray(0, h.dataOffset), file.length + 1), /1 trailing bytes/);
  assert.throws(() => parseSafetensorsHeader(file.subarray(0, h.dataOffset - 1), file.length), RangeError);
  assert.throws(() => parseSafetensorsHeader(file.subarray(0, 4), file.length), RangeError);
});

test('programmer errors are RangeErrors, not refusals', () => {
  assert.throws(() => parseSafetensorsHeader(new Uint8Array(16), 8), RangeError);
  assert.throws(() => readSafetensors(rawFile('{}'), { maxHeaderBytes: -1 }), RangeError);
  assert.throws(() => writeSafetensors({ w: { shape: [3], data: f32(1) } }), RangeError);
  assert.throws(() => writeSafetensors({ __metadata__: { shape: [1], data: f32(1) } }), RangeError);
});

test('readSafetensorsHeader reads the header of a big sparse file from disk', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'safetensors-'));
  try {
    const path = join(dir, 'big.safetensors');
    const elements = 50 * 1024 * 1024 / 4; // 50 MiB of F32
    const headerText = header({ __metadata__: { format: 'pt' }, w: entry('F32', [1024, elements / 1024], [0, elements * 4]) });
    const head = rawFile(headerText);
    const fh = await open(path, 'w');
    try {
      await fh.write(head);
      await fh.truncate(head.length + elements * 4); // sparse: no data is ever written
    } finally {
      await fh.close();
    }
    const h = await readSafetensorsHeader(path);
    assert.equal(h.fileSize, head.length + elements * 4);
    assert.equal(h.dataOffset, head.length);
    assert.deepEqual(h.metadata, { format: 'pt' });
    assert.deepEqual(h.tensors, [{ name: 'w', dtype: 'F32', shape: [1024, elements / 1024], begin: 0, end: elements * 4 }]);

    // One byte more on disk is trailing data, refused from the header scan alone.
    const fh2 = await open(path, 'r+');
    await fh2.truncate(head.length + elements * 4 + 1).finally(() => fh2.close());
    await assert.rejects(readSafetensorsHeader(path), (e: unknown) => e instanceof AppError && e.code === 'INVALID_SAFETENSORS' && /1 trailing bytes/.test(e.message));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('readSafetensorsHeader refuses bad files the same way', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'safetensors-'));
  const refusedWith = (re: RegExp) => (e: unknown) => e instanceof AppError && e.code === 'INVALID_SAFETENSORS' && re.test(e.message);
  try {
    const cases: [Uint8Array, RegExp, SafetensorsLimits?][] = [
      [new Uint8Array(3), /3 bytes, shorter than the 8-byte/],
      [rawFile('{}', 0, 2n ** 40n), /over the limit of 1048576/],
      [rawFile('{}', 0, 1000n), /runs past the end of the file/],
      [rawFile(header({ w: ok }), 8), /over the limit of 8 bytes/, { maxHeaderBytes: 8 }],
      [rawFile(' {}'), /starting with '\{'/],
      [rawFile(header({ w: entry('F64', [1], [0, 8]) }), 8), /F64/],
    ];
    for (const [i, [bytes, re, limits]] of cases.entries()) {
      const path = join(dir, `bad${i}.safetensors`);
      await writeFile(path, bytes);
      await assert.rejects(readSafetensorsHeader(path, limits), refusedWith(re), `case ${i}`);
    }
    await assert.rejects(readSafetensorsHeader(join(dir, 'missing')), { code: 'ENOENT' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('readSafetensors decodes F32 from a pooled Node Buffer view (not the whole pool)', async () => {
  const { writeSafetensors: w, readSafetensors: r } = await import('../src/adapter/safetensors.js');
  const bytes = w({ x: { shape: [3], data: Float32Array.of(1.5, -2, 3.25) } });
  const pooled = Buffer.from(bytes); // small Buffers share one pool: byteOffset != 0
  const { tensors } = r(pooled);
  assert.deepEqual([...tensors.get('x')!.data], [1.5, -2, 3.25]);
});

// ---------------------------------------------------------------------------------------
// Hostile structure: nesting and dimensions are capped before anything recurses or multiplies.

/** `depth` nested arrays as JSON text (JSON.stringify itself overflows the stack on such depth). */
const nest = (depth: number, inner = '') => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;

for (const [where, text] of [
  ['__metadata__', `{"__metadata__":${nest(10_000)}}`],
  ['a metadata value', `{"__metadata__":{"k":${nest(10_000)}}}`],
  ['shape', `{"w":{"dtype":"F32","shape":${nest(10_000, '2')},"data_offsets":[0,8]}}`],
  ['dtype', `{"w":{"dtype":${nest(10_000)},"shape":[2],"data_offsets":[0,8]}}`],
  ['data_offsets', `{"w":{"dtype":"F32","shape":[2],"data_offsets":${nest(10_000, '0,8')}}}`],
  ['an unknown field', `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":${nest(10_000)}}}`],
  ['a tensor entry (objects)', `{"w":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`],
] as const) {
  test(`refuses 10,000 levels of nesting in ${where} with INVALID_SAFETENSORS, not a stack overflow`, () => {
    const err = assertRefused(() => readSafetensors(rawFile(text, 8)), /nests arrays or objects more than 16 levels deep/);
    assert.ok(err.message.length < 300);
  });
}

test('nesting within the limit gets its precise error; brackets inside strings do not count', () => {
  assertRefused(() => readSafetensors(rawFile(`{"w":{"dtype":"F32","shape":${nest(12, '2')},"data_offsets":[0,8]}}`, 8)), /tensor "w" shape must be an array of non-negative integers/);
  const file = rawFile(JSON.stringify({ __metadata__: { brackets: nest(1000) } }));
  assert.deepEqual(readSafetensors(file).header.metadata, { brackets: nest(1000) });
});

// 80,000 dimensions of 2^32 (a 900 KB header): multiplying them out as BigInts took minutes, and
// the message held all of them. The test's timeout catches a return of the minutes (a timing
// assertion would fail on a loaded machine or under mutation testing's instrumented code).
test('a shape with more than 64 dimensions is refused at once, with a short message', { timeout: 30_000 }, () => {
  const dims = new Array(80_000).fill(2 ** 32);
  const err = assertRefused(() => readSafetensors(rawFile(header({ w: entry('F32', dims, [0, 8]) }), 8)), /tensor "w" shape has 80000 dimensions; at most 64 are accepted/);
  assert.ok(err.message.length < 300, `${err.message.length} characters`);
  // 64 are fine when they are consistent.
  const ones = new Array(63).fill(1);
  const ok = readSafetensors(rawFile(header({ w: entry('F32', [2, ...ones], [0, 8]) }), 8));
  assert.equal(ok.tensors.get('w')?.shape.length, 64);
  // An overflow past 2^53 is found without multiplying everything (and says so briefly).
  assertRefused(() => readSafetensors(rawFile(header({ w: entry('F32', new Array(64).fill(2 ** 40), [0, 8]) }), 8)), /overflows: more than 2\^53 bytes/);
});

test('aligned F32 tensors are views of the file bytes, not copies; unaligned ones and F16 are decoded into their own memory', () => {
  const file = writeSafetensors({ a: { shape: [2, 3], data: f32(1, 2, 3, 4, 5, 6) }, b: { shape: [2], data: f32(7, 8) } });
  const { tensors, header: h } = readSafetensors(file);
  for (const t of h.tensors) {
    const d = tensors.get(t.name)!.data;
    assert.equal(d.buffer, file.buffer, `${t.name} is a view`);
    assert.equal(d.byteOffset, file.byteOffset + h.dataOffset + t.begin);
  }
  // A view: it sees the file's bytes.
  new DataView(file.buffer).setFloat32(h.dataOffset, 42, true);
  assert.equal(tensors.get('a')!.data[0], 42);
  const shifted = new Uint8Array(file.length + 1).subarray(1);
  shifted.set(file);
  assert.notEqual(readSafetensors(shifted).tensors.get('a')!.data.buffer, shifted.buffer);
  const half = writeSafetensors({ h: { dtype: 'F16', shape: [2], data: f32(1, 2) } });
  assert.notEqual(readSafetensors(half).tensors.get('h')!.data.buffer, half.buffer);
});

test('skipFiniteCheck leaves non-finite values for the caller to find', () => {
  const file = writeSafetensors({ w: { shape: [2], data: f32(1, NaN) } });
  assert.ok(Number.isNaN(readSafetensors(file, undefined, { skipFiniteCheck: true }).tensors.get('w')!.data[1]));
  assertRefused(() => readSafetensors(file), /element 1 is NaN/);
});

// ---------------------------------------------------------------------------------------
// Boundaries and exact messages (tests written for the survivors of the mutation run,
// docs/testing.md).

/** `fn` throws a RangeError (a caller's mistake, not a refused file) whose message matches `re`. */
function assertRangeError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof RangeError && re.test(e.message));
}

test('every refusal names the file kind first; RangeErrors for a caller\'s inconsistent arguments say which', () => {
  assertRefused(() => readSafetensors(rawFile('{"w":1}')), /^invalid safetensors file: tensor "w" must be an object/);
  assertRangeError(() => parseSafetensorsHeader(new Uint8Array(8), -1), /^fileSize must be a non-negative integer, got -1$/);
  assertRangeError(() => parseSafetensorsHeader(new Uint8Array(8), 8.5), /^fileSize must be a non-negative integer, got 8\.5$/);
  assertRangeError(() => parseSafetensorsHeader(new Uint8Array(9), 8), /^prefix \(9 bytes\) is longer than fileSize \(8\)$/);
  assertRangeError(() => parseSafetensorsHeader(new Uint8Array(4), 100), /^prefix holds 4 bytes; the 8-byte header length is needed$/);
  const file = rawFile('{}');
  assertRangeError(() => parseSafetensorsHeader(file.subarray(0, 9), file.length), /^prefix holds 9 bytes; the header needs 8 \+ 2 = 10$/);
  assertRangeError(() => parseSafetensorsHeader(file, file.length, { maxTensors: -1 }), /^SafetensorsLimits\.maxTensors must be a non-negative integer, got -1$/);
  assertRangeError(() => parseSafetensorsHeader(file, file.length, { maxHeaderBytes: 1.5 }), /^SafetensorsLimits\.maxHeaderBytes must be a non-negative integer, got 1\.5$/);
  // A limit of 0 is a valid limit: no tensors at all.
  assert.deepEqual(parseSafetensorsHeader(file, file.length, { maxTensors: 0 }).tensors, []);
});

test('a file shorter than the 8-byte length field is refused as such', () => {
  assertRefused(() => readSafetensors(new Uint8Array(5)), /file is 5 bytes, shorter than the 8-byte header length/);
});

test('limits are inclusive: exactly maxTensors tensors, a header of exactly maxHeaderBytes', () => {
  const file = writeSafetensors({ a: { shape: [1], data: f32(1) }, b: { shape: [1], data: f32(2) } });
  assert.equal(readSafetensors(file, { maxTensors: 2 }).tensors.size, 2);
  assertRefused(() => readSafetensors(file, { maxTensors: 1 }), /2 tensors, over the limit of 1/);
  const headerLength = parseSafetensorsHeader(file, file.length).headerLength;
  assert.equal(readSafetensors(file, { maxHeaderBytes: headerLength }).tensors.size, 2);
  assertRefused(() => readSafetensors(file, { maxHeaderBytes: headerLength - 1 }), new RegExp(`header length ${headerLength} bytes is over the limit of ${headerLength - 1} bytes`));
});

test('nesting of exactly 16 levels passes the depth check (and gets the precise error); 17 does not', () => {
  assertRefused(() => readSafetensors(rawFile(`{"w":{"dtype":"F32","shape":${nest(14, '2')},"data_offsets":[0,8]}}`, 8)), /tensor "w" shape must be an array of non-negative integers/);
  assertRefused(() => readSafetensors(rawFile(`{"w":{"dtype":"F32","shape":${nest(15, '2')},"data_offsets":[0,8]}}`, 8)), /nests arrays or objects more than 16 levels deep/);
});

test('an unterminated string in the header is refused as JSON, not scanned forever', () => {
  assertRefused(() => readSafetensors(rawFile('{"abc')), /header is not valid JSON/);
});

test('an escaped quote inside a string does not end it: brackets after it do not count as nesting', () => {
  const value = `\\"${'['.repeat(40)}`;
  const file = rawFile(JSON.stringify({ __metadata__: { k: JSON.parse(`"${value}"`) } }));
  assert.deepEqual(readSafetensors(file).header.metadata, { k: `"${'['.repeat(40)}` });
});

test('string values equal to a key are not keys: no duplicate reported', () => {
  const file = rawFile(JSON.stringify({ __metadata__: { a: 'a', b: 'a', c: 'b' } }));
  assert.deepEqual(readSafetensors(file).header.metadata, { a: 'a', b: 'a', c: 'b' });
});

test('a duplicate key in an object nested inside a tensor entry is located "in a nested object"', () => {
  const text = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":{"a":1,"a":2}}}';
  const err = assertRefused(() => readSafetensors(rawFile(text, 4)), /duplicate key "a" in a nested object/);
  assert.doesNotMatch(err.message, /in tensor "x"/);
});

/** The problem list of a refused file made from a raw header and a data section. */
function problemsOf(text: string, data = 0): readonly string[] {
  try {
    readSafetensors(rawFile(text, data));
  } catch (e) {
    assert.ok(e instanceof AppError);
    return e.problems;
  }
  throw new Error('not refused');
}

test('entry problems: exactly one message per missing field; the unknown-field message lists the allowed ones', () => {
  assert.deepEqual(problemsOf('{"w":{"shape":[1],"data_offsets":[0,4]}}', 4), ['tensor "w" is missing field "dtype"']);
  assert.deepEqual(problemsOf('{"w":{"dtype":"F32","data_offsets":[0,4]}}', 4), ['tensor "w" is missing field "shape"']);
  assert.deepEqual(problemsOf('{"w":{"dtype":"F32","shape":[1]}}'), ['tensor "w" is missing field "data_offsets"']);
  assert.deepEqual(problemsOf('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"q":1}}', 4),
    ['tensor "w" has unknown field "q" (allowed: dtype, shape, data_offsets)']);
  assert.deepEqual(problemsOf('{"v":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[2],"data_offsets":[4,8]}}', 8),
    ['tensor "w" shape [2] of F32 needs 8 bytes but data_offsets span 4']);
  // A tensor with a bad dtype but usable offsets still takes part in the layout check: the gap
  // after it is reported too. A tensor without usable offsets does not: no shadow gaps.
  assert.deepEqual(problemsOf('{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', 12), [
    'tensor "a" has dtype "F64", which is not supported (supported: F32, F16, BF16)',
    'gap of 4 bytes before tensor "b" (data section bytes 4..8 belong to no tensor)',
  ]);
  assert.deepEqual(problemsOf('{"a":{"dtype":"F32","shape":[1],"data_offsets":"x"},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8), [
    'tensor "a" data_offsets must be [begin, end] of non-negative integers with begin <= end, got "x"',
  ]);
});

test('a zero-size tensor with a huge other dimension is zero bytes, not an overflow', () => {
  const file = rawFile(header({ z: entry('F32', [9007199254740991, 0], [0, 0]) }));
  assert.deepEqual(readSafetensors(file).header.tensors.map((t) => [t.name, t.begin, t.end]), [['z', 0, 0]]);
});

test('an overlap is reported against the tensor that reaches furthest, and a tensor inside another does not shrink the covered range', () => {
  // b lies inside a; c starts where a ends: only b's overlap is a problem (no gap before c).
  assert.deepEqual(problemsOf(header({ a: entry('F16', [4], [0, 8]), b: entry('F16', [1], [2, 4]), c: entry('F16', [2], [8, 12]) }), 12),
    ['tensor "b" [2, 4) overlaps tensor "a" [0, 8)']);
  // a and b end at the same byte; c overlaps the later-starting of them, b.
  assert.deepEqual(problemsOf(header({ a: entry('F16', [4], [0, 8]), b: entry('F16', [2], [4, 8]), c: entry('F16', [2], [6, 10]) }), 10),
    ['tensor "b" [4, 8) overlaps tensor "a" [0, 8)', 'tensor "c" [6, 10) overlaps tensor "b" [4, 8)']);
});

test('the non-finite message names the first bad element and the count', () => {
  assertRefused(() => readSafetensors(writeSafetensors({ w: { shape: [4], data: f32(NaN, 1, Infinity, 2) } })), /tensor "w" element 0 is NaN \(2 non-finite values\)/);
  assertRefused(() => readSafetensors(writeSafetensors({ w: { shape: [4], data: f32(1, -Infinity, NaN, 2) } })), /tensor "w" element 1 is -Infinity \(2 non-finite values\)/);
});

test('the writer: no __metadata__ for empty metadata, minimal space padding, RangeErrors naming the problem', () => {
  const text = (file: Uint8Array) => new TextDecoder().decode(file.subarray(8, 8 + Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true))));
  const plain = writeSafetensors({ w: { shape: [1], data: f32(1) } }, {});
  assert.doesNotMatch(text(plain), /__metadata__/);
  for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 9]) {
    const file = writeSafetensors({ ['x'.repeat(n)]: { shape: [1], data: f32(1) } });
    const h = text(file);
    const json = h.trimEnd();
    assert.equal(h.length % 8, 0);
    assert.ok(h.length - json.length < 8, `${h.length - json.length} bytes of padding`);
  }
  assertRangeError(() => writeSafetensors({ __metadata__: { shape: [1], data: f32(1) } }), /^"__metadata__" cannot be a tensor name$/);
  assertRangeError(() => writeSafetensors({ w: { dtype: 'F64' as 'F32', shape: [1], data: f32(1) } }), /^tensor "w": unsupported dtype F64$/);
  assertRangeError(() => writeSafetensors({ w: { shape: [-1], data: f32(1) } }), /^tensor "w": bad shape \[-1\]$/);
  assertRangeError(() => writeSafetensors({ w: { shape: [2], data: f32(1, 2, 3) } }), /^tensor "w": shape \[2\] has 2 elements but data has 3$/);
});

test('F16 rounding: below, at and above halfway, normal and subnormal', () => {
  const cases: Array<[number, number]> = [
    [1 + 2 ** -12, 1], // below halfway: down
    [1 + 2 ** -11 + 2 ** -20, 1 + 2 ** -10], // above halfway: up
    [1 + 2 ** -11, 1], // tie, even: stays
    [1 + 3 * 2 ** -11, 1 + 2 ** -9], // tie, odd: up to even
    [5 * 2 ** -26, 2 ** -24], // subnormal, below halfway (1.25 units): down
    [7 * 2 ** -26, 2 * 2 ** -24], // subnormal, above halfway (1.75 units): up
    [3 * 2 ** -25, 2 * 2 ** -24], // subnormal tie at 1.5 units, odd: up
    [5 * 2 ** -25, 2 * 2 ** -24], // subnormal tie at 2.5 units, even: stays
  ];
  const file = writeSafetensors({ h: { dtype: 'F16', shape: [cases.length], data: f32(...cases.map((c) => c[0])) } });
  assert.deepEqual([...readSafetensors(file).tensors.get('h')!.data], cases.map((c) => c[1]));
});
