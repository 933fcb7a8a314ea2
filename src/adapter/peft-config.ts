/**
 * Strict parser for Hugging Face PEFT `adapter_config.json` files describing a LoRA adapter,
 * plus PEFT's rules for which modules an adapter targets and with which rank and scale.
 *
 * Like vLLM's `PEFTHelper.validate_legal`, parsing collects every problem and throws one
 * `AppError('INVALID_ADAPTER_CONFIG')` listing them all. A field that would change the math
 * the engine does (DoRA, LoRA biases, LoftQ, ...) is refused by name when it is active and
 * ignored at its inactive value, so configs written by newer PEFT versions still load.
 *
 * Regexes (a string `target_modules`/`exclude_modules`, `rank_pattern`/`alpha_pattern` keys,
 * `layers_pattern`) come from untrusted configs, and a backtracking engine (JavaScript's
 * `RegExp`, Python's `re`) can spend exponential time on a 14-character pattern such as
 * `(a|aa)+$`. So they are compiled with RE2 (re2js), whose matching time is linear in the
 * input and the pattern's size, whatever the pattern: RE2 syntax, which is Python's `re`
 * syntax without backreferences and lookaround (`(?P<name>…)` and inline flags such as `(?i)`
 * work). Each is capped in length and in compiled size, a config in how many it may hold, and
 * keys made only of name characters and dots (the usual `rank_pattern` keys) are matched
 * without a regex engine at all.
 */
import { RE2JS } from 're2js';
import { AppError, echo, throwIfProblems } from '../errors.js';

/** Default cap on the size of `adapter_config.json`, in bytes (1 MiB). */
export const DEFAULT_MAX_CONFIG_BYTES = 1024 * 1024;
/** Longest regex source (or target module name) accepted from a config. */
export const MAX_REGEX_LENGTH = 512;
/**
 * Largest compiled RE2 program (instructions) of one regex: bounds the time to compile it and
 * to match it against a module path. Real PEFT patterns take well under 200;
 * `[a-z]{999}` alone takes about 1000.
 */
export const MAX_REGEX_PROGRAM = 2000;
/** Most compiled RE2 instructions over all the regexes of one config (literal keys do not count). */
export const MAX_CONFIG_PROGRAM = 10_000;
/** Most entries in each of `rank_pattern` and `alpha_pattern` (EVA writes one per module). */
export const MAX_PATTERN_ENTRIES = 4096;
/** Most labels an `id2label` map may hold. */
export const MAX_LABELS = 4096;

/**
 * A validated LoRA adapter config. Treat it as immutable: {@link parsePeftConfig} returns it
 * frozen, and the matchers cache compiled regexes per config object.
 */
export interface LoraAdapterConfig {
  /** Always `'LORA'`: other PEFT types are refused. */
  peftType: 'LORA';
  /** Default LoRA rank (`r`), a positive integer. */
  r: number;
  /** Default LoRA alpha (`lora_alpha`), a positive number. */
  loraAlpha: number;
  /**
   * Modules to adapt. A list matches a module path equal to an entry or ending with
   * `"." + entry`; `{ regex }` must match the whole module path (Python `re.fullmatch`).
   */
  targetModules: string[] | { regex: string };
  /** Modules never adapted, same matching rules as `targetModules`; null when none. */
  excludeModules: string[] | { regex: string } | null;
  /** rsLoRA: scale is `alpha / sqrt(r)` instead of `alpha / r`. */
  useRslora: boolean;
  /**
   * Whether the base layer stores its weight as (fan_in, fan_out), e.g. GPT-2's Conv1D.
   * Accepted and informational only: the LoRA tensors keep shapes A [r, d_in] and B [d_out, r].
   */
  fanInFanOut: boolean;
  /** Whole modules saved with the adapter (e.g. a classifier head); `[]` when none. */
  modulesToSave: string[];
  /** Only `'none'` is supported: trained biases would change the base layers. */
  bias: 'none';
  /** PEFT task type (e.g. `'SEQ_CLS'`), or null. */
  taskType: string | null;
  /** The base model the adapter was trained on, as recorded by PEFT, or null. */
  baseModelNameOrPath: string | null;
  /** Pattern key → rank; key order is the match order (first match wins). */
  rankPattern: Record<string, number>;
  /** Pattern key → alpha; key order is the match order (first match wins). */
  alphaPattern: Record<string, number>;
  /** Layer indices to adapt (list targets only); null means every layer. */
  layersToTransform: number[] | null;
  /** Names of the layer-list modules (e.g. `['layers']`); null means any segment. */
  layersPattern: string[] | null;
  /**
   * Class labels in index order, or null when the config has none. This is an adapterhost
   * convention, not a PEFT field: a classifier adapter stores its label map inside
   * `adapter_config.json` as `id2label` (`{"0": "ham", "1": "spam"}`, keys exactly 0..n-1,
   * values non-empty and unique, n ≤ {@link MAX_LABELS}) and optionally `label2id`, which must
   * be its exact inverse.
   */
  labels: string[] | null;
}

