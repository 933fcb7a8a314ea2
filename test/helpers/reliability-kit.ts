/**
 * Shared pieces for the reliability tests (test/reliability-*.test.ts): the real app on a temp
 * copy of adapters/, raw HTTP (node:http, so early responses and odd paths reach us as sent),
 * multipart bodies built byte by byte, safetensors crafting, and directory snapshots.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { AdapterLoader } from '../../src/adapter/loader.js';
import type { AdapterStore } from '../../src/adapter/store.js';
import type { Config } from '../../src/config.js';
import { loadManifest } from '../../src/model/manifest.js';
import { readSafetensors, writeSafetensors, type SafetensorsDType } from '../../src/adapter/safetensors.js';
import type { StartOptions } from '../../src/serve.js';
import { mulberry32 } from '../../bench/synthetic-bert.js';
import { ADAPTERS_DIR as REPO_ADAPTERS, copyAdapters, hasMetricFamily, MODEL_DIR, ROOT, startTestServer, testConfig, type TestServer } from './http-harness.js';

export { MODEL_DIR, REPO_ADAPTERS, ROOT };
export const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');
export const DEMO_IDS = ['spam', 'lang', 'topic', 'es-topic'] as const;
export type DemoId = (typeof DEMO_IDS)[number];
export const TOKEN = 'reliability-admin-token-0123456789';
export const GERMAN = 'Das ist ein schöner Tag und wir gehen heute in den Park.';

type Overrides = Partial<Record<keyof Config, string | number | boolean>>;

export const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

/** A seeded PRNG (mulberry32): same seed, same run. */
export const rng = mulberry32;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not reached within ${ms} ms`);
    await sleep(5);
  }
}

// ---------------------------------------------------------------------------------------
// Servers

export const relConfig: (adaptersDir: string, overrides?: Overrides) => Config = testConfig;

/** A temp dir holding a copy of the committed adapters (the repository's adapters/ is never touched). */
export const tempStore = (prefix = 'rel'): Promise<string> => copyAdapters(prefix);

export type RelServer = TestServer;

/** The real app, in process, on port 0, over `dir` (default: a fresh copy of adapters/). */
export function startRel(overrides: Overrides = {}, opts: { dir?: string; start?: StartOptions } = {}): Promise<RelServer> {
  return startTestServer(overrides, { ...(opts.start ?? {}), ...(opts.dir === undefined ? {} : { dir: opts.dir }) });
}

export interface ChildServer {
  proc: ChildProcess;
  url: string;
  pid: number;
  exit: Promise<number | null>;
  /** Everything the child wrote to stderr so far. */
  stderr(): string;
  /** Every line the child wrote to stdout so far (its JSON log). */
  stdout(): string[];
}

/** `node [nodeFlags] dist/src/cli.js serve --port 0 ...`; resolves once its log says ready (url from the "listening" line). */
export async function spawnServe(args: string[], opts: { nodeFlags?: string[]; readyTimeoutMs?: number; env?: Record<string, string> } = {}): Promise<ChildServer> {
  const readyTimeoutMs = opts.readyTimeoutMs ?? 20_000;
  const proc = spawn(process.execPath, [...(opts.nodeFlags ?? []), CLI, 'serve', '--port', '0', '--model-dir', MODEL_DIR, '--threads', '1', '--log-level', 'info', ...args], {
    cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...(opts.env ?? {}) }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  let err = '';
  proc.stderr!.on('data', (c: Buffer) => { err += c.toString(); });
  const lines = createInterface({ input: proc.stdout! });
  const out: string[] = [];
  lines.on('line', (line) => { out.push(line); });
  const url = await new Promise<string>((resolve, reject) => {
    let found: string | null = null;
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`server not ready in ${readyTimeoutMs} ms: ${err}`)); }, readyTimeoutMs);
    lines.on('line', (line) => {
      let o: { url?: string; msg?: string };
      try { o = JSON.parse(line) as typeof o; } catch { return; }
      if (o.url && o.msg?.startsWith('listening')) found = o.url;
      if (o.msg === 'ready' && found) { clearTimeout(timer); resolve(found); }
    });
    void exit.then((code) => { clearTimeout(timer); reject(new Error(`server exited (${code}) before it was ready: ${err}`)); });
  });
  return { proc, url, pid: proc.pid!, exit, stderr: () => err, stdout: () => out };
}

// ---------------------------------------------------------------------------------------
// HTTP

export interface Reply { status: number; body: any; text: string; headers: http.IncomingHttpHeaders }

/**
 * One request through node:http with a fresh connection. The path is sent exactly as given
 * (no normalisation of `..`), and a response sent before the body was read still arrives.
 */
export function request(
  url: string,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: Buffer | string; timeoutMs?: number } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body);
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (body !== undefined && headers['content-length'] === undefined) headers['content-length'] = String(body.length);
    const req = http.request({ host: u.hostname, port: u.port, path: opts.path ?? `${u.pathname}${u.search}`, method: opts.method ?? 'GET', headers, agent: false });
    let answered = false;
    const timer = setTimeout(() => { req.destroy(new Error(`no answer within ${opts.timeoutMs ?? 30_000} ms`)); }, opts.timeoutMs ?? 30_000);
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try { parsed = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, body: parsed, text, headers: res.headers });
      });
      res.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
    req.on('error', (e) => { if (!answered) { clearTimeout(timer); reject(e); } });
    req.end(body);
  });
}

export function postJson(url: string, route: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return request(url, { method: 'POST', path: route, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

export function predict(url: string, adapterId: unknown, inputs: unknown): Promise<Reply> {
  return postJson(url, '/v1/predict', { adapter_id: adapterId, inputs });
}

/** One multipart part: a file part when `filename` is given, else a plain field. */
export interface Part { name: string; filename?: string; data: Buffer | string; contentType?: string }

export function multipart(parts: Part[], boundary = `----reliability${Math.random().toString(16).slice(2)}`): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disp = p.filename === undefined ? `form-data; name="${p.name}"` : `form-data; name="${p.name}"; filename="${p.filename}"`;
    const type = p.filename === undefined && p.contentType === undefined ? '' : `Content-Type: ${p.contentType ?? 'application/octet-stream'}\r\n`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disp}\r\n${type}\r\n`));
    chunks.push(Buffer.isBuffer(p.data) ? p.data : Buffer.from(p.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

export interface AdapterFiles { config: Buffer; model: Buffer }

export function adapterParts(f: AdapterFiles): Part[] {
  return [
    { name: 'adapter_config', filename: 'adapter_config.json', data: f.config },
    { name: 'adapter_model', filename: 'adapter_model.safetensors', data: f.model },
  ];
}

export function putParts(url: string, id: string, parts: Part[], token: string | null = TOKEN): Promise<Reply> {
  const { body, contentType } = multipart(parts);
  const headers: Record<string, string> = { 'content-type': contentType };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return request(url, { method: 'PUT', path: `/v1/adapters/${id}`, headers, body });
}

export function putAdapter(url: string, id: string, f: AdapterFiles, token: string | null = TOKEN): Promise<Reply> {
  return putParts(url, id, adapterParts(f), token);
}

export function deleteAdapter(url: string, id: string, token: string | null = TOKEN): Promise<Reply> {
  return request(url, { method: 'DELETE', path: `/v1/adapters/${id}`, headers: token === null ? {} : { authorization: `Bearer ${token}` } });
}

/** The server still serves: `lang` on German text is "de". Throws with the reply otherwise. */
export async function assertLangServes(url: string): Promise<void> {
  const r = await predict(url, 'lang', GERMAN);
  if (r.status !== 200 || r.body?.predictions?.[0]?.[0]?.label !== 'de') {
    throw new Error(`lang no longer serves: ${r.status} ${r.text.slice(0, 300)}`);
  }
}

/**
 * Sum of a metric's samples (whose label text matches `labels`, a substring test per pair). No
 * matching sample throws (a missing series must not read as 0) unless `absentIsZero`, and the
 * family must be declared either way.
 */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}, opts: { absentIsZero?: boolean } = {}): number {
  let sum = 0;
  let matched = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const lab = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => lab.includes(`${k}="${v}"`))) {
      sum += Number(m[3]);
      matched++;
    }
  }
  if (!hasMetricFamily(text, name)) throw new Error(`metric ${name} is not in the scrape at all`);
  if (matched === 0 && !opts.absentIsZero) throw new Error(`no sample of ${name} matches ${JSON.stringify(labels)}`);
  return sum;
}

