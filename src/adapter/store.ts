import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { AppError, isAppError } from '../errors.js';
import { validateAdapterId } from './adapter-id.js';

/**
 * The adapter store: one directory per adapter, `<dir>/<id>/` holding `adapter_config.json`,
 * `adapter_model.safetensors` and (for adapters uploaded through the store) the sidecar
 * `.adapterhost.json` with the sha256 and size of both files.
 *
 * Writes are atomic: files are written and fsync'd into a hidden `.tmp-<id>-<rand>/` and made
 * visible with rename(2). A replace renames the live dir to `.old-<id>-<rand>/` first; a delete
 * writes a `.deleting` marker into the dir, then renames it to `.old-…`. {@link AdapterStore.init}
 * uses those names to finish or undo whatever a crash interrupted (see there).
 *
 * One process owns a store directory: `init()` deletes temp dirs it finds.
 */

/** The two files of a PEFT LoRA adapter, as bytes. */
export interface StoredAdapterFiles {
  /** `adapter_config.json`. */
  config: Buffer;
  /** `adapter_model.safetensors`. */
  model: Buffer;
}

/** The sidecar `.adapterhost.json` the store writes at upload. */
export interface StoredMeta {
  /** Hex sha256 per file name. */
  sha256: Record<string, string>;
  /** Byte length per file name. */
  bytes: Record<string, number>;
  /** ISO time the upload was stored. */
  storedAt: string;
}

/** Writes `data` to a new file at `path` and makes it durable (fsync) before resolving. */
export type WriteFileFn = (path: string, data: Buffer) => Promise<void>;

export interface AdapterStoreOptions {
  /** The store directory; created if missing, realpath'ed at `init()`. */
  dir: string;
  /** Optional logger (pino-compatible) for skipped entries and crash recovery. */
  log?: { warn(o: object, m: string): void; info?(o: object, m: string): void };
  /**
   * How a file is written into a temp dir; defaults to an exclusive, O_NOFOLLOW, fsync'd write.
   * Tests replace it to simulate a disk filling up part-way.
   */
  writeFile?: WriteFileFn;
}

export const CONFIG_FILE = 'adapter_config.json';
export const MODEL_FILE = 'adapter_model.safetensors';
export const META_FILE = '.adapterhost.json';
/** Written into a dir before it is renamed away for deletion: "do not restore me". */
export const DELETING_MARKER = '.deleting';

const ADAPTER_FILES = [CONFIG_FILE, MODEL_FILE] as const;
const TMP_PREFIX = '.tmp-';
const OLD_PREFIX = '.old-';
/** `.old-<id>-<hex>`: the id may contain '-', the random suffix never does. */
const OLD_NAME = /^\.old-(.+)-[0-9a-f]+$/;
const O_NOFOLLOW = fsc.O_NOFOLLOW ?? 0;

const errCode = (e: unknown): string | undefined =>
  typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : undefined;
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const suffix = (): string => randomBytes(6).toString('hex');

/** The default {@link WriteFileFn}: refuses to follow or overwrite anything, fsyncs the data. */
export async function writeFileDurable(file: string, data: Buffer): Promise<void> {
  const fh = await fs.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | O_NOFOLLOW, 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Creates (or truncates) the empty `.deleting` marker, durably, without following a symlink. */
async function writeMarker(file: string): Promise<void> {
  const fh = await fs.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | O_NOFOLLOW, 0o644);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsync a directory so renames/creations inside it survive a power loss. */
async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, fsc.O_RDONLY);
  try {
    await fh.sync();
  } catch (e) {
    // Some filesystems cannot fsync a directory; the rename is still atomic there.
    if (errCode(e) !== 'EINVAL' && errCode(e) !== 'EISDIR') throw e;
  } finally {
    await fh.close();
  }
}

/** Where a file's bytes are read into: a Buffer of exactly `size` bytes. */
export type ReadBufferFn = (size: number) => Buffer;

/**
 * Reads a regular file without following a symlink at its last component; into a buffer from
 * `alloc` when one is given (a loader's reusable read buffer), else a fresh one.
 */
