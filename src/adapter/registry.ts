import { AppError } from '../errors.js';
import type { AdapterCache, AdapterLease } from './cache.js';
import type { AdapterInfo, AdapterLoader } from './loader.js';
import type { AdapterStore, StoredAdapterFiles } from './store.js';
import { validateAdapterId } from './adapter-id.js';

export interface RegistryLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/**
 * What is servable: the store's valid adapters (scanned cheaply at start), kept in step with
 * uploads and deletes, in front of the cache. Broken adapters on disk are reported and skipped.
 */
export class AdapterRegistry {
  private readonly infos = new Map<string, AdapterInfo>();
  /** Adapters found on disk but refused at the start-up scan, with the reason. */
  readonly broken = new Map<string, string>();
  /** Per-id chain: store write + re-read + listing update happen as one step per id. */
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(
    private readonly store: AdapterStore,
    private readonly loader: AdapterLoader,
    private readonly cache: AdapterCache,
    private readonly log: RegistryLog,
  ) {}

  /** Scans the store (headers and configs only) and loads pinned adapters. */
  async init(): Promise<void> {
    await this.store.init();
    const found = await this.loader.scan((id, err) => {
      this.broken.set(id, err.message);
      this.log.warn({ adapter: id, err: err.message }, 'adapter on disk refused; skipped');
    });
    for (const [id, info] of found) this.infos.set(id, info);
    await this.cache.loadPinned();
    this.log.info({ adapters: this.infos.size, broken: this.broken.size }, 'adapter store scanned');
  }

  list(): AdapterInfo[] {
    return [...this.infos.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  has(id: string): boolean {
    return this.infos.has(id);
  }

  /** The adapter's info; ADAPTER_NOT_FOUND when it is not servable. */
  get(id: string): AdapterInfo {
    const info = this.infos.get(id);
    if (!info) throw notFound(id);
    return info;
  }

  /** Takes a lease for a batch (load on miss). Unknown ids are a 404, never a fallback. */
  async acquire(id: string): Promise<AdapterLease> {
    if (!this.infos.has(id)) throw notFound(id);
    return this.cache.acquire(id);
  }

  isCached(id: string): boolean {
    return this.cache.isCached(id);
  }

  isPinned(id: string): boolean {
    return this.cache.isPinned(id);
  }

  /** Total bytes of the servable adapters on disk. */
  get bytesOnDisk(): number {
    let n = 0;
    for (const i of this.infos.values()) n += i.bytesOnDisk;
    return n;
  }

  /**
   * Validates completely (config, every tensor, mapping onto the slots) before anything becomes
   * visible, then stores atomically. Requests already holding the old version finish on it.
   */
  async upload(idRaw: string, files: StoredAdapterFiles): Promise<{ created: boolean; info: AdapterInfo }> {
    const id = validateAdapterId(idRaw);
    return this.serial(id, () => this.uploadNow(id, files));
  }

  private async uploadNow(id: string, files: StoredAdapterFiles): Promise<{ created: boolean; info: AdapterInfo }> {
    const { created } = await this.store.put(id, files, (f) => {
      const w = this.loader.check(id, f);
      if (w.bytes > this.cache.maxBytes && !this.cache.isPinned(id)) {
        throw new AppError('ADAPTER_TOO_LARGE', `adapter "${id}" needs ${w.bytes} bytes in memory, more than the whole adapter cache (${this.cache.maxBytes} bytes)`);
      }
    });
    this.cache.invalidate(id);
    const info = await this.loader.inspect(id);
    this.infos.set(id, info);
    this.broken.delete(id);
    await this.cache.repin(id);
    this.log.info({ adapter: id, created, bytes: info.bytesOnDisk }, created ? 'adapter created' : 'adapter replaced');
    return { created, info };
  }

  /** Deletes from disk; later requests get 404, running batches finish. */
  async remove(idRaw: string): Promise<void> {
    const id = validateAdapterId(idRaw);
    return this.serial(id, () => this.removeNow(id));
  }

  /** Runs `fn` after every earlier upload/remove of the same id has settled. */
  private serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.chains.set(id, tail);
    void tail.then(() => {
      if (this.chains.get(id) === tail) this.chains.delete(id);
    });
    return next;
  }

  private async removeNow(id: string): Promise<void> {
    if (!this.infos.has(id) && !this.broken.has(id)) throw notFound(id);
    this.infos.delete(id);
    this.broken.delete(id);
    this.cache.invalidate(id);
    await this.store.delete(id);
    this.log.info({ adapter: id }, 'adapter deleted');
  }
}

function notFound(id: string): AppError {
  return new AppError('ADAPTER_NOT_FOUND', `adapter "${id.slice(0, 80)}" does not exist (GET /v1/adapters lists them)`);
}
