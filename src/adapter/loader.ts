import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError, isAppError } from '../errors.js';
import type { ModelManifest } from '../model/manifest.js';
import { layOutAdapter, planAdapter, sameBase, type AdapterPlan, type AdapterWeights, type MapOptions } from './lora-weights.js';
import { isTargeted, parsePeftConfig, rankFor, type LoraAdapterConfig } from './peft-config.js';
import { readSafetensors, readSafetensorsHeader, type SafetensorsLimits } from './safetensors.js';
import { META_FILE, type AdapterStore, type StoredAdapterFiles, type StoredMeta } from './store.js';

/** What listing shows about an adapter, learned cheaply (config + safetensors header only). */
export interface AdapterInfo {
  id: string;
  taskType: string | null;
  /** Largest rank over its modules. */
  rank: number;
  targetModules: string[] | string;
  /** The base's LoRA slots this adapter fills. */
  modules: string[];
  labels: string[] | null;
  hasHead: boolean;
  baseModel: string | null;
  bytesOnDisk: number;
  /** Float32 bytes the weights take once loaded (F16/BF16 files double). */
  bytesInMemory: number;
  /** bytesOnDisk ÷ base model bytes: the storage saving. */
  relativeToBase: number;
  /** sha256 of adapter_model.safetensors recorded at upload, when uploaded through the server. */
  sha256: string | null;
  storedAt: string | null;
}

export interface LoaderOptions extends MapOptions {
  safetensors?: SafetensorsLimits;
  /** Largest adapter_config.json accepted, bytes. */
  maxConfigBytes?: number;
}

/**
 * Reusable buffers that adapter files are read into. A load reads the whole weights file, lays
 * it out into the adapter's SharedArrayBuffer and drops it; with a fresh Buffer per load, the
 * freed file buffers stay behind in the C allocator (glibc serves blocks of that size from
 * its heap after the first free and keeps them), about 0.15× of every cached adapter in RSS.
 * Reusing a few buffers leaves no per-load garbage: resident memory per cached adapter is its
 * weights.
 */
class ReadBuffers {
  /** Free buffers kept for reuse; a concurrent load past this many gets a fresh one. */
  private static readonly KEEP = 2;
  /** A buffer above this is used once and dropped, not kept for the process's lifetime. */
  private static readonly MAX_KEPT_BYTES = 16 * 1024 * 1024;
  private readonly free: ArrayBuffer[] = [];

  /** A Buffer of exactly `size` bytes, backed by a kept buffer when one is large enough. */
  take(size: number): Buffer {
    let best = -1;
    this.free.forEach((b, i) => {
      if (b.byteLength >= size && (best < 0 || b.byteLength < this.free[best]!.byteLength)) best = i;
    });
    // allocUnsafeSlow: memory of its own (never a slice of Node's shared pool), 4-byte aligned.
    const ab = best >= 0 ? this.free.splice(best, 1)[0]! : (Buffer.allocUnsafeSlow(size).buffer as ArrayBuffer);
    return Buffer.from(ab, 0, size);
  }

  /** Hands back a Buffer from {@link take}; nothing may use it afterwards. */
  give(b: Buffer): void {
    const ab = b.buffer as ArrayBuffer;
    if (ab.byteLength > ReadBuffers.MAX_KEPT_BYTES || this.free.includes(ab)) return;
    this.free.push(ab);
    // Keep the largest: they serve every smaller file too.
    this.free.sort((x, y) => y.byteLength - x.byteLength);
    this.free.length = Math.min(this.free.length, ReadBuffers.KEEP);
  }
}

/** Reads, validates and maps adapters from the store onto the base's slots. */
export class AdapterLoader {
  private readonly buffers = new ReadBuffers();

  constructor(
    private readonly store: AdapterStore,
    private readonly manifest: ModelManifest,
    private readonly opts: LoaderOptions = {},
  ) {}

  /** Parses a config against this base (rank cap), every problem at once. */
  parseConfig(text: Uint8Array | string): LoraAdapterConfig {
    return parsePeftConfig(text, { maxRank: this.manifest.maxRank, ...(this.opts.maxConfigBytes ? { maxBytes: this.opts.maxConfigBytes } : {}) });
  }

  /**
   * Full validation of uploaded bytes: config, every tensor, mapping to slots. Lays nothing
   * out (an upload is stored, not served, so its weights are never allocated here); returns
   * what the weights will take in memory.
   */
  check(id: string, files: StoredAdapterFiles): { bytes: number } {
    return { bytes: this.plan(id, files, true).bytes };
  }

