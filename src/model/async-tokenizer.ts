import { Worker } from 'node:worker_threads';
import { AppError, ERROR_CATALOG, type ErrorCode } from '../errors.js';
import type { TextTokenizer, TokenIds } from './tokenizer.js';
import type { TokenizeRequest, TokenizeResponse, TokenizerWorkerInit } from './tokenizer-worker.js';

/** Requests whose first tokenizing pass is at most this many characters stay on the calling thread (about a millisecond). */
export const INLINE_CHARS = 1024;

export interface AsyncTokenizerOptions {
  /** The calling thread's tokenizer, for small requests (no hand-off cost). */
  tokenizer: TextTokenizer;
  /** The same tokenizer.json, loaded again by the tokenizer thread. */
  tokenizerPath: string;
  /** Override of {@link INLINE_CHARS}. */
  inlineChars?: number;
}

interface Pending { resolve(ids: TokenIds[]): void; reject(e: Error): void }

/**
 * Tokenizes a request's inputs: small requests on the calling thread, the rest in a tokenizer
 * thread, so a body full of long texts never stalls the HTTP thread. A tokenizer thread that
 * dies fails its requests with WORKER_RESTARTING (503, retryable) and is started again by the
 * next request that needs it.
 */
export class AsyncTokenizer {
  private worker: Promise<Worker> | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  /** Requests served on the calling thread / in the tokenizer thread; characters the thread tokenized. */
  readonly counters = { inline: 0, thread: 0, threadChars: 0, threadStarts: 0 };

  constructor(private readonly opts: AsyncTokenizerOptions) {}

  /** Starts the tokenizer thread now (otherwise the first long request does). */
  async start(): Promise<this> {
    await this.thread();
    return this;
  }

  /** Token ids of every text, with {@link TextTokenizer.encode}'s length policy (INPUT_TOO_LONG names the input's index). */
  async encodeAll(texts: string[], maxTokens: number, truncate: boolean): Promise<TokenIds[]> {
    const tok = this.opts.tokenizer;
    let cost = 0;
    for (const t of texts) cost += tok.firstPassChars(t, maxTokens);
    if (cost <= (this.opts.inlineChars ?? INLINE_CHARS)) {
      this.counters.inline++;
      return texts.map((t, i) => tok.encode(t, maxTokens, truncate, i));
    }
    if (this.closed) throw new AppError('SHUTTING_DOWN', 'the tokenizer is closed');
    this.counters.thread++;
    const worker = await this.thread();
    const id = this.nextId++;
    return new Promise<TokenIds[]>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, texts, maxTokens, truncate } satisfies TokenizeRequest);
    });
  }

  private thread(): Promise<Worker> {
    return (this.worker ??= this.spawn());
  }

  private spawn(): Promise<Worker> {
    this.counters.threadStarts++;
    const init: TokenizerWorkerInit = { tokenizerPath: this.opts.tokenizerPath };
    const w = new Worker(new URL('./tokenizer-worker.js', import.meta.url), { workerData: init });
    const started = new Promise<Worker>((resolve, reject) => {
      const onMsg = (m: { ready?: boolean; message?: string }) => {
        if (m.ready === undefined) return;
        w.off('message', onMsg);
        if (m.ready) resolve(w);
        else reject(new AppError('WORKER_RESTARTING', `the tokenizer thread could not start: ${m.message}`, { headers: { 'Retry-After': '1' } }));
      };
      w.on('message', onMsg);
      w.once('error', reject);
      w.once('exit', (code) => reject(new AppError('WORKER_RESTARTING', `the tokenizer thread exited with code ${code} while starting`, { headers: { 'Retry-After': '1' } })));
    });
    w.on('message', (m: TokenizeResponse | { ready: boolean }) => {
      if (!('id' in m)) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) {
        this.counters.threadChars += m.chars;
        p.resolve(m.ids);
      } else {
        const code = m.code !== null && m.code in ERROR_CATALOG ? (m.code as ErrorCode) : 'INTERNAL';
        p.reject(new AppError(code, code === 'INTERNAL' ? `tokenizing failed: ${m.message}` : m.message));
      }
    });
    const died = (why: string) => {
      if (this.worker !== started) return;
      this.worker = null; // the next request starts a new thread
      for (const p of this.pending.values()) {
        p.reject(new AppError('WORKER_RESTARTING', `the tokenizer thread stopped (${why}); retry`, { headers: { 'Retry-After': '1' } }));
      }
      this.pending.clear();
    };
    w.on('error', (e) => died(e.message));
    w.on('exit', (code) => died(`exit code ${code}`));
    started.catch(() => died('failed to start'));
    return started;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const w = this.worker;
    this.worker = null; // its exit is no longer a death to report
    for (const p of this.pending.values()) p.reject(new AppError('SHUTTING_DOWN', 'the tokenizer is closed'));
    this.pending.clear();
    if (w) await (await w.catch(() => null))?.terminate();
  }
}
