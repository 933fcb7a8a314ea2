import { LRUCache } from 'lru-cache';
import { AppError } from '../errors.js';
import type { AdapterWeights } from './lora-weights.js';

/** Counters the metrics module reads (the cache itself stays metrics-free). */
export interface CacheCounters {
  hits: number;
  misses: number;
  evictions: number;
  loads: number;
  loadFailures: number;
}

/** Hooks called as things happen (metrics, logs). */
export interface CacheEvents {
  onLoad?(id: string, seconds: number, ok: boolean): void;
  onEvict?(id: string): void;
}

export interface AdapterCacheOptions {
  /** Byte budget for unpinned adapters. */
  maxBytes: number;
  /** Loads one adapter from disk (the cache calls it once per miss, however many requests wait). */
  load(id: string): Promise<AdapterWeights>;
  /** Ids that are loaded at start and never evicted (outside the LRU budget). */
  pinned?: readonly string[];
  events?: CacheEvents;
}

/** A hold on an adapter's weights for the duration of a batch. */
export interface AdapterLease {
  readonly weights: AdapterWeights;
  release(): void;
}

interface InUse { weights: AdapterWeights; refs: number }

/**
 * Two tiers, kept apart (as vLLM does): a byte-bounded LRU of loaded adapters, and the set of
 * adapters that running batches hold. Evicting from the LRU never takes weights from a batch:
 * a leased adapter stays reachable (and is handed to new requests) until its last release.
 */
export class AdapterCache {
  readonly counters: CacheCounters = { hits: 0, misses: 0, evictions: 0, loads: 0, loadFailures: 0 };
  private readonly lru: LRUCache<string, AdapterWeights>;
  private readonly pinned = new Map<string, AdapterWeights>();
  private readonly pinnedIds: Set<string>;
  private readonly inUse = new Map<string, InUse>();
  /** Loads in progress: N concurrent misses of one id share one load. */
  private readonly loading = new Map<string, Promise<AdapterWeights>>();
  /** Bumped by invalidate(): a load that started before it is not cached after it. */
  private readonly generation = new Map<string, number>();

  constructor(private readonly opts: AdapterCacheOptions) {
    if (!(opts.maxBytes > 0)) throw new AppError('INVALID_CONFIG', 'cache size must be positive');
    this.pinnedIds = new Set(opts.pinned ?? []);
    this.lru = new LRUCache<string, AdapterWeights>({
      maxSize: opts.maxBytes,
      sizeCalculation: (w) => Math.max(1, w.bytes),
      dispose: (_w, id, reason) => {
        if (reason === 'evict') {
          this.counters.evictions++;
          opts.events?.onEvict?.(id);
        }
      },
    });
  }

  private async loadOne(id: string): Promise<AdapterWeights> {
    const t0 = performance.now();
    try {
      const w = await this.opts.load(id);
      if (w.bytes > this.opts.maxBytes) {
        throw new AppError('ADAPTER_TOO_LARGE', `adapter "${id}" needs ${w.bytes} bytes in memory, more than the whole adapter cache (${this.opts.maxBytes} bytes); raise the cache size or pin it`);
      }
      this.counters.loads++;
      this.opts.events?.onLoad?.(id, (performance.now() - t0) / 1000, true);
      return w;
    } catch (e) {
      this.counters.loadFailures++;
      this.opts.events?.onLoad?.(id, (performance.now() - t0) / 1000, false);
      throw e;
    }
  }

  /** Loads the pinned adapters (start-up). */
  async loadPinned(): Promise<void> {
    for (const id of this.pinnedIds) this.pinned.set(id, await this.opts.load(id));
  }

  /** Takes a lease on an adapter, loading it on a miss (concurrent misses share one load). */
  async acquire(id: string): Promise<AdapterLease> {
    const gen = this.generation.get(id) ?? 0;
    const w = await this.get(id);
    if ((this.generation.get(id) ?? 0) !== gen) {
      // Replaced or deleted while this request waited for the load: it keeps the version it asked
      // for, but that version is not registered as in use, so no later request is handed it.
      return { weights: w, release: () => undefined };
    }
    const entry = this.inUse.get(id);
    const held = entry && entry.weights === w ? entry : { weights: w, refs: 0 };
    held.refs++;
    this.inUse.set(id, held);
    let released = false;
    return {
      weights: w,
      release: () => {
        if (released) return;
        released = true;
        held.refs--;
        if (held.refs === 0 && this.inUse.get(id) === held) this.inUse.delete(id);
      },
    };
  }

  private async get(id: string): Promise<AdapterWeights> {
    const p = this.pinned.get(id);
    if (p) { this.counters.hits++; return p; }
    const busy = this.inUse.get(id);
    if (busy && !this.lru.has(id)) {
      // evicted while a batch holds it: no second copy, put it back in the LRU
      this.counters.hits++;
      if (busy.weights.bytes <= this.opts.maxBytes) this.lru.set(id, busy.weights);
      return busy.weights;
    }
    const cached = this.lru.get(id);
    if (cached) { this.counters.hits++; return cached; }
    this.counters.misses++;
    // Not lru-cache's fetch(): its pending entries can be evicted or deleted mid-load, which
    // rejects every waiter. Here a load always completes for its waiters; invalidate() only
    // stops a stale result from entering the cache.
    let pending = this.loading.get(id);
    if (!pending) {
      const gen = this.generation.get(id) ?? 0;
      const p: Promise<AdapterWeights> = this.loadOne(id)
        .then((w) => {
          if ((this.generation.get(id) ?? 0) === gen) this.lru.set(id, w);
          return w;
        })
        .finally(() => {
          if (this.loading.get(id) === p) this.loading.delete(id);
        });
      pending = p;
      this.loading.set(id, p);
    }
    return pending;
  }

  /** Drops an adapter (replaced or deleted); running batches keep the version they hold. */
  invalidate(id: string): void {
    this.generation.set(id, (this.generation.get(id) ?? 0) + 1);
    this.loading.delete(id);
    this.lru.delete(id);
    this.pinned.delete(id);
    this.inUse.delete(id);
    this.pinnedIds.delete(id);
  }

  /** Re-pins an adapter after an upload replaced it. */
  async repin(id: string): Promise<void> {
    if (!(this.opts.pinned ?? []).includes(id)) return;
    this.pinnedIds.add(id);
    this.pinned.set(id, await this.opts.load(id));
  }

  isCached(id: string): boolean {
    return this.pinned.has(id) || this.lru.has(id);
  }

  isPinned(id: string): boolean {
    return this.pinnedIds.has(id);
  }

  /** Bytes held by the LRU tier (never above maxBytes). */
  get lruBytes(): number {
    return this.lru.calculatedSize;
  }

  /** Bytes held in all: LRU + pinned + evicted-but-leased. */
  get bytesHeld(): number {
    let b = this.lru.calculatedSize;
    for (const w of this.pinned.values()) b += w.bytes;
    for (const [id, u] of this.inUse) if (!this.lru.has(id) && !this.pinned.has(id)) b += u.weights.bytes;
    return b;
  }

  /** Leases taken and not yet released (requests and sequences holding adapters). */
  get leases(): number {
    let n = 0;
    for (const u of this.inUse.values()) n += u.refs;
    return n;
  }

  get entries(): number {
    return this.lru.size + this.pinned.size;
  }

  get maxBytes(): number {
    return this.opts.maxBytes;
  }
}