/** Options for {@link parsePeftConfig}. */
export interface ParseOptions {
  /**
   * The base model's maximum LoRA rank (its slot size). `r` and every `rank_pattern` value
   * above it are refused. Unset: no limit.
   */
  maxRank?: number;
  /** Largest config text accepted, in bytes, checked before parsing. Default 1 MiB. */
  maxBytes?: number;
}

/** Fields PEFT writes that do not affect inference; accepted with any value. */
const IGNORED_FIELDS = new Set([
  'peft_version',
  'inference_mode',
  'lora_dropout',
  'revision',
  'auto_mapping',
  'megatron_core',
  'runtime_config', // runtime-only settings (ephemeral GPU offload)
  'qalora_group_size', // only meaningful with use_qalora, which is checked on its own
]);

/**
 * Fields that would change the math when active, with the reason given when they are.
 * Each is accepted at an inactive value: null, false, "", [] or {}.
 */
const MATH_FIELDS: Readonly<Record<string, string>> = {
  use_dora: 'DoRA is not supported',
  lora_bias: 'LoRA bias vectors (lora_bias) are not supported',
  use_qalora: 'QA-LoRA is not supported',
  alora_invocation_tokens: 'activated LoRA (aLoRA) is not supported',
  corda_config: 'CorDA modifies the base weights and is not supported',
  loftq_config: 'LoftQ modifies the base weights and is not supported',
  layer_replication: 'layer replication changes the base model and is not supported',
  megatron_config: 'Megatron parallel layers are not supported',
  trainable_token_indices: 'trainable token embeddings are not supported',
  target_parameters: 'LoRA on parameters (target_parameters) is not supported',
  arrow_config: 'Arrow routing is not supported',
  use_bdlora: 'BD-LoRA is not supported',
  ensure_weight_tying: 'weight tying of adapted modules is not supported',
};

/** Fields read by the parser itself; everything else is ignored, a math field, or unknown. */
const PARSED_FIELDS = new Set([
  'peft_type',
  'r',
  'lora_alpha',
  'target_modules',
  'exclude_modules',
  'use_rslora',
  'fan_in_fan_out',
  'modules_to_save',
  'bias',
  'task_type',
  'base_model_name_or_path',
  'rank_pattern',
  'alpha_pattern',
  'layers_to_transform',
  'layers_pattern',
  'init_lora_weights',
  'eva_config',
  'id2label',
  'label2id',
]);

/** `init_lora_weights` strings that only choose how A and B start out. */
const INIT_ONLY_STRINGS = new Set(['gaussian', 'eva', 'orthogonal', 'default']);
/** `init_lora_weights` prefixes whose initialisation rewrites the base weights. */
const BASE_MODIFYING_INITS = ['pissa', 'olora', 'corda', 'loftq'];

const SHOWN_CHARS = 80;

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

/** A short, JSON-escaped rendering of an untrusted value for messages. */
function show(v: unknown): string {
  return echo(v, SHOWN_CHARS);
}

/** null, undefined, false, "", [] or {}: the values a disabled feature is written with. */
function isInactive(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  return isObject(v) && Object.keys(v).length === 0;
}

/**
 * A compiled pattern from a config. `test` answers whether the (wrapped) pattern matches a
 * module path; `lastGroup` returns the last capture group of the match (layer indices).
 */
interface Pattern {
  test(path: string): boolean;
  lastGroup(path: string): string | null;
  /** RE2 instructions: 0 for a literal key matched without an engine. */
  size: number;
}

/** What the parser compiled for one config, kept for the matchers (nothing is compiled twice). */
interface Compiled {
  /** RE2 instructions so far over the whole config. */
  size: number;
  bySource: Map<string, Pattern>;
}

/** RE2 with a wrapped source; linear-time matching. */
function re2Pattern(re: RE2JS): Pattern {
  return {
    test: (path) => re.test(path),
    lastGroup: (path) => {
      const m = re.exec(path);
      return m ? (m[m.length - 1] as string | undefined) ?? null : null;
    },
    size: re.programSize(),
  };
}

