import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync, truncateSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ADAPTER_ID_PATTERN, validateAdapterId } from '../src/adapter/adapter-id.js';
import { AdapterStore, CONFIG_FILE, DELETING_MARKER, META_FILE, MODEL_FILE, writeFileDurable, type AdapterStoreOptions, type StoredAdapterFiles } from '../src/adapter/store.js';
import { AppError, isAppError, type ErrorCode } from '../src/errors.js';
import { versionFiles } from './helpers/crash-put.js';

const roots: string[] = [];
after(async () => {
  for (const r of roots) await fs.rm(r, { recursive: true, force: true });
});

/** One `log.warn` call: its fields and its message. */
interface Logged {
  o: Record<string, unknown>;
  m: string;
}

/** A logger that records every warning (message only in `warnings`, fields too in `logs`). */
function capture(): { log: NonNullable<AdapterStoreOptions['log']>; warnings: string[]; logs: Logged[] } {
  const warnings: string[] = [];
  const logs: Logged[] = [];
  const log = {
    warn: (o: object, m: string): void => {
      warnings.push(m);
      logs.push({ o: { ...o }, m });
    },
  };
  return { log, warnings, logs };
}

/** A fresh temp root holding `store/` (the store dir) and room for things "outside" it. */
async function setup(opts: Partial<AdapterStoreOptions> = {}): Promise<{ root: string; store: AdapterStore; warnings: string[]; logs: Logged[] }> {
  const root = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'adapterhost-store-')));
  roots.push(root);
  const { log, warnings, logs } = capture();
  const store = new AdapterStore({ dir: path.join(root, 'store'), log, ...opts });
  await store.init();
  return { root, store, warnings, logs };
}

