/**
 * The naive way to serve many generative adapters: one merged model per adapter (PEFT's
 * `merge_and_unload()` then an export; here `writeMergedModel` on the plain optimum export), each
 * its own ONNX session, at most `capacity` open (LRU). A merged session serves only its own
 * adapter, so a decode step holds rows of one adapter: requests are served first come, first
 * served by adapter, with continuous batching among the rows of the adapter being served (a new
 * request of that adapter joins the running rows while it is also the oldest waiting one); when
 * the oldest waiting request is another adapter's, no more rows join, the running ones finish,
 * and the server switches to that adapter (opening its session, closing one past capacity).
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { argmax } from '../../src/generation/greedy.js';
import { SequenceKv } from '../../src/generation/kv-cache.js';
import type { ModelManifest } from '../../src/model/manifest.js';
import { writeMergedModel } from '../merge.js';
import { OpenLru } from '../open-lru.js';
import { PlainDecoder } from './decode.js';
import type { GenRequest } from './shared.js';

/** Options of {@link MergedDecoderServer}. */
export interface MergedDecoderOptions {
  /** The plain export every merged model is made from. */
  plainPath: string;
  /** The slotted model's manifest (its generation block: KV layout, vocabulary). */
  manifest: ModelManifest;
  /** PEFT folder per adapter index. */
  adapterDirs: readonly string[];
  /** Where merged models are written (kept between runs). */
  mergedDir: string;
  /** Most sessions open at once (from the memory budget). */
  capacity: number;
  /** Most rows in one step (as the scheduler's maxRunning). */
  maxRows: number;
  threads: number;
  executionProvider: string;
}

interface Row { req: GenRequest; kv: SequenceKv; tokens: number[]; runFor: number }

export class MergedDecoderServer {
  /** Seconds spent writing merged models (once per adapter; not part of any run's time). */
  mergeSeconds = 0;
  private readonly open: OpenLru<PlainDecoder>;

  constructor(private readonly o: MergedDecoderOptions) {
    this.open = new OpenLru(o.capacity, (s) => s.close());
  }

  /** Sessions opened (first loads and reloads after an eviction). */
  get loads(): number { return this.open.loads; }
  /** Seconds spent opening sessions. */
  get loadSeconds(): number { return this.open.loadSeconds; }

  /** Merged model files known to exist, by adapter index (no disk check per step). */
  private readonly written = new Map<number, string>();

  /** The merged model file of adapter `i`, written on first use. */
  async mergedPath(i: number): Promise<string> {
    const known = this.written.get(i);
    if (known) return known;
    const out = path.join(this.o.mergedDir, `${path.basename(this.o.adapterDirs[i]!)}.onnx`);
    if (!existsSync(out)) {
      await mkdir(this.o.mergedDir, { recursive: true });
      const t0 = performance.now();
      await writeMergedModel({ plainModelPath: this.o.plainPath, adapterDir: this.o.adapterDirs[i]!, outPath: out });
      this.mergeSeconds += (performance.now() - t0) / 1000;
    }
    this.written.set(i, out);
    return out;
  }

  /** Writes the merged models of the adapters `reqs` use, before anything is timed. */
  async prepare(reqs: readonly GenRequest[]): Promise<void> {
    for (const a of new Set(reqs.map((r) => r.adapter))) await this.mergedPath(a);
  }

  private async session(adapter: number): Promise<PlainDecoder> {
    const file = await this.mergedPath(adapter);
    return this.open.get(adapter, () => PlainDecoder.create(file, this.o.manifest, this.o.threads, this.o.executionProvider));
  }

  /**
   * Serves `reqs` (arrival times in ms from now), greedy, each for its maxTokens; returns
   * generated tokens per second, first arrival → last token, as the scheduler's runs are measured.
   */
  async run(reqs: readonly GenRequest[]): Promise<{ tps: number; tokens: number; switches: number }> {
    const g = this.o.manifest.generation!;
    const t0 = performance.now();
    const now = () => performance.now() - t0;
    const waiting = [...reqs].sort((a, b) => a.at - b.at);
    let running: Row[] = [];
    let current = -1;
    let tokens = 0;
    let switches = 0;
    let last = t0;
    while (waiting.length || running.length) {
      if (!running.length) {
        const head = waiting[0]!;
        if (head.at > now()) { await new Promise((r) => setTimeout(r, head.at - now())); continue; }
        if (head.adapter !== current) { current = head.adapter; switches++; }
      }
      const s = await this.session(current);
      // Join: arrived requests of the adapter being served, while they are the oldest waiting.
      const fresh: Row[] = [];
      while (waiting.length && waiting[0]!.adapter === current && waiting[0]!.at <= now() && running.length + fresh.length < this.o.maxRows) {
        const req = waiting.shift()!;
        fresh.push({ req, kv: new SequenceKv(g), tokens: [], runFor: req.maxTokens });
      }
      const step = [...running, ...fresh];
      const { logits } = await s.step(step.map((r) => ({ kv: r.kv, tokens: r.tokens.length ? [r.tokens.at(-1)!] : r.req.prompt, adapter: -1 })));
      logits.forEach((l, i) => step[i]!.tokens.push(argmax(l)));
      running = [];
      for (const r of step) {
        if (r.tokens.length >= r.runFor) { tokens += r.tokens.length; r.kv.clear(); last = performance.now(); } else running.push(r);
      }
    }
    return { tps: tokens / ((last - t0 - (reqs.length ? Math.min(...reqs.map((r) => r.at)) : 0)) / 1000), tokens, switches };
  }

  close(): Promise<void> {
    return this.open.closeAll();
  }
}
