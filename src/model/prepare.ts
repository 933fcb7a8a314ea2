import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError, throwIfProblems } from '../errors.js';
import { DECODER_PROJECTIONS, readDecoderLayout, readSpecialTokens } from './decoder-layout.js';
import type { GenerationSpec, HeadSlot, LoraSlot, ModelManifest, ModelTask } from './manifest.js';
import {
  decodeModel, defaultOpset, ELEM_FLOAT, ELEM_INT64, encodeModel, floatAttr, intAttr, makeInput,
  makeInt64Initializer, makeNode, toNumber, type GraphProto, type NodeProto,
} from './onnx-graph.js';

/** Options of `adapterhost prepare`. */
export interface PrepareOptions {
  /** Plain ONNX export (torch.onnx / optimum), opset ≥ 13. */
  modelPath: string;
  /** Hugging Face tokenizer.json, copied next to the model. */
  tokenizerPath: string;
  /** PEFT `target_modules` semantics: a module matches when its path equals a key or ends with "." + key.
   * Empty for a decoder: every projection of its attention and MLP blocks ({@link DECODER_PROJECTIONS}) that the graph has. */
  targets: string[];
  /** `modules_to_save` heads that become per-adapter weight slots (e.g. `classifier`). */
  heads: string[];
  maxRank: number;
  baseModel: string;
  aliases?: string[];
  task: ModelTask;
  maxLength: number;
  outDir: string;
  /** Graph output holding the pooled sentence embedding (default: `sentence_embedding` if present). */
  embeddingOutput?: string;
}

/** The name of the extra graph input that says which bank entry each row uses. */
export const ADAPTER_INDEX_INPUT = 'adapter_index';

/** `/encoder/layer.0/attention/self/query/MatMul` → `encoder.layer.0.attention.self.query`. */
export function modulePathOfNode(node: NodeProto): string | null {
  if (!node.name || !node.name.startsWith('/')) return null;
  const parts = node.name.slice(1).split('/');
  if (parts.length < 2) return null;
  return parts.slice(0, -1).join('.');
}

function matches(module: string, keys: string[]): boolean {
  return keys.some((k) => module === k || module.endsWith(`.${k}`));
}

interface LinearInfo { node: NodeProto; module: string; dIn: number; dOut: number; weight: string; kind: 'MatMul' | 'Gemm' }

/** Checks that `node` is a linear layer (activation × weight initializer) and reads its shape. */
function linearInfo(node: NodeProto, module: string, inits: Map<string, number[]>): LinearInfo | string {
  const w = node.input[1];
  const dims = w === undefined ? undefined : inits.get(w);
  if (!dims || dims.length !== 2) return `${module} (${node.opType} node "${node.name}") is not a linear layer: its second input is not a 2-D weight initializer`;
  if (node.opType === 'MatMul') return { node, module, dIn: dims[0]!, dOut: dims[1]!, weight: w!, kind: 'MatMul' };
  if (intAttr(node, 'transA', 0) !== 0 || floatAttr(node, 'alpha', 1) !== 1 || floatAttr(node, 'beta', 1) !== 1) {
    return `${module} (Gemm node "${node.name}") uses transA/alpha/beta, which prepare does not rewrite`;
  }
  const transB = intAttr(node, 'transB', 0) === 1;
  return { node, module, dIn: transB ? dims[1]! : dims[0]!, dOut: transB ? dims[0]! : dims[1]!, weight: w!, kind: 'Gemm' };
}

const slotName = (module: string, part: string) => `lora.${module}.${part}`;
const headName = (module: string, part: string) => `head.${module}.${part}`;

/**
 * Rewrites each targeted linear layer `y = x·W` into `y = x·W + (x·A[idx])·B[idx]`, where the
 * banks A `[k, d_in, r]` and B `[k, r, d_out]` are graph inputs and `adapter_index [batch]`
 * picks each row's bank entry (the BGMV layout in plain ONNX: one run mixes adapters).
 */