/** A key made only of name characters, `.` (any character, as in the regex) and `\.` (a dot). */
const LITERAL_KEY = /^(?:[A-Za-z0-9_-]|\\\.|\.)+$/;

/**
 * PEFT's `get_pattern_key` regex `(.*\.)?(KEY)$` for a literal-like key, without an engine:
 * the last |KEY| characters match KEY (`.` any character but a newline), and what comes
 * before them is nothing or ends with a dot.
 */
function literalKeyPattern(key: string): Pattern {
  const tokens: Array<string | null> = []; // a character, or null for "any"
  for (let i = 0; i < key.length; i++) {
    if (key[i] === '\\') tokens.push(key[++i]!);
    else tokens.push(key[i] === '.' ? null : key[i]!);
  }
  const n = tokens.length;
  return {
    test: (path) => {
      const start = path.length - n;
      if (start < 0) return false;
      if (start > 0 && path[start - 1] !== '.') return false;
      for (let i = 0; i < start; i++) if (path[i] === '\n') return false;
      for (let i = 0; i < n; i++) {
        const c = path[start + i]!;
        const t = tokens[i];
        if (t === null ? c === '\n' : c !== t) return false;
      }
      return true;
    },
    lastGroup: () => null,
    size: 0,
  };
}

/**
 * Compiles an untrusted regex (RE2) within the caps; returns the Pattern or a problem naming
 * `what`. `literalKey`: a `rank_pattern`/`alpha_pattern` key that may take the literal path.
 */
function compile(what: string, source: string, wrap: (s: string) => string, budget: Compiled, literalKey = false): Pattern | string {
  if (source.length > MAX_REGEX_LENGTH) {
    return `${what} ${show(source)} is ${source.length} characters; at most ${MAX_REGEX_LENGTH} are accepted`;
  }
  const key = `${wrap(source)}`;
  const known = budget.bySource.get(key);
  if (known) return known;
  let p: Pattern;
  if (literalKey && LITERAL_KEY.test(source)) {
    p = literalKeyPattern(source);
  } else {
    let re: RE2JS;
    try {
      // The source alone first: it must be a regex by itself, as Python compiles it
      // (`a)|(b` is not, though wrapped it would parse, and mean something else).
      RE2JS.compile(source);
      re = RE2JS.compile(key);
    } catch (e) {
      return `${what} ${show(source)} is not a valid regular expression (RE2 syntax: Python's re without backreferences or lookaround): ${(e as Error).message.slice(0, 200)}`;
    }
    p = re2Pattern(re);
    if (p.size > MAX_REGEX_PROGRAM) {
      return `${what} ${show(source)} is too complex: it compiles to ${p.size} RE2 instructions; at most ${MAX_REGEX_PROGRAM} are accepted`;
    }
    if (budget.size + p.size > MAX_CONFIG_PROGRAM) {
      return `${what} ${show(source)}: the config's regexes together compile to more than ${MAX_CONFIG_PROGRAM} RE2 instructions`;
    }
  }
  budget.size += p.size;
  budget.bySource.set(key, p);
  return p;
}

/** Python `re.fullmatch(source, path)`. */
const fullMatch = (s: string): string => `^(?:${s})$`;
/** PEFT `get_pattern_key`: `re.match(rf"(.*\.)?({key})$", path)`. */
const patternKey = (s: string): string => `^(.*\\.)?(${s})$`;
/** PEFT layer index with a layers_pattern: `re.match(rf".*\.{pattern}\.(\d+)\.", path)`. */
const layerPattern = (s: string): string => `^.*\\.(?:${s})\\.(\\d+)\\.`;
/** PEFT layer index without a layers_pattern: the last `<name>.<digits>.` in the path (a trusted, fixed regex). */
const ANY_LAYER = /^.*\.[^.]*\.(\d+)\./;

