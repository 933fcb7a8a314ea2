/**
 * Streamed HTTP (SSE) time per token − engine time per token, on the committed demo decoder as
 * shipped: the real server (startServer) in this process; one side POSTs /v1/completions with
 * stream: true and reads the event stream to its end, the other calls the same server's
 * GenerationService directly (scheduler, worker engine, detokenizer; no HTTP). Same prompt, greedy,
 * so both generate the same tokens; sequential requests, sides alternated.
 */
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config.js';
import { GREEDY } from '../../src/generation/sampler.js';
import { startServer } from '../../src/serve.js';
import type { Figure } from '../context.js';
import { gen } from '../gen/shared.js';
import { spread } from '../measure.js';
import { fmt, missNote, type Row } from '../report.js';
import { silentLog } from '../stack.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** Openings the demo base (pretrained on Debian package descriptions) continues for a dozen tokens or more. */
const PROMPTS = [
  'This package provides a small library for reading and writing',
  'The program is a command line tool that',
  'This package contains the documentation for',
  'A simple and fast text editor with support for',
];

/** Streams one completion; resolves with the completion tokens the last chunk's usage reports. */
function streamCompletion(agent: http.Agent, url: URL, body: unknown): Promise<number> {
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': data.length } }, (res) => {
      let buf = '';
      let tokens = -1;
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const line = ev.split('\n').find((l) => l.startsWith('data: '));
          if (!line || line === 'data: [DONE]') continue;
          const j = JSON.parse(line.slice(6)) as { usage?: { completion_tokens: number } | null };
          if (j.usage) tokens = j.usage.completion_tokens;
        }
      });
      res.on('end', () => (res.statusCode === 200 && tokens > 0 ? resolve(tokens) : reject(new Error(`stream ended with status ${res.statusCode}, ${tokens} tokens`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

export const genSse: Figure = async (ctx) => {
  const g = await gen(ctx);
  const perRound = g.quick ? 8 : 20;
  const maxTokens = 48;
  const config = loadConfig([], {}, {
    port: 0, host: '127.0.0.1', logLevel: 'silent', threads: g.threads,
    modelDir: `${path.join(ROOT, 'models/demo')},${path.join(ROOT, 'models/demo-llm')}`, adaptersDir: `${path.join(ROOT, 'adapters')},${path.join(ROOT, 'adapters-llm')}`,
  });
  const server = await startServer(config, { log: silentLog });
  await server.ready;
  const base = server.services.generation[0]!;
  const model = base.manifest.baseModel; // the base as shipped; its adapters answer in 1–10 tokens
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const url = new URL('/v1/completions', server.url);
  const engineOnce = (prompt: string) => new Promise<number>((resolve, reject) => {
    base.service.generate({ model, prompt, maxTokens, sampling: GREEDY, stop: [] }, {
      onText: () => {}, onDone: (r) => resolve(r.completionTokens), onError: reject,
    }).catch(reject);
  });
  const cpu = { http: [] as number[], engine: [] as number[] };
  /** Wall ms per token of one request; its process CPU ms per token (main thread, decoder worker and the in-process client) go to `into`. */
  const perToken = async (fn: () => Promise<number>, into: number[]) => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const n = await fn();
    const wall = (performance.now() - t0) / n;
    const c = process.cpuUsage(c0);
    into.push((c.user + c.system) / 1000 / n);
    return wall;
  };
  const httpOnce = (prompt: string) => streamCompletion(agent, url, { model, prompt, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } });
  const out = { http: [] as number[], engine: [] as number[] };
  try {
    // Per repeat: perRound request pairs, HTTP and engine alternated request by request (order flipped every pair).
    for (let round = 0; round < g.warmup + g.reps; round++) {
      const h: number[] = [], e: number[] = [], ch: number[] = [], ce: number[] = [];
      for (let i = 0; i < perRound; i++) {
        const p = PROMPTS[i % PROMPTS.length]!;
        if (i % 2) { e.push(await perToken(() => engineOnce(p), ce)); h.push(await perToken(() => httpOnce(p), ch)); }
        else { h.push(await perToken(() => httpOnce(p), ch)); e.push(await perToken(() => engineOnce(p), ce)); }
      }
      ctx.log(`  gen-sse round ${round - g.warmup}: http ${spread(h).median.toFixed(2)} ms/token (CPU ${spread(ch).median.toFixed(2)}), engine ${spread(e).median.toFixed(2)} ms/token (CPU ${spread(ce).median.toFixed(2)})`);
      if (round >= g.warmup) { out.http.push(spread(h).median); out.engine.push(spread(e).median); cpu.http.push(spread(ch).median); cpu.engine.push(spread(ce).median); }
    }
  } finally {
    agent.destroy();
    await server.close();
  }
  const diff = out.http.map((h, i) => h - out.engine[i]!);
  const row: Row = {
    figure: 'gen-sse', label: 'streamed HTTP (SSE) time per token − engine time per token', model: 'demo decoder',
    target: { op: '<=', value: 0.2 }, unit: 'ms', value: spread(diff),
    detail: `SSE ${fmt(spread(out.http).median)} ms/token, engine ${fmt(spread(out.engine).median)} ms/token`,
  };
  const cpuDiff = cpu.http.map((h, i) => h - cpu.engine[i]!);
  const cpuRow: Row = {
    figure: 'gen-sse', label: 'streamed HTTP (SSE) CPU time per token − engine CPU time per token (process, all threads)', model: 'demo decoder',
    target: { op: '<=', value: 0.2 }, unit: 'ms', value: spread(cpuDiff),
    detail: `SSE ${fmt(spread(cpu.http).median)} CPU ms/token, engine ${fmt(spread(cpu.engine).median)} CPU ms/token`,
  };
  const notes = [`The committed demo decoder (models/demo-llm, the base "${model}", no adapter: the demo adapters answer in a few tokens) in the real server (${g.threads} thread(s)); ${perRound} sequential greedy requests of up to ${maxTokens} tokens per side per repeat, alternated; a request's time per token = its wall time (request → end of stream / onDone) ÷ its completion tokens; the figure is the difference of the per-repeat medians. The second row is the same difference in process CPU time (process.cpuUsage: the main thread, the decoder worker, and the in-process HTTP client's parsing), which other processes on a shared machine barely disturb; on a machine with a core to spare it bounds the wall-clock overhead from above (HTTP work on the main thread can overlap the worker's ORT run).`];
  const mc = missNote(cpuRow, 'Per token the HTTP side serializes one SSE chunk (JSON), writes it to the socket, and the in-process client parses it; per request it adds routing, body validation and the response headers.');
  if (mc) notes.push(mc);
  const m = missNote(row, 'Per token the HTTP side adds one SSE chunk (JSON serialization and a socket write) and the client\'s parse; per request it adds the HTTP request, body validation and the response headers, spread over the request\'s tokens.');
  if (m) notes.push(m);
  return { title: 'Generation: SSE overhead', rows: [row, cpuRow], notes, data: { ...out, cpu } };
};
