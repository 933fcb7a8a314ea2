/**
 * Faults: SIGKILL in the middle of uploads, a full disk, files corrupted on disk, racing
 * uploads of one id, a delete while requests on that adapter are in flight. Graceful SIGTERM
 * (readiness drops at once, in-flight work finishes) is covered by test/shutdown.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { GATE_ENV, GATE_MARK, type GateSpec } from './helpers/kill-gate.js';
import {
  assertLangServes, cacheMiB, deleteAdapter, demoFiles, GERMAN, leftovers, demoMemoryBytes, predict, putAdapter, REPO_ADAPTERS, request, rng, sha256, sleep,
  snapshot, spawnServe, startRel, tempStore, TOKEN, variant, waitFor, ROOT, type AdapterFiles, type ChildServer, type DemoId, type RelServer,
} from './helpers/reliability-kit.js';

const labelsOf = (f: AdapterFiles): string[] => {
  const cfg = JSON.parse(f.config.toString('utf8')) as { id2label: Record<string, string> };
  return Object.values(cfg.id2label).sort();
};
const predictedLabels = (r: { body: any }): string[] => (r.body.predictions[0] as Array<{ label: string }>).map((x) => x.label).sort();

interface Version { config: string; model: string; tag: string }
const versionOf = (f: AdapterFiles, tag: string): Version => ({ config: sha256(f.config), model: sha256(f.model), tag });

async function onDisk(dir: string, id: string): Promise<{ config: string; model: string }> {
  return {
    config: sha256(await readFile(path.join(dir, id, 'adapter_config.json'))),
    model: sha256(await readFile(path.join(dir, id, 'adapter_model.safetensors'))),
  };
}

// ---------------------------------------------------------------------------------------

/**
 * Where each round's kill lands. The child holds that step of the store's write for one id
 * (test/helpers/kill-gate.ts) and reports it on stderr; the kill follows the report, so every
 * round interrupts exactly what it names. `none`: every upload is acknowledged first.
 */
type KillPoint =
  | { kind: 'none' }
  | { kind: 'new' | 'replace'; gate: Omit<GateSpec, 'id'> };
const KILL_POINTS: Array<{ name: string; p: KillPoint }> = [
  { name: 'new id: mid-write of the model', p: { kind: 'new', gate: { point: 'write', file: 'adapter_model.safetensors' } } },
  { name: 'new id: mid-write of the config', p: { kind: 'new', gate: { point: 'write', file: 'adapter_config.json' } } },
  { name: 'new id: files complete, before the rename', p: { kind: 'new', gate: { point: 'rename-in' } } },
  { name: 'replace: mid-write of the model', p: { kind: 'replace', gate: { point: 'write', file: 'adapter_model.safetensors' } } },
  { name: 'replace: mid-write of the sidecar', p: { kind: 'replace', gate: { point: 'write', file: '.adapterhost.json' } } },
  { name: 'replace: between its two renames', p: { kind: 'replace', gate: { point: 'rename-in' } } },
  { name: 'replace: new version live, old one not yet removed', p: { kind: 'replace', gate: { point: 'remove-old' } } },
  { name: 'after every upload was acknowledged', p: { kind: 'none' } },
];

interface LogLine { msg?: string; entry?: string; id?: string }
const startLog = (lines: string[]): LogLine[] => lines.flatMap((l) => { try { return [JSON.parse(l) as LogLine]; } catch { return []; } });