async function readNoFollow(file: string, alloc?: ReadBufferFn): Promise<Buffer> {
  const fh = await fs.open(file, fsc.O_RDONLY | O_NOFOLLOW);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw Object.assign(new Error(`${file} is not a regular file`), { code: 'ENOTREG' });
    if (alloc === undefined) return await fh.readFile();
    const buf = alloc(st.size);
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await fh.read(buf, done, buf.length - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    // A file that shrank under us comes back short, and fails its checksum or its parse.
    return done === buf.length ? buf : buf.subarray(0, done);
  } finally {
    await fh.close();
  }
}

async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await fs.lstat(p);
  } catch (e) {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') return null;
    throw e;
  }
}

/** Serializes async work per key; different keys run concurrently. */
class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/** Disk-backed, crash-safe adapter storage. See the module comment for the layout. */
export class AdapterStore {
  private root: string;
  private ready = false;
  private readonly log: AdapterStoreOptions['log'];
  private readonly writeFile: WriteFileFn;
  private readonly locks = new KeyedMutex();

  constructor(opts: AdapterStoreOptions) {
    if (typeof opts.dir !== 'string' || opts.dir === '') throw new AppError('INVALID_CONFIG', 'AdapterStore: dir must be a non-empty path');
    this.root = path.resolve(opts.dir);
    this.log = opts.log;
    this.writeFile = opts.writeFile ?? writeFileDurable;
  }

  /** The store directory: absolute, and realpath'ed once `init()` has run. */
  get dir(): string {
    return this.root;
  }