  /** Full validation of the bytes, then the ready weights. */
  validate(id: string, files: StoredAdapterFiles, version = 'upload'): AdapterWeights {
    // The layout checks every value is finite as it copies it: one pass over the weights, not two.
    const plan = this.plan(id, files, false);
    try {
      return layOutAdapter(plan, version);
    } catch (e) {
      // Name the tensor and element: the full reader's message says which.
      if (isAppError(e, 'INVALID_SAFETENSORS')) readSafetensors(files.model, this.opts.safetensors);
      throw e;
    }
  }

  private plan(id: string, files: StoredAdapterFiles, checkFinite: boolean): AdapterPlan {
    const cfg = this.parseConfig(files.config);
    // Aligned F32 tensors come back as views of files.model: no copy before the layout.
    const { tensors } = readSafetensors(files.model, this.opts.safetensors, { skipFiniteCheck: !checkFinite });
    return planAdapter(id, this.manifest, cfg, tensors, this.opts);
  }

  /**
   * Loads an adapter from disk (checksum verified by the store when one was recorded). The
   * weights file is read into a reused buffer and laid out from there, so the load leaves
   * only the adapter's weights behind.
   */
  async load(id: string): Promise<AdapterWeights> {
    let taken: Buffer | undefined;
    try {
      const files = await this.store.read(id, { modelBuffer: (size) => (taken = this.buffers.take(size)) });
      const version = files.meta?.sha256['adapter_model.safetensors'] ?? `size-${files.bytesOnDisk}`;
      // Synchronous from here to the end of the layout: nothing else uses the buffer meanwhile,
      // and nothing of it is kept (the weights are copied out).
      return this.validate(id, files, version);
    } finally {
      if (taken) this.buffers.give(taken);
    }
  }

  /** Cheap look: config + safetensors header, no weights read. Throws the same typed errors as load. */
  async inspect(id: string): Promise<AdapterInfo> {
    const p = await this.store.paths(id);
    const files = { config: await readFile(p.config), meta: await readMeta(p.dir) };
    const cfg = this.parseConfig(files.config);
    const header = await readSafetensorsHeader(p.model, this.opts.safetensors);
    const modelBytes = header.fileSize;
    if (cfg.baseModelNameOrPath && !this.opts.allowBaseMismatch && !sameBase(cfg.baseModelNameOrPath, this.manifest)) {
      throw new AppError('INCOMPATIBLE_ADAPTER', `adapter "${id}": base_model_name_or_path "${cfg.baseModelNameOrPath}" is not this server's base model "${this.manifest.baseModel}"`);
    }
    const floats = header.tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    const modules = this.manifest.loraSlots.filter((s) => isTargeted(cfg, s.module)).map((s) => s.module);
    const hasHead = header.tensors.some((t) => this.manifest.heads.some((h) => t.name.includes(`${h.module}.`) && !t.name.includes('lora_')));
    return {
      id,
      taskType: cfg.taskType,
      rank: Math.max(0, ...modules.map((m) => rankFor(cfg, m))),
      targetModules: Array.isArray(cfg.targetModules) ? cfg.targetModules : cfg.targetModules.regex,
      modules,
      labels: cfg.labels,
      hasHead,
      baseModel: cfg.baseModelNameOrPath,
      bytesOnDisk: files.config.byteLength + modelBytes,
      bytesInMemory: floats * 4,
      relativeToBase: (files.config.byteLength + modelBytes) / this.manifest.baseBytes,
      sha256: files.meta?.sha256['adapter_model.safetensors'] ?? null,
      storedAt: files.meta?.storedAt ?? null,
    };
  }

  /** Start-up scan: every adapter in the store, valid ones listed, broken ones reported and skipped. */
  async scan(onBroken: (id: string, err: Error) => void): Promise<Map<string, AdapterInfo>> {
    const out = new Map<string, AdapterInfo>();
    for (const id of await this.store.list()) {
      try {
        out.set(id, await this.inspect(id));
      } catch (e) {
        if (!isAppError(e) && !(e instanceof Error)) throw e;
        onBroken(id, e as Error);
      }
    }
    return out;
  }
}

async function readMeta(dir: string): Promise<StoredMeta | null> {
  try {
    return JSON.parse(await readFile(path.join(dir, META_FILE), 'utf8')) as StoredMeta;
  } catch {
    return null;
  }
}