function addLoraSlot(graph: GraphProto, info: LinearInfo, at: number): LoraSlot {
  const { node, module } = info;
  const x = node.input[0]!;
  const y = node.output[0]!;
  const base = `${y}/lora_base`;
  node.output[0] = base;
  const A = slotName(module, 'A');
  const B = slotName(module, 'B');
  const p = `/lora/${module}`;
  const nodes: NodeProto[] = [
    makeNode('Gather', [A, ADAPTER_INDEX_INPUT], [`${p}/A_rows`], `${p}/GatherA`, { axis: 0 }), // [b, d_in, r]
    makeNode('Gather', [B, ADAPTER_INDEX_INPUT], [`${p}/B_rows`], `${p}/GatherB`, { axis: 0 }), // [b, r, d_out]
  ];
  if (info.kind === 'Gemm') {
    // x is [b, d_in]: lift to [b, 1, d_in] for the batched MatMul, drop the axis after.
    nodes.push(
      makeNode('Unsqueeze', [x, 'lora.axes_1'], [`${p}/x3`], `${p}/Unsqueeze`),
      makeNode('MatMul', [`${p}/x3`, `${p}/A_rows`], [`${p}/xa`], `${p}/MatMulA`),
      makeNode('MatMul', [`${p}/xa`, `${p}/B_rows`], [`${p}/delta3`], `${p}/MatMulB`),
      makeNode('Squeeze', [`${p}/delta3`, 'lora.axes_1'], [`${p}/delta`], `${p}/Squeeze`),
    );
  } else {
    nodes.push(
      makeNode('MatMul', [x, `${p}/A_rows`], [`${p}/xa`], `${p}/MatMulA`), // [b, s, r]
      makeNode('MatMul', [`${p}/xa`, `${p}/B_rows`], [`${p}/delta`], `${p}/MatMulB`), // [b, s, d_out]
    );
  }
  nodes.push(makeNode('Add', [base, `${p}/delta`], [y], `${p}/Add`));
  graph.node.splice(at + 1, 0, ...nodes);
  graph.input.push(makeInput(A, ELEM_FLOAT, ['adapters', info.dIn, 'rank']));
  graph.input.push(makeInput(B, ELEM_FLOAT, ['adapters', 'rank', info.dOut]));
  return { module, dIn: info.dIn, dOut: info.dOut, inputA: A, inputB: B };
}

/** Replaces a Gemm head `y = x·Wᵀ + c` by `y = x·W[idx] + c[idx]` with weight/bias banks as inputs. */
function replaceHead(graph: GraphProto, info: LinearInfo, at: number): HeadSlot {
  const { node, module } = info;
  const x = node.input[0]!;
  const y = node.output[0]!;
  const W = headName(module, 'weight');
  const C = headName(module, 'bias');
  const p = `/head/${module}`;
  const nodes = [
    makeNode('Gather', [W, ADAPTER_INDEX_INPUT], [`${p}/W_rows`], `${p}/GatherW`, { axis: 0 }), // [b, d_in, L]
    makeNode('Gather', [C, ADAPTER_INDEX_INPUT], [`${p}/C_rows`], `${p}/GatherC`, { axis: 0 }), // [b, L]
    makeNode('Unsqueeze', [x, 'lora.axes_1'], [`${p}/x3`], `${p}/Unsqueeze`), // [b, 1, d_in]
    makeNode('MatMul', [`${p}/x3`, `${p}/W_rows`], [`${p}/y3`], `${p}/MatMul`), // [b, 1, L]
    makeNode('Squeeze', [`${p}/y3`, 'lora.axes_1'], [`${p}/y`], `${p}/Squeeze`), // [b, L]
    makeNode('Add', [`${p}/y`, `${p}/C_rows`], [y], `${p}/Add`),
  ];
  graph.node.splice(at, 1, ...nodes);
  graph.input.push(makeInput(W, ELEM_FLOAT, ['adapters', info.dIn, 'labels']));
  graph.input.push(makeInput(C, ELEM_FLOAT, ['adapters', 'labels']));
  const out = graph.output.find((o) => o.name === y);
  if (out) {
    const i = graph.output.indexOf(out);
    graph.output[i] = makeInput(y, ELEM_FLOAT, ['batch', 'labels']);
  }
  return { module, dIn: info.dIn, inputWeight: W, inputBias: C, output: y };
}

