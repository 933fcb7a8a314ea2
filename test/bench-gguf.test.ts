/**
 * The benchmark's GGUF writer (bench/gen/gguf.ts), checked against an independent reader
 * (node-llama-cpp's readGgufFileInfo) and the RoPE row permutation checked against the math it
 * stands for: rotate-half RoPE of W·x equals the interleaved-pairs RoPE of P(W)·x, rows mapped back.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { readGgufFileInfo } from 'node-llama-cpp';
import { permuteRope, writeGguf } from '../bench/gen/gguf.js';

/** HF's rotate_half RoPE on one head vector of `d` at position `pos`. */
function ropeHalf(x: Float64Array, pos: number, theta = 10000): Float64Array {
  const d = x.length, h = d / 2, out = new Float64Array(d);
  for (let i = 0; i < h; i++) {
    const a = pos / theta ** ((2 * i) / d), c = Math.cos(a), s = Math.sin(a);
    out[i] = x[i]! * c - x[i + h]! * s;
    out[i + h] = x[i + h]! * c + x[i]! * s;
  }
  return out;
}

/** llama.cpp's "normal" RoPE: adjacent pairs (2i, 2i+1) rotate together. */
function ropePairs(x: Float64Array, pos: number, theta = 10000): Float64Array {
  const d = x.length, out = new Float64Array(d);
  for (let i = 0; i < d / 2; i++) {
    const a = pos / theta ** ((2 * i) / d), c = Math.cos(a), s = Math.sin(a);
    out[2 * i] = x[2 * i]! * c - x[2 * i + 1]! * s;
    out[2 * i + 1] = x[2 * i + 1]! * c + x[2 * i]! * s;
  }
  return out;
}

describe('bench GGUF writer', () => {
  it('permuteRope turns rotate-half RoPE into interleaved-pair RoPE, head by head', () => {
    const heads = 3, hd = 8, cols = 5;
    const W = Float32Array.from({ length: heads * hd * cols }, (_, i) => Math.sin(i * 1.37) * 0.5);
    const x = Array.from({ length: cols }, (_, i) => Math.cos(i * 0.7));
    const P = permuteRope(W, heads * hd, cols, hd);
    const mul = (m: Float32Array, h: number) => Float64Array.from({ length: hd }, (_, r) => x.reduce((a, xv, c) => a + m[(h * hd + r) * cols + c]! * xv, 0));
    let compared = 0;
    for (const pos of [0, 3, 17]) {
      for (let h = 0; h < heads; h++) {
        const hf = ropeHalf(mul(W, h), pos);
        const gg = ropePairs(mul(P, h), pos);
        // Row r of the permuted matrix is row (r odd ? hd/2 : 0) + r>>1 of the original.
        for (let r = 0; r < hd; r++) {
          const src = (r & 1) * (hd / 2) + (r >> 1);
          assert.ok(Math.abs(gg[r]! - hf[src]!) < 1e-9, `pos ${pos} head ${h} row ${r}: ${gg[r]} vs ${hf[src]}`);
          compared++;
        }
      }
    }
    assert.equal(compared, 3 * heads * hd);
    assert.notDeepEqual(P, W, 'the permutation moves rows');
  });

  it('writes a file that an independent GGUF reader parses: metadata, tensor shapes, offsets and data', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gguf-'));
    try {
      const file = path.join(dir, 'x.gguf');
      const a = Float32Array.from({ length: 6 }, (_, i) => i + 0.5); // [2, 3]
      const b = Float32Array.from({ length: 7 }, (_, i) => -i); // [7]: 28 bytes, so the next tensor needs padding
      const c = Float32Array.from({ length: 4 }, (_, i) => i * 10); // [4, 1]
      await writeGguf(file, {
        'general.architecture': { str: 'llama' }, 'llama.block_count': { u32: 2 }, 'x.f': { f32: 0.25 }, 'x.b': { bool: true },
        'x.strs': { strs: ['a', 'bé'] }, 'x.ints': { i32s: [-1, 2] }, 'x.floats': { f32s: [1.5] },
      }, [
        { name: 'a', shape: [2, 3], data: async () => a },
        { name: 'b', shape: [7], data: async () => b },
        { name: 'c', shape: [4, 1], data: async () => c },
      ]);
      const info = await readGgufFileInfo(file, { sourceType: 'filesystem', logWarnings: false });
      assert.equal(info.version, 3);
      const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
      assert.equal(md.general!.architecture, 'llama');
      assert.equal(md.llama!.block_count, 2);
      assert.equal(md.x!.f, 0.25);
      assert.equal(md.x!.b, true);
      assert.deepEqual(md.x!.strs, ['a', 'bé']);
      assert.deepEqual(md.x!.ints, [-1, 2]);
      const tensors = info.fullTensorInfo ?? [];
      assert.deepEqual(tensors.map((t) => [t.name, t.dimensions.map(Number)]), [['a', [3, 2]], ['b', [7]], ['c', [1, 4]]]);
      const bytes = await readFile(file);
      // The data section ends with the last tensor (c, 16 bytes padded to 32): its start follows from the file size.
      const start = bytes.length - Math.ceil(c.byteLength / 32) * 32 - Number(tensors[2]!.offset);
      assert.equal(start % 32, 0, 'the data section is aligned');
      for (const [t, want] of [[tensors[0]!, a], [tensors[1]!, b], [tensors[2]!, c]] as const) {
        const off = start + Number(t.offset);
        assert.equal(off % 32, 0, `${t.name} is aligned`);
        assert.deepEqual(new Float32Array(bytes.buffer.slice(bytes.byteOffset + off, bytes.byteOffset + off + want.byteLength)), want, t.name);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