  /**
   * Creates the directory and repairs what a crash left behind:
   * - `.tmp-*` (an unfinished upload) is deleted;
   * - `<id>/` holding a `.deleting` marker (a delete stopped before its rename) is deleted;
   * - `.old-<id>-*` with the marker (an interrupted delete) is deleted;
   * - `.old-<id>-*` without the marker while `<id>` exists (a finished replace) is deleted;
   * - `.old-<id>-*` without the marker and no `<id>` (a replace stopped between its two
   *   renames) is renamed back to `<id>`: the previous version survives.
   */
  async init(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true });
    this.root = await fs.realpath(this.root);
    let changed = false;
    const names = (await fs.readdir(this.root)).sort();
    for (const name of names.filter((n) => n.startsWith(TMP_PREFIX))) {
      this.log?.warn({ dir: this.root, entry: name }, 'adapter store: removing an unfinished upload');
      await this.removeEntry(name);
      changed = true;
    }
    for (const name of names.filter((n) => validIdOrNull(n) !== null)) {
      const st = await lstatOrNull(this.inside(name));
      if (st?.isDirectory() && (await lstatOrNull(path.join(this.inside(name), DELETING_MARKER)))) {
        this.log?.warn({ dir: this.root, entry: name }, 'adapter store: finishing an interrupted delete');
        await this.removeEntry(name);
        changed = true;
      }
    }
    for (const name of names.filter((n) => n.startsWith(OLD_PREFIX))) {
      changed = true;
      const id = OLD_NAME.exec(name)?.[1];
      const old = this.inside(name);
      const oldSt = await lstatOrNull(old);
      const restorable =
        id !== undefined &&
        validIdOrNull(id) !== null &&
        oldSt?.isDirectory() === true &&
        !(await lstatOrNull(path.join(old, DELETING_MARKER))) &&
        !(await lstatOrNull(this.inside(id))) &&
        (await this.isCompleteAdapterDir(old));
      if (restorable) {
        this.log?.warn({ dir: this.root, entry: name, id }, 'adapter store: restoring the previous version after an interrupted replace');
        await fs.rename(old, this.inside(id as string));
      } else {
        await this.removeEntry(name);
      }
    }
    if (changed) await syncDir(this.root);
    this.ready = true;
  }

  /** Ids of the directories that are complete adapters; anything else is skipped (and logged). */
  async list(): Promise<string[]> {
    this.checkReady();
    const ids: string[] = [];
    for (const ent of await fs.readdir(this.root, { withFileTypes: true })) {
      const name = ent.name;
      if (name.startsWith('.')) continue; // temp, old, and other hidden entries are never adapters
      if (validIdOrNull(name) === null) {
        this.log?.warn({ dir: this.root, entry: name }, 'adapter store: skipping an entry whose name is not a valid adapter id');
        continue;
      }
      if (ent.isSymbolicLink()) {
        this.log?.warn({ dir: this.root, entry: name }, 'adapter store: skipping a symlink (refused)');
        continue;
      }
      if (!ent.isDirectory()) continue;
      const reason = await this.incompleteReason(this.inside(name));
      if (reason !== null) {
        this.log?.warn({ dir: this.root, entry: name, reason }, 'adapter store: skipping an entry that is not a complete adapter');
        continue;
      }
      ids.push(name);
    }
    return ids.sort();
  }

  /** True when `id` is a complete adapter in the store (throws INVALID_ADAPTER_ID for a bad id). */
  async has(id: string): Promise<boolean> {
    try {
      await this.paths(id);
      return true;
    } catch (e) {
      if (isAppError(e, 'ADAPTER_NOT_FOUND')) return false;
      throw e;
    }
  }

  /**
   * Absolute paths of an adapter's files, after checking the id, that the dir is inside the
   * store, and that neither the dir nor the files are symlinks. ADAPTER_NOT_FOUND otherwise.
   */
  async paths(id: string): Promise<{ dir: string; config: string; model: string }> {
    this.checkReady();
    validateAdapterId(id);
    const dir = this.inside(id);
    const st = await lstatOrNull(dir);
    if (st === null) throw notFound(id);
    if (!st.isDirectory()) throw notFound(id, st.isSymbolicLink() ? 'its store entry is a symlink (refused)' : 'its store entry is not a directory');
    const reason = await this.incompleteReason(dir);
    if (reason !== null) throw notFound(id, reason);
    return { dir, config: path.join(dir, CONFIG_FILE), model: path.join(dir, MODEL_FILE) };
  }

  /**
   * Reads both files and the sidecar. When the sidecar exists, both files must match the
   * sha256 and size it records (ADAPTER_CORRUPT otherwise); adapters without one (written by
   * other tools) are accepted unchecked. `opts.modelBuffer` chooses where the weights file is
   * read into (the caller then owns that memory); by default a fresh Buffer.
   */
  async read(id: string, opts: { modelBuffer?: ReadBufferFn } = {}): Promise<StoredAdapterFiles & { meta: StoredMeta | null; bytesOnDisk: number }> {
    const p = await this.paths(id);
    let config: Buffer, model: Buffer, metaRaw: Buffer | null;
    try {
      config = await readNoFollow(p.config);
      model = await readNoFollow(p.model, opts.modelBuffer);
      metaRaw = await readNoFollow(path.join(p.dir, META_FILE)).catch((e: unknown) => {
        if (errCode(e) === 'ENOENT') return null;
        throw e;
      });
    } catch (e) {
      const code = errCode(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') throw notFound(id, 'it was removed while being read');
      if (code === 'ELOOP' || code === 'ENOTREG') throw notFound(id, 'one of its files is a symlink or not a regular file (refused)');
      throw new AppError('INTERNAL', `adapter "${id}": reading its files failed (${code ?? String(e)})`, { cause: e });
    }
    const meta = metaRaw === null ? null : parseMeta(id, metaRaw);
    if (meta !== null) {
      const files: Record<string, Buffer> = { [CONFIG_FILE]: config, [MODEL_FILE]: model };
      for (const name of ADAPTER_FILES) {
        const want = meta.sha256[name];
        const got = sha256(files[name]);
        if (want !== got || meta.bytes[name] !== files[name].length) {
          throw new AppError(
            'ADAPTER_CORRUPT',
            `adapter "${id}": ${name} does not match the checksum recorded at upload ` +
              `(expected sha256 ${want}, ${meta.bytes[name]} bytes; found ${got}, ${files[name].length} bytes); ` +
              'the file changed on disk: upload the adapter again',
          );
        }
      }
    }
    return { config, model, meta, bytesOnDisk: config.length + model.length + (metaRaw?.length ?? 0) };
  }

  /** Bytes of the adapter's files (both files and the sidecar), from stat only. */
  async sizeOnDisk(id: string): Promise<number> {
    const p = await this.paths(id);
    let total = 0;
    for (const name of [CONFIG_FILE, MODEL_FILE, META_FILE]) {
      const st = await lstatOrNull(path.join(p.dir, name));
      if (st?.isFile()) total += st.size;
    }
    return total;
  }

  /**
   * Stores an adapter atomically. `validate` runs first: if it throws, nothing changes and its
   * error propagates. The files and sidecar are written and fsync'd into a temp dir, which then
   * replaces `<id>` by rename. Puts and deletes of one id are serialized and take effect in
   * call order; different ids run concurrently. Fs failures remove the temp dir and become
   * INSUFFICIENT_STORAGE (ENOSPC, EDQUOT) or INTERNAL. A store entry that is not a real directory (a symlink) is refused
   * with CONFLICT and left untouched.
   */
  async put(
    id: string,
    files: StoredAdapterFiles,
    validate: (files: StoredAdapterFiles) => Promise<void> | void,
  ): Promise<{ created: boolean }> {
    this.checkReady();
    validateAdapterId(id);
    // The lock is taken at call time, so operations on one id take effect in call order.
    return this.locks.run(id, async () => {
      await validate(files);
      const tmp = this.inside(`${TMP_PREFIX}${id}-${suffix()}`);
      let tmpExists = false;
      try {
        await fs.mkdir(tmp, { mode: 0o755 });
        tmpExists = true;
        const meta: StoredMeta = {
          sha256: { [CONFIG_FILE]: sha256(files.config), [MODEL_FILE]: sha256(files.model) },
          bytes: { [CONFIG_FILE]: files.config.length, [MODEL_FILE]: files.model.length },
          storedAt: new Date().toISOString(),
        };
        await this.writeFile(path.join(tmp, CONFIG_FILE), files.config);
        await this.writeFile(path.join(tmp, MODEL_FILE), files.model);
        await this.writeFile(path.join(tmp, META_FILE), Buffer.from(JSON.stringify(meta, null, 2) + '\n'));
        await syncDir(tmp);
        const created = await this.swapIn(id, tmp);
        tmpExists = false;
        return { created };
      } catch (e) {
        if (tmpExists) await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
        throw storageError(e, `storing adapter "${id}"`);
      }
    });
  }

  /** Removes an adapter atomically (marker, rename away, then rm). ADAPTER_NOT_FOUND if absent. */
  async delete(id: string): Promise<void> {
    this.checkReady();
    validateAdapterId(id);
    await this.locks.run(id, async () => {
      const dir = this.inside(id);
      const st = await lstatOrNull(dir);
      if (st === null) throw notFound(id);
      if (!st.isDirectory()) throw notFound(id, st.isSymbolicLink() ? 'its store entry is a symlink (refused)' : 'its store entry is not a directory');
      const old = this.inside(`${OLD_PREFIX}${id}-${suffix()}`);
      const marker = path.join(dir, DELETING_MARKER);
      try {
        await writeMarker(marker);
        await syncDir(dir);
      } catch (e) {
        await fs.unlink(marker).catch(() => undefined); // without the rename, the adapter stays
        throw storageError(e, `deleting adapter "${id}"`);
      }
      try {
        await fs.rename(dir, old);
      } catch (e) {
        await fs.unlink(marker).catch(() => undefined);
        throw storageError(e, `deleting adapter "${id}"`);
      }
      await syncDir(this.root).catch((e: unknown) =>
        this.log?.warn({ dir: this.root, err: String(e) }, 'adapter store: fsync of the store dir failed after a delete'),
      );
      await this.removeOld(old);
    });
  }

  /** Makes `tmp` the live `<id>` dir; returns true when nothing was there before. Caller holds the id's lock. */
  private async swapIn(id: string, tmp: string): Promise<boolean> {
    const dir = this.inside(id);
    const st = await lstatOrNull(dir);
    if (st === null) {
      await fs.rename(tmp, dir);
      await this.syncRootAfterSwap(id);
      return true;
    }
    if (!st.isDirectory()) {
      throw new AppError(
        'CONFLICT',
        `adapter "${id}": its store entry is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}; refusing to replace it (an operator must remove it)`,
      );
    }
    const old = this.inside(`${OLD_PREFIX}${id}-${suffix()}`);
    await fs.rename(dir, old);
    try {
      await fs.rename(tmp, dir);
    } catch (e) {
      await fs.rename(old, dir).catch(() => undefined); // put the previous version back
      throw e;
    }
    await this.syncRootAfterSwap(id);
    await this.removeOld(old);
    return false;
  }

  /** Once the new version is visible the put has happened; a failed dir fsync is only logged. */
  private async syncRootAfterSwap(id: string): Promise<void> {
    await syncDir(this.root).catch((e: unknown) =>
      this.log?.warn({ dir: this.root, id, err: String(e) }, 'adapter store: fsync of the store dir failed after a put'),
    );
  }

  /** Removes a renamed-away dir; a failure only leaves it for the next `init()`. */
  private async removeOld(old: string): Promise<void> {
    try {
      await this.removeEntry(path.basename(old));
    } catch (e) {
      this.log?.warn({ dir: old, err: String(e) }, 'adapter store: could not remove an old adapter dir; init() will retry');
    }
  }

  /**
   * Removes a store entry without following symlinks. In a dir, the `.deleting` marker goes
   * last, so a crash mid-removal never leaves a partial dir that init() would restore.
   */
  private async removeEntry(name: string): Promise<void> {
    const p = this.inside(name);
    const st = await lstatOrNull(p);
    if (st === null) return;
    if (!st.isDirectory()) {
      await fs.unlink(p);
      return;
    }
    for (const child of await fs.readdir(p)) {
      if (child !== DELETING_MARKER) await fs.rm(path.join(p, child), { recursive: true, force: true });
    }
    await fs.rm(p, { recursive: true, force: true });
  }

  /** Null when `dir` holds both adapter files as regular files; otherwise why not. */
  private async incompleteReason(dir: string): Promise<string | null> {
    for (const name of ADAPTER_FILES) {
      const st = await lstatOrNull(path.join(dir, name));
      if (st === null) return `${name} is missing`;
      if (st.isSymbolicLink()) return `${name} is a symlink (refused)`;
      if (!st.isFile()) return `${name} is not a regular file`;
    }
    return null;
  }

  private async isCompleteAdapterDir(dir: string): Promise<boolean> {
    return (await this.incompleteReason(dir)) === null;
  }

  /** `<root>/<name>`, checked to be a direct child of the store dir. */
  private inside(name: string): string {
    const p = path.resolve(this.root, name);
    if (path.dirname(p) !== this.root || p === this.root) {
      throw new AppError('INVALID_ADAPTER_ID', `adapter store: ${JSON.stringify(name.slice(0, 80))} resolves outside the store`);
    }
    return p;
  }

  private checkReady(): void {
    if (!this.ready) throw new AppError('INTERNAL', 'AdapterStore: init() must complete before the store is used');
  }
}

