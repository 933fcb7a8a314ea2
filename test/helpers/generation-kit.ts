/**
 * Shared pieces for the generation reliability tests (test/reliability-generation-*.test.ts): a
 * server with the demo encoder and the tiny decoder (test/fixtures/tiny-llama), optionally under a
 * very long alias (so each SSE chunk is large and a stream can fill loopback socket buffers), raw
 * streaming requests whose reading the test controls, SSE parsing, and the scheduler's counters.
 */
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { mulberry32 } from '../../bench/synthetic-bert.js';
import type { Config } from '../../src/config.js';
import type { GenerationScheduler } from '../../src/generation/scheduler.js';
import { TINY_DIR } from './decoder.js';
import { copyAdapters, MODEL_DIR, startTestServer, type TestServer } from './http-harness.js';

export const TINY_MODEL = path.join(TINY_DIR, 'slotted');
export const TINY_ADAPTERS = path.join(TINY_DIR, 'adapters');
/** The tiny decoder's base name and its two adapters. */
export const TINY_MODELS = ['tiny-llama', 'tiny-all', 'tiny-qv'] as const;
/** The most a TCP send buffer grows to here (tcp_wmem's maximum; Linux's default 4 MiB when unreadable). */
function sendBufferMax(): number {
  try {
    const max = Number(readFileSync('/proc/sys/net/ipv4/tcp_wmem', 'utf8').trim().split(/\s+/)[2]);
    return Number.isFinite(max) && max > 0 ? max : 4 * 2 ** 20;
  } catch {
    return 4 * 2 ** 20;
  }
}

/**
 * An alias of the tiny base so long that each SSE chunk (which echoes `model`) is tens of KiB:
 * 150 tokens of a stream then outgrow what a loopback socket absorbs for a client that reads
 * nothing (the kernel's send buffer grows to tcp_wmem's maximum, 4 MiB by default), which a stream
 * of short chunks never does within the 256-token context. At least 32 KiB.
 */
export const LONG_ALIAS = `tiny-llama-${'l'.repeat(Math.max(32 * 1024, Math.ceil(sendBufferMax() / 150)))}`;

type Overrides = Partial<Record<keyof Config, string | number | boolean>>;

/** A temp copy of the tiny decoder whose model.json also answers to {@link LONG_ALIAS}. */
export async function tinyWithLongAlias(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-tiny-alias-'));
  await cp(TINY_MODEL, dir, { recursive: true });
  const manifest = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as { aliases: string[] };
  manifest.aliases = [LONG_ALIAS];
  await writeFile(path.join(dir, 'model.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

export interface GenServer extends TestServer {
  sched: GenerationScheduler;
}

/** The real app in process: the demo encoder and the tiny decoder (with the long alias when asked). */
export async function startGen(over: Overrides = {}, opts: { longAlias?: boolean } = {}): Promise<GenServer> {
  const dir = await copyAdapters('gen-rel');
  const model = opts.longAlias ? await tinyWithLongAlias() : TINY_MODEL;
  const t = await startTestServer({ modelDir: `${MODEL_DIR},${model}`, adaptersDir: `${dir},${TINY_ADAPTERS}`, ...over }, { dir });
  const stop = t.stop;
  return {
    ...t,
    sched: t.s.services.generation[0]!.scheduler,
    async stop() {
      await stop();
      if (model !== TINY_MODEL) await rm(model, { recursive: true, force: true });
    },
  };
}

/** A seeded PRNG (mulberry32): same seed, same run. */
export const seeded = mulberry32;

/** The seed for a seeded test: `SEED` from the environment when set (to replay a run), else a fresh one; printed. */
export function testSeed(name: string): number {
  const seed = process.env.SEED ? Number(process.env.SEED) : Math.floor(Math.random() * 2 ** 31);
  console.log(`# ${name}: seed ${seed} (replay with SEED=${seed})`);
  return seed;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 20_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not reached within ${ms} ms`);
    await sleep(10);
  }
}

/** An SSE body split into its events: the JSON chunks, whether it ended with [DONE], the finish reason seen. */
export interface Sse { chunks: any[]; done: boolean; finish: string | null; text: string; errors: any[] }

export function parseSse(raw: string): Sse {
  const events = raw.split('\n\n').filter(Boolean);
  const done = events[events.length - 1] === 'data: [DONE]';
  const chunks = events.filter((e) => e !== 'data: [DONE]').map((e) => {
    if (!e.startsWith('data: ')) throw new Error(`an SSE event is one data line: ${JSON.stringify(e.slice(0, 80))}`);
    return JSON.parse(e.slice(6));
  });
  let finish: string | null = null;
  let text = '';
  const errors: any[] = [];
  for (const c of chunks) {
    if (c.error) { errors.push(c.error); continue; }
    const ch = c.choices?.[0];
    if (!ch) continue;
    text += ch.text ?? ch.delta?.content ?? '';
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  return { chunks, done, finish, text, errors };
}

/**
 * A streaming POST through node:http on its own connection, with reading under the test's
 * control: the response starts paused (nothing is read past Node's small socket buffer) until
 * `read()`; `body()` resolves with everything once the response ends; `destroy()` drops the
 * connection (a client that goes away).
 */
export interface RawStream {
  /** The response's status; 0 when the connection closed before one came. */
  status: Promise<number>;
  headers: Promise<http.IncomingHttpHeaders>;
  /** Start (or resume) reading. */
  read(): void;
  /** Chunks of the body received so far. */
  received(): number;
  /** The whole body; resolves when the response ends or the connection closes (`complete` false then). */
  body(): Promise<{ raw: string; complete: boolean }>;
  destroy(): void;
}

export function rawStream(url: string, route: string, body: unknown, opts: { paused?: boolean } = {}): RawStream {
  const u = new URL(url);
  const data = Buffer.from(JSON.stringify(body));
  const req = http.request({ host: u.hostname, port: u.port, path: route, method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': String(data.length) } });
  let res: http.IncomingMessage | null = null;
  let reading = !opts.paused;
  let chunks = 0;
  const parts: Buffer[] = [];
  let settle!: (v: { raw: string; complete: boolean }) => void;
  const ended = new Promise<{ raw: string; complete: boolean }>((r) => { settle = r; });
  const finish = (complete: boolean) => settle({ raw: Buffer.concat(parts).toString('utf8'), complete });
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    req.on('response', (r) => {
      res = r;
      if (!reading) r.pause();
      r.on('data', (c: Buffer) => { parts.push(c); chunks++; });
      r.on('end', () => finish(true));
      r.on('close', () => finish(r.complete));
      r.on('error', () => finish(false));
      resolve(r);
    });
    req.on('error', (e) => { reject(e); finish(false); });
  });
  response.catch(() => undefined);
  req.end(data);
  return {
    // 0 and {} when no response came (the connection was dropped first).
    status: response.then((r) => r.statusCode ?? 0, () => 0),
    headers: response.then((r) => r.headers, () => ({})),
    read() { reading = true; res?.resume(); },
    received: () => chunks,
    body: () => ended,
    destroy() { req.destroy(); res?.destroy(); },
  };
}

/** Everything the scheduler holds is released: no sequence running or waiting, no KV reserved or held. */
export function schedulerIdle(sched: GenerationScheduler): boolean {
  const s = sched.stats;
  return s.running === 0 && s.waiting === 0 && s.kvReservedBytes === 0 && s.kvBytes === 0 && s.paused === 0;
}
