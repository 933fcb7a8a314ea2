import os from 'node:os';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { AppError } from './errors.js';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
/** A comma list of directories (repeated flags are joined with commas). */
const dirList = z.string().min(1).transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean)).refine((a) => a.length > 0, 'needs at least one directory');
/** Flags that may be given several times. */
const REPEATABLE = new Set(['model-dir', 'adapters-dir']);

/**
 * Every setting, with its flag, environment variable, default and meaning. Flags win over the
 * environment; invalid values stop start-up with every problem listed. README "Configuration"
 * is generated from this table.
 */
export const SETTINGS = {
  port: { flag: 'port', env: 'ADAPTERHOST_PORT', def: '8080', schema: int(0, 65535), doc: 'TCP port (0 picks a free one).' },
  host: { flag: 'host', env: 'ADAPTERHOST_HOST', def: '127.0.0.1', schema: z.string().min(1), doc: 'Interface to listen on (0.0.0.0 in containers).' },
  modelDir: { flag: 'model-dir', env: 'ADAPTERHOST_MODEL_DIR', def: 'models/demo,models/demo-llm', schema: dirList, doc: 'Base model directories (model.onnx, model.json, tokenizer.json, made by `adapterhost prepare`); the flag may repeat, the variable is a comma list. One encoder base and any number of text-generation bases.' },
  adaptersDir: { flag: 'adapters-dir', env: 'ADAPTERHOST_ADAPTERS_DIR', def: 'adapters,adapters-llm', schema: dirList, doc: 'Adapter stores, one per base in the order of --model-dir (one directory per adapter id inside); the flag may repeat, the variable is a comma list.' },
  cacheMb: { flag: 'cache-mb', env: 'ADAPTERHOST_CACHE_MB', def: '256', schema: z.coerce.number().positive().max(1 << 20), doc: 'Byte budget of the adapter LRU cache, MB (pinned adapters are outside it).' },
  pin: { flag: 'pin', env: 'ADAPTERHOST_PIN', def: '', schema: z.string(), doc: 'Comma-separated adapter ids loaded at start and never evicted.' },
  maxBatch: { flag: 'max-batch', env: 'ADAPTERHOST_MAX_BATCH', def: '32', schema: int(1, 4096), doc: 'Most rows (inputs) in one inference run.' },
  maxWaitMs: { flag: 'max-wait-ms', env: 'ADAPTERHOST_MAX_WAIT_MS', def: '0', schema: z.coerce.number().min(0).max(10_000), doc: 'How long a row may wait for others to share its run, ms. 0: run as soon as the engine is free (rows arriving during a run form the next batch).' },
  queueLimit: { flag: 'queue-limit', env: 'ADAPTERHOST_QUEUE_LIMIT', def: '1024', schema: int(1, 1_000_000), doc: 'Most rows waiting; past it requests get 429 with Retry-After.' },
  threads: { flag: 'threads', env: 'ADAPTERHOST_THREADS', def: String(os.availableParallelism()), schema: int(1, 1024), doc: 'ONNX Runtime intra-op threads (default: the CPU count).' },
  executionProvider: { flag: 'execution-provider', env: 'ADAPTERHOST_EXECUTION_PROVIDER', def: 'cpu', schema: z.enum(['cpu', 'webgpu', 'cuda', 'dml', 'coreml']), doc: 'ONNX Runtime execution provider.' },
  workerRestartMs: { flag: 'worker-restart-ms', env: 'ADAPTERHOST_WORKER_RESTART_MS', def: '100', schema: int(0, 600_000), doc: 'After the inference worker dies, how long before it is started again, ms; doubles with every crash in a row.' },
  workerRestartMaxMs: { flag: 'worker-restart-max-ms', env: 'ADAPTERHOST_WORKER_RESTART_MAX_MS', def: '30000', schema: int(0, 3_600_000), doc: 'The longest wait between restarts of a worker that keeps crashing, ms (a worker up for a minute starts the back-off afresh).' },
  adminToken: { flag: 'admin-token', env: 'ADAPTERHOST_ADMIN_TOKEN', def: '', schema: z.string().refine((s) => s === '' || s.length >= 16, 'must be at least 16 characters'), doc: 'Bearer token for PUT/DELETE /v1/adapters; empty disables those routes (403).' },
  maxBodyKb: { flag: 'max-body-kb', env: 'ADAPTERHOST_MAX_BODY_KB', def: '1024', schema: int(1, 1 << 20), doc: 'Largest JSON request body, KiB (413 past it).' },
  maxUploadMb: { flag: 'max-upload-mb', env: 'ADAPTERHOST_MAX_UPLOAD_MB', def: '64', schema: z.coerce.number().positive().max(1 << 14), doc: 'Largest adapter upload (both files), MB (413 past it).' },
  maxConcurrentUploads: { flag: 'max-concurrent-uploads', env: 'ADAPTERHOST_MAX_CONCURRENT_UPLOADS', def: '2', schema: int(1, 1024), doc: 'Most adapter uploads read, validated and stored at once; past it PUT gets 429 with Retry-After. Each holds up to about 2× --max-upload-mb of memory while in flight.' },
  kvCacheMb: { flag: 'kv-cache-mb', env: 'ADAPTERHOST_KV_CACHE_MB', def: '256', schema: z.coerce.number().positive().max(1 << 20), doc: 'KV-cache budget of each text-generation base, MB. A sequence is admitted when its prompt + max_tokens fit; others wait (see docs/generation.md).' },
  maxRunningSeqs: { flag: 'max-running-seqs', env: 'ADAPTERHOST_MAX_RUNNING_SEQS', def: '32', schema: int(1, 4096), doc: 'Most sequences decoding at once per text-generation base (rows of one decode step).' },
  prefillChunk: { flag: 'prefill-chunk', env: 'ADAPTERHOST_PREFILL_CHUNK', def: '128', schema: int(1, 1 << 20), doc: 'Most prompt tokens one prefill step feeds; longer prompts are prefilled in chunks between decode steps.' },
  maxWaitingSeqs: { flag: 'max-waiting-seqs', env: 'ADAPTERHOST_MAX_WAITING_SEQS', def: '256', schema: int(1, 1_000_000), doc: 'Most generation requests waiting for admission per base; past it 429 with Retry-After.' },
  streamStallMs: { flag: 'stream-stall-ms', env: 'ADAPTERHOST_STREAM_STALL_MS', def: '30000', schema: int(1, 3_600_000), doc: 'A streaming client that reads nothing for this long (with 64 KiB waiting in its buffer) is cancelled and its KV cache freed; until then its sequence is paused.' },
  maxInputs: { flag: 'max-inputs', env: 'ADAPTERHOST_MAX_INPUTS', def: '64', schema: int(1, 100_000), doc: 'Most inputs in one request.' },
  maxTokens: { flag: 'max-tokens', env: 'ADAPTERHOST_MAX_TOKENS', def: '512', schema: int(2, 1 << 20), doc: "Most tokens per input (capped by the model's max length)." },
  maxInputChars: { flag: 'max-input-chars', env: 'ADAPTERHOST_MAX_INPUT_CHARS', def: '20000', schema: int(1, 10_000_000), doc: 'Most characters per input, checked before tokenizing.' },
  shutdownGraceMs: { flag: 'shutdown-grace-ms', env: 'ADAPTERHOST_SHUTDOWN_GRACE_MS', def: '15000', schema: int(0, 3_600_000), doc: 'On SIGTERM/SIGINT, how long in-flight work may take to finish.' },
  allowBaseMismatch: { flag: 'allow-base-mismatch', env: 'ADAPTERHOST_ALLOW_BASE_MISMATCH', def: 'false', schema: z.enum(['true', 'false']).transform((s) => s === 'true'), doc: 'Accept adapters whose base_model_name_or_path names another base (dimensions are still checked).' },
  logLevel: { flag: 'log-level', env: 'ADAPTERHOST_LOG_LEVEL', def: 'info', schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), doc: 'pino log level.' },
} as const;