export async function scrape(url: string): Promise<string> {
  return (await request(url, { path: '/metrics' })).text;
}

// ---------------------------------------------------------------------------------------
// Adapters and safetensors

export function demoFiles(id: DemoId): AdapterFiles {
  return {
    config: readFileSync(path.join(REPO_ADAPTERS, id, 'adapter_config.json')),
    model: readFileSync(path.join(REPO_ADAPTERS, id, 'adapter_model.safetensors')),
  };
}

/**
 * What each demo adapter takes in the adapter cache, as the server's own loader counts it
 * (AdapterLoader.check of the committed files against models/demo). Tests size `cacheMb` from
 * these, not from fixed numbers, so they keep their meaning when the demo base (and with it
 * every adapter) changes size.
 */
export async function demoMemoryBytes(): Promise<Record<DemoId, number>> {
  const loader = new AdapterLoader({} as AdapterStore, await loadManifest(MODEL_DIR)); // check() reads no store
  return Object.fromEntries(DEMO_IDS.map((id) => [id, loader.check(id, demoFiles(id)).bytes])) as Record<DemoId, number>;
}

/** `cacheMb` (MiB) for a cache of `bytes`. */
export const cacheMiB = (bytes: number): number => bytes / (1024 * 1024);

export interface Tensor { dtype: SafetensorsDType; shape: number[]; data: Float32Array }

