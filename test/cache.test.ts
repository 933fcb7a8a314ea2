import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AdapterCache } from '../src/adapter/cache.js';
import type { AdapterWeights } from '../src/adapter/lora-weights.js';
import { isAppError } from '../src/errors.js';

const fake = (id: string, bytes: number): AdapterWeights => ({ id, version: 'v', labels: null, slots: [], heads: [], maxRank: 1, bytes });

function harness(maxBytes: number, sizes: Record<string, number>, pinned: string[] = []) {
  const loads: string[] = [];
  const cache = new AdapterCache({
    maxBytes,
    pinned,
    load: async (id) => {
      loads.push(id);
      await new Promise((r) => setTimeout(r, 1));
      if (!(id in sizes)) throw new Error(`no adapter ${id}`);
      return fake(id, sizes[id]!);
    },
  });
  return { cache, loads };
}

describe('adapter cache', () => {
  it('N concurrent misses of one adapter make exactly one load', async () => {
    const { cache, loads } = harness(1000, { a: 100 });
    const leases = await Promise.all(Array.from({ length: 20 }, () => cache.acquire('a')));
    assert.equal(loads.length, 1);
    assert.ok(leases.every((l) => l.weights === leases[0]!.weights));
    assert.equal(cache.counters.loads, 1);
    leases.forEach((l) => l.release());
  });

  it('counts hits, misses and evictions; bytes held stay within the budget', async () => {
    const { cache } = harness(250, { a: 100, b: 100, c: 100 });
    (await cache.acquire('a')).release();
    (await cache.acquire('a')).release();
    (await cache.acquire('b')).release();
    (await cache.acquire('c')).release(); // evicts a
    assert.deepEqual({ ...cache.counters }, { hits: 1, misses: 3, evictions: 1, loads: 3, loadFailures: 0 });
    assert.equal(cache.isCached('a'), false);
    assert.ok(cache.lruBytes <= 250);
  });

  it('pinned adapters are never evicted', async () => {
    const { cache, loads } = harness(150, { p: 100, a: 100, b: 100, c: 100 }, ['p']);
    await cache.loadPinned();
    for (const id of ['a', 'b', 'c', 'a', 'b']) (await cache.acquire(id)).release();
    assert.ok(cache.isCached('p'));
    const before = loads.length;
    (await cache.acquire('p')).release();
    assert.equal(loads.length, before, 'pinned hit needs no load');
  });

  it('an adapter a running batch holds is not reloaded after eviction (same weights, no second copy)', async () => {
    const { cache, loads } = harness(150, { a: 100, b: 100 });
    const lease = await cache.acquire('a');
    (await cache.acquire('b')).release(); // evicts a from the LRU
    assert.equal(cache.isCached('a'), false);
    assert.ok(cache.bytesHeld >= 200, 'the leased adapter is still counted as held');
    const again = await cache.acquire('a');
    assert.equal(again.weights, lease.weights);
    assert.equal(loads.filter((x) => x === 'a').length, 1);
    lease.release();
    again.release();
  });

  it('an adapter larger than the whole cache is a clear error', async () => {
    const { cache } = harness(50, { big: 100 });
    await assert.rejects(cache.acquire('big'), (e: unknown) => isAppError(e, 'ADAPTER_TOO_LARGE') && /more than the whole adapter cache/.test((e as Error).message));
  });

  it('a failed load is reported and not cached', async () => {
    const { cache, loads } = harness(500, {});
    await assert.rejects(cache.acquire('missing'), /no adapter missing/);
    await assert.rejects(cache.acquire('missing'), /no adapter missing/);
    assert.equal(loads.length, 2);
    assert.equal(cache.counters.loadFailures, 2);
  });

  it('invalidate drops a replaced adapter; a held lease keeps its version', async () => {
    let version = 1;
    const cache = new AdapterCache({ maxBytes: 1000, load: async (id) => ({ ...fake(id, 10), version: String(version) }) });
    const old = await cache.acquire('a');
    version = 2;
    cache.invalidate('a');
    const fresh = await cache.acquire('a');
    assert.equal(old.weights.version, '1');
    assert.equal(fresh.weights.version, '2');
    old.release();
    fresh.release();
  });

  it('property: after any sequence of acquire/release/invalidate the LRU holds at most maxBytes', async () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 100, max: 400 }),
        fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 6, maxLength: 6 }),
        fc.array(fc.tuple(fc.constantFrom('acquire', 'release', 'invalidate'), fc.constantFrom(...ids)), { maxLength: 60 }),
        async (max, sizes, ops) => {
          const { cache } = harness(max, Object.fromEntries(ids.map((id, i) => [id, sizes[i]!])));
          const held: Array<{ release(): void }> = [];
          for (const [op, id] of ops) {
            if (op === 'acquire') held.push(await cache.acquire(id));
            else if (op === 'release') held.shift()?.release();
            else cache.invalidate(id);
            assert.ok(cache.lruBytes <= max, `${cache.lruBytes} > ${max}`);
          }
          held.forEach((h) => h.release());
        },
      ),
      { numRuns: 150, seed: 42 },
    );
  });
});
