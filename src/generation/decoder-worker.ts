/**
 * A decoder's ONNX session and every running sequence's KV cache live here, in a worker thread:
 * onnxruntime-node's run() blocks the thread it is on, and the caches stay beside the session
 * instead of crossing threads each step. The main thread's scheduler sends one message per step.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { ModelManifest } from '../model/manifest.js';
import type { AdapterPayload } from '../runtime/batch.js';
import { DecoderRunner, type StepTransfer } from './decoder-runner.js';
import { SequenceKv } from './kv-cache.js';

export interface DecoderWorkerInit { modelDir: string; manifest: ModelManifest; threads: number; executionProvider: string }

/** One row of a step: a sequence id (its cache is created on first use) and the tokens it feeds. */
export interface WorkerStepRow { seq: number; tokens: number[]; adapter: number }
export type DecoderWorkerRequest =
  | { type: 'step'; id: number; rows: WorkerStepRow[]; adapters: AdapterPayload[] }
  | { type: 'free'; seqs: number[] }
  /** Test-only (DecoderWorkerEngine.crashForTest): this thread exits, as a crash would end it. */
  | { type: 'crash' };
export type DecoderWorkerResponse =
  | { id: number; ok: true; logits: Float32Array[]; runMs: number; feedMs: number; kvBytes: number; kvTokens: number; transfer: StepTransfer }
  | { id: number; ok: false; message: string };

const init = workerData as DecoderWorkerInit;
const port = parentPort!;
const caches = new Map<number, SequenceKv>();

function kvUse(): { kvBytes: number; kvTokens: number } {
  let kvBytes = 0, kvTokens = 0;
  for (const c of caches.values()) { kvBytes += c.bytes; kvTokens += c.length; }
  return { kvBytes, kvTokens };
}

async function main(): Promise<void> {
  const runner = await DecoderRunner.create(init.modelDir, init.manifest, { threads: init.threads, executionProvider: init.executionProvider });
  const g = init.manifest.generation!;
  port.on('message', async (msg: DecoderWorkerRequest) => {
    if (msg.type === 'crash') process.exit(70);
    if (msg.type === 'free') {
      for (const s of msg.seqs) { caches.get(s)?.clear(); caches.delete(s); }
      return;
    }
    try {
      const rows = msg.rows.map((r) => {
        let kv = caches.get(r.seq);
        if (!kv) { kv = new SequenceKv(g); caches.set(r.seq, kv); }
        return { kv, tokens: r.tokens, adapter: r.adapter };
      });
      const out = await runner.step(rows, msg.adapters);
      port.postMessage({ id: msg.id, ok: true, logits: out.logits, runMs: out.runMs, feedMs: out.feedMs, transfer: out.transfer, ...kvUse() } satisfies DecoderWorkerResponse,
        out.logits.map((l) => l.buffer as ArrayBuffer));
    } catch (e) {
      port.postMessage({ id: msg.id, ok: false, message: (e as Error).message } satisfies DecoderWorkerResponse);
    }
  });
  port.postMessage({ ready: true });
}

main().catch((e: unknown) => port.postMessage({ ready: false, message: (e as Error).message }));
