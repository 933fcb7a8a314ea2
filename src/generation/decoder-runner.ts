import ort from 'onnxruntime-node';
import path from 'node:path';
import { AppError } from '../errors.js';
import type { ModelManifest } from '../model/manifest.js';
import type { AdapterPayload } from '../runtime/batch.js';
import { LoraBankCache } from '../runtime/bank-cache.js';
import { buildDecoderFeeds, type StepRow, type StepShape } from '../runtime/decoder-feeds.js';
import { appendPresents, lastLogits } from '../runtime/decoder-outputs.js';
import { DeviceCopier, keepsStateOnDevice, tensorBytes } from '../runtime/device-io.js';
import { DeviceKv } from './device-kv.js';

/** What one decoder step returns. */
export interface StepOutput {
  /** Per row: the logits after its last new token, `[vocab]`. */
  logits: Float32Array[];
  runMs: number;
  feedMs: number;
  transfer: StepTransfer;
}

/**
 * What one step moved between host and device, in bytes: an estimate from the sizes of the host
 * feeds and host outputs of the run, the banks uploaded and the caches downloaded (ORT may keep
 * some host feeds on the CPU for shape ops). All zero on the CPU provider.
 */
export interface StepTransfer {
  hostToDevice: number;
  deviceToHost: number;
  /** The LoRA banks of the step before were used again (not rebuilt, not uploaded). */
  banksReused: boolean;
  /** The past keys/values were the previous step's device tensors. */
  kvOnDevice: boolean;
}

export interface DecoderRunnerOptions {
  threads: number;
  executionProvider: string;
}

/**
 * Runs a prepared decoder one step at a time: every step is one ORT run over rows that may use
 * different adapters, have different cache lengths, and feed a prompt chunk or a single token.
 * The KV cache of each row is read from and appended to its {@link StepRow.kv}.
 * Runs on the thread that calls it (the serving path calls it inside the inference worker).
 */
export class DecoderRunner {
  private readonly banks: LoraBankCache;

  private constructor(
    private readonly session: ort.InferenceSession, readonly manifest: ModelManifest, readonly executionProvider: string,
    private readonly copier: DeviceCopier | null, private readonly deviceKv: DeviceKv | null,
  ) {
    this.banks = new LoraBankCache(manifest.loraSlots, manifest.inputs.adapterIndex, copier);
  }

  static async create(modelDir: string, manifest: ModelManifest, opts: DecoderRunnerOptions): Promise<DecoderRunner> {
    if (manifest.task !== 'text-generation' || !manifest.generation) {
      throw new AppError('INVALID_MODEL', `${manifest.baseModel} is not a text-generation model (task ${manifest.task})`);
    }
    const g = manifest.generation;
    const onDevice = keepsStateOnDevice(opts.executionProvider);
    const session = await ort.InferenceSession.create(path.resolve(modelDir, manifest.modelFile), {
      executionProviders: [opts.executionProvider],
      intraOpNumThreads: opts.threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      // WebGPU: the caches stay on the device (DeviceKv); logits come to the host.
      ...(onDevice ? { preferredOutputLocation: Object.fromEntries([...g.presentKeys, ...g.presentValues].map((n) => [n, 'gpu-buffer' as const])) } : {}),
    });
    const copier = onDevice ? await DeviceCopier.create() : null;
    return new DecoderRunner(session, manifest, opts.executionProvider, copier, copier ? new DeviceKv(manifest, copier) : null);
  }

  /** One run: feeds every row's new tokens, appends their keys/values to the row's cache, returns each row's last logits. */
  async step(rows: readonly StepRow[], adapters: readonly AdapterPayload[]): Promise<StepOutput> {
    const g = this.manifest.generation!;
    for (const r of rows) {
      if (r.tokens.length === 0) throw new AppError('INTERNAL', 'a step row must feed at least one token');
      if (r.kv.length + r.tokens.length > g.maxPositions) throw new AppError('INTERNAL', `a sequence would exceed ${g.maxPositions} positions`);
    }
    const t0 = performance.now();
    const dev = this.deviceKv;
    const kvOnDevice = dev !== null && dev.continues(rows);
    let deviceToHost = 0;
    let feeds: Record<string, ort.Tensor>;
    let shape: StepShape;
    let mask: BigInt64Array;
    if (kvOnDevice) {
      ({ feeds, shape, mask } = dev.feeds(rows));
    } else {
      if (dev) deviceToHost += await dev.sync();
      const built = buildDecoderFeeds(this.manifest, rows, adapters, { banks: false });
      feeds = {};
      for (const [name, f] of Object.entries(built.feeds)) feeds[name] = new ort.Tensor(f.type, f.data, f.dims);
      shape = built.shape;
      mask = built.feeds[this.manifest.inputs.attentionMask]!.data as BigInt64Array;
    }
    const bank = await this.banks.feeds(adapters, rows.map((r) => r.adapter));
    let hostToDevice = 0;
    if (this.copier) for (const t of Object.values(feeds)) if (t.location === 'cpu') hostToDevice += tensorBytes(t.type, t.dims);
    Object.assign(feeds, bank.feeds);
    if (this.copier) hostToDevice += bank.uploadedBytes + tensorBytes('int64', [rows.length]);
    const t1 = performance.now();
    const res = await this.session.run(feeds);
    const runMs = performance.now() - t1;
    const all = res[g.logits]!.data as Float32Array; // [batch, fresh, vocab]
    if (this.copier) deviceToHost += all.byteLength;
    const logits = lastLogits(all, shape, g.vocabSize);
    if (dev) {
      dev.keep(rows, shape, mask, res);
    } else {
      appendPresents(g, res, rows, shape);
      for (const t of Object.values(res)) t.dispose?.();
    }
    if (dev) res[g.logits]!.dispose();
    return { logits, runMs, feedMs: t1 - t0, transfer: { hostToDevice, deviceToHost, banksReused: bank.reused, kvOnDevice } };
  }

  /** Copies every sequence's device-held positions into its host cache (WebGPU; nothing to do on the CPU). */
  async syncToHost(): Promise<void> {
    await this.deviceKv?.sync();
  }

  async close(): Promise<void> {
    this.deviceKv?.release();
    this.banks.drop();
    await this.session.release();
    await this.copier?.close();
  }
}
