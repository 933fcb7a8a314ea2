/**
 * A synthetic BERT encoder with seeded random weights, written as a plain ONNX file that looks
 * like a torch.onnx export of a Hugging Face BERT with mean pooling and a classifier: the same
 * node names (`/encoder/layer.0/attention/self/query/MatMul`), the same op pattern, opset 17.
 * Benchmarks use it to get BERT-base-sized models without Python or downloads; `prepare`
 * treats it exactly like a real export.
 *
 * The file is streamed: small tensors and the nodes are encoded by onnx-proto, the large float
 * initializers are appended as raw_data one at a time, so memory peaks at one tensor (the word
 * embeddings) rather than the whole model.
 *
 * Usage: node dist/bench/synthetic-bert.js <outDir> [base|distilbert|tiny]
 */
import { mkdir, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ELEM_FLOAT, ELEM_INT64, encodeModel, makeInput, onnx, type NodeProto, type TensorProto,
} from '../src/model/onnx-graph.js';

/** Shape of a synthetic BERT. */
export interface BertShape {
  /** Transformer layers. */
  layers: number;
  /** Hidden size (d_model); must be divisible by `heads`. */
  hidden: number;
  /** Attention heads. */
  heads: number;
  /** Feed-forward inner size. */
  intermediate: number;
  /** Vocabulary entries (tokenizer and word embeddings); at least {@link MIN_VOCAB}. */
  vocab: number;
  /** Largest sequence length (position embeddings). */
  maxPos: number;
}

/** Options of {@link writeSyntheticBert}. */
export interface SyntheticBertOptions extends BertShape {
  /** Output folder; `model.onnx` and `tokenizer.json` are written into it. */
  dir: string;
  /** Outputs of the classifier head (`logits [batch, numLabels]`). */
  numLabels: number;
  /** PRNG seed: the same options give byte-identical files. */
  seed: number;
}

/** bert-base-uncased. */
export const BERT_BASE: BertShape = { layers: 12, hidden: 768, heads: 12, intermediate: 3072, vocab: 30522, maxPos: 512 };
/** distilbert-base-uncased's sizes (6 layers), laid out as a BERT graph. */
export const DISTILBERT_SHAPES: BertShape = { layers: 6, hidden: 768, heads: 12, intermediate: 3072, vocab: 30522, maxPos: 512 };
/** A test-sized model (a few hundred kB). */
export const TINY_BERT: BertShape = { layers: 2, hidden: 64, heads: 4, intermediate: 128, vocab: 200, maxPos: 64 };

/** Standard deviation of every random weight (BERT's `initializer_range`). */
const INIT_STD = 0.02;
const LAYER_NORM_EPS = 1e-12;
/** Protobuf (and so ONNX Runtime without external data) cannot read a model of 2 GiB or more. */
const MAX_MODEL_BYTES = 2 ** 31 - 1;

// ---------------------------------------------------------------------------------------
// Seeded randomness

/** mulberry32: a small, fast 32-bit PRNG; returns uniform numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Normal samples from a seeded uniform stream (Box-Muller, both values of each pair used). */
export class NormalRng {
  private readonly uniform: () => number;
  private spare: number | null = null;

  constructor(seed: number) {
    this.uniform = mulberry32(seed);
  }

  /** One N(0, 1) sample. */
  next(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const u1 = 1 - this.uniform(); // (0, 1]: log stays finite
    const u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }

  /** Fills `out` with N(mean, std²) samples. */
  fill(out: Float32Array, std: number, mean = 0): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = mean + std * this.next();
    return out;
  }
}

// ---------------------------------------------------------------------------------------
// Graph building

type AttrValue = number | number[] | { float: number };

/** A float initializer whose values are made only when the file is written. */
interface StreamedWeight {
  name: string;
  dims: number[]; // row-major
  fill: (out: Float32Array) => void;
}