/** A second store on `dir` (as after a restart), init()'ed, with its warnings recorded. */
async function reopen(dir: string): Promise<{ store: AdapterStore; logs: Logged[] }> {
  const { log, logs } = capture();
  const store = new AdapterStore({ dir, log });
  await store.init();
  return { store, logs };
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

/** Linux's PATH_MAX: a path of 4096 bytes or more (with its NUL) fails with ENAMETOOLONG. */
const PATH_MAX = 4096;
const notLinux = process.platform !== 'linux' && 'needs Linux PATH_MAX';

/** `base` extended with directories (created) to exactly `length` characters. */
async function longDir(base: string, length: number): Promise<string> {
  let p = base;
  while (p.length < length) {
    const rest = length - p.length - 1;
    p = path.join(p, 'd'.repeat(rest <= 200 ? rest : rest - 200 >= 2 ? 200 : 150));
  }
  await fs.mkdir(p, { recursive: true });
  return p;
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

  const RULES =
    'an id must match ^[a-z0-9][a-z0-9._-]{0,63}$ (1-64 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit), ' +
    'must not contain "..", end with "." or be a name Windows reserves (con, prn, aux, nul, com0-9, lpt0-9, also with an extension)';
  const messageOf = (id: unknown): string => {
    try {
      validateAdapterId(id);
    } catch (e) {
      assert.ok(isAppError(e, 'INVALID_ADAPTER_ID'));
      return e.message;
    }
    assert.fail(`${String(id)} was accepted`);
  };

  it('words the message exactly: the id as JSON, then the rules', () => {
    assert.equal(messageOf('UPPER'), `invalid adapter id "UPPER": ${RULES}`);
    assert.equal(messageOf('con.txt'), `invalid adapter id "con.txt": ${RULES}`);
  });

  it('cuts the shown id at exactly 80 characters, marking the cut with "…"', () => {
    const q80 = 'Q'.repeat(80);
    assert.equal(messageOf(q80), `invalid adapter id "${q80}": ${RULES}`);
    assert.equal(messageOf(`${q80}R`), `invalid adapter id "${q80}"…: ${RULES}`);
    assert.equal(messageOf('Q'.repeat(79)), `invalid adapter id "${'Q'.repeat(79)}": ${RULES}`);
  });

  it('names the type of an id that is not a string', () => {
    for (const [v, shown] of [
      [null, '(a null, not a string)'],
      [42, '(a number, not a string)'],
      [undefined, '(a undefined, not a string)'],
      [{}, '(a object, not a string)'],
    ] as const) {
      assert.equal(messageOf(v), `invalid adapter id ${shown}: ${RULES}`);
    }
  });

  it('refuses reserved names only as the whole name (anchored at the start), a dot only at the end', () => {
    for (const id of ['xcon', 'my-aux', 'a-lpt1.bin', 'xnul.json', 'con1x', 'com1x.y', 'a.b']) assert.equal(validateAdapterId(id), id);
    for (const id of ['con.txt', 'lpt1.tar.gz', 'a.', 'a.b.']) assert.throws(() => validateAdapterId(id), (e: unknown) => isAppError(e, 'INVALID_ADAPTER_ID'), id);
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

describe('AdapterStore init() recovery', () => {
  it('removes unfinished uploads, finishes interrupted deletes, restores or drops old dirs by their exact name, in sorted order, logging each', async () => {
    const { root, store } = await setup();
    const dir = store.dir;
    const at = (n: string): string => path.join(dir, n);
    const outside = path.join(root, 'outside');
    await writeRaw(outside, files('outside'));
    // Created in reverse order so that the directory's own order is not the sorted one.
    await writeRaw(at('.old-dup-2'), files('dup-2'));
    await writeRaw(at('.old-dup-1'), files('dup-1'));
    for (const tmp of ['.tmp-b-2', '.tmp-a-1']) {
      await fs.mkdir(at(path.join(tmp, 'sub', 'deeper')), { recursive: true });
      await fs.writeFile(at(path.join(tmp, 'sub', 'deeper', MODEL_FILE)), 'half');
    }
    // Interrupted deletes: a live dir holding the marker (finished), an invalid name holding it (not an id: left alone).
    await writeRaw(at('v'), files('v'));
    await fs.writeFile(at(path.join('v', DELETING_MARKER)), '');
    await writeRaw(at('UPPER'), files('upper'));
    await fs.writeFile(at(path.join('UPPER', DELETING_MARKER)), '');
    // An old dir holding the marker: dropped silently (it is not an id, so not a "delete to finish").
    await writeRaw(at('.old-z-1'), files('z'));
    await fs.writeFile(at(path.join('.old-z-1', DELETING_MARKER)), '');
    // Restorable: an id with dashes and a multi-digit hex suffix.
    await writeRaw(at('.old-my-id-1f2e'), files('my-id-old'));
    // Not `.old-<valid id>-<hex>`: dropped, never restored.
    for (const n of ['.old-x-1zz', '.old-x-zz', '.old--abc', '.old-UP-1f']) await writeRaw(at(n), files(n));
    // The id exists: a finished replace, the old version is dropped.
    await writeRaw(at('keep'), files('keep-new'));
    await writeRaw(at('.old-keep-9'), files('keep-old'));
    // Not directories: a plain file, and a symlink to a complete adapter outside (only the link goes).
    await fs.writeFile(at('.old-f-1'), 'not a dir');
    await fs.symlink(outside, at('.old-s-1'));
    // An id that only contains ".old-": an adapter like any other.
    await writeRaw(at('x.old-a-1f'), files('x-old-a'));

    const { store: fresh, logs } = await reopen(dir);
    const restore = 'adapter store: restoring the previous version after an interrupted replace';
    assert.deepEqual(logs, [
      { o: { dir, entry: '.tmp-a-1' }, m: 'adapter store: removing an unfinished upload' },
      { o: { dir, entry: '.tmp-b-2' }, m: 'adapter store: removing an unfinished upload' },
      { o: { dir, entry: 'v' }, m: 'adapter store: finishing an interrupted delete' },
      { o: { dir, entry: '.old-dup-1', id: 'dup' }, m: restore },
      { o: { dir, entry: '.old-my-id-1f2e', id: 'my-id' }, m: restore },
    ]);
    assert.deepEqual(await entries(dir), ['UPPER', 'dup', 'keep', 'my-id', 'x.old-a-1f']);
    assert.deepEqual((await fresh.read('dup')).model, files('dup-1').model, 'the first old dir in sorted order is the one restored');
    assert.deepEqual((await fresh.read('my-id')).model, files('my-id-old').model);
    assert.deepEqual((await fresh.read('keep')).model, files('keep-new').model);
    assert.deepEqual((await fresh.read('x.old-a-1f')).model, files('x-old-a').model);
    assert.deepEqual(await entries(path.join(dir, 'UPPER')), [DELETING_MARKER, CONFIG_FILE, MODEL_FILE].sort());
    assert.deepEqual(await entries(outside), [CONFIG_FILE, MODEL_FILE].sort(), 'nothing behind the symlink is touched');
    assert.deepEqual(await fresh.list(), ['dup', 'keep', 'my-id', 'x.old-a-1f']);
  });

  it('logs nothing and changes nothing on a clean store', async () => {
    const { store } = await setup();
    await store.put('a', files('a'), noValidate);
    const { store: fresh, logs } = await reopen(store.dir);
    assert.deepEqual(logs, []);
    assert.deepEqual(await fresh.list(), ['a']);
  });
});

describe('AdapterStore list()', () => {
  it('lists complete adapters sorted; skips hidden entries and plain files silently, bad names, symlinks and incomplete dirs with a warning', async () => {
    const { root, store, logs } = await setup();
    const dir = store.dir;
    const at = (n: string): string => path.join(dir, n);
    for (const id of ['m2', 'b', 'zz', 'a', 'm1', 'c']) await writeRaw(at(id), files(id));
    for (const n of ['.hidden', '.tmp-q-1', '.old-q-1', 'UPPER', 'con', 'a.']) await writeRaw(at(n), files(n));
    await fs.writeFile(at('afile'), 'a plain file');
    await writeRaw(path.join(root, 'outside'), files('outside'));
    await fs.symlink(path.join(root, 'outside'), at('link'));
    await fs.mkdir(at('half'));
    await fs.writeFile(at(path.join('half', CONFIG_FILE)), '{}');
    await fs.mkdir(at('noconf'));
    await fs.writeFile(at(path.join('noconf', MODEL_FILE)), 'weights');
    await fs.mkdir(at(path.join('dirmodel', MODEL_FILE)), { recursive: true });
    await fs.writeFile(at(path.join('dirmodel', CONFIG_FILE)), '{}');
    await fs.mkdir(at('lmodel'));
    await fs.writeFile(at(path.join('lmodel', CONFIG_FILE)), '{}');
    await fs.symlink(path.join(root, 'outside', MODEL_FILE), at(path.join('lmodel', MODEL_FILE)));

    assert.deepEqual(await store.list(), ['a', 'b', 'c', 'm1', 'm2', 'zz']);
    const badName = 'adapter store: skipping an entry whose name is not a valid adapter id';
    const incomplete = 'adapter store: skipping an entry that is not a complete adapter';
    const byEntry = (x: Logged, y: Logged): number => (String(x.o.entry) < String(y.o.entry) ? -1 : 1);
    assert.deepEqual(logs.sort(byEntry), [
      { o: { dir, entry: 'UPPER' }, m: badName },
      { o: { dir, entry: 'a.' }, m: badName },
      { o: { dir, entry: 'con' }, m: badName },
      { o: { dir, entry: 'dirmodel', reason: `${MODEL_FILE} is not a regular file` }, m: incomplete },
      { o: { dir, entry: 'half', reason: `${MODEL_FILE} is missing` }, m: incomplete },
      { o: { dir, entry: 'link' }, m: 'adapter store: skipping a symlink (refused)' },
      { o: { dir, entry: 'lmodel', reason: `${MODEL_FILE} is a symlink (refused)` }, m: incomplete },
      { o: { dir, entry: 'noconf', reason: `${CONFIG_FILE} is missing` }, m: incomplete },
    ]);
  });
});

describe('AdapterStore checks and errors', () => {
  it('refuses a dir that is empty or not a string (INVALID_CONFIG)', () => {
    for (const dir of ['', 42, undefined, null]) {
      assert.throws(
        () => new AdapterStore({ dir: dir as unknown as string }),
        (e: unknown) => isAppError(e, 'INVALID_CONFIG') && e.message === 'AdapterStore: dir must be a non-empty path',
        String(dir),
      );
    }
  });

  it('says "not found", with the reason when there is one', async () => {
    const { store } = await setup();
    const at = (n: string): string => path.join(store.dir, n);
    await rejectsWith(store.read('nope'), 'ADAPTER_NOT_FOUND', /^adapter "nope" not found$/);
    await rejectsWith(store.delete('nope'), 'ADAPTER_NOT_FOUND', /^adapter "nope" not found$/);
    await fs.mkdir(at('half'));
    await fs.writeFile(at(path.join('half', CONFIG_FILE)), '{}');
    await rejectsWith(store.paths('half'), 'ADAPTER_NOT_FOUND', /^adapter "half" not found: adapter_model\.safetensors is missing$/);
    await fs.mkdir(at(path.join('dirmodel', MODEL_FILE)), { recursive: true });
    await fs.writeFile(at(path.join('dirmodel', CONFIG_FILE)), '{}');
    await rejectsWith(store.read('dirmodel'), 'ADAPTER_NOT_FOUND', /^adapter "dirmodel" not found: adapter_model\.safetensors is not a regular file$/);
    assert.equal(await store.has('dirmodel'), false);

    // A plain file where an adapter dir belongs: not found, and never replaced or removed.
    await fs.writeFile(at('afile'), 'a plain file');
    await rejectsWith(store.paths('afile'), 'ADAPTER_NOT_FOUND', /^adapter "afile" not found: its store entry is not a directory$/);
    await rejectsWith(store.delete('afile'), 'ADAPTER_NOT_FOUND', /^adapter "afile" not found: its store entry is not a directory$/);
    await rejectsWith(
      store.put('afile', files('a'), noValidate),
      'CONFLICT',
      /^adapter "afile": its store entry is not a directory; refusing to replace it \(an operator must remove it\)$/,
    );
    assert.equal(await fs.readFile(at('afile'), 'utf8'), 'a plain file');
    assert.deepEqual(await entries(store.dir), ['afile', 'dirmodel', 'half']);
  });

  it('refuses a sidecar that is not a regular file', async () => {
    const { store } = await setup();
    await writeRaw(path.join(store.dir, 'sd'), files('sd'));
    await fs.mkdir(path.join(store.dir, 'sd', META_FILE));
    await rejectsWith(store.read('sd'), 'ADAPTER_NOT_FOUND', /^adapter "sd" not found: one of its files is a symlink or not a regular file \(refused\)$/);
  });

  it('names the expected and found checksum and size; a wrong size alone is ADAPTER_CORRUPT', async () => {
    const { store } = await setup();
    await store.put('sz', files('s'), noValidate);
    const metaPath = path.join(store.dir, 'sz', META_FILE);
    const raw = await fs.readFile(metaPath, 'utf8');
    const meta = (await store.read('sz')).meta;
    assert.ok(meta);
    assert.equal(raw, `${JSON.stringify(meta, null, 2)}\n`, 'the sidecar is pretty JSON ending in a newline');
    const sha = createHash('sha256').update(files('s').model).digest('hex');
    assert.equal(meta.sha256[MODEL_FILE], sha);
    await fs.writeFile(metaPath, JSON.stringify({ ...meta, bytes: { ...meta.bytes, [MODEL_FILE]: 1023 } }));
    await rejectsWith(
      store.read('sz'),
      'ADAPTER_CORRUPT',
      new RegExp(
        `^adapter "sz": adapter_model\\.safetensors does not match the checksum recorded at upload ` +
          `\\(expected sha256 ${sha}, 1023 bytes; found ${sha}, 1024 bytes\\); the file changed on disk: upload the adapter again$`,
      ),
    );
  });

  it('treats a sidecar without every field of the right type as unreadable (ADAPTER_CORRUPT)', async () => {
    const { store } = await setup();
    await store.put('m', files('m'), noValidate);
    const metaPath = path.join(store.dir, 'm', META_FILE);
    const good = JSON.parse(await fs.readFile(metaPath, 'utf8')) as { sha256: Record<string, unknown>; bytes: Record<string, unknown>; storedAt: string };
    const { storedAt: _s, ...noStoredAt } = good;
    const { sha256: _h, ...noSha } = good;
    const { bytes: _b, ...noBytes } = good;
    const variants: [string, unknown][] = [
      ['null', null],
      ['a number', 42],
      ['a string', 'meta'],
      ['an array', []],
      ['no storedAt', noStoredAt],
      ['storedAt a number', { ...good, storedAt: 1 }],
      ['no sha256', noSha],
      ['sha256 null', { ...good, sha256: null }],
      ['sha256 a string', { ...good, sha256: 'abc' }],
      ['no bytes', noBytes],
      ['bytes null', { ...good, bytes: null }],
      ['no model sha256', { ...good, sha256: { [CONFIG_FILE]: good.sha256[CONFIG_FILE] } }],
      ['model sha256 a number', { ...good, sha256: { ...good.sha256, [MODEL_FILE]: 7 } }],
      ['no model bytes', { ...good, bytes: { [CONFIG_FILE]: good.bytes[CONFIG_FILE] } }],
      ['model bytes a string', { ...good, bytes: { ...good.bytes, [MODEL_FILE]: String(good.bytes[MODEL_FILE]) } }],
      ['no config entries', { ...good, sha256: { [MODEL_FILE]: good.sha256[MODEL_FILE] }, bytes: { [MODEL_FILE]: good.bytes[MODEL_FILE] } }],
    ];
    const unreadable = /^adapter "m": its \.adapterhost\.json \(checksums recorded at upload\) is unreadable; upload the adapter again$/;
    for (const [name, v] of variants) {
      await fs.writeFile(metaPath, JSON.stringify(v));
      await rejectsWith(store.read('m'), 'ADAPTER_CORRUPT', unreadable).catch((e: unknown) => assert.fail(`${name}: ${String(e)}`));
    }
    await fs.writeFile(metaPath, '{not json');
    await rejectsWith(store.read('m'), 'ADAPTER_CORRUPT', unreadable);
    await fs.writeFile(metaPath, JSON.stringify(good));
    assert.deepEqual((await store.read('m')).model, files('m').model, 'the same fields, well typed, read fine');
  });

  it('reads the weights into the buffer the caller gives', async () => {
    const { store } = await setup();
    await store.put('mb', files('w', 4096), noValidate);
    const pool = Buffer.alloc(8192, 0);
    let given: Buffer | undefined;
    const got = await store.read('mb', {
      modelBuffer: (n) => {
        given = pool.subarray(16, 16 + n);
        return given;
      },
    });
    assert.ok(given !== undefined);
    assert.equal(got.model, given, 'the very buffer from modelBuffer, not a copy');
    assert.deepEqual(pool.subarray(16, 16 + 4096), files('w', 4096).model);
    assert.ok(got.meta);
    assert.equal(got.bytesOnDisk, await store.sizeOnDisk('mb'));
  });

  it('returns a weights file that shrinks while being read short, so it fails its checksum', async () => {
    const { store } = await setup();
    const f = files('s', 4096);
    await store.put('shr', f, noValidate);
    const modelPath = path.join(store.dir, 'shr', MODEL_FILE);
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    await rejectsWith(
      store.read('shr', {
        modelBuffer: (n) => {
          truncateSync(modelPath, n / 2);
          return Buffer.alloc(n);
        },
      }),
      'ADAPTER_CORRUPT',
      new RegExp(`\\(expected sha256 ${sha(f.model)}, 4096 bytes; found ${sha(f.model.subarray(0, 2048))}, 2048 bytes\\)`),
    );
  });

  it('maps read failures: a dir replaced mid-read is "removed while being read", any other failure INTERNAL with its cause', async () => {
    const { store } = await setup();
    await store.put('r', files('r'), noValidate);
    const dir = path.join(store.dir, 'r');
    await rejectsWith(
      store.read('r', {
        modelBuffer: (n) => {
          rmSync(dir, { recursive: true });
          writeFileSync(dir, 'now a file');
          return Buffer.alloc(n);
        },
      }),
      'ADAPTER_NOT_FOUND',
      /^adapter "r" not found: it was removed while being read$/,
    );

    await fs.rm(dir);
    await store.put('r', files('r'), noValidate);
    const boom = new Error('no memory');
    await assert.rejects(
      store.read('r', {
        modelBuffer: () => {
          throw boom;
        },
      }),
      (e: unknown) => isAppError(e, 'INTERNAL') && e.message === 'adapter "r": reading its files failed (Error: no memory)' && e.cause === boom,
    );
  });

  it('words storage errors: out of space as INSUFFICIENT_STORAGE, anything else INTERNAL "… failed: …", each with its cause', async () => {
    let fail: unknown = undefined;
    const writeFile = async (p: string, data: Buffer): Promise<void> => {
      if (fail !== undefined && path.basename(p) === MODEL_FILE) throw fail;
      await writeFileDurable(p, data);
    };
    const { store } = await setup({ writeFile });
    const putFails = async (err: unknown, check: (e: AppError) => void): Promise<void> => {
      fail = err;
      await assert.rejects(store.put('full', files('b'), noValidate), (e: unknown) => {
        assert.ok(e instanceof AppError, String(e));
        check(e);
        return true;
      });
      fail = undefined;
      assert.deepEqual(await entries(store.dir), []);
    };
    const enospc = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    await putFails(enospc, (e) => {
      assert.equal(e.code, 'INSUFFICIENT_STORAGE');
      assert.equal(e.message, 'storing adapter "full" failed: the adapter store is out of space (ENOSPC); nothing was changed');
      assert.equal(e.cause, enospc);
    });
    const eio = Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
    await putFails(eio, (e) => {
      assert.equal(e.code, 'INTERNAL');
      assert.equal(e.message, 'storing adapter "full" failed: EIO: i/o error');
      assert.equal(e.cause, eio);
    });
    // Whatever is thrown, even null or a non-object carrying a code, becomes INTERNAL.
    await putFails(null, (e) => {
      assert.equal(e.code, 'INTERNAL');
      assert.equal(e.message, 'storing adapter "full" failed: null');
    });
    const notAnObject = Object.assign(() => undefined, { code: 'ENOSPC' });
    await putFails(notAnObject, (e) => assert.equal(e.code, 'INTERNAL'));
  });

  it('keeps an adapter whose delete cannot write its marker (INTERNAL), touching nothing behind a planted symlink', async () => {
    const { root, store, logs } = await setup();
    await store.put('ld', files('ld'), noValidate);
    const target = path.join(root, 'not-created');
    await fs.symlink(target, path.join(store.dir, 'ld', DELETING_MARKER));
    await rejectsWith(store.delete('ld'), 'INTERNAL', /^deleting adapter "ld" failed: ELOOP/);
    assert.deepEqual(await entries(store.dir), ['ld']);
    assert.deepEqual(await entries(path.join(store.dir, 'ld')), [META_FILE, CONFIG_FILE, MODEL_FILE].sort(), 'the planted link is removed');
    assert.deepEqual((await store.read('ld')).model, files('ld').model);
    await assert.rejects(fs.lstat(target), { code: 'ENOENT' });
    assert.deepEqual(logs, []);
  });

  it('keeps an adapter whose delete cannot rename it away (INTERNAL), removing its marker', { skip: notLinux }, async () => {
    const { root } = await setup();
    // A store dir so deep that `<id>/.deleting` fits in PATH_MAX but `.old-<id>-<hex>` does not.
    const dir = await longDir(root, PATH_MAX - 16);
    assert.ok(path.join(dir, 'x', DELETING_MARKER).length < PATH_MAX && path.join(dir, `.old-x-${'0'.repeat(12)}`).length >= PATH_MAX);
    const { store, logs } = await reopen(dir);
    await fs.mkdir(path.join(dir, 'x'));
    await rejectsWith(store.delete('x'), 'INTERNAL', /^deleting adapter "x" failed: ENAMETOOLONG/);
    assert.deepEqual(await entries(dir), ['x']);
    assert.deepEqual(await entries(path.join(dir, 'x')), []);
    assert.deepEqual(logs, []);
  });

  it('only logs an old version it cannot remove after a replace, and init() removes it later', { skip: notLinux }, async () => {
    const { store, logs } = await setup();
    await store.put('x', files('a'), noValidate);
    // A file whose path is too long for rm (ENAMETOOLONG) once the dir is renamed to `.old-x-<hex>`.
    const deepest = await longDir(path.join(store.dir, 'x', 'extra'), PATH_MAX - 96);
    const rel = path.relative(path.join(store.dir, 'x'), deepest);
    const longName = 'l'.repeat(60);
    await fs.mkdir(path.join(deepest, 's'));
    await fs.writeFile(path.join(deepest, 's', 'f'.repeat(40)), 'x');
    await fs.rename(path.join(deepest, 's'), path.join(deepest, longName));
    let old: string | undefined;
    try {
      assert.deepEqual(await store.put('x', files('b'), noValidate), { created: false });
      old = (await entries(store.dir)).find((n) => n.startsWith('.old-x-'));
      assert.ok(old !== undefined, 'the old dir is left');
      assert.equal(logs.length, 1);
      assert.equal(logs[0].m, 'adapter store: could not remove an old adapter dir; init() will retry');
      assert.equal(logs[0].o.dir, path.join(store.dir, old));
      assert.match(String(logs[0].o.err), /ENAMETOOLONG/);
      assert.deepEqual((await store.read('x')).model, files('b').model);
    } finally {
      for (const top of [old, 'x']) {
        if (top !== undefined) await fs.rename(path.join(store.dir, top, rel, longName), path.join(store.dir, top, rel, 's')).catch(() => undefined);
      }
    }
    const { store: fresh, logs: initLogs } = await reopen(store.dir);
    assert.deepEqual(initLogs, []);
    assert.deepEqual(await entries(store.dir), ['x']);
    assert.deepEqual((await fresh.read('x')).model, files('b').model);
  });

  it('deletes an adapter dir holding subdirectories completely, without warnings', async () => {
    const { store, logs } = await setup();
    await store.put('sub', files('s'), noValidate);
    await fs.mkdir(path.join(store.dir, 'sub', 'extra', 'deeper'), { recursive: true });
    await fs.writeFile(path.join(store.dir, 'sub', 'extra', 'deeper', 'notes.txt'), 'x');
    await store.delete('sub');
    assert.deepEqual(await entries(store.dir), []);
    assert.deepEqual(logs, []);
  });

  it('creates adapter dirs 0755 and files 0644 whatever the umask', async () => {
    const { store } = await setup();
    const before = process.umask(0);
    try {
      await store.put('perm', files('p'), noValidate);
    } finally {
      process.umask(before);
    }
    const mode = async (p: string): Promise<number> => (await fs.stat(p)).mode & 0o777;
    assert.equal(await mode(path.join(store.dir, 'perm')), 0o755);
    assert.equal(await mode(path.join(store.dir, 'perm', MODEL_FILE)), 0o644);
  });

  it('runs an operation that arrives while a queued one of the same id runs after it', async () => {
    const { store } = await setup();
    const order: string[] = [];
    let open1!: () => void;
    let open2!: () => void;
    const gate1 = new Promise<void>((r) => (open1 = r));
    const gate2 = new Promise<void>((r) => (open2 = r));
    const until = async (cond: () => boolean): Promise<void> => {
      while (!cond()) await new Promise((r) => setImmediate(r));
    };
    const p1 = store.put('q', files('1'), async () => {
      order.push('1');
      await gate1;
    });
    const p2 = store.put('q', files('2'), async () => {
      order.push('2');
      await gate2;
    });
    await until(() => order.length === 1);
    open1();
    await p1;
    await until(() => order.length === 2);
    // The first put is done, the second still runs: a third must wait for the second.
    const p3 = store.put('q', files('3'), () => {
      order.push('3');
    });
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(order, ['1', '2']);
    open2();
    await Promise.all([p2, p3]);
    assert.deepEqual(order, ['1', '2', '3']);
    assert.deepEqual((await store.read('q')).model, files('3').model);
  });
});
