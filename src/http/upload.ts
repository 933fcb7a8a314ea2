import busboy from 'busboy';
import type { Request } from 'express';
import { AppError } from '../errors.js';
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

/**
 * Reads a multipart/form-data adapter upload: exactly the file parts `adapter_config` and
 * `adapter_model`. Streams with busboy; past `maxBytes` (per file or in total) it stops
 * reading at once and fails with 413, so memory stays bounded by the cap.
 */
export function readAdapterUpload(req: Request, limits: UploadLimits): Promise<StoredAdapterFiles> {
  const ct = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\s*;/i.test(ct) && !/^multipart\/form-data$/i.test(ct.trim())) {
    return Promise.reject(new AppError('UNSUPPORTED_MEDIA_TYPE', 'an adapter upload is multipart/form-data with the file parts adapter_config and adapter_model'));
  }
  const { maxBytes } = limits;
  const tooLarge = (what: string) =>
    new AppError('PAYLOAD_TOO_LARGE', `${what}; the upload limit is ${maxBytes} bytes (${+(maxBytes / 1024 / 1024).toFixed(4)} MB, --max-upload-mb)`);
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes + FRAMING_BYTES) {
    return Promise.reject(tooLarge(`the upload is ${declared} bytes`));
  }

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
      reject(new AppError('INVALID_UPLOAD', `cannot read the multipart body: ${(e as Error).message}`));
      return;
    }
    const files = new Map<PartName, Buffer>();
    let total = 0;
    let settled = false;
    /** File streams not yet ended; busboy may report 'close' before their 'end' events. */
    let open = 0;
    let parserDone = false;

    const fail = (e: AppError) => {
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

    bb.on('file', (name, stream, info) => {
      stream.on('error', () => undefined); // destroying the parser errors its open file stream; fail() has answered
      if (settled) { stream.resume(); return; }
      if (!(PARTS as readonly string[]).includes(name)) {
        stream.resume();
        return invalid(`unknown part "${name.slice(0, 64)}"; an upload has exactly the file parts adapter_config and adapter_model`);
      }
      const part = name as PartName;
      if (files.has(part)) { stream.resume(); return invalid(`part "${part}" was sent twice`); }
      if (PICKLE_NAME.test(info.filename ?? '')) { stream.resume(); return fail(new AppError('INVALID_UPLOAD', `part "${part}" is named "${(info.filename ?? '').slice(0, 64)}": ${ONLY_SAFETENSORS}`)); }
      files.set(part, Buffer.alloc(0)); // claimed; filled on end
      open++;
      const body = new BlockBuffer();
      let size = 0;
      stream.on('data', (c: Buffer) => {
        if (settled) return;
        size += c.length;
        total += c.length;
        if (size > maxBytes) return fail(tooLarge(`part "${part}" is over ${maxBytes} bytes`));
        if (total > maxBytes) return fail(tooLarge(`the files together are over ${maxBytes} bytes`));
        body.append(c);
      });
      stream.on('limit', () => fail(tooLarge(`part "${part}" is over ${maxBytes} bytes`)));
      stream.on('end', () => {
        open--;
        if (settled) return;
        files.set(part, body.toBuffer());
        finish();
      });
    });
    bb.on('field', (name) => invalid(`field "${name.slice(0, 64)}" is not a file; send adapter_config and adapter_model as file parts`));
    bb.on('fieldsLimit', () => invalid('non-file fields are not accepted; send adapter_config and adapter_model as file parts'));
    bb.on('filesLimit', () => invalid('more than two files; an upload has exactly adapter_config and adapter_model'));
    bb.on('partsLimit', () => invalid('more than two parts; an upload has exactly adapter_config and adapter_model'));
    bb.on('error', (e: Error) => invalid(`malformed multipart body: ${e.message.slice(0, 200)}`));
    const finish = () => {
      if (settled || !parserDone || open > 0) return;
      const missing = PARTS.filter((p) => !files.has(p));
      if (missing.length) return invalid(`missing part${missing.length > 1 ? 's' : ''} ${missing.join(', ')}; an upload has exactly adapter_config and adapter_model`);
      const model = files.get('adapter_model')!;
      if (looksLikePickle(model)) return fail(new AppError('INVALID_UPLOAD', `adapter_model looks like a pickle or torch zip archive: ${ONLY_SAFETENSORS}`));
      settled = true;
      resolve({ config: files.get('adapter_config')!, model });
    };
    bb.on('close', () => {
      parserDone = true;
      finish();
    });
    req.on('aborted', () => fail(new AppError('BAD_REQUEST', 'the upload was aborted by the client')));
    req.on('error', () => fail(new AppError('BAD_REQUEST', 'the upload connection failed')));
    req.pipe(bb);
  });
}

/**
 * Collects a part's bytes into 64 KiB blocks. Keeping each incoming chunk as its own Buffer
 * would let a client sending many tiny chunks make the server hold several times the cap in
 * per-Buffer overhead.
 */
class BlockBuffer {
  private static readonly BLOCK = 64 * 1024;
  private readonly blocks: Buffer[] = [];
  private cur = Buffer.allocUnsafe(BlockBuffer.BLOCK);
  private used = 0;

  append(c: Buffer): void {
    let off = 0;
    while (off < c.length) {
      if (this.used === this.cur.length) {
        this.blocks.push(this.cur);
        this.cur = Buffer.allocUnsafe(BlockBuffer.BLOCK);
        this.used = 0;
      }
      const n = Math.min(c.length - off, this.cur.length - this.used);
      c.copy(this.cur, this.used, off, off + n);
      this.used += n;
      off += n;
    }
  }

  toBuffer(): Buffer {
    return Buffer.concat([...this.blocks, this.cur.subarray(0, this.used)]);
  }
}
