import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AdapterCache, type AdapterLease } from '../src/adapter/cache.js';
import type { AdapterWeights } from '../src/adapter/lora-weights.js';
import { isAppError } from '../src/errors.js';
import { propertyParams } from './helpers/property-seed.js';

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
    assert.equal(cache.counters.hits + cache.counters.misses, 4, 'every acquire is a hit or a miss');
    // b and c are cached, nothing is leased: the LRU holds exactly their bytes.
    assert.equal(cache.lruBytes, 200);
    assert.equal(cache.bytesHeld, 200);
    assert.equal(cache.entries, 2);
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
    assert.equal(cache.lruBytes, 100, 'only b is in the LRU');
    assert.equal(cache.bytesHeld, 200, 'the evicted-but-leased a is still counted as held');
    const again = await cache.acquire('a');
    assert.equal(again.weights, lease.weights);
    assert.equal(loads.filter((x) => x === 'a').length, 1);
    assert.deepEqual({ hits: cache.counters.hits, misses: cache.counters.misses }, { hits: 1, misses: 2 });
    // a went back into the LRU (evicting b): one copy, counted once.
    assert.equal(cache.isCached('a'), true);
    assert.equal(cache.isCached('b'), false);
    assert.equal(cache.bytesHeld, 100);
    lease.release();
    again.release();
    assert.equal(cache.bytesHeld, 100, 'releasing a cached adapter frees nothing');
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

  it('the budget is positive: 0, negative and NaN are INVALID_CONFIG', () => {
    for (const maxBytes of [0, -1, Number.NaN]) {
      assert.throws(() => new AdapterCache({ maxBytes, load: async (id) => fake(id, 1) }), (e: unknown) => isAppError(e, 'INVALID_CONFIG') && /cache size must be positive/.test((e as Error).message), String(maxBytes));
    }
    assert.equal(new AdapterCache({ maxBytes: 1, load: async (id) => fake(id, 1) }).maxBytes, 1);
  });

  it('an adapter of exactly the budget fits; one byte more is ADAPTER_TOO_LARGE', async () => {
    const { cache } = harness(100, { exact: 100, over: 101 });
    const l = await cache.acquire('exact');
    assert.equal(cache.isCached('exact'), true);
    assert.equal(cache.lruBytes, 100);
    l.release();
    await assert.rejects(cache.acquire('over'), (e: unknown) => isAppError(e, 'ADAPTER_TOO_LARGE') && /"over" needs 101 bytes in memory, more than the whole adapter cache \(100 bytes\)/.test((e as Error).message));
    assert.equal(cache.isCached('exact'), true, 'a refused load evicts nothing');
  });

  it('load events: seconds ≥ 0 and ok / not ok; evict events name the id; only evictions count (not deletes)', async () => {
    const loadsSeen: Array<[string, boolean]> = [];
    const evicted: string[] = [];
    const sizes: Record<string, number> = { a: 100, b: 100, c: 100 };
    const cache = new AdapterCache({
      maxBytes: 150,
      load: async (id) => { if (!(id in sizes)) throw new Error(`no ${id}`); return fake(id, sizes[id]!); },
      events: {
        onLoad: (id, seconds, ok) => { assert.ok(seconds >= 0 && seconds < 60, `${seconds}`); loadsSeen.push([id, ok]); },
        onEvict: (id) => evicted.push(id),
      },
    });
    (await cache.acquire('a')).release();
    (await cache.acquire('b')).release(); // evicts a
    await assert.rejects(cache.acquire('zzz'));
    cache.invalidate('b'); // a delete, not an eviction
    assert.deepEqual(loadsSeen, [['a', true], ['b', true], ['zzz', false]]);
    assert.deepEqual(evicted, ['a']);
    assert.equal(cache.counters.evictions, 1);
  });

  it('pinned: loaded by loadPinned, counted in bytesHeld and entries, a hit per acquire; repin only re-pins configured ids', async () => {
    let version = 1;
    const cache = new AdapterCache({ maxBytes: 50, pinned: ['p'], load: async (id) => ({ ...fake(id, id === 'p' ? 80 : 10), version: String(version) }) });
    assert.equal(cache.isPinned('p'), true);
    assert.equal(cache.isCached('p'), false, 'not loaded before loadPinned');
    await cache.loadPinned();
    assert.equal(cache.isCached('p'), true);
    (await cache.acquire('x')).release();
    assert.equal(cache.bytesHeld, 90, 'pinned bytes (outside the budget) plus the LRU');
    assert.equal(cache.entries, 2);
    const l = await cache.acquire('p');
    assert.deepEqual({ hits: cache.counters.hits, misses: cache.counters.misses }, { hits: 1, misses: 1 });
    assert.equal(cache.leases, 1);
    l.release();
    // A replace: invalidate drops the pin, repin restores it with the new version.
    version = 2;
    cache.invalidate('p');
    assert.equal(cache.isPinned('p'), false);
    assert.equal(cache.isCached('p'), false);
    await cache.repin('p');
    assert.equal(cache.isPinned('p'), true);
    assert.equal(cache.isCached('p'), true);
    assert.equal((await cache.acquire('p')).weights.version, '2');
    // An id that was never pinned stays unpinned and unloaded.
    await cache.repin('x');
    assert.equal(cache.isPinned('x'), false);
  });

  it('leases: a double release counts once; the lease count and bytes held follow every release', async () => {
    const { cache } = harness(150, { a: 100, b: 100 });
    const l1 = await cache.acquire('a');
    const l2 = await cache.acquire('a');
    assert.equal(cache.leases, 2);
    l1.release();
    l1.release(); // again: no effect
    assert.equal(cache.leases, 1, 'l2 still holds a');
    (await cache.acquire('b')).release(); // evicts a from the LRU; l2 keeps it held
    assert.equal(cache.bytesHeld, 200);
    const l3 = await cache.acquire('a');
    assert.equal(l3.weights, l2.weights, 'the leased copy is handed out, not reloaded');
    l2.release();
    l3.release();
    assert.equal(cache.leases, 0);
    (await cache.acquire('b')).release(); // evicts a again; nothing holds it now
    assert.equal(cache.bytesHeld, 100, 'a released and evicted is no longer held');
    const fresh = await cache.acquire('a');
    assert.notEqual(fresh.weights, l2.weights, 'a fresh load, not the released copy');
    fresh.release();
  });

  it('a leased adapter evicted and then invalidated is not handed out again', async () => {
    let version = 1;
    const cache = new AdapterCache({ maxBytes: 150, load: async (id) => ({ ...fake(id, 100), version: String(version) }) });
    const old = await cache.acquire('a');
    (await cache.acquire('b')).release(); // evicts a; old still holds it
    version = 2;
    cache.invalidate('a');
    const fresh = await cache.acquire('a');
    assert.equal(fresh.weights.version, '2');
    old.release(); // must not end fresh's hold on a
    (await cache.acquire('b')).release(); // evicts a (v2) from the LRU; fresh still holds it
    assert.equal(cache.bytesHeld, 200, 'the leased v2 is still counted as held');
    const again = await cache.acquire('a');
    assert.equal(again.weights, fresh.weights, 'handed the leased v2, not a reload');
    fresh.release();
    again.release();
    assert.equal(cache.leases, 0);
  });

  it('load seconds are the load\'s duration: at least what it waited, at most what the acquire took', async () => {
    const seen: Array<[number, boolean]> = [];
    const cache = new AdapterCache({
      maxBytes: 1000,
      load: async (id) => { await new Promise((r) => setTimeout(r, 30)); if (id === 'bad') throw new Error('no'); return fake(id, 10); },
      events: { onLoad: (_id, seconds, ok) => seen.push([seconds, ok]) },
    });
    for (const id of ['good', 'bad']) {
      const t0 = performance.now();
      await cache.acquire(id).then((l) => l.release(), () => undefined);
      const wall = (performance.now() - t0) / 1000;
      const [seconds, ok] = seen.at(-1)!;
      assert.equal(ok, id === 'good');
      assert.ok(seconds >= 0.025 && seconds <= wall, `${id}: ${seconds} s, acquire took ${wall} s`);
    }
  });

  it('the stale load finishing first does not end the newer load in progress: later misses join it', async () => {
    const { cache, gates, replace } = gated();
    const first = cache.acquire('a');
    replace();
    const second = cache.acquire('a'); // the newer load (gate 1)
    gates[0]!.open();
    (await first).release(); // the stale load settles while the newer one is still pending
    const third = cache.acquire('a');
    assert.equal(gates.length, 2, 'the third acquire joined the newer load instead of starting another');
    gates[1]!.open();
    const [s, t] = await Promise.all([second, third]);
    assert.equal(s.weights, t.weights);
    s.release();
    t.release();
  });

  it('an evicted adapter of exactly the budget, still leased, goes back into the LRU when acquired again', async () => {
    const { cache } = harness(100, { a: 100, b: 100 });
    const held = await cache.acquire('a');
    (await cache.acquire('b')).release(); // evicts a
    const again = await cache.acquire('a');
    assert.equal(again.weights, held.weights);
    assert.equal(cache.isCached('a'), true);
    assert.equal(cache.lruBytes, 100);
    held.release();
    again.release();
  });

  it('property: after any sequence of acquire/release/invalidate the cache matches a model (hits/misses, bytes held incl. evicted-but-leased)', async (t) => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 100, max: 400 }),
        fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 6, maxLength: 6 }),
        fc.array(fc.tuple(fc.constantFrom('acquire', 'release', 'invalidate'), fc.constantFrom(...ids)), { maxLength: 60 }),
        async (max, sizeList, ops) => {
          const sizes = Object.fromEntries(ids.map((id, i) => [id, sizeList[i]!]));
          const { cache, loads } = harness(max, sizes);
          // Model: each id's generation (bumped by invalidate); leases remember the generation they got.
          const gen = new Map<string, number>();
          const held: Array<{ id: string; gen: number; lease: AdapterLease }> = [];
          const current = (id: string) => held.filter((h) => h.id === id && h.gen === (gen.get(id) ?? 0));
          let acquires = 0;
          for (const [op, id] of ops) {
            if (op === 'acquire') {
              // A hit exactly when the id is cached or a batch still holds its current version.
              const expectHit = cache.isCached(id) || current(id).length > 0;
              const before = { ...cache.counters };
              const loadsBefore = loads.length;
              const lease = await cache.acquire(id);
              acquires++;
              assert.equal(lease.weights.id, id);
              assert.equal(cache.counters.hits - before.hits, expectHit ? 1 : 0, `${id}: hit`);
              assert.equal(cache.counters.misses - before.misses, expectHit ? 0 : 1, `${id}: miss`);
              assert.equal(loads.length - loadsBefore, expectHit ? 0 : 1, `${id}: loads only on a miss`);
              // No second copy: every current lease of an id shares one weights object.
              for (const h of current(id)) assert.equal(h.lease.weights, lease.weights, `${id}: one copy`);
              held.push({ id, gen: gen.get(id) ?? 0, lease });
            } else if (op === 'release') {
              held.shift()?.lease.release();
            } else {
              cache.invalidate(id);
              gen.set(id, (gen.get(id) ?? 0) + 1);
              assert.equal(cache.isCached(id), false, `${id}: invalidated`);
            }
            assert.equal(cache.counters.hits + cache.counters.misses, acquires, 'hits + misses = acquires');
            const cached = ids.filter((x) => cache.isCached(x));
            const lru = cached.reduce((b, x) => b + sizes[x]!, 0);
            assert.equal(cache.lruBytes, lru, 'LRU bytes are the cached adapters\' sizes');
            assert.ok(lru <= max);
            assert.equal(cache.entries, cached.length);
            // Bytes held: cached adapters plus evicted ones a batch still holds (current version), each once.
            const leasedOnly = ids.filter((x) => !cache.isCached(x) && current(x).length > 0);
            assert.equal(cache.bytesHeld, lru + leasedOnly.reduce((b, x) => b + sizes[x]!, 0), 'bytes held');
          }
          held.forEach((h) => h.lease.release());
          // With every lease released, only the LRU holds anything.
          assert.equal(cache.bytesHeld, cache.lruBytes);
        },
      ),
      propertyParams(t, 42, 150),
    );
  });

  /** A cache whose loads wait until the test opens them, each load recording the version on disk when it started. */
  function gated() {
    let version = 1;
    const gates: Array<{ version: string; open(): void }> = [];
    const cache = new AdapterCache({
      maxBytes: 1000,
      load: (id) => {
        const v = String(version);
        return new Promise<AdapterWeights>((resolve) => gates.push({ version: v, open: () => resolve({ ...fake(id, 10), version: v }) }));
      },
    });
    return { cache, gates, replace: () => { version++; cache.invalidate('a'); } };
  }

  it('an invalidate during a pending load: a later acquire loads afresh, and the stale result (finishing last) is not cached', async () => {
    const { cache, gates, replace } = gated();
    const first = cache.acquire('a');
    assert.equal(gates.length, 1, 'the load started');
    replace();
    const second = cache.acquire('a');
    assert.equal(gates.length, 2, 'the acquire after the invalidate did not join the stale load');
    assert.deepEqual(gates.map((g) => g.version), ['1', '2']);
    gates[1]!.open();
    const s = await second;
    assert.equal(s.weights.version, '2');
    assert.equal(cache.isCached('a'), true);
    gates[0]!.open();
    const f = await first;
    assert.equal(f.weights.version, '1', 'the waiter that asked before the replace gets what it asked for');
    f.release();
    s.release();
    const third = await cache.acquire('a');
    assert.equal(third.weights.version, '2', 'the stale load did not overwrite the cache');
    assert.equal(gates.length, 2, 'a hit');
    third.release();
  });

  it('an invalidate during a pending load: the stale result (finishing first, nobody waiting on it) is not cached', async () => {
    const { cache, gates, replace } = gated();
    const first = cache.acquire('a');
    replace();
    gates[0]!.open();
    const f = await first;
    assert.equal(f.weights.version, '1');
    f.release();
    assert.equal(cache.isCached('a'), false, 'the stale weights did not enter the cache');
    const next = cache.acquire('a');
    assert.equal(gates.length, 2, 'a fresh load');
    gates[1]!.open();
    assert.equal((await next).weights.version, '2');
  });

  it('an invalidate during a pending load: while its waiter still holds the stale weights, a new acquire gets the new version', async () => {
    const { cache, gates, replace } = gated();
    const first = cache.acquire('a');
    replace();
    gates[0]!.open();
    const f = await first; // a batch holds version 1 (it asked before the replace)
    const next = cache.acquire('a');
    gates[1]?.open();
    const n = await next;
    assert.equal(n.weights.version, '2', 'a request after the replace must not get the replaced weights');
    f.release();
    n.release();
    const later = cache.acquire('a');
    gates[2]?.open();
    assert.equal((await later).weights.version, '2', 'the replaced weights were not cached');
  });
});