test('SIGKILL in the middle of uploads and replaces: only whole, uploaded versions survive', async (t) => {
  const random = rng(0x5eed);
  // Every kill point once, in a seeded order.
  const plan = KILL_POINTS.map((k) => ({ k, r: random() })).sort((a, b) => a.r - b.r).map((x) => x.k);
  const ROUNDS = plan.length;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-rel-kill-'));
  const bases: DemoId[] = ['lang', 'spam', 'topic', 'es-topic'];
  const gatePreload = pathToFileURL(path.join(ROOT, 'dist', 'test', 'helpers', 'kill-gate.js')).href;
  // Every version ever sent for each id, and what must be there after the next restart.
  const sent = new Map<string, Version[]>();
  const mustHave = new Map<string, Set<string>>(); // id → allowed version tags (must be listed)
  const mayHave = new Map<string, Set<string>>(); // id → allowed version tags (may also be absent)
  const mustLack = new Set<string>(); // ids whose only upload was cut before it became visible
  const remember = (id: string, v: Version) => { sent.set(id, [...(sent.get(id) ?? []), v]); };
  /** What the next start-up must log about the store's repair (entry name pattern), if anything. */
  let expectRepair: { msg: string; entry: RegExp } | null = null;
  const interrupted = new Map<string, number>();

  // The replaced id starts as a plain copy of lang (no sidecar, as other tools write it).
  await cp(path.join(REPO_ADAPTERS, 'lang'), path.join(dir, 'shared'), { recursive: true });
  remember('shared', versionOf(demoFiles('lang'), 'initial'));
  mustHave.set('shared', new Set(['initial']));

  const verify = async (c: ChildServer, round: number): Promise<Map<string, string>> => {
    const list = await request(c.url, { path: '/v1/adapters' });
    assert.equal(list.status, 200);
    const listed = new Set((list.body.data as Array<{ id: string }>).map((a) => a.id));
    const found = new Map<string, string>();
    const entries = (await readdir(dir)).sort();
    assert.deepEqual(entries.filter((n) => n.startsWith('.')), [], `round ${round}: no temp or old dirs remain`);
    assert.deepEqual(entries, [...listed].sort(), `round ${round}: every store entry is a listed, complete adapter`);
    for (const id of listed) {
      const disk = await onDisk(dir, id);
      const v = (sent.get(id) ?? []).find((x) => x.model === disk.model);
      assert.ok(v, `round ${round}: ${id}'s model (sha256 ${disk.model.slice(0, 12)}) is one of the versions uploaded`);
      assert.equal(disk.config, v.config, `round ${round}: ${id}'s config is from the same version (${v.tag}) as its model`);
      found.set(id, v.tag);
      const allowed = mustHave.get(id) ?? mayHave.get(id);
      assert.ok(allowed?.has(v.tag), `round ${round}: ${id} holds ${v.tag}, expected one of ${[...(allowed ?? [])].join(', ')}`);
    }
    for (const id of mustHave.keys()) assert.ok(listed.has(id), `round ${round}: acknowledged adapter ${id} survived`);
    for (const id of mustLack) assert.ok(!listed.has(id), `round ${round}: ${id}, cut before it became visible, is absent`);
    if (expectRepair) {
      const want = expectRepair;
      assert.ok(
        startLog(c.stdout()).some((l) => l.msg === want.msg && want.entry.test(l.entry ?? '')),
        `round ${round}: start-up logged "${want.msg}" for ${want.entry}: ${c.stdout().filter((l) => l.includes('adapter store')).join('\n')}`,
      );
    }
    if (round > 0) {
      const prev = round - 1;
      t.diagnostic(`after round ${prev}: ${[...listed].filter((id) => id.startsWith(`k${prev}-`)).length}/3 new ids on disk, shared is ${found.get('shared')}`);
    }
    // What is listed is servable, from the version on disk.
    const pick = [...listed][Math.floor(random() * listed.size)]!;
    const p = await predict(c.url, pick, GERMAN);
    assert.equal(p.status, 200, `predict ${pick}: ${p.text}`);
    return found;
  };

  try {
    for (let round = 0; round <= ROUNDS; round++) {
      const kill = plan[round];
      const target = kill?.p.kind === 'new' ? `k${round}-${Math.floor(random() * 3)}` : 'shared';
      const gate: GateSpec | null = kill && kill.p.kind !== 'none' ? { ...kill.p.gate, id: target } : null;
      // Six uploads at once, on purpose: above the default --max-concurrent-uploads.
      const c = await spawnServe(['--adapters-dir', dir, '--admin-token', TOKEN, '--max-concurrent-uploads', '8'], {
        nodeFlags: ['--import', gatePreload], env: gate ? { [GATE_ENV]: JSON.stringify(gate) } : {},
      });
      try {
        const found = await verify(c, round);
        if (!kill) break;
        const sharedBefore = found.get('shared')!;
        const roundShared = new Set<string>();
        const acks: Promise<void>[] = [];
        const uploads: Array<{ id: string; f: AdapterFiles; tag: string }> = [];
        for (let j = 0; j < 3; j++) {
          const tag = `r${round}-new${j}`;
          uploads.push({ id: `k${round}-${j}`, f: variant(bases[(round + j) % 4]!, { biasShift: 1e-3 * (round * 10 + j + 1), revision: tag }), tag });
        }
        for (let j = 0; j < 3; j++) {
          const tag = `r${round}-shared${j}`;
          uploads.push({ id: 'shared', f: variant(bases[(round + j + 1) % 4]!, { biasShift: -1e-3 * (round * 10 + j + 1), revision: tag }), tag });
          roundShared.add(tag);
        }
        for (const u of uploads) {
          remember(u.id, versionOf(u.f, u.tag));
          if (u.id !== 'shared') mayHave.set(u.id, new Set([u.tag]));
        }
        let sharedAcked = 0;
        for (const u of uploads) {
          const stagger = Math.floor(random() * 150);
          acks.push(sleep(stagger).then(() => putAdapter(c.url, u.id, u.f)).then(
            (r) => {
              if (r.status !== 200 && r.status !== 201) throw new Error(`upload ${u.id} (${u.tag}) → ${r.status} ${r.text}`);
              if (u.id === 'shared') sharedAcked++;
              else mustHave.set(u.id, new Set([u.tag]));
            },
            () => undefined, // cut by the kill
          ));
        }
        if (gate) {
          // The kill lands where the child says it is held.
          await waitFor(() => c.stderr().includes(GATE_MARK), 30_000, `round ${round}: the child reaches ${kill.name}`);
        } else {
          await Promise.all(acks);
        }
        c.proc.kill('SIGKILL');
        await c.exit;
        await Promise.all(acks);
        const held = c.stderr().split('\n').filter((l) => l.startsWith(GATE_MARK)).map((l) => JSON.parse(l.slice(GATE_MARK.length)) as GateSpec & { what: string; path: string });
        if (gate) {
          assert.equal(held.length, 1, `round ${round}: one step held`);
          assert.equal(held[0]!.what, gate.point);
          assert.equal(held[0]!.id, target);
        } else {
          assert.deepEqual(held, [], `round ${round}: nothing held`);
          assert.equal(sharedAcked, 3, `round ${round}: every replace acknowledged before the kill`);
        }
        interrupted.set(kill.name, (interrupted.get(kill.name) ?? 0) + 1);
        // What the next start must find.
        expectRepair = null;
        if (kill.p.kind === 'new') {
          assert.ok(!mustHave.has(target), `round ${round}: the held upload of ${target} was not acknowledged`);
          mayHave.delete(target);
          mustLack.add(target);
          // The replaces of shared ran unheld: acknowledged or cut anywhere.
          mustHave.set('shared', sharedAcked > 0 ? roundShared : new Set([sharedBefore, ...roundShared]));
          expectRepair = { msg: 'adapter store: removing an unfinished upload', entry: new RegExp(`^\\.tmp-${target}-[0-9a-f]+$`) };
        } else if (kill.p.kind === 'replace') {
          assert.equal(sharedAcked, 0, `round ${round}: the held replace holds shared's lock, so no replace was acknowledged`);
          if (kill.p.gate.point === 'remove-old') {
            mustHave.set('shared', roundShared); // the new version was already live
          } else {
            mustHave.set('shared', new Set([sharedBefore])); // the previous version, exactly
            expectRepair = kill.p.gate.point === 'rename-in'
              ? { msg: 'adapter store: restoring the previous version after an interrupted replace', entry: /^\.old-shared-[0-9a-f]+$/ }
              : { msg: 'adapter store: removing an unfinished upload', entry: /^\.tmp-shared-[0-9a-f]+$/ };
          }
        } else {
          mustHave.set('shared', roundShared);
        }
        t.diagnostic(`round ${round}: killed at "${kill.name}" (${target}); acknowledged ${[...mustHave.keys()].filter((k) => k.startsWith(`k${round}-`)).length}/3 new ids, ${sharedAcked}/3 replaces`);
      } finally {
        c.proc.kill('SIGKILL');
        await c.exit;
      }
    }
    // Each kill point was reached once: 3 uploads of a new id and 4 replaces were cut at a known step.
    assert.deepEqual(Object.fromEntries([...interrupted].sort()), Object.fromEntries(KILL_POINTS.map((k) => [k.name, 1] as const).sort()));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------

describe('disk full during an upload', () => {
  let mnt: string | null = null;
  let mounted = false;
  let t: RelServer | null = null;
  let why = '';

  before(async () => {
    if (process.platform !== 'linux' || process.getuid?.() !== 0) { why = 'needs root on Linux to mount a tmpfs'; return; }
    mnt = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-rel-full-'));
    // Room for the spam adapter and a later lang upload (with their sidecars, in whole pages), little more.
    const filesOf = (id: DemoId) => { const f = demoFiles(id); return f.config.length + f.model.length; };
    const kib = Math.ceil((filesOf('spam') + filesOf('lang') + 128 * 1024) / 4096) * 4;
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${kib}k`, 'tmpfs', mnt], { stdio: 'pipe' });
      mounted = true;
    } catch (e) {
      why = `cannot mount tmpfs here: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`;
      return;
    }
    await cp(path.join(REPO_ADAPTERS, 'spam'), path.join(mnt, 'spam'), { recursive: true });
    t = await startRel({ adminToken: TOKEN }, { dir: mnt });
  });
  after(async () => {
    await t?.stop();
    if (mounted && mnt) execFileSync('umount', [mnt]);
    if (mnt) await rm(mnt, { recursive: true, force: true });
  });

  test('an upload bigger than the free space → 507, temp data removed, the existing adapter serves', async (ctx) => {
    if (!t || !mnt) return ctx.skip(why);
    const free0 = await statfs(mnt);
    // A valid adapter padded past the free space with safetensors metadata (allowed, up to 1 MiB of header).
    const big = variant('topic', { revision: 'too-big', metadata: { padding: 'x'.repeat(700_000) } });
    assert.ok(big.model.length > free0.bavail * free0.bsize, `the upload (${big.model.length} bytes) is bigger than the free space (${free0.bavail * free0.bsize})`);
    const r = await putAdapter(t.url, 'big', big);
    assert.ok(r.status === 507 || (r.status >= 500 && /space|ENOSPC/i.test(r.text)), `${r.status} ${r.text}`);
    assert.equal(r.body.error.code, 'INSUFFICIENT_STORAGE');
    assert.match(r.body.error.message, /out of space/);
    assert.deepEqual(await leftovers(mnt), [], 'no .tmp-* left');
    assert.deepEqual((await readdir(mnt)).sort(), ['spam']);
    const free1 = await statfs(mnt);
    assert.equal(free1.bavail, free0.bavail, 'the space taken by the failed upload was given back');
    assert.equal((await request(t.url, { path: '/v1/adapters/big' })).status, 404);
    const p = await predict(t.url, 'spam', 'Win a free cruise now, click here!');
    assert.equal(p.status, 200, p.text);
    assert.deepEqual(predictedLabels(p), ['ham', 'spam']);
    // With the space back, a small upload goes through.
    const small = await putAdapter(t.url, 'lang', demoFiles('lang'));
    assert.equal(small.status, 201, small.text);
    await assertLangServes(t.url);
  });
});

// ---------------------------------------------------------------------------------------

/**
 * The tmpfs test above needs root; this one runs everywhere: the write of the model into the
 * upload's temp dir fails with ENOSPC (or EDQUOT) part-way, injected at the fs call by
 * test/helpers/kill-gate.ts in a real server process, and the answer is 507.
 */
for (const code of ['ENOSPC', 'EDQUOT'] as const) {
  for (const kind of ['new id', 'replace'] as const) {
    test(`injected ${code} mid-write (${kind}) → 507 INSUFFICIENT_STORAGE over HTTP; nothing changed; the next upload goes through`, async () => {
      const dir = await tempStore('rel-enospc');
      const id = kind === 'new id' ? 'fresh' : 'spam';
      const gatePreload = pathToFileURL(path.join(ROOT, 'dist', 'test', 'helpers', 'kill-gate.js')).href;
      const gate: GateSpec = { point: 'write', id, file: 'adapter_model.safetensors', fail: code };
      const c = await spawnServe(['--adapters-dir', dir, '--admin-token', TOKEN], { nodeFlags: ['--import', gatePreload], env: { [GATE_ENV]: JSON.stringify(gate) } });
      try {
        const before = await snapshot(dir);
        const f = variant('lang', { revision: `${code}-${kind}` });
        const r = await putAdapter(c.url, id, f);
        assert.equal(r.status, 507, r.text);
        assert.equal(r.body.error.code, 'INSUFFICIENT_STORAGE');
        assert.match(r.body.error.message, new RegExp(`storing adapter "${id}" failed: the adapter store is out of space \\(${code}\\); nothing was changed`));
        assert.ok(c.stderr().includes(GATE_MARK), 'the failure was injected where intended');
        assert.deepEqual(await snapshot(dir), before, 'the store is byte for byte as before (temp dir removed)');
        if (kind === 'new id') assert.equal((await request(c.url, { path: `/v1/adapters/${id}` })).status, 404);
        else assert.deepEqual(predictedLabels(await predict(c.url, 'spam', 'Win a free cruise now!')), ['ham', 'spam'], 'spam still serves its old version');
        // The gate fires once: the same upload now succeeds.
        const again = await putAdapter(c.url, id, f);
        assert.equal(again.status, kind === 'new id' ? 201 : 200, again.text);
        assert.equal((await onDisk(dir, id)).model, sha256(f.model));
        await assertLangServes(c.url);
      } finally {
        c.proc.kill('SIGKILL');
        await c.exit;
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
}

// ---------------------------------------------------------------------------------------

describe('an adapter corrupted on disk after upload', () => {
  let t: RelServer;
  let dir: string;
  let langBytes: number;
  let overrides: { adminToken: string; cacheMb: number };
  before(async () => {
    // The largest adapter plus half the smallest: `topic` (about as large as `spam`, the largest)
    // fits, but with anything beside it (at least the smallest) it is over, so loading it evicts the rest.
    const mem = await demoMemoryBytes();
    langBytes = mem.lang;
    dir = await tempStore('rel-corrupt');
    overrides = { adminToken: TOKEN, cacheMb: cacheMiB(Math.max(mem.topic, mem.spam) + mem['es-topic'] / 2) };
    t = await startRel(overrides, { dir });
  });
  after(async () => {
    await t?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const flipByte = async (file: string, fromEnd: number) => {
    const b = await readFile(file);
    b[b.length - fromEnd] ^= 0x01;
    await writeFile(file, b);
  };

  test('a flipped bit in the weights: ADAPTER_CORRUPT once it must be reloaded; others unaffected; a re-upload heals it', async () => {
    const f = variant('lang', { revision: 'fragile' });
    assert.equal((await putAdapter(t.url, 'fragile', f)).status, 201);
    assert.equal((await predict(t.url, 'fragile', GERMAN)).status, 200);
    assert.equal((await request(t.url, { path: '/v1/adapters/fragile' })).body.bytes_in_memory, langBytes, 'the running server counts what its loader planned');
    await flipByte(path.join(dir, 'fragile', 'adapter_model.safetensors'), 10);
    // Still cached: the copy in memory was validated when it was loaded.
    assert.equal((await predict(t.url, 'fragile', GERMAN)).status, 200);
    assert.equal((await predict(t.url, 'topic', 'What a lovely fortune.')).status, 200); // evicts fragile
    assert.equal((await request(t.url, { path: '/v1/adapters/fragile' })).body.cached, false, 'fragile was evicted');
    for (let i = 0; i < 2; i++) {
      const r = await predict(t.url, 'fragile', GERMAN);
      assert.equal(r.body?.error?.code, 'ADAPTER_CORRUPT', r.text);
      assert.ok(r.status >= 400 && r.status < 600 && r.status !== 404, `${r.status}`);
      assert.match(r.body.error.message, /adapter_model\.safetensors does not match the checksum/);
    }
    await assertLangServes(t.url);
    assert.equal((await predict(t.url, 'spam', 'hello')).status, 200);
    assert.equal((await putAdapter(t.url, 'fragile', f)).status, 200);
    assert.equal((await predict(t.url, 'fragile', GERMAN)).status, 200, 're-uploading heals it');
  });

  test('after a restart: a changed config or model is ADAPTER_CORRUPT at load, the rest serve', async () => {
    assert.equal((await putAdapter(t.url, 'bent-config', variant('spam', { revision: 'bent' }))).status, 201);
    assert.equal((await putAdapter(t.url, 'bent-model', variant('es-topic', { revision: 'bent' }))).status, 201);
    await t.stop();
    // A still-valid config with one more space; a flipped bit deep in the model's data.
    const cfgPath = path.join(dir, 'bent-config', 'adapter_config.json');
    await writeFile(cfgPath, `${(await readFile(cfgPath, 'utf8'))} `);
    await flipByte(path.join(dir, 'bent-model', 'adapter_model.safetensors'), 100);
    t = await startRel(overrides, { dir });
    for (const [id, file] of [['bent-config', 'adapter_config.json'], ['bent-model', 'adapter_model.safetensors']] as const) {
      const r = await predict(t.url, id, 'hola');
      assert.equal(r.body?.error?.code, 'ADAPTER_CORRUPT', `${id}: ${r.text}`);
      assert.match(r.body.error.message, new RegExp(`${file.replace('.', '\\.')} does not match`));
    }
    await assertLangServes(t.url);
    for (const id of ['spam', 'topic', 'es-topic', 'fragile']) assert.equal((await predict(t.url, id, 'hello there')).status, 200, id);
  });
});

// ---------------------------------------------------------------------------------------

/**
 * src/adapter/registry.ts upload(): `store.put()` releases the id's lock, then `loader.inspect()`
 * re-reads the files from disk and `infos.set()` stores the result. Two replaces of one id can
 * finish their inspects out of order: the registry keeps the older upload's info (labels,
 * sha256, rank) while the disk, and so the weights served, hold the newer one.
 */

describe('racing uploads and deletes', () => {
  let t: RelServer;
  before(async () => { t = await startRel({ adminToken: TOKEN, maxWaitMs: 300, maxBatch: 64, maxConcurrentUploads: 64 }); });
  after(async () => { await t?.stop(); });

  test('two concurrent uploads of one id: one wins whole, never a mix', async () => {
    for (let i = 0; i < 6; i++) {
      const a = variant('lang', { biasShift: 1e-3 * (i + 1), revision: `a${i}` });
      const b = variant(i % 2 ? 'spam' : 'topic', { biasShift: -1e-3 * (i + 1), revision: `b${i}` });
      const id = `contested-${i % 2}`;
      const [ra, rb] = await Promise.all([putAdapter(t.url, id, a), putAdapter(t.url, id, b)]);
      for (const r of [ra, rb]) assert.ok([200, 201, 409].includes(r.status), `${r.status} ${r.text}`);
      assert.ok(ra.status !== 409 || rb.status !== 409, 'at least one upload went through');
      const disk = await onDisk(t.dir, id);
      const winner = [a, b].find((f) => sha256(f.model) === disk.model);
      assert.ok(winner, 'the model on disk is one of the two uploads');
      assert.equal(disk.config, sha256(winner.config), 'the config on disk is from the same upload as the model');
      const info = await request(t.url, { path: `/v1/adapters/${id}` });
      assert.equal(info.body.sha256, disk.model, 'the registry describes the version on disk');
      assert.deepEqual([...info.body.labels].sort(), labelsOf(winner));
      const p = await predict(t.url, id, GERMAN);
      assert.equal(p.status, 200, p.text);
      assert.deepEqual(predictedLabels(p), labelsOf(winner), 'predictions come from the winning version');
      // Each acknowledged upload describes its own version.
      for (const [r, f] of [[ra, a], [rb, b]] as const) {
        if (r.status === 200 || r.status === 201) assert.equal(r.body.adapter.sha256, sha256(f.model), `${id}: a response describes its own upload`);
      }
    }
    await assertLangServes(t.url);
  });

  test('racing replace with a slow post-store inspect: the registry still describes the version on disk', async () => {
    // Fault injection: the first inspect of this id (upload A's, after its files are stored)
    // is held, as a slow read or a long pause would hold it, until B is answered or 2 s pass.
    const loader = t.s.services.loader;
    const original = loader.inspect;
    let aRead = false;
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    loader.inspect = async function (this: typeof loader, id: string) {
      const info = await original.call(this, id);
      if (id === 'slow-inspect' && !aRead) { aRead = true; await gate; }
      return info;
    };
    try {
      const a = variant('lang', { revision: 'slow-a' });
      const b = variant('spam', { revision: 'slow-b' });
      const pa = putAdapter(t.url, 'slow-inspect', a);
      const stored = async () => (await onDisk(t.dir, 'slow-inspect').catch(() => null))?.model === sha256(a.model);
      await waitFor(async () => aRead || (await stored()), 10_000, 'upload A stored');
      // B waits for A: uploads and deletes of one id are serialized (AdapterRegistry.serial in
      // src/adapter/registry.ts), so B cannot be answered while A's inspect is held; the gate
      // opens after 2 s (or at once, should B ever be answered first).
      const pb = putAdapter(t.url, 'slow-inspect', b);
      await Promise.race([pb, sleep(2_000)]);
      release();
      const [ra, rb] = await Promise.all([pa, pb]);
      assert.equal(ra.status, 201, ra.text);
      assert.equal(rb.status, 200, rb.text);
      const disk = await onDisk(t.dir, 'slow-inspect');
      assert.equal(disk.model, sha256(b.model), 'B, answered last, is on disk');
      const info = await request(t.url, { path: '/v1/adapters/slow-inspect' });
      assert.equal(info.body.sha256, disk.model, 'GET /v1/adapters/{id} describes the version on disk');
      assert.deepEqual([...info.body.labels].sort(), labelsOf(b));
      const p = await predict(t.url, 'slow-inspect', GERMAN);
      assert.deepEqual(predictedLabels(p), labelsOf(b));
    } finally {
      release();
      loader.inspect = original;
      await deleteAdapter(t.url, 'slow-inspect');
    }
  });

  test('DELETE while 20 predicts are in flight: all of them 200, later ones 404', async () => {
    const f = variant('lang', { revision: 'doomed' });
    assert.equal((await putAdapter(t.url, 'doomed', f)).status, 201);
    const single = await predict(t.url, 'doomed', GERMAN);
    assert.equal(single.status, 200);
    const batcher = t.s.services.batcher;
    const inflight = Array.from({ length: 20 }, () => predict(t.url, 'doomed', GERMAN));
    // The batcher holds them (it waits up to 300 ms for company): they are admitted and hold the adapter.
    await waitFor(() => batcher.queuedRows >= 20, 5_000, '20 rows queued');
    const del = await deleteAdapter(t.url, 'doomed');
    assert.equal(del.status, 204, del.text);
    const late = await predict(t.url, 'doomed', GERMAN);
    assert.equal(late.status, 404, late.text);
    assert.equal(late.body.error.code, 'ADAPTER_NOT_FOUND');
    const results = await Promise.all(inflight);
    assert.deepEqual(results.map((r) => r.status), Array(20).fill(200));
    for (const r of results) {
      const got = r.body.predictions[0] as Array<{ label: string; score: number }>;
      const want = new Map((single.body.predictions[0] as Array<{ label: string; score: number }>).map((x) => [x.label, x.score]));
      assert.equal(got.length, want.size);
      for (const x of got) assert.ok(Math.abs(x.score - want.get(x.label)!) < 1e-5, `in-flight requests used the adapter they were admitted with: ${x.label}`);
    }
    assert.equal((await predict(t.url, 'doomed', GERMAN)).status, 404);
    assert.equal((await request(t.url, { path: '/v1/adapters/doomed' })).status, 404);
    assert.deepEqual((await readdir(t.dir)).filter((n) => n.includes('doomed')), [], 'gone from disk');
    await assertLangServes(t.url);
  });
});

// ---------------------------------------------------------------------------------------

/**
 * src/adapter/cache.ts once loaded through lru-cache's fetch(), where the pending load was an
 * LRU entry: evicted (other loads finishing under cache pressure) or deleted (invalidate() on
 * DELETE/replace) before it resolved, it rejected every waiter with a plain
 * Error('evicted' | 'deleted'), a 500 INTERNAL. The cache now keeps loads in progress outside
 * the LRU: a load always completes for its waiters, and invalidate() only keeps a stale result
 * out of the cache. These tests keep it that way: never a 500.
 */

describe('cache misses racing evictions and deletes', () => {
  let t: RelServer;
  const ids = ['cold-0', 'cold-1', 'cold-2', 'cold-3', 'cold-4', 'cold-5'];
  before(async () => {
    // Holds one or two of these adapters at a time (the largest and half of the smallest).
    const mem = await demoMemoryBytes();
    t = await startRel({ adminToken: TOKEN, cacheMb: cacheMiB(Math.max(mem.spam, mem.topic) + mem['es-topic'] / 2) });
    for (let i = 0; i < ids.length; i++) {
      const r = await putAdapter(t.url, ids[i]!, variant((['lang', 'spam', 'es-topic'] as const)[i % 3], { biasShift: 0.01 * (i + 1), revision: ids[i]! }));
      assert.equal(r.status, 201, r.text);
    }
  });
  after(async () => { await t?.stop(); });

  test('concurrent misses on more adapters than the cache holds: all 200', async () => {
    for (let round = 0; round < 6; round++) {
      const rs = await Promise.all(ids.map((id) => predict(t.url, id, GERMAN)));
      assert.deepEqual(rs.map((r) => r.status), ids.map(() => 200), `round ${round}: ${rs.filter((r) => r.status !== 200).map((r) => r.text).join(' ')}`);
    }
  });

  test('DELETE while the adapter is still loading: waiters get 200 or 404, never 500', async () => {
    for (let round = 0; round < 4; round++) {
      const id = `loading-${round}`;
      assert.equal((await putAdapter(t.url, id, variant('topic', { revision: id }))).status, 201); // uploaded, not yet loaded
      const waiting = Promise.all(Array.from({ length: 5 }, () => predict(t.url, id, GERMAN)));
      await sleep(round);
      assert.equal((await deleteAdapter(t.url, id)).status, 204);
      for (const r of await waiting) assert.ok(r.status === 200 || r.status === 404, `round ${round}: ${r.status} ${r.text}`);
      assert.equal((await predict(t.url, id, GERMAN)).status, 404);
    }
    await assertLangServes(t.url);
  });
});
