/**
 * A small GGUF (v3) writer: the synthetic decoder's weights as a llama.cpp model (F32) and its PEFT
 * adapters as llama.cpp LoRA adapters, for the llama.cpp peer of the generation benchmarks.
 *
 * Format (ggml's docs/gguf.md): "GGUF", u32 version 3, u64 tensor count, u64 key/value count, the
 * key/values (u64-length strings, u32 type tags), the tensor infos (name, u32 n_dims, u64 dims with
 * the fastest-varying first, u32 ggml type, u64 offset into the data section), padding to
 * `general.alignment` (32), then the tensor data, each tensor aligned. A row-major [rows, cols]
 * array is a ggml tensor of ne = [cols, rows], so a PyTorch [out, in] weight is written as is.
 *
 * Hugging Face → llama.cpp names and the one change of layout (convert_hf_to_gguf.py's): q_proj and
 * k_proj rows are permuted from rotate_half order to interleaved pairs, because llama.cpp's `llama`
 * architecture rotates adjacent pairs; a LoRA's lora_B of q/k (its output side) gets the same permutation.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { readSafetensorsHeader } from '../../src/adapter/safetensors.js';

const ALIGN = 32;
const T = { u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9 } as const;

export type GgufValue =
  | { u32: number } | { f32: number } | { bool: boolean } | { str: string }
  | { strs: string[] } | { f32s: number[] } | { i32s: number[] };

/** A tensor: its numpy-order shape (outermost first) and its F32 data. */
export interface GgufTensor { name: string; shape: number[]; data: () => Promise<Float32Array> }

class Bytes {
  private parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void { this.parts.push(b); this.length += b.length; }
  u32(n: number): void { const b = Buffer.alloc(4); b.writeUInt32LE(n); this.push(b); }
  i32(n: number): void { const b = Buffer.alloc(4); b.writeInt32LE(n); this.push(b); }
  u64(n: number): void { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); this.push(b); }
  f32(n: number): void { const b = Buffer.alloc(4); b.writeFloatLE(n); this.push(b); }
  str(s: string): void { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.push(b); }
  value(v: GgufValue): void {
    if ('u32' in v) { this.u32(T.u32); this.u32(v.u32); }
    else if ('f32' in v) { this.u32(T.f32); this.f32(v.f32); }
    else if ('bool' in v) { this.u32(T.bool); this.push(Buffer.from([v.bool ? 1 : 0])); }
    else if ('str' in v) { this.u32(T.str); this.str(v.str); }
    else if ('strs' in v) { this.u32(T.arr); this.u32(T.str); this.u64(v.strs.length); for (const s of v.strs) this.str(s); }
    else if ('f32s' in v) { this.u32(T.arr); this.u32(T.f32); this.u64(v.f32s.length); for (const x of v.f32s) this.f32(x); }
    else { this.u32(T.arr); this.u32(T.i32); this.u64(v.i32s.length); for (const x of v.i32s) this.i32(x); }
  }
  buffer(): Buffer { return Buffer.concat(this.parts); }
}

const pad = (n: number) => (ALIGN - (n % ALIGN)) % ALIGN;

/** Writes a GGUF file of `kv` and F32 `tensors` (data read one tensor at a time). */
export async function writeGguf(file: string, kv: Record<string, GgufValue>, tensors: GgufTensor[]): Promise<void> {
  const h = new Bytes();
  h.push(Buffer.from('GGUF', 'ascii'));
  h.u32(3);
  h.u64(tensors.length);
  h.u64(Object.keys(kv).length);
  for (const [k, v] of Object.entries(kv)) { h.str(k); h.value(v); }
  let offset = 0;
  for (const t of tensors) {
    h.str(t.name);
    h.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) h.u64(d);
    h.u32(0); // GGML_TYPE_F32
    h.u64(offset);
    const bytes = t.shape.reduce((a, b) => a * b, 1) * 4;
    offset += bytes + pad(bytes);
  }
  const head = h.buffer();
  const fh: FileHandle = await open(file, 'w');
  try {
    let pos = 0;
    const write = async (b: Uint8Array) => { await fh.write(b, 0, b.length, pos); pos += b.length; };
    await write(head);
    await write(new Uint8Array(pad(head.length)));
    for (const t of tensors) {
      const d = await t.data();
      if (d.length !== t.shape.reduce((a, b) => a * b, 1)) throw new Error(`${t.name}: ${d.length} values for shape ${t.shape}`);
      await write(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      await write(new Uint8Array(pad(d.byteLength)));
    }
  } finally {
    await fh.close();
  }
}

/** Reads named F32 tensors of a safetensors file on demand. */
export async function safetensorsSource(file: string): Promise<{ shape(name: string): number[]; read(name: string): Promise<Float32Array>; names: string[] }> {
  const header = await readSafetensorsHeader(file);
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  const info = (name: string) => {
    const t = byName.get(name);
    if (!t) throw new Error(`${file}: no tensor ${name}`);
    if (t.dtype !== 'F32') throw new Error(`${file}: ${name} is ${t.dtype}, not F32`);
    return t;
  };
  return {
    names: [...byName.keys()],
    shape: (name) => info(name).shape,
    read: async (name) => {
      const t = info(name);
      const fh = await open(file, 'r');
      try {
        const out = new Float32Array((t.end - t.begin) / 4);
        await fh.read(new Uint8Array(out.buffer), 0, t.end - t.begin, header.dataOffset + t.begin);
        return out;
      } finally {
        await fh.close();
      }
    },
  };
}

