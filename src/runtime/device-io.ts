import ort from 'onnxruntime-node';
import { encodeModel, ELEM_FLOAT, makeNode, onnx } from '../model/onnx-graph.js';
import type { RawFeed } from './feeds.js';

/** Execution providers whose tensors can live on a device between runs (onnxruntime-node 1.30: WebGPU only). */
export function keepsStateOnDevice(provider: string): boolean {
  return provider === 'webgpu';
}

/** A float32 Identity graph of any rank: the only way onnxruntime-node 1.30 moves a tensor between host and device. */
function identityModel(): Uint8Array {
  const io = (name: string) => onnx.ValueInfoProto.create({ name, type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType: ELEM_FLOAT }) }) });
  const graph = onnx.GraphProto.create({ name: 'adapterhost-copy', node: [makeNode('Identity', ['x'], ['y'], 'copy')], input: [io('x')], output: [io('y')] });
  return encodeModel(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph }));
}

/** Bytes of a tensor's data. */
export function tensorBytes(type: string, dims: readonly number[]): number {
  const per = type === 'int64' || type === 'float64' ? 8 : type === 'float16' ? 2 : type === 'int8' || type === 'uint8' || type === 'bool' ? 1 : 4;
  return dims.reduce((a, d) => a * d, per);
}

/**
 * Copies float32 tensors to and from the WebGPU device. onnxruntime-node 1.30 has no API for it:
 * `Tensor.fromGpuBuffer` needs a handle only ORT's own outputs carry, and `getData()` /
 * `download()` on a `gpu-buffer` tensor aborts the process (`download` is "not implemented" in
 * the binding, thrown as a C string). Two one-node Identity sessions on the same device do it
 * instead: one takes a host tensor and leaves its output on the device
 * (`preferredOutputLocation: 'gpu-buffer'`), the other takes a device tensor and returns it on
 * the host. (ORT-node shares one WebGPU device between the sessions of a process.)
 */
export class DeviceCopier {
  private constructor(private readonly up: ort.InferenceSession, private readonly down: ort.InferenceSession) {}

  static async create(): Promise<DeviceCopier> {
    const model = identityModel();
    const up = await ort.InferenceSession.create(model, { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' });
    const down = await ort.InferenceSession.create(model, { executionProviders: ['webgpu'], preferredOutputLocation: 'cpu' });
    return new DeviceCopier(up, down);
  }

  /** A device (`gpu-buffer`) copy of a float32 host feed; the caller disposes it. */
  async upload(f: RawFeed): Promise<ort.Tensor> {
    if (f.type !== 'float32') throw new Error(`DeviceCopier.upload: ${f.type} is not float32`);
    return (await this.up.run({ x: new ort.Tensor('float32', f.data as Float32Array, f.dims) })).y!;
  }

  /** The host copy of a float32 device tensor. */
  async download(t: ort.Tensor): Promise<Float32Array> {
    const out = (await this.down.run({ x: t })).y!;
    return out.data as Float32Array;
  }

  async close(): Promise<void> {
    await this.up.release();
    await this.down.release();
  }
}

/** Whether this process can run the WebGPU provider: a device answered, or the reason none did (ORT's message). */
export async function probeWebGpu(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    const c = await DeviceCopier.create();
    const back = await c.download(await c.upload({ type: 'float32', data: new Float32Array([1, 2, 3]), dims: [3] }));
    await c.close();
    if (back.join() !== '1,2,3') return { ok: false, reason: `a round trip through the device returned ${back.join()}` };
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: (e as Error).message.trim() };
  }
}
