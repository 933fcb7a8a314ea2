import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError, isAppError } from '../errors.js';
import type { ModelManifest } from '../model/manifest.js';
import { mapAdapterToSlots, sameBase, type AdapterWeights, type MapOptions } from './lora-weights.js';
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

/** Reads, validates and maps adapters from the store onto the base's slots. */
export class AdapterLoader {
  constructor(
    private readonly store: AdapterStore,
    private readonly manifest: ModelManifest,
    private readonly opts: LoaderOptions = {},
  ) {}

  /** Parses a config against this base (rank cap), every problem at once. */
  parseConfig(text: Uint8Array | string): LoraAdapterConfig {
    return parsePeftConfig(text, { maxRank: this.manifest.maxRank, ...(this.opts.maxConfigBytes ? { maxBytes: this.opts.maxConfigBytes } : {}) });
  }

  /** Full validation of uploaded bytes: config, every tensor, mapping to slots. Returns the ready weights. */
  validate(id: string, files: StoredAdapterFiles, version = 'upload'): AdapterWeights {
    const cfg = this.parseConfig(files.config);
    const { tensors } = readSafetensors(files.model, this.opts.safetensors);
    return mapAdapterToSlots(id, version, this.manifest, cfg, tensors, this.opts);
  }

  /** Loads an adapter from disk (checksum verified by the store when one was recorded). */
  async load(id: string): Promise<AdapterWeights> {
    const files = await this.store.read(id);
    const version = files.meta?.sha256['adapter_model.safetensors'] ?? `size-${files.bytesOnDisk}`;
    return this.validate(id, files, version);
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