/** Turns the input into a JSON object, or throws naming why it is not one. */
function toObject(input: unknown, maxBytes: number): JsonObject {
  const refuse = (why: string): never => {
    throw new AppError('INVALID_ADAPTER_CONFIG', `invalid adapter_config.json: ${why}`, { problems: [why] });
  };
  let text: string | undefined;
  if (typeof input === 'string') {
    // A UTF-16 unit is at least one UTF-8 byte, so the cheap check comes first.
    if (input.length > maxBytes || Buffer.byteLength(input, 'utf8') > maxBytes) {
      refuse(`the text is larger than the ${maxBytes}-byte limit`);
    }
    text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
  } else if (input instanceof Uint8Array) {
    if (input.byteLength > maxBytes) refuse(`the text is larger than the ${maxBytes}-byte limit`);
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(input);
    } catch {
      refuse('the text is not valid UTF-8');
    }
  }
  let value: unknown = input;
  if (text !== undefined) {
    try {
      value = JSON.parse(text);
    } catch (e) {
      refuse(`the text is not valid JSON (${(e as Error).message})`);
    }
  }
  if (!isObject(value)) {
    refuse(`expected a JSON object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`}`);
  }
  return value as JsonObject;
}

function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

function isPositiveNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0;
}

/** Reads a list-or-regex module selector (`target_modules` / `exclude_modules`). */
function readModuleSelector(
  field: string,
  v: string | unknown[],
  problems: string[],
  compiled: Compiled,
): string[] | { regex: string } | undefined {
  if (typeof v === 'string') {
    const re = compile(`${field} regex`, v, fullMatch, compiled);
    if (typeof re === 'string') {
      problems.push(re);
      return undefined;
    }
    return { regex: v };
  }
  const names: string[] = [];
  let ok = true;
  v.forEach((name, i) => {
    if (typeof name !== 'string' || name.length === 0) {
      problems.push(`${field}[${i}] must be a non-empty string, got ${show(name)}`);
      ok = false;
    } else if (name.length > MAX_REGEX_LENGTH) {
      problems.push(`${field}[${i}] is ${name.length} characters; at most ${MAX_REGEX_LENGTH} are accepted`);
      ok = false;
    } else {
      names.push(name);
    }
  });
  return ok ? names : undefined;
}

function readTargets(v: unknown, problems: string[], compiled: Compiled): string[] | { regex: string } | undefined {
  if (v === undefined || v === null) {
    problems.push('target_modules is missing: the engine cannot infer target modules from the architecture');
    return undefined;
  }
  if (typeof v === 'string' && v.trim().toLowerCase() === 'all-linear') {
    problems.push('target_modules "all-linear" is not supported: list the target modules explicitly');
    return undefined;
  }
  if (Array.isArray(v) && v.length === 0) {
    problems.push('target_modules is empty: the adapter would target no module');
    return undefined;
  }
  if (typeof v !== 'string' && !Array.isArray(v)) {
    problems.push(`target_modules must be a list of module names or a regex string, got ${show(v)}`);
    return undefined;
  }
  return readModuleSelector('target_modules', v, problems, compiled);
}

function readExcludes(v: unknown, problems: string[], compiled: Compiled): string[] | { regex: string } | null | undefined {
  // PEFT skips exclusion when exclude_modules is falsy ("" or []).
  if (v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0)) return null;
  if (typeof v !== 'string' && !Array.isArray(v)) {
    problems.push(`exclude_modules must be null, a list of module names or a regex string, got ${show(v)}`);
    return undefined;
  }
  return readModuleSelector('exclude_modules', v, problems, compiled);
}

function readBool(raw: JsonObject, field: string, problems: string[]): boolean {
  const v = raw[field];
  if (v === undefined || v === null) return false;
  if (typeof v === 'boolean') return v;
  problems.push(`${field} must be true or false, got ${show(v)}`);
  return false;
}

function readOptionalString(raw: JsonObject, field: string, problems: string[]): string | null {
  const v = raw[field];
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  problems.push(`${field} must be a string or null, got ${show(v)}`);
  return null;
}

function readPattern(
  raw: JsonObject,
  field: 'rank_pattern' | 'alpha_pattern',
  maxRank: number | undefined,
  problems: string[],
  compiled: Compiled,
): Record<string, number> {
  const v = raw[field];
  if (v === undefined || v === null) return {};
  if (!isObject(v)) {
    problems.push(`${field} must be an object mapping module patterns to numbers, got ${show(v)}`);
    return {};
  }
  const all = Object.entries(v);
  if (all.length > MAX_PATTERN_ENTRIES) {
    problems.push(`${field} has ${all.length} entries; at most ${MAX_PATTERN_ENTRIES} are accepted`);
    return {};
  }
  const entries: Array<[string, number]> = [];
  for (const [key, value] of all) {
    const re = compile(`${field} key`, key, patternKey, compiled, true);
    if (typeof re === 'string') problems.push(re);
    if (field === 'rank_pattern') {
      if (!isPositiveInt(value)) {
        problems.push(`rank_pattern[${show(key)}] must be a positive integer rank, got ${show(value)}`);
        continue;
      }
      if (maxRank !== undefined && value > maxRank) {
        problems.push(`rank_pattern[${show(key)}]: rank ${value} exceeds the base model's maximum rank ${maxRank}`);
      }
    } else if (!isPositiveNumber(value)) {
      problems.push(`alpha_pattern[${show(key)}] must be a positive number, got ${show(value)}`);
      continue;
    }
    entries.push([key, value]);
  }
  // fromEntries defines own properties, so a "__proto__" key stays a plain key.
  return Object.fromEntries(entries);
}

