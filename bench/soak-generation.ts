/**
 * Soak: the real server (a child process: `dist/src/cli.js serve` with the demo encoder and the demo
 * decoder, temp copies of both adapter stores) under mixed load for a long time: streamed and plain
 * generation on every decoder adapter and the base, with random cancellations (before the answer or
 * after k chunks), classification on the demo adapters, and adapter uploads and deletes. Every 10 s
 * it samples the server's RSS and open files (/proc/<pid>/status, /proc/<pid>/fd) and the
 * generation gauges; at the end it prints the figures after warm-up (the first fifth of the run)
 * and fails on any 5xx or anything left running, reserved or leased.
 *
 * Not in CI or `npm test`. Run it niced on a shared machine:
 *   npx tsc -p tsconfig.json && nice -n 10 node dist/bench/soak-generation.js --minutes 30 [--clients 6] [--seed N] [--out soak.json]
 * `--mix gen` (generation only) or `--mix classify` (classification and uploads only) narrow the
 * load; `--env KEY=VALUE` (repeatable) sets the server's environment (e.g. MALLOC_ARENA_MAX=2),
 * to tell where memory goes.
 */
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from './synthetic-bert.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, path.basename(path.resolve(HERE, '../..')) === 'dist' ? '../../..' : '../..');
const TOKEN = 'soak-admin-token-0123456789abcdef';

const { values } = parseArgs({ options: {
  minutes: { type: 'string', default: '30' }, clients: { type: 'string', default: '6' }, seed: { type: 'string' }, out: { type: 'string' },
  mix: { type: 'string', default: 'all' }, env: { type: 'string', multiple: true, default: [] },
} });
if (!['all', 'gen', 'classify'].includes(values.mix!)) throw new Error('--mix must be all, gen or classify');
const serverEnv: Record<string, string> = { PATH: process.env.PATH ?? '' };
for (const kv of values.env ?? []) {
  const i = kv.indexOf('=');
  if (i <= 0) throw new Error(`--env takes KEY=VALUE, got ${kv}`);
  serverEnv[kv.slice(0, i)] = kv.slice(i + 1);
}
const minutes = Number(values.minutes);
const clients = Number(values.clients);
const seed = values.seed ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);

const rand = mulberry32(seed);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Sample {
  t: number; rssMiB: number; fds: number; running: number; waiting: number; kvReserved: number;
  /** The server's V8 heap in use, its external memory (Buffers, ArrayBuffers) and adapter-cache bytes, MiB. */
  heapMiB: number; externalMiB: number; cacheMiB: number;
}

async function procStats(pid: number): Promise<{ rssMiB: number; fds: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  return { rssMiB: kb / 1024, fds };
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : NaN;
}

