import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ADAPTER_ID_PATTERN, validateAdapterId } from '../src/adapter/adapter-id.js';
import { AdapterStore, CONFIG_FILE, DELETING_MARKER, META_FILE, MODEL_FILE, writeFileDurable, type AdapterStoreOptions, type StoredAdapterFiles } from '../src/adapter/store.js';
import { isAppError, type ErrorCode } from '../src/errors.js';
import { versionFiles } from './helpers/crash-put.js';

const roots: string[] = [];
after(async () => {
  for (const r of roots) await fs.rm(r, { recursive: true, force: true });
});

/** A fresh temp root holding `store/` (the store dir) and room for things "outside" it. */
async function setup(opts: Partial<AdapterStoreOptions> = {}): Promise<{ root: string; store: AdapterStore; warnings: string[] }> {
  const root = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'adapterhost-store-')));
  roots.push(root);
  const warnings: string[] = [];
  const store = new AdapterStore({ dir: path.join(root, 'store'), log: { warn: (_o, m) => warnings.push(m) }, ...opts });
  await store.init();
  return { root, store, warnings };
}

const files = (tag: string, modelBytes = 1024): StoredAdapterFiles => ({
  config: Buffer.from(JSON.stringify({ peft_type: 'LORA', tag })),
  model: Buffer.alloc(modelBytes, tag),
});
const noValidate = (): void => undefined;
const entries = async (dir: string): Promise<string[]> => (await fs.readdir(dir)).sort();
const hidden = async (dir: string): Promise<string[]> => (await entries(dir)).filter((n) => n.startsWith('.'));

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isAppError(e, code), `expected AppError ${code}, got ${e instanceof Error ? `${(e as { code?: string }).code ?? e.name}: ${e.message}` : String(e)}`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** Writes adapter files the way other tools do: no sidecar. */
async function writeRaw(dir: string, f: StoredAdapterFiles): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, CONFIG_FILE), f.config);
  await fs.writeFile(path.join(dir, MODEL_FILE), f.model);
}

describe('validateAdapterId', () => {
  it('accepts ids matching the pattern', () => {
    for (const id of ['a', '0', 'my-adapter_v1.2', 'a'.repeat(64), 'x.y']) assert.equal(validateAdapterId(id), id);
    assert.equal(ADAPTER_ID_PATTERN.source, '^[a-z0-9][a-z0-9._-]{0,63}$');
  });

  it('refuses names other file systems cannot hold: Windows device names (with any extension), a trailing dot', () => {
    for (const id of ['con', 'prn', 'aux', 'nul', 'com0', 'com1', 'com9', 'lpt1', 'lpt9', 'nul.json', 'con.x.y', 'lang.', 'a.', 'x-y_z.']) {
      assert.throws(() => validateAdapterId(id), (e: unknown) => isAppError(e, 'INVALID_ADAPTER_ID') && /reserves|end with/.test(e.message), id);
    }
    // Names that only start like one are fine.
    for (const id of ['console', 'nul-adapter', 'com10', 'lpt', 'auxiliary', 'conx.json', 'lang.v2', 'prn_x']) assert.equal(validateAdapterId(id), id);
  });

  it('names the id (escaped, truncated) and the pattern', () => {
    assert.throws(() => validateAdapterId('a\u0000b'), (e: unknown) => isAppError(e, 'INVALID_ADAPTER_ID') && e.message.includes('"a\\u0000b"') && e.message.includes(ADAPTER_ID_PATTERN.source));
    assert.throws(() => validateAdapterId('q'.repeat(500)), (e: unknown) => isAppError(e, 'INVALID_ADAPTER_ID') && e.message.includes(`"${'q'.repeat(80)}"…`) && !e.message.includes('q'.repeat(81)));
    for (const v of [42, null, undefined, {}]) assert.throws(() => validateAdapterId(v), (e: unknown) => isAppError(e, 'INVALID_ADAPTER_ID'));
  });
});

