/**
 * Peak memory of one adapter upload, measured in a fresh process (run with --expose-gc):
 * a multipart body with a ~32 MiB F32 adapter streamed from disk through readAdapterUpload (as
 * the HTTP route does) and validated with AdapterLoader.check (as the registry does before
 * storing). Resets the kernel's peak-RSS mark (VmHWM, /proc/self/clear_refs) just before, reads
 * it just after; prints one JSON line: { fileBytes, peakBytes } (peakBytes: VmHWM − RSS before).
 *
 *   node --expose-gc upload-peak-child.js <tmpdir>
 */
import { createReadStream } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Request } from 'express';
import { AdapterLoader } from '../../src/adapter/loader.js';
import { writeSafetensors } from '../../src/adapter/safetensors.js';
import type { AdapterStore } from '../../src/adapter/store.js';
import { readAdapterUpload } from '../../src/http/upload.js';
import type { ModelManifest } from '../../src/model/manifest.js';

const D = 4096;
const R = 128;
const LAYERS = 8;

const manifest: ModelManifest = {
  format: 'adapterhost.model/v1', baseModel: 'peak-bert', aliases: [], task: 'feature-extraction',
  modelFile: 'model.onnx', tokenizerFile: 'tokenizer.json', maxLength: 16, hiddenSize: D, maxRank: R, targets: ['query'],
  inputs: { inputIds: 'input_ids', attentionMask: 'attention_mask', tokenTypeIds: null, adapterIndex: 'adapter_index' },
  embeddingOutput: 'sentence_embedding', baseBytes: 1,
  loraSlots: Array.from({ length: LAYERS }, (_, l) => ({ module: `encoder.layer.${l}.attention.self.query`, dIn: D, dOut: D, inputA: `a${l}`, inputB: `b${l}` })),
  heads: [],
};

async function kib(field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(await readFile('/proc/self/status', 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/self/status`);
  return Number(m[1]) * 1024;
}

async function main(): Promise<void> {
  const dir = process.argv[2]!;
  const bodyFile = path.join(dir, 'upload.bin');
  const boundary = 'peakboundary';
  // [8 layers × (A [r, d] + B [d, r])] F32 = 32 MiB; written once, then dropped before measuring.
  {
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    const a = new Float32Array(R * D).fill(0.001);
    for (const s of manifest.loraSlots) {
      tensors[`base_model.model.${s.module}.lora_A.weight`] = { shape: [R, D], data: a };
      tensors[`base_model.model.${s.module}.lora_B.weight`] = { shape: [D, R], data: a };
    }
    const model = writeSafetensors(tensors);
    const config = JSON.stringify({ peft_type: 'LORA', r: R, lora_alpha: R, target_modules: ['query'], base_model_name_or_path: 'peak-bert' });
    const part = (name: string, filename: string) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`;
    await writeFile(bodyFile, Buffer.concat([
      Buffer.from(part('adapter_config', 'adapter_config.json')), Buffer.from(config), Buffer.from('\r\n'),
      Buffer.from(part('adapter_model', 'adapter_model.safetensors')), model, Buffer.from(`\r\n--${boundary}--\r\n`),
    ]));
  }
  const size = (await stat(bodyFile)).size;
  const loader = new AdapterLoader({} as AdapterStore, manifest);
  const req = createReadStream(bodyFile, { highWaterMark: 64 * 1024 }) as unknown as Request;
  Object.assign(req, { headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(size) } });

  for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 50));
  const before = await kib('VmRSS');
  await writeFile('/proc/self/clear_refs', '5'); // VmHWM := VmRSS
  const files = await readAdapterUpload(req, { maxBytes: 64 * 1024 * 1024 });
  // `check` on this server; `validate` (which also lays the weights out) where there is no check.
  const l = loader as unknown as { check?: (id: string, f: typeof files) => unknown; validate: (id: string, f: typeof files) => unknown };
  if (l.check) l.check('peak', files);
  else l.validate('peak', files);
  const peak = await kib('VmHWM');
  process.stdout.write(`${JSON.stringify({ fileBytes: files.model.length + files.config.length, peakBytes: peak - before })}\n`);
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`upload-peak-child: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