/** Collects nodes and initializers, naming them the way torch.onnx does. */
class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly constants: TensorProto[] = [];
  readonly weights: StreamedWeight[] = [];
  private readonly used = new Map<string, number>();
  private matmulWeights = 0;

  /** Adds `scope/opType` (suffixed `_1`, `_2` … when repeated, as torch does) and returns its output name. */
  op(opType: string, scope: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string): string {
    const base = `${scope}/${opType}`;
    const n = this.used.get(base) ?? 0;
    this.used.set(base, n + 1);
    const name = n === 0 ? base : `${base}_${n}`;
    const out = output ?? `${name}_output_0`;
    this.nodes.push(onnx.NodeProto.create({ opType, name, input: inputs, output: [out], attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)) }));
    return out;
  }

  /** A streamed random float weight, named like a PyTorch parameter. */
  weight(name: string, dims: number[], fill: (out: Float32Array) => void): string {
    this.weights.push({ name, dims, fill });
    return name;
  }

  /** A MatMul weight: torch exports the transposed Linear weight under a generated `onnx::MatMul_N` name. */
  matmulWeight(dims: number[], fill: (out: Float32Array) => void): string {
    return this.weight(`onnx::MatMul_${1000 + this.matmulWeights++}`, dims, fill);
  }

  int64(name: string, dims: number[], values: number[]): string {
    this.constants.push(onnx.TensorProto.create({ name, dataType: ELEM_INT64, dims, int64Data: values }));
    return name;
  }

  float(name: string, dims: number[], values: number[]): string {
    this.constants.push(onnx.TensorProto.create({ name, dataType: ELEM_FLOAT, dims, rawData: floatBytes(Float32Array.from(values)) }));
    return name;
  }
}

function attribute(name: string, v: AttrValue) {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') return onnx.AttributeProto.create({ name, type: T.INT, i: v });
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: T.INTS, ints: v });
  return onnx.AttributeProto.create({ name, type: T.FLOAT, f: v.float });
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** Little-endian float32 bytes of `data` (a view when the host is little-endian). */
function floatBytes(data: Float32Array): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (LITTLE_ENDIAN) return bytes;
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(4 * i, data[i]!, true);
  return out;
}