function readLayersToTransform(v: unknown, problems: string[]): number[] | null {
  if (v === undefined || v === null) return null;
  const list = Array.isArray(v) ? v : [v];
  // PEFT treats an empty list as "every layer".
  if (list.length === 0) return null;
  const bad = list.filter((x) => !(typeof x === 'number' && Number.isSafeInteger(x) && x >= 0));
  if (bad.length > 0) {
    problems.push(`layers_to_transform must be null, a layer index or a list of layer indices (integers ≥ 0), got ${show(v)}`);
    return null;
  }
  return list as number[];
}

function readLayersPattern(v: unknown, problems: string[], compiled: Compiled): string[] | null {
  if (v === undefined || v === null || v === '') return null;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.some((p) => typeof p !== 'string' || p.length === 0)) {
    problems.push(`layers_pattern must be null, a string or a list of non-empty strings, got ${show(v)}`);
    return null;
  }
  if (list.length === 0) return null;
  for (const p of list as string[]) {
    const re = compile('layers_pattern', p, layerPattern, compiled);
    if (typeof re === 'string') problems.push(re);
  }
  return list as string[];
}

function readInit(v: unknown, problems: string[]): void {
  if (v === undefined || v === null || typeof v === 'boolean') return;
  if (typeof v !== 'string') {
    problems.push(`init_lora_weights must be a boolean or a string, got ${show(v)}`);
    return;
  }
  const lower = v.toLowerCase();
  if (BASE_MODIFYING_INITS.some((p) => lower.startsWith(p))) {
    problems.push(
      `init_lora_weights ${show(v)} is not supported: that initialisation modifies the base weights ` +
        '(convert the adapter to plain LoRA when saving it)',
    );
  } else if (!INIT_ONLY_STRINGS.has(lower)) {
    problems.push(`init_lora_weights ${show(v)} is not a recognised initialisation`);
  }
}

const CANONICAL_INDEX = /^(0|[1-9]\d*)$/;

/** Reads the adapterhost `id2label` / `label2id` convention; see {@link LoraAdapterConfig.labels}. */
function readLabels(raw: JsonObject, problems: string[]): string[] | null {
  const id2label = raw['id2label'];
  const label2id = raw['label2id'];
  if (id2label === undefined || id2label === null) {
    if (label2id !== undefined && label2id !== null) problems.push('label2id is present without id2label');
    return null;
  }
  if (!isObject(id2label)) {
    problems.push(`id2label must be an object such as {"0": "ham", "1": "spam"}, got ${show(id2label)}`);
    return null;
  }
  const entries = Object.entries(id2label);
  const n = entries.length;
  if (n === 0) {
    problems.push('id2label is empty: a classifier needs at least one label');
    return null;
  }
  if (n > MAX_LABELS) {
    problems.push(`id2label has ${n} labels; at most ${MAX_LABELS} are accepted`);
    return null;
  }
  const before = problems.length;
  const labels = new Array<string>(n);
  const badKeys = entries.map(([k]) => k).filter((k) => !CANONICAL_INDEX.test(k) || Number(k) >= n);
  if (badKeys.length > 0) {
    problems.push(`id2label keys must be exactly "0".."${n - 1}"; unexpected keys: ${badKeys.slice(0, 5).map(show).join(', ')}`);
  }
  const seen = new Map<string, number>();
  for (const [k, label] of entries) {
    if (typeof label !== 'string' || label.trim().length === 0) {
      problems.push(`id2label[${show(k)}] must be a non-empty string, got ${show(label)}`);
      continue;
    }
    if (seen.has(label)) {
      problems.push(`id2label has the duplicate label ${show(label)}`);
      continue;
    }
    seen.set(label, Number(k));
    if (CANONICAL_INDEX.test(k) && Number(k) < n) labels[Number(k)] = label;
  }
  if (label2id !== undefined && label2id !== null) {
    if (!isObject(label2id)) {
      problems.push(`label2id must be an object mapping labels to indices, got ${show(label2id)}`);
    } else {
      const pairs = Object.entries(label2id);
      const wrong = pairs.filter(([label, id]) => seen.get(label) !== id).map(([label, id]) => `${show(label)}: ${show(id)}`);
      if (wrong.length > 0 || pairs.length !== n) {
        problems.push(
          `label2id does not agree with id2label` +
            (wrong.length > 0 ? ` (${wrong.slice(0, 5).join(', ')})` : ` (${pairs.length} entries for ${n} labels)`),
        );
      }
    }
  }
  return problems.length === before ? labels : null;
}

