/**
 * The naive baseline: one merged model per adapter, what users get today from PEFT's
 * `merge_and_unload()` followed by an export. Each targeted linear weight W becomes
 * W + s·ΔW and the saved head replaces the base's head, in a full copy of the PLAIN export.
 * The benchmark compares its memory per adapter, cold start and throughput with the slots.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { parsePeftKey } from '../src/adapter/lora-weights.js';
import { parsePeftConfig, scaleFor } from '../src/adapter/peft-config.js';
import { readSafetensors, type DecodedTensor } from '../src/adapter/safetensors.js';
import { modulePathOfNode } from '../src/model/prepare.js';
import {
  decodeModel, ELEM_FLOAT, encodeModel, floatAttr, intAttr, onnx, toNumber, type GraphProto, type NodeProto, type TensorProto,
} from '../src/model/onnx-graph.js';

/** Options of {@link writeMergedModel}. */
export interface MergeOptions {
  /** The plain export (not the slotted model `prepare` writes). */
  plainModelPath: string;
  /** A PEFT adapter folder: `adapter_config.json` + `adapter_model.safetensors`. */
  adapterDir: string;
  /** Where the merged `.onnx` goes. */
  outPath: string;
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** A float32 initializer's values, from raw_data (little-endian bytes) or float_data. */
function readFloats(t: TensorProto): Float32Array {
  const name = t.name ?? '';
  if (t.dataType !== ELEM_FLOAT) throw new Error(`initializer ${name} is not float32 (data type ${t.dataType})`);
  if (t.externalData && t.externalData.length > 0) throw new Error(`initializer ${name} uses external data, which merge does not read`);
  const n = (t.dims ?? []).map(toNumber).reduce((p, d) => p * d, 1);
  const raw = t.rawData;
  if (raw && raw.length > 0) {
    if (raw.length !== n * 4) throw new Error(`initializer ${name} has ${raw.length} bytes of raw_data for ${n} floats`);
    if (LITTLE_ENDIAN) return new Float32Array(Uint8Array.from(raw).buffer); // copy: raw may be unaligned
    const view = new DataView(raw.buffer, raw.byteOffset, raw.length);
    return Float32Array.from({ length: n }, (_, i) => view.getFloat32(4 * i, true));
  }
  const floats = t.floatData ?? [];
  if (floats.length !== n) throw new Error(`initializer ${name} has ${floats.length} float_data values for ${n} floats`);
  return Float32Array.from(floats);
}

/** Stores `values` as raw_data (the compact form), clearing float_data. */
function writeFloats(t: TensorProto, values: Float32Array, dims: number[]): void {
  let bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (!LITTLE_ENDIAN) {
    bytes = new Uint8Array(values.byteLength);
    const view = new DataView(bytes.buffer);
    values.forEach((v, i) => view.setFloat32(4 * i, v, true));
  }
  t.dims = dims;
  t.rawData = bytes;
  t.floatData = [];
}

interface ModuleTensors { A?: DecodedTensor; B?: DecodedTensor; weight?: DecodedTensor; bias?: DecodedTensor }

/**
 * Adds s·(Aᵀ·Bᵀ) to `w`, laid out `[d_in, d_out]` (`transposed`: `[d_out, d_in]`, a Gemm with
 * transB=1). A is `[r, d_in]`, B is `[d_out, r]` as PEFT stores them.
 */
function addDelta(w: Float32Array, A: DecodedTensor, B: DecodedTensor, scale: number, dIn: number, dOut: number, transposed: boolean): void {
  const r = A.shape[0]!;
  const a = A.data; // [r, d_in]
  const b = B.data; // [d_out, r]
  const bt = new Float32Array(r * dOut); // [r, d_out], scale folded in
  for (let o = 0; o < dOut; o++) for (let k = 0; k < r; k++) bt[k * dOut + o] = b[o * r + k]! * scale;
  for (let k = 0; k < r; k++) {
    const bRow = k * dOut;
    for (let i = 0; i < dIn; i++) {
      const aki = a[k * dIn + i]!;
      if (aki === 0) continue;
      if (transposed) for (let o = 0; o < dOut; o++) w[o * dIn + i] += aki * bt[bRow + o]!;
      else {
        const row = i * dOut;
        for (let o = 0; o < dOut; o++) w[row + o] += aki * bt[bRow + o]!;
      }
    }
  }
}

/**
 * Writes `outPath`: the plain model with the adapter merged in. Each `/…/<module>/MatMul` (or
 * Gemm) whose module has lora_A/lora_B gets W + s·Aᵀ·Bᵀ; each Gemm head saved with the adapter
 * (`modules_to_save`) gets the adapter's weight `[L, d_in]` and bias `[L]`, and its graph
 * output's label dimension becomes L.
 */
export async function writeMergedModel(opts: MergeOptions): Promise<void> {
  const cfg = parsePeftConfig(await readFile(`${opts.adapterDir}/adapter_config.json`));
  const file = await readFile(`${opts.adapterDir}/adapter_model.safetensors`);
  // A plain Uint8Array view, as the server's loader passes: readSafetensors copies F32 data
  // with slice(), which on a Node Buffer is a view of the whole pool, not a copy.
  const { tensors } = readSafetensors(new Uint8Array(file.buffer, file.byteOffset, file.byteLength));
  const byModule = new Map<string, ModuleTensors>();
  for (const [key, t] of tensors) {
    const p = parsePeftKey(key);
    if (!p) throw new Error(`adapter tensor "${key}" is not a LoRA or modules_to_save key`);
    const e = byModule.get(p.module) ?? {};
    e[p.part] = t;
    byModule.set(p.module, e);
  }

  const model = decodeModel(await readFile(opts.plainModelPath));
  const graph = model.graph as GraphProto | null;
  if (!graph) throw new Error(`${opts.plainModelPath} has no graph`);
  const inits = new Map((graph.initializer as TensorProto[]).map((t) => [t.name ?? '', t] as const));
  const uses = new Map<string, number>();
  for (const n of graph.node as NodeProto[]) for (const i of n.input) uses.set(i, (uses.get(i) ?? 0) + 1);
  /** The initializer `node.input[slot]`, copied first when another node shares it (only this node changes). */
  const ownInit = (node: NodeProto, slot: number): TensorProto => {
    const name = node.input[slot]!;
    const t = inits.get(name);
    if (!t) throw new Error(`node ${node.name}: input ${name} is not an initializer`);
    if ((uses.get(name) ?? 0) <= 1) return t;
    const copy = onnx.TensorProto.create({ name: `${name}/merged/${node.name}`, dataType: t.dataType, dims: t.dims });
    writeFloats(copy, readFloats(t), (t.dims ?? []).map(toNumber));
    graph.initializer.push(copy);
    uses.set(name, uses.get(name)! - 1);
    node.input[slot] = copy.name;
    return copy;
  };

  const done = new Set<string>();
  for (const node of graph.node as NodeProto[]) {
    const module = modulePathOfNode(node);
    const e = module === null ? undefined : byModule.get(module);
    if (!module || !e || (node.opType !== 'MatMul' && node.opType !== 'Gemm')) continue;
    const isGemm = node.opType === 'Gemm';
    if (isGemm && (intAttr(node, 'transA', 0) !== 0 || floatAttr(node, 'alpha', 1) !== 1 || floatAttr(node, 'beta', 1) !== 1)) {
      throw new Error(`${module}: Gemm with transA/alpha/beta is not supported`);
    }
    const transB = isGemm && intAttr(node, 'transB', 0) === 1;
    if (e.A || e.B) {
      if (!e.A || !e.B) throw new Error(`${module}: adapter has lora_${e.A ? 'A' : 'B'} without lora_${e.A ? 'B' : 'A'}`);
      const w = ownInit(node, 1);
      const dims = (w.dims ?? []).map(toNumber);
      const [dIn, dOut] = transB ? [dims[1]!, dims[0]!] : [dims[0]!, dims[1]!];
      if (dims.length !== 2 || e.A.shape[1] !== dIn || e.B.shape[0] !== dOut || e.A.shape[0] !== e.B.shape[1]) {
        throw new Error(`${module}: lora_A [${e.A.shape}] / lora_B [${e.B.shape}] do not fit the weight [${dims}] of ${node.name}`);
      }
      const values = readFloats(w);
      addDelta(values, e.A, e.B, scaleFor(cfg, module), dIn, dOut, transB);
      writeFloats(w, values, dims);
      done.add(module);
    } else if (e.weight) {
      if (!isGemm) throw new Error(`${module}: a saved head must be a Gemm node, ${node.name} is a MatMul`);
      const [labels, dIn] = e.weight.shape as [number, number];
      const w = ownInit(node, 1);
      const dims = (w.dims ?? []).map(toNumber);
      const baseDIn = transB ? dims[1] : dims[0];
      if (e.weight.shape.length !== 2 || dIn !== baseDIn) throw new Error(`${module}: head weight [${e.weight.shape}] does not fit [${dims}] of ${node.name}`);
      if (transB) writeFloats(w, e.weight.data, [labels, dIn]);
      else {
        const t = new Float32Array(dIn * labels); // [d_in, L]
        for (let l = 0; l < labels; l++) for (let i = 0; i < dIn; i++) t[i * labels + l] = e.weight.data[l * dIn + i]!;
        writeFloats(w, t, [dIn, labels]);
      }
      const bias = e.bias?.data ?? new Float32Array(labels);
      if (node.input[2]) writeFloats(ownInit(node, 2), bias, [labels]);
      else {
        const b = onnx.TensorProto.create({ name: `${module}.bias`, dataType: ELEM_FLOAT });
        writeFloats(b, bias, [labels]);
        graph.initializer.push(b);
        node.input[2] = b.name;
      }
      const out = graph.output.find((o) => o.name === node.output[0]);
      const dim = out?.type?.tensorType?.shape?.dim;
      if (dim && dim.length === 2) dim[1] = onnx.TensorShapeProto.Dimension.create({ dimValue: labels });
      graph.valueInfo = graph.valueInfo.filter((v) => v.name !== node.output[0]);
      done.add(module);
    }
  }
  const missing = [...byModule.keys()].filter((m) => !done.has(m));
  if (missing.length > 0) throw new Error(`adapter modules with no matching MatMul/Gemm in ${opts.plainModelPath}: ${missing.join(', ')}`);

  const tmp = `${opts.outPath}.tmp-${process.pid}`;
  await writeFile(tmp, encodeModel(model));
  await rename(tmp, opts.outPath);
}