/** The tensors of a safetensors file, decoded to float32 (dtype kept), in header order. */
export function decodeModel(model: Uint8Array): Map<string, Tensor> {
  const { header, tensors } = readSafetensors(model);
  const out = new Map<string, Tensor>();
  for (const t of header.tensors) {
    const d = tensors.get(t.name)!;
    out.set(t.name, { dtype: d.dtype, shape: [...d.shape], data: Float32Array.from(d.data) });
  }
  return out;
}

export function encodeModel(tensors: Map<string, Tensor>, metadata: Record<string, string> = { format: 'pt' }): Buffer {
  return Buffer.from(writeSafetensors(Object.fromEntries(tensors), metadata));
}

/**
 * A recognisable variant of a demo adapter: its classifier bias shifted by `biasShift` (label i
 * gets `biasShift * (i + 1)`), its config tagged with `revision` (accepted and ignored by the
 * server), optional metadata padding.
 */
export function variant(id: DemoId, opts: { biasShift?: number; revision?: string; metadata?: Record<string, string> } = {}): AdapterFiles {
  const base = demoFiles(id);
  const tensors = decodeModel(base.model);
  if (opts.biasShift) {
    const bias = tensors.get('base_model.model.classifier.bias')!;
    const data = Float32Array.from(bias.data, (v, i) => v + opts.biasShift! * (i + 1));
    tensors.set('base_model.model.classifier.bias', { ...bias, dtype: 'F32', data });
  }
  const cfg = JSON.parse(base.config.toString('utf8')) as Record<string, unknown>;
  if (opts.revision !== undefined) cfg.revision = opts.revision;
  return { config: Buffer.from(JSON.stringify(cfg, null, 2)), model: encodeModel(tensors, { format: 'pt', ...(opts.metadata ?? {}) }) };
}

// ---------------------------------------------------------------------------------------
// Directory snapshots

/** Every entry under `dir` (recursive, symlinks not followed): files by sha256, links by target. */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    const abs = path.join(dir, rel);
    for (const name of (await readdir(abs)).sort()) {
      const r = path.join(rel, name);
      const st = await lstat(path.join(dir, r));
      if (st.isSymbolicLink()) out[r] = `link:${await readlink(path.join(dir, r))}`;
      else if (st.isDirectory()) { out[r] = 'dir'; await walk(r); }
      else if (st.isFile()) out[r] = `file:${sha256(await readFile(path.join(dir, r)))}`;
      else out[r] = 'other';
    }
  };
  await walk('');
  return out;
}

/** Names in the store dir that are temp or old leftovers of the store's atomic writes. */
export async function leftovers(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.startsWith('.tmp-') || n.startsWith('.old-'));
}