/** Builds the encoder graph; weights are drawn from `rng` in the order they are written. */
function buildGraph(o: SyntheticBertOptions, rng: NormalRng): GraphBuilder {
  const { layers, hidden, heads, intermediate, vocab, maxPos, numLabels } = o;
  const headDim = hidden / heads;
  const g = new GraphBuilder();
  const random = (out: Float32Array) => void rng.fill(out, INIT_STD);
  const ones = (out: Float32Array) => void out.fill(1);
  const zeros = (out: Float32Array) => void out.fill(0);
  const layerNorm = (scope: string, param: string, x: string) =>
    g.op('LayerNormalization', `${scope}/LayerNorm`, [x, g.weight(`${param}.LayerNorm.weight`, [hidden], ones), g.weight(`${param}.LayerNorm.bias`, [hidden], zeros)], { axis: -1, epsilon: { float: LAYER_NORM_EPS } });
  /** `x·W + b` as torch exports a Linear on a 3-D input: MatMul with the transposed weight, then Add(bias, ·). */
  const linear = (scope: string, param: string, x: string, dIn: number, dOut: number) => {
    const y = g.op('MatMul', scope, [x, g.matmulWeight([dIn, dOut], random)]);
    return g.op('Add', scope, [g.weight(`${param}.bias`, [dOut], random), y]);
  };

  // Shared constants.
  const axes0 = g.int64('onnx::Unsqueeze_axes_0', [1], [0]);
  const axes1 = g.int64('onnx::Unsqueeze_axes_1', [1], [1]);
  const axes2 = g.int64('onnx::Unsqueeze_axes_2', [1], [2]);
  const axesLast = g.int64('onnx::Unsqueeze_axes_-1', [1], [-1]);
  const rangeStart = g.int64('onnx::Range_start', [], [0]);
  const rangeDelta = g.int64('onnx::Range_delta', [], [1]);
  const seqAxis = g.int64('onnx::Gather_seq_axis', [], [1]);
  const headsShape = g.int64('onnx::Reshape_heads', [4], [0, 0, heads, headDim]); // [b, s, H, d]
  const mergeShape = g.int64('onnx::Reshape_merge', [3], [0, 0, hidden]); // [b, s, hidden]
  const one = g.float('onnx::Sub_one', [], [1]);
  const maskFill = g.float('onnx::Mul_mask_fill', [], [-10000]);
  const scoreScale = g.float('onnx::Div_sqrt_head_dim', [], [Math.sqrt(headDim)]);
  const sqrt2 = g.float('onnx::Div_sqrt2', [], [Math.SQRT2]);
  const half = g.float('onnx::Mul_half', [], [0.5]);
  const tiny = g.float('onnx::Clip_min', [], [1e-9]);

  // Embeddings: word + position + token type, then LayerNorm (positions = Range(0, seq) as torch traces it).
  const shape = g.op('Shape', '/embeddings', ['input_ids']);
  const seqLen = g.op('Cast', '/embeddings', [g.op('Gather', '/embeddings', [shape, seqAxis], { axis: 0 })], { to: ELEM_INT64 }); // scalar
  const positions = g.op('Unsqueeze', '/embeddings', [g.op('Range', '/embeddings', [rangeStart, seqLen, rangeDelta]), axes0]); // [1, s]
  const words = g.op('Gather', '/embeddings/word_embeddings', [g.weight('embeddings.word_embeddings.weight', [vocab, hidden], random), 'input_ids'], { axis: 0 });
  const posEmb = g.op('Gather', '/embeddings/position_embeddings', [g.weight('embeddings.position_embeddings.weight', [maxPos, hidden], random), positions], { axis: 0 });
  const wordsPos = g.op('Add', '/embeddings', [words, posEmb]);
  const types = g.op('Gather', '/embeddings/token_type_embeddings', [g.weight('embeddings.token_type_embeddings.weight', [2, hidden], random), 'token_type_ids'], { axis: 0 });
  let x = layerNorm('/embeddings', 'embeddings', g.op('Add', '/embeddings', [wordsPos, types]));

  // Extended attention mask: (1 - mask) * -10000, [b, 1, 1, s].
  const mask4 = g.op('Unsqueeze', '', [g.op('Unsqueeze', '', ['attention_mask', axes1]), axes2]);
  const maskBias = g.op('Mul', '', [g.op('Sub', '', [one, g.op('Cast', '', [mask4], { to: ELEM_FLOAT })]), maskFill]);

  for (let i = 0; i < layers; i++) {
    const L = `/encoder/layer.${i}`;
    const P = `encoder.layer.${i}`;
    const self = `${L}/attention/self`;
    const reshape = (t: string) => g.op('Reshape', self, [t, headsShape], { allowzero: 0 }); // [b, s, H, d]
    const transpose = (t: string, perm: number[]) => g.op('Transpose', self, [t], { perm });
    // Node order (and so the _N suffixes) as torch traces BertSelfAttention.
    const q = transpose(reshape(linear(`${self}/query`, `${P}.attention.self.query`, x, hidden, hidden)), [0, 2, 1, 3]); // [b, H, s, d]
    const kHeads = reshape(linear(`${self}/key`, `${P}.attention.self.key`, x, hidden, hidden));
    const v = transpose(reshape(linear(`${self}/value`, `${P}.attention.self.value`, x, hidden, hidden)), [0, 2, 1, 3]); // [b, H, s, d]
    const k = transpose(kHeads, [0, 2, 3, 1]); // [b, H, d, s]
    const scores = g.op('Add', self, [g.op('Div', self, [g.op('MatMul', self, [q, k]), scoreScale]), maskBias]); // [b, H, s, s]
    const probs = g.op('Softmax', self, [scores], { axis: -1 });
    const context = g.op('Transpose', self, [g.op('MatMul', self, [probs, v])], { perm: [0, 2, 1, 3] }); // [b, s, H, d]
    const merged = g.op('Reshape', self, [context, mergeShape], { allowzero: 0 }); // [b, s, hidden]
    const attnOut = linear(`${L}/attention/output/dense`, `${P}.attention.output.dense`, merged, hidden, hidden);
    const a = layerNorm(`${L}/attention/output`, `${P}.attention.output`, g.op('Add', `${L}/attention/output`, [attnOut, x]));

    const inter = linear(`${L}/intermediate/dense`, `${P}.intermediate.dense`, a, hidden, intermediate);
    const act = `${L}/intermediate`; // GELU, erf form: 0.5·x·(1 + erf(x/√2))
    const erf1 = g.op('Add', act, [g.op('Erf', act, [g.op('Div', act, [inter, sqrt2])]), one]);
    const gelu = g.op('Mul', act, [g.op('Mul', act, [inter, erf1]), half]);
    const out = linear(`${L}/output/dense`, `${P}.output.dense`, gelu, intermediate, hidden);
    x = layerNorm(`${L}/output`, `${P}.output`, g.op('Add', `${L}/output`, [out, a]));
  }

  // Masked mean pooling → sentence_embedding [b, hidden]; classifier → logits [b, L].
  const maskF = g.op('Cast', '', [g.op('Unsqueeze', '', ['attention_mask', axesLast])], { to: ELEM_FLOAT }); // [b, s, 1]
  const summed = g.op('ReduceSum', '', [g.op('Mul', '', [x, maskF]), axes1], { keepdims: 0 }); // [b, hidden]
  const counts = g.op('Clip', '', [g.op('ReduceSum', '', [maskF, axes1], { keepdims: 0 }), tiny]); // [b, 1]
  const embedding = g.op('Div', '', [summed, counts], {}, 'sentence_embedding');
  g.op('Gemm', '/classifier', [embedding, g.weight('classifier.weight', [numLabels, hidden], random), g.weight('classifier.bias', [numLabels], random)], { alpha: { float: 1 }, beta: { float: 1 }, transB: 1 }, 'logits');
  return g;
}