function validIdOrNull(id: string): string | null {
  try {
    return validateAdapterId(id);
  } catch {
    return null;
  }
}

function notFound(id: string, why?: string): AppError {
  return new AppError('ADAPTER_NOT_FOUND', why === undefined ? `adapter "${id}" not found` : `adapter "${id}" not found: ${why}`);
}

/** AppErrors pass through; ENOSPC/EDQUOT become INSUFFICIENT_STORAGE; anything else INTERNAL. */
function storageError(e: unknown, what: string): AppError {
  if (e instanceof AppError) return e;
  const code = errCode(e);
  const detail = e instanceof Error ? e.message : String(e);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new AppError('INSUFFICIENT_STORAGE', `${what} failed: the adapter store is out of space (${code}); nothing was changed`, { cause: e });
  }
  return new AppError('INTERNAL', `${what} failed: ${detail}`, { cause: e });
}

/** Parses the sidecar; a malformed one means the dir was tampered with. */
function parseMeta(id: string, raw: Buffer): StoredMeta {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    v = null;
  }
  const m = v as Partial<StoredMeta> | null;
  const ok =
    m !== null &&
    typeof m === 'object' &&
    typeof m.storedAt === 'string' &&
    typeof m.sha256 === 'object' &&
    m.sha256 !== null &&
    typeof m.bytes === 'object' &&
    m.bytes !== null &&
    ADAPTER_FILES.every((f) => typeof m.sha256?.[f] === 'string' && typeof m.bytes?.[f] === 'number');
  if (!ok) throw new AppError('ADAPTER_CORRUPT', `adapter "${id}": its ${META_FILE} (checksums recorded at upload) is unreadable; upload the adapter again`);
  return m as StoredMeta;
}
