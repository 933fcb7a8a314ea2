/**
 * A strict reader (and a small writer) for Hugging Face safetensors files.
 *
 * Layout: an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON mapping each
 * tensor name to `{ dtype, shape, data_offsets: [begin, end] }` (offsets relative to the
 * data section, which starts at 8 + N), an optional `"__metadata__": { string: string }`,
 * then the data section.
 *
 * Adapters come from untrusted clients, so the reader refuses anything the format does not
 * strictly allow (leading whitespace, duplicate keys, unknown fields, gaps, overlaps,
 * trailing bytes such as an appended archive, non-finite weights) with INVALID_SAFETENSORS,
 * and never allocates from a size it has not checked against a cap and the file size.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { AppError, clip as clipTo, echo, throwIfProblems } from '../errors.js';

/** Element encodings this server accepts; every other safetensors dtype is refused. */
export type SafetensorsDType = 'F32' | 'F16' | 'BF16';

/** One tensor's entry in a validated header. */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte offset within the data section where the tensor starts. */
  begin: number;
  /** Byte offset within the data section just past the tensor. */
  end: number;
}

/** A validated header. */
export interface SafetensorsHeader {
  /** Every tensor, in data-section order (by `begin`), so they tile the data section. */
  tensors: TensorInfo[];
  /** `__metadata__`, or `{}` when absent. */
  metadata: Record<string, string>;
  /** N: the JSON header's length in bytes, padding included. */
  headerLength: number;
  /** 8 + N: where the data section starts in the file. */
  dataOffset: number;
  /** Total file size in bytes. */
  fileSize: number;
}

/** Caps applied before anything is allocated or parsed. */
export interface SafetensorsLimits {
  /** Largest accepted JSON header, in bytes (default 1 MiB). */
  maxHeaderBytes?: number;
  /** Largest accepted number of tensors (default 10000). */
  maxTensors?: number;
}

/**
 * Deepest nesting of arrays and objects accepted in a header, checked on the text before it
 * is parsed. A valid header needs 3 (the header object, an entry, its shape array); the slack
 * lets a slightly wrong header get its precise error, and keeps every later step (which may
 * recurse, such as JSON.stringify for a message) far from the stack limit.
 */
export const MAX_HEADER_DEPTH = 16;
/** Most dimensions a tensor's shape may have (PyTorch allows 64 at most in practice too). */
export const MAX_DIMS = 64;

/** One decoded tensor. */
export interface DecodedTensor {
  shape: number[];
  /** The encoding it was stored in; `data` is always float32. */
  dtype: SafetensorsDType;
  /**
   * Row-major values, F16/BF16 widened to float32. For F32 data that sits 4-byte aligned in
   * memory (always, for a file Buffer of its own: the format pads its header to 8 bytes) this
   * is a view of the file's bytes, not a copy: it changes if they change.
   */
  data: Float32Array; // [product(shape)]
}

const CODE = 'INVALID_SAFETENSORS';
const WHAT = 'invalid safetensors file';
const DEFAULT_MAX_HEADER_BYTES = 1024 * 1024;
const DEFAULT_MAX_TENSORS = 10_000;
/** A hostile header can produce one problem per tensor; the error response stays small. */
const MAX_REPORTED_PROBLEMS = 32;
const METADATA_KEY = '__metadata__';
const DTYPE_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2 };
const SUPPORTED_DTYPES = Object.keys(DTYPE_BYTES) as SafetensorsDType[];
const ENTRY_FIELDS = ['dtype', 'shape', 'data_offsets'];
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------
// Header

/**
 * Validates the header given the first bytes of the file (at least 8 + N of them) and the total file size. Does not look at the data.
 * Throws AppError INVALID_SAFETENSORS for a bad file; RangeError when the prefix is too short or `fileSize` is inconsistent with it.
 */