type Settings = typeof SETTINGS;
/** The validated configuration. */
export type Config = { [K in keyof Settings]: z.output<Settings[K]['schema']> };

/**
 * Reads flags (`--port 9000`) and environment (`ADAPTERHOST_PORT=9000`), applies defaults,
 * and validates. `overrides` (tests) win over both.
 */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv, overrides: Partial<Record<keyof Settings, string | number | boolean>> = {}): Config {
  const options = Object.fromEntries(Object.values(SETTINGS).map((s) => [s.flag, { type: 'string' as const, multiple: REPEATABLE.has(s.flag) }]));
  let flags: Record<string, string | undefined>;
  try {
    const values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<string, string | string[] | undefined>;
    flags = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v]));
  } catch (e) {
    throw new AppError('INVALID_CONFIG', `invalid configuration: ${(e as Error).message}`);
  }
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(SETTINGS)) {
    const o = overrides[key as keyof Settings];
    const raw = o !== undefined ? String(o) : flags[s.flag] ?? env[s.env] ?? s.def;
    const r = (s.schema as z.ZodType).safeParse(raw);
    if (r.success) out[key] = r.data;
    else problems.push(`--${s.flag} / ${s.env} = ${JSON.stringify(raw)}: ${r.error.issues.map((i) => i.message).join(', ')}`);
  }
  const dirs = out.modelDir as string[] | undefined;
  const stores = out.adaptersDir as string[] | undefined;
  if (dirs && stores && stores.length !== dirs.length) problems.push(`--adapters-dir names ${stores.length} store(s) for ${dirs.length} base(s) in --model-dir: give one per base, in the same order`);
  if (problems.length) throw new AppError('INVALID_CONFIG', `invalid configuration:\n  ${problems.join('\n  ')}`, { problems });
  return out as Config;
}