async function main(): Promise<void> {
  console.log(`soak: ${minutes} min, ${clients} clients, mix ${values.mix}, seed ${seed}, server env ${JSON.stringify(serverEnv)}`);
  const enc = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-soak-enc-'));
  const dec = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-soak-dec-'));
  await cp(path.join(ROOT, 'adapters'), enc, { recursive: true });
  await cp(path.join(ROOT, 'adapters-llm'), dec, { recursive: true });
  const encIds = (await readdir(enc)).filter((n) => !n.startsWith('.'));
  const decIds = (await readdir(dec)).filter((n) => !n.startsWith('.'));
  const manifest = JSON.parse(await readFile(path.join(ROOT, 'models/demo-llm/model.json'), 'utf8')) as { baseModel: string };
  const genModels = [manifest.baseModel, ...decIds];

  const proc = spawn(process.execPath, [path.join(ROOT, 'dist/src/cli.js'), 'serve', '--port', '0', '--threads', '1',
    '--model-dir', path.join(ROOT, 'models/demo'), '--adapters-dir', enc, '--model-dir', path.join(ROOT, 'models/demo-llm'), '--adapters-dir', dec,
    '--admin-token', TOKEN, '--max-waiting-seqs', '64', '--log-level', 'info'], { cwd: ROOT, env: serverEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); if (stderr.length > 100_000) stderr = stderr.slice(-50_000); });
  const lines = createInterface({ input: proc.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    let found: string | null = null;
    lines.on('line', (line) => {
      let o: { url?: string; msg?: string };
      try { o = JSON.parse(line) as typeof o; } catch { return; }
      if (o.url && o.msg?.startsWith('listening')) found = o.url;
      if (o.msg === 'ready' && found) resolve(found);
    });
    proc.once('exit', (code) => reject(new Error(`server exited (${code}): ${stderr}`)));
  });
  console.log(`server ${proc.pid} at ${url}`);

  const statuses = new Map<string, number>();
  const count = (what: string, status: number | string) => { const k = `${what} ${status}`; statuses.set(k, (statuses.get(k) ?? 0) + 1); };
  let fivexx = 0;
  const note = (what: string, status: number) => { count(what, status); if (status >= 500) { fivexx++; console.log(`5xx on ${what}: ${status}`); } };
  let cancels = 0;
  let uploads = 0;
  const end = Date.now() + minutes * 60_000;

  const json = (route: string, body: unknown, signal?: AbortSignal) => fetch(`${url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...(signal ? { signal } : {}) });

  async function generate(): Promise<void> {
    const model = pick(genModels);
    const chat = rand() < 0.5;
    const stream = rand() < 0.8;
    const body = {
      model, max_tokens: 8 + Math.floor(rand() * 56), temperature: pick([0, 0.7, 1]), seed: Math.floor(rand() * 1e6), stream,
      ...(chat ? { messages: [{ role: 'user', content: pick(['Summarize: the meeting moved to Tuesday.', 'Translate: good morning', 'Riassumi: il treno è in ritardo.']) }] } : { prompt: pick(['Once upon a time', 'The server', 'Debian package']) }),
    };
    const ac = new AbortController();
    const cancel = rand() < 0.3 ? (rand() < 0.3 ? 0 : 1 + Math.floor(rand() * 20)) : -1;
    try {
      const res = await json(chat ? '/v1/chat/completions' : '/v1/completions', body, ac.signal);
      if (cancel === 0) { ac.abort(); cancels++; note('gen', res.status); return; }
      note(stream ? 'gen-stream' : 'gen', res.status);
      if (!stream || res.status !== 200) { await res.text(); return; }
      const reader = res.body!.getReader();
      let chunks = 0;
      let raw = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        raw += new TextDecoder().decode(value);
        if (cancel > 0 && ++chunks >= cancel) { ac.abort(); cancels++; return; }
      }
      if (!raw.trimEnd().endsWith('data: [DONE]')) count('stream-without-done', 0);
      if (raw.includes('"error"')) count('stream-error-chunk', 0);
    } catch (e) {
      if (!ac.signal.aborted) count('gen-fetch-error', String((e as Error).message).slice(0, 60));
    }
  }

  async function classify(): Promise<void> {
    const res = await json('/v1/predict', { adapter_id: pick(encIds), inputs: [pick(['Win a free prize now', 'Das ist ein schöner Tag', 'The meeting is at noon']), 'short text'] });
    await res.text();
    note('predict', res.status);
  }

  async function uploadAndDelete(): Promise<void> {
    const src = pick(encIds.filter((i) => !i.startsWith('soak-')));
    const id = `soak-${Math.floor(rand() * 4)}`;
    const form = new FormData();
    form.append('adapter_config', new Blob([await readFile(path.join(ROOT, 'adapters', src, 'adapter_config.json'))]), 'adapter_config.json');
    form.append('adapter_model', new Blob([await readFile(path.join(ROOT, 'adapters', src, 'adapter_model.safetensors'))]), 'adapter_model.safetensors');
    const put = await fetch(`${url}/v1/adapters/${id}`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}` }, body: form });
    await put.text();
    note('upload', put.status);
    uploads++;
    const p = await json('/v1/predict', { adapter_id: id, inputs: 'after upload' });
    await p.text();
    note('predict-uploaded', p.status);
    if (rand() < 0.5) {
      const del = await fetch(`${url}/v1/adapters/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
      await del.text();
      note('delete', del.status);
    }
  }

  async function client(): Promise<void> {
    while (Date.now() < end) {
      const x = values.mix === 'gen' ? 0 : values.mix === 'classify' ? 0.6 + rand() * 0.4 : rand();
      try {
        if (x < 0.6) await generate();
        else if (x < 0.95) await classify();
        else await uploadAndDelete();
      } catch (e) {
        count('client-error', String((e as Error).message).slice(0, 60));
      }
    }
  }

  const samples: Sample[] = [];
  const t0 = Date.now();
  const sampler = (async () => {
    while (Date.now() < end) {
      const p = await procStats(proc.pid!);
      const m = await (await fetch(`${url}/metrics`)).text();
      const mib = (name: string) => metric(m, name) / 2 ** 20;
      const s: Sample = {
        t: (Date.now() - t0) / 1000, ...p, running: metric(m, 'adapterhost_num_requests_running'), waiting: metric(m, 'adapterhost_num_requests_waiting'), kvReserved: metric(m, 'adapterhost_kv_cache_reserved_bytes'),
        heapMiB: mib('nodejs_heap_size_used_bytes'), externalMiB: mib('nodejs_external_memory_bytes'), cacheMiB: mib('adapterhost_adapter_cache_bytes'),
      };
      samples.push(s);
      if (samples.length % 6 === 1) console.log(`t=${s.t.toFixed(0)}s rss=${s.rssMiB.toFixed(1)}MiB heap=${s.heapMiB.toFixed(1)}MiB external=${s.externalMiB.toFixed(1)}MiB cache=${s.cacheMiB.toFixed(1)}MiB fds=${s.fds} running=${s.running} waiting=${s.waiting}`);
      await sleep(10_000);
    }
  })();
  await Promise.all([sampler, ...Array.from({ length: clients }, () => client())]);

  // Drained: nothing may be left running, reserved or leased.
  await sleep(2000);
  const m = await (await fetch(`${url}/metrics`)).text();
  const left = { running: metric(m, 'adapterhost_num_requests_running'), waiting: metric(m, 'adapterhost_num_requests_waiting'), kvBytes: metric(m, 'adapterhost_kv_cache_bytes'), kvReserved: metric(m, 'adapterhost_kv_cache_reserved_bytes') };
  const final = await procStats(proc.pid!);
  proc.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => proc.once('exit', r));
  await rm(enc, { recursive: true, force: true });
  await rm(dec, { recursive: true, force: true });

  const warm = samples.filter((s) => s.t >= (minutes * 60) / 5);
  const range = (f: (s: Sample) => number) => ({ min: Math.min(...warm.map(f)), max: Math.max(...warm.map(f)) });
  const half = Math.floor(warm.length / 2);
  const mean = (xs: Sample[], f: (s: Sample) => number) => xs.reduce((a, s) => a + f(s), 0) / Math.max(1, xs.length);
  const summary = {
    seed, minutes, clients, mix: values.mix, env: serverEnv, samples: samples.length, warmupSeconds: (minutes * 60) / 5,
    rssMiBAfterWarmup: range((s) => s.rssMiB), rssMiBFirstHalfMean: mean(warm.slice(0, half), (s) => s.rssMiB), rssMiBSecondHalfMean: mean(warm.slice(half), (s) => s.rssMiB),
    heapMiBAfterWarmup: range((s) => s.heapMiB), heapMiBFirstHalfMean: mean(warm.slice(0, half), (s) => s.heapMiB), heapMiBSecondHalfMean: mean(warm.slice(half), (s) => s.heapMiB),
    externalMiBAfterWarmup: range((s) => s.externalMiB), cacheMiBAfterWarmup: range((s) => s.cacheMiB),
    fdsAfterWarmup: range((s) => s.fds), fdsFirstHalfMean: mean(warm.slice(0, half), (s) => s.fds), fdsSecondHalfMean: mean(warm.slice(half), (s) => s.fds), finalRssMiB: final.rssMiB, finalFds: final.fds,
    requests: Object.fromEntries([...statuses.entries()].sort()), cancels, uploads, fivexx, leftAtEnd: left, exitCode: code,
  };
  console.log(JSON.stringify(summary, null, 2));
  if (values.out) await writeFile(values.out, `${JSON.stringify({ summary, samples }, null, 2)}\n`);
  const clean = fivexx === 0 && left.running === 0 && left.waiting === 0 && left.kvBytes === 0 && left.kvReserved === 0 && code === 0;
  if (!clean) { console.error('soak: FAILED (5xx, or something left running/reserved, or unclean exit)'); process.exitCode = 1; }
}

main().catch((e: unknown) => { console.error(e); process.exitCode = 1; });