export function parseSafetensorsHeader(prefix: Uint8Array, fileSize: number, limits?: SafetensorsLimits): SafetensorsHeader {
  const { maxHeaderBytes, maxTensors } = resolveLimits(limits);
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) throw new RangeError(`fileSize must be a non-negative integer, got ${fileSize}`);
  if (prefix.length > fileSize) throw new RangeError(`prefix (${prefix.length} bytes) is longer than fileSize (${fileSize})`);
  // A short prefix is the caller's mistake, not the file's: do not blame the upload for it.
  if (prefix.length < Math.min(8, fileSize)) throw new RangeError(`prefix holds ${prefix.length} bytes; the 8-byte header length is needed`);

  const headerLength = checkHeaderLength(prefix.subarray(0, 8), fileSize, maxHeaderBytes);
  const dataOffset = 8 + headerLength;
  if (prefix.length < dataOffset) throw new RangeError(`prefix holds ${prefix.length} bytes; the header needs 8 + ${headerLength} = ${dataOffset}`);

  const { root, problems } = parseHeaderJson(prefix.subarray(8, dataOffset));
  let metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  // Every entry with usable offsets, valid or not, so the layout check sees the real layout.
  const spans: Span[] = [];
  let allOffsetsValid = true;
  const names = Object.keys(root).filter((k) => k !== METADATA_KEY);
  if (names.length > maxTensors) problems.push(`${names.length} tensors, over the limit of ${maxTensors}`);
  if (Object.hasOwn(root, METADATA_KEY)) metadata = checkMetadata(root[METADATA_KEY], problems);
  for (const name of names) {
    const { info, span } = checkEntry(name, root[name], problems);
    if (info) tensors.push(info);
    if (span) spans.push(span);
    else allOffsetsValid = false;
  }
  // Layout checks only make sense once every tensor has usable offsets; otherwise they would
  // report gaps that are just the shadow of an offset already reported as invalid.
  if (allOffsetsValid) checkLayout(spans.sort(byOffset), fileSize - dataOffset, problems);
  tensors.sort(byOffset);
  throwIfProblems(CODE, WHAT, capProblems(problems));
  return { tensors, metadata, headerLength, dataOffset, fileSize };
}

/** Reads only the header from disk (open, read 8 bytes, read N bytes) — cheap start-up scan. Filesystem errors (ENOENT, …) are passed through unchanged. */
export async function readSafetensorsHeader(filePath: string, limits?: SafetensorsLimits): Promise<SafetensorsHeader> {
  const { maxHeaderBytes } = resolveLimits(limits);
  const fh = await open(filePath, 'r');
  try {
    const { size } = await fh.stat();
    const lengthBytes = await readAt(fh, 0, Math.min(8, size));
    // Checked against the cap and the file size before the header buffer is allocated.
    const headerLength = checkHeaderLength(lengthBytes, size, maxHeaderBytes);
    const prefix = new Uint8Array(8 + headerLength);
    prefix.set(lengthBytes);
    prefix.set(await readAt(fh, 8, headerLength), 8);
    return parseSafetensorsHeader(prefix, size, limits);
  } finally {
    await fh.close();
  }
}

function resolveLimits(limits: SafetensorsLimits | undefined): Required<SafetensorsLimits> {
  const maxHeaderBytes = limits?.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const maxTensors = limits?.maxTensors ?? DEFAULT_MAX_TENSORS;
  for (const [key, v] of [['maxHeaderBytes', maxHeaderBytes], ['maxTensors', maxTensors]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`SafetensorsLimits.${key} must be a non-negative integer, got ${v}`);
  }
  return { maxHeaderBytes, maxTensors };
}

/** Reads the u64 header length N and checks it against the cap and the file before anyone allocates N bytes. */
function checkHeaderLength(first8: Uint8Array, fileSize: number, maxHeaderBytes: number): number {
  if (fileSize < 8 || first8.length < 8) refuse(`file is ${fileSize} bytes, shorter than the 8-byte header length`);
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(maxHeaderBytes)) refuse(`header length ${n} bytes is over the limit of ${maxHeaderBytes} bytes`);
  if (8n + n > BigInt(fileSize)) refuse(`header length ${n} bytes runs past the end of the file (8 + ${n} > ${fileSize} bytes)`);
  return Number(n);
}