describe('AdapterStore', () => {
  it('puts, lists, reads, replaces, leaving no temp or old dirs', async () => {
    const { store } = await setup();
    assert.deepEqual(await store.list(), []);
    assert.deepEqual(await store.put('one', files('a'), noValidate), { created: true });
    assert.deepEqual(await store.list(), ['one']);
    assert.equal(await store.has('one'), true);
    assert.equal(await store.has('two'), false);
    let got = await store.read('one');
    assert.deepEqual(got.config, files('a').config);
    assert.deepEqual(got.model, files('a').model);
    assert.ok(got.meta);
    assert.equal(got.meta.bytes[MODEL_FILE], 1024);
    assert.match(got.meta.sha256[MODEL_FILE], /^[0-9a-f]{64}$/);
    assert.ok(!Number.isNaN(Date.parse(got.meta.storedAt)));
    assert.equal(await store.sizeOnDisk('one'), got.bytesOnDisk);

    assert.deepEqual(await store.put('one', files('b', 2048), noValidate), { created: false });
    got = await store.read('one');
    assert.deepEqual(got.model, files('b', 2048).model);
    assert.deepEqual(got.config, files('b').config);
    assert.deepEqual(await entries(store.dir), ['one']);
    assert.deepEqual(await entries(path.join(store.dir, 'one')), [META_FILE, CONFIG_FILE, MODEL_FILE].sort());
    const p = await store.paths('one');
    assert.equal(p.model, path.join(store.dir, 'one', MODEL_FILE));
    assert.ok(path.isAbsolute(store.dir));
  });

  it('refuses use before init()', async () => {
    const store = new AdapterStore({ dir: path.join(os.tmpdir(), 'adapterhost-never-created') });
    await rejectsWith(store.list(), 'INTERNAL', /init\(\)/);
  });

  it('reads adapters written by other tools (no sidecar) without a checksum', async () => {
    const { store } = await setup();
    await writeRaw(path.join(store.dir, 'demo'), files('d'));
    assert.deepEqual(await store.list(), ['demo']);
    const got = await store.read('demo');
    assert.equal(got.meta, null);
    assert.deepEqual(got.model, files('d').model);
  });

  it('changes nothing when validate throws', async () => {
    const { store } = await setup();
    await store.put('keep', files('a'), noValidate);
    const boom = new Error('bad adapter');
    await assert.rejects(store.put('keep', files('b'), () => { throw boom; }), (e) => e === boom);
    await assert.rejects(store.put('fresh', files('b'), async () => { throw boom; }), (e) => e === boom);
    assert.deepEqual((await store.read('keep')).model, files('a').model);
    assert.deepEqual(await entries(store.dir), ['keep']);
  });

  it('ends concurrent puts of one id with exactly one whole put', async () => {
    const { store } = await setup();
    const puts = Array.from({ length: 10 }, (_, i) => ({ config: Buffer.from(JSON.stringify({ n: i })), model: Buffer.alloc(65536 + i, i) }));
    const results = await Promise.all(puts.map((f) => store.put('same', f, noValidate)));
    assert.equal(results.filter((r) => r.created).length, 1);
    const got = await store.read('same');
    const n = (JSON.parse(got.config.toString()) as { n: number }).n;
    assert.deepEqual(got.model, puts[n].model, 'config and model must come from the same put');
    assert.deepEqual(await entries(store.dir), ['same']);
  });

  it('runs puts of different ids concurrently and independently', async () => {
    const { store } = await setup();
    const ids = ['a1', 'b2', 'c3', 'd4'];
    await Promise.all(ids.map((id) => store.put(id, files(id), noValidate)));
    assert.deepEqual(await store.list(), ids);
    for (const id of ids) assert.deepEqual((await store.read(id)).model, files(id).model);
  });

  it('deletes; deleting a missing id is ADAPTER_NOT_FOUND', async () => {
    const { store } = await setup();
    await store.put('gone', files('a'), noValidate);
    await store.put('stay', files('b'), noValidate);
    await store.delete('gone');
    assert.deepEqual(await store.list(), ['stay']);
    assert.deepEqual(await entries(store.dir), ['stay']);
    await rejectsWith(store.read('gone'), 'ADAPTER_NOT_FOUND');
    await rejectsWith(store.delete('gone'), 'ADAPTER_NOT_FOUND');
    await rejectsWith(store.sizeOnDisk('gone'), 'ADAPTER_NOT_FOUND');
  });

  it('serializes a delete with puts of the same id', async () => {
    const { store } = await setup();
    await store.put('x', files('a'), noValidate);
    // Same-id operations take effect in call order: each of these succeeds.
    const results = await Promise.allSettled([store.delete('x'), store.put('x', files('b'), noValidate), store.delete('x')]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled']);
    assert.deepEqual(await entries(store.dir), []);
    const [put1, put2] = await Promise.all([store.put('x', files('c'), noValidate), store.put('x', files('d'), noValidate)]);
    assert.deepEqual([put1.created, put2.created], [true, false]);
    assert.deepEqual((await store.read('x')).model, files('d').model);
  });

  const badIds: [string, string][] = [
    ['parent traversal', '../x'],
    ['absolute path', '/etc/passwd'],
    ['nested traversal', 'a/../../b'],
    ['url-encoded traversal (literal)', '%2e%2e%2fx'],
    ['backslash', 'a\\b'],
    ['NUL byte', 'a\u0000b'],
    ['dot-dot', '..'],
    ['dot-dot inside', 'a..b'],
    ['hidden', '.hidden'],
    ['temp-dir lookalike', '.tmp-x-1'],
    ['65 uppercase chars', 'A'.repeat(65)],
    ['65 chars', 'a'.repeat(65)],
    ['empty', ''],
    ['uppercase', 'UPPER'],
    ['trailing newline', 'abc\n'],
  ];
  for (const [name, id] of badIds) {
    it(`refuses bad id: ${name}`, async () => {
      const { root, store } = await setup();
      const invalid = /invalid adapter id/;
      assert.throws(() => validateAdapterId(id), (e: unknown) => isAppError(e, 'INVALID_ADAPTER_ID'));
      await rejectsWith(store.put(id, files('evil'), noValidate), 'INVALID_ADAPTER_ID', invalid);
      await rejectsWith(store.read(id), 'INVALID_ADAPTER_ID', invalid);
      await rejectsWith(store.paths(id), 'INVALID_ADAPTER_ID', invalid);
      await rejectsWith(store.has(id), 'INVALID_ADAPTER_ID', invalid);
      await rejectsWith(store.sizeOnDisk(id), 'INVALID_ADAPTER_ID', invalid);
      await rejectsWith(store.delete(id), 'INVALID_ADAPTER_ID', invalid);
      assert.deepEqual(await entries(root), ['store']);
      assert.deepEqual(await entries(store.dir), []);
    });
  }

  it('refuses a symlink planted as an adapter dir, reading and writing nothing outside', async () => {
    const { root, store, warnings } = await setup();
    const outside = path.join(root, 'outside-dir');
    await writeRaw(outside, files('secret'));
    await fs.symlink(outside, path.join(store.dir, 'evil'));
    await store.put('good', files('g'), noValidate);

    assert.deepEqual(await store.list(), ['good']);
    assert.ok(warnings.some((w) => /symlink/.test(w)), 'list() reports the skipped symlink');
    assert.equal(await store.has('evil'), false);
    await rejectsWith(store.read('evil'), 'ADAPTER_NOT_FOUND', /symlink/);
    await rejectsWith(store.paths('evil'), 'ADAPTER_NOT_FOUND', /symlink/);
    await rejectsWith(store.put('evil', files('overwrite'), noValidate), 'CONFLICT', /symlink/);
    await rejectsWith(store.delete('evil'), 'ADAPTER_NOT_FOUND', /symlink/);

    assert.deepEqual(await entries(outside), [CONFIG_FILE, MODEL_FILE].sort());
    assert.deepEqual(await fs.readFile(path.join(outside, MODEL_FILE)), files('secret').model);
    assert.ok((await fs.lstat(path.join(store.dir, 'evil'))).isSymbolicLink(), 'the planted link is left for an operator');
    assert.deepEqual(await entries(store.dir), ['evil', 'good']);
  });

  it('refuses symlinked files inside a real adapter dir', async () => {
    const { root, store } = await setup();
    const secret = path.join(root, 'secret.bin');
    await fs.writeFile(secret, 'top secret');
    const dir = path.join(store.dir, 'linked');
    await fs.mkdir(dir);
    await fs.writeFile(path.join(dir, CONFIG_FILE), files('l').config);
    await fs.symlink(secret, path.join(dir, MODEL_FILE));
    assert.deepEqual(await store.list(), []);
    await rejectsWith(store.read('linked'), 'ADAPTER_NOT_FOUND', /symlink/);

    // A symlinked sidecar is refused by O_NOFOLLOW too.
    const dir2 = path.join(store.dir, 'sidelinked');
    await writeRaw(dir2, files('s'));
    await fs.symlink(secret, path.join(dir2, META_FILE));
    await rejectsWith(store.read('sidelinked'), 'ADAPTER_NOT_FOUND', /symlink/);
  });

  it('detects a file changed on disk after upload (ADAPTER_CORRUPT), other adapters unaffected', async () => {
    const { store } = await setup();
    await store.put('flip', files('a'), noValidate);
    await store.put('fine', files('b'), noValidate);
    const model = path.join(store.dir, 'flip', MODEL_FILE);
    const bytes = await fs.readFile(model);
    bytes[100] ^= 0xff;
    await fs.writeFile(model, bytes);
    await rejectsWith(store.read('flip'), 'ADAPTER_CORRUPT', /adapter "flip": adapter_model\.safetensors does not match the checksum recorded at upload/);
    assert.deepEqual((await store.read('fine')).model, files('b').model);

    await fs.writeFile(path.join(store.dir, 'fine', META_FILE), '{not json');
    await rejectsWith(store.read('fine'), 'ADAPTER_CORRUPT', /\.adapterhost\.json/);
  });

  it('init() recovers from crashes', async () => {
    const { store } = await setup();
    const dir = store.dir;
    await fs.mkdir(path.join(dir, '.tmp-x-123'));
    await fs.writeFile(path.join(dir, '.tmp-x-123', MODEL_FILE), 'half');
    // Replace interrupted between its renames: the previous version comes back.
    await writeRaw(path.join(dir, '.old-y-1'), files('y-old'));
    // Interrupted delete (marker present): removed.
    await writeRaw(path.join(dir, '.old-z-1'), files('z'));
    await fs.writeFile(path.join(dir, '.old-z-1', DELETING_MARKER), '');
    // Finished replace whose old dir was not yet removed.
    await writeRaw(path.join(dir, 'w'), files('w-new'));
    await writeRaw(path.join(dir, '.old-w-abc'), files('w-old'));
    // Delete interrupted before its rename (marker in the live dir): finished.
    await writeRaw(path.join(dir, 'v'), files('v'));
    await fs.writeFile(path.join(dir, 'v', DELETING_MARKER), '');
    // Old dir of an id with dashes, incomplete: never restored half-removed.
    await fs.mkdir(path.join(dir, '.old-my-id-2'));
    await fs.writeFile(path.join(dir, '.old-my-id-2', CONFIG_FILE), '{}');

    const fresh = new AdapterStore({ dir, log: { warn: () => undefined } });
    await fresh.init();
    assert.deepEqual(await entries(dir), ['w', 'y']);
    assert.deepEqual((await fresh.read('y')).model, files('y-old').model);
    assert.deepEqual((await fresh.read('w')).model, files('w-new').model);
    assert.deepEqual(await fresh.list(), ['w', 'y']);
  });

  it('maps a disk filling up part-way to INSUFFICIENT_STORAGE, leaving the old version and no temp dir', async () => {
    let fail: string | null = null;
    const writeFile = async (p: string, data: Buffer): Promise<void> => {
      if (fail !== null && path.basename(p) === MODEL_FILE) {
        await fs.writeFile(p, data.subarray(0, data.length >> 1));
        throw Object.assign(new Error(`${fail}: simulated`), { code: fail });
      }
      await writeFileDurable(p, data);
    };
    const { store } = await setup({ writeFile });
    await store.put('full', files('a', 8192), noValidate);
    for (const [code, expected] of [['ENOSPC', 'INSUFFICIENT_STORAGE'], ['EDQUOT', 'INSUFFICIENT_STORAGE'], ['EIO', 'INTERNAL']] as const) {
      fail = code;
      await rejectsWith(store.put('full', files('b', 8192), noValidate), expected);
      await rejectsWith(store.put('newone', files('b', 8192), noValidate), expected);
      assert.deepEqual(await entries(store.dir), ['full']);
      assert.deepEqual((await store.read('full')).model, files('a', 8192).model);
    }
    fail = null;
    assert.deepEqual(await store.put('full', files('c'), noValidate), { created: false });
  });
});