function checkOptions(opts: ParseOptions): void {
  if (opts.maxRank !== undefined && !isPositiveInt(opts.maxRank)) {
    throw new RangeError(`ParseOptions.maxRank must be a positive integer, got ${opts.maxRank}`);
  }
  if (opts.maxBytes !== undefined && !(Number.isSafeInteger(opts.maxBytes) && opts.maxBytes > 0)) {
    throw new RangeError(`ParseOptions.maxBytes must be a positive integer, got ${opts.maxBytes}`);
  }
}

/**
 * Parses and validates `adapter_config.json`: its text (string or UTF-8 bytes, at most
 * `opts.maxBytes`) or an already-parsed JSON value.
 *
 * Supported: `peft_type` "LORA" with `r`, `lora_alpha`, `target_modules` (list, or a regex
 * string fullmatched against module paths; "all-linear" is refused), `exclude_modules`,
 * `use_rslora`, `fan_in_fan_out`, `modules_to_save`, `bias` "none", `task_type`,
 * `base_model_name_or_path`, `rank_pattern`, `alpha_pattern`, `layers_to_transform`,
 * `layers_pattern`, and the adapterhost `id2label`/`label2id` label map.
 * Ignored: `peft_version`, `inference_mode`, `lora_dropout`, `revision`, `auto_mapping`,
 * `megatron_core`, `runtime_config`, `qalora_group_size`, `eva_config` (EVA only chooses the
 * initial weights; its rank redistribution is saved in `rank_pattern`), and `init_lora_weights`
 * when it is a boolean, "gaussian", "eva", "orthogonal" or "default".
 * Refused when active: DoRA, LoRA biases, QA-LoRA, aLoRA, CorDA, LoftQ, PiSSA/OLoRA/CorDA/LoftQ
 * initialisation, layer replication, Megatron, trainable tokens, target_parameters, Arrow,
 * BD-LoRA, weight tying, and any unknown field not at an inactive value (null, false, "", [], {}).
 *
 * @throws AppError `INVALID_ADAPTER_CONFIG` listing every problem found.
 * @throws RangeError when `opts` itself is invalid (a programming error).
 */
