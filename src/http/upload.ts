import busboy from 'busboy';
import type { Request, RequestHandler } from 'express';
import type { Readable } from 'node:stream';
import { AppError, clip, echo } from '../errors.js';
import type { StoredAdapterFiles } from '../adapter/store.js';

/** The two file parts an upload carries, named as PEFT names the files. */
const PARTS = ['adapter_config', 'adapter_model'] as const;
type PartName = (typeof PARTS)[number];

/** Room for the multipart framing (boundaries, part headers) on top of the file bytes. */
const FRAMING_BYTES = 16 * 1024;

/** File names of PyTorch pickles and checkpoints: refused by name, never read. */
const PICKLE_NAME = /\.(bin|pt|pth|pkl|pickle|ckpt)$/i;

const ONLY_SAFETENSORS = 'only safetensors is accepted (adapter_model.safetensors); pickle files (.bin, .pt, .pth, .pkl, .ckpt) are refused and never loaded';

/**
 * True when the bytes look like a pickle (protocol 2+ starts 0x80 <proto>) or a torch.save zip
 * ("PK\x03\x04"). A safetensors file starts with its header length (u64 LE), whose low byte may
 * be 0x80 too; its byte 8 is the `{` of the JSON header, which tells the two apart.
 */
export function looksLikePickle(b: Uint8Array): boolean {
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 0x03 && b[3] === 0x04) return true;
  if (b.length >= 2 && b[0] === 0x80 && b[1]! >= 1 && b[1]! <= 5) {
    const safetensorsLike = b.length > 8 && b[8] === 0x7b && b[6] === 0 && b[7] === 0;
    return !safetensorsLike;
  }
  return false;
}

export interface UploadLimits {
  /** Cap on each file and on both together, bytes. */
  maxBytes: number;
}

/** Part encodings that are the bytes themselves; anything else (base64, quoted-printable) is not decoded here. */
const IDENTITY_PART_ENCODINGS = new Set(['7bit', '8bit', 'binary']);

/**
 * The checks an upload's headers allow before a byte of its body is read: multipart/form-data,
 * no Content-Encoding (compressed bodies are not decoded: 415), a declared Content-Length within
 * the cap (413). Throws the AppError to answer with.
 */
