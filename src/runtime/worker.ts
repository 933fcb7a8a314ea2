/**
 * The ONNX session lives here, in a worker thread: onnxruntime-node's run() blocks the thread
 * it is on, and the HTTP thread must keep answering health checks, metrics and uploads.
 */
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import type { ModelManifest } from '../model/manifest.js';
import type { BatchInput, BatchOutput } from './batch.js';
import { LoraBankCache } from './bank-cache.js';
import { DeviceCopier, keepsStateOnDevice } from './device-io.js';
import { batchLabels, buildFeeds } from './feeds.js';

export interface WorkerInit {
  modelPath: string;
  manifest: ModelManifest;
  threads: number;
  executionProvider: string;
}

/** How a test makes the worker die: `process.exit` in it, or an uncaught error. */
export type CrashHow = 'exit' | 'throw';
/** At once, or at the start of the next run (so a batch is in the worker when it dies). */
export type CrashWhen = 'now' | 'next-run';

export type WorkerRequest =
  | { type: 'run'; id: number; batch: BatchInput }
  /** Test-only (WorkerEngine.crashForTest): a real death of this thread, as a crash would be. */
  | { type: 'crash'; how: CrashHow; when: CrashWhen };
export type WorkerResponse = { id: number; ok: true; out: BatchOutput } | { id: number; ok: false; message: string };

const init = workerData as WorkerInit;
const port = parentPort!;

function die(how: CrashHow): void {
  if (how === 'exit') process.exit(70); // in a worker thread this ends the thread only
  setImmediate(() => {
    throw new Error('crashForTest: uncaught error in the inference worker');
  });
}

async function main(): Promise<void> {
  const session = await ort.InferenceSession.create(init.modelPath, {
    executionProviders: [init.executionProvider],
    intraOpNumThreads: init.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const m = init.manifest;
  const onDevice = keepsStateOnDevice(init.executionProvider);
  // LoRA banks are kept while consecutive batches use the same adapters (on WebGPU, on the device).
  const banks = new LoraBankCache(m.loraSlots, m.inputs.adapterIndex, onDevice ? await DeviceCopier.create() : null);
  const outNames = [...m.heads.map((h) => h.output), ...(m.embeddingOutput ? [m.embeddingOutput] : [])];
  let crashNext: CrashHow | null = null;
  port.on('message', async (msg: WorkerRequest) => {
    if (msg.type === 'crash') {
      if (msg.when === 'now') die(msg.how);
      else crashNext = msg.how;
      return;
    }
    if (crashNext) {
      die(crashNext);
      return;
    }
    const { id, batch } = msg;
    try {
      const t0 = performance.now();
      const raw = buildFeeds(m, batch, { banks: false });
      const feeds: Record<string, ort.Tensor> = {};
      for (const [name, f] of Object.entries(raw)) feeds[name] = new ort.Tensor(f.type, f.data, f.dims);
      const bank = await banks.feeds(batch.adapters, batch.rowAdapter);
      Object.assign(feeds, bank.feeds);
      const t1 = performance.now();
      const res = await session.run(feeds, outNames);
      const runMs = performance.now() - t1;
      const head = m.heads[0] ? (res[m.heads[0].output]!.data as Float32Array) : null;
      const emb = m.embeddingOutput ? (res[m.embeddingOutput]!.data as Float32Array) : null;
      const out: BatchOutput = {
        logits: head, labels: batchLabels(batch), embeddings: emb, hidden: m.hiddenSize, runMs, feedMs: t1 - t0,
      };
      if (onDevice) {
        // host feeds go up, the outputs come down (an estimate: ORT keeps a few shape inputs on the host)
        out.transfer = {
          hostToDevice: Object.values(raw).reduce((a, f) => a + f.data.byteLength, 0) + bank.uploadedBytes + 8 * batch.batch,
          deviceToHost: (head?.byteLength ?? 0) + (emb?.byteLength ?? 0),
        };
      }
      const transfer = [head?.buffer, emb?.buffer].filter((x): x is ArrayBuffer => x instanceof ArrayBuffer);
      port.postMessage({ id, ok: true, out } satisfies WorkerResponse, transfer);
    } catch (e) {
      port.postMessage({ id, ok: false, message: (e as Error).message } satisfies WorkerResponse);
    }
  });
  port.postMessage({ ready: true });
}

main().catch((e: unknown) => port.postMessage({ ready: false, message: (e as Error).message }));