export function parsePeftConfig(input: string | Uint8Array | unknown, opts: ParseOptions = {}): LoraAdapterConfig {
  checkOptions(opts);
  const raw = toObject(input, opts.maxBytes ?? DEFAULT_MAX_CONFIG_BYTES);
  const { maxRank } = opts;

  const peftType = raw['peft_type'];
  if (typeof peftType === 'string' && peftType !== 'LORA') {
    // The other fields mean something else for another PEFT type: nothing more to report.
    throwIfProblems('INVALID_ADAPTER_CONFIG', 'invalid adapter_config.json', [
      `peft_type ${show(peftType)} is not supported: only LoRA adapters ("LORA") can be served`,
    ]);
  }
  const problems: string[] = [];
  if (peftType === undefined || peftType === null) problems.push('peft_type is missing (expected "LORA")');
  else if (typeof peftType !== 'string') problems.push(`peft_type must be the string "LORA", got ${show(peftType)}`);

  const r = raw['r'];
  if (r === undefined) problems.push('r (the LoRA rank) is missing');
  else if (!isPositiveInt(r)) problems.push(`r must be a positive integer, got ${show(r)}`);
  else if (maxRank !== undefined && r > maxRank) problems.push(`r: rank ${r} exceeds the base model's maximum rank ${maxRank}`);

  const alpha = raw['lora_alpha'];
  if (alpha === undefined) problems.push('lora_alpha is missing');
  else if (!isPositiveNumber(alpha)) problems.push(`lora_alpha must be a positive number, got ${show(alpha)}`);

  // Every regex is compiled once, here, within one budget; the matchers reuse them.
  const compiled: Compiled = { size: 0, bySource: new Map() };
  const targetModules = readTargets(raw['target_modules'], problems, compiled);
  const excludeModules = readExcludes(raw['exclude_modules'], problems, compiled);
  const useRslora = readBool(raw, 'use_rslora', problems);
  const fanInFanOut = readBool(raw, 'fan_in_fan_out', problems);

  let modulesToSave: string[] = [];
  const mts = raw['modules_to_save'];
  if (Array.isArray(mts) && mts.every((m) => typeof m === 'string' && m.length > 0)) modulesToSave = mts as string[];
  else if (mts !== undefined && mts !== null) problems.push(`modules_to_save must be null or a list of module names, got ${show(mts)}`);

  const bias = raw['bias'];
  if (bias !== undefined && bias !== null && bias !== 'none') {
    problems.push(`bias ${show(bias)} is not supported: only "none" (trained biases would change the base layers)`);
  }

  const taskType = readOptionalString(raw, 'task_type', problems);
  const baseModelNameOrPath = readOptionalString(raw, 'base_model_name_or_path', problems);
  const rankPattern = readPattern(raw, 'rank_pattern', maxRank, problems, compiled);
  const alphaPattern = readPattern(raw, 'alpha_pattern', undefined, problems, compiled);
  const layersToTransform = readLayersToTransform(raw['layers_to_transform'], problems);
  const layersPattern = readLayersPattern(raw['layers_pattern'], problems, compiled);
  // PEFT's own LoraConfig rules: layer selection only works with a list of targets.
  if (typeof raw['target_modules'] === 'string' && layersToTransform !== null) {
    problems.push('layers_to_transform cannot be used when target_modules is a regex string');
  }
  if (typeof raw['target_modules'] === 'string' && layersPattern !== null) {
    problems.push('layers_pattern cannot be used when target_modules is a regex string');
  }
  if (layersPattern !== null && layersToTransform === null) {
    problems.push('layers_pattern is set but layers_to_transform is not');
  }

  readInit(raw['init_lora_weights'], problems);
  const eva = raw['eva_config'];
  if (eva !== undefined && eva !== null && !isObject(eva)) problems.push(`eva_config must be null or an object, got ${show(eva)}`);
  const labels = readLabels(raw, problems);

  for (const [field, value] of Object.entries(raw)) {
    if (PARSED_FIELDS.has(field) || IGNORED_FIELDS.has(field) || isInactive(value)) continue;
    const reason = Object.hasOwn(MATH_FIELDS, field) ? MATH_FIELDS[field] : undefined;
    problems.push(
      reason !== undefined
        ? `${field}=${show(value)}: ${reason}`
        : `unknown field ${show(field)} with a non-default value ${show(value)}; the engine cannot apply it`,
    );
  }

  throwIfProblems('INVALID_ADAPTER_CONFIG', 'invalid adapter_config.json', problems);
  const freezeSelector = <T extends string[] | { regex: string } | null>(s: T): T => Object.freeze(s);
  const cfg: LoraAdapterConfig = Object.freeze({
    peftType: 'LORA',
    r: r as number,
    loraAlpha: alpha as number,
    targetModules: freezeSelector(targetModules!),
    excludeModules: freezeSelector(excludeModules ?? null),
    useRslora,
    fanInFanOut,
    modulesToSave: Object.freeze([...modulesToSave]) as string[],
    bias: 'none',
    taskType,
    baseModelNameOrPath,
    rankPattern: Object.freeze(rankPattern),
    alphaPattern: Object.freeze(alphaPattern),
    layersToTransform: layersToTransform && (Object.freeze([...layersToTransform]) as number[]),
    layersPattern: layersPattern && (Object.freeze([...layersPattern]) as string[]),
    labels: labels && (Object.freeze(labels) as string[]),
  });
  matchersCache.set(cfg, buildMatchers(cfg, compiled));
  return cfg;
}

/** The patterns of one config, compiled once, and what they answered per module path. */
interface Matchers {
  target: Pattern | null;
  exclude: Pattern | null;
  layers: Pattern[] | null;
  ranks: Array<[Pattern, number]>;
  alphas: Array<[Pattern, number]>;
  /** Module path → rank_pattern / alpha_pattern value (undefined: none matched). */
  rankOf: Map<string, number | undefined>;
  alphaOf: Map<string, number | undefined>;
}

const matchersCache = new WeakMap<LoraAdapterConfig, Matchers>();