// ---------------------------------------------------------------------------------------
// Streaming writer

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

/** Protobuf tags (field << 3 | wire type 2). */
const TAG_MODEL_GRAPH = (7 << 3) | 2;
const TAG_GRAPH_INITIALIZER = (5 << 3) | 2;
const TAG_TENSOR_RAW_DATA = (9 << 3) | 2;

/**
 * Writes ModelProto = header fields + graph, where the graph's bytes are the nodes and small
 * initializers (encoded by onnx-proto) followed by the streamed initializers. Protobuf merges
 * repeated fields across the message, so appending `initializer` entries is valid.
 */
async function writeStreamed(file: string, o: SyntheticBertOptions, g: GraphBuilder): Promise<void> {
  const { hidden, numLabels } = o;
  const graphHead = onnx.GraphProto.encode(onnx.GraphProto.create({
    name: 'main_graph',
    node: g.nodes,
    initializer: g.constants,
    input: ['input_ids', 'attention_mask', 'token_type_ids'].map((n) => makeInput(n, ELEM_INT64, ['batch', 'sequence'])),
    output: [makeInput('logits', ELEM_FLOAT, ['batch', numLabels]), makeInput('sentence_embedding', ELEM_FLOAT, ['batch', hidden])],
  })).finish();
  const modelHead = encodeModel(onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'adapterhost-bench',
    producerVersion: '1',
    docString: `synthetic BERT (${o.layers} layers, hidden ${o.hidden}, seed ${o.seed}); random weights, structure of a torch.onnx export`,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: 17 })],
  }));
  const entries = g.weights.map((w) => {
    const header = onnx.TensorProto.encode(onnx.TensorProto.create({ name: w.name, dataType: ELEM_FLOAT, dims: w.dims })).finish();
    const dataBytes = w.dims.reduce((p, d) => p * d, 1) * 4;
    const tensorBytes = header.length + 1 + varint(dataBytes).length + dataBytes;
    return { w, header, dataBytes, tensorBytes };
  });
  const graphBytes = graphHead.length + entries.reduce((s, e) => s + 1 + varint(e.tensorBytes).length + e.tensorBytes, 0);
  const total = modelHead.length + 1 + varint(graphBytes).length + graphBytes;
  if (total > MAX_MODEL_BYTES) throw new RangeError(`model would be ${total} bytes; ONNX protobuf files must stay under 2 GiB`);

  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  try {
    await fh.write(modelHead);
    await fh.write(Uint8Array.from([TAG_MODEL_GRAPH, ...varint(graphBytes)]));
    await fh.write(graphHead);
    for (const e of entries) {
      await fh.write(Uint8Array.from([TAG_GRAPH_INITIALIZER, ...varint(e.tensorBytes)]));
      await fh.write(e.header);
      await fh.write(Uint8Array.from([TAG_TENSOR_RAW_DATA, ...varint(e.dataBytes)]));
      const data = new Float32Array(e.dataBytes / 4); // [dims...]
      e.w.fill(data);
      await fh.write(floatBytes(data));
    }
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await rename(tmp, file);
}