/** Reads exactly `length` bytes at `position`; a file that shrinks under us is refused. */
async function readAt(fh: FileHandle, position: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) refuse(`file ended at byte ${position + done} while reading the header`);
    done += bytesRead;
  }
  return buf;
}

/**
 * UTF-8, a JSON object starting at the first byte, no duplicate keys, only space padding
 * after it. Refuses at once when there is no object to look into; otherwise returns the
 * problems found so far so the caller can add its own.
 */
function parseHeaderJson(bytes: Uint8Array): { root: Record<string, unknown>; problems: string[] } {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    return refuse('header is not valid UTF-8');
  }
  if (!text.startsWith('{')) {
    const found = text.length === 0 ? 'an empty header' : JSON.stringify(text[0]);
    refuse(`header must be a JSON object starting with '{' at its first byte, found ${found}`);
  }
  const depth = nestingDepth(text, MAX_HEADER_DEPTH);
  if (depth > MAX_HEADER_DEPTH) refuse(`header nests arrays or objects more than ${MAX_HEADER_DEPTH} levels deep (a valid header needs 3)`);
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (e) {
    refuse(`header is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  // Starts with '{' and parsed, so it is an object; the check keeps the type honest.
  if (!isPlainObject(root)) return refuse('header is not a JSON object');
  const { end, duplicates } = scanKeys(text);
  const problems = duplicates;
  const padding = text.slice(end + 1);
  if (!/^ *$/.test(padding)) problems.push(`header has characters other than space padding after its closing brace: ${JSON.stringify(clip(padding))}`);
  return { root, problems };
}

/**
 * How deeply `text` nests arrays and objects, counting only up to `limit + 1` (it stops there).
 * Iterative, and it skips strings, so a bracket inside a string does not count.
 */
function nestingDepth(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // Skip the string: a backslash escapes the next character.
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) max = depth;
      if (max > limit) return max;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return max;
}

/**
 * JSON.parse keeps the last of duplicate keys silently, so a second scan over the (already
 * validated) text finds them. Iterative, so deep nesting cannot overflow the stack. Returns
 * the index of the top-level object's closing brace.
 */
function scanKeys(text: string): { end: number; duplicates: string[] } {
  const duplicates: string[] = [];
  // One frame per open container: objects carry their keys and where they sit, arrays are null.
  const stack: ({ keys: Set<string>; where: string; lastKey: string } | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top && expectKey) {
        const raw = text.slice(i + 1, j);
        const key = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
        if (top.keys.has(key)) duplicates.push(`duplicate key ${quote(key)} ${top.where}`);
        top.keys.add(key);
        top.lastKey = key;
        expectKey = false;
      }
      i = j;
    } else if (c === '{') {
      const parent = stack[stack.length - 1];
      const where = stack.length === 0 ? 'at the top level' : stack.length === 1 && parent ? `in ${parent.lastKey === METADATA_KEY ? METADATA_KEY : `tensor ${quote(parent.lastKey)}`}` : 'in a nested object';
      stack.push({ keys: new Set(), where, lastKey: '' });
      expectKey = true;
    } else if (c === '[') {
      stack.push(null);
    } else if (c === '}' || c === ']') {
      stack.pop();
      if (stack.length === 0) return { end: i, duplicates };
    } else if (c === ',') {
      expectKey = stack[stack.length - 1] != null;
    }
  }
  // Unreachable for text JSON.parse accepted as an object.
  return { end: text.length - 1, duplicates };
}

function checkMetadata(value: unknown, problems: string[]): Record<string, string> {
  if (!isPlainObject(value)) {
    problems.push(`${METADATA_KEY} must be an object of string values, got ${describe(value)}`);
    return {};
  }
  const entries: [string, string][] = [];
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === 'string') entries.push([k, v]);
    else problems.push(`${METADATA_KEY} value for ${quote(k)} must be a string, got ${describe(v)}`);
  }
  // fromEntries defines own properties, so a "__proto__" key cannot touch the prototype.
  return Object.fromEntries(entries);
}

/** Where a tensor sits in the data section. */
interface Span {
  name: string;
  begin: number;
  end: number;
}

/** Checks one entry: `info` when it is entirely valid, `span` whenever its offsets are usable. */
function checkEntry(name: string, value: unknown, problems: string[]): { info?: TensorInfo; span?: Span } {
  // Only built when there is a problem to report: most entries have none.
  const t = () => `tensor ${quote(name)}`;
  if (!isPlainObject(value)) {
    problems.push(`${t()} must be an object with dtype, shape and data_offsets, got ${describe(value)}`);
    return {};
  }
  const before = problems.length;
  for (const k of Object.keys(value)) {
    if (!ENTRY_FIELDS.includes(k)) problems.push(`${t()} has unknown field ${quote(k)} (allowed: ${ENTRY_FIELDS.join(', ')})`);
  }
  for (const k of ENTRY_FIELDS) {
    if (!Object.hasOwn(value, k)) problems.push(`${t()} is missing field ${quote(k)}`);
  }

  const { dtype, shape, data_offsets: offsets } = value;
  let dt: SafetensorsDType | undefined;
  if (typeof dtype === 'string' && (SUPPORTED_DTYPES as string[]).includes(dtype)) dt = dtype as SafetensorsDType;
  else if (dtype !== undefined) problems.push(`${t()} has dtype ${describe(dtype)}, which is not supported (supported: ${SUPPORTED_DTYPES.join(', ')})`);

  let dims = Array.isArray(shape) && shape.every(isNonNegativeInt) ? (shape as number[]) : undefined;
  if (shape !== undefined && dims === undefined) problems.push(`${t()} shape must be an array of non-negative integers, got ${describe(shape)}`);
  if (dims && dims.length > MAX_DIMS) {
    problems.push(`${t()} shape has ${dims.length} dimensions; at most ${MAX_DIMS} are accepted`);
    dims = undefined;
  }

  const span = Array.isArray(offsets) && offsets.length === 2 && offsets.every(isNonNegativeInt) && offsets[0] <= offsets[1] ? (offsets as [number, number]) : undefined;
  if (offsets !== undefined && span === undefined) problems.push(`${t()} data_offsets must be [begin, end] of non-negative integers with begin <= end, got ${describe(offsets)}`);

  if (dt && dims && span) {
    const bytes = byteSize(dims, DTYPE_BYTES[dt]);
    if (bytes === undefined) problems.push(`${t()} shape ${describe(dims)} overflows: more than 2^53 bytes of ${dt}, more than any file can hold`);
    else if (bytes !== span[1] - span[0]) problems.push(`${t()} shape ${describe(dims)} of ${dt} needs ${bytes} bytes but data_offsets span ${span[1] - span[0]}`);
  }
  if (!span) return {};
  const where = { name, begin: span[0], end: span[1] };
  if (problems.length > before || !dt || !dims) return { span: where };
  return { info: { ...where, dtype: dt, shape: dims }, span: where };
}

/** Bytes of a tensor of this shape, or undefined past Number.MAX_SAFE_INTEGER (stops multiplying there). */
function byteSize(dims: readonly number[], elementBytes: number): number | undefined {
  if (dims.includes(0)) return 0;
  let bytes = elementBytes;
  for (const d of dims) {
    // Exact while the product stays a safe integer; a true product past it rounds to ≥ 2^53.
    bytes *= d;
    if (bytes > Number.MAX_SAFE_INTEGER) return undefined;
  }
  return bytes;
}

/** The tensors (sorted by offset) must tile the data section exactly: start at 0, no gaps, no overlaps, no trailing bytes. */
function checkLayout(sorted: Span[], dataSize: number, problems: string[]): void {
  let covered = 0;
  let last: Span | undefined;
  for (const t of sorted) {
    if (t.begin > covered) {
      if (last === undefined) problems.push(`data_offsets do not start at 0: the first tensor ${quote(t.name)} begins at ${t.begin}`);
      else problems.push(`gap of ${t.begin - covered} bytes before tensor ${quote(t.name)} (data section bytes ${covered}..${t.begin} belong to no tensor)`);
    } else if (t.begin < covered && last) {
      problems.push(`tensor ${quote(t.name)} [${t.begin}, ${t.end}) overlaps tensor ${quote(last.name)} [${last.begin}, ${last.end})`);
    }
    if (t.end >= covered) {
      covered = t.end;
      last = t;
    }
  }
  if (covered > dataSize) problems.push(`tensor ${quote(last?.name ?? '')} ends at byte ${covered} of the data section, past the end of the file (the data section is ${dataSize} bytes)`);
  else if (covered < dataSize) problems.push(`${dataSize - covered} trailing bytes after the last tensor (the data section is ${dataSize} bytes, tensors end at ${covered})`);
}

// ---------------------------------------------------------------------------------------
// Data

/**
 * Full strict read of an in-memory file: header + each tensor as a Float32Array (F16/BF16
 * widened; aligned F32 as views of `file`, see {@link DecodedTensor.data}), NaN/Inf refused
 * unless `opts.skipFiniteCheck` (for a caller that checks every value as it copies it).
 */
export function readSafetensors(
  file: Uint8Array, limits?: SafetensorsLimits, opts: { skipFiniteCheck?: boolean } = {},
): { header: SafetensorsHeader; tensors: Map<string, DecodedTensor> } {
  const header = parseSafetensorsHeader(file, file.length, limits);
  const tensors = new Map<string, DecodedTensor>();
  const problems: string[] = [];
  for (const t of header.tensors) {
    const bytes = file.subarray(header.dataOffset + t.begin, header.dataOffset + t.end);
    const data = decode(bytes, t.dtype);
    const bad = opts.skipFiniteCheck ? undefined : firstNonFinite(data);
    if (bad) problems.push(`tensor ${quote(t.name)} element ${bad.index} is ${data[bad.index]} (${bad.count} non-finite values)`);
    tensors.set(t.name, { shape: t.shape, dtype: t.dtype, data });
  }
  throwIfProblems(CODE, WHAT, capProblems(problems));
  return { header, tensors };
}

function decode(bytes: Uint8Array, dtype: SafetensorsDType): Float32Array {
  const n = bytes.length / DTYPE_BYTES[dtype];
  if (dtype === 'F32') {
    // Aligned: a view of the file's bytes, no copy (the loader transposes straight from it).
    if (LITTLE_ENDIAN_HOST && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
    // Unaligned (a Buffer sliced from Node's shared pool, a file whose F16 tensors come
    // first): copy into a fresh, aligned buffer. Not bytes.slice(): on a Node Buffer that is a
    // view of the whole pool, not a copy.
    if (LITTLE_ENDIAN_HOST) {
      const copy = new Uint8Array(bytes.length);
      copy.set(bytes);
      return new Float32Array(copy.buffer, 0, n);
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    return Float32Array.from({ length: n }, (_, i) => view.getFloat32(4 * i, true));
  }
  if (dtype === 'BF16') {
    // BF16 is the top half of a float32: widen the bits, then reinterpret.
    const bits = new Uint32Array(n);
    for (let i = 0; i < n; i++) bits[i] = (bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16;
    return new Float32Array(bits.buffer);
  }
  const table = halfTable();
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = table[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
  return out;
}

function firstNonFinite(data: Float32Array): { index: number; count: number } | undefined {
  let index = -1;
  let count = 0;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      if (index < 0) index = i;
      count++;
    }
  }
  return index < 0 ? undefined : { index, count };
}

// ---------------------------------------------------------------------------------------
// Writer

/**
 * Writer (used by tests, benchmarks and tools): tensors in sorted name order, header padded
 * with spaces to 8-byte alignment like the Python library. `data` is float32 values; `dtype`
 * (default F32) chooses the stored encoding (F16/BF16 rounded to nearest-even). Values are
 * written as given: NaN, and finite values beyond the F16/BF16 range (which become ±Inf),
 * produce files that readSafetensors refuses. Throws RangeError for inconsistent input.
 */
export function writeSafetensors(
  tensors: Record<string, { dtype?: SafetensorsDType; shape: number[]; data: Float32Array }>,
  metadata?: Record<string, string>,
): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header[METADATA_KEY] = metadata;
  let offset = 0;
  const parts: { dtype: SafetensorsDType; data: Float32Array; begin: number }[] = [];
  for (const name of names) {
    if (name === METADATA_KEY) throw new RangeError(`"${METADATA_KEY}" cannot be a tensor name`);
    const { dtype = 'F32', shape, data } = tensors[name];
    if (!SUPPORTED_DTYPES.includes(dtype)) throw new RangeError(`tensor ${quote(name)}: unsupported dtype ${dtype}`);
    if (!shape.every(isNonNegativeInt)) throw new RangeError(`tensor ${quote(name)}: bad shape ${describe(shape)}`);
    const elements = shape.reduce((p, d) => p * d, 1);
    if (elements !== data.length) throw new RangeError(`tensor ${quote(name)}: shape ${describe(shape)} has ${elements} elements but data has ${data.length}`);
    const bytes = elements * DTYPE_BYTES[dtype];
    Object.defineProperty(header, name, { value: { dtype, shape, data_offsets: [offset, offset + bytes] }, enumerable: true });
    parts.push({ dtype, data, begin: offset });
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  const dataStart = 8 + padded;
  for (const { dtype, data, begin } of parts) {
    const at = dataStart + begin;
    for (let i = 0; i < data.length; i++) {
      if (dtype === 'F32') view.setFloat32(at + 4 * i, data[i], true);
      else view.setUint16(at + 2 * i, dtype === 'F16' ? floatToHalf(data[i]) : floatToBfloat16(data[i]), true);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// float16 / bfloat16

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
let HALF_TABLE: Float32Array | undefined; // [65536]: every float16 bit pattern, widened

/** float16 bits → number (exact). */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // zero / subnormal
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function halfTable(): Float32Array {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) HALF_TABLE[h] = halfToFloat(h);
  }
  return HALF_TABLE;
}

/** number → float16 bits, via float32, rounded to nearest-even; overflow becomes ±Inf, NaN stays NaN. */
function floatToHalf(value: number): number {
  F32[0] = value;
  const x = U32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15; // re-biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Half subnormal: value = m × 2^-24, so the 24-bit significand loses 14 - e bits.
    if (e < -10) return sign;
    const significand = mant | 0x800000;
    const shift = 14 - e;
    const kept = significand >>> shift;
    const rest = significand & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    return sign | (kept + (rest > halfway || (rest === halfway && kept & 1) ? 1 : 0));
  }
  const h = sign | (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Inf).
  return h + (rest > 0x1000 || (rest === 0x1000 && h & 1) ? 1 : 0);
}

/** number → bfloat16 bits (the top half of float32), rounded to nearest-even; NaN stays NaN. */
function floatToBfloat16(value: number): number {
  F32[0] = value;
  const x = U32[0];
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

// ---------------------------------------------------------------------------------------
// Helpers

function refuse(problem: string): never {
  throw new AppError(CODE, `${WHAT}: ${problem}`, { problems: [problem] });
}

function capProblems(problems: string[]): string[] {
  if (problems.length <= MAX_REPORTED_PROBLEMS) return problems;
  return [...problems.slice(0, MAX_REPORTED_PROBLEMS), `… and ${problems.length - MAX_REPORTED_PROBLEMS} more problems`];
}

function byOffset(a: Span, b: Span): number {
  return a.begin - b.begin || a.end - b.end || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonNegativeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Names come from untrusted files: quote them and keep messages short. */
function quote(s: string): string {
  return JSON.stringify(clipTo(s));
}

function clip(s: string): string {
  return clipTo(s);
}

/** A short rendering of an untrusted value (depth-safe: see MAX_HEADER_DEPTH and {@link echo}). */
function describe(v: unknown): string {
  return echo(v);
}