/** Builds the matchers from `compiled` (parse time) or compiles afresh (a config made some other way). */
function buildMatchers(cfg: LoraAdapterConfig, compiled: Compiled = { size: 0, bySource: new Map() }): Matchers {
  const must = (what: string, source: string, wrap: (s: string) => string, literalKey = false): Pattern => {
    const p = compile(what, source, wrap, compiled, literalKey);
    if (typeof p === 'string') throw new AppError('INVALID_ADAPTER_CONFIG', `invalid adapter config: ${p}`, { problems: [p] });
    return p;
  };
  const selector = (what: string, sel: string[] | { regex: string } | null): Pattern | null =>
    sel !== null && !Array.isArray(sel) ? must(what, sel.regex, fullMatch) : null;
  const patterns = (what: string, p: Record<string, number>): Array<[Pattern, number]> =>
    Object.entries(p).map(([k, v]) => [must(what, k, patternKey, true), v]);
  return {
    target: selector('target_modules regex', cfg.targetModules),
    exclude: selector('exclude_modules regex', cfg.excludeModules),
    layers: cfg.layersPattern && cfg.layersPattern.map((p) => must('layers_pattern', p, layerPattern)),
    ranks: patterns('rank_pattern key', cfg.rankPattern),
    alphas: patterns('alpha_pattern key', cfg.alphaPattern),
    rankOf: new Map(),
    alphaOf: new Map(),
  };
}

function matchersFor(cfg: LoraAdapterConfig): Matchers {
  let m = matchersCache.get(cfg);
  if (m === undefined) {
    m = buildMatchers(cfg);
    matchersCache.set(cfg, m);
  }
  return m;
}

const endsWithModule = (path: string, names: readonly string[]): boolean =>
  names.some((n) => path === n || path.endsWith(`.${n}`));

/** PEFT's layer index of a module path, or null when it has none. */
function layerIndex(m: Matchers, path: string): number | null {
  if (m.layers === null) {
    const found = ANY_LAYER.exec(path);
    return found ? Number(found[1]) : null;
  }
  for (const p of m.layers) {
    const group = p.lastGroup(path);
    if (group !== null) return Number(group);
  }
  return null;
}

/**
 * Whether the adapter targets `modulePath`, following PEFT's `check_target_module_exists`:
 * a path matched by `exclude_modules` never is; a regex `target_modules` must match the whole
 * path; a list matches a path equal to an entry (always targeted) or ending with `"." + entry`
 * (then, when `layers_to_transform` is set, the path's layer index must be listed). The layer
 * index is the number after the last `<name>.<digits>.` in the path, or after a
 * `layers_pattern` name when one is set.
 */
export function isTargeted(cfg: LoraAdapterConfig, modulePath: string): boolean {
  const m = matchersFor(cfg);
  const ex = cfg.excludeModules;
  if (ex !== null && (Array.isArray(ex) ? endsWithModule(modulePath, ex) : m.exclude!.test(modulePath))) return false;
  const targets = cfg.targetModules;
  if (!Array.isArray(targets)) return m.target!.test(modulePath);
  if (targets.includes(modulePath)) return true;
  if (!endsWithModule(modulePath, targets)) return false;
  if (cfg.layersToTransform === null) return true;
  const index = layerIndex(m, modulePath);
  return index !== null && cfg.layersToTransform.includes(index);
}

/** PEFT's `get_pattern_key`: the first pattern (in key order) matching the path wins; remembered per path. */
function patternValue(patterns: ReadonlyArray<[Pattern, number]>, memo: Map<string, number | undefined>, path: string): number | undefined {
  if (memo.has(path)) return memo.get(path);
  const v = patterns.find(([p]) => p.test(path))?.[1];
  memo.set(path, v);
  return v;
}

/** Rank for one module: the first matching `rank_pattern` entry, else `r`. */
export function rankFor(cfg: LoraAdapterConfig, modulePath: string): number {
  const m = matchersFor(cfg);
  return patternValue(m.ranks, m.rankOf, modulePath) ?? cfg.r;
}

/**
 * Scale folded into B for one module: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA, where r
 * and alpha honour `rank_pattern` and `alpha_pattern`.
 */
export function scaleFor(cfg: LoraAdapterConfig, modulePath: string): number {
  const m = matchersFor(cfg);
  const r = rankFor(cfg, modulePath);
  const alpha = patternValue(m.alphas, m.alphaOf, modulePath) ?? cfg.loraAlpha;
  return cfg.useRslora ? alpha / Math.sqrt(r) : alpha / r;
}