// ---------------------------------------------------------------------------------------
// Tokenizer

const SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
const LETTERS = 'abcdefghijklmnopqrstuvwxyz'.split('');
const DIGITS = '0123456789'.split('');
/** Specials, letters, digits and `##` + letters: what every word needs to tokenize without [UNK]. */
export const MIN_VOCAB = SPECIALS.length + LETTERS.length + DIGITS.length + LETTERS.length;
const PUNCTUATION = ".,!?;:'\"()-/&%$#@*+=".split('');
/** Common English words and suffixes, so English benchmark text gets realistic token counts. */
const COMMON_WORDS = (
  'the of and to a in is it you that he was for on are with as i his they be at one have this from or had by not ' +
  'but what some we can out other were all there when up use your how said an each she which do their time if will ' +
  'way about many then them write would like so these her long make thing see him two has look more day could go come ' +
  'did number sound no most people my over know water than call first who may down side been now find any new work part ' +
  'take get place made live where after back little only round man year came show every good me give our under name very ' +
  'through just form great think say help low line before turn cause same mean differ move right boy old too does tell ' +
  'free offer win money click now please meeting tomorrow call thanks order account service email message today week'
).split(' ');
const SUFFIXES = ['s', 'ed', 'ing', 'er', 'ly', 'es', 'est', 'tion', 'ment', 'ness', 'able', 'al', 'ic', 'ful', 'less', 'y'].map((s) => `##${s}`);
const CONSONANTS = 'bcdfghjklmnprstvwz'.split('');
const VOWELS = 'aeiou'.split('');

/** The vocabulary, in id order: exactly `size` distinct entries. */
export function syntheticVocab(size: number): string[] {
  if (!Number.isInteger(size) || size < MIN_VOCAB) throw new RangeError(`vocab must be an integer of at least ${MIN_VOCAB}, got ${size}`);
  const vocab: string[] = [];
  const seen = new Set<string>();
  const add = (t: string) => {
    if (vocab.length < size && !seen.has(t)) { seen.add(t); vocab.push(t); }
  };
  [...SPECIALS, ...LETTERS, ...DIGITS, ...LETTERS.map((l) => `##${l}`), ...DIGITS.map((d) => `##${d}`), ...PUNCTUATION, ...COMMON_WORDS, ...SUFFIXES].forEach(add);
  // Made-up pieces: consonant-vowel syllables, 1, 2, 3 … long, each as a word and a continuation.
  const syllables = CONSONANTS.flatMap((c) => VOWELS.map((v) => c + v));
  let level = syllables;
  while (vocab.length < size) {
    for (const s of level) { add(s); add(`##${s}`); if (vocab.length >= size) break; }
    level = level.length * syllables.length > size * 4 ? level.map((s, i) => s + syllables[i % syllables.length]) : level.flatMap((s) => syllables.map((t) => s + t));
  }
  return vocab;
}

