/**
 * Hostile adapter ids on every route that takes one (GET/PUT/DELETE /v1/adapters/:id, predict
 * adapter_id, embeddings model), and symlinks planted in the store. Each is refused with a
 * 400/404 (never a 500); nothing outside the store is written, the store is unchanged and
 * `lang` still serves.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  assertLangServes, demoFiles, deleteAdapter, multipart, adapterParts, postJson, predict, putAdapter, REPO_ADAPTERS, request, snapshot,
  startRel, tempStore, TOKEN, type RelServer,
} from './helpers/reliability-kit.js';
import { DEMO_ADAPTER_IDS } from './helpers/demo.js';

const LANG = demoFiles('lang');
const REFUSED = new Set(['INVALID_ADAPTER_ID', 'ADAPTER_NOT_FOUND', 'ROUTE_NOT_FOUND', 'MODEL_NOT_FOUND']);

/**
 * Raw path segments after /v1/adapters/, sent byte for byte (no client-side normalisation).
 * Express decodes the segment before the route sees it.
 */
const PATH_IDS: Array<[string, string]> = [
  ['../x (raw)', '../x'],
  ['..%2Fx', '..%2Fx'],
  ['%2e%2e%2fx', '%2e%2e%2fx'],
  ['.. (raw)', '..'],
  ['%2e%2e', '%2e%2e'],
  ['absolute path %2Fetc%2Fpasswd', '%2Fetc%2Fpasswd'],
  ['backslash a%5Cb', 'a%5Cb'],
  ['..%5C..%5Cx', '..%5C..%5Cx'],
  ['NUL a%00b', 'a%00b'],
  ['300 characters', 'a'.repeat(300)],
  ['65 characters (one over the limit)', 'a'.repeat(65)],
  ['uppercase', 'LANG'],
  ['leading dot', '.hidden'],
  ['a store temp name', '.tmp-lang-0123'],
  ['space %20lang', '%20lang'],
  ['newline lang%0A', 'lang%0A'],
  // Valid on Linux, but not as a directory on other file systems (Windows device names, a trailing dot).
  ['Windows device name con', 'con'],
  ['Windows device name with an extension nul.json', 'nul.json'],
  ['Windows device name com1', 'com1'],
  ['trailing dot lang.', 'lang.'],
];

/**
 * Malformed percent-encoding: Express's router throws a URIError with status 400 for these;
 * src/http/errors.ts (fromBodyParser) turns such 4xx errors into 400 BAD_REQUEST (they were once
 * a 500 INTERNAL).
 */
const MALFORMED: Array<[string, string]> = [
  ['malformed escape a%zzb', 'a%zzb'],
  ['truncated UTF-8 %E0%A4%A', '%E0%A4%A'],
];

/** JSON ids (already decoded) for predict's adapter_id and embeddings' model. */
const BODY_IDS: unknown[] = [
  '../x', '..%2Fx', '../../etc/passwd', '/etc/passwd', 'a\\b', 'a\u0000b', 'x'.repeat(300), 'LANG', '.hidden', '..', '.', '',
  ' lang', 'lang/', 'lang\n', 'lang/../lang', 'evil', 'sneaky', 'file:///etc/passwd', 'http://127.0.0.1:1/x',
];

/**
 * "Never read" via access times: with relatime (the usual default), reading a file whose atime
 * is older than its ctime updates the atime. Files outside the store get an atime of 2001; any
 * read by the server moves it. Where the filesystem does not track atime, the check is skipped.
 */
const OLD = new Date('2001-01-01T00:00:00Z');
async function markUnread(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    const f = path.join(dir, name);
    await utimes(f, OLD, (await stat(f)).mtime);
  }
}
async function readsSince(dir: string): Promise<string[]> {
  const read: string[] = [];
  for (const name of await readdir(dir)) if ((await stat(path.join(dir, name))).atimeMs !== OLD.getTime()) read.push(name);
  return read;
}
async function atimeTracked(dir: string): Promise<boolean> {
  const probe = path.join(dir, '..', `${path.basename(dir)}-atime-probe`);
  await writeFile(probe, 'x');
  try {
    await utimes(probe, OLD, (await stat(probe)).mtime);
    await readFile(probe);
    return (await stat(probe)).atimeMs !== OLD.getTime();
  } finally {
    await rm(probe, { force: true });
  }
}