/** Rows of an [out, cols] matrix from rotate_half order to llama.cpp's interleaved pairs, per head of `headDim`. */
export function permuteRope(w: Float32Array, out: number, cols: number, headDim: number): Float32Array {
  const res = new Float32Array(w.length);
  const half = headDim / 2;
  for (let r = 0; r < out; r++) {
    const h = Math.floor(r / headDim), i = r % headDim, j = i >> 1, s = i & 1;
    const src = h * headDim + s * half + j;
    res.set(w.subarray(src * cols, (src + 1) * cols), r * cols);
  }
  return res;
}

/** The decoder's shape, as the GGUF metadata states it. */
export interface LlamaShape { vocab: number; hidden: number; layers: number; heads: number; kvHeads: number; inter: number; maxPos: number; ropeTheta: number; rmsEps: number }

const PROJ: Record<string, string> = {
  'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v', 'self_attn.o_proj': 'attn_output',
  'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down',
};

/** Writes the decoder of `weights` (Hugging Face names, tied lm_head) as an F32 llama.cpp model. */
export async function writeLlamaGguf(file: string, weightsFile: string, s: LlamaShape): Promise<void> {
  const src = await safetensorsSource(weightsFile);
  const headDim = s.hidden / s.heads;
  const tensors: GgufTensor[] = [];
  const add = (name: string, hf: string, permute?: number) => {
    const shape = src.shape(hf);
    tensors.push({
      name, shape,
      data: async () => {
        const d = await src.read(hf);
        return permute ? permuteRope(d, shape[0]!, shape[1]!, headDim) : d;
      },
    });
  };
  add('token_embd.weight', 'model.embed_tokens.weight');
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    add(`blk.${l}.attn_norm.weight`, `${p}.input_layernorm.weight`);
    add(`blk.${l}.ffn_norm.weight`, `${p}.post_attention_layernorm.weight`);
    for (const [hf, gg] of Object.entries(PROJ)) add(`blk.${l}.${gg}.weight`, `${p}.${hf}.weight`, gg === 'attn_q' || gg === 'attn_k' ? 1 : undefined);
  }
  add('output_norm.weight', 'model.norm.weight');
  // A vocabulary llama.cpp accepts (SentencePiece type, byte tokens present); the benchmarks feed token ids, never text.
  const tokens: string[] = [], types: number[] = [];
  for (let i = 0; i < s.vocab; i++) {
    if (i < 10) { tokens.push(`<|special_${i}|>`); types.push(3); }
    else if (i < 266) { tokens.push(`<0x${(i - 10).toString(16).toUpperCase().padStart(2, '0')}>`); types.push(6); }
    else { tokens.push(`<t${i}>`); types.push(1); }
  }
  await writeGguf(file, {
    'general.architecture': { str: 'llama' },
    'general.name': { str: 'adapterhost synthetic decoder' },
    'general.file_type': { u32: 0 },
    'llama.context_length': { u32: s.maxPos },
    'llama.embedding_length': { u32: s.hidden },
    'llama.block_count': { u32: s.layers },
    'llama.feed_forward_length': { u32: s.inter },
    'llama.attention.head_count': { u32: s.heads },
    'llama.attention.head_count_kv': { u32: s.kvHeads },
    'llama.rope.dimension_count': { u32: headDim },
    'llama.rope.freq_base': { f32: s.ropeTheta },
    'llama.attention.layer_norm_rms_epsilon': { f32: s.rmsEps },
    'llama.vocab_size': { u32: s.vocab },
    'tokenizer.ggml.model': { str: 'llama' },
    'tokenizer.ggml.tokens': { strs: tokens },
    'tokenizer.ggml.scores': { f32s: tokens.map(() => 0) },
    'tokenizer.ggml.token_type': { i32s: types },
    'tokenizer.ggml.bos_token_id': { u32: 1 },
    'tokenizer.ggml.eos_token_id': { u32: 2 },
    'tokenizer.ggml.padding_token_id': { u32: 0 },
    'tokenizer.ggml.add_bos_token': { bool: false },
    'tokenizer.ggml.add_eos_token': { bool: false },
  }, tensors);
}

/** Writes a PEFT LoRA (adapter_model.safetensors, alpha) as a llama.cpp LoRA adapter GGUF. */
export async function writeLoraGguf(file: string, adapterFile: string, alpha: number, s: LlamaShape): Promise<void> {
  const src = await safetensorsSource(adapterFile);
  const headDim = s.hidden / s.heads;
  const tensors: GgufTensor[] = [];
  const re = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn\.\w+|mlp\.\w+)\.lora_([AB])\.weight$/;
  for (const name of [...src.names].sort()) {
    const m = re.exec(name);
    if (!m) throw new Error(`${adapterFile}: unexpected tensor ${name}`);
    const gg = PROJ[m[2]!];
    if (!gg) throw new Error(`${adapterFile}: unknown module ${m[2]}`);
    const shape = src.shape(name);
    const permute = m[3] === 'B' && (gg === 'attn_q' || gg === 'attn_k');
    tensors.push({
      name: `blk.${m[1]}.${gg}.weight.lora_${m[3]!.toLowerCase()}`, shape,
      data: async () => {
        const d = await src.read(name);
        return permute ? permuteRope(d, shape[0]!, shape[1]!, headDim) : d;
      },
    });
  }
  await writeGguf(file, {
    'general.architecture': { str: 'llama' },
    'general.type': { str: 'adapter' },
    'adapter.type': { str: 'lora' },
    'adapter.lora.alpha': { f32: alpha },
  }, tensors);
}