/** A Hugging Face tokenizer.json for a lowercase BERT WordPiece tokenizer over `vocab`. */
export function syntheticTokenizerJson(vocab: string[], maxLength: number): unknown {
  const id = (t: string) => vocab.indexOf(t);
  const special = (t: string) => ({ id: id(t), content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const tok = (t: string, typeId: number) => ({ SpecialToken: { id: t, type_id: typeId } });
  const seq = (s: 'A' | 'B', typeId: number) => ({ Sequence: { id: s, type_id: typeId } });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map(special),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [tok('[CLS]', 0), seq('A', 0), tok('[SEP]', 0)],
      pair: [tok('[CLS]', 0), seq('A', 0), tok('[SEP]', 0), seq('B', 1), tok('[SEP]', 1)],
      special_tokens: Object.fromEntries(['[CLS]', '[SEP]'].map((t) => [t, { id: t, ids: [id(t)], tokens: [t] }])),
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab.map((t, i) => [t, i])),
    },
    // Not read by the tokenizer; records the model's limit for humans.
    model_max_length: maxLength,
  };
}

// ---------------------------------------------------------------------------------------

function checkOptions(o: SyntheticBertOptions): void {
  const problems: string[] = [];
  for (const k of ['layers', 'hidden', 'heads', 'intermediate', 'vocab', 'maxPos', 'numLabels'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) problems.push(`${k} must be a positive integer, got ${o[k]}`);
  }
  if (o.hidden % o.heads !== 0) problems.push(`hidden (${o.hidden}) must be divisible by heads (${o.heads})`);
  if (o.vocab < MIN_VOCAB) problems.push(`vocab must be at least ${MIN_VOCAB}`);
  if (!Number.isInteger(o.seed)) problems.push(`seed must be an integer, got ${o.seed}`);
  if (problems.length > 0) throw new RangeError(`invalid synthetic BERT options: ${problems.join('; ')}`);
}

/**
 * Writes `model.onnx` (plain BERT encoder export: inputs input_ids / attention_mask /
 * token_type_ids `[batch, sequence]` int64; outputs `logits [batch, numLabels]` and
 * `sentence_embedding [batch, hidden]`) and `tokenizer.json` into `opts.dir`.
 */
export async function writeSyntheticBert(opts: SyntheticBertOptions): Promise<{ modelPath: string; tokenizerPath: string }> {
  checkOptions(opts);
  await mkdir(opts.dir, { recursive: true });
  const modelPath = path.join(opts.dir, 'model.onnx');
  const tokenizerPath = path.join(opts.dir, 'tokenizer.json');
  await writeStreamed(modelPath, opts, buildGraph(opts, new NormalRng(opts.seed)));
  await writeFile(tokenizerPath, `${JSON.stringify(syntheticTokenizerJson(syntheticVocab(opts.vocab), opts.maxPos))}\n`);
  return { modelPath, tokenizerPath };
}

async function main(): Promise<void> {
  const [dir, size = 'base'] = process.argv.slice(2);
  const shapes: Record<string, BertShape> = { base: BERT_BASE, distilbert: DISTILBERT_SHAPES, tiny: TINY_BERT };
  const shape = shapes[size];
  if (!dir || !shape) throw new Error('usage: synthetic-bert <outDir> [base|distilbert|tiny]');
  const t0 = performance.now();
  const { modelPath } = await writeSyntheticBert({ dir, ...shape, numLabels: 2, seed: 42 });
  const seconds = (performance.now() - t0) / 1000;
  const { size: bytes } = await stat(modelPath);
  process.stdout.write(`${JSON.stringify({ modelPath, shape: size, seconds: Number(seconds.toFixed(2)), bytes, rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20) })}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`synthetic-bert: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