export function checkUploadHeaders(req: Request, limits: UploadLimits): void {
  const ct = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\s*;/i.test(ct) && !/^multipart\/form-data$/i.test(ct.trim())) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'an adapter upload is multipart/form-data with the file parts adapter_config and adapter_model');
  }
  const encoding = (req.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (encoding !== '' && encoding !== 'identity') {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Content-Encoding ${echo(encoding)} is not accepted on uploads: the server does not decode compressed bodies; send the files uncompressed`);
  }
  const declared = declaredLength(req);
  if (declared !== undefined && declared > limits.maxBytes + FRAMING_BYTES) throw tooLarge(limits.maxBytes, `the upload is ${declared} bytes`);
}

function tooLarge(maxBytes: number, what: string): AppError {
  return new AppError('PAYLOAD_TOO_LARGE', `${what}; the upload limit is ${maxBytes} bytes (${+(maxBytes / 1024 / 1024).toFixed(4)} MB, --max-upload-mb)`);
}

/** The request's Content-Length, when it sent one. */
function declaredLength(req: Request): number | undefined {
  const declared = Number(req.headers['content-length'] ?? NaN);
  return Number.isSafeInteger(declared) && declared >= 0 ? declared : undefined;
}

/**
 * Reads a multipart/form-data adapter upload: exactly the file parts `adapter_config` and
 * `adapter_model`. Streams with busboy; past `maxBytes` (per file or in total) it stops
 * reading at once and fails with 413, so memory stays bounded by the cap.
 *
 * Memory: with a Content-Length, the model part is written into one buffer of that size as it
 * arrives (no second copy); without one (chunked), parts are collected in 64 KiB blocks and
 * joined once at the end.
 *
 * Every busboy and stream handler runs inside a guard: whatever a client sends, a throw in
 * one becomes this upload's error, never an uncaught exception.
 */
export function readAdapterUpload(req: Request, limits: UploadLimits): Promise<StoredAdapterFiles> {
  try {
    checkUploadHeaders(req, limits);
  } catch (e) {
    return Promise.reject(e);
  }
  const { maxBytes } = limits;
  const declared = declaredLength(req);

  return new Promise<StoredAdapterFiles>((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: req.headers,
        // busboy reports a limit when it is exceeded for files and fields, but when it is
        // reached for parts: 3 makes a third part the error.
        limits: { files: 2, fields: 0, parts: 3, headerPairs: 4, fileSize: maxBytes + 1, fieldNameSize: 64 },
      });
    } catch (e) {
      reject(new AppError('INVALID_UPLOAD', `cannot read the multipart body: ${clip((e as Error).message, 200)}`));
      return;
    }
    const files = new Map<PartName, Buffer>();
    let total = 0;
    let settled = false;
    /** File streams not yet ended; busboy may report 'close' before their 'end' events. */
    let open = 0;
    let parserDone = false;

    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      // Stop parsing: nothing more of this body reaches busboy or memory; the error handler
      // discards the rest (or cuts the connection when it is large).
      req.unpipe(bb);
      req.pause();
      bb.removeAllListeners();
      bb.on('error', () => undefined);
      // Not synchronously: fail() may run inside busboy's own write loop.
      setImmediate(() => bb.destroy());
      reject(e);
    };
    const invalid = (m: string) => fail(new AppError('INVALID_UPLOAD', m));
    /**
     * Wraps a handler: busboy calls them from inside its write loop (itself inside the request
     * stream's 'data' event), where a throw would escape every handler and end the process.
     */
    const guard = <A extends unknown[]>(fn: (...args: A) => void) => (...args: A): void => {
      try {
        fn(...args);
      } catch (e) {
        fail(e);
      }
    };

    bb.on('file', guard((name: string | undefined, stream: Readable, info: busboy.FileInfo) => {
      stream.on('error', () => undefined); // destroying the parser errors its open file stream; fail() has answered
      if (settled) { stream.resume(); return; }
      if (typeof name !== 'string' || name === '') {
        stream.resume();
        return invalid('a file part has no name in its Content-Disposition; an upload has exactly the file parts adapter_config and adapter_model (Content-Disposition: form-data; name="adapter_config"; filename="adapter_config.json")');
      }
      if (!(PARTS as readonly string[]).includes(name)) {
        stream.resume();
        return invalid(`unknown part ${echo(name, 64)}; an upload has exactly the file parts adapter_config and adapter_model`);
      }
      const part = name as PartName;
      if (files.has(part)) { stream.resume(); return invalid(`part "${part}" was sent twice`); }
      const filename = typeof info?.filename === 'string' ? info.filename : '';
      if (PICKLE_NAME.test(filename)) { stream.resume(); return invalid(`part "${part}" is named ${echo(filename, 64)}: ${ONLY_SAFETENSORS}`); }
      const encoding = typeof info?.encoding === 'string' ? info.encoding.toLowerCase() : '7bit';
      if (!IDENTITY_PART_ENCODINGS.has(encoding)) {
        stream.resume();
        return fail(new AppError('UNSUPPORTED_MEDIA_TYPE', `part "${part}" has Content-Transfer-Encoding ${echo(encoding, 32)}, which the server does not decode; send the file as binary`));
      }
      files.set(part, Buffer.alloc(0)); // claimed; filled on end
      open++;
      // The model is most of the body: with a Content-Length it gets one buffer of that size.
      const body = new PartBody(part === 'adapter_model' && declared !== undefined ? Math.min(declared, maxBytes) : 0);
      let size = 0;
      stream.on('data', guard((c: Buffer) => {
        if (settled) return;
        size += c.length;
        total += c.length;
        if (size > maxBytes) return fail(tooLarge(maxBytes, `part "${part}" is over ${maxBytes} bytes`));
        if (total > maxBytes) return fail(tooLarge(maxBytes, `the files together are over ${maxBytes} bytes`));
        body.append(c);
      }));
      stream.on('limit', guard(() => fail(tooLarge(maxBytes, `part "${part}" is over ${maxBytes} bytes`))));
      stream.on('end', guard(() => {
        open--;
        if (settled) return;
        files.set(part, body.toBuffer());
        finish();
      }));
    }));
    bb.on('field', guard((name: unknown) => invalid(`field ${echo(name, 64)} is not a file; send adapter_config and adapter_model as file parts`)));
    bb.on('fieldsLimit', guard(() => invalid('non-file fields are not accepted; send adapter_config and adapter_model as file parts')));
    bb.on('filesLimit', guard(() => invalid('more than two files; an upload has exactly adapter_config and adapter_model')));
    bb.on('partsLimit', guard(() => invalid('more than two parts; an upload has exactly adapter_config and adapter_model')));
    bb.on('error', guard((e: unknown) => invalid(`malformed multipart body: ${clip(e instanceof Error ? e.message : String(e), 200)}`)));
    const finish = () => {
      if (settled || !parserDone || open > 0) return;
      const missing = PARTS.filter((p) => !files.has(p));
      if (missing.length) return invalid(`missing part${missing.length > 1 ? 's' : ''} ${missing.join(', ')}; an upload has exactly adapter_config and adapter_model`);
      const model = files.get('adapter_model')!;
      if (looksLikePickle(model)) return invalid(`adapter_model looks like a pickle or torch zip archive: ${ONLY_SAFETENSORS}`);
      settled = true;
      resolve({ config: files.get('adapter_config')!, model });
    };
    bb.on('close', guard(() => {
      parserDone = true;
      finish();
    }));
    req.on('aborted', guard(() => fail(new AppError('BAD_REQUEST', 'the upload was aborted by the client'))));
    req.on('error', guard(() => fail(new AppError('BAD_REQUEST', 'the upload connection failed'))));
    req.pipe(bb);
  });
}

/**
 * Collects one part's bytes. Given a capacity (the request's Content-Length, for the model
 * part), it writes into one buffer of that size and hands out a view of it: no copy at the
 * end. Otherwise (or if the part outgrows the capacity) it keeps 64 KiB blocks, joined once at
 * the end: keeping each incoming chunk as its own Buffer would let a client sending many tiny
 * chunks make the server hold several times the cap in per-Buffer overhead.
 */
class PartBody {
  private static readonly BLOCK = 64 * 1024;
  private readonly blocks: Buffer[] = [];
  private cur: Buffer;
  private used = 0;
  /** True while everything sits in the one preallocated buffer. */
  private single: boolean;

  constructor(capacity: number) {
    this.single = capacity > 0;
    // allocUnsafeSlow: its own memory, not a slice of the shared pool.
    this.cur = this.single ? Buffer.allocUnsafeSlow(capacity) : Buffer.allocUnsafe(PartBody.BLOCK);
  }

  append(c: Buffer): void {
    let off = 0;
    while (off < c.length) {
      if (this.used === this.cur.length) {
        this.blocks.push(this.cur.subarray(0, this.used));
        this.cur = Buffer.allocUnsafe(PartBody.BLOCK);
        this.used = 0;
        this.single = false;
      }
      const n = Math.min(c.length - off, this.cur.length - this.used);
      c.copy(this.cur, this.used, off, off + n);
      this.used += n;
      off += n;
    }
  }

  toBuffer(): Buffer {
    if (this.single) return this.cur.subarray(0, this.used);
    return Buffer.concat([...this.blocks, this.cur.subarray(0, this.used)]);
  }
}

/**
 * At most `max` uploads in flight (read, validated, stored) at once; past it a PUT is refused
 * with 429 TOO_MANY_UPLOADS and Retry-After before its body is read. A slot is held until the
 * response is done, so it covers validation and the store write too, not only the read.
 */
export function uploadSlots(max: number): RequestHandler {
  if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`uploadSlots: max must be a positive integer, got ${max}`);
  let inFlight = 0;
  return (_req, res, next) => {
    if (inFlight >= max) {
      throw new AppError('TOO_MANY_UPLOADS', `${max} adapter upload${max === 1 ? ' is' : 's are'} already in progress (--max-concurrent-uploads); retry shortly`, { headers: { 'Retry-After': '1' } });
    }
    inFlight++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      inFlight--;
    };
    res.once('finish', release);
    res.once('close', release);
    next();
  };
}
