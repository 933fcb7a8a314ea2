import { AppError } from '../errors.js';
import type { GenerationSpec } from '../model/manifest.js';
import type { AdapterPayload } from '../runtime/batch.js';
import type { DecoderEngine } from './decoder-engine.js';
import type { StepTransfer } from './decoder-runner.js';
import { KV_BLOCK_TOKENS, SequenceKv } from './kv-cache.js';

/** Why a sequence ended. 'shutdown': cut short by a graceful shutdown ({@link GenerationScheduler.cutShort}), its text so far kept. */
export type FinishReason = 'stop' | 'length' | 'cancelled' | 'error' | 'shutdown';

/** Receives a sequence's tokens as they are sampled (the text side: detokenizer, stop strings, the HTTP stream). */
export interface SequenceSink {
  /** Called with each sampled token (end-of-sequence tokens included); return true to stop here (a stop string matched). */
  onToken(token: number): boolean;
  /** Called once, last. `error` is set when reason is 'error'. */
  onFinish(reason: FinishReason, error?: AppError): void;
  /** True while the consumer cannot take more (a stream whose client reads slower than we write):
   * the sequence keeps its cache but sits out decode steps until {@link GenerationScheduler.poke}. */
  paused?(): boolean;
}

/** Picks the next token from a row's logits (a seeded sampler, or argmax). */
export interface TokenPicker { sample(logits: Float32Array, generated: readonly number[]): number }

export interface GenerationJob {
  promptIds: readonly number[];
  /** The adapter's weights (held until the sequence ends), or null for the base alone. */
  adapter: AdapterPayload | null;
  /** Label for reports (metrics, logs). */
  adapterId: string | null;
  /** Most tokens to generate (≥ 1). prompt + maxTokens must fit the model's positions. */
  maxTokens: number;
  picker: TokenPicker;
  sink: SequenceSink;
  signal?: AbortSignal;
}

/** One step, for metrics. */
export interface StepReport {
  kind: 'prefill' | 'decode';
  rows: number;
  distinctAdapters: number;
  /** New tokens fed (prompt tokens for prefill, one per row for decode). */
  tokens: number;
  runMs: number;
  kvBytes: number;
  /** Estimated bytes moved between host and device, and what stayed there (absent from engines that do not say). */
  transfer?: StepTransfer;
}

export interface SchedulerOptions {
  engine: DecoderEngine;
  spec: GenerationSpec;
  /** KV-cache budget in bytes: admission reserves each sequence's whole need (prompt + max tokens) up front. */
  kvBudgetBytes: number;
  /** Most sequences running at once (rows of a decode step). */
  maxRunning: number;
  /** Most sequences waiting for admission; past it submit() throws QUEUE_FULL (429). */
  maxWaiting: number;
  /** Most prompt tokens one prefill step feeds (a long prompt is prefilled in chunks between decode steps). */
  prefillChunk: number;
  onStep?(r: StepReport): void;
  onFinish?(seq: { adapterId: string | null; promptTokens: number; generated: number; reason: FinishReason }): void;
}

interface Seq {
  id: number;
  job: GenerationJob;
  /** Prompt tokens already in the cache. */
  prefilled: number;
  generated: number[];
  /** The token to feed next (the last sampled one), once the prompt is in. */
  next: number | null;
  reserved: number;
  cancelled: boolean;
  done: boolean;
}

/**
 * Continuous batching (Orca / vLLM style): the scheduler runs steps, not requests. Between
 * steps, finished and cancelled sequences leave and waiting ones are admitted while the KV
 * budget allows; every step is one ORT run whose rows may use different adapters.
 *
 * Policy: each round runs at most one prefill step (≤ `prefillChunk` prompt tokens over the
 * newly admitted sequences) and then one decode step over every sequence past its prompt, so
 * a long prompt delays running streams by one chunk's run per round, never by its whole prefill.
 * Admission reserves prompt + max_tokens of KV up front, so a sequence never runs out of cache
 * mid-generation (no preemption); a request that could never fit is refused at submit.
 */
export class GenerationScheduler {
  private readonly waiting: Seq[] = [];
  private readonly running: Seq[] = [];
  private nextId = 1;
  private reservedBytes = 0;
  private kvBytesNow = 0;
  private loop: Promise<void> | null = null;
  private closed = false;
  /** Set by cutShort(): the loop ends every sequence before its next step. */
  private cutting = false;
  private readonly idle: Array<() => void> = [];
  /** Wakes a loop that found every running sequence paused. */
  private wake: (() => void) | null = null;

  constructor(private readonly o: SchedulerOptions) {}

