/** Shared set-up for the HTTP tests: the real app on port 0, the demo model, a copy of adapters/. */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config.js';
import { startServer, type RunningServer, type StartOptions } from '../../src/serve.js';
import { DEMO_ADAPTER_IDS, DEMO_ADAPTERS as ADAPTERS_DIR, DEMO_MODEL_DIR as MODEL_DIR, ROOT } from './demo.js';

export { ADAPTERS_DIR, MODEL_DIR, ROOT };
export const DEMO_ADAPTERS = DEMO_ADAPTER_IDS;
export const ADMIN_TOKEN = 'test-admin-token-0123456789';

type Overrides = Partial<Record<keyof Config, string | number | boolean>>;

/** A config for tests: demo model, the given adapter store, quiet logs, env ignored. */
export function testConfig(adaptersDir: string, overrides: Overrides = {}): Config {
  return loadConfig([], {}, { modelDir: MODEL_DIR, adaptersDir, port: 0, host: '127.0.0.1', logLevel: 'silent', threads: 1, ...overrides });
}

/** A temp copy of the committed adapters, so tests never modify the repository. */
export async function copyAdapters(prefix = 'http'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `adapterhost-${prefix}-`));
  await cp(ADAPTERS_DIR, dir, { recursive: true });
  return dir;
}

export interface TestServer {
  s: RunningServer;
  url: string;
  dir: string;
  /** Closes the server (once); removes the store dir when this helper made it. */
  stop(): Promise<void>;
}

/**
 * Starts the real app over `opts.dir` (default: a fresh copy of the adapters); waits for
 * readiness unless told not to.
 */
export async function startTestServer(overrides: Overrides = {}, opts: StartOptions & { waitReady?: boolean; dir?: string } = {}): Promise<TestServer> {
  const own = opts.dir === undefined;
  const dir = opts.dir ?? (await copyAdapters());
  const s = await startServer(testConfig(dir, overrides), opts);
  if (opts.waitReady !== false) await s.ready;
  let stopped = false;
  return {
    s, url: s.url, dir,
    async stop() {
      if (stopped) return;
      stopped = true;
      await s.close();
      if (own) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** POSTs JSON and returns status and parsed body. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

export async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

export interface Part { name: string; filename: string; data: Buffer }

/** A multipart/form-data body built by hand (exact bytes, so tests control every part). */
export function multipart(parts: Part[]): { body: Buffer; contentType: string } {
  const boundary = `----adapterhost${Math.random().toString(16).slice(2)}`;
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"; filename="${p.filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`));
    chunks.push(p.data, Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

/**
 * A request through node:http, which (unlike fetch) still delivers a response the server sent
 * before it read the whole body. `chunked` sends the body in pieces without Content-Length.
 */
export function rawRequest(url: string, opts: { method: string; headers?: Record<string, string>; body?: Buffer; chunked?: boolean }): Promise<{ status: number; body: any; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.body && !opts.chunked) headers['content-length'] = String(opts.body.length);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: opts.method, headers, agent: false });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try { body = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
      });
    });
    req.on('error', (e) => { if (!answered) reject(e); });
    const body = opts.body ?? Buffer.alloc(0);
    if (opts.chunked) {
      const piece = 8 * 1024;
      let off = 0;
      const next = () => {
        if (off >= body.length) { req.end(); return; }
        const ok = req.write(body.subarray(off, off + piece));
        off += piece;
        if (ok) setImmediate(next);
        else req.once('drain', next);
      };
      next();
    } else {
      req.end(body);
    }
  });
}

/** Whether the Prometheus text declares the family `name` belongs to (`# TYPE`; histogram samples drop _count/_sum/_bucket). */
export function hasMetricFamily(text: string, name: string): boolean {
  const families = new Set([name, name.replace(/_(count|sum|bucket)$/, '')]);
  return text.split('\n').some((line) => {
    const m = /^# TYPE (\S+) /.exec(line);
    return m !== null && families.has(m[1]!);
  });
}

/**
 * The value of one sample in Prometheus text. `labels` must match exactly (in order). An absent
 * sample throws, so "the gauge is 0" cannot pass when the gauge is missing; pass
 * `{ absentIsZero: true }` only for a labelled series that has legitimately not been touched yet
 * (prom-client emits a labelled child only after its first observation), and even then the
 * family itself must be declared.
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}, opts: { absentIsZero?: boolean } = {}): number {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',');
  const key = l ? `${name}{${l}}` : name;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${key} `)) return Number(line.slice(key.length + 1));
  }
  if (!hasMetricFamily(text, name)) throw new Error(`metric ${name} is not in the scrape at all`);
  if (opts.absentIsZero) return 0;
  throw new Error(`metric sample ${key} is absent`);
}

export async function scrape(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

/** A promise with its resolve exposed. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => { resolve = r; });
  return { promise, resolve };
}