function dropUnusedInitializers(graph: GraphProto): void {
  const used = new Set<string>();
  for (const n of graph.node as NodeProto[]) for (const i of n.input) used.add(i);
  for (const o of graph.output) used.add(o.name ?? '');
  graph.initializer = graph.initializer.filter((t) => used.has(t.name ?? ''));
}

/** Runs `prepare`: reads a plain export, adds LoRA and head slots, writes model.onnx + model.json + tokenizer.json. */
export async function prepareModel(opts: PrepareOptions): Promise<ModelManifest> {
  const problems: string[] = [];
  if (!Number.isInteger(opts.maxRank) || opts.maxRank < 1 || opts.maxRank > 1024) problems.push('max rank must be an integer from 1 to 1024');
  const decoder = opts.task === 'text-generation';
  if (opts.targets.length === 0 && !decoder) problems.push('at least one target module is required');
  if (decoder && opts.heads.length > 0) problems.push(`a text-generation base has no head slots (got --heads ${opts.heads.join(',')}): decoder adapters may not carry modules_to_save`);
  throwIfProblems('INVALID_MODEL', 'prepare', problems);

  let bytes: Buffer;
  try {
    bytes = await readFile(opts.modelPath);
  } catch (e) {
    throw new AppError('INVALID_MODEL', `cannot read ${opts.modelPath}: ${(e as Error).message}`);
  }
  let model;
  try {
    model = decodeModel(bytes);
  } catch (e) {
    throw new AppError('INVALID_MODEL', `${opts.modelPath} is not an ONNX model: ${(e as Error).message}`);
  }
  const graph = model.graph as GraphProto | null;
  if (!graph) throw new AppError('INVALID_MODEL', `${opts.modelPath} has no graph`);
  const opset = defaultOpset(model);
  if (opset < 13) throw new AppError('INVALID_MODEL', `${opts.modelPath} uses opset ${opset}; prepare needs opset 13 or newer (re-export with opset_version=17)`);
  if (graph.input.some((i) => i.name === ADAPTER_INDEX_INPUT)) throw new AppError('INVALID_MODEL', `${opts.modelPath} already has an "${ADAPTER_INDEX_INPUT}" input: it was prepared before`);

  const inits = new Map(graph.initializer.map((t) => [t.name ?? '', (t.dims ?? []).map(toNumber)] as const));
  let layout: ReturnType<typeof readDecoderLayout> = null;
  if (decoder) {
    layout = readDecoderLayout(graph, problems);
    if (opts.targets.length === 0) {
      const present = new Set((graph.node as NodeProto[]).map(modulePathOfNode).filter((m): m is string => m !== null).map((m) => m.split('.').pop()!));
      opts = { ...opts, targets: DECODER_PROJECTIONS.filter((t) => present.has(t)) };
      if (opts.targets.length === 0) problems.push(`no linear layer named after a Llama projection (${DECODER_PROJECTIONS.join(', ')}) was found: pass --targets`);
    }
  }
  const loraTargets: LinearInfo[] = [];
  const headTargets: LinearInfo[] = [];
  const seenTarget = new Set<string>();
  const seenHead = new Set<string>();
  for (const node of graph.node as NodeProto[]) {
    const module = modulePathOfNode(node);
    if (!module) continue;
    const isHead = matches(module, opts.heads);
    const isTarget = !isHead && matches(module, opts.targets);
    if (!isHead && !isTarget) continue;
    if (node.opType !== 'MatMul' && node.opType !== 'Gemm') continue;
    const info = linearInfo(node, module, inits);
    if (typeof info === 'string') { problems.push(info); continue; }
    if (isHead) {
      if (info.kind !== 'Gemm') { problems.push(`head ${module} is a MatMul; only Gemm heads (a Linear on a pooled [batch, hidden] input) can become head slots`); continue; }
      headTargets.push(info); opts.heads.filter((h) => matches(module, [h])).forEach((h) => seenHead.add(h));
    } else {
      loraTargets.push(info); opts.targets.filter((t) => matches(module, [t])).forEach((t) => seenTarget.add(t));
    }
  }
  for (const t of opts.targets) if (!seenTarget.has(t)) problems.push(`target "${t}" matches no linear layer (MatMul/Gemm named /…/${t}/MatMul) in the model`);
  for (const h of opts.heads) if (!seenHead.has(h)) problems.push(`head "${h}" matches no Gemm layer in the model`);
  const inputNames = new Set(graph.input.map((i) => i.name));
  for (const need of ['input_ids', 'attention_mask']) if (!inputNames.has(need)) problems.push(`model has no "${need}" input`);
  if (!decoder && [...inputNames].some((n) => n?.startsWith('past_key_values.'))) problems.push('the model has past_key_values inputs: it is a decoder, prepare it with --task text-generation');
  const special = decoder ? await readSpecialTokens(opts.tokenizerPath, problems) : null;
  throwIfProblems('INVALID_MODEL', `cannot prepare ${opts.modelPath}`, problems);

  const loraSlots: LoraSlot[] = [];
  const heads: HeadSlot[] = [];
  for (const info of loraTargets) loraSlots.push(addLoraSlot(graph, info, (graph.node as NodeProto[]).indexOf(info.node)));
  for (const info of headTargets) heads.push(replaceHead(graph, info, (graph.node as NodeProto[]).indexOf(info.node)));
  graph.initializer.push(makeInt64Initializer('lora.axes_1', [1]));
  graph.input.push(makeInput(ADAPTER_INDEX_INPUT, ELEM_INT64, ['batch']));
  graph.valueInfo = []; // intermediate shapes changed (heads); ORT infers them again
  dropUnusedInitializers(graph);

  const embeddingOutput = opts.embeddingOutput ?? (graph.output.some((o) => o.name === 'sentence_embedding') ? 'sentence_embedding' : null);
  if (embeddingOutput && !graph.output.some((o) => o.name === embeddingOutput)) {
    throw new AppError('INVALID_MODEL', `embedding output "${embeddingOutput}" is not a graph output`);
  }
  await mkdir(opts.outDir, { recursive: true });
  const modelFile = path.join(opts.outDir, 'model.onnx');
  await writeFile(modelFile, encodeModel(model));
  await copyFile(opts.tokenizerPath, path.join(opts.outDir, 'tokenizer.json'));
  for (const extra of ['tokenizer_config.json', 'generation_config.json']) {
    const from = path.join(path.dirname(opts.tokenizerPath), extra);
    if (decoder && (await stat(from).catch(() => null))) await copyFile(from, path.join(opts.outDir, extra));
  }
  const generation: GenerationSpec | undefined = layout && special ? { ...layout, ...special, maxPositions: opts.maxLength } : undefined;
  const manifest: ModelManifest = {
    format: 'adapterhost.model/v1',
    baseModel: opts.baseModel,
    aliases: opts.aliases ?? [],
    task: opts.task,
    modelFile: 'model.onnx',
    tokenizerFile: 'tokenizer.json',
    maxLength: opts.maxLength,
    hiddenSize: heads[0]?.dIn ?? loraSlots[0]!.dIn,
    maxRank: opts.maxRank,
    targets: opts.targets,
    inputs: {
      inputIds: 'input_ids',
      attentionMask: 'attention_mask',
      tokenTypeIds: inputNames.has('token_type_ids') ? 'token_type_ids' : null,
      adapterIndex: ADAPTER_INDEX_INPUT,
    },
    embeddingOutput,
    loraSlots,
    heads,
    baseBytes: (await stat(modelFile)).size,
    ...(generation ? { generation } : {}),
  };
  await writeFile(path.join(opts.outDir, 'model.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}