describe('hostile ids and planted symlinks', () => {
  let t: RelServer;
  let store: string;
  let outside: string;
  let outsideSnap: Record<string, string>;
  let storeSnap: Record<string, string>;
  let tracked = false;

  before(async () => {
    // Outside the store: a complete, valid adapter (so following a link would "work") and a canary.
    outside = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-outside-'));
    await copyFile(path.join(REPO_ADAPTERS, 'lang', 'adapter_config.json'), path.join(outside, 'adapter_config.json'));
    await copyFile(path.join(REPO_ADAPTERS, 'lang', 'adapter_model.safetensors'), path.join(outside, 'adapter_model.safetensors'));
    await writeFile(path.join(outside, 'canary.txt'), 'must never change\n');
    store = await tempStore('rel-ids');
    // `evil` is a symlink to that directory; `sneaky` is a real dir whose model file links out.
    await symlink(outside, path.join(store, 'evil'));
    await mkdir(path.join(store, 'sneaky'));
    await copyFile(path.join(REPO_ADAPTERS, 'lang', 'adapter_config.json'), path.join(store, 'sneaky', 'adapter_config.json'));
    await symlink(path.join(outside, 'adapter_model.safetensors'), path.join(store, 'sneaky', 'adapter_model.safetensors'));
    outsideSnap = await snapshot(outside);
    tracked = await atimeTracked(outside);
    await markUnread(outside);
    t = await startRel({ adminToken: TOKEN }, { dir: store });
    storeSnap = await snapshot(store);
  });
  after(async () => {
    await t?.stop();
    await rm(store, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  /** Nothing outside the store was read (atime) or written (contents). */
  const outsideUntouched = async () => {
    if (tracked) assert.deepEqual(await readsSince(outside), [], 'no file outside the store was read');
    assert.deepEqual(await snapshot(outside), outsideSnap, 'nothing outside the store changed');
    await markUnread(outside); // the snapshot itself just read them
  };
  const unchanged = async () => {
    await assertLangServes(t.url);
    await outsideUntouched();
    assert.deepEqual(await snapshot(store), storeSnap, 'the store did not change');
  };

  const refusedOnEveryVerb = async (raw: string, codes: ReadonlySet<string> = REFUSED) => {
    const { body, contentType } = multipart(adapterParts(LANG));
    const auth = { authorization: `Bearer ${TOKEN}` };
    const replies = {
      GET: await request(t.url, { path: `/v1/adapters/${raw}` }),
      PUT: await request(t.url, { method: 'PUT', path: `/v1/adapters/${raw}`, headers: { ...auth, 'content-type': contentType }, body }),
      DELETE: await request(t.url, { method: 'DELETE', path: `/v1/adapters/${raw}`, headers: auth }),
    };
    for (const [verb, r] of Object.entries(replies)) {
      assert.ok(r.status === 400 || r.status === 404, `${verb} /v1/adapters/${raw.slice(0, 40)}: ${r.status} ${r.text.slice(0, 300)}`);
      assert.ok(codes.has(r.body?.error?.code), `${verb}: code ${r.body?.error?.code}`);
      if (r.body.error.code === 'INVALID_ADAPTER_ID') assert.match(r.body.error.message, /must match/);
    }
    await unchanged();
  };

  for (const [name, raw] of PATH_IDS) {
    test(`path id ${name}: GET, PUT, DELETE → 400/404`, () => refusedOnEveryVerb(raw));
  }
  for (const [name, raw] of MALFORMED) {
    test(`path id ${name}: GET, PUT, DELETE → 400/404`, () => refusedOnEveryVerb(raw, new Set([...REFUSED, 'BAD_REQUEST'])));
  }

  test('predict adapter_id and embeddings model: hostile values → 400/404, never the base model', async () => {
    for (const id of BODY_IDS) {
      const p = await predict(t.url, id, 'hello');
      assert.ok(p.status === 400 || p.status === 404, `predict ${JSON.stringify(id)}: ${p.status} ${p.text.slice(0, 200)}`);
      assert.ok(REFUSED.has(p.body.error.code), `predict ${JSON.stringify(id)}: ${p.body.error.code}`);
      const e = await postJson(t.url, '/v1/embeddings', { model: id, input: 'hello' });
      assert.ok(e.status === 400 || e.status === 404, `embeddings ${JSON.stringify(id)}: ${e.status} ${e.text.slice(0, 200)}`);
      assert.ok(REFUSED.has(e.body.error.code), `embeddings ${JSON.stringify(id)}: ${e.body.error.code}`);
    }
    await unchanged();
  });

  test('the planted symlink `evil` (→ a valid adapter outside) is not listed and not servable', async (ctx) => {
    ctx.diagnostic(tracked ? 'reads outside the store are checked by atime' : 'this filesystem does not track atime: reads outside are not checked');
    const list = await request(t.url, { path: '/v1/adapters' });
    const ids = (list.body.data as Array<{ id: string }>).map((a) => a.id);
    assert.deepEqual(ids.sort(), [...DEMO_ADAPTER_IDS].sort());
    const models = await request(t.url, { path: '/v1/models' });
    assert.ok(!(models.body.data as Array<{ id: string }>).some((m) => m.id === 'evil' || m.id === 'sneaky'));
    for (const id of ['evil', 'sneaky']) {
      assert.equal((await request(t.url, { path: `/v1/adapters/${id}` })).status, 404, `GET ${id}`);
      const p = await predict(t.url, id, 'Das ist gut.');
      assert.equal(p.status, 404, `predict ${id}: ${p.text}`);
      assert.equal(p.body.error.code, 'ADAPTER_NOT_FOUND');
      assert.equal((await postJson(t.url, '/v1/embeddings', { model: id, input: 'x' })).status, 404, `embeddings ${id}`);
    }
    await unchanged();
  });

  test('PUT /v1/adapters/evil does not write through the link; DELETE does not delete through it', async () => {
    const put = await putAdapter(t.url, 'evil', demoFiles('spam'));
    assert.ok(put.status >= 400 && put.status < 500, `PUT evil: ${put.status} ${put.text}`);
    assert.equal(put.body.error.code, 'CONFLICT');
    assert.match(put.body.error.message, /symlink/);
    const del = await deleteAdapter(t.url, 'evil');
    assert.equal(del.status, 404, del.text);
    assert.equal(await readlink(path.join(store, 'evil')), outside, 'the link itself is left for the operator');
    await unchanged();
  });

  test('a symlink planted while running: not servable, PUT refused, DELETE 404, target untouched', async () => {
    const link = path.join(store, 'late-evil');
    await symlink(outside, link);
    try {
      assert.equal((await request(t.url, { path: '/v1/adapters/late-evil' })).status, 404);
      assert.equal((await predict(t.url, 'late-evil', 'x')).status, 404);
      const put = await putAdapter(t.url, 'late-evil', demoFiles('spam'));
      assert.ok(put.status >= 400 && put.status < 500, `PUT late-evil: ${put.status} ${put.text}`);
      assert.equal((await deleteAdapter(t.url, 'late-evil')).status, 404);
      assert.equal(await readlink(link), outside);
    } finally {
      await rm(link);
    }
    await unchanged();
  });

  test('PUT over `sneaky` (a dir whose model links out) writes only inside the store', async () => {
    const put = await putAdapter(t.url, 'sneaky', demoFiles('spam'));
    // Replacing the broken entry (200/201) or refusing it (409) are both fine; writing through the link is not.
    assert.ok([200, 201, 409].includes(put.status), `PUT sneaky: ${put.status} ${put.text}`);
    await outsideUntouched();
    if (put.status !== 409) {
      const after = await snapshot(store);
      assert.match(after['sneaky/adapter_model.safetensors'] ?? '', /^file:/, 'the model is now a regular file in the store');
      const p = await predict(t.url, 'sneaky', 'Win a free cruise, click now!');
      assert.equal(p.status, 200, p.text);
      assert.deepEqual((p.body.predictions[0] as Array<{ label: string }>).map((x) => x.label).sort(), ['ham', 'spam']);
      assert.equal((await deleteAdapter(t.url, 'sneaky')).status, 204);
      await outsideUntouched();
    }
    await assertLangServes(t.url);
  });
});