  /** Bytes admission reserves for a sequence of `tokens` positions. */
  reserveFor(tokens: number): number {
    return Math.ceil(tokens / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS * SequenceKv.bytesPerToken(this.o.spec);
  }

  get stats() {
    return {
      running: this.running.length,
      /** Running sequences whose consumer cannot take more (slow readers): they sit out decode steps. */
      paused: this.running.reduce((n, s) => n + (s.job.sink.paused?.() ? 1 : 0), 0),
      waiting: this.waiting.length,
      kvReservedBytes: this.reservedBytes,
      kvBytes: this.kvBytesNow,
      kvBudgetBytes: this.o.kvBudgetBytes,
      maxRunning: this.o.maxRunning,
      runningAdapters: [...new Set(this.running.map((s) => s.job.adapterId).filter((x): x is string => x !== null))],
      waitingAdapters: [...new Set(this.waiting.map((s) => s.job.adapterId).filter((x): x is string => x !== null))],
    };
  }

  /** Queues a sequence; it starts as soon as it fits. Throws QUEUE_FULL / BAD_REQUEST / SHUTTING_DOWN. */
  submit(job: GenerationJob): void {
    if (this.closed) throw new AppError('SHUTTING_DOWN', 'the server is shutting down', { headers: { 'retry-after': '1' } });
    const g = this.o.spec;
    const need = job.promptIds.length + job.maxTokens;
    if (job.promptIds.length === 0) throw new AppError('BAD_REQUEST', 'the prompt is empty');
    if (need > g.maxPositions) throw new AppError('BAD_REQUEST', `the prompt (${job.promptIds.length} tokens) plus max_tokens (${job.maxTokens}) is ${need} tokens; the model's context is ${g.maxPositions}`);
    const bytes = this.reserveFor(need);
    if (bytes > this.o.kvBudgetBytes) throw new AppError('BAD_REQUEST', `this request needs ${bytes} bytes of KV cache; the whole budget is ${this.o.kvBudgetBytes} bytes (--kv-cache-mb)`);
    if (this.waiting.length >= this.o.maxWaiting) throw new AppError('QUEUE_FULL', `${this.waiting.length} generation requests are already waiting; retry later`, { headers: { 'retry-after': '1' } });
    const seq: Seq = { id: this.nextId++, job, prefilled: 0, generated: [], next: null, reserved: bytes, cancelled: false, done: false };
    if (job.signal) {
      if (job.signal.aborted) seq.cancelled = true;
      else job.signal.addEventListener('abort', () => { seq.cancelled = true; this.kick(); }, { once: true });
    }
    this.waiting.push(seq);
    this.admit();
    this.kick();
  }

  /** Moves waiting sequences to running, in arrival order, while rows and the KV budget allow. */
  private admit(): void {
    while (this.waiting.length && this.running.length < this.o.maxRunning && this.reservedBytes + this.waiting[0]!.reserved <= this.o.kvBudgetBytes) {
      const s = this.waiting.shift()!;
      this.reservedBytes += s.reserved;
      this.running.push(s);
    }
  }

  /** Resolves when nothing is waiting or running. */
  drain(): Promise<void> {
    if (!this.loop) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Refuses new work; running and waiting sequences still finish (call drain()). */
  close(): void {
    this.closed = true;
  }

  /**
   * Graceful shutdown's last resort: refuses new work and, before the next step, ends every
   * running sequence with reason 'shutdown' (its text so far; the caller reports a clean finish)
   * and every waiting one with 503 SHUTTING_DOWN (it never started).
   */
  cutShort(): void {
    this.closed = true;
    this.cutting = true;
    this.kick();
  }

  /** A paused sequence can take more (its stream drained), or something else changed: step again. */
  poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
    this.kick();
  }

  private kick(): void {
    if (this.wake) { const w = this.wake; this.wake = null; w(); }
    if (this.loop) return;
    this.loop = this.run().finally(() => {
      this.loop = null;
      if (this.waiting.length || this.running.length) this.kick();
      else for (const f of this.idle.splice(0)) f();
    });
  }

  private finish(s: Seq, reason: FinishReason, error?: AppError): void {
    if (s.done) return;
    s.done = true;
    const i = this.running.indexOf(s);
    // Only an admitted (running) sequence holds a reservation and a cache.
    if (i >= 0) { this.running.splice(i, 1); this.reservedBytes -= s.reserved; this.o.engine.free([s.id]); }
    if (this.running.length === 0) this.kvBytesNow = 0; // every cache was freed
    const w = this.waiting.indexOf(s);
    if (w >= 0) this.waiting.splice(w, 1);
    this.o.onFinish?.({ adapterId: s.job.adapterId, promptTokens: s.job.promptIds.length, generated: s.generated.length, reason });
    try { s.job.sink.onFinish(reason, error); } catch { /* a sink's failure must not stop the loop */ }
  }

  /** Samples from a row's logits and hands the token on; finishes the sequence when it ends. */
  private accept(s: Seq, logits: Float32Array): void {
    const tok = s.job.picker.sample(logits, s.generated);
    s.generated.push(tok);
    let stop = false;
    try { stop = s.job.sink.onToken(tok); } catch { s.cancelled = true; }
    if (s.cancelled) return this.finish(s, 'cancelled');
    if (stop || this.o.spec.eosIds.includes(tok)) return this.finish(s, 'stop');
    if (s.generated.length >= s.job.maxTokens) return this.finish(s, 'length');
    s.next = tok;
  }

  private async run(): Promise<void> {
    while (this.waiting.length || this.running.length) {
      for (const s of [...this.waiting, ...this.running]) if (s.cancelled) this.finish(s, 'cancelled');
      if (this.cutting) {
        const err = new AppError('SHUTTING_DOWN', 'the server is shutting down; retry on another instance', { headers: { 'retry-after': '1' } });
        for (const s of [...this.waiting]) this.finish(s, 'error', err);
        for (const s of [...this.running]) this.finish(s, 'shutdown');
        return;
      }
      this.admit();
      if (this.running.length === 0) return; // everything left was cancelled, or nothing fits (cannot happen: need ≤ budget)
      try {
        const stepped = (await this.prefillStep()) + (await this.decodeStep());
        if (stepped === 0) {
          // Every running sequence is paused (slow readers): wait for a poke instead of spinning.
          await new Promise<void>((resolve) => { this.wake = resolve; setTimeout(resolve, 1000).unref(); });
          this.wake = null;
        }
      } catch (e) {
        const err = e instanceof AppError ? e : new AppError('INTERNAL', `generation failed: ${(e as Error).message}`);
        for (const s of [...this.running]) this.finish(s, 'error', err);
      }
    }
  }

  private adaptersOf(rows: Seq[]): { adapters: AdapterPayload[]; index: number[] } {
    const adapters: AdapterPayload[] = [];
    const index = rows.map((s) => {
      const a = s.job.adapter;
      if (!a) return -1;
      let i = adapters.indexOf(a);
      if (i < 0) i = adapters.push(a) - 1;
      return i;
    });
    return { adapters, index };
  }

  /** Runs a prefill step if any prompt is not yet in the cache; returns the rows it ran. */
  private async prefillStep(): Promise<number> {
    let budget = this.o.prefillChunk;
    const rows: Array<{ s: Seq; tokens: number[] }> = [];
    for (const s of this.running) {
      if (budget <= 0) break;
      const left = s.job.promptIds.length - s.prefilled;
      if (left <= 0) continue;
      const n = Math.min(left, budget);
      rows.push({ s, tokens: s.job.promptIds.slice(s.prefilled, s.prefilled + n) });
      budget -= n;
    }
    if (rows.length === 0) return 0;
    const { adapters, index } = this.adaptersOf(rows.map((r) => r.s));
    const res = await this.o.engine.step(rows.map((r, i) => ({ seq: r.s.id, tokens: r.tokens, adapter: index[i]! })), adapters);
    this.kvBytesNow = res.kvBytes;
    this.o.onStep?.({ kind: 'prefill', rows: rows.length, distinctAdapters: adapters.length, tokens: rows.reduce((a, r) => a + r.tokens.length, 0), runMs: res.runMs, kvBytes: res.kvBytes, ...(res.transfer ? { transfer: res.transfer } : {}) });
    rows.forEach((r, i) => {
      r.s.prefilled += r.tokens.length;
      if (r.s.prefilled === r.s.job.promptIds.length && !r.s.done) this.accept(r.s, res.logits[i]!);
    });
    return rows.length;
  }

  /** Runs a decode step over every running sequence past its prompt that is not paused; returns the rows it ran. */
  private async decodeStep(): Promise<number> {
    const rows = this.running.filter((s) => s.next !== null && !s.cancelled && !s.job.sink.paused?.());
    if (rows.length === 0) return 0;
    const { adapters, index } = this.adaptersOf(rows);
    const res = await this.o.engine.step(rows.map((s, i) => ({ seq: s.id, tokens: [s.next!], adapter: index[i]! })), adapters);
    this.kvBytesNow = res.kvBytes;
    this.o.onStep?.({ kind: 'decode', rows: rows.length, distinctAdapters: adapters.length, tokens: rows.length, runMs: res.runMs, kvBytes: res.kvBytes, ...(res.transfer ? { transfer: res.transfer } : {}) });
    rows.forEach((s, i) => { if (!s.done) this.accept(s, res.logits[i]!); });
    return rows.length;
  }
}
