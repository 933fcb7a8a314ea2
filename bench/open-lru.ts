/**
 * At most `capacity` open things (sessions) by key, least recently used closed first, with the
 * time spent opening them: the naive merged-model servers (encoder and decoder) keep their
 * merged sessions in one.
 */
export class OpenLru<T> {
  /** Things opened (first opens and reopens after an eviction). */
  loads = 0;
  /** Seconds spent opening. */
  loadSeconds = 0;
  private readonly open = new Map<number, T>(); // insertion order = LRU order

  constructor(private readonly capacity: number, private readonly close: (t: T) => Promise<void>) {
    if (!(capacity >= 1)) throw new RangeError('capacity must be at least one session');
  }

  /** The open thing of `key` (touched), or `create()`'s after closing the least recently used past capacity. */
  async get(key: number, create: () => Promise<T>): Promise<T> {
    const s = this.open.get(key);
    if (s !== undefined) {
      this.open.delete(key);
      this.open.set(key, s);
      return s;
    }
    while (this.open.size >= this.capacity) {
      const [oldest, victim] = this.open.entries().next().value as [number, T];
      this.open.delete(oldest);
      await this.close(victim);
    }
    const t0 = performance.now();
    const created = await create();
    this.loadSeconds += (performance.now() - t0) / 1000;
    this.loads++;
    this.open.set(key, created);
    return created;
  }

  async closeAll(): Promise<void> {
    for (const s of this.open.values()) await this.close(s);
    this.open.clear();
  }
}
