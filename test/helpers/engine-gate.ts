/**
 * A preload (`node --import <this file>`) that pauses the inference engine of a real server
 * process, so shutdown tests hold work in flight without relying on timing. In the inference
 * worker thread (the one whose workerData names a model), every `session.run` after the first
 * (the warm-up) waits until the file named by `ADAPTERHOST_TEST_ENGINE_GATE` exists. When a run
 * is held it writes `ADAPTERHOST-ENGINE-GATE rows=<batch rows>` on stderr.
 */
import { existsSync, writeSync } from 'node:fs';
import { isMainThread, workerData } from 'node:worker_threads';

export const ENGINE_GATE_ENV = 'ADAPTERHOST_TEST_ENGINE_GATE';
export const ENGINE_GATE_MARK = 'ADAPTERHOST-ENGINE-GATE ';

const file = process.env[ENGINE_GATE_ENV];
const data = workerData as { modelPath?: unknown; manifest?: { task?: string } } | null;
if (file && !isMainThread && typeof data?.modelPath === 'string' && data.manifest?.task !== 'text-generation') {
  const ort = (await import('onnxruntime-node')).default;
  const proto = (ort.InferenceSession as unknown as { prototype: { run: (...a: unknown[]) => Promise<unknown> } }).prototype;
  const run = proto.run;
  let runs = 0;
  proto.run = async function (this: unknown, ...a: unknown[]) {
    runs++;
    if (runs > 1 && !existsSync(file)) {
      const feeds = a[0] as Record<string, { dims: readonly number[] }>;
      writeSync(2, `${ENGINE_GATE_MARK}rows=${feeds.input_ids?.dims[0] ?? '?'}\n`);
      while (!existsSync(file)) await new Promise((r) => setTimeout(r, 5));
    }
    return run.apply(this, a);
  };
}
